"""A first import on SQLite takes what its parse workers pack, in one statement per bulk (issue 19), and ends in
exactly the state, site and problems of the reference path, which records the papers one by one."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import digest.build
import digest.catalog
import digest.parallel_build
from digest.publisher import Publisher, PublishResult
from digest.render import default_templates_dir, template_error_line
from digest.settings import load_settings
from digest.store.sqlite import SqliteConnection
from tests.conftest import Workspace, run_sql
from tests.test_cli_render import paper

WEEK_1 = datetime(2026, 11, 23, 8, tzinfo=ZoneInfo("Asia/Shanghai"))
WEEK_2 = datetime(2026, 11, 30, 8, tzinfo=ZoneInfo("Asia/Shanghai"))


def _paper(n: int) -> str:
    return paper(f"Paper {n}", f"论文 {n}", f"https://arxiv.org/abs/2501.{n:05d}")


def _write_corpus(seeds: Path) -> None:
    """Twelve files with every kind of repeat: inside a file, across files of one bulk, across bulks, a paper
    repeated three times, and broken, empty and not-UTF-8 files among them."""
    seeds.mkdir()
    files = {
        "01.md": _paper(1) + _paper(2) + _paper(1),  # a repeat inside the file
        "02.md": _paper(3) + _paper(2),  # a repeat of the previous file
        "03.md": "## Broken\nno link\n\n摘要\n\n" + _paper(4),
        "04.md": "",
        "05.md": _paper(5) + _paper(3) + _paper(6),
        "06.md": "\ufeff" + (_paper(7) + _paper(1)).replace("\n", "\r\n"),  # BOM and CRLF; paper 1 a third time
        "07.md": _paper(8),
        "08.md": _paper(9) + _paper(7),
        "09.md": _paper(10) + "## Bad\n[坏](https://arxiv.org/abs/2501.00011)\n",
        "10.md": _paper(12) + _paper(5) + _paper(13),
        "11.md": _paper(14) + _paper(1),
        "12.md": _paper(15),
    }
    for name, text in files.items():
        (seeds / name).write_text(text, encoding="utf-8", newline="")
    (seeds / "13.md").write_bytes(_paper(16).encode() + b"## T\xff\n[t](https://arxiv.org/abs/2501.00017)\n\nx\n")


def _publisher(root: Path, name: str) -> Publisher:
    return Publisher(
        load_settings(
            seeds_dir=root / "seeds",
            state_path=root / name / "digest.db",
            output_dir=root / name / "site",
            preview_dir=root / name / "preview",
            max_entries_per_issue=4,
        )
    )


def _site(root: Path, name: str) -> dict[str, bytes]:
    """Every file of the site, but the claim naming the state's path."""
    site = root / name / "site"
    files = {str(p.relative_to(site)): p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()}
    assert files.pop(".digest-state")
    return files


