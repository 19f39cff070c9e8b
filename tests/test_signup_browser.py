"""A reader in a real browser (Playwright driving Debian's Chromium): sign up from the form on an issue page,
confirm from the mail, change preferences, unsubscribe. Screenshots at 375 and 1280 px go to /tmp/shots-w/."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.store import Store
from tests.browser_util import _FLAGS, find_chromium
from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401  (fixture)
from tests.test_signup import link_in, mails_to, serve_with_mail, status_of

SHOTS = Path("/tmp/shots-w")


@pytest.mark.slow
@pytest.mark.parametrize("width", [375, 1280])
def test_a_reader_signs_up_confirms_changes_preferences_and_leaves(
    tmp_path: Path, smtp_server: MailServer, width: int
) -> None:
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    assert chromium is not None, "Chromium is not available (apt-get install -y chromium)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    srv = serve_with_mail(tmp_path / "work", smtp_server)
    email = f"reader{width}@example.org"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium, args=[a for a in _FLAGS if a != "--headless"]
            )
            page = browser.new_page(viewport={"width": width, "height": 900})

            def shot(name: str) -> None:
                page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
                assert page.evaluate("document.documentElement.scrollWidth") <= width, name

            page.goto(srv.base + "/issues/1/")
            page.fill("#signup-email", email)
            shot("1-issue-page")
            page.locator("footer").screenshot(path=str(SHOTS / f"1-issue-footer-{width}.png"))
            page.click("form.signup button[type=submit]")
            page.wait_for_selector("text=Check your inbox")
            shot("2-check-inbox")

            confirm = link_in(mails_to(smtp_server, email, 1)[0], "/confirm/")
            page.goto(confirm)
            shot("3-confirm")
            assert status_of(srv.ws, email) == "pending"
            page.click("text=确认订阅 · Confirm")
            page.wait_for_selector("text=You are subscribed")
            shot("4-confirmed")
            assert status_of(srv.ws, email) == "active"

            preferences = link_in(mails_to(smtp_server, email, 2)[1], "/preferences/")
            page.goto(preferences)
            page.fill("#name", "林 Reader")
            page.click("text=保存称呼 · Save name")
            page.wait_for_selector("text=Your name is saved.")
            shot("5-preferences")
            page.click("text=暂停邮件 · Pause the email")
            page.wait_for_selector("text=The email is paused; resume it any time.")
            assert status_of(srv.ws, email) == "paused"
            page.click("button[value=stop]")
            page.wait_for_selector("text=You are unsubscribed and will get no further email.")
            shot("6-unsubscribed")
            assert status_of(srv.ws, email) == "unsubscribed"
            with Store.open(srv.ws.state) as store:
                found = store.subscriber(email)
            assert found is not None and found.name == "林 Reader"
            browser.close()
    finally:
        srv.stop()
