"""Behind a trusted proxy the client address comes from X-Forwarded-For, but only an IP address is taken from it:
anything else falls back to the peer address, and nothing raw reaches the state, the log or `subscribers export`.
Through a real `digest serve`, over a raw socket (an HTTP client library would refuse to send such headers)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401  (fixture)
from tests.test_signup import serve_with_mail
from tests.test_web import Server


@pytest.fixture
def proxied(tmp_path: Path, smtp_server: MailServer) -> Iterator[Server]:
    server = serve_with_mail(tmp_path / "work", smtp_server, trusted_proxies='["127.0.0.1"]')
    yield server
    server.stop()


def raw_signup(srv: Server, email: str, forwarded_for: bytes) -> bytes:
    """POST /subscribe with this X-Forwarded-For value, byte for byte; the answer's status line."""
    body = urlencode({"email": email}).encode()
    head = (
        b"POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nSec-Fetch-Site: same-origin\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
        b"X-Forwarded-For: " + forwarded_for + b"\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(head + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


FORGED = [
    b"\x1b[2J\x1b[31mEVIL",
    b"<script>alert(1)</script>",
    b"unknown",
    b"fe80::1%\x1b[31m",  # a zone index may hold any text
    b"203.0.113.5, not-an-ip",  # the proxy appends; the last untrusted entry is the client
    b"",
]


def test_only_an_ip_address_is_taken_from_x_forwarded_for(proxied: Server) -> None:
    for n, value in enumerate(FORGED):
        assert raw_signup(proxied, f"forged{n}@example.org", value) == b"HTTP/1.1 200 OK", value
    assert raw_signup(proxied, "real@example.org", b"198.51.100.20") == b"HTTP/1.1 200 OK"
    assert raw_signup(proxied, "mapped@example.org", b"203.0.113.9, ::ffff:198.51.100.21") == b"HTTP/1.1 200 OK"
    rows = dict(proxied.ws.sql("SELECT email, signup_ip FROM subscribers"))
    assert {rows[f"forged{n}@example.org"] for n in range(len(FORGED))} == {"127.0.0.1"}
    assert rows["real@example.org"] == "198.51.100.20"
    assert rows["mapped@example.org"] == "::ffff:c633:6415"  # the canonical text of the address it names
    assert proxied.stop() == 0  # the access log is written once a second; a stop writes the rest
    assert proxied.log().count('"POST /subscribe HTTP/1.1" 200') == len(FORGED) + 2
    assert "\x1b" not in proxied.log() and "<script>" not in proxied.log()


def test_export_and_list_never_print_control_characters(proxied: Server) -> None:
    # A row written by an older digest, which stored whatever the header said.
    raw_signup(proxied, "old@example.org", b"198.51.100.30")
    proxied.ws.sql(
        "UPDATE subscribers SET signup_ip = ?, name = ? WHERE email_key = 'old@example.org'",
        "\x1b]0;owned\x07\x1b[2J",
        "Old\u202eName",
    )
    export = proxied.ws.run("subscribers", "export")
    assert "\x1b" not in export.stdout and "\x07" not in export.stdout and "\u202e" not in export.stdout
    assert "\\x1b]0;owned\\x07\\x1b[2J" in export.stdout
    listing = proxied.ws.run("subscribers", "list")
    assert "\x1b" not in listing.stdout + listing.stderr and "\u202e" not in listing.stdout
