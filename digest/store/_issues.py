"""Issues: their numbers (never reused), schedule slots and entries in order, and the topic index derived from
them (which published paper belongs to which topic, rebuilt from the issues and the topic rules).

`issue_entries.entry_id` is UNIQUE, so the database itself refuses to publish a paper twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from digest.errors import StoreConflict, StoreError
from digest.model import Entry, Issue
from digest.store._entries import ENTRY_COLUMNS, _entry_data, entry_reader
from digest.store.backend import Connection


@dataclass(frozen=True)
class IssueSummary:
    """An issue's number, time and size, without loading its entries."""

    number: int
    published: datetime
    entry_count: int
    slot: str | None


class IssuesMixin:
    """The queries about issues and the topic index."""

    _conn: Connection

    def next_issue_number(self) -> int:
        """One more than the highest number ever used: numbers are never reused."""
        row = self._conn.execute("SELECT COALESCE(MAX(number), 0) AS n FROM issues").fetchone()
        return int(row["n"]) + 1

    def record_issue(self, issue: Issue, now: datetime) -> None:
        """Record an issue and which entry went into it, at which position."""
        try:
            self._conn.execute(
                "INSERT INTO issues (number, published, slot, created) VALUES (?, ?, ?, ?)",
                (issue.number, issue.published.isoformat(), issue.slot, now.isoformat()),
            )
            self._conn.executemany(
                "INSERT INTO issue_entries (issue, position, entry_id) VALUES (?, ?, ?)",
                ((issue.number, pos, e.id) for pos, e in enumerate(issue.entries)),
            )
            self._conn.executemany(
                "UPDATE entries SET data = ?, content_hash = ?, source = ?, line = ? WHERE id = ?",
                ((_entry_data(e), e.content_hash, e.source, e.line, e.id) for e in issue.entries),
            )
        except StoreConflict as exc:
            raise StoreConflict(f"issue {issue.number} conflicts with the recorded state: {exc}") from exc

    def issue_for_slot(self, slot: str) -> int | None:
        """The issue already published for a schedule slot, if any."""
        row = self._conn.execute("SELECT number FROM issues WHERE slot = ?", (slot,)).fetchone()
        return int(row["number"]) if row else None

    def latest_slot_issue(self) -> int | None:
        """The newest issue published for a schedule slot (by `digest run`), or None."""
        row = self._conn.execute("SELECT MAX(number) AS n FROM issues WHERE slot IS NOT NULL").fetchone()
        return int(row["n"]) if row["n"] is not None else None

    def issue_count(self) -> int:
        """How many issues exist."""
        return int(self._conn.execute("SELECT COUNT(*) AS n FROM issues").fetchone()["n"])

    def issue_summaries(self, numbers: Sequence[int] | None = None) -> list[IssueSummary]:
        """Summaries of the given issues (all if None), newest first."""
        sql = (
            "SELECT i.number, i.published, i.slot, COUNT(ie.entry_id) AS entry_count FROM issues i"
            " LEFT JOIN issue_entries ie ON ie.issue = i.number"
        )
        params: list[int] = []
        if numbers is not None and not numbers:
            return []  # PostgreSQL refuses `IN ()` (digest status before the first issue)
        if numbers is not None:
            sql += f" WHERE i.number IN ({','.join('?' * len(numbers))})"
            params = list(numbers)
        sql += " GROUP BY i.number ORDER BY i.number DESC"
        return [
            IssueSummary(r["number"], datetime.fromisoformat(r["published"]), r["entry_count"], r["slot"])
            for r in self._conn.execute(sql, params)
        ]

    def latest_issue_number(self) -> int | None:
        """The newest issue's number, or None before the first issue."""
        row = self._conn.execute("SELECT MAX(number) AS n FROM issues").fetchone()
        return int(row["n"]) if row["n"] is not None else None

    def issue_numbers(self) -> list[int]:
        """Every issue number, oldest first."""
        return [int(r["number"]) for r in self._conn.execute("SELECT number FROM issues ORDER BY number")]

    def newest_issue_numbers_for_items(self, max_items: int) -> list[int]:
        """The newest issues that together hold at least `max_items` entries (what the feeds need)."""
        numbers: list[int] = []
        total = 0
        rows = self._conn.execute("SELECT issue, COUNT(*) AS n FROM issue_entries GROUP BY issue ORDER BY issue DESC")
        for r in rows:
            if total >= max_items:
                break
            numbers.append(int(r["issue"]))
            total += int(r["n"])
        return numbers

    def load_issues(self, numbers: Sequence[int]) -> list[Issue]:
        """Full issues (entries in order, with their current text), in the order of `numbers`."""
        if not numbers:
            return []
        marks = ",".join("?" * len(numbers))
        heads = {
            int(r["number"]): r
            for r in self._conn.execute(
                f"SELECT number, published, slot FROM issues WHERE number IN ({marks})", list(numbers)
            )
        }
        entries: dict[int, list[Entry]] = {n: [] for n in heads}
        rows = self._conn.execute(
            f"SELECT ie.issue, {ENTRY_COLUMNS} FROM issue_entries ie"
            f" JOIN entries e ON e.id = ie.entry_id WHERE ie.issue IN ({marks})"
            " ORDER BY ie.issue, ie.position",
            list(numbers),
        )
        read = None
        for row in rows:
            read = read or entry_reader(row.keys())
            entries[int(row["issue"])].append(read(row))
        missing = [n for n in numbers if n not in heads]
        if missing:
            raise StoreError(f"no such issue: {', '.join(map(str, missing))}")
        return [
            Issue(
                number=n,
                published=datetime.fromisoformat(heads[n]["published"]),
                entries=tuple(entries[n]),
                slot=heads[n]["slot"],
            )
            for n in numbers
        ]

    def issues_of_entries(self, entry_ids: Iterable[str]) -> set[int]:
        """The issues that contain any of these entries."""
        ids = list(entry_ids)
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        rows = self._conn.execute(f"SELECT DISTINCT issue FROM issue_entries WHERE entry_id IN ({marks})", ids)
        return {int(r["issue"]) for r in rows}

    # --- topics (a derived index: rebuilt from the issues and the topic rules) ----------------------------

    def set_paper_topics(self, issue: int, rows: Iterable[tuple[str, int]]) -> set[str]:
        """Replace issue `issue`'s (topic, position) rows; returns the topics it had before and has now."""
        before = {
            r["topic"] for r in self._conn.execute("SELECT DISTINCT topic FROM paper_topics WHERE issue = ?", (issue,))
        }
        self._conn.execute("DELETE FROM paper_topics WHERE issue = ?", (issue,))
        fresh = list(rows)
        self._conn.executemany(
            "INSERT INTO paper_topics (topic, issue, position) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [(topic, issue, position) for topic, position in fresh],
        )
        return before | {topic for topic, _ in fresh}

    def clear_paper_topics(self) -> None:
        """Forget every topic row (before `rebuild` derives them again)."""
        self._conn.execute("DELETE FROM paper_topics")

    def topic_paper_count(self, topic: str) -> int:
        """How many published papers `topic` has."""
        row = self._conn.execute("SELECT COUNT(*) AS n FROM paper_topics WHERE topic = ?", (topic,)).fetchone()
        return int(row["n"])

    def newest_topic_papers(self, topic: str, limit: int) -> list[tuple[int, int]]:
        """The newest `limit` papers of `topic` as (issue, position), newest first."""
        rows = self._conn.execute(
            "SELECT issue, position FROM paper_topics WHERE topic = ? ORDER BY issue DESC, position DESC LIMIT ?",
            (topic, limit),
        )
        return [(int(r["issue"]), int(r["position"])) for r in rows]

    def topic_papers(self, topic: str) -> list[tuple[int, int]]:
        """Every paper of `topic` as (issue, position), oldest first (what `rebuild` paginates)."""
        rows = self._conn.execute(
            "SELECT issue, position FROM paper_topics WHERE topic = ? ORDER BY issue, position", (topic,)
        )
        return [(int(r["issue"]), int(r["position"])) for r in rows]

    def topic_papers_before(self, topic: str, issue: int) -> int:
        """How many of `topic`'s papers issues before `issue` hold (the rank of its first paper there, minus one)."""
        row = self._conn.execute(
            "SELECT COUNT(*) AS n FROM paper_topics WHERE topic = ? AND issue < ?", (topic, issue)
        ).fetchone()
        return int(row["n"])

    def topic_papers_from(self, topic: str, skip: int, limit: int) -> list[tuple[int, int]]:
        """`limit` papers of `topic` after the oldest `skip`, as (issue, position), oldest first (one page)."""
        rows = self._conn.execute(
            "SELECT issue, position FROM paper_topics WHERE topic = ? ORDER BY issue, position LIMIT ? OFFSET ?",
            (topic, limit, skip),
        )
        return [(int(r["issue"]), int(r["position"])) for r in rows]

    def topics_in_use(self) -> set[str]:
        """Every topic that has at least one paper."""
        return {r["topic"] for r in self._conn.execute("SELECT DISTINCT topic FROM paper_topics")}
