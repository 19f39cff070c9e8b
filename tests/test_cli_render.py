"""End to end through the CLI: `digest render` publishes each paper exactly once, whatever happens."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import feedparser
import lxml.html
import pytest
from lxml import etree

from tests.conftest import Workspace

NOW = "2026-11-23T08:00:00+08:00"
NEXT_WEEK = "2026-11-30T08:00:00+08:00"


def paper(title: str, zh: str, url: str, abstract: str = "这是一段摘要。We study things.") -> str:
    return f"## {title}\n[{zh}]({url})\n\n{abstract}\n\n"


def issue_entries(ws: Workspace) -> dict[int, list[str]]:
    """Issue number -> entry ids in order, straight from the state file."""
    rows = ws.sql("SELECT issue, entry_id FROM issue_entries ORDER BY issue, position")
    result: dict[int, list[str]] = {}
    for issue, entry in rows:
        result.setdefault(issue, []).append(entry)
    return result


def feed_ids(ws: Workspace) -> list[str]:
    parsed = feedparser.parse(str(ws.site / "atom.xml"))
    assert not parsed.bozo, parsed.bozo_exception
    return [e.id for e in parsed.entries]


@pytest.mark.both_states
def test_first_render_publishes_issue_1_with_every_sample_paper(workspace: Workspace) -> None:
    result = workspace.run("render", "--now", NOW)
    assert "published issue 1 with 23 papers" in result.stdout
    assert issue_entries(workspace)[1][0] == "2409.13346"
    for name in ("email.html", "email.txt", "index.html"):
        assert (workspace.site / "issues" / "1" / name).is_file()
    for name in ("index.html", "rss.xml", "atom.xml", "feed.json", "issues.xml"):
        assert (workspace.site / name).is_file()
    assert len(feed_ids(workspace)) == 23


@pytest.mark.both_states
def test_second_render_publishes_nothing_and_changes_no_file(workspace: Workspace) -> None:
    workspace.run("render", "--now", NOW)
    before = {p: p.read_bytes() for p in workspace.site.rglob("*") if p.is_file()}
    result = workspace.run("render", "--now", NEXT_WEEK)
    assert "nothing new" in result.stdout
    assert list(issue_entries(workspace)) == [1]
    after = {p: p.read_bytes() for p in workspace.site.rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.both_states
def test_new_file_with_a_v2_link_of_a_published_paper_publishes_only_new_papers(workspace: Workspace) -> None:
    workspace.run("render", "--now", NOW)
    workspace.add_seed(
        "002_new.md",
        paper("A New Paper", "新论文", "https://arxiv.org/abs/2501.00001")
        + paper("Imagine yourself again", "再次想象", "http://www.arxiv.org/pdf/2409.13346v2.pdf")
        + paper("Another New Paper", "另一篇", "https://example.org/papers/42/"),
    )
    result = workspace.run("render", "--now", NEXT_WEEK)
    assert "published issue 2 with 2 papers" in result.stdout
    assert issue_entries(workspace)[2] == ["2501.00001", "https://example.org/papers/42"]
    page = (workspace.site / "issues" / "2" / "index.html").read_text(encoding="utf-8")
    assert "A New Paper" in page and "Imagine yourself again" not in page
    assert len(feed_ids(workspace)) == 25
    assert len(set(feed_ids(workspace))) == 25


def test_issue_page_of_issue_1_links_to_issue_2_once_it_exists(workspace: Workspace) -> None:
    workspace.run("render", "--now", NOW)
    workspace.add_seed("002_new.md", paper("A New Paper", "新论文", "https://arxiv.org/abs/2501.00001"))
    workspace.run("render", "--now", NEXT_WEEK)
    doc = lxml.html.fromstring((workspace.site / "issues" / "1" / "index.html").read_bytes())
    assert any("2/" in href for href in doc.xpath("//a/@href"))


def test_bad_entry_is_reported_with_file_and_line_and_picked_up_once_fixed(workspace: Workspace) -> None:
    workspace.run("render", "--now", NOW)
    bad = paper("Good One", "好", "https://arxiv.org/abs/2501.00002") + "## Broken One\nno link here\n\n摘要\n"
    path = workspace.add_seed("002_bad.md", bad)
    result = workspace.run("render", "--now", NEXT_WEEK, check=False)
    assert result.returncode == 0  # issue 2 was published: a good week for cron
    assert "seeds/002_bad.md:7:" in result.stderr
    assert "published issue 2 with 1 paper" in result.stdout
    assert issue_entries(workspace)[2] == ["2501.00002"]

    path.write_text(
        paper("Good One", "好", "https://arxiv.org/abs/2501.00002")
        + paper("Broken One", "修好了", "https://arxiv.org/abs/2501.00003"),
        encoding="utf-8",
    )
    result = workspace.run("render", "--now", "2026-12-07T08:00:00+08:00")
    assert issue_entries(workspace)[3] == ["2501.00003"]


def test_check_reports_every_problem_and_exits_1(workspace: Workspace) -> None:
    workspace.add_seed("002_bad.md", "## \n[x](https://a.org)\n\nabc\n\n## Two\n[x](javascript:alert(1))\n\nabc\n")
    workspace.add_seed("003_latin1.txt", "## Caf\xe9\n".encode("latin-1"))
    result = workspace.run("check", check=False)
    assert result.returncode == 1
    assert "seeds/002_bad.md:1:" in result.stderr
    assert "seeds/002_bad.md:7:" in result.stderr
    assert "seeds/003_latin1.txt:1:" in result.stderr
    assert "23 valid entries" in result.stdout


def on_a_terminal(ws: Workspace, *args: str) -> str:
    """What `digest ARGS` shows on a terminal (a pseudo-terminal: click strips some escapes only when piped)."""
    controller, terminal = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "digest", *args],
        cwd=ws.root,
        env=ws.env,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    ) as proc:
        os.close(terminal)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the process has closed the terminal
            while chunk := os.read(controller, 65536):
                shown += chunk
        proc.wait(timeout=60)
    os.close(controller)
    return shown.decode("utf-8").replace("\r\n", "\n")


def test_a_render_with_nothing_new_loads_no_renderer_parser_mail_or_web_code(workspace: Workspace) -> None:
    """The weekly cron run that finds nothing new costs its start-up only (each module below is 10-80 ms)."""
    workspace.run("render", "--now", NOW)
    not_needed = {"digest.build", "digest.seeds", "digest.sending", "digest.transport", "digest.report"}
    not_needed |= {"digest.subscribers", "digest.cli.mailing", "digest.cli.serving", "digest.cli.subscribing"}
    not_needed |= {"jinja2", "mjml", "feedgen", "rich"}
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['digest', 'render', '--now', {NEXT_WEEK!r}]\n"
        "try:\n    runpy.run_module('digest', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        f"print('loaded:', sorted(m for m in sys.modules if m in {sorted(not_needed)!r} or m == 'digest.publisher'))"
    )

    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=workspace.root, env=workspace.env, capture_output=True, text=True, timeout=60
    )

    assert "nothing new" in result.stdout, result.stderr
    assert result.stdout.splitlines()[-1] == "loaded: ['digest.publisher']"  # and none of the others


def test_a_bulk_first_import_shows_its_progress_to_someone_watching_and_nothing_to_a_pipe(
    workspace: Workspace,
) -> None:
    """Reading thousands of seed files takes seconds to minutes: a terminal gets a bar, cron's log stays plain."""
    for n in range(600):  # over PARALLEL_MIN_FILES: the files are read in worker processes
        workspace.add_seed(
            f"bulk_{n:04d}.md", paper(f"Bulk Paper {n}", f"论文{n}", f"https://arxiv.org/abs/2502.{n:05d}")
        )

    piped = workspace.run("render", "--now", NOW)
    shutil.rmtree(workspace.site)
    shutil.rmtree(workspace.root / "state")  # a first import again, now watched
    watched = on_a_terminal(workspace, "render", "--now", NOW)

    assert "published issue 1" in piped.stdout
    assert "reading seed files" not in piped.stdout + piped.stderr
    assert "\x1b" not in piped.stdout + piped.stderr
    assert "reading seed files" in watched
    assert "published issue 1" in watched


