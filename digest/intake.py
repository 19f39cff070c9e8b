"""The seeds read against the state, inside the publisher's transaction (the publisher holds the writer lock and
decides when): which scan a run takes, what it records of the papers it finds, and the full text of the papers an
issue needs.

Three scans, cheapest first: only the new and changed files when that decides everything (`build_incremental`);
on a first import of many files on a backend that takes packed rows, the workers' packed bulks, with issue 1
rendered elsewhere meanwhile (`import_catalog`); else every file, parsing only those changed since their cached
scan (`build_catalog`). The catalog module is imported inside the functions: a render that finds nothing new
never gets here and loads no parser.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Protocol

from digest.errors import DigestError
from digest.model import Entry, EntryLimits, EntryRef, SeedFile, decode_problems

if TYPE_CHECKING:
    from digest.catalog import BulkProgress, Catalog
    from digest.store import Store

PROBLEMS_KEY = "problems_of_last_run"
SEEDS_KEY = "seed_listing_of_last_run"
ENTRIES_KEY = "entries_match_seeds"  # "1" once a full scan recorded every paper where the seeds have it
LIMITS_KEY = "seed_entry_limits"  # the entry size limits the cached scans were made with


class OnHead(Protocol):
    """Told the first papers of a first import as soon as they are known; `elsewhere` when the workers' scan goes
    on for long enough that the issue they make is best rendered in a worker too."""

    def __call__(self, head: Sequence[EntryRef], *, elsewhere: bool = False) -> None: ...


def scan(
    store: Store,
    now: datetime,
    files: Sequence[SeedFile],
    fingerprint: str,
    limits: EntryLimits,
    *,
    dry_run: bool,
    head: tuple[int, OnHead] | None = None,
    progress: BulkProgress | None = None,
) -> Catalog:
    """Scan the seeds: only new and changed files when that is enough to decide, else every file (parsing the ones
    changed since the last run; all of them in a dry run, which lists every title), recording what was found. On a
    first import, `head` is called with the first papers as soon as they are known (see `build_catalog`)."""
    from digest.catalog import PARALLEL_MIN_FILES, build_catalog, build_incremental, import_catalog  # noqa: PLC0415 (lazy: see the module doc)

    def record(entries: Sequence[EntryRef]) -> None:
        store.record_seen(entries, now)

    same_limits = store.meta(LIMITS_KEY) == repr(limits)  # else every cached scan is stale: parse every file
    if not dry_run and same_limits and store.meta(ENTRIES_KEY) == "1":
        problems = decode_problems(store.meta(PROBLEMS_KEY) or "[]")
        same_listing = store.meta(SEEDS_KEY) == fingerprint  # then no file needs comparing with its cache row
        cached = None if same_listing else store.cached_files(with_scans=False)
        catalog = build_incremental(
            files, cached, problems, store.prior_entries, store.entry_ids_from, sink=record, limits=limits
        )
        if catalog is not None:
            return catalog
    reconcile = store.has_entries()  # a first import has no recorded paper that could have left the seeds

    def record_new(entries: Sequence[EntryRef]) -> None:
        store.record_new(entries, now)  # the refs are first occurrences: no id comes twice

    with_scans = {} if dry_run or not same_limits else store.cached_files(with_scans=True)
    workers = os.cpu_count() or 1
    packer = store.packer
    if packer and not (reconcile or dry_run or with_scans) and workers > 1 and len(files) >= PARALLEL_MIN_FILES:
        # A first import of many files on SQLite: the workers pack their scans and the state takes them whole.
        catalog = import_catalog(
            files,
            pack=packer,
            record=lambda packed, rows: store.record_packed(packed, rows, now),
            first=store.waiting_entries,
            head=(head[0], partial(head[1], elsewhere=True)) if head else None,
            workers=workers,
            limits=limits,
            progress=progress,
        )
    else:
        catalog = build_catalog(
            files,
            with_scans,
            sink=record if reconcile else record_new,
            keep_parsed=dry_run,
            workers=workers,
            head=None if reconcile or dry_run else head,
            limits=limits,
            cache_sink=store.cache_scans,
            progress=progress,
        )
    if reconcile:
        store.forget_absent(store.present_entry_ids() - {r.id for r in catalog.refs})
    store.set_meta(ENTRIES_KEY, "1")
    if not dry_run:
        store.set_meta(LIMITS_KEY, repr(limits))
    return catalog


def materialize(
    store: Store, catalog: Catalog, files: Sequence[SeedFile], refs: Sequence[EntryRef]
) -> dict[str, Entry]:
    """Full entries for these refs: parsed this run, else recorded when they were published, else parsed now from
    the few files that hold them (a waiting paper's text is not stored)."""
    found = {r.id: catalog.parsed[r.id] for r in refs if r.id in catalog.parsed}
    missing = [r for r in refs if r.id not in found]
    if missing:
        recorded = store.load_entries([r.id for r in missing])
        stale = [r for r in missing if r.id not in recorded or recorded[r.id].content_hash != r.content_hash]
        if stale:
            catalog.reparse(stale, files)
        reread = {r.id for r in stale}
        for ref in missing:
            entry = catalog.parsed.get(ref.id) if ref.id in reread else recorded[ref.id]
            if entry is None:
                raise DigestError(f"{ref.source} changed while digest was reading it: run again")
            found[ref.id] = entry
    return found


def empty_catalog(limits: EntryLimits) -> Catalog:
    """A catalog with nothing parsed yet (a first import's issue 1 is read from its files, by `materialize`)."""
    from digest.catalog import Catalog  # noqa: PLC0415 (lazy: see the module doc)

    return Catalog(limits=limits)
