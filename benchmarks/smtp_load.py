"""Bare smtplib senders that record nothing: the ceiling (one reused connection per worker) and a naive sender
(one new connection per message). Prints messages/second. `--starttls` upgrades every connection to TLS first
(certificate not verified: the benchmark's sink uses a self-signed one), as a real relay requires.

    python benchmarks/smtp_load.py --port 2525 --messages 10000 --workers 2 --mode reuse --message msg.eml
"""

from __future__ import annotations

import argparse
import smtplib
import socket
import ssl
import threading
import time
from pathlib import Path

SENDER = "digest@localhost"


def _connect(host: str, port: int, tls: ssl.SSLContext | None) -> smtplib.SMTP:
    smtp = smtplib.SMTP(host, port)
    # Nagle's algorithm: over STARTTLS, without this, the tail of each message waited for a delayed ACK (measured
    # 46 msg/s instead of ~780). digest sets it too; the ceiling must not be throttled by it.
    assert smtp.sock is not None
    smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    smtp.ehlo()
    if tls is not None:
        smtp.starttls(context=tls)
        smtp.ehlo()
    return smtp


def _worker(host: str, port: int, data: bytes, recipients: list[str], reuse: bool, tls: ssl.SSLContext | None) -> None:
    if reuse:
        with _connect(host, port, tls) as smtp:
            for rcpt in recipients:
                smtp.sendmail(SENDER, [rcpt], data)
        return
    for rcpt in recipients:
        with _connect(host, port, tls) as smtp:
            smtp.sendmail(SENDER, [rcpt], data)


def run(host: str, port: int, data: bytes, messages: int, workers: int, reuse: bool, starttls: bool = False) -> float:
    """Send `messages` copies of `data` over `workers` threads; return messages per second."""
    recipients = [f"reader{i}@example.org" for i in range(messages)]
    errors: list[BaseException] = []
    tls = None
    if starttls:
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE

    def work(chunk: list[str]) -> None:
        try:
            _worker(host, port, data, chunk, reuse, tls)
        except BaseException as exc:  # re-raised in the main thread: a failed loop must not look fast
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(recipients[w::workers],)) for w in range(workers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return messages / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description="Bare smtplib send loops (ceiling and naive).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mode", choices=("reuse", "naive"), default="reuse")
    parser.add_argument("--message", type=Path, required=True, help="the RFC 5322 message to send")
    parser.add_argument("--starttls", action="store_true", help="upgrade each connection with STARTTLS")
    args = parser.parse_args()
    data = args.message.read_bytes()
    rate = run(args.host, args.port, data, args.messages, args.workers, args.mode == "reuse", args.starttls)
    print(f"{rate:.1f}")


if __name__ == "__main__":
    main()
