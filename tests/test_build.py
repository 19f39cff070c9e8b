"""The table of outputs (digest/build.py): every file the build writes is one row, rendering and rebuild and
`digest serve` read it, and a new row is all a new kind of file needs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from digest import build
from digest.build import OUTPUTS, Output, Refresh, Scope, media_type
from digest.publisher import Publisher
from digest.settings import load_settings
from digest.web.static import content_type
from tests.conftest import Workspace
from tests.test_web import Server, start_server

MARKERS = {".digest-state", ".digest-build.json"}  # what the folder says about itself: not rendered files


def _rows_of(path: str) -> list[Output]:
    """The rows whose pattern matches `path`."""
    found = []
    for row in OUTPUTS:
        parts = re.split(r"\{(\w+)\}", row.pattern)
        regex = "".join(r"[^/]+" if k % 2 else re.escape(part) for k, part in enumerate(parts))
        if re.fullmatch(regex, path):
            found.append(row)
    return found


def _files(site: Path) -> dict[str, bytes]:
    return {p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*") if p.is_file()}


def _weeks(workspace: Workspace, papers: int) -> Workspace:
    """Five weekly renders of the sample seeds in issues of `papers` papers and archive pages of 2 (so that there
    are full and last archive and topic pages)."""
    workspace.env.update(DIGEST_MAX_ENTRIES_PER_ISSUE=str(papers), DIGEST_ARCHIVE_PAGE_SIZE="2")
    workspace.env["DIGEST_FEED_MAX_ITEMS"] = "4"
    for day in (1, 8, 15, 22, 29):
        workspace.run("render", "--now", f"2026-11-{day:02d}T08:00:00+08:00")
    return workspace


@pytest.fixture
def weeks(workspace: Workspace) -> Workspace:
    """One paper a week: no topic gains more than one paper, so no topic page fills up unseen."""
    return _weeks(workspace, 1)


def _in_process(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Publisher:
    monkeypatch.chdir(workspace.root)
    for key, value in workspace.env.items():
        if key.startswith("DIGEST_"):
            monkeypatch.setenv(key, value)
    return Publisher(load_settings())


def test_every_file_the_build_writes_is_exactly_one_row_and_every_row_is_written(weeks: Workspace) -> None:
    weeks.run("rebuild")  # also the full topic pages, which a weekly run never renders again
    files = set(_files(weeks.site)) - MARKERS
    assert files
    assert {path: len(_rows_of(path)) for path in files if len(_rows_of(path)) != 1} == {}
    assert [row.pattern for row in OUTPUTS if not any(row in _rows_of(path) for path in files)] == []


def test_a_weekly_render_writes_the_same_bytes_as_a_rebuild(weeks: Workspace) -> None:
    """What `changed_outputs` picks each week is all that changes: a rebuild afterwards changes nothing."""
    before = _files(weeks.site)
    result = weeks.run("rebuild")
    assert "0 files changed" in result.stdout
    assert _files(weeks.site) == before


def test_a_week_that_adds_several_papers_to_a_topic_writes_every_page_they_land_on(workspace: Workspace) -> None:
    """With 3 papers a week and pages of 2, a week can fill the llm topic's last page and start the next: both
    pages are written that week (once, only `digest rebuild` wrote the full one, and page-2.html stayed short)."""
    weeks = _weeks(workspace, 3)
    before = _files(weeks.site)
    weeks.run("rebuild")
    assert _files(weeks.site) == before


def test_serve_sends_every_built_file_with_the_media_type_of_its_row(weeks: Workspace) -> None:
    server: Server = start_server(weeks)
    try:
        with httpx.Client(base_url=server.base, timeout=10) as client:
            for path in sorted(set(_files(weeks.site)) - MARKERS):
                if path.split("/")[-2:-1] == [".mail"]:
                    continue  # the email as mailed: never served
                [row] = _rows_of(path)
                got = client.get("/" + path).headers["content-type"]
                assert (path, got) == (path, f"{row.media_type}; charset=utf-8")
    finally:
        server.stop()
    # RFC 5005 archive documents are Atom feeds, not "application/xml"
    assert content_type("archive/issues-1.xml") == "application/atom+xml; charset=utf-8"


@pytest.fixture
def extra_rows(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A new site-wide file and a new per-issue file, each one renderer and one row."""
    csv = Output(
        "papers.csv",
        "text/csv",
        Scope.SITE,
        Refresh.ALWAYS,
        lambda b, v: "".join(f"{i.number},{len(i.entries)}\n" for i in v.feed_issues).encode(),
    )
    titles = Output(
        "issues/{number}/titles.txt",
        "text/plain",
        Scope.ISSUE,
        Refresh.CHANGED,
        lambda b, v: "\n".join(e.title_en for e in v.issue.entries).encode(),
    )
    monkeypatch.setattr(build, "OUTPUTS", (*OUTPUTS, csv, titles))
    yield


def test_a_new_row_is_rendered_by_render_and_rebuild_and_served_with_its_type(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, extra_rows: None
) -> None:
    workspace.env["DIGEST_MAX_ENTRIES_PER_ISSUE"] = "3"
    publisher = _in_process(workspace, monkeypatch)
    issue = publisher.publish_next_issue(datetime.fromisoformat("2026-11-01T08:00:00+08:00")).issue
    assert issue is not None
    titles = "\n".join(e.title_en for e in issue.entries).encode()
    assert (workspace.site / "issues/1/titles.txt").read_bytes() == titles
    assert (workspace.site / "papers.csv").read_bytes() == b"1,3\n"
    (workspace.site / "issues/1/titles.txt").unlink()
    (workspace.site / "papers.csv").unlink()
    publisher.rebuild(workers=1)
    assert (workspace.site / "issues/1/titles.txt").read_bytes() == titles
    assert (workspace.site / "papers.csv").read_bytes() == b"1,3\n"
    assert media_type("papers.csv") == "text/csv"
    assert content_type("papers.csv") == "text/csv; charset=utf-8"
    assert content_type("issues/7/titles.txt") == "text/plain; charset=utf-8"
