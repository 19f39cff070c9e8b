"""One hygiene for every mail: the signup notices (confirmation, welcome, already subscribed, the personal-data
link) leave like an issue does: DKIM-signed with the configured key, with `bounce_address` as return path, the
configured EHLO name, `Auto-Submitted: auto-generated`, and the optional `reply_to`. Through a real `digest serve`
and a real SMTP sink (aiosmtpd); signatures verified with dkimpy against the test's own key."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import dkim
import httpx
import pytest

from tests import test_send_cli
from tests.conftest import Workspace
from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401  (fixture)
from tests.test_send_cli import add_subscribers
from tests.test_signup import confirmed, mails_to, personal_data_url, serve_with_mail
from tests.test_web import Server

mail_ws = test_send_cli.mail_ws  # the fixture: issue 1 rendered, SMTP settings pointing at `smtp_server`

HELO = "mx-out.example.org"
BOUNCES = "returns@example.org"
REPLY_TO = "编辑部 <editors@example.org>"


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A fresh 2048-bit RSA key (the file digest signs with) and its DNS TXT record."""
    key = tmp_path_factory.mktemp("dkim") / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(key), "2048"], check=True, capture_output=True)
    der = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    return key, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def hygiene(dkim_key: tuple[Path, bytes]) -> dict[str, str]:
    return {
        "dkim_selector": "s1",
        "dkim_domain": "example.org",
        "dkim_key_file": str(dkim_key[0]),
        "smtp__helo_name": HELO,
        "bounce_address": BOUNCES,
        "reply_to": REPLY_TO,
    }


def verified(data: bytes, record: bytes) -> bool:
    """Whether the DKIM signature verifies against the test key's record (the only key that DNS would hold)."""

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.example.org."
        return record

    return bool(dkim.verify(data, dnsfunc=dns))


def signed_headers(msg: Message) -> set[str]:
    signature = str(msg["DKIM-Signature"]).replace(" ", "").replace("\r\n", "").replace("\n", "").replace("\t", "")
    field = next(part for part in signature.split(";") if part.startswith("h="))
    return set(field[2:].lower().split(":"))


@pytest.fixture
def srv(tmp_path: Path, smtp_server: MailServer, dkim_key: tuple[Path, bytes]) -> Iterator[Server]:
    server = serve_with_mail(tmp_path / "work", smtp_server, **hygiene(dkim_key))
    yield server
    server.stop()


def test_every_signup_notice_is_signed_returned_to_bounces_and_marked_automatic(
    srv: Server, browser: httpx.Client, smtp_server: MailServer, dkim_key: tuple[Path, bytes]
) -> None:
    preferences = confirmed(srv, browser, smtp_server, "ada@example.org")  # a confirmation request, a welcome
    browser.post("/subscribe", data={"email": "ada@example.org"})  # "you are subscribed already"
    mails_to(smtp_server, "ada@example.org", 3)
    personal_data_url(browser, smtp_server, preferences, "ada@example.org", 4)  # the personal-data link

    received = smtp_server.to("ada@example.org")
    subjects = [str(message_from_bytes(m.data)["Subject"]) for m in received]
    assert len(received) == 4, subjects
    for mail in received:
        msg = message_from_bytes(mail.data)
        assert verified(mail.data, dkim_key[1]), msg["Subject"]
        assert not verified(mail.data.replace(b"editors@example.org", b"evil@example.net"), dkim_key[1])
        assert {"from", "to", "subject", "date", "message-id", "reply-to", "auto-submitted"} <= signed_headers(msg)
        assert mail.mail_from == BOUNCES, "the return path: bounces, never From"
        assert msg["Auto-Submitted"] == "auto-generated"
        assert "<editors@example.org>" in str(msg["Reply-To"]) and "=?utf-8?" in str(msg["Reply-To"])
    assert smtp_server.helo_names and set(smtp_server.helo_names) == {HELO}


def test_an_issue_carries_reply_to_under_its_signature(
    mail_ws: Workspace, smtp_server: MailServer, dkim_key: tuple[Path, bytes]
) -> None:
    mail_ws.env.update({f"DIGEST_{k.upper()}": v for k, v in hygiene(dkim_key).items()})
    add_subscribers(mail_ws, 2)
    mail_ws.run("send")
    assert len(smtp_server.received) == 2
    for mail in smtp_server.received:
        msg = message_from_bytes(mail.data)
        assert verified(mail.data, dkim_key[1]) and "reply-to" in signed_headers(msg)
        assert "<editors@example.org>" in str(msg["Reply-To"])
        assert mail.mail_from.startswith("returns+") and mail.mail_from.endswith("@example.org")  # VERP
        assert msg["Auto-Submitted"] is None  # an issue is not an automatic reply to anything: only notices say so


def test_without_reply_to_no_reply_to_header(mail_ws: Workspace, smtp_server: MailServer) -> None:
    add_subscribers(mail_ws, 1)
    mail_ws.run("send")
    assert message_from_bytes(smtp_server.received[0].data)["Reply-To"] is None


def test_a_reply_to_that_could_bend_a_header_is_refused(mail_ws: Workspace) -> None:
    for bad in ("a@example.org, b@example.org", "x =?utf-8?q?a=0D=0ABcc:_y?= <a@example.org>", "not an address"):
        mail_ws.env["DIGEST_REPLY_TO"] = bad
        result = mail_ws.run("check", check=False)
        assert result.returncode == 78 and "reply_to" in result.stderr, result.stderr
