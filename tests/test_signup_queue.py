"""Signup mails go out after the answer, from a bounded queue, and are never lost or sent twice: a real
`digest serve` (one or two) on one state, a real SMTP server (aiosmtpd), kill -9 and SIGTERM.

The state is the record: the answered signup has its mail recorded owed in the same transaction; the queue sends it
and forgets it; a sweep at start (and whenever a full queue has room) sends whatever another process, a burst or a
dead SMTP server left behind. "Exactly once" is checked at the end, with every server stopped and nothing owed left
in the state: then no further mail can come.
"""

from __future__ import annotations

import asyncio
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from tests.conftest import Workspace
from tests.mail_util import MailServer, free_port
from tests.test_web import SECRET, Server, make_workspace, start_server


@pytest.fixture
def smtp_port() -> int:
    """A port for the SMTP server, which each test starts when it wants mail to be accepted."""
    return free_port()


@pytest.fixture
def smtp() -> Iterator[Callable[[int], MailServer]]:
    """Start a real SMTP server on a given port (stopped after the test)."""
    controllers: list[Controller] = []

    def start(port: int, delay: float = 0.0) -> MailServer:
        server = MailServer(port=port, delay=delay)
        controller = Controller(server, hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)
        return server

    yield start
    for controller in controllers:
        controller.stop()


def signup_workspace(root: Path, state: Path | str, smtp_port: int, **settings: str) -> Workspace:
    """A workspace whose `digest serve` answers signups only (no site files) and mails through `smtp_port`."""
    ws = make_workspace(root, state)
    ws.env.update(
        {
            "DIGEST_SITE_URL": "http://127.0.0.1:8000/",
            "DIGEST_SECRET_KEY": SECRET,
            "DIGEST_WEB_STATIC": "false",
            "DIGEST_SMTP__HOST": "127.0.0.1",
            "DIGEST_SMTP__PORT": str(smtp_port),
            "DIGEST_SMTP__SECURITY": "none",
            "DIGEST_SMTP__TIMEOUT": "10",
            "DIGEST_FROM_ADDRESS": "论文周报 <digest@example.org>",
            "DIGEST_SIGNUP_IP_LIMIT": "1000",
            "DIGEST_WEB_MAX_CLIENT_CONNECTIONS": "0",
            **{f"DIGEST_{k.upper()}": v for k, v in settings.items()},
        }
    )
    return ws


def sign_up(server: Server, email: str) -> None:
    """Post the short form as a page of the site does; the answer must be the usual one."""
    answer = httpx.post(
        server.base + "/subscribe",
        data={"email": email},
        headers={"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"},
        timeout=30,
    )
    assert answer.status_code == 200 and "Check your inbox" in answer.text, answer.text[:500]


def owed(ws: Workspace) -> list[str]:
    """The signup mails the state says are still owed (waiting or claimed)."""
    return [str(r[0]) for r in ws.sql("SELECT value FROM meta WHERE key LIKE ?", "signup-mail:%")]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.05)


def confirmations(smtp: MailServer) -> dict[str, int]:
    """How many confirmation requests each address received (each must hold a working-looking link)."""
    for received in smtp.received:
        assert re.search(r"/confirm/\S+", str(received.message.get_content())), "a signup mail without its link"
    return dict(smtp.recipients())


# --- kill -9 ------------------------------------------------------------------------------------------------


@pytest.mark.both_states
def test_a_signup_answered_then_killed_is_mailed_once_by_the_next_process(
    tmp_path: Path, state: Path | str, smtp_port: int, smtp: Callable[..., MailServer]
) -> None:
    # The SMTP server does not accept yet: the mail cannot go before the kill, whatever the timing.
    ws = signup_workspace(tmp_path / "work", state, smtp_port)
    first = start_server(ws, "first.log")
    sign_up(first, "ada@example.org")
    assert len(owed(ws)) == 1  # the answer means the mail is on record
    wait_until(lambda: "signup mails wait" in first.log(), "the outbox tried the SMTP server")
    first.stop(signal.SIGKILL)

    mail = smtp(smtp_port)
    second = start_server(ws, "second.log")
    wait_until(lambda: len(mail.received) >= 1 and not owed(ws), "the next process sent the owed mail")
    second.stop()
    assert confirmations(mail) == {"ada@example.org": 1}
    assert "1 owed signup mails found in the state" in second.log()


@dataclass
class StallingServer(MailServer):
    """Takes the connection and MAIL FROM, then never answers RCPT TO: a mail claimed and on its way, not sent."""

    stalled: threading.Event = field(default_factory=threading.Event)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        self.stalled.set()
        await asyncio.sleep(3600)
        return "451 4.3.0 too late"


