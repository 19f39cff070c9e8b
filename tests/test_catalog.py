"""The seed catalog re-reads only seed files that changed, and gives the same answer as a full parse."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from digest.catalog import Catalog, build_catalog
from digest.model import CachedFile
from digest.seedfiles import list_seed_files
from digest.seeds import read_seeds
from tests.conftest import SAMPLE_SEEDS


@pytest.fixture
def seeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(SAMPLE_SEEDS, tmp_path / "seeds")
    return Path("seeds")


def scan(seeds: Path, cache: dict[str, CachedFile]) -> Catalog:
    return build_catalog(list_seed_files(seeds), cache, keep_parsed=True)


def cache_of(catalog: Catalog, previous: dict[str, CachedFile] | None = None) -> dict[str, CachedFile]:
    cache = dict(previous or {})
    for source, size, mtime_ns, sha, data in catalog.cache_updates:
        cache[source] = CachedFile(size, mtime_ns, sha, data)
    for source in catalog.removed:
        cache.pop(source, None)
    return cache


def test_first_scan_parses_every_file_and_matches_a_full_parse(seeds: Path) -> None:
    catalog = scan(seeds, {})
    full = read_seeds(seeds)
    assert [r.id for r in catalog.refs] == [e.id for e in full.entries]
    assert [r.content_hash for r in catalog.refs] == [e.content_hash for e in full.entries]
    assert len(catalog.parsed) == 23 and len(catalog.cache_updates) == 2


def test_unchanged_files_are_not_parsed_again(seeds: Path) -> None:
    first = scan(seeds, {})
    second = scan(seeds, cache_of(first))
    assert second.cache_updates == [] and second.parsed == {}
    assert second.refs == first.refs


def test_a_touched_file_is_read_again_and_gives_the_same_refs(seeds: Path) -> None:
    first = scan(seeds, {})
    path = seeds / "000_2075edd4e1164766.txt"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 5_000_000_000))
    second = scan(seeds, cache_of(first))
    assert [row[0] for row in second.cache_updates] == ["seeds/000_2075edd4e1164766.txt"]
    assert second.refs == first.refs


def test_only_the_changed_file_is_parsed(seeds: Path) -> None:
    first = scan(seeds, {})
    path = seeds / "001_a5354ea00ad7da45.txt"
    path.write_text(path.read_text(encoding="utf-8").replace("推动开放", "推进开放"), encoding="utf-8")
    second = scan(seeds, cache_of(first))
    assert {e.source for e in second.parsed.values()} == {"seeds/001_a5354ea00ad7da45.txt"}
    changed = [r for r, old in zip(second.refs, first.refs, strict=True) if r.content_hash != old.content_hash]
    assert [r.id for r in changed] == ["2411.15124"]


def test_a_new_file_repeating_a_cached_paper_reports_the_duplicate(seeds: Path) -> None:
    first = scan(seeds, {})
    (seeds / "002_new.md").write_text(
        "## Again\n[再次](https://arxiv.org/pdf/2409.13346v3)\n\n摘要\n\n## New\n[新](https://arxiv.org/abs/2501.00001)\n\n摘要\n",
        encoding="utf-8",
    )
    second = scan(seeds, cache_of(first))
    assert list(second.parsed) == ["2501.00001"]
    assert [str(p) for p in second.problems] == [
        "seeds/002_new.md:1: duplicate of 2409.13346 (first at seeds/000_2075edd4e1164766.txt:1)"
    ]


def test_removed_files_leave_the_cache(seeds: Path) -> None:
    first = scan(seeds, {})
    (seeds / "001_a5354ea00ad7da45.txt").unlink()
    second = scan(seeds, cache_of(first))
    assert second.removed == ["seeds/001_a5354ea00ad7da45.txt"]
    assert len(second.refs) == 11
    assert [f.source for f in list_seed_files(seeds)] == ["seeds/000_2075edd4e1164766.txt"]


# --- the incremental path gives the same answer as a full parse, whatever happens to the seeds -------------


def _paper(n: int, text: str = "摘要") -> str:
    return f"## Paper {n}\n[论文 {n}](https://arxiv.org/abs/2601.{n:05d})\n\n{text} {n}。\n\n"


def _published(state: Path | str) -> list[tuple[int, list[tuple[str, str, str, int]]]]:
    from digest.store import Store

    with Store.open(state) as store:
        return [
            (i.number, [(e.id, e.content_hash, e.source, e.line) for e in i.entries])
            for i in store.load_issues(store.issue_numbers())
        ]


@pytest.mark.both_states
@pytest.mark.parametrize("max_entries", [100, 2])
def test_random_seed_edits_publish_exactly_what_a_full_parse_sees(
    seeds: Path, monkeypatch: pytest.MonkeyPatch, max_entries: int, state: Path | str
) -> None:
    """Forty random edits (new files sorting anywhere, duplicates, corrections, deletions, papers dropped and
    brought back, shifted lines, broken and fixed entries, weeks with no change); after each render the issues,
    their papers and text, the backlog and the problems match those of a twin state that always takes the full
    path, and the problems match a full re-parse. With 2 papers per issue most weeks have a backlog, so the next
    issue comes from the state's queue."""
    import random
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from digest.publisher import Publisher
    from digest.seeds import read_seeds
    from digest.settings import load_settings

    for key in [k for k in os.environ if k.startswith("DIGEST_")]:
        monkeypatch.delenv(key)
    import digest.catalog

    paths: list[str] = []
    incremental = digest.catalog.build_incremental
    reference_run = [False]

    def spy(*args: object, **kwargs: object) -> Catalog | None:
        if reference_run[0]:
            return None
        found = incremental(*args, **kwargs)  # type: ignore[arg-type]
        paths.append("incremental" if found is not None else "full")
        return found

    monkeypatch.setattr(digest.catalog, "build_incremental", spy)
    # The state under test on either backend; the twin always in SQLite.
    on = {"state_url": state} if isinstance(state, str) else {}
    publisher = Publisher(load_settings(max_entries_per_issue=max_entries, **on))
    twin = Publisher(
        load_settings(
            max_entries_per_issue=max_entries,
            state_path=Path("twin/digest.db"),
            output_dir=Path("twin-site"),
            preview_dir=Path("twin-preview"),
        )
    )
    rng = random.Random(7 + max_entries)
    now = datetime(2026, 11, 23, 8, tzinfo=ZoneInfo("Asia/Shanghai"))
    counter = 100
    dropped: list[str] = []  # entry texts taken out of the seeds, to bring back later

    def write(path: Path, text: str) -> None:
        old = path.stat().st_mtime_ns if path.exists() else 0
        path.write_text(text, encoding="utf-8")
        os.utime(path, ns=(old + 10**9, max(old + 10**9, path.stat().st_mtime_ns)))

    def entries_of(text: str) -> list[str]:
        head, *chunks = text.split("\n## ")
        return [head, *("## " + c for c in chunks)] if head.startswith("## ") else ["## " + c for c in chunks]

    ops = ["new", "new", "dup", "dup_late", "correct", "delete", "broken", "fix", "touch", "new_first"]
    ops += ["none", "none", "drop", "revive", "shift", "new", "new"]
    for step in range(40):
        files = sorted(seeds.iterdir())
        op = rng.choice(ops)
        if op in ("new", "new_first"):
            counter += 3
            name = f"{'000' if op == 'new_first' else '9'}{step:02d}_n.md"
            write(seeds / name, _paper(counter) + _paper(counter + 1) + _paper(counter + 2))
        elif op in ("dup", "dup_late"):
            counter += 1
            entries = read_seeds(seeds).entries
            first_id = entries[rng.randrange(3) if op == "dup" else rng.randrange(len(entries))].id
            write(
                seeds / f"{'5' if op == 'dup' else '95'}{step:02d}_d.md",
                f"## Again\n[再](https://arxiv.org/pdf/{first_id}v2)\n\n重复。\n\n" + _paper(counter),
            )
        elif op == "correct":
            target = rng.choice(files)
            write(target, target.read_text(encoding="utf-8").replace("。", "．", 1))
        elif op == "delete" and len(files) > 2:
            rng.choice(files[2:]).unlink()
        elif op == "broken":
            write(seeds / f"7{step:02d}_b.md", "## Broken\nno link\n\n摘要\n")
        elif op == "fix":
            for broken in seeds.glob("7*_b.md"):
                counter += 1
                write(broken, _paper(counter))
        elif op == "touch":
            target = rng.choice(files)
            os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
        elif op == "drop":  # a paper leaves its file (published or still waiting)
            target = rng.choice(files)
            chunks = entries_of(target.read_text(encoding="utf-8"))
            if len(chunks) > 1:
                dropped.append(chunks.pop(rng.randrange(len(chunks))))
                write(target, "\n".join(chunks))
        elif op == "revive" and dropped:  # ... and comes back in a new file, after every other one
            write(seeds / f"99{step:02d}_r.md", dropped.pop(0).replace("。", "!", 1))
        elif op == "shift":  # lines move: duplicates elsewhere must name the new line of the first occurrence
            target = rng.choice(files)
            write(target, "前言\n\n" + target.read_text(encoding="utf-8"))

        now += timedelta(days=7)
        result = publisher.publish_next_issue(now)
        reference_run[0] = True
        try:
            expected = twin.publish_next_issue(now)
        finally:
            reference_run[0] = False
        reference = read_seeds(seeds)
        assert sorted(map(str, result.problems)) == sorted(map(str, reference.problems)), (step, op)
        assert sorted(map(str, result.problems)) == sorted(map(str, expected.problems)), (step, op)
        assert (result.waiting, result.revised) == (expected.waiting, expected.revised), (step, op)
        issues = _published(state if isinstance(state, str) else Path("state/digest.db"))
        assert issues == _published(Path("twin/digest.db")), (step, op)
        published = {paper[0]: paper for _, papers in issues for paper in papers}
        assert len(published) == sum(len(papers) for _, papers in issues), "a paper was published twice"
        for entry in reference.entries:
            if entry.id in published:
                assert published[entry.id][1] == entry.content_hash, (step, op, entry.id)
        if max_entries >= 100:
            assert {e.id for e in reference.entries} <= set(published), (step, op)
    # Both paths were exercised (the no-op fast path skips the catalog altogether).
    assert paths.count("incremental") >= 10 and paths.count("full") >= 2, paths


