"""One writer at a time: an advisory file lock beside the state file.

The kernel drops an flock when its process dies, so a lock left by `kill -9` never blocks the next run.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from digest.errors import BusyError


def lock_path_for(state_path: Path, name: str = "") -> Path:
    """The lock file that guards `state_path` (the writer lock; `name`: another lock beside it)."""
    return state_path.with_name(state_path.name + (f".{name}" if name else "") + ".lock")


@contextmanager
def writer_lock(state_path: Path, timeout: float, what: str = "digest", name: str = "") -> Iterator[None]:
    """Hold the writer lock for `state_path` (or the lock `name` beside it), waiting up to `timeout` seconds for
    another holder to finish."""
    path = lock_path_for(state_path, name)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(path)
                    raise BusyError(
                        f"another digest process{holder} is writing to {state_path}; "
                        f"waited {timeout:g}s, try again later (lock file {path})"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {what}\n".encode())
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""
    if not text:
        return ""
    pid, _, what = text.partition(" ")
    return f" (pid {pid}, {what})" if what else f" (pid {pid})"
