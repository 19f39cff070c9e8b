"""The state on both backends: the shared queries, migrations that keep what an older digest recorded, the writer
lock, and writes that race."""

from __future__ import annotations

import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.errors import BusyError, StoreConflict, StoreError
from digest.model import CachedFile, DeliveryStatus, Entry, Issue, SubscriberSource, SubscriberStatus
from digest.store import SCHEMA_VERSION, TABLES, Store, backend_for, email_hash
from digest.store.sqlite import MIGRATIONS
from tests.conftest import run_sql
from tests.postgres_util import Cluster

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


def test_forgetting_old_rate_limit_events_reads_an_index_not_the_whole_table(tmp_path: Path) -> None:
    """Every signup batch prunes events older than the longest window: with the million events of a sustained
    flood, a full scan cost 63 ms a batch (migration 12 added the index on `at`)."""
    with Store.open(tmp_path / "digest.db") as store, store.transaction():
        for minute in range(10):
            store.record_event("ip:203.0.113.7", NOW.replace(minute=minute))
        store.prune_events(NOW.replace(minute=5))
        assert store.count_events("ip:203.0.113.7", NOW) == 5
    conn = sqlite3.connect(tmp_path / "digest.db")
    plan = " ".join(
        str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN DELETE FROM rate_events WHERE at < ?", ("x",))
    )
    conn.close()
    assert "USING INDEX rate_events_at" in plan, plan


@pytest.mark.both_states
def test_only_active_subscribers_are_claimed_for_a_delivery(state: Path | str) -> None:
    with Store.open(state) as store, store.transaction():
        store.add_subscriber("p@example.org", "", NOW, status=SubscriberStatus.PENDING, source=SubscriberSource.FORM)
        store.add_subscriber("a@example.org", "", NOW)
        pending, active = (store.subscriber(a) for a in ("p@example.org", "a@example.org"))
        assert pending is not None and active is not None
        assert [s.email for s in store.active_subscribers()] == ["a@example.org"]
        assert store.set_subscriber_status(
            pending.id, SubscriberStatus.ACTIVE, NOW, only_from=[SubscriberStatus.PENDING]
        )
        assert not store.set_subscriber_status(pending.id, SubscriberStatus.ACTIVE, NOW)


def test_a_record_says_since_when_its_status_holds_and_when_a_subscription_ended(state: Path | str) -> None:
    later = datetime(2026, 2, 1, tzinfo=UTC)
    with Store.open(state) as store, store.transaction():
        for status in SubscriberStatus:
            store.add_subscriber(f"{status.value}@example.org", "", NOW)
            subscriber = store.subscriber(f"{status.value}@example.org")
            assert subscriber is not None
            store.set_subscriber_status(subscriber.id, status, later)
        records = {r.subscriber.status: r for r in store.subscriber_records()}
    assert records[SubscriberStatus.ACTIVE].status_since is None
    assert all(r.status_since == later for s, r in records.items() if s is not SubscriberStatus.ACTIVE)
    ended = {s for s, r in records.items() if r.unsubscribed == later}
    assert ended == {SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED}
    assert all(r.unsubscribed is None for s, r in records.items() if s not in ended)  # pending, paused: not ended


@pytest.mark.both_states
def test_suppression_keeps_only_a_hash_of_the_address(state: Path | str) -> None:
    with Store.open(state) as store, store.transaction():
        store.suppress("Gone@Example.org", "deleted by the subscriber", NOW)
        assert store.suppression("gone@example.org") == "deleted by the subscriber"
        assert store.suppression("other@example.org") is None
    if isinstance(state, Path):
        written = b"".join(f.read_bytes() for f in state.parent.iterdir())  # the database and its WAL
        assert b"gone@example.org" not in written.lower() and email_hash("gone@example.org").encode() in written
    assert run_sql(state, "SELECT email_hash FROM suppressions") == [(email_hash("gone@example.org"),)]
    assert email_hash("GONE@example.org ") == email_hash("gone@example.org")