def test_a_mail_claimed_by_a_killed_process_is_sent_once_by_the_next(
    tmp_path: Path, smtp_port: int, smtp: Callable[..., MailServer]
) -> None:
    # The first process claims the mail and is killed while the server hangs before RCPT's answer: the mail is
    # claimed in the state but never reached the server. The next process sees the claim's process is gone.
    stalling = StallingServer(port=smtp_port)
    controller = Controller(stalling, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    ws = signup_workspace(tmp_path / "work", tmp_path / "work" / "state" / "digest.db", smtp_port)
    first = start_server(ws, "first.log")
    try:
        sign_up(first, "bob@example.org")
        assert stalling.stalled.wait(60), "the outbox never reached RCPT"
        assert [" claimed " in value for value in owed(ws)] == [True]
        first.stop(signal.SIGKILL)
    finally:
        controller.stop()

    mail = smtp(smtp_port)
    second = start_server(ws, "second.log")
    wait_until(lambda: len(mail.received) >= 1 and not owed(ws), "the next process sent the abandoned mail")
    second.stop()
    assert confirmations(mail) == {"bob@example.org": 1} and stalling.received == []
    assert "1 signup mails claimed by stopped processes are owed again" in second.log()


# --- a burst beyond the queue's bound -----------------------------------------------------------------------


def test_a_burst_bigger_than_the_queue_gets_every_confirmation_once(
    tmp_path: Path, smtp_port: int, smtp: Callable[..., MailServer]
) -> None:
    # A queue of 3 and the SMTP server not up yet during the burst: 37 of the 40 mails cannot be queued. The
    # periodic sweep is an hour away, so it is the "queue has room again" look at the state that must find them.
    ws = signup_workspace(tmp_path / "work", tmp_path / "work" / "state" / "digest.db", smtp_port,
                          signup_mail_queue="3", signup_mail_sweep="3600")  # fmt: skip
    server = start_server(ws)
    addresses = [f"burst{i}@example.org" for i in range(40)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda a: sign_up(server, a), addresses))
    assert len(owed(ws)) == len(addresses)
    mail = smtp(smtp_port)
    wait_until(lambda: len(mail.received) >= len(addresses) and not owed(ws), "every confirmation arrived")
    server.stop()
    assert server.log().count("signup mail queue full") >= len(addresses) // 2  # most found the queue full
    assert confirmations(mail) == dict.fromkeys(addresses, 1)


# --- two processes on one state -----------------------------------------------------------------------------


@pytest.mark.both_states
def test_two_serve_processes_on_one_state_send_each_confirmation_once(
    tmp_path: Path, state: Path | str, smtp_port: int, smtp: Callable[..., MailServer]
) -> None:
    # The SMTP server comes up only once all 40 signups are answered, and each process sweeps the state five times
    # a second: both find all 40 mails owed, half of them the other's, and both try to send every one. Only the
    # claim (a conditional UPDATE) keeps two from sending one.
    ws = signup_workspace(tmp_path / "work", state, smtp_port, signup_mail_sweep="0.2")
    one, two = start_server(ws, "one.log"), start_server(ws, "two.log")
    addresses = [f"pair{i}@example.org" for i in range(40)]
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda i: sign_up((one, two)[i % 2], addresses[i]), range(len(addresses))))
        time.sleep(0.5)  # a few sweeps each
        mail = smtp(smtp_port, delay=0.01)
        wait_until(lambda: len(mail.received) >= len(addresses) and not owed(ws), "every confirmation arrived")
    finally:
        one.stop()
        two.stop()
    assert confirmations(mail) == dict.fromkeys(addresses, 1)
    assert "owed signup mails found in the state" in one.log() + two.log()  # they did see each other's mails


# --- a clean stop ---------------------------------------------------------------------------------------------


def test_sigterm_drains_or_leaves_the_rest_owed_for_the_next_process(
    tmp_path: Path, smtp_port: int, smtp: Callable[..., MailServer]
) -> None:
    # 0.6 s per message: the 5 seconds a stop may drain cannot send 30, even with a worker per core each draining
    # its own queue (2 x 5 / 0.6 < 30), so some are left to the next process.
    mail = smtp(smtp_port, delay=0.6)
    ws = signup_workspace(tmp_path / "work", tmp_path / "work" / "state" / "digest.db", smtp_port)
    server = start_server(ws, "first.log")
    addresses = [f"stop{i}@example.org" for i in range(30)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda a: sign_up(server, a), addresses))
    assert server.stop() == 0
    assert re.search(r"stopped with \d+ signup mails owed", server.log())
    left = owed(ws)
    assert left and all(" claimed " not in value for value in left)  # nothing left claimed by the stopped one
    assert len(mail.received) + len(left) == len(addresses)  # every mail either went or is owed

    again = start_server(ws, "second.log")
    wait_until(lambda: len(mail.received) >= len(addresses) and not owed(ws), "the rest were sent")
    again.stop()
    assert confirmations(mail) == dict.fromkeys(addresses, 1)
