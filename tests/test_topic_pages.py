"""Topic pages after a weekly render (digest/build.py): every page whose papers changed that week is written, so
a `digest rebuild` afterwards changes nothing (issue 19)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Workspace


def _topic_pages(site: Path) -> dict[str, bytes]:
    return {p.relative_to(site).as_posix(): p.read_bytes() for p in site.glob("topics/*/page-*.html")}


def test_a_corrected_paper_is_corrected_on_the_full_topic_page_that_holds_it(workspace: Workspace) -> None:
    """One paper a week in topic pages of 2: after five weeks the first pages are full. Correcting the Chinese
    titles of the published papers rewrites the pages that hold them, not only the last one (the emails keep
    what was mailed, so only the topic pages are compared with a rebuild)."""
    workspace.env.update(DIGEST_MAX_ENTRIES_PER_ISSUE="1", DIGEST_ARCHIVE_PAGE_SIZE="2")
    for day in (1, 8, 15, 22, 29):
        workspace.run("render", "--now", f"2026-11-{day:02d}T08:00:00+08:00")
    published = {row[0] for row in workspace.sql("SELECT entry_id FROM issue_entries")}
    for seed in sorted(workspace.seeds.glob("*.txt")):
        lines = seed.read_text(encoding="utf-8").split("\n")
        for k, line in enumerate(lines):
            if line.startswith("[") and any(line.rstrip(")").endswith(paper) for paper in published):
                lines[k] = "[更正：" + line[1:]
        seed.write_text("\n".join(lines), encoding="utf-8")
    result = workspace.run("render", "--now", "2026-12-06T08:00:00+08:00")
    assert "corrected" in result.stdout, result.stdout
    before = _topic_pages(workspace.site)
    assert len(before) >= 3
    assert any("更正：".encode() in data for data in before.values())
    workspace.run("rebuild")
    assert {p for p, data in _topic_pages(workspace.site).items() if before.get(p) != data} == set()
