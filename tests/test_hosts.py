"""Several hosts on one PostgreSQL state: schedulers and renders in different working folders publish one issue per
slot and mail each subscriber once, even when one is killed with -9; two `digest serve` processes (one of them with
no site folder) take concurrent signups, confirmations and unsubscribes without losing or doubling anything."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from digest.tokens import unsubscribe_link
from digest.web.forms import csrf_token
from tests.conftest import Workspace
from tests.mail_util import MailServer, free_port, smtp_server_fixture  # noqa: F401  (fixture)
from tests.postgres_util import Cluster
from tests.test_run_cli import READERS, Runner, add_papers, assert_no_duplicates, every_reader_got, issues, wait_for
from tests.test_signup import mails_to
from tests.test_web import NOW, SECRET, Server, make_workspace, start_server

pytestmark = pytest.mark.slow


def host(root: Path, url: str, smtp: MailServer, **settings: str) -> Workspace:
    """One host: its own working folder (seeds, site), the shared database, the test SMTP server."""
    ws = make_workspace(root, url)
    ws.env.update(
        {
            "DIGEST_SITE_URL": "https://digest.example.org/",
            "DIGEST_SMTP__HOST": "127.0.0.1",
            "DIGEST_SMTP__PORT": str(smtp.port),
            "DIGEST_SMTP__SECURITY": "none",
            "DIGEST_SMTP__TIMEOUT": "5",
            "DIGEST_FROM_ADDRESS": "Digest <digest@example.org>",
            "DIGEST_MAX_MESSAGES_PER_SECOND": "1000",
            "DIGEST_SEND_RETRY_DELAY": "0.05",
            "DIGEST_LOCK_TIMEOUT": "30",
            **{f"DIGEST_{k.upper()}": v for k, v in settings.items()},
        }
    )
    return ws


@pytest.fixture
def hosts(tmp_path: Path, postgres: Cluster, smtp_server: MailServer) -> list[Workspace]:
    url = postgres.create_database()
    return [host(tmp_path / name, url, smtp_server, schedule="*/4 * * * * *") for name in ("host-a", "host-b")]


@pytest.fixture
def runners() -> Iterator[list[Runner]]:
    started: list[Runner] = []
    yield started
    for runner in started:
        runner.kill()


def test_two_hosts_publish_one_issue_per_slot_and_mail_once_even_after_a_kill_9(
    hosts: list[Workspace], smtp_server: MailServer, runners: list[Runner]
) -> None:
    a, b = hosts
    for address in READERS:
        a.run("subscribers", "add", address)
    first, second = Runner(a, "run-a"), Runner(b, "run-b")
    runners += [first, second]
    wait_for(lambda: len(issues(a)) == 1 and every_reader_got(smtp_server, 1), 20, "issue 1 mailed", runners)
    first.proc.send_signal(signal.SIGKILL)  # host A dies, maybe holding the lock: its session ends with it
    first.proc.wait(timeout=10)
    for ws in hosts:  # the seeds reach every host (a git pull, a shared volume)
        add_papers(ws, "100_new.md", 1, 2)
    wait_for(lambda: len(issues(b)) == 2 and every_reader_got(smtp_server, 2), 20, "issue 2 by host B", runners)
    restarted = Runner(a, "run-a2")
    runners.append(restarted)
    time.sleep(6)  # both schedulers fire for the next slots: nothing new
    assert restarted.stop() == 0 and second.stop() == 0
    assert [(n, c) for n, _, c in issues(a)] == [(1, 23), (2, 2)]
    slots = [slot for _, slot, _ in issues(a)]
    assert len(set(slots)) == 2
    assert_no_duplicates(smtp_server)
    assert len(smtp_server.received) == 4


def test_concurrent_runs_on_two_hosts_make_one_issue_and_mail_once(
    hosts: list[Workspace], smtp_server: MailServer
) -> None:
    for address in READERS:
        hosts[0].run("subscribers", "add", address)
    procs = [ws.popen("run", "--once", "--now", NOW) for ws in hosts for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode in (0, 75) for p in procs), "\n".join(
        f"{p.returncode}: {o[1]}" for p, o in zip(procs, outputs, strict=True)
    )
    assert [(n, c) for n, _, c in issues(hosts[0])] == [(1, 23)]
    assert sum("published issue 1 " in out + err for out, err in outputs) == 1
    wait_for(lambda: every_reader_got(smtp_server, 1), 10, "the mail")
    assert_no_duplicates(smtp_server)


# --- two web hosts --------------------------------------------------------------------------------------


@pytest.fixture
def web_hosts(tmp_path: Path, postgres: Cluster, smtp_server: MailServer) -> Iterator[list[Server]]:
    """Two `digest serve` on one database behind a (pretend) load balancer at site_url: A serves the rendered site,
    B has no site folder and answers only the dynamic endpoints."""
    url = postgres.create_database()
    site_port = free_port()
    settings = {"site_url": f"http://127.0.0.1:{site_port}/", "signup_ip_limit": "10", "web_db_wait": "10"}
    a = host(tmp_path / "web-a", url, smtp_server, **settings)
    b = host(tmp_path / "web-b", url, smtp_server, **settings)
    a.run("render", "--now", NOW)
    servers = [start_server(a, port=site_port), start_server(b)]
    yield servers
    for server in servers:
        server.stop()
    for server in servers:
        assert " 500 " not in server.log() and "Traceback" not in server.log(), server.log()


def at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run the calls in threads released together."""
    start = threading.Barrier(len(calls))

    def call(fn: Callable[[], httpx.Response]) -> httpx.Response:
        start.wait()
        return fn()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(call, calls))


