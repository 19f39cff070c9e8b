"""The PostgreSQL backend (psycopg 3): the schema in PostgreSQL's types, READ COMMITTED write transactions with
advisory locks where a decision reads before it writes, and a session-level advisory lock as the writer lock.
Only what differs from SQLite lives here.

Migrations: a fresh database gets SCHEMA (the consolidated schema of version SCHEMA_BASE) in one transaction;
later versions are the numbered steps of MIGRATIONS, the same numbers as SQLite's. The version is kept in the
one-row table `digest_schema` (PostgreSQL has no `user_version`), and DDL is transactional: a failed step leaves
the previous version.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import RowMaker
from psycopg_pool import ConnectionPool, PoolTimeout

from digest.errors import BusyError, StateBusy, StoreConflict, StoreError
from digest.store.backend import SCHEMA_VERSION, Backend, Connection, Cursor
from digest.store.postgresql_schema import MIGRATIONS, SCHEMA, SCHEMA_BASE

__all__ = ["MIGRATIONS", "SCHEMA", "SCHEMA_BASE", "PooledPostgresBackend", "PostgresBackend", "PostgresConnection"]

# Advisory lock keys are 64-bit integers; derive them from names so they read as what they guard.
_KEY = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
WRITER_LOCK_NAME = "digest:writer"
_PLACEHOLDER = re.compile(r"\?")


def _translate(sql: str) -> str:
    """`?` placeholders (the shared queries') as psycopg's `%s`; a literal `%` doubled."""
    return _PLACEHOLDER.sub("%s", sql.replace("%", "%%"))


# The rows of the shared queries are sqlite3.Row on both backends: read by column name (what the queries do) and by
# position (what whole-table copies do), in C. A Row takes its column names from a sqlite3 cursor, so each list of
# names PostgreSQL returns gets one cursor of an in-memory database that only describes them.
_NAMER = sqlite3.connect(":memory:", check_same_thread=False)


@lru_cache(maxsize=512)
def _described(names: tuple[str, ...]) -> sqlite3.Cursor:
    columns = ", ".join('NULL AS "{}"'.format(name.replace('"', '""')) for name in names)
    return _NAMER.execute(f"SELECT {columns}")


def named_rows(cursor: psycopg.Cursor[Any]) -> RowMaker[Any]:
    """psycopg's row factory for the shared queries: sqlite3.Row, as the SQLite backend's rows."""
    description = cursor.description
    if not description:
        return tuple
    described = _described(tuple(column.name for column in description))
    return lambda values: sqlite3.Row(described, tuple(values))


class PostgresConnection(Connection):
    """A psycopg connection in autocommit mode; transactions are explicit BEGIN ... COMMIT."""

    def __init__(self, conn: psycopg.Connection[Any], where: str) -> None:
        conn.row_factory = named_rows
        self._conn = conn
        self._where = where
        self._sql: dict[str, str] = {}

    def _fail(self, exc: psycopg.Error) -> NoReturn:
        if isinstance(exc, pg_errors.IntegrityError):
            raise StoreConflict(f"{self._where}: {exc}") from exc
        if isinstance(exc, pg_errors.LockNotAvailable):
            raise StateBusy(f"{self._where}: state is locked by another process: {exc}") from exc
        raise StoreError(f"{self._where}: state database error: {exc}") from exc

    def _query(self, sql: str) -> str:
        found = self._sql.get(sql)
        if found is None:
            found = self._sql[sql] = _translate(sql)
        return found

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        try:
            return self._conn.execute(self._query(sql), params)
        except psycopg.Error as exc:
            self._fail(exc)

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        try:
            with self._conn.cursor() as cursor:
                cursor.executemany(self._query(sql), rows)
        except psycopg.Error as exc:
            self._fail(exc)

    def insert_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
        try:
            with self._conn.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            self._fail(exc)

    def begin(self) -> None:
        # READ COMMITTED: each statement sees what was committed before it. Writes that race are made safe by
        # the queries themselves (conditional UPDATEs, ON CONFLICT) and by serialize() where a count decides.
        self.execute("BEGIN ISOLATION LEVEL READ COMMITTED")

    def commit(self) -> None:
        try:
            self._conn.execute("COMMIT")
        except psycopg.Error as exc:
            raise StoreError(f"{self._where}: commit failed: {exc}") from exc

    def rollback(self) -> None:
        # When the connection is gone, the server rolled the transaction back with it.
        with contextlib.suppress(psycopg.OperationalError):
            self._conn.execute("ROLLBACK")

    def serialize(self, key: str) -> None:
        try:
            self._conn.execute(_KEY, (f"digest:{key}",))
        except psycopg.Error as exc:
            self._fail(exc)

    def schema_version(self) -> int:
        if self.execute("SELECT to_regclass('digest_schema')").fetchone()[0] is None:
            return 0
        row = self.execute("SELECT version FROM digest_schema").fetchone()
        return int(row[0]) if row else 0

    def migrate(self, version: int) -> None:
        # Two processes opening a fresh database at once: the second waits here, then finds the schema made.
        self.serialize("schema")
        version = self.schema_version()
        if version == 0:
            self._script(SCHEMA)
            self.execute("INSERT INTO digest_schema (version) VALUES (?)", (SCHEMA_BASE,))
            version = SCHEMA_BASE
        for number in range(version + 1, SCHEMA_VERSION + 1):
            self._script(MIGRATIONS[number])
            self.execute("UPDATE digest_schema SET version = ?", (number,))

    def _script(self, script: str) -> None:
        try:
            self._conn.execute(script.encode())  # several statements, no parameters
        except psycopg.Error as exc:
            self._fail(exc)

    def columns(self, table: str) -> list[str]:
        rows = self.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = ? ORDER BY ordinal_position",
            (table,),
        )
        return [str(r[0]) for r in rows]

    def tables(self) -> set[str]:
        rows = self.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            " AND table_type = 'BASE TABLE'"
        )
        return {str(r[0]) for r in rows}

    def after_copy(self) -> None:
        self.execute(
            "SELECT setval(pg_get_serial_sequence('subscribers', 'id'), COALESCE(MAX(id), 1), MAX(id) IS NOT NULL)"
            " FROM subscribers"
        )
        self.execute(
            "SELECT setval(pg_get_serial_sequence('status_changes', 'id'), COALESCE(MAX(id), 1), MAX(id) IS NOT NULL)"
            " FROM status_changes"
        )

    def close(self) -> None:
        self._conn.close()


def _session_options(busy_timeout: float) -> str:
    # lock_timeout: how long a statement waits for a row or advisory lock held by another transaction
    # (SQLite's busy timeout); 0 would mean forever in PostgreSQL, so at least 1 ms.
    return f"-c lock_timeout={max(1, int(busy_timeout * 1000))} {_keepalive_options()}"


def _application() -> str:
    return f"digest pid {os.getpid()}"


def _keepalive_options(idle: int = 30) -> str:
    # The server notices a vanished client (a host that lost power or its network) after about
    # idle + 3 * 10 seconds and ends its session, which releases the writer lock; a killed process closes its
    # socket, which releases the lock at once.
    return f"-c tcp_keepalives_idle={idle} -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3"


class PostgresBackend(Backend):
    """The state in one PostgreSQL database, shared by every host."""

    name = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        netloc = f"{parts.username}@{host}" if parts.username else host
        if parts.port:
            netloc += f":{parts.port}"
        self.where = urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def _connect(self, options: str, application: str) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(
                self.url,
                autocommit=True,
                options=options,
                application_name=application,
                connect_timeout=10,
                keepalives=1,
                keepalives_idle=30,
                keepalives_interval=10,
                keepalives_count=3,
            )
        except psycopg.Error as exc:
            raise StoreError(f"{self.where}: cannot open the state database: {exc}") from exc

    def connect(self, busy_timeout: float) -> Connection:
        return PostgresConnection(self._connect(_session_options(busy_timeout), _application()), self.where)

    def for_requests(self, size: int) -> Backend:
        return PooledPostgresBackend(self.url, size)

    def exists(self) -> bool:
        conn = self._connect(_keepalive_options(), _application())
        try:
            row = conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()
        except psycopg.Error as exc:
            raise StoreError(f"{self.where}: cannot read the state database: {exc}") from exc
        finally:
            conn.close()
        return bool(row and row[0])

    def backup(self, target: Path) -> int:
        # pg_dump is the tool for a consistent copy of a live PostgreSQL database; its URL is shown without the
        # password (give it through PGPASSWORD or ~/.pgpass).
        raise StoreError(
            f"the state is in PostgreSQL: back it up with pg_dump, e.g."
            f" pg_dump --format=custom --file={target} '{self.where}'"
            f" (restore into an empty database with pg_restore --dbname=URL {target})"
        )

    @contextmanager
    def writer_lock(self, timeout: float, what: str, name: str = "") -> Iterator[None]:
        label = f"digest {what} (pid {os.getpid()} on {socket.gethostname()})"[:63]
        conn = self._connect(_keepalive_options(), label)
        try:
            self._acquire(conn, timeout, f"{WRITER_LOCK_NAME}:{name}" if name else WRITER_LOCK_NAME)
            yield
        finally:
            conn.close()  # ending the session releases the lock (as a crash or a lost host does)

    def _acquire(self, conn: psycopg.Connection[Any], timeout: float, lock: str) -> None:
        deadline = time.monotonic() + timeout
        try:
            while not conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (lock,)).fetchone()[0]:  # type: ignore[index]
                if time.monotonic() >= deadline:
                    raise BusyError(
                        f"another digest process{self._holder(conn, lock)} is writing to {self.where}; "
                        f"waited {timeout:g}s, try again later"
                    )
                time.sleep(0.05)
        except psycopg.Error as exc:
            raise StoreError(f"{self.where}: cannot take the writer lock: {exc}") from exc

    @staticmethod
    def _holder(conn: psycopg.Connection[Any], lock: str) -> str:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted"
            " AND (l.classid::bigint << 32) | l.objid::bigint = hashtextextended(%s, 0) LIMIT 1",
            (lock,),
        ).fetchone()
        return f" ({row[0]})" if row and row[0] else ""

    def job_store_url(self, jobs_path: Path) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(("postgresql+psycopg", *parts[1:]))


assert SCHEMA_BASE + len(MIGRATIONS) == SCHEMA_VERSION, "every SQLite migration needs its PostgreSQL form"


class _PooledConnection(PostgresConnection):
    """A session borrowed from a pool: closing it gives it back (rolled back first if a transaction is open)."""

    def __init__(self, conn: psycopg.Connection[Any], where: str, pool: ConnectionPool[Any]) -> None:
        super().__init__(conn, where)
        self._pool = pool

    def close(self) -> None:
        self._pool.putconn(self._conn)


class PooledPostgresBackend(PostgresBackend):
    """PostgreSQL for `digest serve`: sessions come from a psycopg_pool pool (one per lock timeout), so a request
    does not pay a new connection (TCP, maybe TLS, authentication) to a database on another host."""

    def __init__(self, url: str, size: int) -> None:
        super().__init__(url)
        self.size = max(1, size)
        self._pools: dict[str, ConnectionPool[Any]] = {}
        self._guard = threading.Lock()

    def _pool(self, options: str) -> ConnectionPool[Any]:
        with self._guard:
            pool = self._pools.get(options)
            if pool is None:
                pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self.size,
                    kwargs={
                        "autocommit": True,
                        "options": options,
                        "application_name": _application(),
                        "connect_timeout": 10,
                        "keepalives": 1,
                        "keepalives_idle": 30,
                        "keepalives_interval": 10,
                        "keepalives_count": 3,
                    },
                    check=ConnectionPool.check_connection,  # a session the server dropped is replaced, not handed out
                    open=True,
                    name=f"digest {self.where}",
                )
                self._pools[options] = pool
            return pool

    def connect(self, busy_timeout: float) -> Connection:
        pool = self._pool(_session_options(busy_timeout))
        try:
            conn = pool.getconn(timeout=30)
        except (PoolTimeout, psycopg.Error) as exc:
            raise StoreError(f"{self.where}: cannot open the state database: {exc}") from exc
        return _PooledConnection(conn, self.where, pool)

    def for_requests(self, size: int) -> Backend:
        return self

    def close(self) -> None:
        """Close every pooled session (when the web app stops)."""
        with self._guard:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()
