"""Papers: every entry seen in the seeds (where, content hash), the text of the published ones, the queue of
waiting ones in seed order, and the seed-file parse cache.

An entry's text is stored only when it is published (`record_issue`); until then its `data` is '' and it sits
in the waiting queue (a partial index on `data = ''`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from digest.model import CachedFile, Entry, EntryRef, KnownEntry, Located, PriorEntry
from digest.store.backend import Connection, Packer

_PUBLISHED = "EXISTS (SELECT 1 FROM issue_entries ie WHERE ie.entry_id = entries.id)"
#: A seed-file cache row replaces the one of the same path (one row per file, whoever writes it).
_CACHE_UPSERT = (
    " ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,"
    " sha256 = excluded.sha256, scan = excluded.scan"
)

# An entry's text as one string: fields separated by \x1e, abstract paragraphs by \x1f. Both are illegal in
# XML and removed from seed text, so the format is unambiguous (and several times cheaper than JSON).
_FIELD, _PARAGRAPH = "\x1e", "\x1f"

#: The columns an entry is read from (`entry_reader`).
ENTRY_COLUMNS = "e.id, e.source, e.line, e.data, e.revised"


def _entry_data(entry: Entry) -> str:
    fields = [entry.title_en, entry.title_zh, entry.url, _PARAGRAPH.join(entry.abstract)]
    if entry.topics:  # a fifth field only when the seed has a Topics: line (older rows have four)
        fields.append(",".join(entry.topics))
    return _FIELD.join(fields)


def entry_reader(columns: list[str]) -> Callable[[Any], Entry]:
    """What reads an entry from a row of a result with these column names (holding ENTRY_COLUMNS). The names are
    looked up once per result, not once per row: the archive and the feeds read thousands of entries."""
    at_id, at_source, at_line, at_data, at_revised = (
        columns.index(name) for name in ("id", "source", "line", "data", "revised")
    )

    def read(row: Any) -> Entry:
        title_en, title_zh, url, abstract, *topics = row[at_data].split(_FIELD)
        revised = row[at_revised]
        return Entry(
            id=row[at_id],
            title_en=title_en,
            title_zh=title_zh,
            url=url,
            abstract=tuple(abstract.split(_PARAGRAPH)) if abstract else (),
            source=row[at_source],
            line=row[at_line],
            revised=datetime.fromisoformat(revised) if revised else None,
            topics=tuple(topics[0].split(",")) if topics else (),
        )

    return read


class EntriesMixin:
    """The queries about entries and the seed cache."""

    _conn: Connection

    def published_entries(self) -> dict[str, KnownEntry]:
        """Every published entry with its content hash and issue. Entries seen but unpublished are left out:
        for choosing the next issue they are the same as new ones (and a bulk import has 100,000 of them)."""
        rows = self._conn.execute(
            "SELECT e.id, e.content_hash, ie.issue FROM issue_entries ie JOIN entries e ON e.id = ie.entry_id"
        )
        return {row["id"]: KnownEntry(row["content_hash"], row["issue"]) for row in rows}

    def record_seen(self, entries: Iterable[Located], now: datetime) -> None:
        """Remember entries (id, where, content hash), not their text: a bulk import of 100,000 papers would
        otherwise write 150 MB the next issues never read. The text is stored when a paper is published."""
        seen = now.isoformat()
        self._conn.executemany(
            "INSERT INTO entries (id, source, line, content_hash, data, first_seen) VALUES (?, ?, ?, ?, '', ?)"
            # Where a paper was seen always follows the seeds; its published hash changes only through
            # record_revisions, which also stamps `revised`.
            " ON CONFLICT(id) DO UPDATE SET source = excluded.source, line = excluded.line,"
            f" content_hash = CASE WHEN {_PUBLISHED} THEN entries.content_hash ELSE excluded.content_hash END"
            " WHERE entries.content_hash != excluded.content_hash OR entries.source != excluded.source"
            " OR entries.line != excluded.line",
            ((e.id, e.source, e.line, e.content_hash, seen) for e in entries),
        )

    def record_new(self, entries: Iterable[Located], now: datetime) -> None:
        """`record_seen` for papers the state has never seen (a first import): a plain INSERT, ~15% cheaper."""
        seen = now.isoformat()
        self._conn.insert_rows(
            "entries",
            ("id", "source", "line", "content_hash", "data", "first_seen"),
            ((e.id, e.source, e.line, e.content_hash, "", seen) for e in entries),
        )

    @property
    def packer(self) -> Packer | None:
        """What packs scanned seed files in worker processes for `record_packed` (None: this backend takes tuples)."""
        return self._conn.packer()

    def record_packed(self, packed: bytes, rows: int, now: datetime) -> list[tuple[str, int, EntryRef]]:
        """`record_new` and `cache_scans` for a bulk of `rows` papers packed by `packer`, on a state that holds no
        paper yet.

        Each paper's first row in the bulk's order is recorded, unless an earlier bulk had it. Returns the rows
        that were not recorded, as (source, line, the paper's first occurrence), in the bulk's order: the
        duplicates across files, found only when the number inserted says there are some (rarely)."""
        schema = self._conn.attach_packed(packed)
        # WHERE true: SQLite's documented way to keep the upsert's ON from being read as a join constraint.
        inserted = self._conn.execute(
            "INSERT INTO entries (id, source, line, content_hash, data, first_seen)"
            f" SELECT id, source, line, content_hash, '', ? FROM {schema}.entries WHERE true ORDER BY rowid"
            " ON CONFLICT (id) DO NOTHING",
            (now.isoformat(),),
        ).rowcount
        self._conn.execute(
            "INSERT INTO seed_files (path, size, mtime_ns, sha256, scan)"
            f" SELECT path, size, mtime_ns, sha256, scan FROM {schema}.seed_files WHERE true" + _CACHE_UPSERT
        )
        if inserted == rows:
            return []
        repeats = self._conn.execute(
            "SELECT p.source AS at_source, p.line AS at_line, e.id, e.content_hash, e.source, e.line"
            f" FROM {schema}.entries p JOIN entries e ON e.id = p.id"
            " WHERE e.source != p.source OR e.line != p.line ORDER BY p.rowid"
        )
        return [
            (r["at_source"], int(r["at_line"]), EntryRef(r["id"], r["content_hash"], r["source"], int(r["line"])))
            for r in repeats
        ]

    def load_entries(self, ids: Sequence[str]) -> dict[str, Entry]:
        """The recorded text of these entries, by id (absent: never seen, or not published yet)."""
        found: dict[str, Entry] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT {ENTRY_COLUMNS} FROM entries e WHERE e.id IN ({marks}) AND e.data != ''", chunk
            )
            read = None
            for row in rows:
                read = read or entry_reader(row.keys())
                entry = read(row)
                found[entry.id] = entry
        return found

    def record_revisions(self, entries: Iterable[Entry], now: datetime) -> None:
        """Store corrected text of published entries and mark when it changed."""
        self._conn.executemany(
            "UPDATE entries SET content_hash = ?, data = ?, source = ?, line = ?, revised = ? WHERE id = ?",
            ((e.content_hash, _entry_data(e), e.source, e.line, now.isoformat(), e.id) for e in entries),
        )

    def unpublished_count(self) -> int:
        """Entries seen but not yet in any issue."""
        row = self._conn.execute(
            "SELECT COUNT(*) AS n FROM entries e"
            " WHERE NOT EXISTS (SELECT 1 FROM issue_entries ie WHERE ie.entry_id = e.id)"
        ).fetchone()
        return int(row["n"])

    def waiting_entries(self, limit: int) -> list[EntryRef]:
        """The first `limit` papers seen but not published, in seed order (file name, then line): the head of the
        queue, read through its partial index without touching the archive or the rest of the backlog."""
        rows = self._conn.execute(
            "SELECT id, content_hash, source, line FROM entries WHERE data = '' ORDER BY source, line LIMIT ?",
            (limit,),
        )
        return [EntryRef(r["id"], r["content_hash"], r["source"], int(r["line"])) for r in rows]

    def waiting_count(self) -> int:
        """How many papers wait (counted on the queue's index: no row is read)."""
        return int(self._conn.execute("SELECT COUNT(*) AS n FROM entries WHERE data = ''").fetchone()["n"])

    def has_entries(self) -> bool:
        """Whether any paper was ever recorded (a first import has nothing to reconcile)."""
        return bool(self._conn.execute("SELECT EXISTS (SELECT 1 FROM entries) AS found").fetchone()["found"])

    def present_entry_ids(self) -> set[str]:
        """Ids of the recorded papers taken to be in the seeds (those no longer there have an empty source)."""
        return {r["id"] for r in self._conn.execute("SELECT id FROM entries WHERE source != ''")}

    def forget_absent(self, ids: Iterable[str]) -> None:
        """Papers no longer in any seed file: a waiting one is forgotten (it is new if it comes back); a published
        one stays, its source emptied, so that a repeat of it in a new file counts as its first occurrence."""
        rows = [(i,) for i in ids]
        self._conn.executemany("DELETE FROM entries WHERE id = ? AND data = ''", rows)
        self._conn.executemany("UPDATE entries SET source = '' WHERE id = ?", rows)

    def prior_entries(self, ids: Sequence[str]) -> dict[str, PriorEntry]:
        """What the state knows of these paper ids: hash, issue, recorded first occurrence."""
        found: dict[str, PriorEntry] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            rows = self._conn.execute(
                "SELECT e.id, e.content_hash, ie.issue, e.source, e.line FROM entries e"
                f" LEFT JOIN issue_entries ie ON ie.entry_id = e.id WHERE e.id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for r in rows:
                found[r["id"]] = PriorEntry(r["content_hash"], r["issue"], r["source"], r["line"])
        return found

    def entry_ids_from(self, sources: Sequence[str]) -> set[str]:
        """Ids of the entries whose recorded first occurrence is in one of these seed files."""
        found: set[str] = set()
        for start in range(0, len(sources), 500):
            chunk = list(sources[start : start + 500])
            rows = self._conn.execute(f"SELECT id FROM entries WHERE source IN ({','.join('?' * len(chunk))})", chunk)
            found.update(r["id"] for r in rows)
        return found

    # --- the seed-file parse cache -------------------------------------------------------------

    def cached_files(self, *, with_scans: bool) -> dict[str, CachedFile]:
        """Every cached seed file; the scans themselves only when asked (they are the bulk of the table)."""
        if with_scans:
            rows = self._conn.execute("SELECT path, size, mtime_ns, sha256, scan FROM seed_files")
            return {
                r["path"]: CachedFile(int(r["size"]), int(r["mtime_ns"]), str(r["sha256"]), bytes(r["scan"]))
                for r in rows
            }
        rows = self._conn.execute("SELECT path, size, mtime_ns FROM seed_files")
        return {r["path"]: CachedFile(int(r["size"]), int(r["mtime_ns"])) for r in rows}

    def cache_scans(self, rows: Iterable[tuple[str, int, int, str, bytes]]) -> None:
        """Remember parsed seed files so unchanged files are not parsed again."""
        self._conn.executemany(
            "INSERT INTO seed_files (path, size, mtime_ns, sha256, scan) VALUES (?, ?, ?, ?, ?)" + _CACHE_UPSERT,
            rows,
        )

    def forget_scans(self, paths: Iterable[str]) -> None:
        """Drop cache rows of seed files that no longer exist."""
        self._conn.executemany("DELETE FROM seed_files WHERE path = ?", ((p,) for p in paths))
