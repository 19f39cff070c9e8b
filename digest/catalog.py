"""The seed catalog: every entry in the seeds folder, in publication order, re-reading only changed files.

Parsing 100,000 entries takes seconds; a weekly run should cost what the new week costs, however many papers
wait and however large the archive. The state records every paper where it first occurs in the seeds (id,
file, line, content hash), so that it always describes the seeds as of the last run. Two paths:

- `build_catalog` (the reference): every file, its light scan (ids, content hashes, lines, problems) taken from
  the cache in the state when the file's size and mtime (or bytes) are unchanged, parsed otherwise. Every first
  occurrence goes to the `sink`, and the caller forgets recorded papers that are no longer in the seeds.
- `build_incremental`: when no file was removed, only the new or changed files are parsed and checked against
  the state by id; the unchanged files are what the state says they are (the publisher takes the next issue
  from the state's queue of waiting papers, in seed order). Any case it cannot decide locally (a new occurrence
  sorting before a paper's first occurrence, a paper dropped from a changed file) returns None, and the caller
  falls back to `build_catalog`.

First occurrences are handed to a `sink` (the publisher records them) thousands at a time, as files are read.
A first import on a backend that takes packed rows (SQLite) goes through `import_catalog` instead: the workers
pack what they parse, the state keeps the first occurrences and reports the repeats, and no paper passes
through this process one by one (tests hold it to the reference path's state and problems).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import orjson
import xxhash

from digest.model import CachedFile, Entry, EntryRef, KnownEntry, Located, PriorEntry, Problem, ProblemKind, SeedFile
from digest.seedfiles import read_seed_file
from digest.seeds import DEFAULT_LIMITS, EntryLimits, deduplicate, duplicate_problem, parse_seed, scan_seed
from digest.workers import worker_pool

if TYPE_CHECKING:
    from digest.store.backend import Packer  # the state's packed-rows format (a type only: no store code here)

Sink = Callable[[Sequence[EntryRef]], None]
#: Records a packed bulk of n rows (`Store.record_packed`); returns the rows it did not record: (source, line, first).
PackedSink = Callable[[bytes, int], Sequence[tuple[str, int, EntryRef]]]
#: Takes rows for the seed-file cache (path, size, mtime_ns, digest, encoded scan), as `Store.cache_scans` does.
CacheSink = Callable[[Sequence[tuple[str, int, int, str, bytes]]], None]
BulkProgress = Callable[[int], Callable[[int], None]]  # told how many files a bulk parse reads; returns the ticker
MAX_INCREMENTAL_FILES = 200
PARALLEL_MIN_FILES = 500  # below this, starting worker processes costs more than it saves
SINK_BATCH = 5_000  # first occurrences handed to the sink at a time
CHUNK_FILES = 64  # files a worker of `import_catalog` scans and packs at a time (about 640 papers)
FILE_DIGEST_PREFIX = "xxh3-128:"  # seed_files.sha256 rows without it are SHA-256 hex (written before 2026-12)


@dataclass(frozen=True)
class FileScan:
    """One file's entries (refs, before cross-file de-duplication) and its own problems."""

    refs: tuple[EntryRef, ...]
    problems: tuple[Problem, ...]

    def encode(self) -> bytes:
        """Compact JSON for the cache: refs as [id, hash, line], problems as [line, message, kind, id].

        orjson writes the same bytes as `json.dumps(..., ensure_ascii=False, separators=(",", ":"))` did (a test
        holds it to that), in half the time: a bulk import encodes 10,000 of these in its workers."""
        return orjson.dumps(
            {
                "refs": [[r.id, r.content_hash, r.line] for r in self.refs],
                "problems": [[p.line, p.message, p.kind.value, p.entry_id] for p in self.problems],
            }
        )

    @classmethod
    def decode(cls, source: str, data: bytes) -> FileScan:
        """Rebuild a cached scan of the file shown as `source`."""
        raw = orjson.loads(data)
        refs = tuple(EntryRef(i, h, source, line) for i, h, line in raw["refs"])
        problems = tuple(Problem(source, ln, msg, ProblemKind(k), eid) for ln, msg, k, eid in raw["problems"])
        return cls(refs, problems)

    @classmethod
    def of(cls, entries: Sequence[Entry], problems: Sequence[Problem]) -> FileScan:
        """The light scan of freshly parsed entries."""
        return cls(tuple(EntryRef(e.id, e.content_hash, e.source, e.line) for e in entries), tuple(problems))


