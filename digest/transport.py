"""The transport seam: what the sending code needs from a way of delivering mail, and the one place that builds
the configured one (setting `transport`, default "smtp").

As listmonk's manager defines its `Messenger`, the code that sends defines the small interface it needs: hand over
one message for one recipient and learn what happened to it (`Outcome`):

- SENT: the server accepted the message;
- FAILED: a permanent refusal, with the server's words (`classify_reply` tells a hard bounce from a soft one);
- DEFERRED: a temporary refusal, or the message never fully reached the server: it cannot have it;
- UNKNOWN: the whole message went out but no answer came back: the server may have accepted it.

Everything here is transport-neutral: issue mail (`DeliveryPool`, digest/sending.py) and the signup notices
(`deliver_notice`) both get their messenger from `make_messenger`. Each transport is one module (digest/mailer.py
speaks SMTP) named in `digest.settings.TRANSPORTS` and exposing `messenger(settings) -> Messenger`; adding one is
that module and that row.
"""

from __future__ import annotations

import importlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, cast

from digest.errors import DeliveryError, SettingsError
from digest.message import DkimKey, WireMessage, sign_dkim, smtp_address
from digest.settings import TRANSPORTS, Settings


class Outcome(StrEnum):
    """What happened to one message."""

    SENT = "sent"
    FAILED = "failed"
    DEFERRED = "deferred"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SendResult:
    """The outcome of one message, with the server's reply (or the connection error) as `detail`."""

    outcome: Outcome
    detail: str = ""


