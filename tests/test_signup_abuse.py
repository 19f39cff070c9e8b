"""Signup abuse from the internet, end to end through a real `digest serve`, a real SMTP sink (aiosmtpd) and the real
state file: mail bombing one mailbox through `+tag` sub-addresses and many client addresses, and strangers signing
up addresses that bounced, complained or were deleted."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from digest.store import email_hash
from digest.subscriptions import mailbox_of, network_of
from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401  (fixture)
from tests.test_signup import mails_to, serve_with_mail, status_of
from tests.test_web import Server

OVER_LIMIT = "signup of an address over its mail limit"


def victim_mails(smtp: MailServer) -> int:
    """How many messages reached the mailbox victim@example.org, whatever `+tag` they were sent to."""
    return sum(n for rcpt, n in smtp.recipients().items() if mailbox_of(rcpt) == "victim@example.org")


def settled(srv: Server, smtp: MailServer, over_limit: int, mailed: int) -> None:
    """Wait until every signup decision was made (the log says which were refused) and the mails they allowed, and
    a sentinel signup's made after them, arrived."""
    assert srv.log().count(OVER_LIMIT) == over_limit, srv.log()
    mails_to(smtp, "sentinel@example.net", 1)
    deadline = time.monotonic() + 10
    while victim_mails(smtp) < mailed and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.fixture
def proxied(tmp_path: Path, smtp_server: MailServer, state: Path | str) -> Iterator[Server]:
    """A server behind a trusted proxy on 127.0.0.1 (so X-Forwarded-For names the client), limit 3 mails."""
    server = serve_with_mail(
        tmp_path / "work", smtp_server, state, trusted_proxies='["127.0.0.1"]', signup_address_limit="3"
    )
    yield server
    server.stop()


def post(srv: Server, email: str, client: str | None = None) -> httpx.Response:
    headers = {"Origin": srv.base, "Sec-Fetch-Site": "same-origin"}
    if client is not None:
        headers["X-Forwarded-For"] = client
    return httpx.post(srv.base + "/subscribe", data={"email": email}, headers=headers, timeout=10)


# --- the keys of the limits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "mailbox"),
    [
        ("victim@example.org", "victim@example.org"),
        ("Victim+1@Example.ORG", "victim@example.org"),
        ("victim+news+x@example.org", "victim@example.org"),
        ("VICTIM+@example.org", "victim@example.org"),
        ("vic.tim+a@example.org", "vic.tim@example.org"),  # dots are the provider's business, not ours
    ],
)
def test_sub_addresses_count_as_their_mailbox(address: str, mailbox: str) -> None:
    assert mailbox_of(address) == mailbox


@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ],
)
def test_ipv6_clients_count_per_64(ip: str, network: str) -> None:
    assert network_of(ip) == network


# --- the must-show: one mailbox, many sub-addresses, many clients ---------------------------------------------


@pytest.mark.both_states
def test_ten_sub_addresses_from_ten_clients_reach_the_mailbox_at_most_limit_times(
    proxied: Server, smtp_server: MailServer
) -> None:
    for n in range(10):
        answer = post(proxied, f"victim+{n}@example.org", client=f"203.0.113.{n + 1}")
        assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert post(proxied, "sentinel@example.net", client="198.51.100.1").status_code == 200
    settled(proxied, smtp_server, over_limit=7, mailed=3)
    assert victim_mails(smtp_server) == 3  # signup_address_limit
    # Each sub-address is still its own subscription, as before.
    assert status_of(proxied.ws, "victim+9@example.org") == "pending"
    rows = proxied.ws.sql("SELECT signup_ip FROM subscribers WHERE email LIKE ? ORDER BY id", "victim+%")
    assert [r[0] for r in rows] == [f"203.0.113.{n + 1}" for n in range(10)]


def test_addresses_of_one_ipv6_64_share_the_per_ip_limit(tmp_path: Path, smtp_server: MailServer) -> None:
    srv = serve_with_mail(tmp_path / "work", smtp_server, trusted_proxies='["127.0.0.1"]', signup_ip_limit="3")
    try:
        codes = [post(srv, f"p{n}@example.org", client=f"2001:db8:7:7::{n + 1:x}").status_code for n in range(4)]
        assert codes == [200, 200, 200, 429]
        # Another /64 is another client; an IPv4-mapped address counts as its IPv4 address.
        assert post(srv, "q@example.org", client="2001:db8:7:8::1").status_code == 200
        assert [post(srv, f"r{n}@example.org", client="198.51.100.9").status_code for n in range(3)] == [200] * 3
        assert post(srv, "s@example.org", client="::ffff:198.51.100.9").status_code == 429
        assert status_of(srv.ws, "s@example.org") is None
    finally:
        srv.stop()


# --- suppressed addresses: same answer, no mail, no change -------------------------------------------------


def without_csrf(page: str) -> str:
    return re.sub(r'name="csrf" value="[^"]*"', 'name="csrf" value=""', page)


def row_of(srv: Server, email: str) -> list[object]:
    rows = srv.ws.sql("SELECT * FROM subscribers WHERE email_key = ?", email.lower())
    return list(rows[0]) if rows else []


@pytest.mark.both_states
def test_a_suppressed_address_gets_the_same_answer_no_mail_and_keeps_its_record(
    proxied: Server, smtp_server: MailServer
) -> None:
    ws = proxied.ws
    ws.run("subscribers", "add", "bounced@example.org", "--name", "B")
    ws.run("subscribers", "add", "complained@example.org", "--name", "C")
    ws.sql(
        "UPDATE subscribers SET status = 'bounced', status_detail = '550 5.1.1 gone' WHERE email_key = ?",
        "bounced@example.org",
    )
    ws.sql(
        "UPDATE subscribers SET status = 'complained', status_detail = 'ARF abuse' WHERE email_key = ?",
        "complained@example.org",
    )
    ws.run("subscribers", "add", "left@example.org")
    ws.run("subscribers", "remove", "left@example.org")
    ws.sql(
        "INSERT INTO suppressions (email_hash, reason, created) VALUES (?, 'deleted', '2026-11-01T00:00:00+00:00')",
        email_hash("erased@example.org"),
    )
    before = {e: row_of(proxied, e) for e in ("bounced@example.org", "complained@example.org")}

    pages = {
        email: post(proxied, email, client=f"198.51.100.{n + 1}")
        for n, email in enumerate(
            [
                "new@example.org",
                "bounced@example.org",
                "complained@example.org",
                "erased@example.org",
                "left@example.org",
            ]
        )
    }
    assert {r.status_code for r in pages.values()} == {200}
    assert len({without_csrf(r.text) for r in pages.values()}) == 1
    assert post(proxied, "sentinel@example.net", client="198.51.100.99").status_code == 200
    mails_to(smtp_server, "sentinel@example.net", 1)
    mails_to(smtp_server, "new@example.org", 1)
    mails_to(smtp_server, "left@example.org", 1)  # who chose to leave may come back
    assert smtp_server.to("bounced@example.org") == []
    assert smtp_server.to("complained@example.org") == []
    assert smtp_server.to("erased@example.org") == []
    assert {e: row_of(proxied, e) for e in before} == before
    assert status_of(proxied.ws, "erased@example.org") is None
    assert status_of(proxied.ws, "left@example.org") == "pending"
    assert json.dumps(before).count("550 5.1.1 gone") == 1
