"""The SQLite backend: one file (WAL), `PRAGMA user_version` migrations, BEGIN IMMEDIATE write transactions and an
flock beside the file as the writer lock. Only what differs from PostgreSQL lives here."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from digest.errors import StateBusy, StoreConflict, StoreError
from digest.lock import lock_path_for, writer_lock
from digest.store.backend import PACKED_TABLES, SCHEMA_VERSION, Backend, Connection, Cursor, Packer
from digest.store.sqlite_schema import MIGRATIONS

__all__ = ["MIGRATIONS", "SqliteBackend", "SqliteConnection", "create_private", "pack_rows"]

_PACKED = "packed"  # the schema a packed bulk is attached as


def pack_rows(tables: Sequence[Sequence[Sequence[object]]]) -> bytes:
    """Rows of PACKED_TABLES as a serialized in-memory SQLite database, which `attach_packed` reads.

    Runs in a bulk import's worker processes: there the rows are bound one by one, in parallel, and the process
    that owns the transaction inserts them all with one INSERT ... SELECT, about 3x cheaper than executemany."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    try:
        db.execute("BEGIN")
        # Every table before any row: each bulk then has the same schema at the same root pages, which the
        # reading session's cached statements rely on (its schema cookie is the same from one bulk to the next).
        for table, columns in PACKED_TABLES:
            db.execute(f"CREATE TABLE {table} ({', '.join(columns)})")
        for (table, columns), rows in zip(PACKED_TABLES, tables, strict=True):
            db.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(columns))})", rows)
        db.execute("COMMIT")
        return db.serialize()
    finally:
        db.close()


class _Rows:
    """A sqlite3 cursor whose failures all become StoreError: SQLite reads a result row by row as it is asked for,
    so a later row can fail (a damaged page, an overflow) after `execute` returned."""

    __slots__ = ("_cursor", "_fail")

    def __init__(self, cursor: sqlite3.Cursor, fail: Callable[[sqlite3.Error], NoReturn]) -> None:
        self._cursor = cursor
        self._fail = fail

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def fetchone(self) -> Any:
        try:
            return self._cursor.fetchone()
        except sqlite3.Error as exc:
            self._fail(exc)

    def fetchall(self) -> list[Any]:
        try:
            return self._cursor.fetchall()
        except sqlite3.Error as exc:
            self._fail(exc)

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._cursor
        except sqlite3.Error as exc:
            self._fail(exc)


class SqliteConnection(Connection):
    """sqlite3 in autocommit mode, rows as sqlite3.Row; errors become StoreError."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._path = path
        self._attached = False

    def _fail(self, exc: sqlite3.Error) -> NoReturn:
        if isinstance(exc, sqlite3.IntegrityError):
            raise StoreConflict(f"{self._path}: {exc}") from exc
        if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise StateBusy(f"{self._path}: state is locked by another process: {exc}") from exc
        raise StoreError(f"{self._path}: state database error: {exc}{_what_to_do(self._path, exc)}") from exc

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        try:
            return _Rows(self._conn.execute(sql, params), self._fail)
        except sqlite3.Error as exc:
            self._fail(exc)

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        try:
            self._conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            self._fail(exc)

    def insert_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
        marks = ", ".join("?" * len(columns))
        self.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def snapshot(self) -> bytes:
        # sqlite3_serialize reads the pages through this session's pager: the open transaction is in the copy.
        data = bytearray(self._conn.serialize())
        data[18:20] = b"\x01\x01"  # a rollback journal, not WAL, in the header: an in-memory copy has no WAL
        return bytes(data)

    def packer(self) -> Packer:
        return pack_rows

    def attach_packed(self, packed: bytes) -> str:
        # An in-memory schema, attached once per session (ATTACH works inside a transaction, DETACH does not) and
        # replaced by each bulk; nothing of it is ever on disk, so a kill leaves nothing behind.
        try:
            if not self._attached:
                self._conn.execute(f"ATTACH DATABASE ':memory:' AS {_PACKED}")
                self._attached = True
            self._conn.deserialize(packed, name=_PACKED)
        except sqlite3.Error as exc:
            self._fail(exc)
        return _PACKED

    def begin(self) -> None:
        # IMMEDIATE: take the write lock now (waiting up to the busy timeout), not at the first write, so two
        # writers never both read and then fail to upgrade.
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StateBusy(f"{self._path}: state is locked by another process: {exc}") from exc

    def commit(self) -> None:
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"{self._path}: commit failed: {exc}") from exc

    def rollback(self) -> None:
        if not self._conn.in_transaction:
            return  # SQLite ended it already (it rolls back by itself after some errors, e.g. a full disk)
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            self._fail(exc)

    def serialize(self, key: str) -> None:
        pass  # BEGIN IMMEDIATE already made this transaction the only writer

    def schema_version(self) -> int:
        return int(self.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self, version: int) -> None:
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in script.split(";"):
                if statement.strip():
                    self.execute(statement)
            self.execute(f"PRAGMA user_version = {number}")

    def columns(self, table: str) -> list[str]:
        return [str(r[0]) for r in self.execute("SELECT name FROM pragma_table_info(?) ORDER BY cid", (table,))]

    def tables(self) -> set[str]:
        return {str(r[0]) for r in self.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def after_copy(self) -> None:
        pass  # an INTEGER PRIMARY KEY continues after the largest id by itself

    def close(self) -> None:
        self._conn.close()


# SQLite's primary result codes that mean "this user may not write here" (extended codes add bits above 0xff).
_NOT_WRITABLE = {sqlite3.SQLITE_PERM, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN}


def _what_to_do(path: Path, exc: Exception) -> str:
    """The advice for an error that comes from permissions: SQLite writes `<name>-wal`, `<name>-shm` and the lock
    file beside the state, so its folder must be writable too."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, PermissionError) or (isinstance(code, int) and code & 0xFF in _NOT_WRITABLE):
        folder = path.parent if str(path.parent) != "." else Path.cwd()
        return (
            f"; the state folder {folder}/ and the files in it must be writable by this user"
            " (check the owner, mode and read-only mounts, or set state_path to a writable place)"
        )
    return ""


