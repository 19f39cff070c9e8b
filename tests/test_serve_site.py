"""`digest serve` as a reader, a feed reader, a WebSub hub and a stranger meet it: a real server subprocess on
127.0.0.1 serving a site rendered from the sample seeds, with no `secret_key` and a WebSub hub configured."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser_util import BROWSER_ARGS, find_chromium
from tests.test_web import NOW, Server, free_port, make_workspace, start_server
from tests.test_websub import Hub

SITE = "https://digest.example.org/"
FEEDS = ["rss.xml", "atom.xml", "feed.json", "issues.xml"]


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    server = Hub()
    yield server
    server.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, hub: Hub) -> Iterator[Server]:
    """The sample site, rendered with a WebSub hub, served with no secret key (as the README's first steps do)."""
    ws = make_workspace(tmp_path_factory.mktemp("serve") / "work")
    del ws.env["DIGEST_SECRET_KEY"]
    ws.env.update({"DIGEST_SITE_URL": SITE, "DIGEST_WEBSUB_HUB": hub.url})
    ws.run("render", "--now", NOW)
    srv = start_server(ws)
    yield srv
    srv.stop()


@pytest.fixture
def client(served: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.base, timeout=10) as c:
        yield c


# --- search ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_search_on_the_served_site_finds_chinese_and_english_words(served: Server) -> None:
    from playwright.sync_api import expect, sync_playwright

    chromium = find_chromium()
    assert chromium is not None, "Chromium is not available (apt-get install -y chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        try:
            page = browser.new_page()
            refused: list[str] = []
            page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
            page.goto(served.base + "/search/index.html")
            for query, found in (("机器人", 1), ("diffusion", 8)):
                page.fill("#q", query)
                expect(page.locator("#status")).to_have_text(f"找到 {found} 篇论文")
                expect(page.locator("#results li")).to_have_count(found)
            assert refused == []
        finally:
            browser.close()


def test_the_site_may_run_its_own_scripts_and_no_others(client: httpx.Client) -> None:
    page = client.get("/search/index.html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy and "http" not in policy
    script = client.get("/search/search.js")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.headers["x-content-type-options"] == "nosniff"


# --- no secret key -----------------------------------------------------------------------------------------


def test_without_a_secret_key_the_site_and_feeds_are_served(client: httpx.Client) -> None:
    for path in ["/", "/issues/1/", "/search/index.html", *(f"/{name}" for name in FEEDS)]:
        assert client.get(path).status_code == 200, path


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/subscribe"),
        ("POST", "/subscribe"),
        ("GET", "/confirm/abc"),
        ("POST", "/confirm/abc"),
        ("GET", "/preferences/abc"),
        ("POST", "/preferences/abc"),
        ("GET", "/my-data/abc"),
        ("POST", "/my-data/abc"),
        ("GET", "/unsubscribe?token=abc"),
        ("POST", "/unsubscribe?token=abc"),
    ],
)
def test_without_a_secret_key_signup_answers_that_it_is_not_set_up(
    client: httpx.Client, method: str, path: str
) -> None:
    response = client.request(method, path, data={"email": "reader@example.org"} if method == "POST" else None)
    assert response.status_code == 503
    assert "Email subscription is not set up" in response.text and "邮件订阅尚未开通" in response.text
    assert 'action="/subscribe"' not in response.text  # the page offers no form that cannot work


