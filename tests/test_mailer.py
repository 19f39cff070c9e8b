"""The SMTP messenger against a real server: what each server answer becomes, connection reuse, and the rate limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator

import pytest

from digest.errors import DeliveryError
from digest.mailer import SmtpMessenger
from digest.settings import SmtpSettings
from digest.transport import DeliveryPool, Job, Outcome, RateLimiter, Step
from tests.mail_util import MailServer, free_port, smtp_server_fixture  # noqa: F401  (fixture)

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\n.leading dot\r\n\xe4\xb8\xad\xe6\x96\x87\r\n"


def messenger(server: MailServer) -> SmtpMessenger:
    return SmtpMessenger(SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout=5))


def test_many_messages_over_one_connection_with_8bitmime(smtp_server: MailServer) -> None:
    m = messenger(smtp_server)
    m.open()
    assert m.eight_bit
    results = [m.send("a@example.org", f"r{i}@example.org", MESSAGE) for i in range(5)]
    m.close()
    assert [r.outcome for r in results] == [Outcome.SENT] * 5
    assert "250" in results[0].detail
    assert smtp_server.connections == 1
    assert smtp_server.received[0].data == MESSAGE  # dot-stuffing undone by the server: bytes arrive intact


def test_550_fails_that_recipient_only(smtp_server: MailServer) -> None:
    smtp_server.reject = {"bad@example.org"}
    m = messenger(smtp_server)
    bad = m.send("a@example.org", "bad@example.org", MESSAGE)
    good = m.send("a@example.org", "good@example.org", MESSAGE)
    m.close()
    assert bad.outcome is Outcome.FAILED and bad.detail.startswith("RCPT TO: 550 5.1.1")
    assert good.outcome is Outcome.SENT
    assert smtp_server.connections == 1  # the connection was reset and reused, not dropped


def test_451_defers(smtp_server: MailServer) -> None:
    smtp_server.temp_fail_after = 0
    result = messenger(smtp_server).send("a@example.org", "r@example.org", MESSAGE)
    assert result.outcome is Outcome.DEFERRED and "451" in result.detail


def test_connection_dropped_after_data_is_unknown_and_the_next_message_reconnects(
    smtp_server: MailServer,
) -> None:
    smtp_server.drop_after_data = {"lost@example.org"}
    m = messenger(smtp_server)
    lost = m.send("a@example.org", "lost@example.org", MESSAGE)
    after = m.send("a@example.org", "next@example.org", MESSAGE)
    m.close()
    assert lost.outcome is Outcome.UNKNOWN and "after the message was sent" in lost.detail
    assert after.outcome is Outcome.SENT
    assert smtp_server.connections == 2


def test_unreachable_server_is_a_delivery_error_on_open_and_deferred_on_send() -> None:
    m = SmtpMessenger(SmtpSettings(host="127.0.0.1", port=free_port(), security="none", timeout=2))
    with pytest.raises(DeliveryError, match="cannot reach SMTP server"):
        m.open()
    assert m.send("a@example.org", "r@example.org", MESSAGE).outcome is Outcome.DEFERRED


def test_starttls_against_a_server_without_it_says_what_to_fix(smtp_server: MailServer) -> None:
    m = SmtpMessenger(SmtpSettings(host="127.0.0.1", port=smtp_server.port, security="starttls", timeout=5))
    with pytest.raises(DeliveryError, match=r"smtp\.security"):
        m.open()


def test_no_8bitmime_is_noticed(smtp_server: MailServer) -> None:
    smtp_server.offer_8bitmime = False
    m = messenger(smtp_server)
    m.open()
    assert not m.eight_bit
    m.close()


def test_rate_limiter_spaces_events_evenly() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(4, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.wait()
    assert slept == [0.25, 0.25, 0.25, 0.25]


def run_pool(pool: DeliveryPool, jobs: Iterable[Job], answer: Callable[[Step], bool]) -> list[Step]:
    """Feed the pool as the publisher does, answering each step with `answer(step)`; every step, in order."""
    steps: list[Step] = []
    try:
        pool.feed(jobs)
        while pool.running:
            for step in pool.next_steps():
                step.answer(step.job is not None and answer(step))
                steps.append(step)
    finally:
        pool.close()
    return steps


def test_pool_retries_a_deferred_message_and_builds_for_the_server(smtp_server: MailServer) -> None:
    smtp_server.temp_fail_after = 0
    smtp_server.temp_failures = 2
    built: list[bool] = []

    def build(eight_bit: bool) -> bytes:
        built.append(eight_bit)
        return MESSAGE

    pool = DeliveryPool([messenger(smtp_server)], RateLimiter(1000), [0.01, 0.02, 0.04], threading.Event())
    steps = run_pool(pool, [Job(7, "a@example.org", "r@example.org", build)], lambda step: True)
    (done,) = [done for step in steps for done in step.done]
    assert (done.key, done.result.outcome, done.attempts) == (7, Outcome.SENT, 3)
    assert built == [True]  # built once, 8bit because the server offers 8BITMIME


def test_pool_sends_the_data_only_after_the_claim_and_claims_one_message_ahead(smtp_server: MailServer) -> None:
    """The ledger's guarantee: a message is claimed before the server can have it (before its final dot). The
    claim of the next message is asked for as soon as the current one is out, with the outcome of the one before,
    so the commit overlaps the server's work; every outcome is handed over exactly once."""
    arrived_at_claim: list[bool] = []

    def answer(step: Step) -> bool:
        time.sleep(0.02)  # a slow commit: the connection must wait for it before the final dot
        assert step.job is not None
        arrived_at_claim.append(step.job.recipient in smtp_server.recipients())
        return step.job.key != 2  # subscriber 2 unsubscribed meanwhile: must not be sent

    jobs = [Job(i, "a@example.org", f"r{i}@example.org", lambda eight_bit: MESSAGE) for i in range(5)]
    pool = DeliveryPool([messenger(smtp_server)], RateLimiter(1000), [], threading.Event())
    steps = run_pool(pool, jobs, answer)
    assert [([d.key for d in s.done], s.job.key if s.job else None) for s in steps] == [
        ([], 0),
        ([], 1),  # asked for while message 0 was read by the server
        ([0], 2),
        ([1], 3),  # 2 was refused: nothing to record, and 3 is claimed once 2 is known to be refused
        ([], 4),
        ([3, 4], None),  # no job left to claim ahead: the last two outcomes come together
    ]
    assert arrived_at_claim == [False] * 5  # no message reached the server before its claim was answered
    assert sorted(smtp_server.recipients()) == ["r0@example.org", "r1@example.org", "r3@example.org", "r4@example.org"]


