"""The state file: migrations keep what an older digest recorded."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from digest.model import DeliveryStatus, SubscriberSource, SubscriberStatus
from digest.store import Store, email_hash
from digest.store.sqlite import MIGRATIONS

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def _state_at_version_3(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:3]:
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute("PRAGMA user_version = 3")
    conn.execute("INSERT INTO meta VALUES ('site_uuid', 'x')")
    conn.execute("INSERT INTO issues VALUES (1, '2026-01-01T08:00:00+00:00', NULL, '2026-01-01T08:00:00+00:00')")
    conn.execute(
        "INSERT INTO subscribers (id, email, email_key, name, active, created, unsubscribed) VALUES"
        " (1, 'Ada@example.org', 'ada@example.org', 'Ada', 1, '2025-12-01T00:00:00+00:00', NULL),"
        " (2, 'bob@example.org', 'bob@example.org', '', 0, '2025-12-01T00:00:00+00:00', '2025-12-24T00:00:00+00:00')"
    )
    conn.execute(
        "INSERT INTO deliveries VALUES (1, 1, 'sent', 1, '250 ok', '<m1@x>', '2026-01-01T08:00:01+00:00'),"
        " (1, 2, 'failed', 1, '550 no', '<m2@x>', '2026-01-01T08:00:01+00:00')"
    )
    conn.close()


def test_migration_4_turns_the_active_flag_into_a_status_and_keeps_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "digest.db"
    _state_at_version_3(path)
    with Store.open(path) as store:
        records = {r.subscriber.email: r for r in store.subscriber_records()}
        assert records["Ada@example.org"].subscriber.status is SubscriberStatus.ACTIVE
        assert records["Ada@example.org"].unsubscribed is None
        assert records["bob@example.org"].subscriber.status is SubscriberStatus.UNSUBSCRIBED
        assert records["bob@example.org"].unsubscribed == datetime(2025, 12, 24, tzinfo=UTC)
        assert {r.source for r in records.values()} == {SubscriberSource.CLI}
        assert store.delivery_counts(1)[DeliveryStatus.SENT] == 1
        assert store.delivery_counts(1)[DeliveryStatus.FAILED] == 1
        assert [s.email for s in store.active_subscribers()] == ["Ada@example.org"]
        with store.transaction():
            store.record_delivery(1, 2, DeliveryStatus.BOUNCED, "5.1.1 user unknown", NOW)
        assert store.delivery_counts(1)[DeliveryStatus.BOUNCED] == 1


def test_only_active_subscribers_are_claimed_for_a_delivery(tmp_path: Path) -> None:
    with Store.open(tmp_path / "digest.db") as store, store.transaction():
        store.add_subscriber("p@example.org", "", NOW, status=SubscriberStatus.PENDING, source=SubscriberSource.FORM)
        store.add_subscriber("a@example.org", "", NOW)
        pending, active = (store.subscriber(a) for a in ("p@example.org", "a@example.org"))
        assert pending is not None and active is not None
        assert [s.email for s in store.active_subscribers()] == ["a@example.org"]
        assert store.set_subscriber_status(
            pending.id, SubscriberStatus.ACTIVE, NOW, only_from=[SubscriberStatus.PENDING]
        )
        assert not store.set_subscriber_status(pending.id, SubscriberStatus.ACTIVE, NOW)


def test_suppression_keeps_only_a_hash_of_the_address(tmp_path: Path) -> None:
    path = tmp_path / "digest.db"
    with Store.open(path) as store, store.transaction():
        store.suppress("Gone@Example.org", "deleted by the subscriber", NOW)
        assert store.suppression("gone@example.org") == "deleted by the subscriber"
        assert store.suppression("other@example.org") is None
    written = b"".join(f.read_bytes() for f in tmp_path.iterdir())  # the database and its WAL
    assert b"gone@example.org" not in written.lower() and email_hash("gone@example.org").encode() in written
    assert email_hash("GONE@example.org ") == email_hash("gone@example.org")