@pytest.mark.both_states
def test_the_shared_queries_round_trip_on_each_backend(state: Path | str) -> None:
    entry = Entry(
        id="arxiv:2401.00001",
        title_en="A paper",
        title_zh="论文",
        url="https://arxiv.org/abs/2401.00001",
        abstract=("第一段。", "second"),
        source="seeds/a.md",
        line=3,
        topics=("llm",),
    )
    with Store.open(state) as store:
        with store.transaction():
            store.set_meta("k", "1")
            store.set_meta("k", "2")  # an upsert, not a second row
            store.record_seen([entry], NOW)
            store.record_issue(Issue(number=1, published=NOW, entries=(entry,), slot="s1"), NOW)
            store.cache_scans([("seeds/a.md", 10, 2**62, "h", b"\x00\xff")])
            store.cache_scans([("seeds/a.md", 11, 2**62, "h2", b"\x01")])  # a rescan replaces the row
            assert store.set_paper_topics(1, [("llm", 0), ("llm", 0)]) == {"llm"}
            store.add_subscriber("ada@example.org", "Ada", NOW)
            sub = store.subscriber("ADA@example.org")
            assert sub is not None
            assert store.claim_delivery(1, sub.id, "<m@x>", NOW)
            assert not store.claim_delivery(1, sub.id, "<m@x>", NOW)
            store.record_delivery(1, sub.id, DeliveryStatus.FAILED, "550", NOW, bounce="hard")
        assert store.meta("k") == "2"
        assert store.load_issues([1])[0].entries == (entry,)
        assert store.issue_for_slot("s1") == 1 and store.next_issue_number() == 2
        assert store.cached_files(with_scans=True)["seeds/a.md"] == CachedFile(11, 2**62, "h2", b"\x01")
        assert store.bounce_counts(1) == (1, 1, 0, 0)
        assert store.newest_topic_papers("llm", 5) == [(1, 0)]
        with pytest.raises(StoreConflict), store.transaction():  # a paper is never published twice
            store.record_issue(Issue(number=2, published=NOW, entries=(entry,)), NOW)
        assert store.issue_count() == 1


@pytest.mark.both_states
def test_one_address_added_by_many_sessions_at_once_is_one_subscriber(state: Path | str) -> None:
    Store.open(state).close()  # the schema exists before the race

    def add(n: int) -> str:
        with Store.open(state) as store, store.transaction():
            return store.add_subscriber("Race@example.org", f"n{n}", NOW)

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(add, range(16)))
    assert sorted(outcomes) == ["added"] + ["exists"] * 15
    assert run_sql(state, "SELECT COUNT(*) FROM subscribers") == [(1,)]


@pytest.mark.both_states
def test_the_writer_lock_admits_one_holder_and_names_it(state: Path | str) -> None:
    backend = backend_for(state)
    with backend.writer_lock(5, "render"):
        with pytest.raises(BusyError) as busy, backend.writer_lock(0.2, "send"):
            pass
        assert "render" in str(busy.value) and str(os.getpid()) in str(busy.value)
    with backend.writer_lock(0.2, "send"):  # released
        pass


@pytest.mark.both_states
def test_serialize_holds_its_key_until_the_transaction_ends(state: Path | str) -> None:
    with Store.open(state, busy_timeout=0.2) as first, Store.open(state, busy_timeout=0.2) as second:
        with first.transaction():
            first.serialize("signup-ip:192.0.2.1")
            with pytest.raises(StoreError), second.transaction():
                second.serialize("signup-ip:192.0.2.1")  # waits 0.2 s for the key, then gives up
        with second.transaction():
            second.serialize("signup-ip:192.0.2.1")  # free once the first transaction committed


#: Column types as both dialects spell them, by what they hold (PostgreSQL's BIGINT and INTEGER are SQLite's INTEGER).
_TYPES = {"integer": "integer", "bigint": "integer", "text": "text", "blob": "bytes", "bytea": "bytes"}

#: A table's shape: {column: (type, nullable)}, its primary key and its unique constraints (each a column tuple).
Shape = tuple[dict[str, tuple[str, bool]], tuple[str, ...], set[tuple[str, ...]]]