@pytest.fixture
def bulk(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[str]]:
    """Every file counts as a bulk import, in bulks of `CHUNK_FILES` files; yields the paths each run took."""
    for key in [k for k in os.environ if k.startswith("DIGEST_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIGEST_SITE_URL", "https://digest.example.org/")
    monkeypatch.setenv("DIGEST_SECRET_KEY", "test-secret-key-0123456789abcdef")
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    same = uuid.uuid4()
    monkeypatch.setattr(uuid, "uuid4", lambda: same)  # both states get one site id: their feeds' ids compare
    monkeypatch.setattr(digest.catalog, "PARALLEL_MIN_FILES", 1)
    taken: list[str] = []
    packed, reference = digest.catalog.import_catalog, digest.catalog.build_catalog

    def spy_packed(*args: Any, **kwargs: Any) -> digest.catalog.Catalog:
        taken.append("packed")
        return packed(*args, **kwargs)

    def spy_reference(*args: Any, **kwargs: Any) -> digest.catalog.Catalog:
        taken.append("reference")
        return reference(*args, **kwargs)

    monkeypatch.setattr(digest.catalog, "import_catalog", spy_packed)
    monkeypatch.setattr(digest.catalog, "build_catalog", spy_reference)
    _write_corpus(tmp_path / "seeds")
    yield taken


@pytest.mark.parametrize("chunk_files", [1, 3, 64])
def test_a_packed_first_import_ends_where_the_one_by_one_import_ends(
    bulk: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_files: int
) -> None:
    monkeypatch.setattr(digest.catalog, "CHUNK_FILES", chunk_files)
    rendered_here: list[str] = []  # calls in this process (a worker's calls stay in the worker)
    render = digest.build.changed_outputs
    for module in (digest.build, digest.parallel_build):
        monkeypatch.setattr(module, "changed_outputs", lambda *a: rendered_here.append("here") or render(*a))
    packed_first = _publisher(tmp_path, "packed").publish_next_issue(WEEK_1)
    assert rendered_here == []  # issue 1 was rendered in a worker, from a copy of the state
    with monkeypatch.context() as off:
        off.setattr(SqliteConnection, "packer", lambda self: None)  # the backend takes no packed rows
        off.setattr(SqliteConnection, "snapshot", lambda self: None)  # nor copies of itself
        reference_first = _publisher(tmp_path, "reference").publish_next_issue(WEEK_1)
    assert bulk == ["packed", "reference"] and rendered_here == ["here"]

    assert _comparable(packed_first) == _comparable(reference_first)
    duplicates = [p for p in packed_first.problems if p.kind.value == "duplicate"]
    assert [(p.source.rsplit("/", 1)[-1], p.line) for p in duplicates] == [
        ("01.md", 11),
        ("02.md", 6),
        ("05.md", 6),
        ("06.md", 6),
        ("08.md", 6),
        ("10.md", 6),
        ("11.md", 6),
    ]
    assert "first at seeds/01.md:1" in duplicates[-1].message  # the third repeat names the first occurrence
    assert packed_first.waiting == 17 - 2 - 4  # 17 papers; 2 broken (no link, not UTF-8); 4 in issue 1
    assert _tables(tmp_path, "packed") == _tables(tmp_path, "reference")
    assert _site(tmp_path, "packed") == _site(tmp_path, "reference")
    assert len(_tables(tmp_path, "packed")["seed_files"]) == 13

    # The next week reads the state either path left, the same way.
    (tmp_path / "seeds" / "14.md").write_text(_paper(18) + _paper(9), encoding="utf-8")
    second = [_publisher(tmp_path, name).publish_next_issue(WEEK_2) for name in ("packed", "reference")]
    assert _comparable(second[0]) == _comparable(second[1])
    assert second[0].issue is not None and len(second[0].issue.entries) == 4
    assert _tables(tmp_path, "packed") == _tables(tmp_path, "reference")


def _comparable(result: PublishResult) -> tuple[Any, ...]:
    issue = result.issue
    papers = [(e.id, e.content_hash, e.source, e.line) for e in issue.entries] if issue else []
    return papers, [(p.source, p.line, p.message, p.kind) for p in result.problems], result.waiting


def _tables(root: Path, name: str) -> dict[str, list[tuple[Any, ...]]]:
    db = root / name / "digest.db"
    return {
        table: run_sql(db, f"SELECT * FROM {table} ORDER BY {order}")
        for table, order in (
            ("entries", "id"),
            ("issues", "number"),
            ("issue_entries", "issue, position"),
            ("seed_files", "path"),
            ("paper_topics", "topic, issue, position"),
            ("meta", "key"),
        )
    }


def test_bulks_of_any_size_follow_one_another_in_one_transaction(tmp_path: Path) -> None:
    """Each bulk replaces the last one in place, inside the import's transaction: a large bulk, then a small one,
    then a large one again must each be read whole (the session's cached statements read every bulk)."""
    from digest.model import EntryRef
    from digest.store import Store
    from digest.store.sqlite import pack_rows

    def bulk(name: str, papers: int, files: int, source: str = "") -> bytes:
        at = source or f"seeds/{name}.md"
        entries = [EntryRef(f"{name}.{n:05d}", f"hash-{n}", at, 1 + 5 * n) for n in range(papers)]
        cache = [(f"seeds/{name}-{n}.md", n, n, f"xxh3-128:{n}", b"x" * 3000) for n in range(files)]
        return pack_rows([entries, cache])

    with Store.open(tmp_path / "digest.db") as store, store.transaction():
        repeats = [
            store.record_packed(bulk("a", 3000, 40), 3000, WEEK_1),
            store.record_packed(bulk("b", 2, 1), 2, WEEK_1),
            store.record_packed(bulk("c", 1500, 7), 1500, WEEK_1),
            store.record_packed(bulk("a", 10, 2, "seeds/z.md"), 10, WEEK_1),
        ]
    entries = run_sql(tmp_path / "digest.db", "SELECT source, COUNT(*) FROM entries GROUP BY source ORDER BY source")
    files = run_sql(tmp_path / "digest.db", "SELECT COUNT(*), SUM(LENGTH(scan)) FROM seed_files")
    assert entries == [("seeds/a.md", 3000), ("seeds/b.md", 2), ("seeds/c.md", 1500)]
    assert files == [(40 + 1 + 7, (40 + 1 + 7) * 3000)]  # the last bulk's two rows update the first bulk's
    assert repeats[:3] == [[], [], []]
    assert repeats[3] == [
        ("seeds/z.md", 1 + 5 * n, EntryRef(f"a.{n:05d}", f"hash-{n}", "seeds/a.md", 1 + 5 * n)) for n in range(10)
    ]


@pytest.mark.slow
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: no worker processes")
def test_a_packed_first_import_killed_at_any_moment_leaves_nothing_half_recorded(workspace: Workspace) -> None:
    """kill -9 while the workers pack and the state takes their bulks (or later): each render either recorded the
    whole import with its issue or nothing of it (the bulks only ever lived in memory), its parse workers end
    with it, and in the end every paper is recorded once and published at most once."""
    for n in range(6000):  # well over PARALLEL_MIN_FILES: the packed path, for a second or so
        workspace.add_seed(f"bulk_{n:04d}.md", _paper(n) + _paper(n + 1))  # each file repeats the next one's paper
    rng = random.Random(20261207)
    for week in range(1, 5):
        proc = workspace.popen("render", "--now", f"2026-11-{week + 1:02d}T08:00:00+08:00")
        time.sleep(rng.uniform(0.45, 0.95))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)  # returns once its parse workers, which hold its output pipe, are gone too
        recorded = workspace.sql("SELECT COUNT(*) FROM entries") if workspace.has_state() else [(0,)]
        assert recorded in ([(0,)], [(6001 + 23,)])  # all of the import or none of it
    workspace.run("render", "--now", "2026-11-23T08:00:00+08:00", check=False)

    assert workspace.sql("PRAGMA integrity_check") == [("ok",)]
    ids = [row[0] for row in workspace.sql("SELECT id FROM entries")]
    assert len(ids) == len(set(ids)) == 6001 + 23  # 2501.00000 to 2501.06000, and the sample seeds' papers
    assert workspace.sql("SELECT COUNT(*) FROM seed_files") == [(6002,)]
    published = [row[0] for row in workspace.sql("SELECT entry_id FROM issue_entries")]
    assert published and len(published) == len(set(published))
    numbers = [row[0] for row in workspace.sql("SELECT number FROM issues ORDER BY number")]
    assert numbers == list(range(1, len(numbers) + 1))