class Messenger(Protocol):
    """What the publisher needs from a way of delivering mail."""

    def open(self) -> None:
        """Connect (raises DeliveryError when the server cannot be used at all)."""

    @property
    def eight_bit(self) -> bool:
        """Whether message data may contain 8-bit bytes (the server offers 8BITMIME)."""

    def send(
        self,
        sender: str,
        recipient: str,
        data: bytes | WireMessage,
        confirm: Callable[[], bool] | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> SendResult:
        """Deliver `data` (a message, or one made ready for DATA) to one recipient; never raises for a per-message
        problem.

        `confirm` is called at the last moment the message can still be withdrawn (before the end of its data):
        when it answers False, the server does not get the message (the result is DEFERRED). `meanwhile` is called
        once the whole message is out, while the server reads it (the caller prepares its next message then)."""

    def close(self) -> None:
        """Say goodbye and drop the connection."""


class RateLimiter:
    """At most `per_second` events overall, shared by every thread (evenly spaced, no bursts)."""

    def __init__(
        self,
        per_second: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / per_second
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until the next event is allowed."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


@dataclass(frozen=True)
class Job:
    """One message to deliver; `build(eight_bit)` makes it once the server's abilities are known."""

    key: int
    sender: str
    recipient: str
    build: Callable[[bool], bytes | WireMessage]


@dataclass(frozen=True)
class Done:
    """A finished job and how many attempts it took."""

    key: int
    result: SendResult
    attempts: int


@dataclass(frozen=True)
class _Built:
    """A job's message as built for a server with (or without) 8BITMIME; `data` None when it cannot be built."""

    job: Job
    eight_bit: bool
    data: bytes | WireMessage | None
    error: str = ""


def _build(job: Job, eight_bit: bool) -> _Built:
    try:
        return _Built(job, eight_bit, job.build(eight_bit))
    except Exception as exc:  # one subscriber's bad data never stops the batch
        return _Built(job, eight_bit, None, f"cannot build the message: {exc}")


class Step:
    """What a connection asks of the ledger: record `done` (the outcomes of its messages finished since its last
    step: none, one, at most two) and claim `job` (None when the connection has finished). The connection
    prepares the job meanwhile (builds it if not built yet, sends MAIL, RCPT, DATA and the message) but sends the
    final "." only after `answer(True)`."""

    def __init__(self, done: Sequence[Done], job: Job | None, closing: threading.Event) -> None:
        self.done = tuple(done)
        self.job = job
        self._claimed = False
        self._ready = threading.Event()
        self._closing = closing

    def answer(self, claimed: bool) -> None:
        """The ledger has committed: the job may go out (`claimed`) or must not."""
        self._claimed = claimed
        self._ready.set()

    @property
    def refused(self) -> bool:
        """Answered already, and the job must not go out."""
        return self._ready.is_set() and not self._claimed

    def wait(self) -> bool:
        """Block until answered; False when the job must not go out (or the pool is being closed)."""
        while not self._ready.wait(0.1):
            if self._closing.is_set():
                return False
        return self._claimed


class DeliveryPool:
    """One thread per messenger (one connection each, reused for many messages), fed from one queue of jobs.

    A thread hands the caller `Step`s (`next_steps()`): the outcome of a message it finished and the job it takes
    next. The caller records the one and claims the other in ONE transaction and answers; the thread sends MAIL,
    RCPT, DATA and all of the message but the final "." (until which the server cannot accept it) and ends it only
    once answered. So each message is claimed durably before the server can have it.

    The claim is made one message ahead: as soon as a message is out (its final "." sent), its thread takes the
    next job, hands over the step claiming it (with the outcome of the message before) and builds it, all while the
    server reads and stores the current one. The ledger's commit (an fsync) then overlaps the server's own work
    (an fsync too, for a real MTA) instead of adding to it between one message's reply and the next one's final
    "." (on this loaded 2-core machine the CPU, not the fsyncs, set the rate: docs/performance.md). The price:
    when the sender is killed, a connection leaves at most two claimed messages whose outcome is not recorded (the
    one on the wire, and either the one before it, answered but not yet recorded, or the next one, claimed but not
    sent); the next run marks them 'unknown' and sends neither unless asked to.
    A claimed message always goes out, even after `stop`: only a job not yet claimed is left in the queue.

    A DEFERRED message is retried by the same thread after each of `retry_delays` (exponential backoff); setting
    `stop` ends the backoff early, so the message is reported as deferred, and each thread takes no new job.
    """

    def __init__(
        self,
        messengers: Sequence[Messenger],
        limiter: RateLimiter,
        retry_delays: Sequence[float],
        stop: threading.Event,
    ) -> None:
        self.retry_delays = tuple(retry_delays)
        self.limiter = limiter
        self.stop = stop
        # SimpleQueue: its put and get are C code, a Queue's are Python (a handful of them per message).
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._steps: queue.SimpleQueue[Step] = queue.SimpleQueue()
        self._closing = threading.Event()
        self._feed: Iterator[Job] | None = None
        self._open_lanes = len(messengers)
        self._threads = [
            threading.Thread(target=self._work, args=(m,), name=f"messenger-{i}", daemon=True)
            for i, m in enumerate(messengers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def size(self) -> int:
        """How many messages can be in flight at once."""
        return len(self._threads)

    @property
    def running(self) -> bool:
        """Whether some thread may still hand over a step."""
        return self._open_lanes > 0

    def _finish(self) -> None:
        """No more jobs: each thread hands over its last outcome and stops once the queue is empty."""
        for _ in self._threads:
            self._jobs.put(None)

    def feed(self, jobs: Iterable[Job]) -> None:
        """Queue `jobs`, then finish, taking each job from `jobs` only shortly before a thread needs it: a few
        per thread stay queued (each thread claims its next job as soon as a message is out), topped up by
        `next_steps`. So the first message leaves before the last job is made (a list of 100,000 does not wait
        ~1.5 s for its jobs), and the making is spread over the send."""
        self._feed = iter(jobs)
        self._top_up()

    def _top_up(self) -> None:
        # Called before the caller waits for a step, never leaving the queue empty while jobs remain: a thread
        # that finds it empty waits there with its last outcome not handed over, which would stall the caller.
        while self._feed is not None and self._jobs.qsize() < 2 * len(self._threads) + 2:
            job = next(self._feed, None)
            if job is None:
                self._feed = None
                self._finish()
            else:
                self._jobs.put(job)

    def next_steps(self) -> list[Step]:
        """Wait for the next step, and take every other one already waiting (to record them in one transaction).
        Each must be answered."""
        self._top_up()
        steps = [self._steps.get()]
        while not self._steps.empty():  # this thread is the only one taking steps
            steps.append(self._steps.get())
        self._open_lanes -= sum(step.job is None for step in steps)
        return steps

    def close(self) -> None:
        """End the threads: unanswered steps are refused (nothing more goes out), connections are closed."""
        if self.running:
            self._closing.set()
            self._finish()
        for thread in self._threads:
            thread.join()

    def _work(self, messenger: Messenger) -> None:
        held: list[Done] = []  # outcomes not handed over yet
        ahead: list[tuple[Step, _Built]] = []  # the next job, claimed (and built) while the server read the last
        no_more: list[bool] = []  # the queue said so while a message was out

        def hand_over(job: Job | None) -> Step:
            step = Step(held, job, self._closing)
            held.clear()
            self._steps.put(step)
            return step

        def claim_next() -> None:
            """Called once a message is fully out: claim the next job and build it while the server reads."""
            if ahead or no_more or self.stop.is_set() or self._closing.is_set():
                return
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return  # taken (blocking) when its turn comes
            if job is None:
                no_more.append(True)
                return
            step = hand_over(job)  # the commit runs while this thread builds and the server reads
            ahead.append((step, _build(job, messenger.eight_bit)))

        try:
            while True:
                if ahead:
                    step, built = ahead.pop()
                else:
                    job = None if no_more or self.stop.is_set() or self._closing.is_set() else self._jobs.get()
                    if self.stop.is_set() or self._closing.is_set():
                        job = None
                    step, built = hand_over(job), None
                    if job is None:
                        step.wait()
                        return
                assert step.job is not None
                finished = self._deliver(messenger, step.job, step, built, claim_next)
                if finished is not None:
                    held.append(finished)
        finally:
            messenger.close()

    def _deliver(
        self, messenger: Messenger, job: Job, step: Step, built: _Built | None, meanwhile: Callable[[], None]
    ) -> Done | None:
        """Send one job (with retries); None when the ledger did not let it go out."""
        if step.refused:
            return None  # e.g. unsubscribed meanwhile: known before a word of it was sent
        attempts = 0
        result = SendResult(Outcome.DEFERRED, "not attempted")
        for delay in (*self.retry_delays, None):
            self.limiter.wait()
            attempts += 1
            try:
                messenger.open()
            except DeliveryError as exc:
                result = SendResult(Outcome.DEFERRED, str(exc))
            else:
                if built is None or built.eight_bit != messenger.eight_bit:
                    built = _build(job, messenger.eight_bit)
                if built.data is None:
                    result = SendResult(Outcome.FAILED, built.error)
                    break
                try:
                    result = messenger.send(job.sender, job.recipient, built.data, step.wait, meanwhile)
                except Exception as exc:  # unexpected: the message may have gone out, so never resend it blindly
                    result = SendResult(Outcome.UNKNOWN, f"internal error while sending: {exc!r}")
                    break
            if result.outcome is not Outcome.DEFERRED or delay is None or self.stop.is_set():
                break
            if self.stop.wait(delay):
                break
        # The outcome is ours to record only if the job was claimed (it may have failed before it had to be).
        return Done(job.key, result, attempts) if step.wait() else None


def make_messenger(settings: Settings) -> Messenger:
    """A new messenger of the configured transport (for SMTP: one connection, opened on first use)."""
    module = importlib.import_module(TRANSPORTS[settings.transport])
    return cast(Messenger, module.messenger(settings))


def dkim_key(settings: Settings) -> DkimKey | None:
    """The DKIM key when selector, domain and key file are all set (issues and notices alike are signed with it);
    SettingsError when only some are."""
    s = settings
    given = [bool(s.dkim_selector), bool(s.dkim_domain), s.dkim_key_file is not None]
    if not any(given):
        return None
    if not all(given) or s.dkim_key_file is None:
        raise SettingsError("DKIM needs all of dkim_selector, dkim_domain and dkim_key_file (or none of them)")
    try:
        key = s.dkim_key_file.read_bytes()
    except OSError as exc:
        raise SettingsError(f"dkim_key_file: cannot read {s.dkim_key_file}: {exc.strerror}") from None
    return DkimKey(s.dkim_selector, s.dkim_domain, key)


def deliver_notice(settings: Settings, recipient: str, message: bytes) -> SendResult:
    """Mail one transactional message (signup confirmation, welcome, personal data) through the configured
    transport with an issue's hygiene (see send_notice). The delivery ledger does not record it; DeliveryError when
    the transport cannot be used at all."""
    messenger = make_messenger(settings)
    messenger.open()
    try:
        return send_notice(messenger, settings, recipient, message)
    finally:
        messenger.close()


def send_notice(messenger: Messenger, settings: Settings, recipient: str, message: bytes) -> SendResult:
    """Send one transactional message over an open `messenger` (the signup outbox reuses one for many) with an
    issue's hygiene: DKIM-signed when DKIM is configured, its own return path (`bounce_address`, without VERP: no
    delivery to name) and the messenger's EHLO name."""
    key = dkim_key(settings)
    data = sign_dkim(message, key) if key is not None else message
    return messenger.send(smtp_address(settings.bounce_mailbox), smtp_address(recipient), data)
