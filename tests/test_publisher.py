"""The publisher facade, driven in-process: rebuild on several cores gives the same files as one core; a first import
that fails writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digest import catalog
from digest.errors import DigestError
from digest.model import SeedFile
from digest.publisher import Publisher
from digest.settings import load_settings
from tests.conftest import Workspace

NOW = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)


def paper(n: int) -> str:
    return f"## Paper {n}\n[论文 {n}](https://arxiv.org/abs/2601.{n:05d})\n\n摘要 {n}。\n\n"


def test_parallel_rebuild_writes_the_same_files_as_a_single_process(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace.env["DIGEST_MAX_ENTRIES_PER_ISSUE"] = "5"
    for week in range(1, 6):
        workspace.run("render", "--now", f"2026-12-{week:02d}T08:00:00+08:00")
    files = {p.relative_to(workspace.site): p.read_bytes() for p in workspace.site.rglob("*") if p.is_file()}
    for path in workspace.site.rglob("*.html"):
        path.unlink()

    monkeypatch.chdir(workspace.root)
    for key, value in workspace.env.items():
        if key.startswith("DIGEST_"):
            monkeypatch.setenv(key, value)
    done: list[int] = []
    Publisher(load_settings()).rebuild(progress=done.append, chunk=1, workers=2)

    assert sum(done) == 5
    after = {p.relative_to(workspace.site): p.read_bytes() for p in workspace.site.rglob("*") if p.is_file()}
    assert after == files


def test_rebuild_workers_writing_into_the_same_folders_keep_each_others_temp_files(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every archive page is rendered by a worker, next to the others in archive/ and search/: no process may take
    another's half-written file for a leftover of a killed run (a 1,000-issue rebuild failed so)."""
    workspace.env["DIGEST_MAX_ENTRIES_PER_ISSUE"] = "1"
    workspace.env["DIGEST_ARCHIVE_PAGE_SIZE"] = "1"  # an archive page, shard and sitemap per issue
    for day in range(1, 13):
        workspace.run("render", "--now", f"2026-12-{day:02d}T08:00:00+08:00")
    files = {p.relative_to(workspace.site): p.read_bytes() for p in workspace.site.rglob("*") if p.is_file()}
    leftover = workspace.site / "archive" / ".page-1.html.killed.tmp"
    monkeypatch.chdir(workspace.root)
    for key, value in workspace.env.items():
        if key.startswith("DIGEST_"):
            monkeypatch.setenv(key, value)
    for _ in range(3):
        for path in workspace.site.rglob("*"):
            if path.is_file():
                path.unlink()  # every file is written again, through a temp file
        leftover.write_bytes(b"half a page")
        Publisher(load_settings()).rebuild(chunk=1, workers=2)
        assert not leftover.exists()
        after = {p.relative_to(workspace.site): p.read_bytes() for p in workspace.site.rglob("*") if p.is_file()}
        assert after == files


def test_a_first_import_that_fails_after_its_issue_was_rendered_writes_nothing(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first import renders issue 1 as soon as its papers are read; a seed file that cannot be read later still
    leaves the site and the state as they were (the files are written only after the whole scan)."""
    workspace.env["DIGEST_MAX_ENTRIES_PER_ISSUE"] = "5"  # the first sample file holds issue 1 twice over
    monkeypatch.chdir(workspace.root)
    for key, value in workspace.env.items():
        if key.startswith("DIGEST_"):
            monkeypatch.setenv(key, value)
    unreadable = sorted(p.name for p in workspace.seeds.iterdir())[-1]
    real_read = catalog.read_seed_file

    def read(file: SeedFile) -> bytes:
        if file.source.endswith(unreadable):
            raise DigestError(f"cannot read seed file {file.source}: Input/output error")
        return real_read(file)

    monkeypatch.setattr(catalog, "read_seed_file", read)
    publisher = Publisher(load_settings())
    with pytest.raises(DigestError, match=f"cannot read seed file .*{unreadable}"):
        publisher.publish_next_issue(NOW)
    assert not workspace.site.exists() or not any(workspace.site.rglob("*.html"))
    assert workspace.sql("SELECT COUNT(*) FROM issues") == [(0,)]
    assert workspace.sql("SELECT COUNT(*) FROM entries") == [(0,)]

    monkeypatch.setattr(catalog, "read_seed_file", real_read)  # the file is readable again
    result = publisher.publish_next_issue(NOW)
    assert result.issue is not None and len(result.issue.entries) == 5
    assert (workspace.site / "issues" / "1" / "index.html").is_file()
