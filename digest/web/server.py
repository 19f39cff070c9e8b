"""Running the app under uvicorn so that it holds under load and abuse.

uvicorn offers `timeout_keep_alive` (idle keep-alive connections), `limit_concurrency` (beyond it, 503 at once) and
a cap on incomplete request data (`h11_max_incomplete_event_size`), but no timeout for receiving a request: its
keep-alive timer is reset by every byte, so a client sending one header byte every few seconds (slowloris) holds a
connection forever (uvicorn issue #157 lists `--timeout-request-start` as still to do). `HeaderDeadline` adds it at
the protocol level, where it belongs: every connection must deliver a complete request head within
`web_header_timeout` seconds of connecting (or of its previous response), else it is closed. Body reading has its
own limit in the app (`web_body_timeout`, digest.web.forms).

Errors that repeat (an `accept()` failing with "Too many open files" thousands of times a second) are logged once
per `log_repeat_interval` with a count, so they cannot fill the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from digest.settings import Settings

log = logging.getLogger("digest.web")

_FD_RESERVE = 32  # descriptors kept for the state, templates, SMTP and the listening socket


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head (set `header_timeout` on a subclass)."""

    header_timeout = 10.0
    _deadline: asyncio.TimerHandle | None = None
    _armed_for: object = None

    def _arm(self) -> None:
        self._disarm()
        self._armed_for = self.cycle
        self._deadline = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self._deadline is not None and self.cycle is not self._armed_for:
            self._disarm()  # a new request head is complete

    def on_response_complete(self) -> None:
        self._arm()  # the next request on this connection gets its own deadline (before pipelined ones start)
        super().on_response_complete()
        if self.transport.is_closing():
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def protocol_with_deadline(seconds: float) -> type[HeaderDeadline]:
    """The protocol class uvicorn should build connections with."""
    return type("HeaderDeadlineProtocol", (HeaderDeadline,), {"header_timeout": seconds})


class RepeatFilter(logging.Filter):
    """Let the same message (logger and format) through once per `interval` seconds; the next one that passes
    says how many were held back."""

    def __init__(self, interval: float, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if self.interval <= 0 or record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        last, held = self._seen.get(key, (float("-inf"), 0))
        if now - last < self.interval:
            self._seen[key] = (last, held + 1)
            return False
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {now - last:.0f} s)"
        return True


class RedactTokens(logging.Filter):
    """Keep tokens out of the access log: query strings and the token part of /confirm/, /preferences/ and
    /my-data/."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact(args[2]), *args[3:])
        return True


def redact(target: str) -> str:
    """A request target without its secrets."""
    path = target.split("?", 1)[0]
    for prefix in ("/confirm/", "/preferences/", "/my-data/"):
        if prefix in path:
            head, _, rest = path.partition(prefix)
            path = head + prefix + "[redacted]" + ("/data.json" if rest.endswith("/data.json") else "")
    return path + ("?[redacted]" if "?" in target else "")


def connection_limit(wanted: int) -> int:
    """`web_max_connections`, lowered to what the open-file limit allows (each connection is a descriptor)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or wanted + _FD_RESERVE <= soft:
        return wanted
    allowed = max(1, soft - _FD_RESERVE)
    log.warning("web_max_connections %d lowered to %d: the open-file limit is %d", wanted, allowed, soft)
    return allowed


def serve(settings: Settings, host: str, port: int, clock: Callable[[], datetime] | None = None) -> None:
    """Run the app under uvicorn until Ctrl-C or SIGTERM (uvicorn shuts down gracefully on both); `clock` pins
    the time (tests)."""
    import uvicorn

    from digest.web import create_app, serves_site

    settings.require_secret_key()
    output = Path(settings.output_dir)
    if settings.web_static and not output.is_dir():
        log.warning("%s/: output folder not found: serving signup and unsubscribe only (run `digest render`)", output)
    app = create_app(settings, clock)
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
    repeat = RepeatFilter(settings.log_repeat_interval)
    for handler in logging.getLogger().handlers:
        handler.addFilter(repeat)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_with_deadline(settings.web_header_timeout),
        log_config=None,
        lifespan="on",
        proxy_headers=False,  # the app reads X-Forwarded-For itself, and takes only IP addresses (ForwardedClient)
        server_header=False,
        timeout_keep_alive=settings.web_keep_alive_timeout,
        limit_concurrency=connection_limit(settings.web_max_connections),
        h11_max_incomplete_event_size=16 * 1024,
    )
    server = uvicorn.Server(config)
    shown_host = f"[{host}]" if ":" in host else host
    what = f"{output}/, signup" if serves_site(settings) else "signup"
    log.info("serving %s, preferences and unsubscribe on http://%s:%d/", what, shown_host, port)
    # uvicorn re-raises the captured SIGINT after a clean shutdown; a stop by Ctrl-C is not an error.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    log.info("stopped")