def test_pool_builds_the_next_message_while_the_server_reads_the_current_one(smtp_server: MailServer) -> None:
    smtp_server.delay = 0.05  # the server takes a while over each message
    received_at_build: list[int] = []

    def build(eight_bit: bool) -> bytes:
        received_at_build.append(len(smtp_server.received))
        return MESSAGE

    jobs = [Job(i, "a@example.org", f"r{i}@example.org", build) for i in range(4)]
    pool = DeliveryPool([messenger(smtp_server)], RateLimiter(1000), [], threading.Event())
    steps = run_pool(pool, jobs, lambda step: True)
    assert received_at_build == [0, 0, 1, 2]  # each next message built before the server had taken the current one
    assert [d.result.outcome for s in steps for d in s.done] == [Outcome.SENT] * 4


def test_after_a_stop_the_message_claimed_ahead_goes_out_and_no_job_is_taken(smtp_server: MailServer) -> None:
    stop = threading.Event()

    def answer(step: Step) -> bool:
        if step.job is not None and step.job.key == 1:
            stop.set()  # e.g. SIGTERM while message 0 is read by the server, once job 1 was claimed ahead
        return True

    built: list[int] = []

    def job(i: int) -> Job:
        return Job(i, "a@example.org", f"r{i}@example.org", lambda eight_bit: built.append(i) or MESSAGE)

    smtp_server.delay = 0.05
    pool = DeliveryPool([messenger(smtp_server)], RateLimiter(1000), [], stop)
    steps = run_pool(pool, [job(i) for i in range(4)], answer)
    assert built == [0, 1]
    assert [([d.key for d in s.done], s.job.key if s.job else None) for s in steps] == [
        ([], 0),
        ([], 1),
        ([0, 1], None),
    ]
    assert smtp_server.recipients() == {"r0@example.org": 1, "r1@example.org": 1}


def test_a_message_that_cannot_be_built_fails_alone(smtp_server: MailServer) -> None:
    def broken(eight_bit: bool) -> bytes:
        raise ValueError("bad subscriber data")

    jobs = [
        Job(0, "a@example.org", "r0@example.org", lambda eight_bit: MESSAGE),
        Job(1, "a@example.org", "r1@example.org", broken),  # built early, while message 0 goes out
        Job(2, "a@example.org", "r2@example.org", lambda eight_bit: MESSAGE),
    ]
    pool = DeliveryPool([messenger(smtp_server)], RateLimiter(1000), [], threading.Event())
    steps = run_pool(pool, jobs, lambda step: True)
    results = {d.key: d.result for s in steps for d in s.done}
    assert [results[k].outcome for k in range(3)] == [Outcome.SENT, Outcome.FAILED, Outcome.SENT]
    assert "bad subscriber data" in results[1].detail
    assert sorted(smtp_server.recipients()) == ["r0@example.org", "r2@example.org"]


def test_pool_makes_jobs_as_the_connections_need_them(smtp_server: MailServer) -> None:
    """A big list does not wait for all its jobs to be made: the first messages are out before the last job is
    made, a few jobs at most are queued ahead, and every job goes out once."""
    received_when_made: list[int] = []

    def jobs() -> Iterator[Job]:
        for n in range(60):
            received_when_made.append(len(smtp_server.received))
            yield Job(n, "a@example.org", f"r{n}@example.org", lambda eight_bit: MESSAGE)

    pool = DeliveryPool([messenger(smtp_server), messenger(smtp_server)], RateLimiter(10_000), [], threading.Event())
    steps = run_pool(pool, jobs(), lambda step: True)
    # Made ahead of what the server has: at most 6 queued, 2 per connection taken (one out, one claimed), 1 late.
    assert all(n - received <= 11 for n, received in enumerate(received_when_made))
    assert sorted(d.key for s in steps for d in s.done) == list(range(60))
    assert smtp_server.recipients() == {f"r{n}@example.org": 1 for n in range(60)}