def test_a_render_that_renders_every_page_again_shows_its_progress_on_a_terminal(workspace: Workspace) -> None:
    workspace.run("render", "--now", NOW)
    workspace.env["DIGEST_SITE_URL"] = "https://elsewhere.example.org/"

    watched = on_a_terminal(workspace, "render", "--now", NEXT_WEEK)

    assert "rendering every page again" in watched
    assert "settings changed (site_url): re-rendering all pages" in watched


def test_control_characters_in_file_names_and_titles_reach_the_terminal_escaped(workspace: Workspace) -> None:
    """A seed file named with an escape sequence cannot recolour the terminal or fake a line of output."""
    text = paper("Red \x9b31m Alert", "红色", "https://arxiv.org/abs/2501.00004") + "## Broken\nno link\n\n摘要\n"
    workspace.add_seed("002_\x1b[31mred\x1b[0m\n.md", text)
    shown = "seeds/002_\\x1b[31mred\\x1b[0m\\n.md"
    checked = on_a_terminal(workspace, "check")
    dry_run = workspace.run("render", "--dry-run", "--now", NOW, check=False)
    for output in (checked, dry_run.stdout + dry_run.stderr):
        assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f]", output), output
        assert f"\n{shown}:7: expected a Markdown link line" in "\n" + output
    assert f"{shown}:1  Red \\x9b31m Alert" in dry_run.stdout  # the dry run's list of entries


