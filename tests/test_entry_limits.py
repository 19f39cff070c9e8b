"""Seed entries over the size limits (`entry_max_bytes`, `title_max_bytes`) are problems at their line, not papers.

One 50 MB abstract made a 53 MB mail per subscriber and a 652 MB site; one 2 MB title made every render fail
while `check` said OK. Both the careful parser and the bulk light scan must refuse them the same way.
"""

from __future__ import annotations

from digest.model import EntryRef
from digest.seeds import EntryLimits, parse_seed, scan_seed
from tests.conftest import Workspace

NOW = "2026-11-23T08:00:00+08:00"


def paper(title: str, zh: str, url: str, abstract: str = "这是一段摘要。We study things.") -> str:
    return f"## {title}\n[{zh}]({url})\n\n{abstract}\n\n"


def refs_of(text: str, limits: EntryLimits) -> tuple[list[EntryRef], list[object]]:
    scan = parse_seed(text, "s.md", limits)
    return [EntryRef(e.id, e.content_hash, e.source, e.line) for e in scan.entries], list(scan.problems)


OK_BEFORE = paper("Before", "之前", "https://arxiv.org/abs/2501.00001")
OK_AFTER = paper("After", "之后", "https://arxiv.org/abs/2501.00003")


def test_an_abstract_over_entry_max_bytes_is_a_problem_at_its_heading() -> None:
    big = paper("Huge", "巨大", "https://arxiv.org/abs/2501.00002", "摘" * 22_000)  # 66 KB of UTF-8
    scan = parse_seed(OK_BEFORE + big + OK_AFTER, "s.md")
    assert [e.title_en for e in scan.entries] == ["Before", "After"]
    (problem,) = scan.problems
    assert problem.line == 6
    assert "entry_max_bytes" in problem.message and "65,536" in problem.message


def test_an_entry_just_under_the_limit_is_published() -> None:
    head = "## Fits\n[刚好](https://arxiv.org/abs/2501.00002)\n\n"
    fits = head + "a" * (65_536 - len(head.encode()) - 1) + "\n"
    assert len(fits.encode()) == 65_536
    scan = parse_seed(fits, "s.md")
    assert not scan.problems and len(scan.entries) == 1
    assert parse_seed(fits + "a", "s.md").problems  # one byte more


def test_titles_over_title_max_bytes_are_problems_at_their_lines() -> None:
    english = paper("Long " * 205 + "x", "中", "https://arxiv.org/abs/2501.00002")  # 1,026 bytes
    chinese = paper("Fine", "长" * 342, "https://arxiv.org/abs/2501.00004")  # 1,026 bytes
    scan = parse_seed(OK_BEFORE + english + chinese + OK_AFTER, "s.md")
    assert [e.title_en for e in scan.entries] == ["Before", "After"]
    assert [(p.line, p.message.split(" is ")[0]) for p in scan.problems] == [
        (6, "the English title"),
        (12, "the Chinese title"),
    ]
    assert all("title_max_bytes" in p.message for p in scan.problems)


def test_the_light_scan_refuses_what_the_parser_refuses() -> None:
    limits = EntryLimits(entry=4096, title=256)
    cases = [
        paper("T" * 256, "中", "https://arxiv.org/abs/2501.00002"),  # at the limit: fine
        paper("T" * 257, "中", "https://arxiv.org/abs/2501.00002"),
        paper("Fine", "中" * 85, "https://arxiv.org/abs/2501.00002"),  # 255 bytes
        paper("Fine", "中" * 86, "https://arxiv.org/abs/2501.00002"),
        paper("Fine", "中", "https://arxiv.org/abs/2501.00002", "a" * 3900),  # fine
        paper("Fine", "中", "https://arxiv.org/abs/2501.00002", "a" * 4100),
        paper("Fine", "中", "https://arxiv.org/abs/2501.00002", "摘" * 1300),  # fine: 3,900 bytes
        paper("Fine", "中", "https://arxiv.org/abs/2501.00002", "摘" * 1400),
        paper("Fine", "中", "https://arxiv.org/abs/2501.00002", "一段。\n\n" * 700),
        paper("Fine  spaced", "中", "https://arxiv.org/abs/2501.00002", "摘" * 1400),  # the careful path
    ]
    for case in cases:
        for text in (case, OK_BEFORE + case + OK_AFTER):
            assert scan_seed(text, "s.md", limits) == refs_of(text, limits)
    assert sum(bool(refs_of(c, limits)[1]) for c in cases) == 6


def test_render_publishes_the_others_and_check_names_the_oversized_entries(workspace: Workspace) -> None:
    for sample in workspace.seeds.iterdir():
        sample.unlink()
    workspace.add_seed(
        "000_week.md",
        OK_BEFORE
        + paper("T" * 2_000_000, "巨大标题", "https://arxiv.org/abs/2501.00002")
        + paper("Huge abstract", "巨大摘要", "https://arxiv.org/abs/2501.00004", "x" * 5_000_000)
        + OK_AFTER,
    )
    check = workspace.run("check", check=False)
    assert check.returncode == 1
    assert "seeds/000_week.md:6: the English title is 1,953 KiB" in check.stderr
    assert "seeds/000_week.md:11: the entry is 4,883 KiB" in check.stderr
    render = workspace.run("render", "--now", NOW, check=False)
    assert "published issue 1 with 2 papers" in render.stdout
    assert "seeds/000_week.md:6: the English title" in render.stderr
    assert "seeds/000_week.md:11: the entry" in render.stderr
    assert len(render.stderr) < 2000  # the problem quotes no part of the huge text
    site_bytes = sum(p.stat().st_size for p in workspace.site.rglob("*") if p.is_file())
    assert site_bytes < 2_000_000
    assert (workspace.site / "issues" / "1" / "email.html").stat().st_size < 100_000


def test_a_changed_limit_applies_to_seed_files_read_before(workspace: Workspace) -> None:
    big = paper("Long read", "长文", "https://arxiv.org/abs/2501.00002", "摘" * 30_000)  # 90 KB
    workspace.add_seed("002_week.md", OK_BEFORE + big)
    first = workspace.run("render", "--now", NOW, check=False)
    assert "seeds/002_week.md:6: the entry is" in first.stderr
    assert "published issue 1 with 24 papers" in first.stdout  # the 23 samples and "Before"
    workspace.env["DIGEST_ENTRY_MAX_BYTES"] = "131072"  # the file is unchanged: its cached scan must not count
    second = workspace.run("render", "--now", "2026-11-30T08:00:00+08:00")
    assert "published issue 2 with 1 paper" in second.stdout
    assert "002_week.md" not in second.stderr


def test_a_raised_limit_lets_a_first_import_publish_a_long_entry(workspace: Workspace) -> None:
    workspace.add_seed("002_week.md", paper("Long read", "长文", "https://arxiv.org/abs/2501.00002", "摘" * 30_000))
    workspace.env["DIGEST_ENTRY_MAX_BYTES"] = "131072"
    result = workspace.run("render", "--now", NOW)
    assert "published issue 1 with 24 papers" in result.stdout
    assert "摘" * 30_000 in (workspace.site / "issues" / "1" / "index.html").read_text(encoding="utf-8")
