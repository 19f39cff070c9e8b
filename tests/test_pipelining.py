"""PIPELINING (RFC 2920) when sending: MAIL FROM, RCPT TO and DATA go to the server in one write when it offers the
extension, one at a time when it does not; every reply is still read in order, so a refused recipient is recorded
as that recipient's refusal; and the ledger stays right when `digest send` is killed mid-send.

aiosmtpd reads pipelined commands but does not advertise PIPELINING: the server here is aiosmtpd saying that it
does, and recording what arrives in each read from the socket. The last test runs against a real Postfix.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from digest.mailer import SmtpMessenger
from digest.settings import SmtpSettings
from digest.transport import Outcome
from tests.conftest import Workspace
from tests.mail_util import MailServer, free_port

SECRET = "test-secret-key-0123456789abcdef"
MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n"


@dataclass
class RecordingServer(MailServer):
    """mail_util's server, offering PIPELINING when asked and keeping every chunk read from a client."""

    offer_pipelining: bool = True
    reads: list[bytes] = field(default_factory=list)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        if self.offer_pipelining:
            responses = [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    def envelope_reads(self) -> list[bytes]:
        """The reads that hold MAIL FROM, RCPT TO or DATA (message data and other commands left out)."""
        starts = (b"MAIL FROM:", b"RCPT TO:", b"DATA\r\n")
        return [chunk for chunk in self.reads if chunk.startswith(starts)]


class _RecordingSMTP(SMTP):
    def data_received(self, data: bytes) -> None:
        self.event_handler.reads.append(bytes(data))
        super().data_received(data)


class _RecordingController(Controller):
    def factory(self) -> SMTP:
        return _RecordingSMTP(self.handler, **self.SMTP_kwargs)


def _serve(offer_pipelining: bool) -> Iterator[RecordingServer]:
    server = RecordingServer(port=free_port(), offer_pipelining=offer_pipelining)
    controller = _RecordingController(server, hostname="127.0.0.1", port=server.port)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture
def pipelining_server() -> Iterator[RecordingServer]:
    yield from _serve(offer_pipelining=True)


@pytest.fixture
def plain_server() -> Iterator[RecordingServer]:
    yield from _serve(offer_pipelining=False)


def messenger(port: int) -> SmtpMessenger:
    return SmtpMessenger(SmtpSettings(host="127.0.0.1", port=port, security="none", timeout=5))


def test_mail_rcpt_and_data_go_in_one_write_when_the_server_offers_pipelining(
    pipelining_server: RecordingServer,
) -> None:
    smtp = messenger(pipelining_server.port)
    try:
        results = [smtp.send("a@example.org", f"r{i}@example.org", MESSAGE) for i in range(3)]
    finally:
        smtp.close()
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert pipelining_server.envelope_reads() == [
        f"MAIL FROM:<a@example.org>\r\nRCPT TO:<r{i}@example.org>\r\nDATA\r\n".encode() for i in range(3)
    ]
    assert sorted(pipelining_server.recipients()) == [f"r{i}@example.org" for i in range(3)]


def test_one_command_at_a_time_when_the_server_does_not_offer_it(plain_server: RecordingServer) -> None:
    smtp = messenger(plain_server.port)
    try:
        results = [smtp.send("a@example.org", f"r{i}@example.org", MESSAGE) for i in range(2)]
    finally:
        smtp.close()
    assert [r.outcome for r in results] == [Outcome.SENT] * 2
    assert plain_server.envelope_reads() == [
        chunk
        for i in range(2)
        for chunk in (b"MAIL FROM:<a@example.org>\r\n", f"RCPT TO:<r{i}@example.org>\r\n".encode(), b"DATA\r\n")
    ]


def test_a_refused_recipient_in_a_pipelined_group_is_that_recipients_refusal(
    pipelining_server: RecordingServer,
) -> None:
    """The server answers 550 to RCPT and then 503 to the DATA that was already on its way: the outcome is the
    recipient's refusal, the connection is reset and serves the next message."""
    pipelining_server.reject.add("gone@example.org")
    smtp = messenger(pipelining_server.port)
    try:
        refused = smtp.send("a@example.org", "gone@example.org", MESSAGE)
        after = smtp.send("a@example.org", "next@example.org", MESSAGE)
    finally:
        smtp.close()
    assert refused.outcome is Outcome.FAILED
    assert refused.detail.startswith("RCPT TO: 550 5.1.1 <gone@example.org>")
    assert after.outcome is Outcome.SENT
    assert pipelining_server.recipients() == {"next@example.org": 1}
    assert pipelining_server.connections == 1
    assert pipelining_server.envelope_reads()[0] == (
        b"MAIL FROM:<a@example.org>\r\nRCPT TO:<gone@example.org>\r\nDATA\r\n"
    )


# --- `digest send` end to end ------------------------------------------------------------------------


def _mail_workspace(ws: Workspace, port: int) -> Workspace:
    ws.env.update(
        {
            "DIGEST_SMTP__HOST": "127.0.0.1",
            "DIGEST_SMTP__PORT": str(port),
            "DIGEST_SMTP__SECURITY": "none",
            "DIGEST_SMTP__TIMEOUT": "5",
            "DIGEST_FROM_ADDRESS": "论文周报 <digest@example.org>",
            "DIGEST_SEND_RETRIES": "2",
            "DIGEST_SEND_RETRY_DELAY": "0.05",
            "DIGEST_MAX_MESSAGES_PER_SECOND": "1000",
        }
    )
    ws.run("render", "--now", "2024-09-23T08:00:00+08:00")
    return ws


def add_subscribers(ws: Workspace, addresses: list[str]) -> None:
    csv = ws.root / "people.csv"
    csv.write_text("email,name\n" + "".join(f"{a},Reader {i}\n" for i, a in enumerate(addresses)), encoding="utf-8")
    ws.run("subscribers", "import", str(csv))


def ledger(ws: Workspace) -> dict[str, tuple[str, str]]:
    rows = ws.sql(
        "SELECT s.email, d.status, d.detail FROM deliveries d JOIN subscribers s ON s.id = d.subscriber"
        " WHERE d.issue = 1"
    )
    return {email: (status, detail) for email, status, detail in rows}


def test_send_pipelines_and_records_each_refused_recipient(
    workspace: Workspace, pipelining_server: RecordingServer
) -> None:
    ws = _mail_workspace(workspace, pipelining_server.port)
    readers = [f"reader{i}@example.org" for i in range(6)]
    add_subscribers(ws, readers)
    pipelining_server.reject.add("reader2@example.org")
    pipelining_server.reject_with["reader4@example.org"] = "550 5.7.1 refused by policy"
    result = ws.run("send")
    assert "4 sent, 1 failed" in result.stdout and "1 bounced (suppressed)" in result.stdout
    states = ledger(ws)
    assert states["reader2@example.org"][0] == "bounced"  # no such user: hard, never mailed again
    assert states["reader2@example.org"][1].startswith("RCPT TO: 550 5.1.1 <reader2@example.org>")
    assert states["reader4@example.org"] == ("failed", "RCPT TO: 550 5.7.1 refused by policy")  # soft
    assert {a for a, (status, _) in states.items() if status == "sent"} == set(readers) - {
        "reader2@example.org",
        "reader4@example.org",
    }
    reads = pipelining_server.envelope_reads()
    assert len(reads) == 6 and all(r.count(b"\r\n") == 3 and r.endswith(b"\r\nDATA\r\n") for r in reads)


@pytest.mark.slow
def test_kill_9_mid_send_with_pipelining_never_duplicates_or_skips(
    workspace: Workspace, pipelining_server: RecordingServer
) -> None:
    ws = _mail_workspace(workspace, pipelining_server.port)
    readers = [f"reader{i}@example.org" for i in range(50)]
    add_subscribers(ws, readers)
    pipelining_server.reject.add("reader7@example.org")
    pipelining_server.delay = 0.01
    rng = random.Random()
    kills = 0
    for _ in range(8):
        proc = ws.popen("send")
        target = len(pipelining_server.received) + rng.randint(1, 8)
        while len(pipelining_server.received) < target and proc.poll() is None:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.015))  # a random point of the next message: envelope, data, claim, reply
        if proc.poll() is not None:
            break
        proc.kill()
        proc.communicate()
        kills += 1
    final = ws.run("send")
    assert "0 deferred" in final.stdout
    states = ledger(ws)
    got = pipelining_server.recipients()
    unknown = {a for a, (status, _) in states.items() if status == "unknown"}
    assert kills >= 3
    assert {a for a, n in got.items() if n > 1} <= unknown, "duplicates only where the ledger says unknown"
    assert all(got[a] == 1 for a, (status, _) in states.items() if status == "sent")
    assert set(states) == set(readers), "everyone has a row: nobody skipped"
    assert {status for a, (status, _) in states.items() if a not in unknown} <= {"sent", "bounced"}
    assert states["reader7@example.org"][0] in {"bounced", "unknown"}
    # Each connection (2) claims one message ahead: at most two unresolved per connection at each kill.
    assert len(unknown) <= kills * 4
    assert not [a for a, (status, _) in states.items() if status == "pending"]