def test_two_web_hosts_lose_no_signup_confirmation_or_unsubscribe(
    web_hosts: list[Server], smtp_server: MailServer
) -> None:
    a, b = web_hosts
    site = a.ws.env["DIGEST_SITE_URL"].rstrip("/")
    assert httpx.get(f"{a.base}/issues/1/").status_code == 200
    assert httpx.get(f"{b.base}/issues/1/").status_code == 404  # B serves no files: dynamic endpoints only
    headers = {"Origin": site}
    addresses = [f"reader{i}@example.org" for i in range(20)]

    def signup(server: Server, address: str) -> Callable[[], httpx.Response]:
        return lambda: httpx.post(f"{server.base}/subscribe", data={"email": address}, headers=headers, timeout=30)

    # 20 signups from one IP at once, half on each host, against a limit of 10 per IP: the count is shared and
    # serialized, so exactly 10 get through.
    answers = at_once([signup(web_hosts[i % 2], address) for i, address in enumerate(addresses)])
    assert sorted(r.status_code for r in answers) == [200] * 10 + [429] * 10
    joined = [address for address, r in zip(addresses, answers, strict=True) if r.status_code == 200]
    rows = a.ws.sql("SELECT email, status FROM subscribers ORDER BY email")
    assert sorted(rows) == sorted((address, "pending") for address in joined)

    # Every confirmation link clicked on both hosts at once: one click confirms, the other is told it is done.
    def confirm(server: Server, link: str) -> Callable[[], httpx.Response]:
        token = urlsplit(link).path.rsplit("/", 1)[1]
        url = server.base + urlsplit(link).path
        return lambda: httpx.post(url, data={"csrf": csrf_token(SECRET, token)}, headers=headers, timeout=30)

    links = [
        next(u for u in re.findall(r"https?://\S+", mails_to(smtp_server, address, 1)[0]) if "/confirm/" in u)
        for address in joined
    ]
    clicks = at_once([confirm(server, link) for link in links for server in web_hosts])
    for i in range(len(links)):
        assert sorted(r.status_code for r in clicks[2 * i : 2 * i + 2]) == [200, 409]
    assert {s for _, s in a.ws.sql("SELECT email, status FROM subscribers")} == {"active"}

    # One-click unsubscribes, each sent to both hosts at once: everybody leaves, once.
    records = {email: (int(i), nonce) for i, email, nonce in a.ws.sql("SELECT id, email, token_nonce FROM subscribers")}

    def leave(server: Server, address: str) -> Callable[[], httpx.Response]:
        from digest.model import Subscriber

        sub_id, nonce = records[address]
        link = unsubscribe_link(f"{site}/unsubscribe", SECRET, Subscriber(address, "", id=sub_id, token_nonce=nonce))
        url = server.base + "/unsubscribe?" + urlsplit(link).query
        return lambda: httpx.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=30)

    leaving = at_once([leave(server, address) for address in joined for server in web_hosts])
    assert {r.status_code for r in leaving} == {200}
    assert sorted(a.ws.sql("SELECT email, status FROM subscribers")) == sorted((x, "unsubscribed") for x in joined)
