"""The glossary (`glossary_path`, a CSV `source,target` as BabelDOC and pdf2zh read it) and the checks of a
model's Chinese answer before it is written into a draft. Pure: text in, reasons out."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from functools import cached_property

from digest.errors import DigestError
from digest.text import is_cjk

__all__ = ["Answer", "Glossary", "check_answer", "parse_answer", "read_glossary"]


@dataclass(frozen=True)
class Glossary:
    """Terms as (source, target); matching is whole words, case-insensitive, longest first (plural `s` allowed)."""

    terms: tuple[tuple[str, str], ...] = ()

    @cached_property
    def _pattern(self) -> re.Pattern[str] | None:
        if not self.terms:
            return None
        sources = sorted({s for s, _ in self.terms}, key=len, reverse=True)
        alternatives = "|".join(re.escape(s) + ("(?:e?s)?" if s[-1:].isalpha() else "") for s in sources)
        return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE)

    def in_text(self, english: str) -> list[tuple[str, str]]:
        """The (source, target) pairs whose source occurs in `english`, in glossary order."""
        pattern = self._pattern
        if pattern is None:
            return []
        found = {m.group(0).lower() for m in pattern.finditer(english)}
        return [
            (s, t)
            for s, t in self.terms
            if any(f == s.lower() or (f.startswith(s.lower()) and f[len(s) :] in ("s", "es")) for f in found)
        ]

    def problems(self, english: str, chinese: str) -> list[str]:
        """`"LLM" should be "大语言模型"` for each term of `english` whose target is missing from `chinese` (a term
        kept in English may also appear as itself)."""
        lowered = chinese.lower()
        wrong = []
        for source, target in self.in_text(english):
            if target.lower() in lowered:
                continue
            if target.isascii() and source.lower() in lowered:
                continue
            wrong.append(f'"{source}" should be "{target}"')
        return wrong


def read_glossary(data: str, source: str) -> Glossary:
    """Parse the CSV (header `source,target`); a bad row is an error naming `source:LINE`."""
    reader = csv.reader(io.StringIO(data.lstrip("\ufeff")))
    terms: list[tuple[str, str]] = []
    for row in reader:
        line = reader.line_num
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) != 2:
            raise DigestError(f"{source}:{line}: expected two columns source,target, found {len(row)}")
        src, target = row[0].strip(), row[1].strip()
        if (src.lower(), target.lower()) == ("source", "target"):
            continue
        if not src or not target:
            raise DigestError(f"{source}:{line}: empty term")
        terms.append((src, target))
    return Glossary(tuple(terms))


@dataclass(frozen=True)
class Answer:
    """The model's two Chinese fields, as parsed from its answer."""

    title_zh: str
    abstract_zh: tuple[str, ...]  # paragraphs


_PREAMBLE = re.compile(
    r"^\s*(?:好的|当然|以下是|下面是|这是|翻译如下|译文|中文翻译|sure|here is|here's|certainly|okay|ok\b|as an ai)",
    re.IGNORECASE,
)
_STRUCTURE = re.compile(r"^\s*(?:#|(?:status|topics|problem)\s*[:：])", re.IGNORECASE | re.MULTILINE)
_LATEX = re.compile(r"\$[^$\n]+\$")
_URL = re.compile(r"https?://[^\s)\]>\"'，。；]+")
_LETTER = re.compile(r"[A-Za-z]")


def parse_answer(text: str) -> Answer | str:
    """The first JSON object in the model's text with string fields `title_zh` and `abstract_zh`, or why not."""
    start = text.find("{")
    while start >= 0:
        try:
            value, _ = json.JSONDecoder().raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            title, abstract = value.get("title_zh"), value.get("abstract_zh")
            if not isinstance(title, str) or not isinstance(abstract, str):
                return 'the JSON object must have the string fields "title_zh" and "abstract_zh"'
            paragraphs = tuple(" ".join(p.split()) for p in re.split(r"\n\s*\n", abstract) if p.strip())
            return Answer(" ".join(title.split()), paragraphs)
        start = text.find("{", start + 1)
    return "the answer is not a JSON object"


def chinese_share(text: str) -> float:
    """CJK characters among CJK characters and Latin letters."""
    cjk = sum(1 for ch in text if is_cjk(ch))
    latin = len(_LETTER.findall(text))
    return cjk / (cjk + latin) if cjk + latin else 0.0


def check_answer(answer: Answer, title_en: str, abstract_en: str, glossary: Glossary) -> list[str]:
    """Why the answer must not be written (empty when it may): language, length, preamble, structure, glossary,
    LaTeX and links."""
    abstract = "\n\n".join(answer.abstract_zh)
    why: list[str] = []
    if not answer.title_zh or not abstract:
        return ["the title or the abstract is empty"]
    if chinese_share(answer.title_zh) < 0.2 or sum(map(is_cjk, answer.title_zh)) < 2:
        why.append("the title is not in Chinese")
    if chinese_share(abstract) < 0.5:
        why.append("the abstract is not mostly Chinese")
    if len(answer.title_zh) > max(200, 2 * len(title_en)):
        why.append("the title is too long")
    cjk = sum(map(is_cjk, abstract))
    if cjk < min(60, len(abstract_en) // 10) or len(abstract) > 1.5 * len(abstract_en) + 200:
        why.append(
            f"the abstract has an unlikely length ({len(abstract)} characters for {len(abstract_en)} in English)"
        )
    if _PREAMBLE.match(answer.title_zh) or _PREAMBLE.match(abstract):
        why.append("it starts with a preamble instead of the translation")
    if _STRUCTURE.search(abstract) or "<!--" in abstract or "-->" in abstract or "\n" in answer.title_zh:
        why.append("it contains seed-file structure (a heading, a Status/Topics/Problem line or a comment)")
    missing = [m for m in _LATEX.findall(abstract_en) if m not in abstract]
    if missing:
        why.append("LaTeX changed: " + ", ".join(missing[:3]))
    lost = [u.rstrip(".,;") for u in _URL.findall(abstract_en) if u.rstrip(".,;") not in abstract]
    if lost:
        why.append("links missing: " + ", ".join(lost[:3]))
    why += ["glossary: " + p for p in glossary.problems(f"{title_en}\n{abstract_en}", f"{answer.title_zh}\n{abstract}")]
    return why