def test_the_signup_form_of_a_static_page_leads_to_that_page(client: httpx.Client) -> None:
    issue = client.get("/issues/1/").text
    assert f'class="signup" method="post" action="{SITE}subscribe"' in issue
    posted = client.post(
        "/subscribe", data={"email": "reader@example.org", "website": ""}, headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert posted.status_code == 503 and "not set up" in posted.text


# --- WebSub ------------------------------------------------------------------------------------------------


def test_the_render_pinged_the_hub_with_mode_url_and_topic(served: Server, hub: Hub) -> None:
    assert hub.pings
    for ping in hub.pings:
        assert ping["hub.mode"] == ["publish"]
        assert ping["hub.topic"] == ping["hub.url"]
    assert {SITE + name for name in FEEDS} <= {ping["hub.topic"][0] for ping in hub.pings}


def test_every_subscription_feed_carries_link_headers_for_hub_and_self(
    served: Server, hub: Hub, client: httpx.Client
) -> None:
    topic = next(p for p in sorted((served.ws.site / "topics").iterdir()) if p.is_dir())
    paths = [*FEEDS, *(f"topics/{topic.name}/{name}" for name in FEEDS[:3])]
    for path in paths:
        for response in (client.get("/" + path), client.head("/" + path)):
            assert response.status_code == 200, path
            links = response.headers.get_list("link", split_commas=True)
            assert f'<{hub.url}>; rel="hub"' in links, path
            assert f'<{SITE}{path}>; rel="self"' in links, path
    # feed.json pages on to its JSON archive page (JSON Feed 1.1 next_url), served as a feed too.
    assert client.get("/feed.json").json()["next_url"] == SITE + "archive/feed-1.json"
    archive = client.get("/archive/feed-1.json")
    assert archive.headers["content-type"] == "application/feed+json; charset=utf-8"
    assert len(archive.json()["items"]) == 23 and "next_url" not in archive.json()
    # Pages and archive documents are no subscription feeds.
    assert "link" not in client.get("/index.html").headers
    assert "link" not in client.get("/archive/issues-1.xml").headers


# --- strangers ---------------------------------------------------------------------------------------------


def test_a_folder_redirect_never_names_the_host_the_client_sent(client: httpx.Client) -> None:
    response = client.get("/issues/1", headers={"Host": "evil.example"})
    assert response.status_code == 307
    assert response.headers["location"] == "./1/"
    assert client.get("/issues/1", follow_redirects=True).url.path == "/issues/1/"
    assert client.get("/topics?x=1").headers["location"] == "./topics/?x=1"


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_content_length_with_transfer_encoding_is_refused_and_the_connection_closed(served: Server) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            b"GET /rss.xml HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.count(b"HTTP/1.1 ") == 1  # nothing after it was read as a request


def test_a_busy_port_is_one_error_line(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "work")
    ws.env["DIGEST_SITE_URL"] = "https://digest.example.org/"  # no warning about the default: the error alone
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        result = ws.run("serve", "--port", str(port), check=False, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"digest: error: cannot listen on 127.0.0.1:{port}: Address already in use")


def test_one_clients_idle_connections_leave_room_for_others(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "work")
    ws.env.update(
        {
            "DIGEST_WEB_MAX_CONNECTIONS": "20",
            "DIGEST_WEB_MAX_CLIENT_CONNECTIONS": "5",
            "DIGEST_WEB_HEADER_TIMEOUT": "120",  # the idle sockets stay for the whole test
        }
    )
    ws.run("render", "--now", NOW)
    srv = start_server(ws)
    hogs: list[socket.socket] = []
    try:
        for _ in range(30):
            hogs.append(socket.create_connection(("127.0.0.1", srv.port), timeout=30))
        # All but five connections of that address are answered 503 and closed at once (which five stay open
        # depends on the order the workers accept them in) ...
        refused: list[socket.socket] = []
        deadline = time.monotonic() + 30
        while len(refused) < 25 and time.monotonic() < deadline:
            ready, _, _ = select.select([s for s in hogs if s not in refused], [], [], 1)
            for sock in ready:
                assert read_until_closed(sock).startswith(b"HTTP/1.1 503 ")
                refused.append(sock)
        assert len(refused) == 25
        assert select.select([s for s in hogs if s not in refused], [], [], 1)[0] == []  # five stay open
        # ... while another client (another loopback address) is served.
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30, source_address=("127.0.0.2", 0)) as sock:
            sock.sendall(b"GET /rss.xml HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert read_until_closed(sock).startswith(b"HTTP/1.1 200 ")
        # Closed connections are counted out: once the server has seen them go, the first client is served again.
        for sock in hogs:
            sock.close()
        statuses = []
        for _ in range(100):
            statuses.append(httpx.get(srv.base + "/", timeout=10).status_code)
            if statuses[-1] == 200:
                break
            time.sleep(0.1)
        assert statuses[-1] == 200, statuses
    finally:
        for sock in hogs:
            sock.close()
        srv.stop()
