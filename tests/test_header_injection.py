"""No header injection, through every way a value reaches a header (issue 12): a subscriber name given to
`subscribers add --name` or in a CSV import, the title and subject settings, the From setting. The messages are sent
by `digest send` to a real SMTP server that keeps the raw bytes; what counts is the header block as transmitted.
"""

from __future__ import annotations

import re

from tests import test_send_cli
from tests.conftest import Workspace
from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401  (fixture)

mail_ws = test_send_cli.mail_ws  # the fixture: issue 1 rendered, SMTP settings pointing at `smtp_server`

ENCODED_CRLF = "=?utf-8?q?Evil=0D=0ABcc:_x@evil.example?="
ENDS_HEADERS = "=?utf-8?q?Evil=0D=0A=0D=0A<h1>owned</h1>?="
EXPECTED_FIELDS = [
    "From",
    "To",
    "Subject",
    "Date",
    "MIME-Version",
    "Content-Type",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
    "X-Digest-Delivery",  # the signed delivery id providers echo back to their webhooks
]


def header_fields(data: bytes) -> list[str]:
    """The names of the top-level header fields as transmitted (continuation lines belong to their field)."""
    head = data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii() and b"\n" not in head.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    return [line.split(b":", 1)[0].decode() for line in head.split(b"\r\n") if not line.startswith((b" ", b"\t"))]


def test_encoded_word_names_cannot_add_a_header_or_end_the_header_block(
    mail_ws: Workspace, smtp_server: MailServer
) -> None:
    mail_ws.run("subscribers", "add", "cli@example.org", "--name", ENCODED_CRLF)
    people = mail_ws.root / "people.csv"
    people.write_text(f'email,name\ncsv@example.org,"{ENDS_HEADERS}"\n', encoding="utf-8")
    mail_ws.run("subscribers", "import", str(people))
    mail_ws.run("send")
    assert len(smtp_server.received) == 2
    for received in smtp_server.received:
        assert header_fields(received.data) == EXPECTED_FIELDS
        msg = received.message
        assert msg["Bcc"] is None and msg.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
        assert b"<h1>owned</h1>" not in received.data
    cli = smtp_server.to("cli@example.org")[0].message
    assert cli["To"].addresses[0].display_name == ENCODED_CRLF  # shown as the literal text it was given as
    assert cli["To"].addresses[0].addr_spec == "cli@example.org"


def test_encoded_words_in_title_and_subject_are_refused(mail_ws: Workspace, smtp_server: MailServer) -> None:
    # Refused when settings are read (issue 16): the title also reaches the signup notices' Subject.
    mail_ws.run("subscribers", "add", "a@example.org")
    for name, value in (("DIGEST_TITLE", ENDS_HEADERS), ("DIGEST_SUBJECT", "{title} " + ENCODED_CRLF)):
        mail_ws.env[name] = value
        result = mail_ws.run("send", check=False)
        assert result.returncode == 78 and f"{name} (environment): " in result.stderr
        assert "encoded word" in result.stderr
        assert "Traceback" not in result.stderr
        del mail_ws.env[name]
    assert smtp_server.received == []
    mail_ws.env["DIGEST_SUBJECT"] = "{title} =? a question ?"  # `=?` without `?=` is no encoded word
    mail_ws.run("send")
    [received] = smtp_server.received
    assert header_fields(received.data) == EXPECTED_FIELDS
    assert str(received.message["Subject"]).endswith(" =? a question ?")


def test_from_address_is_validated_when_settings_are_read(mail_ws: Workspace, smtp_server: MailServer) -> None:
    mail_ws.run("subscribers", "add", "a@example.org")
    for bad in (f'"{ENCODED_CRLF}" <digest@example.org>', "digest@example.org, other@evil.example", "no address"):
        mail_ws.env["DIGEST_FROM_ADDRESS"] = bad
        result = mail_ws.run("send", check=False)
        assert result.returncode == 78 and "DIGEST_FROM_ADDRESS (environment): from_address" in result.stderr, bad
        assert "Traceback" not in result.stderr
    mail_ws.env["DIGEST_FROM_ADDRESS"] = "论文周报 <digest@example.org>"
    mail_ws.env["DIGEST_BOUNCE_ADDRESS"] = "Evil <x@evil.example>"
    result = mail_ws.run("send", check=False)
    assert result.returncode == 78 and "bounce_address: must be a bare address" in result.stderr
    assert smtp_server.received == []


def test_a_very_long_name_is_shortened_and_the_message_delivered(mail_ws: Workspace, smtp_server: MailServer) -> None:
    mail_ws.run("subscribers", "add", "long@example.org", "--name", "Dr. " + "Verylongname " * 200)
    mail_ws.run("subscribers", "add", "cjk@example.org", "--name", "论文" * 500)
    result = mail_ws.run("send")
    assert "2 sent, 0 failed" in result.stdout
    for received in smtp_server.received:
        assert header_fields(received.data) == EXPECTED_FIELDS
        name = received.message["To"].addresses[0].display_name
        # (Python's parser may put a space where one encoded word of a long name ends and the next begins.)
        assert name.endswith("…") and len(name.replace(" ", "")) <= 64


def test_test_copy_to_a_non_ascii_address_is_one_line(mail_ws: Workspace, smtp_server: MailServer) -> None:
    mail_ws.env["DIGEST_SENDER_ADDRESS"] = "1 Example Road, Beijing"  # else `send` warns about it on stderr first
    result = mail_ws.run("send", "--to", "用户@例子.中国", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert re.fullmatch(r"digest: error: --to: invalid address '用户@例子\.中国': .*\n", result.stderr)
    assert smtp_server.received == []
