"""`digest hold` / `digest release`: while held, the scheduler publishes and mails nothing.

The hold is one JSON value in the state's `meta` table (`hold`): when it began, when it ends by itself (if ever),
why, and the slots it skipped. It lives in the state, so it survives restarts and holds every host that shares a
PostgreSQL state. A skipped slot is an ordinary missed slot: its papers go into the next issue after the release.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from digest.store import Store

__all__ = ["Hold", "check_slot", "clear_hold", "hold_status", "read_hold", "write_hold"]

KEY = "hold"
MAX_SKIPPED = 50  # slots remembered (a long hold on a seconds schedule must not grow the value without end)


@dataclass
class Hold:
    since: datetime
    until: datetime | None = None
    reason: str = ""
    skipped: list[str] = field(default_factory=list)  # the skipped slots, ISO 8601 (UTC)

    def active(self, now: datetime) -> bool:
        return self.until is None or now < self.until

    def to_json(self) -> str:
        return json.dumps(
            {
                "since": self.since.isoformat(),
                "until": self.until.isoformat() if self.until else None,
                "reason": self.reason,
                "skipped": self.skipped[-MAX_SKIPPED:],
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Hold:
        data = json.loads(text)
        until = data.get("until")
        return cls(
            since=datetime.fromisoformat(data["since"]),
            until=datetime.fromisoformat(until) if until else None,
            reason=str(data.get("reason") or ""),
            skipped=[str(s) for s in data.get("skipped") or []],
        )


def read_hold(store: Store) -> Hold | None:
    text = store.meta(KEY)
    if not text:
        return None
    try:
        return Hold.from_json(text)
    except (ValueError, KeyError, TypeError):
        return Hold(since=datetime.fromtimestamp(0).astimezone(), reason="(unreadable hold record)")


def write_hold(store: Store, hold: Hold) -> None:
    with store.transaction():
        store.set_meta(KEY, hold.to_json())


def clear_hold(store: Store) -> Hold | None:
    """Remove the hold; the hold that was (None if there was none)."""
    with store.transaction():
        hold = read_hold(store)
        if hold is not None:
            store.session.execute("DELETE FROM meta WHERE key = ?", (KEY,))
    return hold


def check_slot(store: Store, slot: str, now: datetime) -> Hold | None:
    """The hold that skips `slot` (recorded in it), or None when the slot may run; a hold past its `until` is
    removed here."""
    hold = read_hold(store)
    if hold is None:
        return None
    if not hold.active(now):
        clear_hold(store)
        return None
    if slot not in hold.skipped:
        hold.skipped.append(slot)
        write_hold(store, hold)
    return hold


def hold_status(store: Store, now: datetime, when: Callable[[datetime], str]) -> dict[str, str]:
    """`digest status` lines about a hold (none when there is none)."""
    hold = read_hold(store)
    if hold is None or not hold.active(now):
        return {}
    text = f"since {when(hold.since)}" + (f" until {when(hold.until)}" if hold.until else " until `digest release`")
    if hold.reason:
        text += f": {hold.reason}"
    lines = {"hold": text + " (the scheduler publishes and mails nothing)"}
    if hold.skipped:
        skipped = [when(datetime.fromisoformat(s)) for s in hold.skipped]
        lines["held slots"] = (
            f"{len(skipped)} skipped: " + ", ".join(skipped[-5:]) + (" ..." if len(skipped) > 5 else "")
        )
    return lines
