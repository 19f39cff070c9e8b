"""What the seed cache (`seed_files`) records of each file, now that a bulk import hashes with XXH3 and encodes with
orjson (issue 19): the digest says which hash made it, older SHA-256 rows stay readable and are replaced only
when their file changes, and the cached scans are the same JSON bytes as before."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from digest import catalog
from digest.catalog import FILE_DIGEST_PREFIX, FileScan, build_catalog
from digest.model import EntryRef, Problem, ProblemKind
from digest.seedfiles import list_seed_files
from tests.conftest import Workspace

NOW = "2026-11-02T08:00:00+08:00"


def _rows(workspace: Workspace) -> dict[str, tuple[str, bytes]]:
    return {
        path: (digest, bytes(scan)) for path, digest, scan in workspace.sql("SELECT path, sha256, scan FROM seed_files")
    }


def test_the_cache_names_each_file_by_its_xxh3_digest_prefixed_so_old_sha256_rows_differ(
    workspace: Workspace,
) -> None:
    workspace.run("render", "--now", NOW)
    rows = _rows(workspace)
    assert rows
    for path, (digest, _) in rows.items():
        data = (workspace.seeds / Path(path).name).read_bytes()
        assert digest == FILE_DIGEST_PREFIX + xxhash.xxh3_128_hexdigest(data), path
        assert len(digest) != 64  # never mistaken for the SHA-256 hex of older versions


def test_a_state_with_sha256_rows_keeps_them_until_their_file_changes_and_publishes_nothing_twice(
    workspace: Workspace,
) -> None:
    """A state written before the change: every row holds a bare SHA-256 hex. The next runs read those rows as
    they are; a changed file gets a new row in the new format; no paper is published again."""
    workspace.env["DIGEST_MAX_ENTRIES_PER_ISSUE"] = "3"
    workspace.run("render", "--now", NOW)
    for path, _ in _rows(workspace).items():
        old = hashlib.sha256((workspace.seeds / Path(path).name).read_bytes()).hexdigest()
        workspace.sql("UPDATE seed_files SET sha256 = ? WHERE path = ?", old, path)
    first = sorted(_rows(workspace))[0]
    touched = workspace.seeds / Path(first).name
    touched.write_bytes(touched.read_bytes() + b"\n")
    workspace.run("render", "--now", "2026-11-09T08:00:00+08:00")
    workspace.run("render", "--now", "2026-11-16T08:00:00+08:00")
    rows = _rows(workspace)
    assert rows[first][0] == FILE_DIGEST_PREFIX + xxhash.xxh3_128_hexdigest(touched.read_bytes())
    assert all(len(digest) == 64 for path, (digest, _) in rows.items() if path != first)
    published = workspace.sql("SELECT entry_id FROM issue_entries")
    assert len(published) == len({row[0] for row in published}) == 9


def test_a_bulk_scan_in_workers_records_the_same_digests_as_the_sequential_scan(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = list_seed_files(workspace.seeds)
    sequential = build_catalog(files, {})
    monkeypatch.setattr(catalog, "PARALLEL_MIN_FILES", 1)
    parallel = build_catalog(files, {}, workers=2)
    assert [row[3] for row in parallel.cache_updates] == [row[3] for row in sequential.cache_updates]
    assert all(row[3].startswith(FILE_DIGEST_PREFIX) for row in parallel.cache_updates)


def _reference_encoding(scan: FileScan) -> bytes:
    """How the cached scans were encoded before (json.dumps, compact, UTF-8): rows already in states."""
    return json.dumps(
        {
            "refs": [[r.id, r.content_hash, r.line] for r in scan.refs],
            "problems": [[p.line, p.message, p.kind.value, p.entry_id] for p in scan.problems],
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")


_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)  # seeds text is valid UTF-8 by then


@settings(max_examples=300, deadline=None)
@given(
    refs=st.lists(st.tuples(_text, _text, st.integers(1, 10**6)), max_size=5),
    problems=st.lists(st.tuples(st.integers(1, 10**6), _text, st.sampled_from(list(ProblemKind)), _text), max_size=3),
)
def test_cached_scans_are_the_same_bytes_as_before_and_read_back_the_same(
    refs: list[tuple[str, str, int]], problems: list[tuple[int, str, ProblemKind, str]]
) -> None:
    scan = FileScan(
        tuple(EntryRef(i, h, "seeds/a.md", line) for i, h, line in refs),
        tuple(Problem("seeds/a.md", line, message, kind, entry_id) for line, message, kind, entry_id in problems),
    )
    encoded = scan.encode()
    assert encoded == _reference_encoding(scan)
    assert FileScan.decode("seeds/a.md", encoded) == scan