def test_a_seed_file_linking_out_of_the_seeds_folder_is_skipped_with_a_warning(workspace: Workspace) -> None:
    outside = workspace.root / "private.md"
    outside.write_text(paper("Private Notes", "私人笔记", "https://arxiv.org/abs/2501.00009"), encoding="utf-8")
    (workspace.seeds / "010_\x1blink.md").symlink_to(outside)
    (workspace.seeds / "drafts").mkdir()
    draft = paper("Drafted Inside", "在里面", "https://arxiv.org/abs/2501.00010")
    (workspace.seeds / "drafts" / "next.txt").write_text(draft, encoding="utf-8")
    (workspace.seeds / "011_next.md").symlink_to(Path("drafts") / "next.txt")  # stays inside: a seed like any

    result = workspace.run("render", "--now", NOW)
    assert "published issue 1 with 24 papers" in result.stdout
    assert "2501.00010" in issue_entries(workspace)[1] and "2501.00009" not in issue_entries(workspace)[1]
    [warning] = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert "seeds/010_\\x1blink.md: skipped: it links to" in warning and "outside the seeds folder" in warning

    (workspace.root / "seeds-link").symlink_to("seeds")  # the folder itself may be reached through a link
    workspace.env["DIGEST_SEEDS_DIR"] = "seeds-link"
    checked = workspace.run("check")
    assert "24 valid entries" in checked.stdout and "seeds/010_\\x1blink.md: skipped" in checked.stderr


@pytest.mark.both_states
def test_corrected_translation_is_not_republished_but_updates_the_feed_item(workspace: Workspace) -> None:
    workspace.run("render", "--now", NOW)
    first = workspace.seeds / "000_2075edd4e1164766.txt"
    first.write_text(
        first.read_text(encoding="utf-8").replace(
            "想象你自己：无调优个性化图像生成", "想象你自己：免调优的个性化图像生成"
        ),
        encoding="utf-8",
    )
    result = workspace.run("render", "--now", NEXT_WEEK)
    assert "nothing new" in result.stdout and "1 corrected" in result.stdout
    assert list(issue_entries(workspace)) == [1]
    parsed = feedparser.parse(str(workspace.site / "atom.xml"))
    item = next(e for e in parsed.entries if e.id == "https://arxiv.org/abs/2409.13346")
    assert "免调优" in item.content[0].value
    assert item.updated_parsed > item.published_parsed
    page = (workspace.site / "issues" / "1" / "index.html").read_text(encoding="utf-8")
    assert "免调优" in page


@pytest.mark.both_states
def test_dry_run_lists_entries_writes_preview_and_records_nothing(workspace: Workspace) -> None:
    workspace.run("render", "--now", NOW)
    workspace.add_seed(
        "002_new.md",
        paper("Fresh", "新", "https://arxiv.org/abs/2501.00004")
        + paper("Dup", "重复", "https://arxiv.org/abs/2501.00004")
        + "## Bad\n[坏](ftp://x.org/a)\n\nabc\n",
    )
    result = workspace.run("render", "--dry-run", "--now", NEXT_WEEK, check=False)
    assert "[dry run] would publish issue 2 with 1 paper" in result.stdout
    lines = result.stdout.splitlines()
    assert any(line.startswith("new") and "Fresh" in line and "issue 2" in line for line in lines)
    assert any(line.startswith("published") and "in issue 1" in line for line in lines)
    assert any(line.startswith("duplicate") and "002_new.md:6" in line for line in lines)
    assert any(line.startswith("invalid") and "002_new.md:12" in line for line in lines)
    assert (workspace.root / "preview" / "issues" / "2" / "email.html").is_file()
    assert list(issue_entries(workspace)) == [1]
    assert not (workspace.site / "issues" / "2").exists()


