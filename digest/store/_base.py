"""A session with the state and its plumbing: opening (with the schema's migrations), transactions, the
serialization of read-then-write decisions, the meta table and the scheduler's job store. The per-domain
queries (_entries.py, _issues.py, _subscribers.py, _ledger.py) build on this; store.py combines them.

Rows are read by column name (`row["id"]`): the backends hand out rows that also index by position.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from digest.errors import StoreError
from digest.store.backend import SCHEMA_VERSION, Backend, Connection


class StoreBase:
    """A session with the state (a SQLite file or a PostgreSQL database). Use `transaction()` for every write."""

    def __init__(self, conn: Connection, backend: Backend) -> None:
        self._conn = conn
        self.backend = backend

    @classmethod
    def open(cls, location: Backend | Path | str, *, busy_timeout: float = 60.0) -> Self:
        """Open (creating and migrating if needed) the state at `location`: a backend, a SQLite path, or a URL."""
        from digest.store import backend_for  # noqa: PLC0415 (the package imports this module: a cycle)

        backend = location if isinstance(location, Backend) else backend_for(location)
        store = cls(backend.connect(busy_timeout), backend)
        try:
            store._migrate()
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def from_snapshot(cls, backend: Backend, data: bytes) -> Self:
        """A store on a copy of the state made by `snapshot` (in another process): reads see the state as it was
        then, writes go nowhere."""
        return cls(backend.open_snapshot(data), backend)

    def snapshot(self) -> bytes | None:
        """The state as this session sees it, open transaction included (None: the backend makes no copies)."""
        return self._conn.snapshot()

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Self:
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
        """The connection itself (for copying whole tables; everything else goes through the methods)."""
        return self._conn

    def serialize(self, key: str) -> None:
        """Inside a transaction: wait for any other transaction holding `key` to end, and hold it until this one
        ends (a decision that counts rows, then writes, must not race a twin on another host)."""
        self._conn.serialize(key)

    # --- meta ---------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        """A value from the meta table (None when absent)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row["value"]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        """Set a value in the meta table."""
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def meta_with_prefix(self, prefix: str) -> dict[str, str]:
        """Every meta key starting with `prefix`, with its value (substr, not LIKE: `_` is no wildcard here)."""
        rows = self._conn.execute(
            "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix)
        ).fetchall()
        return {str(r["key"]): str(r["value"]) for r in rows}

    def site_uuid(self) -> str:
        """A random id made when the state was created: the permanent base of feed ids."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'site_uuid'").fetchone()
        return str(row["value"])

    # --- the scheduler's job store (APScheduler's own table, when it shares the state's database) ------------

    def stored_job_time(self, table: str, job_id: str) -> float | None:
        """The stored next run time (a UNIX time) of a scheduler job; None without the table or the job."""
        if table not in self._conn.tables():
            return None
        row = self._conn.execute(f"SELECT next_run_time FROM {table} WHERE id = ?", (job_id,)).fetchone()
        return float(row["next_run_time"]) if row and row["next_run_time"] is not None else None