@dataclass
class Catalog:
    """Seed entries in publication order (first occurrence of each paper) and every problem found.

    `known` is filled by the incremental path with what the state knows of `refs`.
    """

    refs: list[EntryRef] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    parsed: dict[str, Entry] = field(default_factory=dict)
    cache_updates: list[tuple[str, int, int, str, bytes]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    known: dict[str, KnownEntry] | None = None
    limits: EntryLimits = DEFAULT_LIMITS
    packed: int = 0  # first occurrences the state recorded from packed scans (`import_catalog`): not in `refs`

    @property
    def first_occurrences(self) -> int:
        """How many papers the seeds hold (each counted where it first occurs)."""
        return len(self.refs) + self.packed

    def reparse(self, refs: Sequence[EntryRef], files: Sequence[SeedFile]) -> None:
        """Parse the files holding these refs (their text is not in the state) and keep the entries they name."""
        wanted = {(r.source, r.line): r.id for r in refs}
        sources = {r.source for r in refs}
        for file in files:
            if file.source in sources:
                for entry in parse_seed(read_seed_file(file), file.source, self.limits).entries:
                    if wanted.get((entry.source, entry.line)) == entry.id:
                        self.parsed[entry.id] = entry


def file_digest(data: bytes) -> str:
    """The digest the seed cache records of a file's bytes: XXH3-128, prefixed so that it cannot be taken for the
    SHA-256 hex digests older versions wrote in the same column (nothing compares them: a file is unchanged when
    its size and mtime are). 5x cheaper than SHA-256 on a bulk import, and not a security boundary here."""
    return FILE_DIGEST_PREFIX + xxhash.xxh3_128_hexdigest(data)


def _parse(file: SeedFile, catalog: Catalog) -> tuple[FileScan, dict[str, Entry]]:
    data = read_seed_file(file)
    parsed = parse_seed(data, file.source, catalog.limits)
    scan = FileScan.of(parsed.entries, parsed.problems)
    digest = file_digest(data)
    catalog.cache_updates.append((file.source, file.size, file.mtime_ns, digest, scan.encode()))
    return scan, {e.id: e for e in parsed.entries}


def build_catalog(
    files: Sequence[SeedFile],
    cached: Mapping[str, CachedFile],
    *,
    sink: Sink | None = None,
    keep_parsed: bool = False,
    workers: int = 1,
    head: tuple[int, Callable[[Sequence[EntryRef]], None]] | None = None,
    limits: EntryLimits = DEFAULT_LIMITS,
    cache_sink: CacheSink | None = None,
    progress: BulkProgress | None = None,
) -> Catalog:
    """Every seed file's entries, parsing only files that changed since their cached scan (the reference path).

    A bulk of files to parse is spread over `workers` processes, which send back light scans only. Every first
    occurrence goes to `sink`, also from unchanged files (a removed or edited file may have moved one there).
    `head` = (n, call): `call` gets the first n first occurrences (all of them, when there are fewer) once they
    are known and sunk, while the workers go on parsing the rest. The sink gets first occurrences in batches;
    `cache_sink`, when given, gets the cache rows gathered so far with each batch (so a bulk import writes them
    while the workers parse, not after), and `cache_updates` keeps only the rows it has not had. When files are
    parsed in workers (a bulk import, seconds to minutes), `progress` is called with how many, and what it
    returns is told of each file parsed.
    """
    catalog = Catalog(limits=limits)
    seen: dict[str, Located] = {}
    wanted, on_head = head if head is not None else (0, None)
    sunk = 0  # catalog.refs[:sunk] went to the sink: it gets thousands at a time (one COPY, not one per file)
    for scan, parsed in _scans(files, cached, catalog, keep_parsed, workers, progress):
        found = list(scan.problems)
        kept = deduplicate(scan.refs, seen, found)
        catalog.refs.extend(kept)
        found.sort(key=lambda p: p.line)
        catalog.problems.extend(found)
        if keep_parsed:
            catalog.parsed.update((r.id, parsed[r.id]) for r in kept if r.id in parsed)
        due = on_head is not None and len(catalog.refs) >= wanted
        if sink and (due or len(catalog.refs) - sunk >= SINK_BATCH):
            sink(catalog.refs[sunk:])
            sunk = len(catalog.refs)
            if cache_sink is not None and catalog.cache_updates:
                cache_sink(catalog.cache_updates)
                catalog.cache_updates.clear()
        if on_head is not None and due:
            on_head(catalog.refs[:wanted])
            on_head = None
    if sink and len(catalog.refs) > sunk:
        sink(catalog.refs[sunk:])
    if on_head is not None:
        on_head(list(catalog.refs))
    catalog.removed = sorted(set(cached) - {f.source for f in files})
    return catalog


def _scans(
    files: Sequence[SeedFile],
    cached: Mapping[str, CachedFile],
    catalog: Catalog,
    keep_parsed: bool,
    workers: int,
    progress: BulkProgress | None = None,
) -> Iterator[tuple[FileScan, dict[str, Entry]]]:
    """(scan, parsed entries) of each file, in file order: cached scans, or parsed here or in workers."""
    stale = [f for f in files if (hit := cached.get(f.source)) is None or hit.scan is None or not hit.matches(f)]
    parallel = workers > 1 and not keep_parsed and len(stale) >= PARALLEL_MIN_FILES
    fresh: Iterator[tuple[bytes, str, list[tuple[str, str, int]], list[Problem]]] | None = None
    pool = None
    advance = None
    if parallel:
        pool = worker_pool(workers)
        fresh = pool.map(partial(_scan_file, limits=catalog.limits), stale, chunksize=64)
        advance = progress(len(stale)) if progress is not None else None
    try:
        stale_sources = {f.source for f in stale}
        for file in files:
            if file.source not in stale_sources:
                data = cached[file.source].scan
                assert data is not None
                yield FileScan.decode(file.source, data), {}
            elif fresh is not None:
                encoded, digest, rows, problems = next(fresh)
                if advance is not None:
                    advance(1)
                catalog.cache_updates.append((file.source, file.size, file.mtime_ns, digest, encoded))
                source = file.source
                yield FileScan(tuple([EntryRef(i, h, source, line) for i, h, line in rows]), tuple(problems)), {}
            else:
                scan, parsed = _parse(file, catalog)
                yield scan, parsed
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _scan_file(file: SeedFile, limits: EntryLimits) -> tuple[bytes, str, list[tuple[str, str, int]], list[Problem]]:
    """Worker side of a bulk scan: the file's light scan (encoded for the cache, and as plain tuples, which cross
    back cheaper than anything that must be decoded again) and its digest; no text crosses back."""
    data = read_seed_file(file)
    refs, problems = scan_seed(data, file.source, limits)
    encoded = FileScan(tuple(refs), tuple(problems)).encode()
    return encoded, file_digest(data), [(r.id, r.content_hash, r.line) for r in refs], problems


def import_catalog(
    files: Sequence[SeedFile],
    *,
    pack: Packer,
    record: PackedSink,
    first: Callable[[int], Sequence[EntryRef]],
    head: tuple[int, Callable[[Sequence[EntryRef]], None]] | None = None,
    workers: int,
    limits: EntryLimits = DEFAULT_LIMITS,
    progress: BulkProgress | None = None,
) -> Catalog:
    """A first import, in worker processes that also `pack` their scans: the state records each bulk (`record`)
    and says which rows repeat a paper, which become DUPLICATE problems here. `first(n)` reads back the first n
    papers recorded (in seed order), for `head` as in `build_catalog`. The catalog lists no refs, only their
    count (`packed`): a first import needs nothing else of them, and 100,000 tuples cost this process more than
    everything else it does meanwhile. For a state with no paper and no cached scan (else `build_catalog`)."""
    catalog = Catalog(limits=limits)
    wanted, on_head = head if head is not None else (0, None)
    chunks = [files[start : start + CHUNK_FILES] for start in range(0, len(files), CHUNK_FILES)]
    pool = worker_pool(workers)
    try:
        scans = pool.map(partial(_scan_chunk, limits=limits, pack=pack), chunks)
        advance = progress(len(files)) if progress is not None else None
        for chunk, (packed, rows, own_problems) in zip(chunks, scans, strict=True):
            repeats: dict[str, list[Problem]] = {}
            skipped = record(packed, rows)
            for source, line, earlier in skipped:
                repeats.setdefault(source, []).append(duplicate_problem(source, line, earlier))
            catalog.packed += rows - len(skipped)
            for file, found in zip(chunk, own_problems, strict=True):
                problems = [*found, *repeats.get(file.source, ())]
                problems.sort(key=lambda p: p.line)
                catalog.problems.extend(problems)
            if advance is not None:
                advance(len(chunk))
            if on_head is not None and catalog.packed >= wanted:
                on_head(list(first(wanted)))
                on_head = None
    finally:
        pool.shutdown(cancel_futures=True)
    if on_head is not None:
        on_head(list(first(wanted)))
    return catalog


def _scan_chunk(files: Sequence[SeedFile], limits: EntryLimits, pack: Packer) -> tuple[bytes, int, list[list[Problem]]]:
    """Worker side of `import_catalog`: these files' entries (each file's first occurrences) and cache rows,
    packed, how many entries, and each file's own problems. No text and no paper crosses back one by one."""
    entries: list[EntryRef] = []
    cache: list[tuple[str, int, int, str, bytes]] = []
    problems = []
    for file in files:
        data = read_seed_file(file)
        refs, found = scan_seed(data, file.source, limits)
        entries.extend(refs)
        encoded = FileScan(tuple(refs), tuple(found)).encode()
        cache.append((file.source, file.size, file.mtime_ns, file_digest(data), encoded))
        problems.append(found)
    return pack([entries, cache]), len(entries), problems


def build_incremental(
    files: Sequence[SeedFile],
    cached: Mapping[str, CachedFile] | None,
    last_problems: Sequence[Problem],
    prior: Callable[[list[str]], Mapping[str, PriorEntry]],
    firsts_in: Callable[[list[str]], set[str]],
    *,
    sink: Sink | None = None,
    limits: EntryLimits = DEFAULT_LIMITS,
) -> Catalog | None:
    """Only the new and changed files' first occurrences (recorded through `sink`, so that the state again holds
    every paper of the seeds where it first occurs), or None when the full path is needed (see module doc).

    `prior` must describe the seeds as of the last run (the full path leaves it so, and so does this one): what
    the unchanged files hold is read from it, not from their cached scans. `cached` is None when the listing is
    the one the last run scanned (nothing to compare file by file).
    """
    present = {f.source for f in files}
    if cached is not None and set(cached) - present:
        return None  # a removed file can promote a duplicate elsewhere to first occurrence
    changed = (
        [] if cached is None else [f for f in files if (hit := cached.get(f.source)) is None or not hit.matches(f)]
    )
    if len(changed) > MAX_INCREMENTAL_FILES:
        return None  # a bulk import: the streaming full path keeps memory flat
    unchanged = present - {f.source for f in changed}
    order = {f.source: position for position, f in enumerate(files)}
    catalog = Catalog(known={}, limits=limits)
    firsts_before = firsts_in([f.source for f in changed])
    scans = [(file, *_parse(file, catalog)) for file in changed]
    ids = [ref.id for _, scan, _ in scans for ref in scan.refs]
    known_before = prior(ids)
    seen: dict[str, Located] = {}
    new_firsts: dict[str, EntryRef] = {}
    for file, scan, parsed in scans:
        found = list(scan.problems)
        candidates = []
        for ref in scan.refs:
            before = known_before.get(ref.id)
            if before is not None and before.source in unchanged and ref.id not in seen:
                if order[before.source] > order[file.source]:
                    return None  # this new occurrence would become the first one
                seen[ref.id] = EntryRef(ref.id, before.content_hash, before.source, before.line)
            candidates.append(ref)
        kept = deduplicate(candidates, seen, found)
        new_firsts.update((r.id, r) for r in kept)
        catalog.refs.extend(kept)
        found.sort(key=lambda p: p.line)
        catalog.problems.extend(found)
        catalog.parsed.update((r.id, parsed[r.id]) for r in kept)
    if firsts_before - new_firsts.keys():
        return None  # a paper left a changed file: a duplicate elsewhere may now be its first occurrence
    if sink:
        sink(catalog.refs)
    assert catalog.known is not None
    for ref in catalog.refs:
        if (before := known_before.get(ref.id)) is not None:
            catalog.known[ref.id] = KnownEntry(before.content_hash, before.issue)
    # Problems of unchanged files stay, except that a duplicate's "first at" follows its first occurrence when
    # that moved inside a changed file.
    kept_old = [
        duplicate_problem(p.source, p.line, new_firsts[p.entry_id])
        if p.kind is ProblemKind.DUPLICATE and p.entry_id in new_firsts
        else p
        for p in last_problems
        if p.source in unchanged
    ]
    catalog.problems = sorted([*kept_old, *catalog.problems], key=lambda p: (order[p.source], p.line))
    return catalog
