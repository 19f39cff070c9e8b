"""Signup, confirmation and the preference page end to end: a real `digest serve` on 127.0.0.1, a real SMTP sink
(aiosmtpd) and the real state file, driven over HTTP as a browser would (Origin / Sec-Fetch-Site headers, cookies)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from digest.store import TABLES, Store
from digest.tokens import Purpose, make_token, preferences_link, unsubscribe_link
from tests.conftest import Workspace
from tests.mail_util import MailServer, free_port, smtp_server_fixture  # noqa: F401  (fixture)
from tests.test_cli_render import paper
from tests.test_web import NOW, SECRET, Server, make_workspace, start_server

LINK = re.compile(r"https?://\S+")


def serve_with_mail(root: Path, smtp: MailServer, state: Path | str | None = None, **settings: str) -> Server:
    """Render the sample site for a server on a free port (so the site's forms post to it), then serve it."""
    ws = make_workspace(root, state)
    port = free_port()
    ws.env.update(
        {
            "DIGEST_SITE_URL": f"http://127.0.0.1:{port}/",
            "DIGEST_SMTP__HOST": "127.0.0.1",
            "DIGEST_SMTP__PORT": str(smtp.port),
            "DIGEST_SMTP__SECURITY": "none",
            "DIGEST_FROM_ADDRESS": "论文周报 <digest@example.org>",
            **{f"DIGEST_{k.upper()}": v for k, v in settings.items()},
        }
    )
    ws.run("render", "--now", NOW)
    return start_server(ws, port=port)


@pytest.fixture
def srv(tmp_path: Path, smtp_server: MailServer, state: Path | str) -> Iterator[Server]:
    server = serve_with_mail(tmp_path / "work", smtp_server, state, signup_address_limit="2")
    yield server
    server.stop()


def mails_to(smtp: MailServer, address: str, count: int, timeout: float = 10) -> list[str]:
    """The plain-text bodies of the first `count` messages to `address` (waits for them to arrive)."""
    deadline = time.monotonic() + timeout
    while len(smtp.to(address)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    received = smtp.to(address)
    assert len(received) >= count, f"{len(received)} mails to {address}, expected {count}"
    return [str(m.message.get_content()) for m in received]


def link_in(body: str, path: str) -> str:
    return next(url for url in LINK.findall(body) if path in url)


def status_of(ws: Workspace, email: str) -> str | None:
    rows = ws.sql("SELECT status FROM subscribers WHERE email_key = ?", email.lower())
    return str(rows[0][0]) if rows else None


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]


def subscriber(ws: Workspace, email: str) -> object:
    with Store.open(ws.state_location) as store:
        return store.subscriber(email)


# --- the whole flow ------------------------------------------------------------------------------------


@pytest.mark.both_states
def test_sign_up_confirm_and_receive_the_issue(srv: Server, browser: httpx.Client, smtp_server: MailServer) -> None:
    # The short form on every issue page posts here.
    issue_page = browser.get("/issues/1/").text
    assert f'action="{srv.base}/subscribe"' in issue_page and 'name="website"' in issue_page
    answer = browser.post("/subscribe", data={"email": "Ada@Example.org", "website": ""})
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert status_of(srv.ws, "ada@example.org") == "pending"
    assert "1 subscriber: 0 active, 1 pending" in srv.ws.run("subscribers", "list").stderr

    # Pending addresses get no issue.
    srv.ws.env.update({"DIGEST_SMTP__HOST": "127.0.0.1", "DIGEST_SMTP__PORT": str(smtp_server.port)})
    srv.ws.run("send")
    [confirmation] = mails_to(smtp_server, "ada@example.org", 1)
    confirm_url = link_in(confirmation, "/confirm/")
    assert "ada" not in confirm_url.lower()

    # GET (what a link scanner does) confirms nobody; the page's button POSTs.
    page = browser.get(confirm_url)
    assert page.status_code == 200 and "确认订阅" in page.text and "Confirm" in page.text
    assert status_of(srv.ws, "ada@example.org") == "pending"
    done = browser.post(confirm_url, data={"csrf": csrf_of(page.text)})
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert status_of(srv.ws, "ada@example.org") == "active"

    welcome = mails_to(smtp_server, "ada@example.org", 2)[1]
    assert f"{srv.base}/issues/1/" in welcome
    assert link_in(welcome, "/preferences/")

    # Replaying the confirmation is refused.
    assert browser.post(confirm_url, data={"csrf": csrf_of(page.text)}).status_code == 409
    assert browser.get(confirm_url).status_code == 409

    result = srv.ws.run("send")
    assert "1 sent" in result.stdout
    issue_mail = smtp_server.to("ada@example.org")[-1].message
    assert "第 1 期" in str(issue_mail["Subject"])

    # The next issue, published after she joined, reaches her once.
    srv.ws.add_seed("002_next.md", paper("A Later Paper", "后来的论文", "https://arxiv.org/abs/2410.00001"))
    srv.ws.run("render", "--now", "2024-09-30T08:00:00+08:00")
    assert "1 sent" in srv.ws.run("send").stdout
    assert "第 2 期" in str(smtp_server.to("ada@example.org")[-1].message["Subject"])
    again = srv.ws.run("send").stdout
    assert "0 sent" in again and "1 skipped" in again

    listing = srv.ws.run("subscribers", "list").stdout
    assert re.search(r"Ada@example.org\s+active\s+form", listing)
    export = srv.ws.run("subscribers", "export").stdout.splitlines()
    assert export[0] == "email,name,status,subscribed,unsubscribed,source,signup_ip,confirmed"
    assert export[1].startswith("Ada@example.org,,active,") and ",form,127.0.0.1,2" in export[1]


def test_the_full_form_with_its_csrf_cookie(srv: Server, smtp_server: MailServer) -> None:
    with httpx.Client(base_url=srv.base, timeout=10) as client:  # no Origin header: the token must do
        form = client.get("/subscribe")
        assert form.status_code == 200 and "digest_csrf" in form.headers["set-cookie"]
        assert "SameSite=strict" in form.headers["set-cookie"] and "HttpOnly" in form.headers["set-cookie"]
        answer = client.post("/subscribe", data={"email": "bo@example.org", "name": "Bo", "csrf": csrf_of(form.text)})
        assert answer.status_code == 200 and "Check your inbox" in answer.text
    mails_to(smtp_server, "bo@example.org", 1)


def test_a_cross_site_post_mails_nobody(srv: Server, smtp_server: MailServer) -> None:
    headers = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    response = httpx.post(srv.base + "/subscribe", data={"email": "victim@example.org"}, headers=headers)
    assert response.status_code == 403 and "Please press Subscribe once more" in response.text
    assert 'value="victim@example.org"' in response.text
    assert status_of(srv.ws, "victim@example.org") is None
    time.sleep(0.5)
    assert smtp_server.to("victim@example.org") == []


# --- no enumeration, abuse limits ----------------------------------------------------------------------


def test_the_answer_is_the_same_whatever_the_address_state(srv: Server, browser: httpx.Client) -> None:
    srv.ws.run("subscribers", "add", "known@example.org")
    srv.ws.run("subscribers", "add", "gone@example.org")
    srv.ws.run("subscribers", "remove", "gone@example.org")
    browser.post("/subscribe", data={"email": "waiting@example.org"})
    pages = {
        email: browser.post("/subscribe", data={"email": email})
        for email in ("new@example.org", "waiting@example.org", "known@example.org", "gone@example.org")
    }
    assert {r.status_code for r in pages.values()} == {200}
    assert len({r.text for r in pages.values()}) == 1
    # The unsubscribed address goes through confirmation again; the active one stays active.
    assert status_of(srv.ws, "gone@example.org") == "pending"
    assert status_of(srv.ws, "known@example.org") == "active"


@pytest.mark.both_states
def test_confirmation_mails_per_address_are_limited(
    srv: Server, browser: httpx.Client, smtp_server: MailServer
) -> None:
    for _ in range(5):
        assert browser.post("/subscribe", data={"email": "target@example.org"}).status_code == 200
    time.sleep(1.0)
    assert len(smtp_server.to("target@example.org")) == 2  # signup_address_limit


def test_signups_per_ip_are_limited(tmp_path: Path, smtp_server: MailServer) -> None:
    server = serve_with_mail(tmp_path / "work", smtp_server, signup_ip_limit="3")
    try:
        headers = {"Origin": server.base, "Sec-Fetch-Site": "same-origin"}
        codes = [
            httpx.post(server.base + "/subscribe", data={"email": f"p{i}@example.org"}, headers=headers).status_code
            for i in range(5)
        ]
        assert codes == [200, 200, 200, 429, 429]
        assert status_of(server.ws, "p4@example.org") is None
        # The limit lives in the state: a restarted server still knows it.
        server.stop()
        server = start_server(server.ws, port=server.port)
        again = httpx.post(server.base + "/subscribe", data={"email": "p5@example.org"}, headers=headers)
        assert again.status_code == 429 and "Too many requests" in again.text
    finally:
        server.stop()


def test_the_honeypot_catches_bots(srv: Server, browser: httpx.Client, smtp_server: MailServer) -> None:
    answer = browser.post("/subscribe", data={"email": "bot@example.org", "website": "http://spam.example"})
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert status_of(srv.ws, "bot@example.org") is None
    time.sleep(0.5)
    assert smtp_server.to("bot@example.org") == []


@pytest.mark.parametrize("email", ["not-an-address", "a@b", "", "x" * 400 + "@example.org", "<script>@x.org"])
def test_invalid_addresses_get_a_clear_400(srv: Server, browser: httpx.Client, email: str) -> None:
    response = browser.post("/subscribe", data={"email": email})
    assert response.status_code == 400
    assert "not a valid email address" in response.text and "Traceback" not in response.text
    assert "<script>@" not in response.text


def test_oversized_and_odd_bodies_get_clear_4xx(srv: Server, browser: httpx.Client) -> None:
    big = browser.post("/subscribe", data={"email": "a@example.org", "name": "x" * 40_000})
    assert big.status_code == 413 and "Request too large" in big.text
    files = browser.post("/subscribe", files={"email": ("a.txt", b"a@example.org")})
    assert files.status_code == 400
    for response in (big, files):
        assert "Traceback" not in response.text
    assert "Traceback" not in srv.log()


# --- tokens --------------------------------------------------------------------------------------------


def pending(srv: Server, browser: httpx.Client, email: str) -> object:
    browser.post("/subscribe", data={"email": email})
    found = subscriber(srv.ws, email)
    assert found is not None
    return found


def test_forged_expired_and_wrong_purpose_tokens_are_refused(srv: Server, browser: httpx.Client) -> None:
    sub = pending(srv, browser, "tok@example.org")
    site = srv.base + "/"
    now = datetime.now(UTC)
    good = make_token(SECRET, Purpose.CONFIRM, site, sub, issued=now)  # type: ignore[arg-type]
    expired = make_token(SECRET, Purpose.CONFIRM, site, sub, issued=now - timedelta(days=8))  # type: ignore[arg-type]
    other_list = make_token(SECRET, Purpose.CONFIRM, "https://other.example/", sub, issued=now)  # type: ignore[arg-type]
    forged = make_token("another-secret-0123456789abcdef", Purpose.CONFIRM, site, sub, issued=now)  # type: ignore[arg-type]
    preferences_token = preferences_link(site, SECRET, sub).rsplit("/", 1)[1]  # type: ignore[arg-type]
    unsubscribe_token = unsubscribe_link(site + "unsubscribe", SECRET, sub).split("token=")[1]  # type: ignore[arg-type]

    assert browser.get(f"/confirm/{expired}").status_code == 410
    for token in (good[:-3] + "AAA", forged, other_list, preferences_token, unsubscribe_token, "garbage"):
        for response in (browser.get(f"/confirm/{token}"), browser.post(f"/confirm/{token}", data={"csrf": "x"})):
            assert response.status_code == 400, token
            assert "Invalid link" in response.text
    # A confirm token opens no preference page and unsubscribes nobody.
    assert browser.get(f"/preferences/{good}").status_code == 400
    assert (
        browser.post("/unsubscribe", params={"token": good}, data={"List-Unsubscribe": "One-Click"}).status_code == 400
    )
    # Without the page's CSRF token the good link confirms nobody either.
    assert browser.post(f"/confirm/{good}", data={}).status_code == 403
    assert status_of(srv.ws, "tok@example.org") == "pending"
    assert browser.get(f"/confirm/{good}").status_code == 200


@pytest.mark.both_states
def test_a_new_signup_kills_the_links_of_the_old_subscription(
    srv: Server, browser: httpx.Client, smtp_server: MailServer
) -> None:
    browser.post("/subscribe", data={"email": "again@example.org"})
    first = link_in(mails_to(smtp_server, "again@example.org", 1)[0], "/confirm/")
    page = browser.get(first)
    browser.post(first, data={"csrf": csrf_of(page.text)})
    preferences = link_in(mails_to(smtp_server, "again@example.org", 2)[1], "/preferences/")
    prefs_page = browser.get(preferences)
    browser.post(preferences, data={"csrf": csrf_of(prefs_page.text), "action": "stop"})
    assert status_of(srv.ws, "again@example.org") == "unsubscribed"
    browser.post("/subscribe", data={"email": "again@example.org"})
    assert status_of(srv.ws, "again@example.org") == "pending"
    assert browser.get(preferences).status_code == 410
    assert browser.get(first).status_code == 410


# --- the preference page -------------------------------------------------------------------------------


def confirmed(srv: Server, browser: httpx.Client, smtp: MailServer, email: str, name: str = "") -> str:
    """Sign `email` up and confirm it; returns its preference page URL (from the welcome mail)."""
    browser.post("/subscribe", data={"email": email, "name": name})
    confirm = link_in(mails_to(smtp, email, 1)[0], "/confirm/")
    browser.post(confirm, data={"csrf": csrf_of(browser.get(confirm).text)})
    return link_in(mails_to(smtp, email, 2)[1], "/preferences/")


def personal_data_url(browser: httpx.Client, smtp: MailServer, preferences: str, email: str, nth: int) -> str:
    """Ask on the preference page for a link to my data; the link of the mail that brings it (the `nth` to
    `email`)."""
    page = browser.get(preferences)
    asked = browser.post(preferences, data={"csrf": csrf_of(page.text), "action": "data-link"})
    assert asked.status_code == 200 and "works for an hour" in asked.text
    return link_in(mails_to(smtp, email, nth)[nth - 1], "/my-data/")


@pytest.mark.both_states
def test_preferences_name_pause_resume_and_data(srv: Server, browser: httpx.Client, smtp_server: MailServer) -> None:
    url = confirmed(srv, browser, smtp_server, "pref@example.org", name="Pref")
    page = browser.get(url)
    assert page.status_code == 200 and "pref@example.org" in page.text and 'value="Pref"' in page.text
    assert (
        page.headers["referrer-policy"] == "no-referrer"
        and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    )
    csrf = csrf_of(page.text)

    renamed = browser.post(url, data={"csrf": csrf, "action": "name", "name": "<b>Grace</b>"})
    assert renamed.status_code == 200 and "&lt;b&gt;Grace&lt;/b&gt;" in renamed.text and "<b>Grace" not in renamed.text
    assert browser.post(url, data={"csrf": csrf, "action": "pause"}).status_code == 200
    assert status_of(srv.ws, "pref@example.org") == "paused"
    assert browser.post(url, data={"csrf": csrf, "action": "resume"}).status_code == 200
    assert status_of(srv.ws, "pref@example.org") == "active"
    assert browser.post(url, data={"csrf": "forged", "action": "pause"}).status_code == 403
    assert browser.post(url, data={"csrf": csrf, "action": "explode"}).status_code == 400
    assert status_of(srv.ws, "pref@example.org") == "active"

    data = browser.post(
        my_data := personal_data_url(browser, smtp_server, url, "pref@example.org", 3),
        data={"csrf": csrf_of(browser.get(my_data).text), "action": "export"},
    )
    assert data.status_code == 200 and data.headers["content-type"].startswith("application/json")
    assert "attachment" in data.headers["content-disposition"]
    mine = json.loads(data.text)
    assert mine["subscriber"] == {"email": "pref@example.org", "name": "<b>Grace</b>", "status": "active", "topics": []}
    assert mine["consent"]["source"] == "form" and mine["consent"]["signup_ip"] == "127.0.0.1"
    assert mine["consent"]["confirmed"] and mine["deliveries"] == []


@pytest.mark.both_states
def test_preferences_pick_topics_and_the_next_send_holds_only_their_papers(
    srv: Server, browser: httpx.Client, smtp_server: MailServer
) -> None:
    url = confirmed(srv, browser, smtp_server, "robots@example.org")
    page = browser.get(url).text
    boxes = re.findall(r'<input type="checkbox" name="topic-([a-z-]+)" value="yes"( checked)?>', page)
    assert [slug for slug, _ in boxes][:2] == ["robotics", "agents"] and len(boxes) == 9
    assert not any(checked for _, checked in boxes)  # none ticked: every paper
    csrf = csrf_of(page)

    forged = browser.post(url, data={"csrf": "forged", "action": "topics", "topic-robotics": "yes"})
    assert forged.status_code == 403
    saved = browser.post(url, data={"csrf": csrf, "action": "topics", "topic-robotics": "yes", "topic-nope": "yes"})
    assert saved.status_code == 200 and "Your topics are saved" in saved.text
    assert 'name="topic-robotics" value="yes" checked' in saved.text
    assert 'name="topic-agents" value="yes">' in saved.text
    with Store.open(srv.ws.state_location) as store:
        sub = store.subscriber("robots@example.org")
        assert sub is not None and store.subscriber_topics(sub.id) == {sub.id: ("robotics",)}
    my_data = personal_data_url(browser, smtp_server, url, "robots@example.org", 3)
    export = browser.post(my_data, data={"csrf": csrf_of(browser.get(my_data).text), "action": "export"})
    assert json.loads(export.text)["subscriber"]["topics"] == ["robotics"]

    # The next send: only the robotics paper of the sample issue.
    srv.ws.run("send")
    issue_mail = [m for m in smtp_server.to("robots@example.org") if "第 1 期" in str(m.message["Subject"])]
    [received] = issue_mail
    text = str(received.message.get_body(preferencelist=("plain",)).get_content())
    assert "RACER" in text and "ShowUI" not in text and "1 / 23 篇论文" in text

    # Ticking none again means every paper.
    cleared = browser.post(url, data={"csrf": csrf, "action": "topics"})
    assert cleared.status_code == 200 and " checked" not in cleared.text.split("主题")[1].split("</form>")[0]
    with Store.open(srv.ws.state_location) as store:
        assert store.subscriber_topics() == {}


def test_topics_ticked_on_the_signup_form_are_kept_but_cannot_change_an_active_subscription(
    srv: Server, browser: httpx.Client, smtp_server: MailServer
) -> None:
    form = browser.get("/subscribe").text
    assert re.findall(r'name="topic-([a-z-]+)" value="yes">', form)[:2] == ["robotics", "agents"]
    picked = {"email": "picky@example.org", "topic-robotics": "yes", "topic-agents": "yes", "topic-nope": "yes"}
    assert browser.post("/subscribe", data=picked).status_code == 200
    with Store.open(srv.ws.state_location) as store:
        sub = store.subscriber("picky@example.org")
        assert sub is not None and store.subscriber_topics(sub.id) == {sub.id: ("robotics", "agents")}
    # Once active, a stranger posting the form with the address cannot change what the reader gets.
    url = confirmed(srv, browser, smtp_server, "active@example.org")
    assert browser.post("/subscribe", data={"email": "active@example.org", "topic-llm": "yes"}).status_code == 200
    with Store.open(srv.ws.state_location) as store:
        active = store.subscriber("active@example.org")
        assert active is not None and store.subscriber_topics(active.id) == {}
    assert " checked" not in browser.get(url).text


@pytest.mark.both_states
def test_delete_me_erases_the_row_and_an_import_needs_resubscribe(
    srv: Server, browser: httpx.Client, smtp_server: MailServer
) -> None:
    url = confirmed(srv, browser, smtp_server, "leave@example.org")
    my_data = personal_data_url(browser, smtp_server, url, "leave@example.org", 3)
    csrf = csrf_of(browser.get(my_data).text)
    unconfirmed = browser.post(my_data, data={"csrf": csrf, "action": "delete"})
    assert unconfirmed.status_code == 400 and status_of(srv.ws, "leave@example.org") == "active"
    gone = browser.post(my_data, data={"csrf": csrf, "action": "delete", "confirm_delete": "yes"})
    assert gone.status_code == 200 and "Deleted" in gone.text
    assert status_of(srv.ws, "leave@example.org") is None
    dump = repr([srv.ws.sql(f"SELECT * FROM {table}") for table, _ in TABLES])
    assert "leave@example.org" not in dump  # only the hash is left
    assert browser.get(url).status_code == 410
    assert browser.get(my_data).status_code == 410

    csv = srv.ws.root / "people.csv"
    csv.write_text("email\nleave@example.org\n", encoding="utf-8")
    refused = srv.ws.run("subscribers", "import", str(csv))
    assert "0 added" in refused.stdout and "1 kept unsubscribed or suppressed" in refused.stdout
    assert status_of(srv.ws, "leave@example.org") is None
    added = srv.ws.run("subscribers", "add", "leave@example.org", check=False)
    assert added.returncode == 1 and "suppressed" in added.stdout
    forced = srv.ws.run("subscribers", "import", "--resubscribe", str(csv))
    assert "1 added" in forced.stdout
    assert status_of(srv.ws, "leave@example.org") == "active"
