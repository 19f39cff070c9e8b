"""`Store`: one session with the state, every query written once for both backends. No business rules.

Each domain keeps its queries in its own module, combined here into one class (as lemon24/reader's storage does):
_base.py (opening, migrations, transactions, meta), _entries.py (papers and the seed cache), _issues.py (issues
and the topic index), _subscribers.py (subscribers, suppressions, rate-limit events), _ledger.py (deliveries and
bounces). The SQL is what SQLite and PostgreSQL both accept (ON CONFLICT, no INSERT OR REPLACE, no boolean
arithmetic); the backend's connection (sqlite.py, postgresql.py) runs it and hands back rows read by column name.
"""

from __future__ import annotations

from digest.store._base import StoreBase
from digest.store._entries import EntriesMixin
from digest.store._issues import IssuesMixin
from digest.store._ledger import LedgerMixin
from digest.store._subscribers import SubscribersMixin


class Store(EntriesMixin, IssuesMixin, SubscribersMixin, LedgerMixin, StoreBase):
    """A session with the state (a SQLite file or a PostgreSQL database). Use `transaction()` for every write."""
