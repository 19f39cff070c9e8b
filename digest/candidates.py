"""`digest candidates`: the recent papers of some arXiv categories, ranked by how close each is to what this digest
publishes, written as a `digest draft --from` list for the editor to prune.

Ranking: BM25 (the `bm25s` package, which needs only numpy) of each candidate's English title and abstract against
the seeds' papers (English title, and the English abstract a draft keeps), normalised so the closest candidate has
1.0; plus 1.5 per matched `candidates_keywords` phrase and 0.25 when a topic rule matches. A paper matching a
`candidates_exclude` phrase is dropped; a paper already in the seeds or published is never a candidate.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr
from pathlib import Path

from digest.arxiv_api import ArxivPaper, ArxivSource
from digest.drafts import draft_marks, english_abstract, one_line
from digest.editor import _guess_topics, _known_elsewhere
from digest.errors import printable
from digest.seedfiles import list_seed_files
from digest.seeds import parse_seed
from digest.settings import Settings

__all__ = ["Candidate", "Candidates", "candidates_file", "find_candidates"]

FETCH_CAP = 2000  # papers read from a listing at most (20 pages, about a minute at arXiv's pace)
KEYWORD_WEIGHT = 1.5  # an editor's keyword outweighs any similarity (at most 1.0) and a topic
TOPIC_WEIGHT = 0.25


@dataclass(frozen=True)
class Archived:
    """A paper of the seeds as the ranking sees it: id, English title and English text."""

    id: str
    title: str
    text: str


@dataclass(frozen=True)
class Candidate:
    paper: ArxivPaper
    score: float
    topics: tuple[str, ...]
    keywords: tuple[str, ...]
    nearest: Archived | None

    @property
    def why(self) -> str:
        parts = []
        if self.keywords:
            parts.append("keywords: " + ", ".join(self.keywords))
        if self.nearest is not None:
            parts.append(f"near {self.nearest.id} {_short(self.nearest.title, 60)}")
        return "; ".join(parts) or "recent in the categories"


@dataclass
class Candidates:
    """The ranked candidates and what was left out on the way."""

    ranked: list[Candidate]
    fetched: int
    known: int
    excluded: int
    requests: int


def _short(text: str, width: int) -> str:
    text = one_line(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _phrases(phrases: Sequence[str]) -> list[tuple[str, re.Pattern[str]]]:
    return [
        (p, re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, p.split())) + r"(?!\w)", re.IGNORECASE))
        for p in phrases
        if p.strip()
    ]


def archive(settings: Settings) -> list[Archived]:
    """The papers of the seed files that are no drafts (what the digest publishes), with their English text."""
    found: dict[str, Archived] = {}
    for seed in list_seed_files(settings.seeds_dir):
        try:
            text = Path(seed.path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # `digest check` reports it
        lines = text.splitlines(keepends=True)
        heads = [i for i, line in enumerate(lines) if line.startswith("## ") or line.rstrip() == "##"]
        for n, start in enumerate(heads):
            chunk = lines[start : heads[n + 1] if n + 1 < len(heads) else len(lines)]
            if draft_marks(chunk).status is not None:
                continue
            scan = parse_seed("".join(chunk), seed.source)
            for entry in scan.entries[:1]:
                english = english_abstract("".join(chunk))
                found.setdefault(entry.id, Archived(entry.id, entry.title_en, f"{entry.title_en}\n{english}"))
    return list(found.values())


def _similarity(papers: Sequence[ArxivPaper], corpus: Sequence[Archived]) -> list[tuple[float, Archived | None]]:
    """For each paper: its best BM25 score against the corpus and the corpus paper that gave it."""
    if not corpus or not papers:
        return [(0.0, None) for _ in papers]
    import bm25s  # type: ignore[import-untyped]  # noqa: PLC0415 (lazy: bm25s only when used)

    logging.getLogger("bm25s").setLevel(logging.INFO)  # the package sets DEBUG: its index steps are no news

    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([a.text for a in corpus], stopwords="en", show_progress=False), show_progress=False)
    vocabulary = set(retriever.vocab_dict)
    queries = bm25s.tokenize(
        [f"{p.title}\n{p.abstract}" for p in papers], stopwords="en", return_ids=False, show_progress=False
    )
    known = [[w for w in words if w in vocabulary] for words in queries]  # a word the corpus lacks scores nothing
    docs, scores = retriever.retrieve(known, k=1, show_progress=False, n_threads=1)
    out: list[tuple[float, Archived | None]] = []
    for doc, score in zip(docs[:, 0], scores[:, 0], strict=True):
        out.append((float(score), corpus[int(doc)] if score > 0 else None))
    return out


def rank(settings: Settings, papers: Sequence[ArxivPaper], corpus: Sequence[Archived]) -> tuple[list[Candidate], int]:
    """The papers best first (score, then newest), and how many an excluded phrase dropped."""

    exclude = _phrases(settings.candidates_exclude)
    keywords = _phrases(settings.candidates_keywords)
    kept: list[ArxivPaper] = []
    for paper in papers:
        text = f"{paper.title}\n{paper.abstract}"
        if not any(p.search(text) for _, p in exclude):
            kept.append(paper)
    similar = _similarity(kept, corpus)
    top = max((s for s, _ in similar), default=0.0)
    ranked = []
    for paper, (sim, nearest) in zip(kept, similar, strict=True):
        text = f"{paper.title}\n{paper.abstract}"
        matched = tuple(k for k, p in keywords if p.search(text))
        topics = _guess_topics(settings, paper)
        score = (sim / top if top > 0 else 0.0) + KEYWORD_WEIGHT * len(matched) + (TOPIC_WEIGHT if topics else 0.0)
        ranked.append(Candidate(paper, round(score, 3), topics, matched, nearest))
    ranked.sort(key=lambda c: (-c.score, -c.paper.published.timestamp(), c.paper.id))
    return ranked, len(papers) - len(kept)


def find_candidates(
    settings: Settings,
    categories: Sequence[str],
    days: int,
    now: datetime,
    *,
    source: ArxivSource | None = None,
) -> Candidates:
    """List the categories' papers of the last `days` days, drop the known ones and rank the rest."""

    if source is None:
        contact = parseaddr(settings.from_address)[1] or settings.from_address
        source = ArxivSource(
            settings.arxiv_api_url, contact, delay=settings.arxiv_delay, timeout=settings.arxiv_timeout
        )
    papers = source.recent(categories, now - timedelta(days=days), FETCH_CAP)
    known = _known_elsewhere(settings, [p.id for p in papers])
    fresh = [p for p in papers if p.id not in known]
    ranked, excluded = rank(settings, fresh, archive(settings))
    return Candidates(ranked, len(papers), len(papers) - len(fresh), excluded, source.requests)


def candidates_file(ranked: Sequence[Candidate], heading: str) -> str:
    """The list as `digest draft --from` reads it: one id a line, the score, title and why in a `#` comment."""
    lines = [f"# {one_line(heading)}", "# Delete the lines you do not want, then: digest draft --from THIS-FILE", ""]
    for c in ranked:
        # printable: a bidi override in a title must not reorder the line in the editor's text editor either
        lines.append(printable(f"{c.paper.id}  # {c.score:.2f} {_short(c.paper.title, 100)} ({one_line(c.why)})"))
    return "\n".join(lines) + "\n"
