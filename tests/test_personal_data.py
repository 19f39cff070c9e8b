"""Download my data and delete me need a fresh, emailed link: the preference link in every issue never expires, so
it only asks for one. Through a real `digest serve`, a real SMTP sink (aiosmtpd) and the real state file; plus the
preference page's layout (one primary button, one topic checkbox per line)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import html5lib
import httpx
import pytest

from digest.store import Store, email_hash
from digest.tokens import PERSONAL_DATA_MAX_AGE, Purpose, make_token
from digest.web.logs import redact
from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401  (fixture)
from tests.test_signup import confirmed, csrf_of, mails_to, personal_data_url, serve_with_mail, status_of
from tests.test_web import SECRET, Server

NS = {"h": "http://www.w3.org/1999/xhtml"}


@pytest.fixture
def srv(tmp_path: Path, smtp_server: MailServer) -> Iterator[Server]:
    server = serve_with_mail(tmp_path / "work", smtp_server, signup_address_limit="2")
    yield server
    server.stop()


def test_the_long_lived_preference_link_cannot_export_or_delete(
    srv: Server, browser: httpx.Client, smtp_server: MailServer
) -> None:
    url = confirmed(srv, browser, smtp_server, "keep@example.org")
    page = browser.get(url)
    assert "/data.json" not in page.text and 'value="delete"' not in page.text
    assert browser.get(url + "/data.json").status_code == 404
    deleted = browser.post(url, data={"csrf": csrf_of(page.text), "action": "delete", "confirm_delete": "yes"})
    assert deleted.status_code == 400 and status_of(srv.ws, "keep@example.org") == "active"


def test_an_emailed_link_downloads_and_deletes_my_data(
    srv: Server, browser: httpx.Client, smtp_server: MailServer
) -> None:
    url = confirmed(srv, browser, smtp_server, "me@example.org", name="Me")
    my_data = personal_data_url(browser, smtp_server, url, "me@example.org", 3)
    assert my_data.startswith(srv.base + "/my-data/")
    mail = smtp_server.to("me@example.org")[2].message
    assert "Your data" in str(mail["Subject"]) and "一小时内" in str(mail.get_content())
    page = browser.get(my_data)
    assert page.status_code == 200 and "me@example.org" in page.text
    csrf = csrf_of(page.text)

    assert browser.post(my_data, data={"csrf": "forged", "action": "export"}).status_code == 403
    data = browser.post(my_data, data={"csrf": csrf, "action": "export"})
    assert data.status_code == 200 and "attachment" in data.headers["content-disposition"]
    assert json.loads(data.text)["subscriber"]["email"] == "me@example.org"

    assert browser.post(my_data, data={"csrf": csrf, "action": "delete"}).status_code == 400
    assert status_of(srv.ws, "me@example.org") == "active"
    gone = browser.post(my_data, data={"csrf": csrf, "action": "delete", "confirm_delete": "yes"})
    assert gone.status_code == 200 and "Deleted" in gone.text
    assert status_of(srv.ws, "me@example.org") is None
    assert srv.ws.sql("SELECT COUNT(*) FROM suppressions WHERE email_hash = ?", email_hash("me@example.org")) == [(1,)]
    assert browser.get(my_data).status_code == 410


def test_a_personal_data_link_works_for_an_hour_only(
    srv: Server, browser: httpx.Client, smtp_server: MailServer
) -> None:
    confirmed(srv, browser, smtp_server, "late@example.org")
    with Store.open(srv.ws.state_location) as store:
        sub = store.subscriber("late@example.org")
    assert sub is not None
    now = datetime.now().astimezone()
    fresh = make_token(SECRET, Purpose.PERSONAL_DATA, srv.base + "/", sub, issued=now - timedelta(minutes=50))
    stale = make_token(
        SECRET, Purpose.PERSONAL_DATA, srv.base + "/", sub, issued=now - timedelta(seconds=PERSONAL_DATA_MAX_AGE + 60)
    )
    assert browser.get(f"/my-data/{fresh}").status_code == 200
    expired = browser.get(f"/my-data/{stale}")
    assert expired.status_code == 410 and "works for an hour" in expired.text and "Preferences" in expired.text
    post = browser.post(f"/my-data/{stale}", data={"csrf": csrf_of(browser.get(f"/my-data/{fresh}").text)})
    assert post.status_code == 410 and status_of(srv.ws, "late@example.org") == "active"
    # A preference token is not a personal-data token.
    preferences = make_token(SECRET, Purpose.PREFERENCES, srv.base + "/", sub, issued=now)
    assert browser.get(f"/my-data/{preferences}").status_code == 400


def test_personal_data_links_per_subscriber_are_limited(
    srv: Server, browser: httpx.Client, smtp_server: MailServer
) -> None:
    url = confirmed(srv, browser, smtp_server, "many@example.org")
    personal_data_url(browser, smtp_server, url, "many@example.org", 3)
    personal_data_url(browser, smtp_server, url, "many@example.org", 4)
    csrf = csrf_of(browser.get(url).text)
    assert browser.post(url, data={"csrf": csrf, "action": "data-link"}).status_code == 200
    assert srv.log().count("personal-data link for subscriber") == 1  # over signup_address_limit: no mail
    mails_to(smtp_server, "many@example.org", 4)


def test_the_personal_data_token_is_redacted_from_the_access_log() -> None:
    assert redact("/my-data/abc.def") == "/my-data/[redacted]"


# --- the page's layout (issue 17) ------------------------------------------------------------------------------


def test_the_preference_page_has_one_primary_button_and_one_topic_per_line(
    srv: Server, browser: httpx.Client, smtp_server: MailServer
) -> None:
    url = confirmed(srv, browser, smtp_server, "look@example.org")
    doc = html5lib.parse(browser.get(url).text, treebuilder="lxml")
    buttons = doc.xpath("//h:main//h:button", namespaces=NS)
    primary = [b for b in buttons if "secondary" not in (b.get("class") or "").split()]
    assert len(buttons) >= 5 and ["".join(b.itertext()) for b in primary] == ["保存主题 · Save topics"]
    boxes = doc.xpath("//h:fieldset//h:input[@type='checkbox']", namespaces=NS)
    assert len(boxes) >= 2
    for box in boxes:  # each checkbox's label is alone in a block of its own
        label = box.getparent()
        assert label.tag.endswith("label") and label.getparent().tag.endswith("div")
        assert len(label.getparent().xpath(".//h:input", namespaces=NS)) == 1
