"""Addresses and notice headers an attacker controls (issue 16): every address that enters must be an RFC 5321
mailbox (a local part of at most 64 octets, at most 254 in all, no RFC 2047 encoded word, no control character),
and a signup notice's header is written by the same writer as an issue's, so no To or Subject can add a field.
"""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.errors import SettingsError
from digest.settings import load_settings
from digest.subscribers import InvalidAddress, normalize_address
from digest.web.mails import Notice, build_notice, render_notice
from tests.conftest import Workspace
from tests.test_header_injection import ENCODED_CRLF, ENDS_HEADERS, header_fields

NOW = datetime(2024, 9, 23, 0, 0, tzinfo=UTC)
#: The address of the report: its local part is an encoded word holding CR LF and a Bcc field.
ENCODED_LOCAL = "=?utf-8?q?a=0D=0ABcc=3A_evil=40attacker.example?=@catchall.example"
#: 232 octets of local part (which email-validator's default mode accepts), all of it valid atom text, that decodes
#: into Reply-To, an HTML Content-Type and a body: a whole phishing mail under the list's From.
_PHISHING = (
    "=?utf-8?q?a=0D=0AReply-To=3A_evil=40attacker.example=0D=0AContent-Type=3A_text/html=0D=0A=0D=0A"
    "=3Ch1=3EYour_account_is_locked=3C/h1=3E"
)
PHISHING_LOCAL = _PHISHING.ljust(230, "x") + "?=@catchall.example"
NOTICE_FIELDS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Auto-Submitted",
    "Content-Type",
    "Content-Transfer-Encoding",
    "MIME-Version",
]


@pytest.mark.parametrize(
    ("address", "why"),
    [
        (ENCODED_LOCAL, "encoded word"),
        (PHISHING_LOCAL, "encoded word"),
        ("=?utf-8?b?YQ0KQmNjOiB4QGV2aWwuZXhhbXBsZQ==?=@example.org", "encoded word"),
        ("a" * (64 + 1) + "@example.org", "65 octets"),
        ("b" * 232 + "@example.org", "232 octets"),
        ("ada@example.org\r\nBcc: evil@attacker.example", "control character"),
        ("ada\x00@example.org", "control character"),
        ("ada\u2028@example.org", "control character"),
    ],
)
def test_an_address_that_is_not_an_rfc_5321_mailbox_is_refused(address: str, why: str) -> None:
    with pytest.raises(InvalidAddress, match=why):
        normalize_address(address)


def test_a_mailbox_at_the_limits_is_accepted() -> None:
    local = "a" * 64  # RFC 5321, 4.5.3.1.1
    assert normalize_address(f" {local}@Example.ORG ") == f"{local}@example.org"
    domain = ".".join(["d" * 61] * 3) + ".org"  # 64 + 1 + 189 = 254 octets
    assert len(normalize_address(f"{local}@{domain}")) == 254
    assert normalize_address("a=b?c@example.org") == "a=b?c@example.org"  # `=?` alone is no encoded word


def test_the_cli_refuses_a_local_part_over_64_octets_in_add_and_import(workspace: Workspace) -> None:
    long_local = "c" * 65 + "@example.org"
    result = workspace.run("subscribers", "add", long_local, check=False)
    assert result.returncode != 0 and "65 octets, at most 64" in result.stderr
    people = workspace.root / "people.csv"
    people.write_text(f"email\nok@example.org\n{long_local}\n{ENCODED_LOCAL}\n", encoding="utf-8")
    result = workspace.run("subscribers", "import", str(people), check=False)
    assert "people.csv:3" in result.stderr and "65 octets" in result.stderr
    assert "people.csv:4" in result.stderr and "encoded word" in result.stderr
    emails = [row[0] for row in workspace.sql("SELECT email FROM subscribers")]
    assert emails == ["ok@example.org"]


@pytest.mark.parametrize("to", [ENCODED_LOCAL, PHISHING_LOCAL, "ada@example.org\r\nBcc: evil@attacker.example"])
@pytest.mark.parametrize(
    "subject", [ENCODED_CRLF, ENDS_HEADERS, "Hi\r\nBcc: evil@attacker.example", "请确认 " + ENCODED_CRLF]
)
def test_a_notice_with_a_hostile_to_or_subject_has_only_the_fields_digest_writes(to: str, subject: str) -> None:
    data = build_notice(
        from_address="论文周报 <digest@example.org>",
        to=to,
        subject=subject,
        body="Please confirm.\n请确认。\n",
        now=NOW,
        domain="digest.example.org",
    )
    assert header_fields(data) == NOTICE_FIELDS  # exactly one To, no Bcc, no Reply-To, the body where it was
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg.get_content_type() == "text/plain" and "请确认。" in msg.get_content()
    # Decoded as RFC 2047 text, Subject reads as the subject given, on one line.
    assert str(msg["Subject"]) == " ".join(subject.split())


def test_the_notice_header_is_the_issue_header_writer() -> None:
    """One writer: a notice's From, Subject and Date are byte for byte what issue mail writes."""
    from digest.message import address_field, sender_fields

    data = build_notice(
        from_address="论文周报 <digest@example.org>",
        to="ada@example.org",
        subject="请确认订阅《AI 论文周报》 · Please confirm",
        body="x\n",
        now=NOW,
        domain="digest.example.org",
    )
    head = sender_fields(
        "论文周报 <digest@example.org>",
        address_field("To", "", "ada@example.org"),
        "请确认订阅《AI 论文周报》 · Please confirm",
        NOW,
    )
    assert data.startswith(head) and b"\r\nTo: ada@example.org\r\n" in head


def test_an_encoded_word_in_title_is_refused_when_settings_are_read(tmp_path: Path) -> None:
    config = tmp_path / "digest.toml"
    config.write_text("", encoding="utf-8")
    for field in ("title", "subject", "author", "list_id"):
        with pytest.raises(SettingsError, match=f"{field}: .*encoded word"):
            load_settings(config, **{field: ENDS_HEADERS})
    assert load_settings(config, title="Is P=NP? 周报").title == "Is P=NP? 周报"


def test_a_notice_carrying_an_encoded_word_title_adds_no_field() -> None:
    """Behind the settings check, the notice path itself keeps the title text (render, then write)."""
    from digest.render import make_environment

    subject, body = render_notice(
        make_environment(),
        Notice.CONFIRM,
        title=ENDS_HEADERS,
        site_url="https://digest.example.org/",
        email="ada@example.org",
        confirm_url="https://digest.example.org/confirm/x",
        expires_days=7,
    )
    data = build_notice(
        from_address="digest@example.org", to="ada@example.org", subject=subject, body=body, now=NOW, domain="x"
    )
    assert header_fields(data) == NOTICE_FIELDS
    assert ENDS_HEADERS in str(email.message_from_bytes(data, policy=email.policy.default)["Subject"])
