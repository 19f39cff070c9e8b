"""The seed catalog: every entry in the seeds folder, in publication order, re-reading only changed files.

Parsing 100,000 entries takes about a second; a weekly run should cost what the new week costs. So each seed
file's light scan (ids, content hashes, lines, problems) is cached in the state with the file's size, mtime and
SHA-256. A file whose size and mtime are unchanged is not read; one whose bytes hash the same is not parsed.
Only files parsed in this run contribute full `Entry` objects; the publisher loads the text of older unpublished
entries from the state, where it was recorded when their file was parsed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from digest.errors import DigestError
from digest.model import Entry, EntryRef, Located, Problem, ProblemKind
from digest.seeds import deduplicate, display_path, parse_seed, seed_files


@dataclass(frozen=True)
class CachedFile:
    """What the state remembers of one seed file."""

    size: int
    mtime_ns: int
    sha256: str
    scan: bytes


@dataclass(frozen=True)
class FileScan:
    """One file's entries (refs, before cross-file de-duplication) and its own problems."""

    refs: tuple[EntryRef, ...]
    problems: tuple[Problem, ...]

    def encode(self) -> bytes:
        """Compact JSON for the cache: refs as [id, hash, line], problems as [line, message, kind, id]."""
        return json.dumps(
            {
                "refs": [[r.id, r.content_hash, r.line] for r in self.refs],
                "problems": [[p.line, p.message, p.kind.value, p.entry_id] for p in self.problems],
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")

    @classmethod
    def decode(cls, source: str, data: bytes) -> FileScan:
        """Rebuild a cached scan of the file shown as `source`."""
        raw = json.loads(data)
        return cls(
            refs=tuple(EntryRef(i, h, source, line) for i, h, line in raw["refs"]),
            problems=tuple(
                Problem(source, line, msg, ProblemKind(kind), eid) for line, msg, kind, eid in raw["problems"]
            ),
        )


@dataclass
class Catalog:
    """All seed entries in publication order (first occurrence of each paper) and every problem found."""

    refs: list[EntryRef] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    parsed: dict[str, Entry] = field(default_factory=dict)  # entries of files parsed in this run, by id
    cache_updates: list[tuple[str, int, int, str, bytes]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    files: int = 0

    @property
    def unchanged(self) -> bool:
        """True when no seed file was added, removed or changed since the cached scans."""
        return not self.cache_updates and not self.removed

    def reparse(self, sources: set[str], folder: Path) -> None:
        """Parse these files fully (their cached text in the state is stale) and add their entries."""
        for path in seed_files(folder):
            source = display_path(path, Path(os.getcwd()))
            if source in sources:
                for entry in parse_seed(_read(path), source).entries:
                    self.parsed.setdefault(entry.id, entry)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DigestError(f"cannot read seed file {path}: {exc.strerror or exc}") from exc


def stat_seed_files(folder: Path) -> dict[str, tuple[int, int]]:
    """source -> (size, mtime_ns) of every seed file: compared with the cache to skip a no-op run cheaply."""
    root = Path(os.getcwd())
    result = {}
    for path in seed_files(folder):
        stat = path.stat()
        result[display_path(path, root)] = (stat.st_size, stat.st_mtime_ns)
    return result


def build_catalog(folder: Path, cached: Mapping[str, CachedFile]) -> Catalog:
    """Scan the seeds folder, parsing only files that changed since their cached scan."""
    catalog = Catalog()
    root = Path(os.getcwd())
    seen: dict[str, Located] = {}
    present: set[str] = set()
    for path in seed_files(folder):
        source = display_path(path, root)
        present.add(source)
        stat = path.stat()
        hit = cached.get(source)
        if hit is not None and hit.size == stat.st_size and hit.mtime_ns == stat.st_mtime_ns:
            scan = FileScan.decode(source, hit.scan)
        else:
            data = _read(path)
            digest = hashlib.sha256(data).hexdigest()
            if hit is not None and hit.sha256 == digest:
                scan = FileScan.decode(source, hit.scan)
                catalog.cache_updates.append((source, stat.st_size, stat.st_mtime_ns, digest, hit.scan))
            else:
                parsed = parse_seed(data, source)
                for entry in parsed.entries:
                    catalog.parsed.setdefault(entry.id, entry)
                scan = FileScan(
                    tuple(EntryRef(e.id, e.content_hash, e.source, e.line) for e in parsed.entries), parsed.problems
                )
                catalog.cache_updates.append((source, stat.st_size, stat.st_mtime_ns, digest, scan.encode()))
        catalog.files += 1
        found = list(scan.problems)
        catalog.refs.extend(deduplicate(scan.refs, seen, found))
        found.sort(key=lambda p: p.line)
        catalog.problems.extend(found)
    catalog.removed = sorted(set(cached) - present)
    # A paper parsed here but kept from an earlier (cached) file is not the first occurrence: drop its text.
    firsts = {ref.id: ref.source for ref in catalog.refs}
    catalog.parsed = {i: e for i, e in catalog.parsed.items() if firsts.get(i) == e.source}
    return catalog
