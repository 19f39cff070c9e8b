"""Which topics a paper belongs to: a pure function of the entry and the topic rules (no I/O, no state).

Topics are derived at render time, so changing the rules and running `digest rebuild` regroups every paper;
paper ids never depend on topics. The order of the rules matters: a paper's first topic (its primary topic,
under which an issue page lists it) is the first matching rule in the configured order.

How a paper is matched, in order:
1. the seed's `Topics:` line, when it names at least one known topic (unknown slugs are reported, not used);
2. every topic whose rules match the English or Chinese title;
3. else the topic whose rules match the abstract most often (the earlier rule on a tie);
4. else the fallback topic (the one without keywords and patterns), if there is one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from digest.model import Entry, Problem, Topic

__all__ = [
    "DEFAULT_TOPICS",
    "TopicRules",
    "assign_topics",
    "compile_topics",
    "group_by_topic",
    "papers_in_topics",
    "primary_topic",
    "topic_problems",
]

#: The shipped topics for an AI paper digest, most specific first (the first match is a paper's primary topic).
DEFAULT_TOPICS: tuple[Topic, ...] = (
    Topic(
        "robotics",
        "机器人与具身智能",
        "Robotics & Embodied AI",
        keywords=("robot*", "embodied", "manipulation", "locomotion", "imitation learning", "机器人", "具身",
                  "模仿学习", "机械臂"),
    ),
    Topic(
        "agents",
        "智能体",
        "Agents",
        keywords=("agent*", "tool use", "tool-use", "web navigation", "gui", "智能体", "工具调用"),
    ),
    Topic(
        "ai-for-science",
        "AI for Science",
        "AI for Science",
        keywords=("weather", "climate", "medicine", "medical", "clinical", "molecul*", "protein", "biolog*",
                  "chemistry", "physics", "天气", "气候", "医学", "医疗", "临床", "分子", "蛋白质", "生物", "化学"),
    ),
    Topic(
        "diffusion",
        "扩散模型与图像生成",
        "Diffusion & Image Generation",
        keywords=("diffusion", "text-to-image", "image generation", "image generator", "image editing",
                  "video generation", "video synthesis", "inpainting", "扩散", "图像生成", "视频生成", "文生图",
                  "图像编辑", "视频合成"),
        patterns=(r"visual generation", r"generat\w* (?:\w+ )?(?:images?|videos?|3d|4d)"),
    ),
    Topic(
        "multimodal",
        "多模态与视觉语言",
        "Multimodal & Vision-Language",
        keywords=("multimodal", "multi-modal", "vision-language", "vlm", "mllm", "visual question", "多模态",
                  "视觉-语言", "视觉语言"),
        patterns=(r"language and vision", r"vision and language"),
    ),
    Topic(
        "efficiency",
        "高效训练与推理",
        "Efficiency & Inference",
        keywords=("inference", "efficient", "sparsity", "sparse", "pruning", "quantiz*", "kv cache", "long sequence",
                  "推理加速", "推理效率", "稀疏", "量化", "剪枝", "高效"),
    ),
    Topic(
        "evaluation",
        "评测与基准",
        "Evaluation & Benchmarks",
        keywords=("benchmark", "evaluat*", "judge", "judgment", "leaderboard", "评测", "基准", "评估"),
    ),
    Topic(
        "llm",
        "大语言模型",
        "Large Language Models",
        keywords=("llm", "language model", "gpt", "post-training", "pre-training", "instruction tuning", "rlhf",
                  "o1", "大语言模型", "语言模型", "大模型", "预训练", "后训练"),
    ),
    Topic("other", "其他", "Other"),
)  # fmt: skip

_ASCII_WORD_START = re.compile(r"^[a-z0-9]", re.IGNORECASE)


def _keyword_pattern(keyword: str, *, lowered: bool = False) -> str:
    # An ASCII keyword is a whole word, plural allowed ("gui" is not in "guided", "benchmark" matches
    # "benchmarks"), or a word prefix when it ends with "*" ("evaluat*"); a CJK keyword is a plain substring
    # (Chinese puts no spaces between words). `lowered`: the form for lower-cased text, case-sensitive, with the
    # word-start test after the first letter (`g(?<![a-z0-9]g)pt`, the same as `(?<![a-z0-9])gpt`), so that every
    # branch starts with a plain letter and the regex engine skips ahead to the letters that can start a match.
    prefix = keyword.endswith("*")
    word = keyword.rstrip("*")
    escaped = re.escape(word)
    if not _ASCII_WORD_START.match(keyword):
        return escaped
    end = "" if prefix else r"(?:s|es)?(?![a-z0-9])"
    if lowered:
        first = re.escape(word[0])
        return rf"{first}(?<![a-z0-9]{first}){re.escape(word[1:])}{end}"
    return rf"(?<![a-z0-9]){escaped}{end}"


# The only characters whose lower-case form is not what case-insensitive matching takes them for (İ grows into
# two characters; ı and ſ match "i" and "s" only case-insensitively): text holding one is matched the slow way.
_FOLDS_APART = "İıſ"


@dataclass(frozen=True)
class TopicRules:
    """Topic rules compiled once: one case-insensitive regular expression per topic."""

    topics: tuple[Topic, ...]
    matchers: tuple[re.Pattern[str] | None, ...]
    # Per topic, the lower-case strings one of which any match must contain (None: the topic has regexes, which
    # cannot be screened): a substring test is far cheaper than the regular expression, which then runs only on
    # the texts that pass.
    stems: tuple[tuple[str, ...] | None, ...] = ()
    # Per topic, the same matcher for the lower-cased text: keywords case-sensitive (several times faster),
    # patterns still case-insensitive. Finds what `matchers` find in the original text (tests/test_topics.py).
    lowered: tuple[re.Pattern[str] | None, ...] = ()

    def may_match(self, index: int, lowered: str) -> bool:
        """Whether topic `index` can match the lower-cased text at all."""
        stems = self.stems[index] if self.stems else None
        return stems is None or any(stem in lowered for stem in stems)

    @property
    def slugs(self) -> frozenset[str]:
        """Every configured slug."""
        return frozenset(t.slug for t in self.topics)

    @property
    def fallback(self) -> str | None:
        """The slug of the topic without rules, if any."""
        return next((t.slug for t in self.topics if t.is_fallback), None)


@lru_cache(maxsize=16)
def compile_topics(topics: tuple[Topic, ...]) -> TopicRules:
    """Compile the rules (cached: every renderer calls this with the same `Site.topics`)."""
    matchers: list[re.Pattern[str] | None] = []
    stems: list[tuple[str, ...] | None] = []
    lowered: list[re.Pattern[str] | None] = []
    for topic in topics:
        keywords = [k.lower() for k in topic.keywords if k.strip()]
        parts = [_keyword_pattern(k) for k in keywords]
        parts += [f"(?:{p})" for p in topic.patterns]
        matchers.append(re.compile("|".join(parts), re.IGNORECASE) if parts else None)
        stems.append(None if topic.patterns else tuple(k.rstrip("*") for k in keywords))
        fast = [_keyword_pattern(k, lowered=True) for k in keywords] + [f"(?i:{p})" for p in topic.patterns]
        lowered.append(re.compile("|".join(fast)) if fast else None)
    return TopicRules(topics, tuple(matchers), tuple(stems), tuple(lowered))


@lru_cache(maxsize=16384)  # a rebuild asks about every paper twice (topic index, search): keep a 1,000-issue archive
def assign_topics(entry: Entry, topics: tuple[Topic, ...]) -> tuple[str, ...]:
    """The slugs of `entry`'s topics, primary first (see the module docstring for the order of precedence).

    Cached: one render asks about the same paper for its issue page, search shard and every feed it is in."""
    return _assign(entry, compile_topics(topics))


def _assign(entry: Entry, rules: TopicRules, *, fast: bool = True) -> tuple[str, ...]:
    """`assign_topics` with compiled rules; `fast`: match the lower-cased text where that finds the same."""
    chosen = [slug for slug in entry.topics if slug in rules.slugs]
    if chosen:
        return tuple(dict.fromkeys(chosen))
    titles = f"{entry.title_en}\n{entry.title_zh}"
    in_titles = tuple(rules.topics[index].slug for index, _ in _hits(rules, titles, fast, first_only=True))
    if in_titles:
        return in_titles
    best, best_hits = None, 0
    for index, hits in _hits(rules, "\n".join(entry.abstract), fast, first_only=False):
        if hits > best_hits:
            best, best_hits = rules.topics[index].slug, hits
    if best is not None:
        return (best,)
    return (rules.fallback,) if rules.fallback else ()


def _hits(rules: TopicRules, text: str, fast: bool, *, first_only: bool) -> Iterator[tuple[int, int]]:
    """(topic index, number of matches) for every topic matching `text`, in rule order; with `first_only`, 1
    stands for "at least one"."""
    lowered = text.lower()
    # The lower-cased matchers skip ahead by first letter: faster without the substring screen the others need.
    screen = not fast or any(char in text for char in _FOLDS_APART)
    matchers, subject = (rules.matchers, text) if screen else (rules.lowered, lowered)
    for index, matcher in enumerate(matchers):
        if matcher is None or (screen and not rules.may_match(index, lowered)):
            continue
        hits = (matcher.search(subject) is not None) if first_only else len(matcher.findall(subject))
        if hits:
            yield index, int(hits)


def primary_topic(entry: Entry, topics: tuple[Topic, ...]) -> str | None:
    """The topic an issue page lists `entry` under (its first topic), None when no topic applies."""
    assigned = assign_topics(entry, topics)
    return assigned[0] if assigned else None


def group_by_topic(
    entries: Sequence[Entry], topics: tuple[Topic, ...], chosen: frozenset[str] = frozenset()
) -> list[tuple[Topic | None, list[Entry]]]:
    """Entries grouped under their primary topic, groups in rule order, entries in issue order within a group;
    entries with no topic (no fallback configured) come last under None.

    With `chosen` (a reader's topic slugs), each entry is grouped under the first of its topics that is chosen,
    and entries with none of them are left out: a reader sees only the headings they asked for."""
    rules = compile_topics(topics)
    groups: dict[str | None, list[Entry]] = {}
    for entry in entries:
        if chosen:
            mine = [slug for slug in assign_topics(entry, topics) if slug in chosen]
            if mine:
                groups.setdefault(mine[0], []).append(entry)
            continue
        groups.setdefault(primary_topic(entry, topics), []).append(entry)
    ordered: list[tuple[Topic | None, list[Entry]]] = [
        (topic, groups[topic.slug]) for topic in rules.topics if topic.slug in groups
    ]
    if None in groups:
        ordered.append((None, groups[None]))
    return ordered


def papers_in_topics(entries: Sequence[Entry], topics: tuple[Topic, ...], chosen: Iterable[str]) -> tuple[Entry, ...]:
    """The entries (in order) having at least one of the `chosen` topic slugs among their topics: what a reader
    who picked those topics gets. Slugs no longer configured are ignored; none left means every entry."""
    wanted = frozenset(chosen) & compile_topics(topics).slugs
    if not wanted:
        return tuple(entries)
    return tuple(e for e in entries if wanted.intersection(assign_topics(e, topics)))


def topic_problems(entries: Iterable[Entry], topics: tuple[Topic, ...]) -> list[Problem]:
    """A problem for every slug of a `Topics:` line that names no configured topic (the entry is still
    published, with the known slugs or the rules)."""
    rules = compile_topics(topics)
    problems = []
    for entry in entries:
        unknown = [slug for slug in entry.topics if slug not in rules.slugs]
        if unknown:
            known = ", ".join(t.slug for t in rules.topics)
            problems.append(
                Problem(
                    entry.source,
                    entry.line,
                    f"unknown topic {', '.join(map(repr, unknown))} in the Topics: line of {entry.id}"
                    f" (known: {known}); fix the slug or add the topic to [[topics]] in the config",
                    entry_id=entry.id,
                )
            )
    return problems