def create_private(path: Path) -> None:
    """Create the state file (and its folder) for its owner alone, whatever the umask: folder 0700, file 0600.
    SQLite gives the -wal and -shm files the database file's mode. Existing ones are left as they are."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # an empty file is an empty database


class SqliteBackend(Backend):
    """The state in one SQLite file."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)

    def connect(self, busy_timeout: float) -> Connection:
        try:
            create_private(self.path)
            conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
            conn.row_factory = sqlite3.Row  # the shared queries read rows by column name
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            # 32 MB of page cache instead of 2 MB: a first import of 100,000 papers inserts into three indexes
            # of the entries table, and with the default cache every insert reads back evicted index pages.
            conn.execute("PRAGMA cache_size=-32768")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"{self.path}: cannot open the state database: {exc}{_what_to_do(self.path, exc)}"
            ) from exc
        return SqliteConnection(conn, self.path)

    def open_snapshot(self, data: bytes) -> Connection:
        conn = sqlite3.connect(":memory:", isolation_level=None)
        try:
            conn.deserialize(data)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"{self.path}: cannot open a copy of the state: {exc}") from exc
        conn.row_factory = sqlite3.Row
        return SqliteConnection(conn, self.path)

    @contextlib.contextmanager
    def writer_lock(self, timeout: float, what: str, name: str = "") -> Iterator[None]:
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(writer_lock(self.path, timeout, what, name))
            except OSError as exc:
                lock = lock_path_for(self.path, name)
                raise StoreError(f"{lock}: cannot take the writer lock: {exc}{_what_to_do(self.path, exc)}") from exc
            yield

    def job_store_url(self, jobs_path: Path) -> str:
        return f"sqlite:///{jobs_path.resolve()}"

    def exists(self) -> bool:
        return self.path.is_file()

    def backup(self, target: Path) -> int:
        # SQLite's online backup API copies one consistent snapshot (a read transaction: in WAL mode it waits
        # for no writer and no writer waits for it), so `digest run` and `serve` go on meanwhile. The copy is
        # made beside the target under a temp name (mode 0600: it holds every subscriber's address), checked,
        # made durable, and only then renamed into place.
        if not self.exists():
            raise StoreError(f"no state yet at {self.path}: nothing to back up")
        if target.exists() and target.resolve() == self.path.resolve():
            raise StoreError(f"{target}: that is the state itself; back it up into another file")
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        except OSError as exc:
            raise StoreError(f"{target}: cannot write the backup: {exc}") from exc
        os.close(fd)
        try:
            source = sqlite3.connect(self.path, timeout=60.0)
            try:
                copy = sqlite3.connect(tmp, isolation_level=None)
                try:
                    source.backup(copy)
                    copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
                    problem = copy.execute("PRAGMA quick_check").fetchone()[0]
                finally:
                    copy.close()
            finally:
                source.close()
            if problem != "ok":
                raise StoreError(f"{target}: the copy of {self.path} fails its check ({problem}); nothing written")
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, target)
            folder = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot back up the state: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"{target}: cannot write the backup: {exc}") from exc
        finally:
            Path(tmp).unlink(missing_ok=True)
        return target.stat().st_size

    @property
    def journals_optouts(self) -> bool:
        return True


assert len(MIGRATIONS) == SCHEMA_VERSION, "a new migration also raises SCHEMA_VERSION (and needs its PostgreSQL form)"
