"""A form posted while a render holds the state (on SQLite: one long write transaction) gets 503 with Retry-After,
never 500: through a real `digest serve`, with the real state file held by a second connection as a render holds
it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401  (fixture)
from tests.test_signup import confirmed, csrf_of, link_in, mails_to, serve_with_mail, status_of
from tests.test_web import Server


@pytest.fixture
def srv(tmp_path: Path, smtp_server: MailServer) -> Iterator[Server]:
    server = serve_with_mail(tmp_path / "work", smtp_server, web_db_wait="0.2")
    yield server
    server.stop()


def test_posts_while_a_render_holds_the_state_get_503_with_retry_after(
    srv: Server, browser: httpx.Client, smtp_server: MailServer
) -> None:
    preferences = confirmed(srv, browser, smtp_server, "member@example.org")
    preferences_csrf = csrf_of(browser.get(preferences).text)
    browser.post("/subscribe", data={"email": "waiting@example.org"})
    confirm = link_in(mails_to(smtp_server, "waiting@example.org", 1)[0], "/confirm/")
    confirm_csrf = csrf_of(browser.get(confirm).text)

    render = sqlite3.connect(srv.ws.state, isolation_level=None)
    render.execute("BEGIN IMMEDIATE")  # what `digest render` holds while it renders
    try:
        answers = {
            "subscribe": browser.post("/subscribe", data={"email": "late@example.org"}),
            "confirm": browser.post(confirm, data={"csrf": confirm_csrf}),
            "preferences": browser.post(preferences, data={"csrf": preferences_csrf, "action": "pause"}),
        }
        for what, answer in answers.items():
            assert answer.status_code == 503, what
            assert answer.headers["retry-after"].isdigit(), what
            assert "The server is busy" in answer.text, what
        # Reading never waits for the writer.
        assert browser.get(preferences).status_code == 200
    finally:
        render.execute("ROLLBACK")
        render.close()
    assert "Traceback" not in srv.log() and " 500" not in srv.log()
    assert status_of(srv.ws, "late@example.org") is None
    assert status_of(srv.ws, "waiting@example.org") == "pending"
    assert status_of(srv.ws, "member@example.org") == "active"

    # Once the render is done, the same posts go through.
    assert browser.post("/subscribe", data={"email": "late@example.org"}).status_code == 200
    assert browser.post(confirm, data={"csrf": confirm_csrf}).status_code == 200
    assert browser.post(preferences, data={"csrf": preferences_csrf, "action": "pause"}).status_code == 200
    assert status_of(srv.ws, "member@example.org") == "paused"
