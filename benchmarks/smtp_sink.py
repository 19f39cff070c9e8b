"""A local SMTP sink for the send benchmark: accepts and counts messages, keeps nothing.

Runs in its own process (so the server does not share a GIL with what is measured). Prints its port once it
listens; on SIGTERM prints the number of messages received and exits. With `--cert`/`--key` it offers STARTTLS
(as a real relay on port 587 does; clients choose whether to use it).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP


class CountingSink:
    """An aiosmtpd handler that counts messages and throws them away."""

    def __init__(self) -> None:
        self.messages = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook name
        self.messages += 1
        return "250 OK"


async def serve(host: str, port: int, tls: ssl.SSLContext | None = None) -> int:
    sink = CountingSink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(sink, enable_SMTPUTF8=True, hostname="sink.local", ident="sink", tls_context=tls), host, port
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print(server.sockets[0].getsockname()[1], flush=True)
    await stop.wait()
    server.close()
    return sink.messages


def main() -> None:
    parser = argparse.ArgumentParser(description="Count SMTP messages on a local port.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed on stdout)")
    parser.add_argument("--cert", type=Path, help="PEM certificate: offer STARTTLS")
    parser.add_argument("--key", type=Path, help="PEM private key of --cert")
    args = parser.parse_args()
    tls = None
    if args.cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.cert, args.key)
    print(asyncio.run(serve(args.host, args.port, tls)), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