@pytest.mark.slow
def test_through_postfix_with_starttls_a_refused_recipient_is_recorded(
    workspace: Workspace, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A real MTA offering PIPELINING behind STARTTLS: Postfix refuses one recipient at RCPT and then the DATA of
    the same group (554 no valid recipients); everyone else is delivered once."""
    from tests.postfix_util import Postfix, find_postfix, self_signed_cert

    if find_postfix() is None:
        pytest.skip("Postfix is not installed and cannot be (not root, or no apt-get)")
    cert, key = self_signed_cert(tmp_path_factory.mktemp("cert"))
    refuse = "check_recipient_access inline:{ { reader3@example.org = 550 5.1.1 no such user here } }"
    postfix = Postfix.start(cert=cert, key=key, settings={"smtpd_recipient_restrictions": refuse})
    try:
        ws = _mail_workspace(workspace, postfix.port)
        ws.env.update({"DIGEST_SMTP__SECURITY": "starttls", "DIGEST_SMTP__VERIFY_TLS": "false"})
        readers = [f"reader{i}@example.org" for i in range(8)]
        add_subscribers(ws, readers)
        result = ws.run("send")
        assert "7 sent, 0 failed" in result.stdout and "1 bounced" in result.stdout, result.stdout + result.stderr
        states = ledger(ws)
        assert states["reader3@example.org"][0] == "bounced"
        assert states["reader3@example.org"][1].startswith("RCPT TO: 550 5.1.1")
        assert "no such user here" in states["reader3@example.org"][1]
        assert {a for a, (s, _) in states.items() if s == "sent"} == set(readers) - {"reader3@example.org"}
        assert postfix.wait_for_log(" status=sent ", 7) == 7
        log = postfix.log()
        assert "improper command pipelining" not in log
        assert "starttls=1" in log
    finally:
        postfix.stop()
