"""What every state backend provides, and nothing more: a connection that runs the shared queries, transactions,
the schema's migrations, a writer lock and a place for the scheduler's jobs.

The queries themselves (store.py and its per-domain modules) are written once, in the SQL that SQLite and PostgreSQL
both accept, with `?` placeholders, and read rows by column name; a backend's connection adapter translates what its
driver needs, hands out rows that read by name and by position (sqlite3.Row on both) and turns driver errors into
`StoreError`. sqlite.py and postgresql.py hold only what truly differs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

#: The schema version this digest writes. Both backends reach it: SQLite through its numbered migrations from 1,
#: PostgreSQL from its consolidated schema (which is version 7) and the same numbered steps after it.
SCHEMA_VERSION = 12

#: Every table of the state, parents before children (the order a copy inserts them), with its primary key.
TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("meta", ("key",)),
    ("entries", ("id",)),
    ("issues", ("number",)),
    ("issue_entries", ("issue", "position")),
    ("seed_files", ("path",)),
    ("subscribers", ("id",)),
    ("status_changes", ("id",)),
    ("deliveries", ("issue", "subscriber")),
    ("suppressions", ("email_hash",)),
    ("paper_topics", ("topic", "issue", "position")),
    ("bounce_reports", ("key",)),
    ("rate_events", ("bucket", "at")),
)

#: The tables of a packed bulk of scanned seed files (see `Connection.packer`), with their columns, in the order
#: the packer takes their rows: every file's entries (first occurrences within the file, in seed order) and its
#: parse-cache row.
PACKED_TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("entries", ("id", "content_hash", "source", "line")),
    ("seed_files", ("path", "size", "mtime_ns", "sha256", "scan")),
)
#: Packs rows of PACKED_TABLES (one sequence of rows per table) into bytes, in a worker process.
Packer = Callable[[Sequence[Sequence[Sequence[object]]]], bytes]


class Cursor(Protocol):
    """What the queries read from a statement: rows and how many rows a write changed. A row reads by column name
    (`row["id"]`, what the queries do) and by position (`row[0]`, what whole-table copies do), like sqlite3.Row."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(ABC):
    """One session with the state database, in autocommit mode outside `begin()` ... `commit()`."""

    def packer(self) -> Packer | None:
        """A module-level function (it is pickled to worker processes) that packs rows for `attach_packed`, or
        None when this backend takes rows only as Python tuples. A bulk import's workers pack what they parsed,
        so that the database reads it in one statement instead of binding 100,000 rows one by one here."""
        return None

    def snapshot(self) -> bytes | None:
        """This session's view of the database, its open transaction included, as bytes that
        `Backend.open_snapshot` opens in another process; None when this backend cannot copy itself so."""
        return None

    def attach_packed(self, packed: bytes) -> str:
        """Make a packed bulk (see `packer`) readable as `<schema>.<table>` until the next one; returns the schema."""
        raise NotImplementedError(f"{type(self).__name__} takes no packed rows")

    @abstractmethod
    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        """Run one statement written with `?` placeholders."""

    @abstractmethod
    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        """Run one statement for every row."""

    @abstractmethod
    def insert_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
        """Insert many new rows at once (SQLite: executemany; PostgreSQL: COPY, several times faster)."""

    @abstractmethod
    def begin(self) -> None:
        """Start a write transaction (raises StoreError when the state is locked for longer than the wait)."""

    @abstractmethod
    def commit(self) -> None:
        """Commit the transaction."""

    @abstractmethod
    def rollback(self) -> None:
        """Roll the transaction back."""

    @abstractmethod
    def serialize(self, key: str) -> None:
        """Inside a transaction: wait until no other transaction holds `key`, then hold it until the end.

        For decisions that read, then write (a rate limit's count, a signup's existing row): SQLite's write
        transactions are serial already, PostgreSQL takes a transaction-level advisory lock on the key."""

    @abstractmethod
    def schema_version(self) -> int:
        """The version of the schema in this database (0: empty)."""

    @abstractmethod
    def migrate(self, version: int) -> None:
        """Inside a transaction: bring the schema from `version` to SCHEMA_VERSION."""

    @abstractmethod
    def columns(self, table: str) -> list[str]:
        """The columns of a table, in their stored order."""

    @abstractmethod
    def tables(self) -> set[str]:
        """Every table in the database (including ones digest did not make)."""

    @abstractmethod
    def after_copy(self) -> None:
        """After rows were copied in with their ids: let the database continue numbering after them."""

    @abstractmethod
    def close(self) -> None:
        """Close the session (an open transaction is rolled back)."""


class Backend(ABC):
    """Where the state lives: a SQLite file or a PostgreSQL database."""

    name: str
    #: The location as shown in messages (never a password).
    where: str

    @abstractmethod
    def connect(self, busy_timeout: float) -> Connection:
        """A new session; `busy_timeout` is how long a statement waits for a lock held by another writer."""

    def open_snapshot(self, data: bytes) -> Connection:
        """A private, in-memory session on a copy made by `Connection.snapshot` (whatever it writes stays there)."""
        raise NotImplementedError(f"{type(self).__name__} makes no snapshots")

    @abstractmethod
    def writer_lock(self, timeout: float, what: str, name: str = "") -> AbstractContextManager[None]:
        """Hold the writer lock (one render/send/run at a time on this state), waiting up to `timeout` seconds;
        raises BusyError. The lock dies with the process (and with its host). `name`: another lock of the same
        kind, independent of the writer lock (e.g. "bounces": one bounce import at a time)."""

    @abstractmethod
    def job_store_url(self, jobs_path: Path) -> str:
        """The SQLAlchemy URL of the scheduler's job store."""

    @abstractmethod
    def exists(self) -> bool:
        """Whether a state is there yet (without creating one: read-only commands ask first)."""

    @abstractmethod
    def backup(self, target: Path) -> int:
        """Copy the whole state, consistently and while others use it, into the file `target` (atomically, mode
        0600); returns its size in bytes. StoreError where the backend has its own tools for that."""

    @property
    def journals_optouts(self) -> bool:
        """Whether the web app journals an unsubscribe when the state is busy (SQLite: one writer at a time)."""
        return False

    def for_requests(self, size: int) -> Backend:
        """This backend as a long-lived web app uses it: sessions may be reused, at most `size` at a time.
        The default opens one per request (a SQLite session is a file open)."""
        return self

    def close(self) -> None:  # noqa: B027 - a hook with nothing to do for most backends, not an abstract method
        """Release what the backend keeps between sessions (pooled connections); nothing by default."""
