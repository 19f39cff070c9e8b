"""The fast static path of `digest serve` (issue 19) keeps every promise of the slow one, and `web_workers`
processes share one port without losing the state's guarantees: a real `digest serve` over real sockets.

The fast path answers built files inside the protocol from an index of where paths lead; these tests request each
file at least once before they change it under the server, so that the index has it and must notice."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import h11
import httpx
import pytest

from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401  (fixture)
from tests.test_cli_render import paper
from tests.test_signup import mails_to, serve_with_mail
from tests.test_web import NOW, Server, make_workspace, start_server

HUB = "https://hub.example.net/"
FEED = "/topics/robotics/rss.xml"
SECRET_TEXT = "outside the output folder"


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder next to the site, with files that must never be served."""
    folder = tmp_path_factory.mktemp("outside")
    (folder / "rss.xml").write_text(SECRET_TEXT, encoding="utf-8")
    (folder / "index.html").write_text(SECRET_TEXT, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, outside: Path) -> Iterator[Server]:
    """The sample site served by one worker (so that every request meets the same index), with a WebSub hub."""
    ws = make_workspace(tmp_path_factory.mktemp("fast") / "work")
    ws.run("render", "--now", NOW)
    (ws.site / ".x.tmp").write_text("partial write", encoding="utf-8")
    (ws.site / "leak.html").symlink_to(outside / "index.html")
    (ws.site / "out").symlink_to(outside, target_is_directory=True)
    (ws.site / "confirm").mkdir()
    (ws.site / "confirm" / "abc.html").write_text("a file where the app has a route", encoding="utf-8")
    ws.env.update({"DIGEST_WEB_WORKERS": "1", "DIGEST_WEBSUB_HUB": HUB, "DIGEST_SITE_URL": "https://d.example.org/"})
    srv = start_server(ws)
    yield srv
    srv.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=10) as c:
        yield c


