"""Every query of the state, written once for both backends: typed reads and writes, transactions. No business
rules.

The state holds every entry seen, every issue and its entries, the seed-file parse cache, subscribers and the
delivery ledger. `issue_entries.entry_id` is UNIQUE, so the database itself refuses to publish a paper twice.
The SQL is what SQLite and PostgreSQL both accept (ON CONFLICT, no INSERT OR REPLACE, no boolean arithmetic);
the backend's connection (sqlite.py, postgresql.py) runs it.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from digest.errors import StoreConflict, StoreError
from digest.model import (
    ENDED,
    CachedFile,
    Delivery,
    DeliveryStatus,
    Entry,
    EntryRef,
    Issue,
    KnownEntry,
    Located,
    PriorEntry,
    Subscriber,
    SubscriberSource,
    SubscriberStatus,
)
from digest.store.backend import SCHEMA_VERSION, Backend, Connection


@dataclass(frozen=True)
class IssueSummary:
    """An issue's number, time and size, without loading its entries."""

    number: int
    published: datetime
    entry_count: int
    slot: str | None


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

    @property
    def status_since(self) -> datetime | None:
        """When the current status began (None while active: the join and confirmation dates say that)."""
        return None if self.subscriber.active else self.status_changed

    @property
    def unsubscribed(self) -> datetime | None:
        """When the subscription ended (unsubscribed, bounced or complained); None for one that is still on,
        paused or waiting for its confirmation."""
        return self.status_changed if self.subscriber.status in ENDED else None


_PUBLISHED = "EXISTS (SELECT 1 FROM issue_entries ie WHERE ie.entry_id = entries.id)"


# An entry's text as one string: fields separated by \x1e, abstract paragraphs by \x1f. Both are illegal in
# XML and removed from seed text, so the format is unambiguous (and several times cheaper than JSON).
_FIELD, _PARAGRAPH = "\x1e", "\x1f"


def _entry_data(entry: Entry) -> str:
    fields = [entry.title_en, entry.title_zh, entry.url, _PARAGRAPH.join(entry.abstract)]
    if entry.topics:  # a fifth field only when the seed has a Topics: line (older rows have four)
        fields.append(",".join(entry.topics))
    return _FIELD.join(fields)


def _entry_from_row(entry_id: str, source: str, line: int, data: str, revised: str | None) -> Entry:
    title_en, title_zh, url, abstract, *topics = data.split(_FIELD)
    return Entry(
        id=entry_id,
        title_en=title_en,
        title_zh=title_zh,
        url=url,
        abstract=tuple(abstract.split(_PARAGRAPH)) if abstract else (),
        source=source,
        line=line,
        revised=datetime.fromisoformat(revised) if revised else None,
        topics=tuple(topics[0].split(",")) if topics else (),
    )


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


