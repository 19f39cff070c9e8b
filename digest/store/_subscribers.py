"""Subscribers: addresses with their life cycle (pending, active, paused, unsubscribed, bounced, complained),
consent record, token nonce and chosen topics; the suppression list (one-way hashes of addresses that must not be
re-added); and the events the web app's rate limits count.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from digest.errors import StoreError
from digest.model import ENDED, Subscriber, SubscriberSource, SubscriberStatus
from digest.store.backend import Connection


@dataclass(frozen=True)
class SubscriberRecord:
    """A subscriber with its consent record: how and when it joined, when it was confirmed, its last change."""

    subscriber: Subscriber
    created: datetime
    status_changed: datetime | None
    status_detail: str
    source: SubscriberSource
    signup_ip: str | None
    confirmed: datetime | None
    source_detail: str = ""  # an import's platform ("substack")

    @property
    def consent_source(self) -> str:
        """How it joined, as the consent record says it: "form", "cli", "import" or "import:<platform>"."""
        return f"{self.source.value}:{self.source_detail}" if self.source_detail else self.source.value

    @property
    def status_since(self) -> datetime | None:
        """When the current status began (None while active: the join and confirmation dates say that)."""
        return None if self.subscriber.active else self.status_changed

    @property
    def unsubscribed(self) -> datetime | None:
        """When the subscription ended (unsubscribed, bounced or complained); None for one that is still on,
        paused or waiting for its confirmation."""
        return self.status_changed if self.subscriber.status in ENDED else None


#: The columns `subscriber_from_row` reads.
SUBSCRIBER_COLUMNS = "id, email, name, status, token_nonce"
_RECORD_COLUMNS = (
    f"{SUBSCRIBER_COLUMNS}, created, status_changed, status_detail, source, signup_ip, confirmed, source_detail"
)


@dataclass(frozen=True)
class StatusChange:
    """One line of a subscriber's trail: its status before (None: it had no row) and after, what made the change
    ("signup", "confirm", "preferences", "unsubscribe link", "bounce report NAME", "webhook PROVIDER EVENT", "cli",
    "import:FORMAT" ...), when, and the reason given (a bounce's diagnostic, the publisher's words)."""

    subscriber_id: int
    old: SubscriberStatus | None
    new: SubscriberStatus
    source: str
    at: datetime
    reason: str


def email_key(email: str) -> str:
    """The identity of an address: addresses that differ only in case are one subscriber."""
    return email.strip().lower()


def email_hash(email: str) -> str:
    """The one-way form of an address kept in the suppression list after its subscriber was erased."""
    return hashlib.sha256(email_key(email).encode("utf-8")).hexdigest()


def _utc(moment: datetime) -> str:
    """A time as text that sorts as time does (rate events compare as strings, so one offset for all)."""
    return moment.astimezone(UTC).isoformat()


def new_token_nonce() -> str:
    """A random value stored per subscription; tokens carry it, so re-subscribing invalidates old links."""
    return secrets.token_hex(8)


def subscriber_from_row(row: Any) -> Subscriber:
    """A subscriber from a row of SUBSCRIBER_COLUMNS."""
    return Subscriber(
        id=int(row["id"]),
        email=str(row["email"]),
        name=str(row["name"]),
        status=SubscriberStatus(row["status"]),
        token_nonce=str(row["token_nonce"]),
    )


def _optional_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class SubscribersMixin:
    """The queries about subscribers, suppressions and rate-limit events."""

    _conn: Connection

    _SUBSCRIBER_COLUMNS = SUBSCRIBER_COLUMNS
    _RECORD_COLUMNS = _RECORD_COLUMNS
    _subscriber = staticmethod(subscriber_from_row)

    @staticmethod
    def _record(row: Any) -> SubscriberRecord:
        return SubscriberRecord(
            subscriber_from_row(row),
            datetime.fromisoformat(row["created"]),
            _optional_time(row["status_changed"]),
            row["status_detail"],
            SubscriberSource(row["source"]),
            row["signup_ip"],
            _optional_time(row["confirmed"]),
            row["source_detail"],
        )

    def subscriber(self, email: str) -> Subscriber | None:
        """The subscriber with this address (case-insensitive), whatever its status."""
        row = self._conn.execute(
            f"SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE email_key = ?", (email_key(email),)
        ).fetchone()
        return subscriber_from_row(row) if row else None

    def subscriber_by_id(self, subscriber_id: int) -> Subscriber | None:
        """The subscriber with this id, whatever its status."""
        row = self._conn.execute(
            f"SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE id = ?", (subscriber_id,)
        ).fetchone()
        return subscriber_from_row(row) if row else None

    def subscriber_records(self) -> list[SubscriberRecord]:
        """Every subscriber, whatever its status, in the order they were added, with its consent record."""
        rows = self._conn.execute(f"SELECT {_RECORD_COLUMNS} FROM subscribers ORDER BY id").fetchall()
        return [self._record(r) for r in rows]

    def subscriber_record(self, subscriber_id: int) -> SubscriberRecord | None:
        """One subscriber (by id, as tokens name them) with its consent record."""
        row = self._conn.execute(f"SELECT {_RECORD_COLUMNS} FROM subscribers WHERE id = ?", (subscriber_id,)).fetchone()
        return self._record(row) if row else None

    def active_subscribers(self) -> list[Subscriber]:
        """Subscribers who get the next issue, in the order they were added."""
        rows = self._conn.execute(f"SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE status = 'active' ORDER BY id")
        return [subscriber_from_row(r) for r in rows]

    def add_subscriber(
        self,
        email: str,
        name: str,
        now: datetime,
        *,
        resubscribe: bool = False,
        status: SubscriberStatus = SubscriberStatus.ACTIVE,
        source: SubscriberSource = SubscriberSource.CLI,
        signup_ip: str | None = None,
        created: datetime | None = None,
        confirmed: datetime | None = None,
        source_detail: str = "",
    ) -> str:
        """Add an address: "added", "exists", "resubscribed", or the status it keeps ("unsubscribed", "bounced"...)
        unless `resubscribe`. A new or re-subscribed row gets a fresh token nonce, so old links die with it.

        `created` and `confirmed` (an import's consent record: when the reader opted in and confirmed elsewhere)
        replace `now`; with either given, `confirmed` is kept as given, even None (the export did not say)."""
        joined = created or now
        from_export = created is not None or confirmed is not None
        confirmed_at = confirmed if from_export else (now if status is SubscriberStatus.ACTIVE else None)
        existing = self.subscriber(email)
        # ON CONFLICT: another session (a second web host) may add the same address between the read and the insert;
        # then its row is the existing one.
        if (
            existing is None
            and self._conn.execute(
                "INSERT INTO subscribers (email, email_key, name, status, created, status_changed, source, signup_ip,"
                " confirmed, token_nonce, source_detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (email_key) DO NOTHING",
                (
                    email.strip(),
                    email_key(email),
                    name,
                    status.value,
                    joined.isoformat(),
                    now.isoformat(),
                    source.value,
                    signup_ip,
                    confirmed_at.isoformat() if confirmed_at else None,
                    new_token_nonce(),
                    source_detail,
                ),
            ).rowcount
        ):
            return "added" if status is SubscriberStatus.ACTIVE else status.value
        existing = existing or self.subscriber(email)
        if existing is None:
            raise StoreError(f"{email}: the subscriber was added and removed by another session at once; try again")
        if existing.active:
            return "exists"
        if not resubscribe:
            return existing.status.value
        self._conn.execute(
            "UPDATE subscribers SET status = ?, status_changed = ?, status_detail = '', soft_bounces = 0,"
            " source = ?, signup_ip = ?, confirmed = ?, token_nonce = ?, name = COALESCE(NULLIF(?, ''), name),"
            " source_detail = ? WHERE id = ?",
            (
                status.value,
                now.isoformat(),
                source.value,
                signup_ip,
                confirmed_at.isoformat() if confirmed_at else None,
                new_token_nonce(),
                name,
                source_detail,
                existing.id,
            ),
        )
        return "resubscribed"

    def set_subscriber_status(
        self,
        subscriber_id: int,
        status: SubscriberStatus,
        now: datetime,
        *,
        detail: str = "",
        only_from: Iterable[SubscriberStatus] | None = None,
    ) -> bool:
        """Move a subscriber to `status` (optionally only from some statuses); True if the row changed."""
        sql = "UPDATE subscribers SET status = ?, status_changed = ?, status_detail = ? WHERE id = ? AND status != ?"
        params: list[object] = [status.value, now.isoformat(), detail, subscriber_id, status.value]
        if only_from is not None:
            allowed = [s.value for s in only_from]
            sql += f" AND status IN ({','.join('?' * len(allowed))})"
            params.extend(allowed)
        return self._conn.execute(sql, params).rowcount > 0

    def unsubscribe(self, email: str, now: datetime) -> bool:
        """Mark a subscriber unsubscribed (the row stays, so imports do not re-add it); True if it was active."""
        cursor = self._conn.execute(
            "UPDATE subscribers SET status = 'unsubscribed', status_changed = ?, status_detail = ''"
            " WHERE email_key = ? AND status IN ('active', 'paused', 'pending')",
            (now.isoformat(), email_key(email)),
        )
        return cursor.rowcount > 0

    def confirm_subscriber(self, subscriber_id: int, now: datetime) -> bool:
        """Make a pending subscriber active and date its confirmation; False if it was not pending."""
        cursor = self._conn.execute(
            "UPDATE subscribers SET status = 'active', confirmed = ?, status_changed = ?, status_detail = ''"
            " WHERE id = ? AND status = 'pending'",
            (now.isoformat(), now.isoformat(), subscriber_id),
        )
        return cursor.rowcount > 0

    def set_subscriber_name(self, subscriber_id: int, name: str) -> None:
        """Change the display name."""
        self._conn.execute("UPDATE subscribers SET name = ? WHERE id = ?", (name, subscriber_id))

    def subscriber_topics(self, subscriber_id: int | None = None) -> dict[int, tuple[str, ...]]:
        """subscriber id -> the topic slugs it chose, for every subscriber who chose some (or only `subscriber_id`);
        a subscriber who chose none gets every paper and is not listed."""
        sql, params = "SELECT id, topics FROM subscribers WHERE topics != ''", []
        if subscriber_id is not None:
            sql, params = sql + " AND id = ?", [subscriber_id]
        rows = self._conn.execute(sql, params).fetchall()
        return {int(r["id"]): tuple(t for t in str(r["topics"]).split(",") if t) for r in rows}

    def set_subscriber_topics(self, subscriber_id: int, slugs: Iterable[str]) -> None:
        """Choose the topics whose papers the subscriber gets (none: every paper)."""
        value = ",".join(dict.fromkeys(s for s in slugs if s and "," not in s))
        self._conn.execute("UPDATE subscribers SET topics = ? WHERE id = ?", (value, subscriber_id))

    def erase_subscriber(self, subscriber_id: int) -> bool:
        """Delete the row and its deliveries (ON DELETE CASCADE); True if there was one."""
        return self._conn.execute("DELETE FROM subscribers WHERE id = ?", (subscriber_id,)).rowcount > 0

    # --- the trail of status changes ---------------------------------------------------------

    def record_status_change(
        self,
        subscriber_id: int,
        old: SubscriberStatus | None,
        new: SubscriberStatus,
        source: str,
        now: datetime,
        reason: str = "",
    ) -> None:
        """Add one line to the subscriber's trail (in the transaction of the change itself)."""
        self._conn.execute(
            "INSERT INTO status_changes (subscriber, old_status, new_status, source, at, reason)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (subscriber_id, old.value if old else None, new.value, source, now.isoformat(), reason),
        )

    def status_changes(self, subscriber_id: int) -> list[StatusChange]:
        """The subscriber's trail, oldest first (it is deleted with the subscriber)."""
        rows = self._conn.execute(
            "SELECT subscriber, old_status, new_status, source, at, reason FROM status_changes"
            " WHERE subscriber = ? ORDER BY id",
            (subscriber_id,),
        ).fetchall()
        return [
            StatusChange(
                int(r["subscriber"]),
                SubscriberStatus(r["old_status"]) if r["old_status"] else None,
                SubscriberStatus(r["new_status"]),
                str(r["source"]),
                datetime.fromisoformat(r["at"]),
                str(r["reason"]),
            )
            for r in rows
        ]

    # --- the suppression list -------------------------------------------------------------------

    def suppress(self, email: str, reason: str, now: datetime) -> None:
        """Remember an address only as a one-way hash, so an import cannot silently re-add it."""
        self._conn.execute(
            "INSERT INTO suppressions (email_hash, reason, created) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (email_hash(email), reason, now.isoformat()),
        )

    def suppression(self, email: str) -> str | None:
        """Why an address is suppressed (None if it is not)."""
        row = self._conn.execute(
            "SELECT reason FROM suppressions WHERE email_hash = ?", (email_hash(email),)
        ).fetchone()
        return str(row["reason"]) if row else None

    def unsuppress(self, email: str) -> bool:
        """Forget an address's suppression (its owner confirmed a new signup, or an import was forced)."""
        return self._conn.execute("DELETE FROM suppressions WHERE email_hash = ?", (email_hash(email),)).rowcount > 0

    # --- rate-limit events (the web app's signup limits) ------------------------------------------

    def count_events(self, bucket: str, since: datetime) -> int:
        """How many rate-limit events `bucket` recorded at or after `since`."""
        row = self._conn.execute(
            "SELECT COUNT(*) AS n FROM rate_events WHERE bucket = ? AND at >= ?", (bucket, _utc(since))
        ).fetchone()
        return int(row["n"])

    def record_event(self, bucket: str, now: datetime) -> None:
        """Count one event (a signup request, a confirmation mail) against `bucket`."""
        self._conn.execute("INSERT INTO rate_events (bucket, at) VALUES (?, ?)", (bucket, _utc(now)))

    def prune_events(self, before: datetime) -> None:
        """Forget rate-limit events older than every window."""
        self._conn.execute("DELETE FROM rate_events WHERE at < ?", (_utc(before),))
