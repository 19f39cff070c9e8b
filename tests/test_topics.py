"""Specification of topics: the shipped rules on the real sample papers, the seed's Topics: line, problems."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.model import Entry, Topic
from digest.seeds import parse_seed
from digest.settings import Settings
from digest.topics import (
    DEFAULT_TOPICS,
    _assign,
    assign_topics,
    compile_topics,
    group_by_topic,
    primary_topic,
    topic_problems,
)
from tests.render_samples import seed_entries


def by_title(prefix: str) -> Entry:
    return next(e for e in seed_entries() if e.title_en.startswith(prefix))


@pytest.mark.parametrize(
    ("title", "primary"),
    [
        ("Imagine yourself", "diffusion"),
        ("Material Anything", "diffusion"),
        ("CAT4D", "diffusion"),
        ("YesBut", "multimodal"),
        ("Molmo and PixMo", "multimodal"),
        ("Prithvi WxC", "ai-for-science"),
        ("A Preliminary Study of o1 in Medicine", "ai-for-science"),
        ("RACER", "robotics"),
        ("ShowUI", "agents"),
        ("MaskLLM", "efficiency"),
        ("Star Attention", "efficiency"),
        ("HelloBench", "evaluation"),
        ("From Generation to Judgment", "evaluation"),
        ("TÜLU 3", "llm"),
        ("O1 Replication Journey", "llm"),
    ],
)
def test_the_shipped_rules_give_the_sample_papers_sensible_topics(title: str, primary: str) -> None:
    assert primary_topic(by_title(title), DEFAULT_TOPICS) == primary


def test_every_sample_paper_gets_a_real_topic_and_rule_order_decides_the_primary() -> None:
    for entry in seed_entries():
        topics = assign_topics(entry, DEFAULT_TOPICS)
        assert topics and "other" not in topics, entry.title_en
    # A paper may be in several topics (each topic feed carries it); it is listed once, under the first.
    assert assign_topics(by_title("HelloBench"), DEFAULT_TOPICS) == ("evaluation", "llm")


def test_ascii_keywords_are_words_and_cjk_keywords_are_substrings() -> None:
    topics = (Topic("gui", "界面", "GUI", keywords=("gui", "扩散")), Topic("other", "其他", "Other"))
    entry = replace(by_title("RACER"), abstract=("无关。",))
    assert assign_topics(entry, topics) == ("other",)  # "Language-Guided" does not contain the word "gui"
    assert assign_topics(replace(entry, title_zh="基于扩散模型"), topics) == ("gui",)
    assert assign_topics(replace(entry, title_en="A GUIs agent"), topics) == ("gui",)


def test_the_abstract_decides_only_when_no_title_matches() -> None:
    entry = replace(by_title("RACER"), title_en="Untitled", title_zh="无题", abstract=("扩散模型与扩散过程，机器人。",))
    assert assign_topics(entry, DEFAULT_TOPICS) == ("diffusion",)  # two hits beat one
    assert assign_topics(replace(entry, abstract=("无关。",)), DEFAULT_TOPICS) == ("other",)


def test_a_topics_line_in_the_seed_wins_and_unknown_slugs_are_reported() -> None:
    text = (
        "## Imagine yourself\n[想象你自己](https://arxiv.org/abs/2409.13346)\n"
        "Topics: Robotics，nonsense\n\n扩散模型。\n"
    )
    scan = parse_seed(text, "seeds/x.txt")
    (entry,) = scan.entries
    assert entry.topics == ("robotics", "nonsense")
    assert entry.abstract == ("扩散模型。",)  # the Topics line is not part of the abstract
    assert assign_topics(entry, DEFAULT_TOPICS) == ("robotics",)
    (problem,) = topic_problems([entry], DEFAULT_TOPICS)
    assert str(problem).startswith("seeds/x.txt:1: unknown topic 'nonsense'")
    # Only unknown slugs: the rules decide, the entry is still published.
    only_unknown = replace(entry, topics=("nonsense",))
    assert assign_topics(only_unknown, DEFAULT_TOPICS) == ("diffusion",)


def test_a_topics_line_changes_the_content_hash_but_no_line_keeps_old_hashes() -> None:
    entry = by_title("Imagine yourself")
    assert replace(entry, topics=("llm",)).content_hash != entry.content_hash
    assert replace(entry, topics=()).content_hash == entry.content_hash


def test_grouping_follows_rule_order_and_keeps_issue_order_within_a_topic() -> None:
    entries = seed_entries()[:8]
    groups = group_by_topic(entries, DEFAULT_TOPICS)
    slugs = [topic.slug for topic, _ in groups if topic]
    assert slugs == [t.slug for t in DEFAULT_TOPICS if t.slug in slugs]
    assert sorted(e.id for _, members in groups for e in members) == sorted(e.id for e in entries)


def test_settings_ship_the_defaults_and_refuse_bad_rules() -> None:
    assert Settings().topic_list == DEFAULT_TOPICS
    with pytest.raises(ValueError, match="unique"):
        Settings(topics=[{"slug": "a", "name_zh": "甲", "name_en": "A", "keywords": ["x"]}] * 2)
    with pytest.raises(ValueError, match="regular expression"):
        Settings(topics=[{"slug": "a", "name_zh": "甲", "name_en": "A", "regexes": ["("]}])
    with pytest.raises(ValueError, match="slug"):
        Settings(topics=[{"slug": "Bad Slug", "name_zh": "甲", "name_en": "A"}])


def test_screening_by_substring_never_changes_an_assignment() -> None:
    """The cheap substring screen in front of each case-insensitive regular expression (the matchers of text that
    holds İ, ı or ſ) only skips texts that cannot match."""
    tricky = [
        replace(seed_entries()[0], title_en=title, title_zh="", abstract=(abstract,))
        for title, abstract in [
            ("LLMs and GUIs", ""),
            ("Guided Sampling", "We evaluate guided quantization of KV Cache in VLMs."),
            ("DIFFUSION Models", "扩散模型用于图像生成。"),
            ("Robots", "使用LLM的机器人。Benchmarks, benchmarking, evaluated."),
            ("Nothing here", "Plain text with no keyword at all."),
        ]
    ]
    rules = compile_topics(DEFAULT_TOPICS)
    unscreened = replace(rules, stems=())
    for entry in [*seed_entries(), *tricky]:
        assert _assign(entry, rules, fast=False) == _assign(entry, unscreened, fast=False)


# The lower-cased matchers: the same assignments, several times faster

ODD_TOPICS = (
    *DEFAULT_TOPICS[:-1],
    Topic("cased", "大写", "Cased", patterns=(r"[A-Z]{3}\d", r"\bΣοφία\b", r"(?:kelvin|K)\b")),
    Topic("greek", "希腊", "Greek", keywords=("σύστημα", "straße", "işlem", "c++", ".net", "o1")),
    DEFAULT_TOPICS[-1],
)
tricky_text = st.lists(
    st.sampled_from(
        [*"aAgGpPtTsSkKıİſσςΣßé -.+1o", "\u212a", "GPT", "Gpts", "LLM", "robot", "ROBOTS", "agent", "benchmark",
         "Evaluat", "扩散", "图像生成", "模型", "c++", ".NET", "O1", "ABC1", "ΣΟΦΊΑ", "σοφία", "STRASSE", "İŞLEM"]
    ),
    max_size=20,
).map("".join)  # fmt: skip


@settings(max_examples=400)
@given(tricky_text, tricky_text, st.lists(tricky_text, max_size=2))
def test_the_lower_cased_matchers_assign_what_the_case_insensitive_ones_do(
    title: str, title_zh: str, abstract: list[str]
) -> None:
    entry = replace(seed_entries()[0], title_en=title, title_zh=title_zh, abstract=tuple(abstract))
    for topics in (DEFAULT_TOPICS, ODD_TOPICS):
        rules = compile_topics(topics)
        assert _assign(entry, rules, fast=True) == _assign(entry, rules, fast=False)


def test_the_lower_cased_matchers_assign_the_sample_papers_as_before() -> None:
    rules = compile_topics(DEFAULT_TOPICS)
    for entry in seed_entries():
        assert _assign(entry, rules, fast=True) == _assign(entry, rules, fast=False)
