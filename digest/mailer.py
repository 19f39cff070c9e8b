"""SMTP delivery: the only module that speaks SMTP.

`Messenger` is the small interface the publisher needs (as listmonk's sender does): hand over one message for one
recipient and learn what happened. `SmtpMessenger` keeps one connection open for many messages and tells apart the
outcomes the delivery ledger needs:

- SENT: the server answered 250 to the message data;
- FAILED: a permanent 5xx (bad recipient, rejected content), with the server's reply;
- DEFERRED: a 4xx, or the connection failed before the message data was complete: the server cannot have it;
- UNKNOWN: the whole message data went out but no reply came back: the server may have accepted it.

smtplib's `sendmail` cannot make the last distinction, so the DATA phase is done here with smtplib's lower calls.
"""

from __future__ import annotations

import queue
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from digest.errors import DeliveryError
from digest.settings import SmtpSettings


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

    def send(self, sender: str, recipient: str, data: bytes) -> SendResult:
        """Deliver `data` (CRLF line ends) to one recipient; never raises for a per-message problem."""

    def close(self) -> None:
        """Say goodbye and drop the connection."""


class SmtpMessenger:
    """One SMTP connection, reused for many messages and reopened after a failure."""

    def __init__(self, config: SmtpSettings, local_hostname: str | None = None) -> None:
        self.config = config
        self.local_hostname = local_hostname
        self._conn: smtplib.SMTP | None = None
        self._eight_bit = False

    @property
    def eight_bit(self) -> bool:
        """Whether the server offered 8BITMIME on the current (or last) connection."""
        return self._eight_bit

    def open(self) -> None:
        """Connect, upgrade to TLS and log in as configured; DeliveryError says what to fix."""
        if self._conn is not None:
            return
        cfg = self.config
        where = f"{cfg.host}:{cfg.port}"
        try:
            conn = self._connect()
            if cfg.username:
                conn.login(cfg.username, cfg.resolved_password())
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"SMTP server {where} refused the login of {cfg.username!r}: {_reply(exc.smtp_code, exc.smtp_error)};"
                " check DIGEST_SMTP__USERNAME and DIGEST_SMTP__PASSWORD"
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"SMTP server {where}: {exc} (check smtp.security)") from None
        except ssl.SSLError as exc:
            raise DeliveryError(
                f"SMTP server {where}: TLS failed: {exc.reason or exc}"
                " (check smtp.security; smtp.verify_tls = false only for a server you trust)"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"cannot reach SMTP server {where}: {_describe(exc)}") from None
        self._conn = conn
        self._eight_bit = conn.has_extn("8bitmime")

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        context = ssl.create_default_context()
        if not cfg.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        conn: smtplib.SMTP
        if cfg.security == "ssl":
            conn = smtplib.SMTP_SSL(
                cfg.host, cfg.port, local_hostname=self.local_hostname, timeout=cfg.timeout, context=context
            )
        else:
            conn = smtplib.SMTP(cfg.host, cfg.port, local_hostname=self.local_hostname, timeout=cfg.timeout)
        try:
            conn.ehlo_or_helo_if_needed()
            if cfg.security == "starttls":
                conn.starttls(context=context)
                conn.ehlo()
        except BaseException:
            conn.close()
            raise
        return conn

    def send(self, sender: str, recipient: str, data: bytes) -> SendResult:
        """One SMTP transaction: MAIL, RCPT, DATA. Any failure leaves the connection ready for the next message
        (reset, or closed to be reopened)."""
        try:
            self.open()
        except DeliveryError as exc:
            return SendResult(Outcome.DEFERRED, str(exc))
        conn = self._conn
        assert conn is not None
        options = ["BODY=8BITMIME"] if self._eight_bit and any(b > 127 for b in data) else []
        data_sent = False
        try:
            code, reply = conn.mail(sender, options)
            if code != 250:
                return self._refused(code, reply, "MAIL FROM")
            code, reply = conn.rcpt(recipient)
            if code not in (250, 251):
                return self._refused(code, reply, "RCPT TO")
            conn.putcmd("data")
            code, reply = conn.getreply()
            if code != 354:
                return self._refused(code, reply, "DATA")
            conn.send(_dot_stuffed(data))
            data_sent = True
            code, reply = conn.getreply()
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self._drop()
            if data_sent:
                return SendResult(Outcome.UNKNOWN, f"connection lost after the message was sent: {_describe(exc)}")
            return SendResult(Outcome.DEFERRED, f"connection lost before the message was sent: {_describe(exc)}")
        except smtplib.SMTPException as exc:
            self._drop()
            return SendResult(Outcome.DEFERRED, _describe(exc))
        if code == 250:
            return SendResult(Outcome.SENT, _reply(code, reply))
        return self._refused(code, reply, "end of data")

    def _refused(self, code: int, reply: bytes, stage: str) -> SendResult:
        detail = f"{stage}: {_reply(code, reply)}"
        if code == 421 or code == -1:
            self._drop()  # the server is closing the connection
        else:
            self._reset()
        return SendResult(Outcome.FAILED if 500 <= code < 600 else Outcome.DEFERRED, detail)

    def _reset(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        """QUIT politely, then close."""
        if self._conn is None:
            return
        try:
            self._conn.quit()
        except (OSError, smtplib.SMTPException):
            pass
        finally:
            self._drop()


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
    """One message to deliver; `build(eight_bit)` makes its bytes once the server's abilities are known."""

    key: int
    sender: str
    recipient: str
    build: Callable[[bool], bytes]


@dataclass(frozen=True)
class Done:
    """A finished job and how many SMTP attempts it took."""

    key: int
    result: SendResult
    attempts: int


class DeliveryPool:
    """One thread per messenger (one connection each, reused for many messages).

    A DEFERRED message is retried by the same thread after each of `retry_delays` (exponential backoff); setting
    `stop` ends the backoff early, so the message is reported as deferred and a stopping run does not linger.
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
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._done: queue.Queue[Done] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._work, args=(m,), name=f"smtp-{i}", daemon=True)
            for i, m in enumerate(messengers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def size(self) -> int:
        """How many messages can be in flight at once."""
        return len(self._threads)

    def submit(self, job: Job) -> None:
        """Queue a message; a free thread picks it up."""
        self._jobs.put(job)

    def next_done(self) -> Done:
        """Wait for the next finished message."""
        return self._done.get()

    def close(self) -> None:
        """Let every thread finish the message it holds, then close the connections."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()

    def _work(self, messenger: Messenger) -> None:
        try:
            while (job := self._jobs.get()) is not None:
                self._done.put(self._deliver(messenger, job))
        finally:
            messenger.close()

    def _deliver(self, messenger: Messenger, job: Job) -> Done:
        attempts = 0
        data: bytes | None = None
        built_for: bool | None = None
        result = SendResult(Outcome.DEFERRED, "not attempted")
        for delay in (*self.retry_delays, None):
            self.limiter.wait()
            attempts += 1
            try:
                messenger.open()
            except DeliveryError as exc:
                result = SendResult(Outcome.DEFERRED, str(exc))
            else:
                if data is None or built_for != messenger.eight_bit:
                    try:
                        data, built_for = job.build(messenger.eight_bit), messenger.eight_bit
                    except Exception as exc:  # one subscriber's bad data never stops the batch
                        return Done(job.key, SendResult(Outcome.FAILED, f"cannot build the message: {exc}"), attempts)
                try:
                    result = messenger.send(job.sender, job.recipient, data)
                except Exception as exc:  # unexpected: the message may have gone out, so never resend it blindly
                    unknown = SendResult(Outcome.UNKNOWN, f"internal error while sending: {exc!r}")
                    return Done(job.key, unknown, attempts)
            if result.outcome is not Outcome.DEFERRED or delay is None or self.stop.is_set():
                break
            if self.stop.wait(delay):
                break
        return Done(job.key, result, attempts)


def _dot_stuffed(data: bytes) -> bytes:
    """Message data as DATA sends it: CRLF line ends, leading dots doubled, ended by CRLF.CRLF."""
    data = re.sub(rb"(?:\r\n|\n|\r(?!\n))", b"\r\n", data)
    data = re.sub(rb"(?m)^\.", b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _reply(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return f"{code} {' '.join(text.split())}".strip()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply(exc.smtp_code, exc.smtp_error)
    return str(exc) or type(exc).__name__