def test_a_bulk_scan_in_worker_processes_matches_the_sequential_scan(
    seeds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import digest.catalog

    (seeds / "002_bad.md").write_text(
        "## Broken\nno link\n\n摘要\n\n## Again\n[再](https://arxiv.org/abs/2409.13346v2)\n\n重复。\n", encoding="utf-8"
    )
    files = list_seed_files(seeds)
    sequential = build_catalog(files, {})
    monkeypatch.setattr(digest.catalog, "PARALLEL_MIN_FILES", 1)
    recorded: list[str] = []
    parallel = build_catalog(files, {}, workers=2, sink=lambda refs: recorded.extend(r.id for r in refs))
    assert parallel.refs == sequential.refs
    assert parallel.problems == sequential.problems
    assert parallel.cache_updates == sequential.cache_updates
    assert recorded == [r.id for r in sequential.refs]


def test_a_bulk_scan_hands_its_cache_rows_over_with_each_batch(seeds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first import writes the seed-file cache while the workers parse (with each batch of first occurrences),
    not all at the end: every row reaches the cache sink once, in file order, and nothing is left for after."""
    import digest.catalog

    for n in range(6):  # new papers in every file: each file fills a batch of its own
        paper = f"## Paper {n}\n[论文 {n}](https://arxiv.org/abs/2501.{n:05d})\n\n摘要 {n}。\n"
        (seeds / f"new_{n}.txt").write_text(paper, encoding="utf-8")
    files = list_seed_files(seeds)
    sequential = build_catalog(files, {})
    monkeypatch.setattr(digest.catalog, "PARALLEL_MIN_FILES", 1)
    monkeypatch.setattr(digest.catalog, "SINK_BATCH", 1)
    batches: list[list[str]] = []
    parallel = build_catalog(
        files, {}, workers=2, sink=lambda refs: None, cache_sink=lambda rows: batches.append([r[0] for r in rows])
    )
    assert len(batches) > 1
    assert [path for batch in batches for path in batch] == [row[0] for row in sequential.cache_updates]
    assert parallel.cache_updates == []
