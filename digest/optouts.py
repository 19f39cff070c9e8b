"""Opt-outs that could not be written at once: a render holds the state's write transaction for as long as it
renders, and an unsubscribe must not wait for it (Gmail and Yahoo expect one-click to work at once).

The web app appends such an opt-out to a small journal beside the state (`<state>.optouts`, one JSON line,
fsync'd) and answers at once; it applies the journal as soon as the state is free again, and on its next start
after a crash. `digest send` applies it too before it picks recipients, so a mailing that follows a render at once
(the scheduler does publish-then-mail) never goes to a reader who left during the render. Applying is idempotent,
so two processes draining one journal do no harm. This module keeps the file; digest.subscriptions applies it.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class OptOut:
    """One unsubscribe to apply: by subscription (id and nonce of a token) or, for a legacy link, by address."""

    at: datetime
    subscriber_id: int | None = None
    nonce: str = ""
    email: str = ""


class OptOutJournal:
    """Append-only file of opt-outs waiting for the state; `drain` applies and removes them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._applying = path.with_name(path.name + ".applying")
        self._lock = path.with_name(path.name + ".lock")

    @classmethod
    def beside(cls, state_path: Path) -> OptOutJournal:
        """The journal of the state at `state_path`."""
        return cls(state_path.with_name(state_path.name + ".optouts"))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def append(self, optout: OptOut) -> None:
        """Record an opt-out durably (it survives a crash of the web app)."""
        line = json.dumps(
            {"at": optout.at.isoformat(), "id": optout.subscriber_id, "nonce": optout.nonce, "email": optout.email}
        )
        with self._locked():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (line + "\n").encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)

    def waiting(self) -> bool:
        """Whether any opt-out waits to be applied."""
        return self.path.exists() or self._applying.exists()

    def drain(self, apply: Callable[[Sequence[OptOut]], None]) -> int:
        """Apply the waiting opt-outs in one call; they are removed only once `apply` returned."""
        with self._locked():
            if self.path.exists() and not self._applying.exists():
                os.replace(self.path, self._applying)
        try:
            text = self._applying.read_text(encoding="utf-8")
        except FileNotFoundError:
            return 0
        optouts = [_parse(line) for line in text.splitlines() if line.strip()]
        apply(optouts)
        self._applying.unlink(missing_ok=True)
        return len(optouts)


def _parse(line: str) -> OptOut:
    data = json.loads(line)
    return OptOut(datetime.fromisoformat(data["at"]), data["id"], data["nonce"], data["email"])
