"""The state: every entry, issue, subscriber and delivery, in a SQLite file (the default) or a PostgreSQL
database that several hosts share.

backend.py is the interface every backend implements; store.py's `Store` holds every query, written once and
kept by domain in _entries.py, _issues.py, _subscribers.py and _ledger.py (plumbing in _base.py); sqlite.py and
postgresql.py hold only what differs (connecting, transactions, migrations, the writer lock); copy.py moves a
state from one backend to the other.
"""

from __future__ import annotations

from pathlib import Path

from digest.errors import SettingsError
from digest.store._issues import IssueSummary
from digest.store._subscribers import StatusChange, SubscriberRecord, email_hash, email_key, new_token_nonce
from digest.store.backend import SCHEMA_VERSION, TABLES, Backend
from digest.store.sqlite import SqliteBackend
from digest.store.store import Store

__all__ = [
    "SCHEMA_VERSION",
    "TABLES",
    "Backend",
    "IssueSummary",
    "StatusChange",
    "Store",
    "SubscriberRecord",
    "backend_for",
    "email_hash",
    "email_key",
    "is_postgresql_url",
    "new_token_nonce",
]


def is_postgresql_url(location: str) -> bool:
    """Whether a state location names a PostgreSQL database."""
    return location.startswith(("postgresql://", "postgres://"))


def backend_for(location: Path | str) -> Backend:
    """The backend of a state location: `postgresql://user@host:port/db`, `sqlite:///path`, or a file path."""
    if isinstance(location, str) and is_postgresql_url(location):
        from digest.store.postgresql import PostgresBackend  # noqa: PLC0415 (lazy: psycopg only when used)

        return PostgresBackend(location)

    text = str(location)
    if text.startswith("sqlite://"):
        if not text.startswith("sqlite:///"):
            raise SettingsError(f"state URL {text!r}: a SQLite URL is sqlite:///relative/path or sqlite:////abs/path")
        text = text[len("sqlite:///") :]
    elif "://" in text:
        raise SettingsError(f"state URL {text!r}: use postgresql://user@host:port/database, sqlite:///path or a path")
    return SqliteBackend(Path(text))
