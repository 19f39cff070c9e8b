"""Moving a state from one backend to the other (`digest migrate-state`): every table copied in one transaction of
the target, then verified by row counts and per-table checksums before it commits. The target must be empty.

A checksum is the sha256 over a table's rows in primary-key order (sorted here, not by the database, whose
collations differ), each row as the sha256 of its JSON with the columns in a fixed order and bytes as hex: the same
rows give the same checksum on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from digest.errors import StoreError
from digest.store.backend import TABLES, Backend, Connection
from digest.store.store import Store

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


def _key(row: Sequence[Any], width: int) -> tuple[tuple[bool, Any], ...]:
    return tuple((value is None, "" if value is None else value) for value in row[:width])


def _row_hash(row: Sequence[Any]) -> bytes:
    text = json.dumps([_normal(v) for v in row], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).digest()


def table_checksum(conn: Connection, table: str, columns: Sequence[str], width: int) -> tuple[int, str]:
    """(rows, checksum) of a table: the sha256 of its rows' hashes in primary-key order (the first `width`
    columns), sorted here so that both databases agree whatever their collation; memory holds keys and hashes only."""
    keyed = [(_key(row, width), _row_hash(row)) for row in conn.execute(f"SELECT {', '.join(columns)} FROM {table}")]
    keyed.sort()
    digest = hashlib.sha256()
    for _, row_hash in keyed:
        digest.update(row_hash)
    return len(keyed), digest.hexdigest()


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
            total = int(reader.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            rows = iter(reader.execute(f"SELECT {', '.join(columns)} FROM {table}"))
            done = 0
            while batch := list(islice(rows, BATCH)):
                out.insert_rows(table, columns, batch)
                done += len(batch)
                if progress:
                    progress(table, done, total)
            if progress and not total:
                progress(table, 0, 0)
            expected = table_checksum(reader, table, columns, len(key))
            found = table_checksum(out, table, columns, len(key))
            if found != expected:
                raise StoreError(
                    f"table {table}: the copy does not match ({expected[0]} rows, sha256 {expected[1][:12]}; "
                    f"copied {found[0]} rows, sha256 {found[1][:12]}); nothing was written"
                )
            copied.append(CopiedTable(table, expected[0], expected[1]))
        out.after_copy()
    return copied