HOSTILE = (
    '## <script>alert("t")</script><img src=x onerror=alert(1)> javascript:alert(1)\n'
    '[<a href="javascript:alert(2)">点我</a><svg onload=alert(3)>](https://arxiv.org/abs/2501.06666)\n\n'
    '<script>alert(4)</script> [x](javascript:alert(5)) <iframe src="javascript:alert(6)"></iframe>\n'
    '"><img src=x onerror=alert(7)> {{ 7*7 }} javascript:alert(8) data:text/html,<b>x</b>\n\n'
    "## Sneaky link\n[中文](javascript:alert(9))\n\nabc\n\n"
    "## Sneaky data\n[中文](data:text/html;base64,PHNjcmlwdD4=)\n\nabc\n"
)


OUR_SCRIPTS = {"search.js", "manifest.js"}  # the search page's own static scripts


def _assert_nothing_executable(html: bytes | str, where: str) -> None:
    doc = lxml.html.fromstring(html)
    for script in doc.xpath("//script"):
        # Only data blocks (JSON-LD, with < > & escaped) and the search page's own scripts, never seed text as code.
        if script.get("type") == "application/ld+json":
            assert not set("<>&") & set(script.text or ""), where
            json.loads(script.text or "")
        else:
            assert script.get("src") in OUR_SCRIPTS and not (script.text or "").strip(), where
    assert not doc.xpath("//iframe | //svg | //object | //embed"), where
    for element in doc.iter():
        if not isinstance(element.tag, str):
            continue
        for name, value in element.attrib.items():
            assert not name.lower().startswith("on"), (where, name)
            if name.lower() in ("href", "src", "action", "formaction"):
                assert not value.strip().lower().startswith(("javascript:", "data:", "vbscript:")), (where, value)


def test_hostile_seed_text_never_becomes_markup_in_any_output(workspace: Workspace) -> None:
    workspace.add_seed("002_hostile.md", HOSTILE)
    workspace.run("render", "--now", NOW, check=False)
    assert "2501.06666" in issue_entries(workspace)[1]
    for page in workspace.site.rglob("*.html"):
        _assert_nothing_executable(page.read_bytes(), str(page))
    for name in ("rss.xml", "atom.xml", "issues.xml"):
        tree = etree.parse(str(workspace.site / name))
        texts = tree.xpath("//*[local-name()='encoded' or local-name()='content' or local-name()='description']/text()")
        for text in texts:
            if text.strip():
                _assert_nothing_executable(f"<div>{text}</div>", name)
    feed = json.loads((workspace.site / "feed.json").read_text(encoding="utf-8"))
    for item in feed["items"]:
        _assert_nothing_executable(f"<div>{item['content_html']}</div>", "feed.json")
    text = (workspace.site / "issues" / "1" / "email.txt").read_text(encoding="utf-8")
    assert "{{ 7*7 }}" in text  # template syntax in seeds is shown, not evaluated
    # The search index is JavaScript: seed text in it is JSON with < > & escaped, so it cannot end the script.
    shard = (workspace.site / "search" / "shard-1.js").read_text(encoding="utf-8")
    prefix, suffix = "digestSearch.addShard(1,", ");\n"
    assert shard.startswith(prefix) and shard.endswith(suffix)
    papers = json.loads(shard[len(prefix) : -len(suffix)])
    assert not set("<>&") & set(shard)
    assert any('<script>alert("t")</script>' in p["en"] for p in papers)


@pytest.mark.both_states
def test_rebuild_is_byte_identical_and_restores_deleted_outputs(workspace: Workspace) -> None:
    workspace.run("render", "--now", NOW)
    workspace.add_seed("002_new.md", paper("A New Paper", "新论文", "https://arxiv.org/abs/2501.00001"))
    workspace.run("render", "--now", NEXT_WEEK)
    before = {p.relative_to(workspace.site): p.read_bytes() for p in workspace.site.rglob("*") if p.is_file()}
    (workspace.site / "issues" / "1" / "index.html").unlink()
    (workspace.site / "rss.xml").unlink()
    result = workspace.run("rebuild")
    assert "rebuilt 2 issues" in result.stdout
    after = {p.relative_to(workspace.site): p.read_bytes() for p in workspace.site.rglob("*") if p.is_file()}
    assert after == before


