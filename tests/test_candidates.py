"""`digest candidates` against the fake arXiv API: a category listing with papers already published, papers close to
the archive (the sample seeds), off-topic ones and enough filler to need several pages."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from digest.drafts import parse_paper_ids
from tests.arxiv_util import FakeArxiv, FakePaper, serve_arxiv, settings_for
from tests.conftest import Workspace

NOW = "2026-12-07T08:00:00+00:00"
DAY = "2026-12-0{}T10:00:00Z"

PUBLISHED = FakePaper(  # Star Attention, in the sample seeds and published by the first render
    "2411.17116",
    "Star Attention: Efficient LLM Inference over Long Sequences",
    "Block-sparse attention.",
    published=DAY.format(5),
)
CLOSE_LLM = FakePaper(
    "2612.00101",
    "Efficient LLM Inference over Long Sequences with Sparse Star Attention",
    "We make inference of large language models over long sequences efficient.",
    published=DAY.format(3),
)
CLOSE_IMAGE = FakePaper(
    "2612.00102",
    "Universal Control for Diffusion Transformer Image Generation",
    "Minimal control of a diffusion transformer for personalized image generation and editing.",
    category="cs.CV",
    published=DAY.format(4),
)
OFF_TOPIC = FakePaper(
    "2612.00103",
    "Soil Moisture Estimation in Agricultural Fields",
    "A hierarchical Bayesian study of rainfall and irrigation.",
    published=DAY.format(6),
)
EXCLUDED = FakePaper(
    "2612.00104",
    "Efficient LLM Inference over Long Sequences for Medical Reports",
    "Star attention for hospital records.",
    published=DAY.format(2),
)
TOO_OLD = FakePaper(
    "2611.00105",
    "Efficient LLM Inference over Long Sequences, Revisited",
    "Long sequence inference for large language models.",
    published="2026-11-01T10:00:00Z",
)
OTHER_CATEGORY = FakePaper(
    "2612.00106",
    "Efficient LLM Inference over Long Sequences on Phones",
    "Long sequence inference.",
    category="cs.AR",
    published=DAY.format(5),
)
FILLER = [
    FakePaper(f"2612.{i:05d}", f"Coral reef survey {i}", "Counting fish in shallow water.", published=DAY.format(1))
    for i in range(200, 330)
]


@pytest.fixture
def arxiv_api() -> Iterator[FakeArxiv]:
    fake = FakeArxiv()
    for paper in [PUBLISHED, CLOSE_LLM, CLOSE_IMAGE, OFF_TOPIC, EXCLUDED, TOO_OLD, OTHER_CATEGORY, *FILLER]:
        fake.add(paper)
    with serve_arxiv(fake) as running:
        yield running


@pytest.fixture
def ws(workspace: Workspace, arxiv_api: FakeArxiv) -> Workspace:
    workspace.env.update(settings_for(arxiv_api))
    workspace.env["DIGEST_CANDIDATES_EXCLUDE"] = '["medical"]'
    workspace.run("render")  # publishes the sample seeds: the archive
    return workspace


def ranked_ids(stdout: str) -> list[str]:
    return re.findall(r"^(\d{4}\.\d{5}) ", stdout, re.MULTILINE)


def test_close_papers_rank_first_published_and_excluded_ones_nowhere(ws: Workspace, arxiv_api: FakeArxiv) -> None:
    result = ws.run("candidates", "--category", "cs.CL,cs.CV", "--days", "7", "--limit", "200", "--now", NOW)
    ids = ranked_ids(result.stdout)
    assert ids[:2] == ["2612.00101", "2612.00102"], result.stdout
    assert "2411.17116" not in ids  # published
    assert "2612.00104" not in ids  # "medical" is a candidates_exclude phrase
    assert "2611.00105" not in ids and "2612.00106" not in ids  # older than 7 days; another category
    assert ids.index("2612.00103") > 1 and len(ids) == 3 + len(FILLER)
    star = next(line for line in result.stdout.splitlines() if line.startswith("2612.00101"))
    assert "near 2411.17116 Star Attention" in star
    assert "1 already in the seeds or published, 1 excluded" in result.stdout
    # The listing was read page by page, newest first, in the two categories, and left at the first older paper.
    queries = [path for path, _ in arxiv_api.requests]
    assert len(queries) == 2 and "start=100" in queries[1]
    assert all("sortBy=submittedDate" in q and "cat%3Acs.CL+OR+cat%3Acs.CV" in q for q in queries)


def test_keywords_lift_a_paper_and_the_list_feeds_draft(ws: Workspace, arxiv_api: FakeArxiv) -> None:
    ws.env["DIGEST_CANDIDATES_KEYWORDS"] = '["soil moisture"]'
    ws.env["DIGEST_CANDIDATES_CATEGORIES"] = '["cs.CL", "cs.CV"]'
    result = ws.run("candidates", "--limit", "3", "--out", "ids.txt", "--now", NOW)
    assert ranked_ids(result.stdout)[0] == "2612.00103", result.stdout
    assert "keywords: soil moisture" in result.stdout
    listed = (ws.root / "ids.txt").read_text(encoding="utf-8")
    ids, bad = parse_paper_ids(listed.splitlines())
    assert bad == [] and ids[0] == "2612.00103" and len(ids) == 3
    assert re.search(r"^2612\.00103  # 1\.\d\d Soil Moisture Estimation .*keywords: soil moisture", listed, re.M)
    ws.run("draft", "--from", "ids.txt", "--out", "seeds/week.md")
    assert (ws.seeds / "week.md").read_text(encoding="utf-8").count("Status: draft") == 3
    again = ws.run("candidates", "--limit", "200", "--now", NOW)
    assert not set(ids) & set(ranked_ids(again.stdout))  # drafted papers are in the seeds now


def test_hostile_titles_are_escaped_and_a_bad_category_is_refused(ws: Workspace, arxiv_api: FakeArxiv) -> None:
    arxiv_api.add(FakePaper("2612.00999", "Evil \u202e title \x9b2J", "x", published=DAY.format(6)))
    result = ws.run("candidates", "--category", "cs.CL", "--limit", "200", "--out", "ids.txt", "--now", NOW)
    listed = (ws.root / "ids.txt").read_text(encoding="utf-8")
    assert "\u202e" not in result.stdout + listed and "\x9b" not in result.stdout + listed
    assert "Evil \\u202e title \\x9b2J" in result.stdout
    bad = ws.run("candidates", "--category", "cs.CL OR all:x", "--now", NOW, check=False)
    assert bad.returncode == 2 and "not an arXiv category" in bad.stderr