def _sqlite_shape(store: Store, table: str) -> Shape:
    conn = store.session
    info = conn.execute('SELECT name, type, "notnull", pk FROM pragma_table_info(?) ORDER BY cid', (table,)).fetchall()
    key = tuple(r["name"] for r in sorted((r for r in info if r["pk"]), key=lambda r: r["pk"]))
    # SQLite lets a primary key that is not an INTEGER PRIMARY KEY hold NULL (a documented quirk kept for
    # compatibility); digest never writes one, and PostgreSQL refuses it: both read as NOT NULL.
    columns = {r["name"]: (_TYPES[r["type"].lower()], not (r["notnull"] or r["pk"])) for r in info}
    unique = set()
    for index in conn.execute("SELECT name FROM pragma_index_list(?) WHERE origin = 'u'", (table,)).fetchall():
        rows = conn.execute("SELECT name FROM pragma_index_info(?) ORDER BY seqno", (index["name"],)).fetchall()
        unique.add(tuple(r["name"] for r in rows))
    return columns, key, unique


def _postgresql_shape(store: Store, table: str) -> Shape:
    conn = store.session
    info = conn.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ?",
        (table,),
    ).fetchall()
    columns = {r["column_name"]: (_TYPES[r["data_type"].lower()], r["is_nullable"] == "YES") for r in info}
    constraints: dict[tuple[str, str], list[str]] = {}
    for r in conn.execute(
        "SELECT tc.constraint_name, tc.constraint_type, k.column_name FROM information_schema.table_constraints tc"
        " JOIN information_schema.key_column_usage k ON k.constraint_name = tc.constraint_name"
        " AND k.constraint_schema = tc.constraint_schema AND k.table_name = tc.table_name"
        " WHERE tc.table_schema = current_schema() AND tc.table_name = ?"
        " AND tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE') ORDER BY tc.constraint_name, k.ordinal_position",
        (table,),
    ):
        constraints.setdefault((r["constraint_name"], r["constraint_type"]), []).append(r["column_name"])
    keys = [tuple(c) for (_, kind), c in constraints.items() if kind == "PRIMARY KEY"]
    unique = {tuple(c) for (_, kind), c in constraints.items() if kind == "UNIQUE"}
    return columns, keys[0] if keys else (), unique


def test_both_backends_have_the_same_tables_and_columns(tmp_path: Path, postgres: Cluster) -> None:
    """The PostgreSQL schema (consolidated, then numbered steps) and SQLite's migrations from 1 end up alike: the
    same tables and columns, column types (by what they hold), nullability, primary keys and unique constraints."""
    with Store.open(tmp_path / "digest.db") as lite, Store.open(postgres.create_database()) as pg:
        for table, key in TABLES:
            assert sorted(lite.session.columns(table)) == sorted(pg.session.columns(table)), table
            lite_columns, lite_key, lite_unique = _sqlite_shape(lite, table)
            pg_columns, pg_key, pg_unique = _postgresql_shape(pg, table)
            assert lite_columns == pg_columns, table
            assert lite_unique == pg_unique, table
            if table == "rate_events":  # no key: events are only counted, never named (the key in TABLES orders)
                assert lite_key == pg_key == (), table
            else:
                assert lite_key == pg_key == key, table
        assert {t for t, _ in TABLES} == lite.session.tables() == pg.session.tables() - {"digest_schema"}
        assert lite.session.schema_version() == pg.session.schema_version() == SCHEMA_VERSION


def test_the_web_apps_postgresql_sessions_are_reused_and_a_dropped_one_is_replaced(postgres: Cluster) -> None:
    """`digest serve` borrows sessions from a pool (no new connection per request); a session the server ended
    (a restart, a failover, an idle timeout) is replaced, not handed to a request that would then fail."""
    url = postgres.create_database()
    backend = backend_for(url).for_requests(2)
    assert backend_for(url).for_requests(2) is not backend_for(url)  # the plain backend stays per-session

    def session_pid() -> int:
        with Store.open(backend, busy_timeout=1) as store:
            return int(store._conn.execute("SELECT pg_backend_pid()").fetchone()[0])

    try:
        used = {session_pid() for _ in range(8)}
        assert 1 <= len(used) <= 2, "eight requests, at most the pool's two sessions"
        for pid in used:
            run_sql(url, "SELECT pg_terminate_backend(?)", pid)
        again = {session_pid() for _ in range(4)}
        assert again and not again & used, "every ended session was replaced"
        with Store.open(backend, busy_timeout=1) as store:
            assert store.issue_count() == 0
    finally:
        backend.close()
