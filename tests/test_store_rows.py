"""The rows a state's session hands out read by column name (what the store's queries do) and by position (what a
whole-table copy does), on both backends alike."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.errors import StoreError
from digest.model import DeliveryStatus, Entry, Issue
from digest.store import Store

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


@pytest.mark.both_states
def test_a_row_reads_by_column_name_and_by_position(state: Path | str) -> None:
    with Store.open(state) as store:
        row = store.session.execute("SELECT key, value FROM meta WHERE key = 'site_uuid'").fetchone()
        assert row["value"] == row[1] == store.site_uuid()
        assert row["key"] == row[0] == "site_uuid"
        assert list(row.keys()) == ["key", "value"]
        assert tuple(row) == ("site_uuid", store.site_uuid()) and row[:1] == ("site_uuid",) and len(row) == 2
        key, value = row
        assert (key, value) == ("site_uuid", store.site_uuid())
        with pytest.raises(IndexError):
            row["no_such_column"]


@pytest.mark.both_states
def test_a_name_two_columns_share_reads_the_first(state: Path | str) -> None:
    with Store.open(state) as store:
        row = store.session.execute("SELECT 'first' AS status, 'second' AS status").fetchone()
        assert row["status"] == "first" and row[1] == "second"


@pytest.mark.both_states
def test_a_delivery_keeps_its_own_status_apart_from_its_subscribers(state: Path | str) -> None:
    """The ledger's query joins two `status` columns: each lands where it belongs."""
    entry = Entry(
        id="e1", title_en="T", title_zh="标题", url="https://example.org/1", abstract=("A.",), source="s.md", line=3
    )
    with Store.open(state) as store, store.transaction():
        store.record_new([entry], NOW)
        store.record_issue(Issue(number=1, published=NOW, entries=(entry,)), NOW)
        store.add_subscriber("ada@example.org", "Ada", NOW)
        subscriber = store.active_subscribers()[0]
        assert store.claim_delivery(1, subscriber.id, "<m1@example.org>", NOW)
        store.record_delivery(1, subscriber.id, DeliveryStatus.FAILED, "550 no", NOW)
        (delivery,) = store.deliveries(1)
        assert delivery.status is DeliveryStatus.FAILED and delivery.subscriber.active
        assert delivery.extra == {"message_id": "<m1@example.org>"} and delivery.attempts == 1
        assert store.load_entries(["e1"]) == {"e1": entry}
        assert store.load_issues([1])[0].entries == (entry,)


#: Two good rows, then one the database fails to compute: SQLite fails only when that row is read.
FAILING_THIRD_ROW = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3)"
    " SELECT CASE WHEN i = 3 THEN abs(-9223372036854775807 - 1) ELSE i END AS v FROM n"
)


@pytest.mark.both_states
def test_a_row_that_fails_while_rows_are_read_is_a_store_error(state: Path | str) -> None:
    """The driver's errors never leave the store raw, also when they come after `execute` returned."""
    with Store.open(state) as store:
        with pytest.raises(StoreError, match="state database error"):
            list(store.session.execute(FAILING_THIRD_ROW))
        with pytest.raises(StoreError, match="state database error"):
            store.session.execute(FAILING_THIRD_ROW).fetchall()
        with pytest.raises(StoreError), store.transaction():
            store.set_meta("half", "done")
            list(store.session.execute(FAILING_THIRD_ROW))
        assert store.meta("half") is None  # rolled back
