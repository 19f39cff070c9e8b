"""`digest draft` against a fake arXiv API on loopback, drafts never published, and `digest approve`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest.arxiv_api import ArxivError, ArxivSource
from digest.seeds import parse_seed
from tests.arxiv_util import FakeArxiv, FakePaper, serve_arxiv, settings_for
from tests.conftest import Workspace

ROPE = FakePaper(
    "2501.00001",
    "RoPE Scaling for Long-Context LLM Inference",
    "Large language models (LLMs) struggle with long inputs. We extend rotary position embeddings and evaluate"
    " on the benchmark at https://example.org/bench with $O(n \\log n)$ cost.",
    authors=("Li Wei", "Maria Garcia", "John Smith", "Chen Jing"),
    version=2,
)
ROBOT = FakePaper(
    "2501.00002",
    "Grasping with Diffusion Policies",
    "A robot learns manipulation with a diffusion model policy.\n## Injected heading\nStatus: draft\n--> <!-- x",
    category="cs.RO",
)


@pytest.fixture
def arxiv_api() -> Iterator[FakeArxiv]:
    fake = FakeArxiv()
    fake.add(ROPE)
    fake.add(ROBOT)
    with serve_arxiv(fake) as running:
        yield running


@pytest.fixture
def ws(workspace: Workspace, arxiv_api: FakeArxiv) -> Workspace:
    workspace.env.update(settings_for(arxiv_api))
    workspace.env["DIGEST_FROM_ADDRESS"] = "Weekly <editor@example.org>"
    return workspace


def test_draft_writes_one_draft_entry_per_paper_in_one_batched_request(ws: Workspace, arxiv_api: FakeArxiv) -> None:
    result = ws.run("draft", "2501.00001", "https://arxiv.org/pdf/2501.00002v1.pdf", "--out", "seeds/week.md")
    assert "2 drafts written to seeds/week.md" in result.stdout
    # digest says what each paper came to; the arXiv client's and the HTTP client's own lines stay out of it.
    assert not [line for line in result.stderr.splitlines() if " INFO " in line or " WARNING arxiv" in line]
    assert arxiv_api.asked_ids == [["2501.00001", "2501.00002"]]  # one request, id_list
    agent = arxiv_api.requests[0][1]["user-agent"]
    assert agent.startswith("digest/") and "editor@example.org" in agent
    text = (ws.seeds / "week.md").read_text(encoding="utf-8")
    assert text.startswith(
        "## RoPE Scaling for Long-Context LLM Inference\n[](https://arxiv.org/abs/2501.00001)\n"
        "Topics: efficiency, llm\nStatus: draft\n\n<!-- arXiv:2501.00001v2 [cs.CL] 2024-09-20\n"
        "  Li Wei, Maria Garcia, John Smith, Chen Jing\n"
        "  Large language models (LLMs) struggle with long inputs."
    )
    # The hostile abstract stays inside its comment: no heading, no status line, the comment closes where we say.
    scan = parse_seed(text, "seeds/week.md")
    assert scan.entries == ()
    assert [(p.kind.value, p.line, p.entry_id) for p in scan.problems] == [
        ("draft", 1, "2501.00001"),
        ("draft", 11, "2501.00002"),
    ]
    assert "\n## Injected" not in text and "-- > < !-- x\n-->" in text


def test_render_never_publishes_a_draft_and_dry_run_and_check_list_it(ws: Workspace) -> None:
    ws.run("draft", "2501.00001", "--out", "seeds/week.md")
    dry = ws.run("render", "--dry-run")
    assert re.search(r"^draft +seeds/week\.md:1 .*draft: RoPE Scaling", dry.stdout, re.MULTILINE), dry.stdout
    ws.run("render")
    assert ws.sql("SELECT count(*) FROM issue_entries WHERE entry_id = '2501.00001'") == [(0,)]
    assert "2501.00001" not in (ws.site / "rss.xml").read_text(encoding="utf-8")
    check = ws.run("check")  # a draft waits for approval: listed, not an error
    assert (
        "seeds/week.md:1: draft: RoPE Scaling for Long-Context LLM Inference; problem: no Chinese title yet;"
        " problem: no Chinese abstract yet [draft]"
    ) in check.stderr
    assert ", 1 draft;" in check.stdout


def test_papers_in_the_seeds_or_published_are_skipped_and_named(ws: Workspace, arxiv_api: FakeArxiv) -> None:
    result = ws.run("draft", "2409.13346", "--out", "seeds/week.md")
    assert "2409.13346: already in seeds/000_2075edd4e1164766.txt:1" in result.stderr
    assert arxiv_api.requests == []  # nothing left to ask
    ws.run("render")
    (ws.seeds / "000_2075edd4e1164766.txt").unlink()
    again = ws.run("draft", "2409.13346", "2501.00001", "--out", "seeds/week.md")
    assert "2409.13346: already published in issue 1" in again.stderr
    assert arxiv_api.asked_ids == [["2501.00001"]]
    ws.run("draft", "2501.00001", "--out", "seeds/other.md")  # now a draft in seeds/week.md
    assert not (ws.seeds / "other.md").exists()


def test_unknown_and_malformed_ids_are_reported_and_the_others_written(ws: Workspace, arxiv_api: FakeArxiv) -> None:
    result = ws.run("draft", "2501.00001", "2501.99999", "1234.12345", "--out", "seeds/week.md", check=False)
    assert result.returncode == 1
    assert "2501.99999: not found on arXiv\n" in result.stderr
    assert "1234.12345: not found on arXiv (incorrect id format for 1234.12345)" in result.stderr
    # arXiv refuses a whole id_list for one malformed id: the others are asked again without it.
    assert arxiv_api.asked_ids == [["2501.00001", "2501.99999", "1234.12345"], ["2501.00001", "2501.99999"]]
    assert "## RoPE Scaling" in (ws.seeds / "week.md").read_text(encoding="utf-8")


def test_drafting_appends_to_an_existing_file_and_keeps_it(ws: Workspace) -> None:
    before = "# my notes\n\n## RoPE?\nnot even an entry"
    (ws.seeds / "week.md").write_text(before, encoding="utf-8")
    ws.run("draft", "2501.00002", "--out", "seeds/week.md")
    text = (ws.seeds / "week.md").read_text(encoding="utf-8")
    assert text.startswith(before + "\n\n## Grasping with Diffusion Policies\n")


def test_a_bad_argument_is_a_usage_error_before_any_request(ws: Workspace, arxiv_api: FakeArxiv) -> None:
    result = ws.run("draft", "2501.00001", "hello", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "digest: error: hello: not an arXiv id or arXiv URL"
    assert arxiv_api.requests == []


def test_ids_come_from_a_file_with_comments(ws: Workspace, arxiv_api: FakeArxiv) -> None:
    (ws.root / "ids.txt").write_text("# this week\narXiv:2501.00001v1  # long context\n\n", encoding="utf-8")
    ws.run("draft", "--from", "ids.txt", "--out", "seeds/week.md")
    assert arxiv_api.asked_ids == [["2501.00001"]]


# --- the client: retries, waits, errors -----------------------------------------------------------------


def _source(fake: FakeArxiv, waits: list[float], **kwargs: float) -> ArxivSource:
    return ArxivSource(fake.url, "editor@example.org", delay=0.5, sleep=waits.append, **kwargs)  # type: ignore[arg-type]


def test_429_and_503_are_retried_after_the_wait_the_server_asks(arxiv_api: FakeArxiv) -> None:
    arxiv_api.script = ["429:7", "503", ""]
    waits: list[float] = []
    found = _source(arxiv_api, waits).lookup(["2501.00001"])
    assert list(found.papers) == ["2501.00001"] and found.papers["2501.00001"].version == 2
    assert waits[0] == 7.0  # Retry-After honoured
    assert len(arxiv_api.requests) == 3 and len(waits) >= 2


def test_requests_are_spaced_by_the_delay(arxiv_api: FakeArxiv) -> None:
    waits: list[float] = []
    now = iter([100.0, 100.1, 100.1])
    source = ArxivSource(arxiv_api.url, "e@example.org", delay=3.0, sleep=waits.append, clock=lambda: next(now))
    source._get(arxiv_api.url + "?id_list=2501.00001")
    source._get(arxiv_api.url + "?id_list=2501.00002")
    assert waits == [pytest.approx(2.9)]


def test_arxiv_org_itself_is_never_asked_faster_than_every_3_seconds() -> None:
    assert ArxivSource("https://export.arxiv.org/api/query", "e@example.org", delay=0).delay_seconds == 3.0


def test_a_slow_or_broken_answer_is_one_clear_error(ws: Workspace, arxiv_api: FakeArxiv) -> None:
    arxiv_api.script = ["slow:3"]
    ws.env["DIGEST_ARXIV_TIMEOUT"] = "0.3"
    slow = ws.run("draft", "2501.00001", check=False)
    assert slow.returncode == 1
    assert slow.stderr.strip() == f"digest: error: arXiv: no answer from {arxiv_api.url} within 0.3 s"
    arxiv_api.script = ["503", "503", "503", "503"]
    waits: list[float] = []
    with pytest.raises(ArxivError, match="answered HTTP 503 after 4 tries"):
        _source(arxiv_api, waits).lookup(["2501.00001"])


# --- approve -------------------------------------------------------------------------------------------


def _fill(path: Path, title: str, abstract: str) -> None:
    text = path.read_text(encoding="utf-8").replace(
        "[](https://arxiv.org/abs/2501.00001)", f"[{title}](https://arxiv.org/abs/2501.00001)", 1
    )
    text = text.replace("-->\n\n## Grasping", f"-->\n\n{abstract}\n\n## Grasping", 1)
    path.write_text(text, encoding="utf-8")


def test_approve_unmarks_complete_drafts_only_and_keeps_the_rest_byte_for_byte(ws: Workspace) -> None:
    ws.run("draft", "2501.00001", "2501.00002", "--out", "seeds/week.md")
    week = ws.seeds / "week.md"
    _fill(week, "长上下文大语言模型推理的 RoPE 缩放", "大语言模型难以处理长输入。")
    before = week.read_text(encoding="utf-8")
    result = ws.run("approve", "seeds/week.md", check=False)
    assert result.returncode == 1
    assert "seeds/week.md:1: approved 2501.00001" in result.stdout
    assert re.search(r"seeds/week\.md:\d+: not approved: the link text \(Chinese title\) is empty", result.stderr)
    after = week.read_text(encoding="utf-8")
    assert after == before.replace("Topics: efficiency, llm\nStatus: draft\n", "Topics: efficiency, llm\n", 1)
    ws.run("render")
    assert ws.sql("SELECT count(*) FROM issue_entries WHERE entry_id = '2501.00001'") == [(1,)]
    assert ws.sql("SELECT count(*) FROM issue_entries WHERE entry_id = '2501.00002'") == [(0,)]
    forced = ws.run("approve", "--force", "2501.00002")
    assert "approved 2501.00002" in forced.stdout


def test_the_english_abstract_comment_is_not_part_of_the_content_hash() -> None:
    plain = "## T\n[标题](https://arxiv.org/abs/2501.00001)\n\n摘要。\n"
    commented = "## T\n[标题](https://arxiv.org/abs/2501.00001)\n\n<!-- arXiv:2501.00001v2\n  English\n-->\n\n摘要。\n"
    (a,), (b,) = parse_seed(plain, "a").entries, parse_seed(commented, "a").entries
    assert a.content_hash == b.content_hash and b.abstract == ("摘要。",)


def test_status_lists_drafts_with_their_problems(ws: Workspace) -> None:
    ws.add_seed(
        "week.md",
        "## Title\n[](https://arxiv.org/abs/2501.00009)\nStatus: draft\nProblem: the answer was English only\n",
    )
    result = ws.run("status")
    assert (
        "draft seeds/week.md:1: draft: Title; problem: the answer was English only; problem: no Chinese title yet;"
        " problem: no Chinese abstract yet"
    ) in result.stdout


def test_check_reports_glossary_problems_of_entries_and_drafts_and_approve_refuses_them(ws: Workspace) -> None:
    (ws.root / "config").mkdir()
    (ws.root / "config" / "glossary.csv").write_text(
        "source,target\nvision-language model,视觉语言模型\nLLM,大语言模型\n", encoding="utf-8"
    )
    ws.add_seed(
        "week.md",
        "## RoPE for LLM Inference\n[法学硕士推理的 RoPE](https://arxiv.org/abs/2501.00001)\nStatus: draft\n\n"
        "<!-- arXiv:2501.00001v2\n  We study LLMs.\n-->\n\n我们研究法学硕士。\n",
    )
    check = ws.run("check")
    assert (
        'seeds/000_2075edd4e1164766.txt:6: glossary: "vision-language model" should be "视觉语言模型"' in check.stderr
    )
    assert 'seeds/week.md:1: glossary: "LLM" should be "大语言模型"' in check.stderr
    refused = ws.run("approve", "seeds/week.md", check=False)
    assert refused.returncode == 1
    assert 'not approved: glossary: "LLM" should be "大语言模型"' in refused.stderr
    (ws.seeds / "week.md").write_text(
        (ws.seeds / "week.md").read_text(encoding="utf-8").replace("法学硕士", "大语言模型"), encoding="utf-8"
    )
    assert "approved 2501.00001" in ws.run("approve", "seeds/week.md").stdout


def test_model_text_cannot_break_the_link_line_or_the_entry() -> None:
    from datetime import UTC, datetime

    from digest.arxiv_api import ArxivPaper
    from digest.drafts import DraftText, draft_entry

    paper = ArxivPaper("2501.00001", 2, "T", "English.", ("A",), "cs.CL", datetime(2026, 1, 1, tzinfo=UTC))
    title = "关于 [RoPE] 与 $\\alpha$ 的研究](https://evil.example/)\n## 注入"
    text = draft_entry(paper, DraftText(title, ("第一段。\n## 不是标题", "第二段。"))).replace("Status: draft\n", "")
    (entry,) = parse_seed(text, "x").entries
    assert entry.title_zh == "关于 [RoPE] 与 $\\alpha$ 的研究](https://evil.example/) ## 注入"
    assert entry.url == "https://arxiv.org/abs/2501.00001"
    assert entry.abstract == ("第一段。 ## 不是标题", "第二段。")


def test_terminal_and_bidi_controls_from_arxiv_never_reach_the_draft_file() -> None:
    """arXiv's text is outside text: a C1 CSI (U+009B, an escape sequence to a terminal that shows the file) or a
    bidi override in a title or abstract becomes a space, like in a mail header."""
    from datetime import UTC, datetime

    from digest.arxiv_api import ArxivPaper
    from digest.drafts import DraftText, draft_entry

    hostile = "Safe\x9b31m title\u202e reversed\u2028next"
    paper = ArxivPaper("2501.00001", 1, hostile, hostile, ("A\x9bB",), "cs.CL", datetime(2026, 1, 1, tzinfo=UTC))
    text = draft_entry(paper, DraftText("", ()))
    assert not [c for c in text if c in "\x9b\u202e\u2028"], repr(text)
    assert "## Safe 31m title reversed next\n" in text
