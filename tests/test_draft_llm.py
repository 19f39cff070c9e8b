"""`digest draft` with a model: a fake OpenAI-compatible server and a fake arXiv API, both on loopback."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from digest.glossary import Answer, Glossary, check_answer, read_glossary
from digest.seeds import parse_seed
from tests.arxiv_util import FakeArxiv, FakePaper, serve_arxiv, settings_for
from tests.conftest import Workspace
from tests.llm_util import FakeModel, serve_model

ROPE = FakePaper(
    "2501.00001",
    "RoPE Scaling for Long-Context LLM Inference",
    "Large language models (LLMs) struggle with long inputs. We extend rotary position embeddings and evaluate"
    " on the benchmark at https://example.org/bench with $O(n \\log n)$ cost.",
    version=2,
)
GRASP = FakePaper(
    "2501.00002", "Grasping with Diffusion Policies", "A robot learns manipulation with a diffusion model."
)


@pytest.fixture
def model() -> Iterator[FakeModel]:
    with serve_model(FakeModel()) as running:
        yield running


@pytest.fixture
def arxiv_api() -> Iterator[FakeArxiv]:
    fake = FakeArxiv()
    fake.add(ROPE)
    fake.add(GRASP)
    with serve_arxiv(fake) as running:
        yield running


@pytest.fixture
def ws(workspace: Workspace, model: FakeModel, arxiv_api: FakeArxiv) -> Workspace:
    workspace.env.update(
        {
            **settings_for(arxiv_api),
            "DIGEST_LLM__BASE_URL": model.url,
            "DIGEST_LLM__MODEL": "qwen2.5:7b",
            "DIGEST_LLM__TIMEOUT": "5",
        }
    )
    (workspace.root / "config").mkdir()
    (workspace.root / "config" / "glossary.csv").write_text(
        "source,target\nLLM,大语言模型\ndiffusion model,扩散模型\n", encoding="utf-8"
    )
    return workspace


def _drafts(ws: Workspace, name: str = "week.md") -> str:
    return (ws.seeds / name).read_text(encoding="utf-8")


def test_good_answers_fill_the_draft_and_a_second_draft_makes_no_request(ws: Workspace, model: FakeModel) -> None:
    first = ws.run("draft", "2501.00001", "2501.00002", "--out", "seeds/week.md")
    assert len(model.requests) == 2
    assert "model: 2 requests," in first.stdout and "completion tokens" in first.stdout
    text = _drafts(ws)
    assert "[关于RoPE Scaling的中文标题](https://arxiv.org/abs/2501.00001)" in text
    assert "大语言模型" in text and "$O(n \\log n)$" in text and "Problem:" not in text
    # Only the terms of the paper go into its prompt.
    rope = next(r for r in model.requests if "RoPE" in r["messages"][1]["content"])
    system = rope["messages"][0]["content"]
    assert "LLM -> 大语言模型" in system and "diffusion model" not in system
    assert rope["response_format"] == {"type": "json_object"} and rope["model"] == "qwen2.5:7b"
    (ws.seeds / "week.md").unlink()
    again = ws.run("draft", "2501.00001", "2501.00002", "--out", "seeds/week.md")
    assert len(model.requests) == 2  # answered from the state's cache
    assert "model: 0 requests" in again.stdout and _drafts(ws) == text
    (ws.seeds / "week.md").unlink()
    ws.run("draft", "2501.00001", "--out", "seeds/week.md", "--refresh")
    assert len(model.requests) == 3


def test_an_english_answer_is_asked_again_once_with_the_reason(ws: Workspace, model: FakeModel) -> None:
    model.script = ["english"]
    ws.run("draft", "2501.00002", "--out", "seeds/week.md")
    assert len(model.requests) == 2
    retry = model.requests[1]["messages"]
    assert retry[-2]["role"] == "assistant" and "the abstract is not mostly Chinese" in retry[-1]["content"]
    assert "[关于Grasping wit的中文标题]" in _drafts(ws) and "Problem:" not in _drafts(ws)


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        ("english", "the abstract is not mostly Chinese"),
        ("broken", "the answer is not a JSON object"),
        ("glossary", 'glossary: "LLM" should be "大语言模型"'),
        ("preamble", "it starts with a preamble instead of the translation"),
        ("structure", "it contains seed-file structure"),
    ],
)
def test_an_answer_refused_twice_leaves_empty_chinese_and_a_problem_line(
    ws: Workspace, model: FakeModel, step: str, reason: str
) -> None:
    model.default = step
    ws.run("draft", "2501.00001", "--out", "seeds/week.md")
    text = _drafts(ws)
    assert "[](https://arxiv.org/abs/2501.00001)" in text
    problem = re.search(r"^Problem: (.*)$", text, re.MULTILINE)
    assert (
        problem and problem.group(1).startswith("the model's answer was refused twice: ") and reason in problem.group(1)
    )
    assert "\x1b" not in text and "## 注入" not in text
    scan = parse_seed(text, "seeds/week.md")
    assert [p.kind.value for p in scan.problems] == ["draft"] and scan.entries == ()
    refused = ws.run("approve", "2501.00001", check=False)
    assert refused.returncode == 1 and "not approved" in refused.stderr


@pytest.mark.parametrize(
    ("step", "reason"), [("500", "HTTP 500"), ("429", "HTTP 429"), ("slow:8", "within the timeout")]
)
def test_a_model_that_fails_is_a_problem_line_not_a_crash(
    ws: Workspace, model: FakeModel, step: str, reason: str
) -> None:
    model.default = step
    ws.env["DIGEST_LLM__TIMEOUT"] = "0.5"
    result = ws.run("draft", "2501.00001", "--out", "seeds/week.md", timeout=120)
    assert "Problem: the model could not be asked: " in _drafts(ws) and reason in _drafts(ws)
    assert "drafted without Chinese" in result.stderr


def test_the_glossary_checks_whole_words_longest_first_plurals_too() -> None:
    glossary = read_glossary(
        "source,target\nLLM,大语言模型\nlanguage model,语言模型\nTransformer,Transformer\n", "g.csv"
    )
    assert glossary.problems("Three LLMs and a Transformer", "三个大语言模型和一个 Transformer") == []
    assert glossary.problems("Three LLMs", "三个法学硕士") == ['"LLM" should be "大语言模型"']
    assert glossary.problems("LLMOps tools", "工具") == []  # not the word LLM
    assert Glossary().problems("LLM", "x") == []


def test_a_bad_glossary_row_names_its_line() -> None:
    with pytest.raises(Exception, match=r"g\.csv:3: expected two columns"):
        read_glossary("source,target\nLLM,大语言模型\nonly-one\n", "g.csv")


def test_latex_and_links_must_survive_the_translation() -> None:
    answer = Answer("长上下文推理", ("本文研究长上下文推理问题，提出新的位置编码方法，成本为 O(n log n)。" * 2,))
    why = check_answer(answer, "T", "We cost $O(n \\log n)$, see https://example.org/x.", Glossary())
    assert "LaTeX changed: $O(n \\log n)$" in why and "links missing: https://example.org/x" in why


def test_render_and_run_never_call_arxiv_or_the_model(ws: Workspace, model: FakeModel, arxiv_api: FakeArxiv) -> None:
    ws.run("draft", "2501.00001", "--out", "seeds/week.md")
    asked = (len(arxiv_api.requests), len(model.requests))
    ws.run("approve", "2501.00001")
    ws.run("render", "--dry-run")
    ws.run("render")
    ws.run("run", "--once")
    ws.run("status")
    ws.run("check")
    assert (len(arxiv_api.requests), len(model.requests)) == asked == (1, 1)
    assert ws.sql("SELECT count(*) FROM issue_entries WHERE entry_id = '2501.00001'") == [(1,)]