class Store:
    """A session with the state (a SQLite file or a PostgreSQL database). Use `transaction()` for every write."""

    def __init__(self, conn: Connection, backend: Backend) -> None:
        self._conn = conn
        self.backend = backend

    @classmethod
    def open(cls, location: Backend | Path | str, *, busy_timeout: float = 60.0) -> Store:
        """Open (creating and migrating if needed) the state at `location`: a backend, a SQLite path, or a URL."""
        from digest.store import backend_for

        backend = location if isinstance(location, Backend) else backend_for(location)
        store = cls(backend.connect(busy_timeout), backend)
        try:
            store._migrate()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        # Read first, without a write transaction: opening an up-to-date state must not wait for a writer (a render
        # holds its transaction while it renders; `digest status` and the web app only read or write briefly).
        if self._conn.schema_version() == SCHEMA_VERSION:
            return
        with self.transaction():
            version = self._conn.schema_version()
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.backend.where}: state was written by a newer digest (schema {version}); upgrade digest"
                )
            self._conn.migrate(version)
            if self._conn.execute("SELECT 1 FROM meta WHERE key = 'site_uuid'").fetchone() is None:
                self._conn.execute("INSERT INTO meta (key, value) VALUES ('site_uuid', ?)", (str(uuid.uuid4()),))

    @contextmanager
    def transaction(self, commit: bool = True) -> Iterator[Connection]:
        """A write transaction, rolled back on any exception (and by the database itself on a crash).

        With `commit=False` the work is always rolled back: a dry run sees its own writes, then forgets them.
        """
        self._conn.begin()
        try:
            yield self._conn
        except BaseException:
            self._conn.rollback()
            raise
        else:
            if not commit:
                self._conn.rollback()
                return
            self._conn.commit()

    @property
    def session(self) -> Connection:
        """The connection itself (for copying whole tables; everything else goes through the methods below)."""
        return self._conn

    def serialize(self, key: str) -> None:
        """Inside a transaction: wait for any other transaction holding `key` to end, and hold it until this one
        ends (a decision that counts rows, then writes, must not race a twin on another host)."""
        self._conn.serialize(key)

    # --- meta ---------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        """A value from the meta table (None when absent)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        """Set a value in the meta table."""
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def site_uuid(self) -> str:
        """A random id made when the state was created: the permanent base of feed ids."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'site_uuid'").fetchone()
        return str(row[0])

    # --- entries ------------------------------------------------------------------------------

    def published_entries(self) -> dict[str, KnownEntry]:
        """Every published entry with its content hash and issue. Entries seen but unpublished are left out:
        for choosing the next issue they are the same as new ones (and a bulk import has 100,000 of them)."""
        rows = self._conn.execute(
            "SELECT e.id, e.content_hash, ie.issue FROM issue_entries ie JOIN entries e ON e.id = ie.entry_id"
        )
        return {row[0]: KnownEntry(row[1], row[2]) for row in rows}

    def record_seen(self, entries: Iterable[Located], now: datetime) -> None:
        """Remember entries (id, where, content hash), not their text: a bulk import of 100,000 papers would
        otherwise write 150 MB the next issues never read. The text is stored when a paper is published."""
        seen = now.isoformat()
        self._conn.executemany(
            "INSERT INTO entries (id, source, line, content_hash, data, first_seen) VALUES (?, ?, ?, ?, '', ?)"
            # Where a paper was seen always follows the seeds; its published hash changes only through
            # record_revisions, which also stamps `revised`.
            " ON CONFLICT(id) DO UPDATE SET source = excluded.source, line = excluded.line,"
            f" content_hash = CASE WHEN {_PUBLISHED} THEN entries.content_hash ELSE excluded.content_hash END"
            " WHERE entries.content_hash != excluded.content_hash OR entries.source != excluded.source"
            " OR entries.line != excluded.line",
            ((e.id, e.source, e.line, e.content_hash, seen) for e in entries),
        )

    def record_new(self, entries: Iterable[Located], now: datetime) -> None:
        """`record_seen` for papers the state has never seen (a first import): a plain INSERT, ~15% cheaper."""
        seen = now.isoformat()
        self._conn.insert_rows(
            "entries",
            ("id", "source", "line", "content_hash", "data", "first_seen"),
            ((e.id, e.source, e.line, e.content_hash, "", seen) for e in entries),
        )

    def load_entries(self, ids: Sequence[str]) -> dict[str, Entry]:
        """The recorded text of these entries, by id (absent: never seen, or not published yet)."""
        found: dict[str, Entry] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT id, source, line, data, revised FROM entries WHERE id IN ({marks})", chunk
            )
            for entry_id, source, line, data, revised in rows:
                if data:
                    found[entry_id] = _entry_from_row(entry_id, source, line, data, revised)
        return found

    def record_revisions(self, entries: Iterable[Entry], now: datetime) -> None:
        """Store corrected text of published entries and mark when it changed."""
        self._conn.executemany(
            "UPDATE entries SET content_hash = ?, data = ?, source = ?, line = ?, revised = ? WHERE id = ?",
            ((e.content_hash, _entry_data(e), e.source, e.line, now.isoformat(), e.id) for e in entries),
        )

    # --- issues -------------------------------------------------------------------------------

    def next_issue_number(self) -> int:
        """One more than the highest number ever used: numbers are never reused."""
        row = self._conn.execute("SELECT COALESCE(MAX(number), 0) FROM issues").fetchone()
        return int(row[0]) + 1

    def record_issue(self, issue: Issue, now: datetime) -> None:
        """Record an issue and which entry went into it, at which position."""
        try:
            self._conn.execute(
                "INSERT INTO issues (number, published, slot, created) VALUES (?, ?, ?, ?)",
                (issue.number, issue.published.isoformat(), issue.slot, now.isoformat()),
            )
            self._conn.executemany(
                "INSERT INTO issue_entries (issue, position, entry_id) VALUES (?, ?, ?)",
                ((issue.number, pos, e.id) for pos, e in enumerate(issue.entries)),
            )
            self._conn.executemany(
                "UPDATE entries SET data = ?, content_hash = ?, source = ?, line = ? WHERE id = ?",
                ((_entry_data(e), e.content_hash, e.source, e.line, e.id) for e in issue.entries),
            )
        except StoreConflict as exc:
            raise StoreConflict(f"issue {issue.number} conflicts with the recorded state: {exc}") from exc

    def issue_for_slot(self, slot: str) -> int | None:
        """The issue already published for a schedule slot, if any."""
        row = self._conn.execute("SELECT number FROM issues WHERE slot = ?", (slot,)).fetchone()
        return int(row[0]) if row else None

    def latest_slot_issue(self) -> int | None:
        """The newest issue published for a schedule slot (by `digest run`), or None."""
        row = self._conn.execute("SELECT MAX(number) FROM issues WHERE slot IS NOT NULL").fetchone()
        return int(row[0]) if row[0] is not None else None

    def issue_count(self) -> int:
        """How many issues exist."""
        return int(self._conn.execute("SELECT COUNT(*) FROM issues").fetchone()[0])

    def issue_summaries(self, numbers: Sequence[int] | None = None) -> list[IssueSummary]:
        """Summaries of the given issues (all if None), newest first."""
        sql = (
            "SELECT i.number, i.published, i.slot, COUNT(ie.entry_id) FROM issues i"
            " LEFT JOIN issue_entries ie ON ie.issue = i.number"
        )
        params: list[int] = []
        if numbers is not None:
            sql += f" WHERE i.number IN ({','.join('?' * len(numbers))})"
            params = list(numbers)
        sql += " GROUP BY i.number ORDER BY i.number DESC"
        return [
            IssueSummary(row[0], datetime.fromisoformat(row[1]), row[3], row[2])
            for row in self._conn.execute(sql, params)
        ]

    def latest_issue_number(self) -> int | None:
        """The newest issue's number, or None before the first issue."""
        row = self._conn.execute("SELECT MAX(number) FROM issues").fetchone()
        return int(row[0]) if row[0] is not None else None

    def issue_numbers(self) -> list[int]:
        """Every issue number, oldest first."""
        return [int(r[0]) for r in self._conn.execute("SELECT number FROM issues ORDER BY number")]

    def newest_issue_numbers_for_items(self, max_items: int) -> list[int]:
        """The newest issues that together hold at least `max_items` entries (what the feeds need)."""
        numbers: list[int] = []
        total = 0
        rows = self._conn.execute("SELECT issue, COUNT(*) FROM issue_entries GROUP BY issue ORDER BY issue DESC")
        for number, count in rows:
            if total >= max_items:
                break
            numbers.append(int(number))
            total += int(count)
        return numbers

    def load_issues(self, numbers: Sequence[int]) -> list[Issue]:
        """Full issues (entries in order, with their current text), in the order of `numbers`."""
        if not numbers:
            return []
        marks = ",".join("?" * len(numbers))
        heads = {
            int(r[0]): r
            for r in self._conn.execute(
                f"SELECT number, published, slot FROM issues WHERE number IN ({marks})", list(numbers)
            )
        }
        entries: dict[int, list[Entry]] = {n: [] for n in heads}
        rows = self._conn.execute(
            "SELECT ie.issue, e.id, e.source, e.line, e.data, e.revised FROM issue_entries ie"
            f" JOIN entries e ON e.id = ie.entry_id WHERE ie.issue IN ({marks})"
            " ORDER BY ie.issue, ie.position",
            list(numbers),
        )
        for issue, entry_id, source, line, data, revised in rows:
            entries[int(issue)].append(_entry_from_row(entry_id, source, line, data, revised))
        missing = [n for n in numbers if n not in heads]
        if missing:
            raise StoreError(f"no such issue: {', '.join(map(str, missing))}")
        return [
            Issue(
                number=n,
                published=datetime.fromisoformat(heads[n][1]),
                entries=tuple(entries[n]),
                slot=heads[n][2],
            )
            for n in numbers
        ]

    # --- topics (a derived index: rebuilt from the issues and the topic rules) ----------------------------

    def set_paper_topics(self, issue: int, rows: Iterable[tuple[str, int]]) -> set[str]:
        """Replace issue `issue`'s (topic, position) rows; returns the topics it had before and has now."""
        before = {r[0] for r in self._conn.execute("SELECT DISTINCT topic FROM paper_topics WHERE issue = ?", (issue,))}
        self._conn.execute("DELETE FROM paper_topics WHERE issue = ?", (issue,))
        fresh = list(rows)
        self._conn.executemany(
            "INSERT INTO paper_topics (topic, issue, position) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [(topic, issue, position) for topic, position in fresh],
        )
        return before | {topic for topic, _ in fresh}

    def clear_paper_topics(self) -> None:
        """Forget every topic row (before `rebuild` derives them again)."""
        self._conn.execute("DELETE FROM paper_topics")

    def topic_paper_count(self, topic: str) -> int:
        """How many published papers `topic` has."""
        return int(self._conn.execute("SELECT COUNT(*) FROM paper_topics WHERE topic = ?", (topic,)).fetchone()[0])

    def newest_topic_papers(self, topic: str, limit: int) -> list[tuple[int, int]]:
        """The newest `limit` papers of `topic` as (issue, position), newest first."""
        rows = self._conn.execute(
            "SELECT issue, position FROM paper_topics WHERE topic = ? ORDER BY issue DESC, position DESC LIMIT ?",
            (topic, limit),
        )
        return [(int(i), int(p)) for i, p in rows]

    def topic_papers(self, topic: str) -> list[tuple[int, int]]:
        """Every paper of `topic` as (issue, position), oldest first (what `rebuild` paginates)."""
        rows = self._conn.execute(
            "SELECT issue, position FROM paper_topics WHERE topic = ? ORDER BY issue, position", (topic,)
        )
        return [(int(i), int(p)) for i, p in rows]

    def topics_in_use(self) -> set[str]:
        """Every topic that has at least one paper."""
        return {r[0] for r in self._conn.execute("SELECT DISTINCT topic FROM paper_topics")}

    def issues_of_entries(self, entry_ids: Iterable[str]) -> set[int]:
        """The issues that contain any of these entries."""
        ids = list(entry_ids)
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        rows = self._conn.execute(f"SELECT DISTINCT issue FROM issue_entries WHERE entry_id IN ({marks})", ids)
        return {int(r[0]) for r in rows}

    def unpublished_count(self) -> int:
        """Entries seen but not yet in any issue."""
        row = self._conn.execute(
            "SELECT COUNT(*) FROM entries e WHERE NOT EXISTS (SELECT 1 FROM issue_entries ie WHERE ie.entry_id = e.id)"
        ).fetchone()
        return int(row[0])

    # --- subscribers ----------------------------------------------------------------------------

    _SUBSCRIBER_COLUMNS = "id, email, name, status, token_nonce"

    @staticmethod
    def _subscriber(row: Sequence[Any]) -> Subscriber:
        return Subscriber(
            id=int(row[0]),
            email=str(row[1]),
            name=str(row[2]),
            status=SubscriberStatus(row[3]),
            token_nonce=str(row[4]),
        )

    def subscriber(self, email: str) -> Subscriber | None:
        """The subscriber with this address (case-insensitive), whatever its status."""
        row = self._conn.execute(
            f"SELECT {self._SUBSCRIBER_COLUMNS} FROM subscribers WHERE email_key = ?", (email_key(email),)
        ).fetchone()
        return self._subscriber(row) if row else None

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
    ) -> str:
        """Add an address: "added", "exists", "resubscribed", or the status it keeps ("unsubscribed", "bounced"...)
        unless `resubscribe`. A new or re-subscribed row gets a fresh token nonce, so old links die with it."""
        existing = self.subscriber(email)
        # ON CONFLICT: another session (a second web host) may add the same address between the read and the insert;
        # then its row is the existing one.
        if (
            existing is None
            and self._conn.execute(
                "INSERT INTO subscribers (email, email_key, name, status, created, status_changed, source, signup_ip,"
                " confirmed, token_nonce) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (email_key) DO NOTHING",
                (
                    email.strip(),
                    email_key(email),
                    name,
                    status.value,
                    now.isoformat(),
                    now.isoformat(),
                    source.value,
                    signup_ip,
                    now.isoformat() if status is SubscriberStatus.ACTIVE else None,
                    new_token_nonce(),
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
            " source = ?, signup_ip = ?, confirmed = ?, token_nonce = ?, name = COALESCE(NULLIF(?, ''), name)"
            " WHERE id = ?",
            (
                status.value,
                now.isoformat(),
                source.value,
                signup_ip,
                now.isoformat() if status is SubscriberStatus.ACTIVE else None,
                new_token_nonce(),
                name,
                existing.id,
            ),
        )
        return "resubscribed"

    _RECORD_COLUMNS = f"{_SUBSCRIBER_COLUMNS}, created, status_changed, status_detail, source, signup_ip, confirmed"

    @classmethod
    def _record(cls, r: Sequence[Any]) -> SubscriberRecord:
        return SubscriberRecord(
            cls._subscriber(r),
            datetime.fromisoformat(r[5]),
            datetime.fromisoformat(r[6]) if r[6] else None,
            r[7],
            SubscriberSource(r[8]),
            r[9],
            datetime.fromisoformat(r[10]) if r[10] else None,
        )

    def subscriber_records(self) -> list[SubscriberRecord]:
        """Every subscriber, whatever its status, in the order they were added, with its consent record."""
        rows = self._conn.execute(f"SELECT {self._RECORD_COLUMNS} FROM subscribers ORDER BY id").fetchall()
        return [self._record(r) for r in rows]

    def subscriber_record(self, subscriber_id: int) -> SubscriberRecord | None:
        """One subscriber (by id, as tokens name them) with its consent record."""
        row = self._conn.execute(
            f"SELECT {self._RECORD_COLUMNS} FROM subscribers WHERE id = ?", (subscriber_id,)
        ).fetchone()
        return self._record(row) if row else None

    def active_subscribers(self) -> list[Subscriber]:
        """Subscribers who get the next issue, in the order they were added."""
        rows = self._conn.execute(
            f"SELECT {self._SUBSCRIBER_COLUMNS} FROM subscribers WHERE status = 'active' ORDER BY id"
        )
        return [self._subscriber(r) for r in rows]

    def subscriber_topics(self, subscriber_id: int | None = None) -> dict[int, tuple[str, ...]]:
        """subscriber id -> the topic slugs it chose, for every subscriber who chose some (or only `subscriber_id`);
        a subscriber who chose none gets every paper and is not listed."""
        sql, params = "SELECT id, topics FROM subscribers WHERE topics != ''", []
        if subscriber_id is not None:
            sql, params = sql + " AND id = ?", [subscriber_id]
        rows = self._conn.execute(sql, params).fetchall()
        return {int(r[0]): tuple(t for t in str(r[1]).split(",") if t) for r in rows}

    def set_subscriber_topics(self, subscriber_id: int, slugs: Iterable[str]) -> None:
        """Choose the topics whose papers the subscriber gets (none: every paper)."""
        value = ",".join(dict.fromkeys(s for s in slugs if s and "," not in s))
        self._conn.execute("UPDATE subscribers SET topics = ? WHERE id = ?", (value, subscriber_id))

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
        return str(row[0]) if row else None

    # --- signup, confirmation, preferences (the web app) -----------------------------------------

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

    def erase_subscriber(self, subscriber_id: int) -> bool:
        """Delete the row and its deliveries (ON DELETE CASCADE); True if there was one."""
        return self._conn.execute("DELETE FROM subscribers WHERE id = ?", (subscriber_id,)).rowcount > 0

    def unsuppress(self, email: str) -> bool:
        """Forget an address's suppression (its owner confirmed a new signup, or an import was forced)."""
        return self._conn.execute("DELETE FROM suppressions WHERE email_hash = ?", (email_hash(email),)).rowcount > 0

    def subscriber_deliveries(self, subscriber_id: int) -> list[tuple[int, DeliveryStatus, int, str, datetime]]:
        """(issue, status, attempts, detail, updated) of every delivery to one subscriber, oldest issue first."""
        rows = self._conn.execute(
            "SELECT issue, status, attempts, detail, updated FROM deliveries WHERE subscriber = ? ORDER BY issue",
            (subscriber_id,),
        ).fetchall()
        return [(int(r[0]), DeliveryStatus(r[1]), int(r[2]), str(r[3]), datetime.fromisoformat(r[4])) for r in rows]

    def count_events(self, bucket: str, since: datetime) -> int:
        """How many rate-limit events `bucket` recorded at or after `since`."""
        row = self._conn.execute(
            "SELECT COUNT(*) FROM rate_events WHERE bucket = ? AND at >= ?", (bucket, _utc(since))
        ).fetchone()
        return int(row[0])

    def record_event(self, bucket: str, now: datetime) -> None:
        """Count one event (a signup request, a confirmation mail) against `bucket`."""
        self._conn.execute("INSERT INTO rate_events (bucket, at) VALUES (?, ?)", (bucket, _utc(now)))

    def prune_events(self, before: datetime) -> None:
        """Forget rate-limit events older than every window."""
        self._conn.execute("DELETE FROM rate_events WHERE at < ?", (_utc(before),))

    # --- delivery ledger ------------------------------------------------------------------------

    def delivery_statuses(self, issue: int) -> dict[int, DeliveryStatus]:
        """subscriber id -> ledger status for one issue."""
        rows = self._conn.execute("SELECT subscriber, status FROM deliveries WHERE issue = ?", (issue,))
        return {int(r[0]): DeliveryStatus(r[1]) for r in rows}

    def claim_delivery(
        self, issue: int, subscriber_id: int, message_id: str, now: datetime, *, retry_unknown: bool = False
    ) -> bool:
        """Mark (issue, subscriber) 'pending' if the subscriber is still active and the row is new or 'deferred'
        (or 'unknown' with `retry_unknown`); False when it must not be sent."""
        again = ("deferred", "unknown") if retry_unknown else ("deferred",)
        cursor = self._conn.execute(
            "INSERT INTO deliveries (issue, subscriber, status, attempts, detail, message_id, updated)"
            " SELECT ?, id, 'pending', 0, '', ?, ? FROM subscribers WHERE id = ? AND status = 'active'"
            " ON CONFLICT(issue, subscriber) DO UPDATE SET status = 'pending', message_id = excluded.message_id,"
            f" updated = excluded.updated WHERE deliveries.status IN ({','.join('?' * len(again))})",
            (issue, message_id, now.isoformat(), subscriber_id, *again),
        )
        return cursor.rowcount > 0

    def skip_delivery(self, issue: int, subscriber_id: int, detail: str, now: datetime) -> bool:
        """Record that (issue, subscriber) is not mailed ('skipped'), if the subscriber is active and has no row yet
        or a 'deferred' one; False when a row already says otherwise."""
        cursor = self._conn.execute(
            "INSERT INTO deliveries (issue, subscriber, status, attempts, detail, updated)"
            " SELECT ?, id, 'skipped', 0, ?, ? FROM subscribers WHERE id = ? AND status = 'active'"
            " ON CONFLICT(issue, subscriber) DO UPDATE SET status = 'skipped', detail = excluded.detail,"
            " updated = excluded.updated WHERE deliveries.status = 'deferred'",
            (issue, detail, now.isoformat(), subscriber_id),
        )
        return cursor.rowcount > 0

    def record_delivery(
        self,
        issue: int,
        subscriber_id: int,
        status: DeliveryStatus,
        detail: str,
        now: datetime,
        attempts: int = 1,
        *,
        bounce: str | None = None,
    ) -> None:
        """Record the outcome of sending (issue, subscriber); `bounce` 'hard'/'soft' when the server refused it."""
        self._conn.execute(
            "UPDATE deliveries SET status = ?, detail = ?, attempts = attempts + ?, updated = ?, bounce = ?"
            " WHERE issue = ? AND subscriber = ?",
            (status.value, detail, attempts, now.isoformat(), bounce, issue, subscriber_id),
        )

    # --- bounces ----------------------------------------------------------------------------------

    def record_bounce(
        self, issue: int, subscriber_id: int, status: DeliveryStatus, bounce: str | None, detail: str, now: datetime
    ) -> bool:
        """Mark a delivery bounced or complained about after the fact; a complaint is never overwritten by a
        bounce. False when the ledger has no such delivery."""
        keep = "" if status is DeliveryStatus.COMPLAINED else " AND status != 'complained'"
        cursor = self._conn.execute(
            "UPDATE deliveries SET status = ?, bounce = ?, detail = ?, updated = ? WHERE issue = ? AND subscriber = ?"
            + keep,
            (status.value, bounce, detail, now.isoformat(), issue, subscriber_id),
        )
        if cursor.rowcount:
            return True
        row = self._conn.execute(
            "SELECT 1 FROM deliveries WHERE issue = ? AND subscriber = ?", (issue, subscriber_id)
        ).fetchone()
        return row is not None

    def soft_bounce_streak(self, subscriber_id: int) -> int:
        """How many of the subscriber's latest finished deliveries in a row were soft bounces; the count is also
        kept on the subscriber (`soft_bounces`)."""
        rows = self._conn.execute(
            "SELECT bounce FROM deliveries WHERE subscriber = ? AND status IN ('sent', 'failed', 'bounced',"
            " 'complained') ORDER BY issue DESC",
            (subscriber_id,),
        )
        streak = 0
        for (bounce,) in rows:
            if bounce != "soft":
                break
            streak += 1
        self._conn.execute("UPDATE subscribers SET soft_bounces = ? WHERE id = ?", (streak, subscriber_id))
        return streak

    def subscriber_by_id(self, subscriber_id: int) -> Subscriber | None:
        """The subscriber with this id, whatever its status."""
        row = self._conn.execute(
            f"SELECT {self._SUBSCRIBER_COLUMNS} FROM subscribers WHERE id = ?", (subscriber_id,)
        ).fetchone()
        return self._subscriber(row) if row else None

    def report_outcome(self, key: str) -> str | None:
        """What importing this bounce/complaint report did, if it was imported before."""
        row = self._conn.execute("SELECT outcome FROM bounce_reports WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def record_report(self, key: str, outcome: str, now: datetime) -> None:
        """Remember an imported report (in the transaction that applied it)."""
        self._conn.execute(
            "INSERT INTO bounce_reports (key, imported, outcome) VALUES (?, ?, ?)", (key, now.isoformat(), outcome)
        )

    def bounce_counts(self, issue: int) -> tuple[int, int, int, int]:
        """(messages that went out, hard bounces, soft bounces, complaints) of one issue."""
        row = self._conn.execute(
            "SELECT COUNT(*), COUNT(CASE WHEN bounce = 'hard' THEN 1 END), COUNT(CASE WHEN bounce = 'soft' THEN 1 END),"
            " COUNT(CASE WHEN status = 'complained' THEN 1 END) FROM deliveries"
            " WHERE issue = ? AND status IN ('sent', 'failed', 'bounced', 'complained', 'unknown')",
            (issue,),
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])

    def mailed_issues(self, limit: int) -> list[int]:
        """The newest issues that have deliveries on the ledger, newest first."""
        rows = self._conn.execute(
            "SELECT DISTINCT issue FROM deliveries ORDER BY issue DESC LIMIT ?", (limit,)
        ).fetchall()
        return [int(r[0]) for r in rows]

    def expire_pending(self, now: datetime) -> int:
        """Turn 'pending' rows left by a crashed sender into 'unknown': the message may be on its way.

        Call only while holding the writer lock, when no sender can be running."""
        cursor = self._conn.execute(
            "UPDATE deliveries SET status = 'unknown', updated = ?,"
            " detail = 'the sender stopped while this message was being sent; it may have been delivered'"
            " WHERE status = 'pending'",
            (now.isoformat(),),
        )
        return cursor.rowcount

    def delivery_counts(self, issue: int) -> dict[DeliveryStatus, int]:
        """How many ledger rows of one issue are in each status."""
        rows = self._conn.execute(
            "SELECT status, COUNT(*) FROM deliveries WHERE issue = ? GROUP BY status", (issue,)
        ).fetchall()
        counts = dict.fromkeys(DeliveryStatus, 0)
        counts.update({DeliveryStatus(r[0]): int(r[1]) for r in rows})
        return counts

    def deliveries(self, issue: int, status: DeliveryStatus | None = None) -> list[Delivery]:
        """Ledger rows of one issue (optionally only one status), with their subscribers."""
        sql = (
            "SELECT d.status, d.attempts, d.detail, s.id, s.email, s.name, s.status, s.token_nonce"
            " FROM deliveries d JOIN subscribers s ON s.id = d.subscriber WHERE d.issue = ?"
        )
        params: list[object] = [issue]
        if status is not None:
            sql += " AND d.status = ?"
            params.append(status.value)
        rows = self._conn.execute(sql + " ORDER BY s.id", params).fetchall()
        return [
            Delivery(
                issue=issue,
                subscriber=self._subscriber(r[3:8]),
                status=DeliveryStatus(r[0]),
                attempts=int(r[1]),
                detail=r[2],
            )
            for r in rows
        ]

    # --- the scheduler's job store (APScheduler's own table, when it shares the state's database) ------------

    def stored_job_time(self, table: str, job_id: str) -> float | None:
        """The stored next run time (a UNIX time) of a scheduler job; None without the table or the job."""
        if table not in self._conn.tables():
            return None
        row = self._conn.execute(f"SELECT next_run_time FROM {table} WHERE id = ?", (job_id,)).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    # --- seed parse cache -----------------------------------------------------------------------

    def cached_files(self, *, with_scans: bool) -> dict[str, CachedFile]:
        """Every cached seed file; the scans themselves only when asked (they are the bulk of the table)."""
        if with_scans:
            rows = self._conn.execute("SELECT path, size, mtime_ns, sha256, scan FROM seed_files")
            return {r[0]: CachedFile(int(r[1]), int(r[2]), str(r[3]), bytes(r[4])) for r in rows}
        rows = self._conn.execute("SELECT path, size, mtime_ns FROM seed_files")
        return {r[0]: CachedFile(int(r[1]), int(r[2])) for r in rows}

    def waiting_entries(self, limit: int) -> list[EntryRef]:
        """The first `limit` papers seen but not published, in seed order (file name, then line): the head of the
        queue, read through its partial index without touching the archive or the rest of the backlog."""
        rows = self._conn.execute(
            "SELECT id, content_hash, source, line FROM entries WHERE data = '' ORDER BY source, line LIMIT ?",
            (limit,),
        )
        return [EntryRef(r[0], r[1], r[2], int(r[3])) for r in rows]

    def waiting_count(self) -> int:
        """How many papers wait (counted on the queue's index: no row is read)."""
        return int(self._conn.execute("SELECT COUNT(*) FROM entries WHERE data = ''").fetchone()[0])

    def has_entries(self) -> bool:
        """Whether any paper was ever recorded (a first import has nothing to reconcile)."""
        return bool(self._conn.execute("SELECT EXISTS (SELECT 1 FROM entries)").fetchone()[0])

    def present_entry_ids(self) -> set[str]:
        """Ids of the recorded papers taken to be in the seeds (those no longer there have an empty source)."""
        return {r[0] for r in self._conn.execute("SELECT id FROM entries WHERE source != ''")}

    def forget_absent(self, ids: Iterable[str]) -> None:
        """Papers no longer in any seed file: a waiting one is forgotten (it is new if it comes back); a published
        one stays, its source emptied, so that a repeat of it in a new file counts as its first occurrence."""
        rows = [(i,) for i in ids]
        self._conn.executemany("DELETE FROM entries WHERE id = ? AND data = ''", rows)
        self._conn.executemany("UPDATE entries SET source = '' WHERE id = ?", rows)

    def prior_entries(self, ids: Sequence[str]) -> dict[str, PriorEntry]:
        """What the state knows of these paper ids: hash, issue, recorded first occurrence."""
        found: dict[str, PriorEntry] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            rows = self._conn.execute(
                "SELECT e.id, e.content_hash, ie.issue, e.source, e.line FROM entries e"
                f" LEFT JOIN issue_entries ie ON ie.entry_id = e.id WHERE e.id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for entry_id, content_hash, issue, source, line in rows:
                found[entry_id] = PriorEntry(content_hash, issue, source, line)
        return found

    def entry_ids_from(self, sources: Sequence[str]) -> set[str]:
        """Ids of the entries whose recorded first occurrence is in one of these seed files."""
        found: set[str] = set()
        for start in range(0, len(sources), 500):
            chunk = list(sources[start : start + 500])
            rows = self._conn.execute(f"SELECT id FROM entries WHERE source IN ({','.join('?' * len(chunk))})", chunk)
            found.update(r[0] for r in rows)
        return found

    def cache_scans(self, rows: Iterable[tuple[str, int, int, str, bytes]]) -> None:
        """Remember parsed seed files so unchanged files are not parsed again."""
        self._conn.executemany(
            "INSERT INTO seed_files (path, size, mtime_ns, sha256, scan) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,"
            " sha256 = excluded.sha256, scan = excluded.scan",
            rows,
        )

    def forget_scans(self, paths: Iterable[str]) -> None:
        """Drop cache rows of seed files that no longer exist."""
        self._conn.executemany("DELETE FROM seed_files WHERE path = ?", ((p,) for p in paths))