def raw_get(server: Server, target: str) -> bytes:
    """A request sent byte for byte (httpx would normalize `..` and percent escapes away)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# --- what must never be served --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/../../../../../../etc/passwd",
        "/issues/../../../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/issues/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/.%2e/.%2e/.%2e/etc/passwd",
        "//etc/passwd",
        "/out/rss.xml",
        "/out/index.html",
        "/out/",
        "/leak.html",
        "/%2e%2e/outside/rss.xml",
    ],
)
def test_nothing_outside_the_folder_is_served(server: Server, target: str) -> None:
    response = raw_get(server, target)
    assert not response.startswith(b"HTTP/1.1 200"), response[:200]
    assert b"root:" not in response and SECRET_TEXT.encode() not in response


@pytest.mark.parametrize("target", ["/.x.tmp", "/%2ex.tmp", "/.digest-build.json", "/issues/1/.mail/slots.json"])
def test_hidden_files_are_refused(server: Server, target: str) -> None:
    response = raw_get(server, target)
    assert response.startswith(b"HTTP/1.1 404"), response[:200]
    assert b"partial write" not in response


def test_a_file_replaced_by_a_symlink_out_after_it_was_served_is_refused(
    server: Server, client: httpx.Client, outside: Path
) -> None:
    page = server.ws.site / "issues" / "1" / "email.txt"
    assert client.get("/issues/1/email.txt").status_code == 200  # now in the index
    moved = page.with_name("email.txt.kept")
    page.rename(moved)
    page.symlink_to(outside / "rss.xml")
    try:
        response = client.get("/issues/1/email.txt")
        assert response.status_code == 404 and SECRET_TEXT not in response.text
    finally:
        page.unlink()
        moved.rename(page)
    assert client.get("/issues/1/email.txt").status_code == 200


def test_a_folder_replaced_by_a_symlink_out_after_it_was_served_is_refused(
    server: Server, client: httpx.Client, outside: Path
) -> None:
    # O_NOFOLLOW only guards the last name: the kernel's own answer for the open handle guards the folders.
    folder = server.ws.site / "topics" / "robotics"
    assert client.get(FEED).status_code == 200
    kept = folder.with_name("robotics.kept")
    folder.rename(kept)
    folder.symlink_to(outside, target_is_directory=True)
    try:
        response = client.get(FEED)
        assert response.status_code == 404 and SECRET_TEXT not in response.text
    finally:
        folder.unlink()
        kept.rename(folder)
    assert client.get(FEED).status_code == 200


def test_the_apps_own_paths_are_never_answered_from_the_folder(client: httpx.Client) -> None:
    response = client.get("/confirm/abc.html")
    assert "a file where the app has a route" not in response.text


# --- what every file carries ----------------------------------------------------------------------------------


def test_pages_and_feeds_keep_their_types_and_security_headers(server: Server, client: httpx.Client) -> None:
    page = client.get("/issues/1/")
    assert page.status_code == 200 and page.content == (server.ws.site / "issues" / "1" / "index.html").read_bytes()
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["cache-control"] == "no-cache"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    feed = client.get(FEED)
    assert feed.headers["content-type"] == "application/rss+xml; charset=utf-8"
    assert feed.headers["link"] == f'<{HUB}>; rel="hub", <https://d.example.org/topics/robotics/rss.xml>; rel="self"'
    assert "content-security-policy" not in feed.headers
    head = client.head(FEED)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str((server.ws.site / FEED[1:]).stat().st_size)


def test_etag_and_if_none_match_give_304_and_agree_with_the_slow_path(client: httpx.Client) -> None:
    first = client.get(FEED)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert client.get(FEED, headers={"Range": "bytes=0-9"}).headers["etag"] == etag  # SiteFiles' answer
    for condition in (
        {"If-None-Match": etag},
        {"If-None-Match": f'"other", W/{etag}'},
        {"If-None-Match": "*"},
        {"If-Modified-Since": modified},
    ):
        again = client.get(FEED, headers=condition)
        assert again.status_code == 304 and again.content == b"", condition
        assert again.headers["etag"] == etag and again.headers["cache-control"] == "no-cache"
    assert client.get(FEED, headers={"If-None-Match": '"other"'}).status_code == 200


def test_ranges_are_served_and_bounded(server: Server, client: httpx.Client) -> None:
    body = (server.ws.site / FEED[1:]).read_bytes()
    part = client.get(FEED, headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == body[:10]
    assert part.headers["content-range"] == f"bytes 0-9/{len(body)}"
    assert client.get(FEED, headers={"Range": f"bytes={len(body) + 10}-"}).status_code == 416
    # Bounded: overlapping ranges are merged (never the file 50 times over), more than 100 get the file once.
    overlapping = client.get(FEED, headers={"Range": "bytes=" + ",".join(["0-"] * 50)})
    assert overlapping.status_code == 206 and overlapping.content == body
    many = ",".join(f"{i}-{i}" for i in range(0, 202, 2))
    whole = client.get(FEED, headers={"Range": f"bytes={many}"})
    assert whole.status_code == 200 and whole.content == body


def test_keep_alive_pipelining_and_http_1_0(server: Server) -> None:
    expected = (server.ws.site / FEED[1:]).read_bytes()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        request = f"GET {FEED} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        sock.sendall(
            request * 3 + b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        conn = h11.Connection(h11.CLIENT)
        answers: list[tuple[int, bytes]] = []
        for method in ("GET", "GET", "GET", "HEAD", "GET"):
            conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
            conn.send(h11.EndOfMessage())
            status, body = 0, b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(sock.recv(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            answers.append((status, body))
            conn.start_next_cycle()
    assert answers[:3] == [(200, expected)] * 3
    assert answers[3] == (200, b"") and answers[4][0] == 404
    reply = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"GET {FEED} HTTP/1.0\r\n\r\n".encode())
        while chunk := sock.recv(65536):  # the server closes the connection after an HTTP/1.0 answer
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(expected)


def test_requests_answered_early_are_still_in_the_access_log(server: Server, client: httpx.Client) -> None:
    client.get("/issues/1/email.html?from=log-test")
    deadline = time.monotonic() + 10
    while 'GET /issues/1/email.html?[redacted] HTTP/1.1" 200' not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert 'GET /issues/1/email.html?[redacted] HTTP/1.1" 200' in server.log()


# --- a new build ----------------------------------------------------------------------------------------------


def test_a_new_build_is_served_at_once_and_a_removed_file_is_gone(server: Server, client: httpx.Client) -> None:
    assert client.get("/issues/2/").status_code == 404
    index_before = client.get("/").content
    server.ws.add_seed("002_next.md", paper("A Later Paper", "后来的论文", "https://arxiv.org/abs/2410.00001"))
    server.ws.run("render", "--now", "2026-11-30T08:00:00+08:00")
    issue = client.get("/issues/2/")
    assert issue.status_code == 200 and "A Later Paper" in issue.text
    assert client.get("/").content != index_before and "A Later Paper" in client.get("/").text
    removed = server.ws.site / "issues" / "1" / "email.html"
    assert client.get("/issues/1/email.html").status_code == 200
    kept = removed.read_bytes()
    removed.unlink()
    try:
        assert client.get("/issues/1/email.html").status_code == 404
    finally:
        removed.write_bytes(kept)


# --- more than one worker -------------------------------------------------------------------------------------


def worker_pids(server: Server) -> set[int]:
    return {int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", server.log())}


def test_two_workers_serve_pages_and_signups_and_share_the_limits(tmp_path: Path, smtp_server: MailServer) -> None:
    server = serve_with_mail(
        tmp_path / "work", smtp_server, web_workers="2", signup_ip_limit="3", web_max_client_connections="4"
    )
    try:
        deadline = time.monotonic() + 30
        while len(worker_pids(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(worker_pids(server)) == 2 and "(2 worker processes)" in server.log()
        pages = [httpx.get(server.base + "/issues/1/").status_code for _ in range(20)]  # new connections: both
        assert pages == [200] * 20

        # A signup through either worker is recorded and mailed once; the per-IP limit is counted in the state.
        headers = {"Origin": server.base, "Sec-Fetch-Site": "same-origin"}
        codes = [
            httpx.post(server.base + "/subscribe", data={"email": f"w{i}@example.org"}, headers=headers).status_code
            for i in range(5)
        ]
        assert codes == [200, 200, 200, 429, 429]
        for i in range(3):
            [confirmation] = mails_to(smtp_server, f"w{i}@example.org", 1)
            assert "/confirm/" in confirmation

        # One client's connections are counted across the workers: the fifth is refused, whichever takes it.
        held = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(8)]
        try:
            refused = 0
            for sock in held:
                sock.sendall(b"GET /issues/1/ HTTP/1.1\r\nHost: x\r\n\r\n")
                refused += sock.recv(64).startswith(b"HTTP/1.1 503")
            assert refused == 4
        finally:
            for sock in held:
                sock.close()
    finally:
        assert server.stop() == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in worker_pids(server))  # stopped and reaped


def test_a_worker_that_dies_is_replaced(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "work")
    ws.run("render", "--now", NOW)
    ws.env["DIGEST_WEB_WORKERS"] = "2"
    server = start_server(ws)
    try:
        deadline = time.monotonic() + 30
        while len(worker_pids(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        victim = min(worker_pids(server))
        os.kill(victim, signal.SIGKILL)
        while len(worker_pids(server)) < 3 and time.monotonic() < deadline + 30:
            time.sleep(0.1)
        assert len(worker_pids(server)) == 3 and "starting it again" in server.log()
        assert all(httpx.get(server.base + "/").status_code == 200 for _ in range(10))
    finally:
        assert server.stop() == 0


def test_workers_never_share_their_port_with_another_server(tmp_path: Path) -> None:
    # SO_REUSEPORT would let a second `digest serve` of the same user join the port and take half the readers.
    ws = make_workspace(tmp_path / "work")
    ws.run("render", "--now", NOW)
    ws.env["DIGEST_WEB_WORKERS"] = "2"
    server = start_server(ws)
    try:
        second = ws.run("serve", "--port", str(server.port), check=False, timeout=60)
        assert second.returncode == 1
        assert f"cannot listen on 127.0.0.1:{server.port}: Address already in use" in second.stderr
    finally:
        assert server.stop() == 0
