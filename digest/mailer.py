"""SMTP delivery: the only module that speaks SMTP, one `Messenger` of digest/transport.py (setting
`transport = "smtp"`).

`SmtpMessenger` keeps one connection open for many messages and tells apart the outcomes the delivery ledger needs:

- SENT: the server answered 250 to the message data;
- FAILED: a permanent 5xx (bad recipient, rejected content), with the server's reply;
- DEFERRED: a 4xx, or the connection failed before the message data was complete: the server cannot have it;
- UNKNOWN: the whole message data went out but no reply came back: the server may have accepted it.

smtplib's `sendmail` cannot make the last distinction, so the DATA phase is done here with smtplib's lower calls.
smtplib has no PIPELINING (RFC 2920) either: when the server offers it, MAIL FROM, RCPT TO and DATA go out in one
write and their three replies are read in order (one round trip instead of three).
"""

from __future__ import annotations

import contextlib
import functools
import re
import smtplib
import socket
import ssl
from collections.abc import Callable

from digest.errors import DeliveryError
from digest.message import END_OF_DATA, WireMessage, wire_message
from digest.settings import Settings, SmtpSettings
from digest.transport import Outcome, SendResult


def messenger(settings: Settings) -> SmtpMessenger:
    """The SMTP messenger of `settings`, saying `smtp.helo_name` (else this machine's name) in EHLO."""
    return SmtpMessenger(settings.smtp, local_hostname=settings.smtp.helo_name or default_helo(settings.bounce_mailbox))


@functools.cache
def default_helo(bounce_mailbox: str) -> str:
    """This machine's fully qualified name, or else the bounce domain: never an address literal, which spam filters
    score (smtplib's fallback when the host name has no dot). Looked up once per process."""
    fqdn = socket.getfqdn()
    return fqdn if "." in fqdn and not fqdn.endswith(".localdomain") else bounce_mailbox.rpartition("@")[2]


@functools.cache
def tls_context(verify: bool) -> ssl.SSLContext:
    """The TLS settings of every connection of this process: built once (loading the CA certificates costs about
    20 ms of CPU), shared by every connection and thread. Without verification (verify_tls = false) the CA
    certificates would never be read, so they are not loaded: create_default_context() less that step."""
    if verify:
        return ssl.create_default_context()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class SmtpMessenger:
    """One SMTP connection, reused for many messages and reopened after a failure."""

    def __init__(self, config: SmtpSettings, local_hostname: str | None = None) -> None:
        self.config = config
        self.local_hostname = local_hostname
        self._conn: smtplib.SMTP | None = None
        self._eight_bit = False
        self._pipelining = False

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
        self._pipelining = conn.has_extn("pipelining")
        if conn.sock is not None:
            with contextlib.suppress(OSError):
                # Commands and the final "." go out at once, not held back by Nagle's algorithm behind the data.
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        conn: smtplib.SMTP
        if cfg.security == "ssl":
            conn = smtplib.SMTP_SSL(
                cfg.host,
                cfg.port,
                local_hostname=self.local_hostname,
                timeout=cfg.timeout,
                context=tls_context(cfg.verify_tls),
            )
        else:
            conn = smtplib.SMTP(cfg.host, cfg.port, local_hostname=self.local_hostname, timeout=cfg.timeout)
        try:
            conn.ehlo_or_helo_if_needed()
            if cfg.security == "starttls":
                conn.starttls(context=tls_context(cfg.verify_tls))
                conn.ehlo()
        except BaseException:
            conn.close()
            raise
        return conn

    def send(
        self,
        sender: str,
        recipient: str,
        data: bytes | WireMessage,
        confirm: Callable[[], bool] | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> SendResult:
        """One SMTP transaction: MAIL, RCPT, DATA (in one write when the server offers PIPELINING), the message,
        `confirm()`, the final dot, `meanwhile()`, the reply. Any failure leaves the connection ready for the next
        message (reset, or closed to be reopened).

        The server processes a mail transaction only on receipt of the end-of-data "." line (RFC 5321, 4.1.1.4);
        a connection that closes before it leaves nothing to deliver. So everything up to that line is sent while
        the caller decides (commits its ledger), and a withdrawn message is dropped with the connection."""
        try:
            self.open()
        except DeliveryError as exc:
            return SendResult(Outcome.DEFERRED, str(exc))
        conn = self._conn
        assert conn is not None
        wire = data if isinstance(data, WireMessage) else wire_message(data)
        options = ["BODY=8BITMIME"] if self._eight_bit and wire.eight_bit else []
        data_sent = False
        # smtplib's mail() and rcpt() parse each address again (email.utils.parseaddr): ours are plain already.
        commands = (
            f"MAIL FROM:{_angle_addr(sender)}{''.join(' ' + o for o in options)}",
            f"RCPT TO:{_angle_addr(recipient)}",
            "DATA",
        )
        try:
            refused = self._envelope(conn, commands)
            if refused is not None:
                return refused
            payload = memoryview(wire.data)
            conn.send(payload[: -len(END_OF_DATA)])
            if confirm is not None and not confirm():
                self._drop()
                return SendResult(Outcome.DEFERRED, "not sent: withdrawn before the end of the message data")
            data_sent = True  # from here on the server may have the message
            conn.send(payload[-len(END_OF_DATA) :])
            if meanwhile is not None:
                meanwhile()  # the server needs a while to read ~70 KB: time enough to build another message
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

    def _envelope(self, conn: smtplib.SMTP, commands: tuple[str, str, str]) -> SendResult | None:
        """Send MAIL, RCPT and DATA and read their replies; None once the server waits for the message (354), else
        the refusal. With PIPELINING the three go out in one write and every reply is read, in order, before
        deciding (RFC 2920): a refused MAIL or RCPT is reported as such, not as the DATA refusal that follows it."""
        if any("\r" in command or "\n" in command for command in commands):
            raise ValueError("an SMTP command must not contain a line break")  # as smtplib's putcmd refuses
        stages = ("MAIL FROM", "RCPT TO", "DATA")
        expected = ((250,), (250, 251), (354,))
        if not self._pipelining:
            for command, stage, ok in zip(commands, stages, expected, strict=True):
                conn.send(f"{command}\r\n".encode("ascii"))
                code, reply = conn.getreply()
                if code not in ok:
                    return self._refused(code, reply, stage)
            return None
        conn.send("".join(f"{command}\r\n" for command in commands).encode("ascii"))
        replies = [conn.getreply() for _ in commands]
        for (code, reply), stage, ok in zip(replies, stages, expected, strict=True):
            if code not in ok:
                if replies[-1][0] == 354:
                    self._drop()  # DATA accepted all the same: hang up rather than send an empty message
                return self._refused(code, reply, stage)
        return None

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


def _angle_addr(address: str) -> str:
    """`<address>` for an SMTP command; anything unusual goes through smtplib's own quoting."""
    return f"<{address}>" if _PLAIN_ADDR.fullmatch(address) else smtplib.quoteaddr(address)


_PLAIN_ADDR = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")


def _reply(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return f"{code} {' '.join(text.split())}".strip()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply(exc.smtp_code, exc.smtp_error)
    return str(exc) or type(exc).__name__
