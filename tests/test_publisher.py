"""The publisher facade, driven in-process: rebuild on several cores gives the same files as one core."""

from __future__ import annotations

import pytest

from digest.publisher import Publisher
from digest.settings import load_settings
from tests.conftest import Workspace


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
