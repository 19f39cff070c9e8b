"""The seed catalog re-reads only seed files that changed, and gives the same answer as a full parse."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from digest.catalog import CachedFile, Catalog, build_catalog, stat_seed_files
from digest.seeds import read_seeds
from tests.conftest import SAMPLE_SEEDS


@pytest.fixture
def seeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(SAMPLE_SEEDS, tmp_path / "seeds")
    return Path("seeds")


def cache_of(catalog: Catalog, previous: dict[str, CachedFile] | None = None) -> dict[str, CachedFile]:
    cache = dict(previous or {})
    for source, size, mtime_ns, sha, scan in catalog.cache_updates:
        cache[source] = CachedFile(size, mtime_ns, sha, scan)
    for source in catalog.removed:
        cache.pop(source, None)
    return cache


def test_first_scan_parses_every_file_and_matches_a_full_parse(seeds: Path) -> None:
    catalog = build_catalog(seeds, {})
    full = read_seeds(seeds)
    assert [r.id for r in catalog.refs] == [e.id for e in full.entries]
    assert [r.content_hash for r in catalog.refs] == [e.content_hash for e in full.entries]
    assert len(catalog.parsed) == 23 and len(catalog.cache_updates) == 2


def test_unchanged_files_are_not_parsed_again(seeds: Path) -> None:
    first = build_catalog(seeds, {})
    second = build_catalog(seeds, cache_of(first))
    assert second.unchanged and second.parsed == {}
    assert second.refs == first.refs


def test_a_touched_file_with_the_same_bytes_is_not_parsed(seeds: Path) -> None:
    first = build_catalog(seeds, {})
    path = seeds / "000_2075edd4e1164766.txt"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 5_000_000_000))
    second = build_catalog(seeds, cache_of(first))
    assert second.parsed == {}
    assert [row[0] for row in second.cache_updates] == ["seeds/000_2075edd4e1164766.txt"]


def test_only_the_changed_file_is_parsed(seeds: Path) -> None:
    first = build_catalog(seeds, {})
    path = seeds / "001_a5354ea00ad7da45.txt"
    path.write_text(path.read_text(encoding="utf-8").replace("推动开放", "推进开放"), encoding="utf-8")
    second = build_catalog(seeds, cache_of(first))
    assert {e.source for e in second.parsed.values()} == {"seeds/001_a5354ea00ad7da45.txt"}
    changed = [r for r, old in zip(second.refs, first.refs, strict=True) if r.content_hash != old.content_hash]
    assert [r.id for r in changed] == ["2411.15124"]


def test_a_new_file_repeating_a_cached_paper_reports_the_duplicate(seeds: Path) -> None:
    first = build_catalog(seeds, {})
    (seeds / "002_new.md").write_text(
        "## Again\n[再次](https://arxiv.org/pdf/2409.13346v3)\n\n摘要\n\n## New\n[新](https://arxiv.org/abs/2501.00001)\n\n摘要\n",
        encoding="utf-8",
    )
    second = build_catalog(seeds, cache_of(first))
    assert list(second.parsed) == ["2501.00001"]
    assert [str(p) for p in second.problems] == [
        "seeds/002_new.md:1: duplicate of 2409.13346 (first at seeds/000_2075edd4e1164766.txt:1)"
    ]


def test_removed_files_leave_the_cache(seeds: Path) -> None:
    first = build_catalog(seeds, {})
    (seeds / "001_a5354ea00ad7da45.txt").unlink()
    second = build_catalog(seeds, cache_of(first))
    assert second.removed == ["seeds/001_a5354ea00ad7da45.txt"]
    assert len(second.refs) == 11
    assert set(stat_seed_files(seeds)) == {"seeds/000_2075edd4e1164766.txt"}
