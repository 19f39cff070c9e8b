"""The signup form under the attacks of issue 16, end to end: a real `digest serve` on 127.0.0.1, a real SMTP sink
(aiosmtpd), POST /subscribe as a browser sends it. Addresses that are not RFC 5321 mailboxes are refused at the
form; no message that reaches the sink has a header field digest did not write; the free-text name reaches an
address only once it is confirmed.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401  (fixture)
from tests.test_address_safety import ENCODED_LOCAL, NOTICE_FIELDS, PHISHING_LOCAL
from tests.test_header_injection import ENCODED_CRLF, header_fields
from tests.test_signup import csrf_of, link_in, mails_to, serve_with_mail, status_of
from tests.test_web import Server

ATTACKS = [
    pytest.param(ENCODED_LOCAL, id="encoded-word-local-part"),
    pytest.param(PHISHING_LOCAL, id="232-char-encoded-phishing"),
    pytest.param("p" * 232 + "@catchall.example", id="232-char-local-part"),
    pytest.param("ada@example.org\r\nBcc: evil@attacker.example", id="crlf-in-the-field"),
    pytest.param("ada@example.org\nBcc: evil@attacker.example", id="lf-in-the-field"),
    pytest.param(f'"{ENCODED_CRLF}" <ada@example.org>', id="encoded-word-display-name"),
    pytest.param(f"{ENCODED_CRLF} <ada@example.org>", id="encoded-word-bare-phrase"),
]
NAME = "Mallory: your account is locked, call +1 555 0100"


@pytest.fixture
def srv(tmp_path: Path, smtp_server: MailServer) -> Iterator[Server]:
    server = serve_with_mail(tmp_path / "work", smtp_server, signup_address_limit="5")
    yield server
    server.stop()


def test_the_phishing_address_is_the_one_of_the_report() -> None:
    assert len(PHISHING_LOCAL.rpartition("@")[0]) == 232


@pytest.mark.parametrize("address", ATTACKS)
def test_an_attack_address_is_refused_with_the_form_and_mails_nobody(
    srv: Server, browser: httpx.Client, smtp_server: MailServer, address: str
) -> None:
    answer = browser.post("/subscribe", data={"email": address, "name": "Ada", "website": ""})
    assert answer.status_code == 400 and "not a valid email address" in answer.text
    assert re.search(r'<form[^>]*action="[^"]*/subscribe"', answer.text) and 'name="email"' in answer.text
    assert "Traceback" not in answer.text and "Traceback" not in srv.log()
    assert srv.ws.sql("SELECT email FROM subscribers") == []
    # A valid signup right after: its notice is the only message, and every field in it is digest's.
    assert browser.post("/subscribe", data={"email": "ada@example.org"}).status_code == 200
    mails_to(smtp_server, "ada@example.org", 1)
    [received] = smtp_server.received
    assert received.rcpt_tos == ["ada@example.org"]
    assert header_fields(received.data) == NOTICE_FIELDS
    head = email.message_from_bytes(received.data, policy=email.policy.default)
    assert [str(a.addr_spec) for a in head["To"].addresses] == ["ada@example.org"]
    assert head["Bcc"] is None and head["Reply-To"] is None and head.get_content_type() == "text/plain"
    assert str(head["From"]) == "论文周报 <digest@example.org>"


def test_the_name_reaches_an_address_only_once_it_is_confirmed(
    srv: Server, browser: httpx.Client, smtp_server: MailServer
) -> None:
    assert browser.post("/subscribe", data={"email": "victim@example.org", "name": NAME}).status_code == 200
    [confirmation] = mails_to(smtp_server, "victim@example.org", 1)
    assert "Mallory" not in confirmation and "555" not in confirmation
    confirm_url = link_in(confirmation, "/confirm/")
    page = browser.get(confirm_url)
    assert browser.post(confirm_url, data={"csrf": csrf_of(page.text)}).status_code == 200
    assert status_of(srv.ws, "victim@example.org") == "active"
    welcome = mails_to(smtp_server, "victim@example.org", 2)[1]
    assert NAME in welcome  # the owner confirmed: the welcome may greet them by the name they gave
    # Anyone can post the address again, with any name: the already-subscribed note carries none of it.
    again = browser.post("/subscribe", data={"email": "victim@example.org", "name": "Eve: click evil.example"})
    assert again.status_code == 200
    already = mails_to(smtp_server, "victim@example.org", 3)[2]
    assert "already subscribed" in already
    assert "Eve" not in already and "evil.example" not in already and "Mallory" not in already
    for received in smtp_server.received:
        assert header_fields(received.data) == NOTICE_FIELDS
