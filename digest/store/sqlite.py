"""The SQLite backend: one file (WAL), `PRAGMA user_version` migrations, BEGIN IMMEDIATE write transactions and an
flock beside the file as the writer lock. Only what differs from PostgreSQL lives here."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from digest.errors import StateBusy, StoreConflict, StoreError
from digest.lock import lock_path_for, writer_lock
from digest.store.backend import SCHEMA_VERSION, Backend, Connection, Cursor

MIGRATIONS: tuple[str, ...] = (
    # 1: entries, issues, seed cache
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE entries (
        id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        line INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        data TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        revised TEXT
    );
    CREATE TABLE issues (
        number INTEGER PRIMARY KEY,
        published TEXT NOT NULL,
        slot TEXT UNIQUE,
        created TEXT NOT NULL
    );
    CREATE TABLE issue_entries (
        issue INTEGER NOT NULL REFERENCES issues(number),
        position INTEGER NOT NULL,
        entry_id TEXT NOT NULL UNIQUE REFERENCES entries(id),
        PRIMARY KEY (issue, position)
    );
    CREATE TABLE seed_files (
        path TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        scan BLOB NOT NULL
    );
    """,
    # 2: subscribers and the delivery ledger
    """
    CREATE TABLE subscribers (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL,
        email_key TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL DEFAULT '',
        active INTEGER NOT NULL DEFAULT 1,
        created TEXT NOT NULL,
        unsubscribed TEXT
    );
    CREATE TABLE deliveries (
        issue INTEGER NOT NULL REFERENCES issues(number),
        subscriber INTEGER NOT NULL REFERENCES subscribers(id),
        status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'deferred', 'unknown')),
        attempts INTEGER NOT NULL DEFAULT 0,
        detail TEXT NOT NULL DEFAULT '',
        message_id TEXT,
        updated TEXT NOT NULL,
        PRIMARY KEY (issue, subscriber)
    );
    CREATE INDEX deliveries_status ON deliveries (issue, status);
    """,
    # 3: incremental seed scanning
    """
    ALTER TABLE seed_files ADD COLUMN settled INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX entries_source ON entries (source);
    """,
    # 4: a subscriber's life cycle (status instead of a flag), consent record, per-subscription token nonce,
    #    soft-bounce streak, topics; bounced/complained ledger outcomes; a suppression list of address hashes
    """
    ALTER TABLE subscribers ADD COLUMN status TEXT NOT NULL DEFAULT 'active'
        CHECK (status IN ('pending', 'active', 'paused', 'unsubscribed', 'bounced', 'complained'));
    UPDATE subscribers SET status = CASE WHEN active = 1 THEN 'active' ELSE 'unsubscribed' END;
    ALTER TABLE subscribers DROP COLUMN active;
    ALTER TABLE subscribers ADD COLUMN status_changed TEXT;
    ALTER TABLE subscribers ADD COLUMN status_detail TEXT NOT NULL DEFAULT '';
    ALTER TABLE subscribers ADD COLUMN source TEXT NOT NULL DEFAULT 'cli'
        CHECK (source IN ('form', 'cli', 'import'));
    ALTER TABLE subscribers ADD COLUMN signup_ip TEXT;
    ALTER TABLE subscribers ADD COLUMN confirmed TEXT;
    ALTER TABLE subscribers ADD COLUMN token_nonce TEXT NOT NULL DEFAULT '';
    ALTER TABLE subscribers ADD COLUMN soft_bounces INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE subscribers ADD COLUMN topics TEXT NOT NULL DEFAULT '';
    UPDATE subscribers SET status_changed = COALESCE(unsubscribed, created), token_nonce = lower(hex(randomblob(8)));
    ALTER TABLE subscribers DROP COLUMN unsubscribed;
    CREATE INDEX subscribers_status ON subscribers (status);
    CREATE TABLE deliveries_v4 (
        issue INTEGER NOT NULL REFERENCES issues(number),
        subscriber INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
        status TEXT NOT NULL CHECK (status IN
            ('pending', 'sent', 'failed', 'deferred', 'unknown', 'bounced', 'complained')),
        attempts INTEGER NOT NULL DEFAULT 0,
        detail TEXT NOT NULL DEFAULT '',
        message_id TEXT,
        updated TEXT NOT NULL,
        PRIMARY KEY (issue, subscriber)
    );
    INSERT INTO deliveries_v4 SELECT issue, subscriber, status, attempts, detail, message_id, updated FROM deliveries;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_v4 RENAME TO deliveries;
    CREATE INDEX deliveries_status ON deliveries (issue, status);
    CREATE TABLE suppressions (
        email_hash TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        created TEXT NOT NULL
    );
    """,
    # 5: which published papers belong to which topic (derived from the topic rules at render time; `rebuild`
    #    derives it again), so a topic's pages and feeds are found without reading the whole archive
    """
    CREATE TABLE paper_topics (
        topic TEXT NOT NULL,
        issue INTEGER NOT NULL REFERENCES issues(number),
        position INTEGER NOT NULL,
        PRIMARY KEY (topic, issue, position)
    ) WITHOUT ROWID;
    CREATE INDEX paper_topics_issue ON paper_topics (issue);
    """,
    # 6 (bounces): how bad a failed delivery was for the address (hard/soft, from a refusal or a DSN), and every
    #   imported bounce/complaint report by its identity, so that importing one twice changes nothing
    """
    ALTER TABLE deliveries ADD COLUMN bounce TEXT CHECK (bounce IN ('hard', 'soft'));
    CREATE TABLE bounce_reports (
        key TEXT PRIMARY KEY,
        imported TEXT NOT NULL,
        outcome TEXT NOT NULL
    );
    """,
    # 7 (signup): events counted by the web app's rate limits (per client IP, per address hash), shared by every
    #    process serving the same state; rows older than the longest window are pruned as new ones come in
    """
    CREATE TABLE rate_events (
        bucket TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX rate_events_bucket ON rate_events (bucket, at);
    """,
    # 8 (backlog): the queue of waiting papers (seen, not published: their text is not stored yet) in seed order,
    #    so that the next issue is read from the head of it whatever the backlog and the archive
    """
    UPDATE entries SET data = '' WHERE NOT EXISTS (SELECT 1 FROM issue_entries ie WHERE ie.entry_id = entries.id);
    CREATE INDEX entries_waiting ON entries (source, line) WHERE data = '';
    """,
    # 9 (email topics): a 'skipped' ledger outcome, for a subscriber whose chosen topics have no paper in an issue
    #   (no mail; the row keeps them from being mailed that issue later). SQLite cannot change a CHECK in place.
    """
    CREATE TABLE deliveries_v9 (
        issue INTEGER NOT NULL REFERENCES issues(number),
        subscriber INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
        status TEXT NOT NULL CHECK (status IN
            ('pending', 'sent', 'failed', 'deferred', 'unknown', 'bounced', 'complained', 'skipped')),
        attempts INTEGER NOT NULL DEFAULT 0,
        detail TEXT NOT NULL DEFAULT '',
        message_id TEXT,
        updated TEXT NOT NULL,
        bounce TEXT CHECK (bounce IN ('hard', 'soft')),
        PRIMARY KEY (issue, subscriber)
    );
    INSERT INTO deliveries_v9 (issue, subscriber, status, attempts, detail, message_id, updated, bounce)
        SELECT issue, subscriber, status, attempts, detail, message_id, updated, bounce FROM deliveries;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_v9 RENAME TO deliveries;
    CREATE INDEX deliveries_status ON deliveries (issue, status);
    """,
    # 10: `seed_files.settled` (migration 3) has not been read since the waiting queue (8) replaced it
    """
    ALTER TABLE seed_files DROP COLUMN settled;
    """,
)


class SqliteConnection(Connection):
    """sqlite3 in autocommit mode; errors become StoreError."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._path = path

    def _fail(self, exc: sqlite3.Error) -> NoReturn:
        if isinstance(exc, sqlite3.IntegrityError):
            raise StoreConflict(f"{self._path}: {exc}") from exc
        if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise StateBusy(f"{self._path}: state is locked by another process: {exc}") from exc
        raise StoreError(f"{self._path}: state database error: {exc}{_what_to_do(self._path, exc)}") from exc

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        try:
            return self._conn.execute(sql, params)
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
        self._conn.execute("ROLLBACK")

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