def test_a_template_error_in_the_worker_is_reported_as_one_rendered_here(bulk: list[str], tmp_path: Path) -> None:
    """The worker's failure is not the message: the files are rendered again in this process, whose error names
    the template's file and line as every other render does; nothing is recorded."""
    templates = tmp_path / "templates"
    templates.mkdir()
    shipped = (default_templates_dir() / "issue.html.j2").read_text(encoding="utf-8")
    (templates / "issue.html.j2").write_text(shipped.replace("{{ title }}", "{{ titel }}", 1), encoding="utf-8")
    line = shipped[: shipped.index("{{ title }}")].count("\n") + 1
    publisher = Publisher(load_settings(templates_dir=templates, state_path=tmp_path / "state" / "digest.db"))

    with pytest.raises(Exception) as failed:
        publisher.publish_next_issue(WEEK_1)

    assert bulk == ["packed"]
    assert template_error_line(failed.value) == f"templates/issue.html.j2:{line}: 'titel' is undefined"
    assert run_sql(tmp_path / "state" / "digest.db", "SELECT COUNT(*) FROM entries") == [(0,)]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: the files are parsed and rendered in this process")
def test_a_bulk_first_import_leaves_the_templates_to_a_worker(workspace: Workspace) -> None:
    """This process records the papers the parse workers send; issue 1's pages, feeds and email are rendered in a
    worker, so no template engine, feed writer or MJML compiler loads here (each costs this process 0.1 s)."""
    for n in range(600):  # over PARALLEL_MIN_FILES: the packed path
        workspace.add_seed(f"bulk_{n:04d}.md", _paper(n))
    not_needed = ["feedgen", "jinja2", "lxml", "mjml"]
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['digest', 'render', '--now', '2026-11-23T08:00:00+08:00']\n"
        "try:\n    runpy.run_module('digest', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        f"print('loaded:', sorted(m for m in sys.modules if m in {not_needed!r} or m == 'digest.parallel_build'))"
    )

    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=workspace.root,
        env=workspace.env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert "published issue 1" in result.stdout, result.stderr
    assert result.stdout.splitlines()[-1] == "loaded: ['digest.parallel_build']"  # and none of the others
    assert (workspace.site / "issues" / "1" / "index.html").is_file()
