"""Bare smtplib senders that record nothing: the ceiling (one reused connection per worker) and a naive sender
(one new connection per message). Prints messages/second.

    python benchmarks/smtp_load.py --port 2525 --messages 10000 --workers 2 --mode reuse --message msg.eml
"""

from __future__ import annotations

import argparse
import smtplib
import threading
import time
from pathlib import Path

SENDER = "digest@localhost"


def _worker(host: str, port: int, data: bytes, recipients: list[str], reuse: bool) -> None:
    if reuse:
        with smtplib.SMTP(host, port) as smtp:
            smtp.ehlo()
            for rcpt in recipients:
                smtp.sendmail(SENDER, [rcpt], data)
        return
    for rcpt in recipients:
        with smtplib.SMTP(host, port) as smtp:
            smtp.sendmail(SENDER, [rcpt], data)


def run(host: str, port: int, data: bytes, messages: int, workers: int, reuse: bool) -> float:
    """Send `messages` copies of `data` over `workers` threads; return messages per second."""
    recipients = [f"reader{i}@example.org" for i in range(messages)]
    errors: list[BaseException] = []

    def work(chunk: list[str]) -> None:
        try:
            _worker(host, port, data, chunk, reuse)
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
    args = parser.parse_args()
    rate = run(args.host, args.port, args.message.read_bytes(), args.messages, args.workers, args.mode == "reuse")
    print(f"{rate:.1f}")


if __name__ == "__main__":
    main()
