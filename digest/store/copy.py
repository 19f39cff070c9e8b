"""Moving a state from one backend to the other (`digest migrate-state`): every table copied in one transaction of
the target, then verified by row counts and per-table checksums before it commits. The target must be empty.

A checksum is the sha256 of a table's rows sorted by primary key (sorted here, not by the database, whose
collations differ), each row normalised to JSON with its columns in a fixed order and bytes as hex: the same rows
give the same checksum on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from digest.errors import StoreError
from digest.store.backend import TABLES, Backend, Connection
from digest.store.queries import Store

BATCH = 2000

#: Called as rows go in: (table, rows copied so far, rows in the table).
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class CopiedTable:
    """One table as copied: how many rows, and the checksum both sides agreed on."""

    table: str
    rows: int
    checksum: str


def _normal(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"hex": bytes(value).hex()}
    if isinstance(value, bool):
        return int(value)
    return value


def _sort_key(row: Sequence[Any]) -> tuple[tuple[bool, Any], ...]:
    return tuple((value is None, "" if value is None else value) for value in row)


def _rows(conn: Connection, table: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    """Every row of `table` (primary key columns first), normalised and sorted by primary key."""
    rows = conn.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()
    normal = [tuple(_normal(v) for v in row) for row in rows]
    normal.sort(key=_sort_key)
    return normal


def checksum(rows: Sequence[Sequence[Any]]) -> str:
    """The sha256 of normalised, sorted rows."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def _columns(source: Connection, target: Connection, table: str, key: Sequence[str]) -> list[str]:
    have, want = source.columns(table), target.columns(table)
    if sorted(have) != sorted(want):
        raise StoreError(f"table {table}: the two schemas differ ({sorted(have)} and {sorted(want)}); upgrade digest")
    return [*key, *sorted(c for c in have if c not in key)]


def _refuse_non_empty(target: Backend) -> None:
    conn = target.connect(busy_timeout=5.0)
    try:
        present = conn.tables() & {table for table, _ in TABLES}
        for table in sorted(present):
            # A state opened once and never used holds only its site id: that is still empty.
            extra = " WHERE key != 'site_uuid'" if table == "meta" else ""
            count = int(conn.execute(f"SELECT COUNT(*) FROM {table}{extra}").fetchone()[0])
            if count:
                raise StoreError(
                    f"{target.where}: the target is not empty ({table} has {count} rows); "
                    "migrate-state copies only into an empty database"
                )
    finally:
        conn.close()


def copy_state(source: Backend, target: Backend, progress: Progress | None = None) -> list[CopiedTable]:
    """Copy every table of `source` into the empty `target` (schema created or upgraded first), verify counts and
    checksums, and commit only if all agree. The source is only read (after its own migrations, if any)."""
    if source.where == target.where:
        raise StoreError(f"{source.where}: source and target are the same state")
    _refuse_non_empty(target)
    copied: list[CopiedTable] = []
    with Store.open(source) as src, Store.open(target) as tgt, tgt.transaction() as out:
        out.execute("DELETE FROM meta")  # the site id a fresh target made; the source's is the one feeds use
        reader = src.session
        for table, key in TABLES:
            columns = _columns(reader, out, table, key)
            rows = _rows(reader, table, columns)
            insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            for start in range(0, len(rows), BATCH):
                out.executemany(insert, [_raw(row) for row in rows[start : start + BATCH]])
                if progress:
                    progress(table, min(start + BATCH, len(rows)), len(rows))
            if progress and not rows:
                progress(table, 0, 0)
            written = _rows(out, table, columns)
            expected, found = checksum(rows), checksum(written)
            if len(written) != len(rows) or found != expected:
                raise StoreError(
                    f"table {table}: the copy does not match ({len(rows)} rows, sha256 {expected[:12]}; "
                    f"copied {len(written)} rows, sha256 {found[:12]}); nothing was written"
                )
            copied.append(CopiedTable(table, len(rows), expected))
        out.after_copy()
    return copied


def _raw(row: Sequence[Any]) -> tuple[Any, ...]:
    """A normalised row back as values to insert (bytes again)."""
    return tuple(bytes.fromhex(v["hex"]) if isinstance(v, dict) else v for v in row)
