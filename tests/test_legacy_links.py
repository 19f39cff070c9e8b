"""Unsubscribe links mailed before tokens named subscriptions (the signed address) work until the end of
LEGACY_UNSUBSCRIBE_LAST_DAY and not after: then the page says the link is no longer valid and offers to mail a new
one. And a `secret_key` written into the TOML file is warned about, once. Through a real `digest serve` (its clock
pinned with the hidden --now) and a real SMTP sink."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import httpx
import pytest

from digest.tokens import LEGACY_UNSUBSCRIBE_LAST_DAY, BadToken, read_legacy_unsubscribe_token
from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401  (fixture)
from tests.test_signup import link_in, mails_to, serve_with_mail, status_of
from tests.test_web import SECRET, Server, legacy_token, start_server

AFTER = "2027-07-01T09:00:00+08:00"


def test_the_last_day_is_a_fixed_date() -> None:
    assert date(2027, 6, 30) == LEGACY_UNSUBSCRIBE_LAST_DAY
    token = legacy_token(SECRET, "old@example.org")
    last = datetime.fromisoformat("2027-06-30T23:59:00+08:00")
    assert read_legacy_unsubscribe_token(SECRET, token, last) == "old@example.org"
    with pytest.raises(BadToken) as raised:
        read_legacy_unsubscribe_token(SECRET, token, datetime.fromisoformat(AFTER))
    assert raised.value.expired
    assert read_legacy_unsubscribe_token(SECRET, "not-a-token", datetime.fromisoformat(AFTER)) is None


@pytest.fixture
def late(tmp_path: Path, smtp_server: MailServer) -> Iterator[Server]:
    """A server whose clock says it is after the legacy links' last day, with one active subscriber."""
    server = serve_with_mail(tmp_path / "work", smtp_server)
    server.stop()
    server.ws.run("subscribers", "add", "old@example.org")
    server = start_server(server.ws, port=server.port, extra_args=("--now", AFTER))
    yield server
    server.stop()


def test_after_its_last_day_a_legacy_link_is_dead_and_offers_a_new_one(late: Server, smtp_server: MailServer) -> None:
    url = f"{late.base}/unsubscribe?token={legacy_token(SECRET, 'old@example.org')}"
    page = httpx.get(url, timeout=10)
    assert page.status_code == 410 and "Link no longer valid" in page.text and "2027-06-30" in page.text
    # RFC 8058's one-click post of such a link unsubscribes nobody either.
    one_click = httpx.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=10)
    assert one_click.status_code == 410 and status_of(late.ws, "old@example.org") == "active"

    # The page's button mails the subscriber its current links.
    action = re.search(r'<form[^>]*action="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    asked = httpx.post(late.base + "/unsubscribe" + action.replace("&amp;", "&"), data={"renew": "yes"}, timeout=10)
    assert asked.status_code == 200 and "a new unsubscribe link is on its way" in asked.text
    assert status_of(late.ws, "old@example.org") == "active"
    mail = mails_to(smtp_server, "old@example.org", 1)[0]
    fresh = link_in(mail, "/unsubscribe?token=")
    assert httpx.get(fresh, timeout=10).status_code == 200
    assert link_in(mail, "/preferences/")
    # Nobody learns whether the address is on the list: the same answer for a stranger's old link.
    stranger = legacy_token(SECRET, "stranger@example.org")
    other = httpx.post(f"{late.base}/unsubscribe?token={stranger}", data={"renew": "yes"}, timeout=10)
    assert other.status_code == 200 and other.text == asked.text


def test_a_secret_key_in_the_toml_file_is_warned_about_once(tmp_path: Path, smtp_server: MailServer) -> None:
    server = serve_with_mail(tmp_path / "work", smtp_server)
    server.stop()
    ws = server.ws
    key = ws.env.pop("DIGEST_SECRET_KEY")
    config = ws.root / "digest.toml"
    config.write_text(f'secret_key = "{key}"\n', encoding="utf-8")
    result = ws.run("--config", str(config), "subscribers", "list")
    warnings = [line for line in result.stderr.splitlines() if "secret_key" in line]
    assert len(warnings) == 1 and "digest.toml" in warnings[0] and "DIGEST_SECRET_KEY" in warnings[0]
    assert key not in result.stderr
    # From the environment: no warning.
    ws.env["DIGEST_SECRET_KEY"] = key
    config.write_text("", encoding="utf-8")
    assert "secret_key" not in ws.run("--config", str(config), "subscribers", "list").stderr
