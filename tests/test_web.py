"""`digest serve` over real HTTP on 127.0.0.1: archive, feeds, conditional GET, path safety, unsubscribe."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from itsdangerous import URLSafeSerializer

from digest.store import Store
from digest.tokens import LEGACY_UNSUBSCRIBE_SALT, preferences_link, unsubscribe_link
from tests.conftest import REPO, SAMPLE_SEEDS, Workspace

SECRET = "web-test-secret-0123456789abcdef"
NOW = "2026-11-23T08:00:00+08:00"
FEED_TYPES = {
    "rss.xml": "application/rss+xml; charset=utf-8",
    "atom.xml": "application/atom+xml; charset=utf-8",
    "issues.xml": "application/atom+xml; charset=utf-8",
    "feed.json": "application/feed+json; charset=utf-8",
}


def legacy_token(secret: str, email: str) -> str:
    """The token of an unsubscribe link mailed before tokens named subscriptions: the address, signed."""
    return str(URLSafeSerializer(secret, salt=LEGACY_UNSUBSCRIBE_SALT).dumps(email.strip().lower()))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running `digest serve` subprocess and where it writes its log."""

    ws: Workspace
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=15)


def start_server(
    ws: Workspace, log_name: str = "serve.log", port: int | None = None, extra_args: tuple[str, ...] = ()
) -> Server:
    """Start `digest serve` on `port` (default: a free one), with `extra_args`, and wait until it answers."""
    port = port or free_port()
    log_path = ws.root / log_name
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "digest", "serve", "--port", str(port), *extra_args],
            cwd=ws.root,
            env=ws.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(ws, proc, port, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"digest serve exited {proc.returncode}:\n{server.log()}")
        try:
            httpx.get(server.base + "/", timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.05)
    server.stop(signal.SIGKILL)
    raise AssertionError(f"digest serve did not answer within 30 s:\n{server.log()}")


def make_workspace(root: Path, state: Path | str | None = None) -> Workspace:
    """A workspace; `state` a PostgreSQL URL puts its state there (a path: the default SQLite file)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(SAMPLE_SEEDS, root / "seeds")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update({"DIGEST_SECRET_KEY": SECRET, "DIGEST_TIMEZONE": "Asia/Shanghai", "PYTHONPATH": str(REPO)})
    state_url = state if isinstance(state, str) else ""
    if state_url:
        env["DIGEST_STATE_URL"] = state_url
    return Workspace(root=root, env=env, state_url=state_url)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One rendered site served for the whole module (tests use distinct subscriber addresses)."""
    ws = make_workspace(tmp_path_factory.mktemp("web") / "work")
    ws.run("render", "--now", NOW)
    # Things that must never be served: dotfiles, and symlinks leading out of the folder.
    (ws.site / ".x.tmp").write_text("partial write", encoding="utf-8")
    (ws.site / "issues" / ".hidden").mkdir()
    (ws.site / "issues" / ".hidden" / "index.html").write_text("secret hidden page", encoding="utf-8")
    (ws.site / "leak.html").symlink_to("/etc/passwd")
    (ws.site / "etc").symlink_to("/etc", target_is_directory=True)
    srv = start_server(ws)
    yield srv
    srv.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=10) as c:
        yield c


