"""A real SMTP server for the mail tests (aiosmtpd on 127.0.0.1, a free port), storing what it receives, with the
faults a real server shows: 451 after N messages, 550 for one recipient, a connection dropped right after the data,
no 8BITMIME, and a delay per message."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller


@dataclass
class Received:
    """One message as the server got it: envelope and the exact bytes."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class MailServer:
    """Stores every accepted message; the public fields switch the faults on."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    temp_fail_after: int | None = None  # answer 451 to every message after this many were accepted ...
    temp_failures: int = 1_000_000  # ... this many times in all
    reject: set[str] = field(default_factory=set)  # RCPT TO answered 550 5.1.1
    reject_with: dict[str, str] = field(default_factory=dict)  # RCPT TO answered with this reply
    drop_after_data: set[str] = field(default_factory=set)  # store the message, then hang up without a reply
    delay: float = 0.0  # seconds per message, before answering
    offer_8bitmime: bool = True
    connections: int = 0
    helo_names: list[str] = field(default_factory=list)  # what each connection said in EHLO
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def recipients(self) -> Counter[str]:
        """How many copies each address received."""
        with self._lock:
            return Counter(r.lower() for m in self.received for r in m.rcpt_tos)

    def to(self, address: str) -> list[Received]:
        """The messages one address received."""
        with self._lock:
            return [m for m in self.received if address.lower() in (r.lower() for r in m.rcpt_tos)]

    # aiosmtpd handler hooks

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        with self._lock:
            self.connections += 1
            self.helo_names.append(hostname)
        if not self.offer_8bitmime:
            responses = [r for r in responses if "8BITMIME" not in r]
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address.lower() in self.reject:
            return "550 5.1.1 <" + address + ">: mailbox unavailable"
        if address.lower() in self.reject_with:
            return self.reject_with[address.lower()]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        with self._lock:
            if self.temp_fail_after is not None and len(self.received) >= self.temp_fail_after and self.temp_failures:
                self.temp_failures -= 1
                return "451 4.3.2 please try again later"
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
            )
        if any(r.lower() in self.drop_after_data for r in envelope.rcpt_tos):
            server.transport.abort()  # the message is stored, but the client never hears so
        return "250 2.0.0 queued"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(name="smtp_server")
def smtp_server_fixture() -> Iterator[MailServer]:
    """A running SMTP server on 127.0.0.1; stopped after the test."""
    server = MailServer(port=free_port())
    controller = Controller(server, hostname="127.0.0.1", port=server.port)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()