def test_more_entries_than_max_wait_for_the_next_issue(workspace: Workspace) -> None:
    workspace.env["DIGEST_MAX_ENTRIES_PER_ISSUE"] = "10"
    assert "published issue 1 with 10 papers; 13 waiting" in workspace.run("render", "--now", NOW).stdout
    assert "published issue 2 with 10 papers; 3 waiting" in workspace.run("render", "--now", NEXT_WEEK).stdout
    workspace.run("render", "--now", "2026-12-07T08:00:00+08:00")
    assert [len(v) for v in issue_entries(workspace).values()] == [10, 10, 3]


def test_bad_settings_give_one_line_per_problem_and_no_traceback(workspace: Workspace) -> None:
    workspace.env["DIGEST_MAX_ENTRIES_PER_ISSUE"] = "lots"
    workspace.env["DIGEST_TIMEZONE"] = "Mars/Olympus"
    result = workspace.run("render", check=False)
    assert result.returncode == 78
    assert "Traceback" not in result.stderr
    assert "max_entries_per_issue" in result.stderr and "Mars/Olympus" in result.stderr


def test_broken_config_file_is_named(workspace: Workspace) -> None:
    config = workspace.root / "broken.toml"
    config.write_text("title = \n", encoding="utf-8")
    result = workspace.run("--config", str(config), "status", check=False)
    assert result.returncode == 78 and "broken.toml" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["", "render", "rebuild", "check", "status"])
def test_every_command_has_help(workspace: Workspace, command: str) -> None:
    result = workspace.run(*([*command.split(), "--help"]))
    assert "Usage:" in result.stdout


@pytest.mark.both_states
def test_two_concurrent_renders_yield_one_issue(workspace: Workspace) -> None:
    procs = [workspace.popen("render", "--now", NOW) for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert sum("published issue 1" in out for out, _ in outputs) == 1
    assert list(issue_entries(workspace)) == [1]


@pytest.mark.both_states
@pytest.mark.slow
def test_killing_render_at_random_points_never_duplicates_or_loses_a_paper(workspace: Workspace) -> None:
    rng = random.Random(20261123)
    expected = set()
    for round_number in range(12):
        name = f"1{round_number:02d}_batch.md"
        ids = [f"2601.{round_number:02d}{k:03d}" for k in range(5)]
        expected.update(ids)
        workspace.add_seed(name, "".join(paper(f"Paper {i}", f"论文 {i}", f"https://arxiv.org/abs/{i}") for i in ids))
        proc = workspace.popen("render", "--now", f"2026-12-{round_number + 1:02d}T08:00:00+08:00")
        time.sleep(rng.uniform(0.0, 0.9))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    workspace.run("render", "--now", "2027-01-01T08:00:00+08:00")

    published = [entry for entries in issue_entries(workspace).values() for entry in entries]
    assert len(published) == len(set(published)), "a paper was published twice"
    assert expected | {"2409.13346"} <= set(published), "a paper was lost"
    numbers = sorted(issue_entries(workspace))
    assert numbers == list(range(1, len(numbers) + 1)), "issue numbers have a gap"
    on_disk = sorted(int(p.name) for p in (workspace.site / "issues").iterdir())
    assert on_disk == numbers
    ids = feed_ids(workspace)
    assert len(ids) == len(set(ids))
    assert "nothing new" in workspace.run("render").stdout
    assert list(workspace.site.rglob(".*.tmp")) == [], "a killed run's temp file was left behind"


def test_a_no_op_run_still_reports_the_known_problems(workspace: Workspace) -> None:
    workspace.add_seed("002_bad.md", "## Broken\nno link\n\nabc\n")
    first = workspace.run("render", "--now", NOW, check=False)
    second = workspace.run("render", "--now", NEXT_WEEK, check=False)
    assert (first.returncode, second.returncode) == (0, 1)  # issue 1 published; then only errors
    assert "seeds/002_bad.md:2:" in first.stderr and "seeds/002_bad.md:2:" in second.stderr
    assert "nothing new" in second.stdout