def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """Send the request target byte for byte (httpx would normalize `..` away), return status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


# --- subscribers, straight in the state file ------------------------------------------------------


def add_subscriber(state: Path, email: str) -> None:
    """Through `Store.add_subscriber` (the subscribers work); plain SQL while that is not in the tree."""
    added = datetime(2026, 11, 1, tzinfo=UTC)
    with Store.open(state) as store, store.transaction() as conn:
        if hasattr(store, "add_subscriber"):
            assert store.add_subscriber(email, "", added) == "added"
        else:
            conn.execute(
                "INSERT INTO subscribers (email, email_key, created) VALUES (?, ?, ?)",
                (email, email.strip().lower(), added.isoformat()),
            )


def subscriber_row(state: Path, email: str) -> tuple[int, str | None] | None:
    with sqlite3.connect(state) as db:
        row = db.execute(
            "SELECT status = 'active', CASE WHEN status = 'active' THEN NULL ELSE status_changed END"
            " FROM subscribers WHERE email_key = ?",
            (email.strip().lower(),),
        ).fetchone()
    return (int(row[0]), row[1]) if row else None


def one_click(client: httpx.Client, token: str) -> httpx.Response:
    return client.post(
        "/unsubscribe",
        params={"token": token},
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


# --- static files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/index.html", "/issues/1/", "/archive/page-1.html"])
def test_archive_and_issue_pages_are_utf8_html(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self';" in response.headers["content-security-policy"]
    assert response.headers["etag"] and response.headers["last-modified"]
    assert "<html" in response.text


def test_issue_url_without_slash_redirects_to_the_folder(client: httpx.Client) -> None:
    response = client.get("/issues/1")
    assert response.status_code in (301, 307, 308)
    assert response.next_request is not None and response.next_request.url.path == "/issues/1/"


@pytest.mark.parametrize(("name", "expected"), FEED_TYPES.items())
def test_feeds_have_their_registered_content_types(
    server: Server, client: httpx.Client, name: str, expected: str
) -> None:
    response = client.get("/" + name)
    assert response.status_code == 200
    assert response.headers["content-type"] == expected
    assert response.content == (server.ws.site / name).read_bytes()


def test_conditional_get_with_if_none_match_is_304(client: httpx.Client) -> None:
    first = client.get("/rss.xml")
    etag = first.headers["etag"]
    again = client.get("/rss.xml", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert client.get("/rss.xml", headers={"If-None-Match": '"not-the-etag"'}).status_code == 200


def test_conditional_get_with_if_modified_since_is_304(client: httpx.Client) -> None:
    last_modified = client.get("/issues/1/").headers["last-modified"]
    assert client.get("/issues/1/", headers={"If-Modified-Since": last_modified}).status_code == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert client.get("/issues/1/", headers={"If-Modified-Since": old}).status_code == 200


@pytest.mark.parametrize(
    "target",
    [
        "/../../../../../../etc/passwd",
        "/issues/../../../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/%252e%252e/%252e%252e/%252e%252e/%252e%252e/etc/passwd",
        "/..%252f..%252f..%252f..%252fetc%252fpasswd",
        "/.%2e/.%2e/.%2e/.%2e/.%2e/etc/passwd",
        "/..\\..\\..\\..\\..\\etc\\passwd",
        "//etc/passwd",
        "/%2fetc%2fpasswd",
        "/etc/passwd",
        "/etc/hostname",
        "/leak.html",
        "/%00../../../../etc/passwd",
        "http://127.0.0.1/../../../../etc/passwd",
    ],
)
def test_no_path_outside_the_output_folder(server: Server, target: str) -> None:
    status, body = raw_get(server.port, target)
    assert status in (400, 404), (target, status, body[:200])
    assert b"root:" not in body


@pytest.mark.parametrize(
    "path",
    [
        "/.digest-build.json",
        "/.digest-state",
        "/%2edigest-build.json",
        "/.x.tmp",
        "/issues/.hidden/",
        "/issues/.hidden/index.html",
    ],
)
def test_dotfiles_are_not_served(server: Server, client: httpx.Client, path: str) -> None:
    assert (server.ws.site / ".digest-build.json").is_file()
    assert (server.ws.site / ".digest-state").is_file()  # which state built the site: not for the public either
    response = client.get(path)
    assert response.status_code == 404
    assert b"partial write" not in response.content and b"secret hidden page" not in response.content


def test_only_get_and_head_on_files(client: httpx.Client) -> None:
    assert client.head("/atom.xml").status_code == 200
    assert client.post("/atom.xml").status_code == 405


# --- one-click unsubscribe --------------------------------------------------------------------------


def test_get_shows_a_confirmation_page_and_changes_nothing(server: Server, client: httpx.Client) -> None:
    add_subscriber(server.ws.state, "Reader.One@Example.org")
    token = legacy_token(SECRET, "Reader.One@Example.org")
    response = client.get("/unsubscribe", params={"token": token})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "Reader.One@Example.org" in response.text
    assert '<form class="form" method="post"' in response.text
    assert 'name="List-Unsubscribe" value="One-Click"' in response.text
    assert "退订" in response.text and "Unsubscribe" in response.text
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "form-action 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert subscriber_row(server.ws.state, "reader.one@example.org") == (1, None)


def test_one_click_post_unsubscribes_at_once_and_is_idempotent(server: Server, client: httpx.Client) -> None:
    add_subscriber(server.ws.state, "reader.two@example.org")
    token = legacy_token(SECRET, "reader.two@example.org")
    response = one_click(client, token)
    assert response.status_code == 200
    assert "已退订" in response.text and "unsubscribed" in response.text
    active, when = subscriber_row(server.ws.state, "reader.two@example.org") or (None, None)
    assert active == 0 and when is not None
    assert "unsubscribed reader.two@example.org" in server.log()
    # The access log is written once a second: wait for the request's line, then look for the token.
    deadline = time.monotonic() + 10
    while 'POST /unsubscribe?[redacted] HTTP/1.1" 200' not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert 'POST /unsubscribe?[redacted] HTTP/1.1" 200' in server.log()
    assert token not in server.log()  # the access log redacts tokens

    again = one_click(client, token)
    assert again.status_code == 200
    assert "already" in again.text
    assert subscriber_row(server.ws.state, "reader.two@example.org") == (0, when)
    page = client.get("/unsubscribe", params={"token": token})
    assert page.status_code == 200 and 'name="List-Unsubscribe"' not in page.text


def test_the_confirmation_form_posts_back_to_the_same_token(server: Server, client: httpx.Client) -> None:
    add_subscriber(server.ws.state, "reader.form@example.org")
    token = legacy_token(SECRET, "reader.form@example.org")
    page = client.get("/unsubscribe", params={"token": token}).text
    action = page.split('action="', 1)[1].split('"', 1)[0]
    assert action == "?token=" + token  # tokens are URL-safe and HTML-safe: nothing to escape
    response = client.post("/unsubscribe" + action, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert subscriber_row(server.ws.state, "reader.form@example.org")[0] == 0  # type: ignore[index]


def test_forged_and_foreign_tokens_are_refused_and_change_nothing(server: Server, client: httpx.Client) -> None:
    add_subscriber(server.ws.state, "reader.three@example.org")
    good = legacy_token(SECRET, "reader.three@example.org")
    payload, _, signature = good.rpartition(".")
    forged = [
        "",
        "garbage",
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        legacy_token("another-secret-0123456789abcdef", "reader.three@example.org"),
        legacy_token(SECRET[:-1] + "X", "reader.three@example.org"),
        # the other address's payload with this address's signature
        legacy_token(SECRET, "someone@example.org").rpartition(".")[0] + "." + signature,
        payload,
    ]
    for token in forged:
        for response in (client.get("/unsubscribe", params={"token": token}), one_click(client, token)):
            assert response.status_code == 400, token
            assert "Invalid unsubscribe link" in response.text
    assert client.post("/unsubscribe", content=b"List-Unsubscribe=One-Click").status_code == 400
    assert subscriber_row(server.ws.state, "reader.three@example.org") == (1, None)


def test_a_token_affects_only_its_own_address(server: Server, client: httpx.Client) -> None:
    add_subscriber(server.ws.state, "alice@example.org")
    add_subscriber(server.ws.state, "bob@example.org")
    assert one_click(client, legacy_token(SECRET, "alice@example.org")).status_code == 200
    assert subscriber_row(server.ws.state, "alice@example.org")[0] == 0  # type: ignore[index]
    assert subscriber_row(server.ws.state, "bob@example.org") == (1, None)


def test_a_valid_token_for_a_non_subscriber_is_404_and_adds_nobody(server: Server, client: httpx.Client) -> None:
    token = legacy_token(SECRET, "stranger@example.org")
    for response in (client.get("/unsubscribe", params={"token": token}), one_click(client, token)):
        assert response.status_code == 404
        assert "No such subscription" in response.text
    assert subscriber_row(server.ws.state, "stranger@example.org") is None


def current_token(state: Path, email: str) -> str:
    """The token of the unsubscribe link mailed to `email` today (bound to its subscription)."""
    with Store.open(state) as store:
        subscriber = store.subscriber(email)
    assert subscriber is not None
    link = unsubscribe_link("http://localhost:8000/unsubscribe", SECRET, subscriber)
    return link.split("token=", 1)[1]


def test_a_current_token_names_no_address_and_unsubscribes(server: Server, client: httpx.Client) -> None:
    add_subscriber(server.ws.state, "carol@example.org")
    token = current_token(server.ws.state, "carol@example.org")
    assert b"carol" not in base64.urlsafe_b64decode(token.split(".")[0] + "==")
    assert "carol@example.org" in client.get("/unsubscribe", params={"token": token}).text
    assert one_click(client, token).status_code == 200
    assert subscriber_row(server.ws.state, "carol@example.org")[0] == 0  # type: ignore[index]


def test_a_link_of_an_earlier_subscription_is_dead_after_resubscribing(server: Server, client: httpx.Client) -> None:
    add_subscriber(server.ws.state, "dave@example.org")
    old = current_token(server.ws.state, "dave@example.org")
    assert one_click(client, old).status_code == 200
    with Store.open(server.ws.state) as store, store.transaction():
        assert store.add_subscriber("dave@example.org", "", datetime.now(UTC), resubscribe=True) == "resubscribed"
    for response in (client.get("/unsubscribe", params={"token": old}), one_click(client, old)):
        assert response.status_code == 410
        assert "earlier subscription" in response.text
    assert subscriber_row(server.ws.state, "dave@example.org") == (1, None)
    assert one_click(client, current_token(server.ws.state, "dave@example.org")).status_code == 200


def test_a_preference_token_cannot_unsubscribe(server: Server, client: httpx.Client) -> None:
    add_subscriber(server.ws.state, "erin@example.org")
    with Store.open(server.ws.state) as store:
        subscriber = store.subscriber("erin@example.org")
    assert subscriber is not None
    token = preferences_link("http://localhost:8000/", SECRET, subscriber).rsplit("/", 1)[1]
    assert one_click(client, token).status_code == 400
    assert subscriber_row(server.ws.state, "erin@example.org") == (1, None)


def test_the_address_is_escaped_on_the_page(server: Server, client: httpx.Client) -> None:
    address = '"<script>alert(1)</script>"@example.org'
    add_subscriber(server.ws.state, address)
    response = client.get("/unsubscribe", params={"token": legacy_token(SECRET, address)})
    assert response.status_code == 200
    assert "<script>" not in response.text
    assert "&lt;script&gt;" in response.text


# --- starting and stopping -----------------------------------------------------------------------------


def test_serve_without_a_secret_key_and_without_site_files_has_nothing_to_serve(workspace: Workspace) -> None:
    # (With the site's files it serves them: tests/test_serve_site.py.)
    workspace.run("render", "--now", NOW)
    workspace.env.pop("DIGEST_SECRET_KEY")
    workspace.env["DIGEST_SITE_URL"] = "https://digest.example.org/"  # no warning about the default first
    result = workspace.run("serve", "--no-static", "--port", str(free_port()), check=False, timeout=30)
    assert result.returncode == 78  # a setting is missing: EX_CONFIG, like every settings error
    assert result.stderr.startswith("digest: error: nothing to serve") and "DIGEST_SECRET_KEY" in result.stderr


@pytest.mark.parametrize("how", ["no site folder", "--no-static"])
def test_serve_without_a_site_answers_only_the_dynamic_endpoints(tmp_path: Path, how: str) -> None:
    ws = make_workspace(tmp_path / "work")
    if how == "--no-static":
        ws.run("render", "--now", NOW)
    port = free_port()
    log_path = ws.root / "serve.log"
    with log_path.open("wb") as log:
        args = [sys.executable, "-m", "digest", "serve", "--port", str(port)]
        proc = subprocess.Popen(args + (["--no-static"] if how == "--no-static" else []), cwd=ws.root, env=ws.env,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    srv = Server(ws, proc, port, log_path)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(srv.base + "/subscribe", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert answer.status_code == 200 and "subscribe" in answer.text.lower()
        assert httpx.get(srv.base + "/").status_code == 404
        assert httpx.get(srv.base + "/rss.xml").status_code == 404
        if how == "no site folder":
            assert "output folder not found: serving signup and unsubscribe only" in srv.log()
    finally:
        srv.stop()


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_logs_its_url_and_stops_cleanly_on_a_signal(tmp_path: Path, sig: signal.Signals, workers: str) -> None:
    """A stop (systemd's SIGTERM, Ctrl-C) ends with exit 0 and every request of the batched access log written,
    with one process as with several (one process used to die by the SIGTERM uvicorn raises again, -15, and
    lose the lines not yet flushed)."""
    ws = make_workspace(tmp_path / "work")
    ws.env["DIGEST_WEB_WORKERS"] = workers
    ws.run("render", "--now", NOW)
    srv = start_server(ws)
    assert f"http://127.0.0.1:{srv.port}/" in srv.log()
    for _ in range(3):
        assert httpx.get(srv.base + "/rss.xml", timeout=10).status_code == 200
    code = srv.stop(sig)
    assert code == 0, srv.log()
    assert srv.log().count('"GET /rss.xml HTTP/1.1" 200') == 3, srv.log()
    assert "Finished server process" in srv.log() and srv.log().rstrip().endswith("digest.web: stopped")
    assert "Traceback" not in srv.log()


@pytest.mark.parametrize("moment", ["right after the fork", "while it builds the app"])
def test_a_web_worker_stopped_before_uvicorn_listens_for_signals_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    """A SIGTERM that reaches a forked worker before uvicorn's own handlers are in place ends it. It used to be
    ignored there (or, right after the fork, handled by the parent's handler): the worker went on serving and the
    parent waited for it forever, so a stop right after `digest serve` started hung (1 run in 12 of a stop right
    after the first log line)."""
    from digest.settings import Settings
    from digest.web import server

    def stop_here(*args: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    def serve(*args: object) -> None:
        if moment == "while it builds the app":
            stop_here()
        time.sleep(30)  # a worker that did not hear the stop: still here when the test gives up

    monkeypatch.setattr(server, "_run_worker", serve)
    if moment == "right after the fork":
        monkeypatch.setattr(server, "_die_with", stop_here)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        workers = server.Workers(Settings(state_path=tmp_path / "digest.db"), [sock], None, 1)
        previous = signal.signal(signal.SIGTERM, workers._stop)  # the parent's handler, as Workers.run sets it
        try:
            workers._start(0)
        finally:
            signal.signal(signal.SIGTERM, previous)
        (pid,) = workers.pids
        deadline = time.monotonic() + 10
        while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        if done == (0, 0):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert done != (0, 0), "the worker did not stop"
    assert os.waitstatus_to_exitcode(done[1]) == 0
