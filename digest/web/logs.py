"""The log lines of `digest serve`: repeated warnings folded, personal tokens redacted from request targets, and the
access log written in batches (one write per second, not per request). server.py installs them."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any


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


class BufferedAccessLog(logging.Handler):
    """The access log in batches: lines are kept and written together once `max_bytes` are waiting or a second
    after the first of them, so a busy server does not make one write per request (uvicorn logs on the event
    loop; outside a running loop each line is written at once)."""

    def __init__(self, stream: Any, seconds: float = 1.0, max_bytes: int = 64 * 1024) -> None:
        super().__init__()
        self.stream = stream
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._lines: list[str] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._lines.append(line)
        self._size += len(line) + 1
        if self._size >= self.max_bytes:
            self._write()
            return
        if self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self.seconds, self.flush)
            except RuntimeError:
                self._write()

    def flush(self) -> None:
        self.acquire()
        try:
            self._timer = None
            self._write()
        finally:
            self.release()

    def _write(self) -> None:
        if not self._lines:
            return
        text = "\n".join(self._lines) + "\n"
        self._lines, self._size = [], 0
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed or full log must not take the server down

    def close(self) -> None:
        self.flush()
        super().close()


def buffer_access_log() -> BufferedAccessLog:
    """Send uvicorn's access log through a BufferedAccessLog on stderr, formatted like every other line."""
    access = logging.getLogger("uvicorn.access")
    handler = BufferedAccessLog(sys.stderr)
    root = logging.getLogger().handlers
    if root and root[0].formatter is not None:
        handler.setFormatter(root[0].formatter)
    access.addHandler(handler)
    access.propagate = False
    return handler
