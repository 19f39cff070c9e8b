"""Draft entries (`digest draft`, `digest approve`): pure text work, no I/O.

A draft is a normal seed entry plus a `Status: draft` line, perhaps `Problem:` lines, and the English abstract in
an HTML comment the parser drops. Text from arXiv or a model never becomes seed structure: it is put on single
lines, indented inside the comment, and a heading, `Status:` or comment marker in it is neutralised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from digest.arxiv_api import ArxivPaper, bare_id
from digest.headers import clean_header
from digest.seeds import entry_id
from digest.text import remove_xml_illegal

__all__ = ["DraftText", "approve_text", "draft_entry", "parse_paper_ids"]

_NEW_ID = re.compile(r"\d{4}\.\d{4,5}(?:v\d+)?")
_OLD_ID = re.compile(r"[a-z][a-z\-]*(?:\.[A-Za-z]{2})?/\d{7}(?:v\d+)?", re.IGNORECASE)
_LINE_COMMENT = re.compile(r"(?:^|\s)#.*$")  # a `#` inside a URL (a fragment) is not a comment
_PREFIX = re.compile(r"^arxiv:\s*", re.IGNORECASE)
_STATUS = re.compile(r"^[ \t]*[Ss]tatus[ \t]*[:：][ \t]*(?:draft|DRAFT|Draft)[ \t]*\r?$")
_PROBLEM = re.compile(r"^[ \t]*[Pp]roblem[ \t]*[:：]")
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)


def parse_paper_id(text: str) -> str | None:
    """The bare arXiv id of `2409.13346`, `arXiv:2409.13346v2` or any arXiv link the seed parser accepts."""
    text = _PREFIX.sub("", text.strip())
    if _NEW_ID.fullmatch(text) or _OLD_ID.fullmatch(text):
        return entry_id(f"https://arxiv.org/abs/{bare_id(text)[0]}")
    if text.lower().startswith(("http://", "https://")):
        found = entry_id(text)
        if not found.startswith("http"):
            return found
    return None


def parse_paper_ids(lines: list[str]) -> tuple[list[str], list[str]]:
    """Ids in order without repeats, and the inputs that are no arXiv id (`#` starts a comment)."""
    ids: dict[str, None] = {}
    bad: list[str] = []
    for raw in lines:
        item = _LINE_COMMENT.sub("", raw).strip()
        if not item:
            continue
        for word in item.split():
            paper = parse_paper_id(word)
            if paper is None:
                bad.append(word)
            else:
                ids.setdefault(paper, None)
    return list(ids), bad


def one_line(text: str) -> str:
    """Outside text on one line: XML-illegal characters dropped, every other control (C0, C1 such as the
    terminal's CSI U+009B, bidi overrides, line separators) a space, whitespace runs one space: the header
    cleaner's rule, so a draft file cannot carry what a header or a terminal would act on."""
    return clean_header(remove_xml_illegal(text))


def _link_text(text: str) -> str:
    # Brackets are escaped for the link syntax; a backslash stays as it is (the parser keeps `\x` pairs whole).
    return one_line(text).replace("[", "\\[").replace("]", "\\]")


def _commented(text: str) -> str:
    """Text safe inside `<!-- -->`: cannot close it early, and indented so no line is a heading."""
    return one_line(text).replace("-->", "-- >").replace("<!--", "< !--")


@dataclass(frozen=True)
class DraftText:
    """What a draft holds besides arXiv's metadata: Chinese fields (perhaps empty), topics and problems."""

    title_zh: str = ""
    abstract_zh: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


def draft_entry(paper: ArxivPaper, text: DraftText) -> str:
    """The seed text of one draft entry, ending with a blank line."""
    title = one_line(paper.title) or paper.id
    lines = [f"## {title}", f"[{_link_text(text.title_zh)}](https://arxiv.org/abs/{paper.id})"]
    if text.topics:
        lines.append("Topics: " + ", ".join(text.topics))
    lines.append("Status: draft")
    lines.extend(f"Problem: {one_line(p)}" for p in text.problems)
    authors = ", ".join(one_line(a) for a in paper.authors[:8]) + (" et al." if len(paper.authors) > 8 else "")
    lines += [
        "",
        f"<!-- arXiv:{paper.versioned_id} [{one_line(paper.primary_category)}] {paper.published:%Y-%m-%d}",
        f"  {_commented(authors)}",
        f"  {_commented(paper.abstract)}",
        "-->",
    ]
    for paragraph in text.abstract_zh:
        lines += ["", one_line(paragraph)]
    return "\n".join(lines) + "\n\n"


def comment_spans(chunk: str) -> list[tuple[int, int]]:
    """Where the HTML comments of an entry's text are."""
    return [m.span() for m in _COMMENT.finditer(chunk)]


def english_abstract(chunk: str) -> str:
    """The English abstract a draft keeps in its comment (its last indented line), or ''."""
    for start, end in comment_spans(chunk):
        inner = [line.strip() for line in chunk[start:end].split("\n")[1:] if line.startswith("  ")]
        if inner:
            return inner[-1]
    return ""


@dataclass(frozen=True)
class Marks:
    """The lines of an entry (indexes into its lines) that make it a draft."""

    status: int | None
    problems: tuple[int, ...]


def draft_marks(lines: list[str]) -> Marks:
    """Find `Status: draft` and `Problem:` lines outside comments (`lines` keep their line ends)."""
    status: int | None = None
    problems: list[int] = []
    in_comment = False
    for number, line in enumerate(lines):
        if in_comment:
            in_comment = "-->" not in line
            continue
        if "<!--" in line:
            in_comment = "-->" not in line.split("<!--", 1)[1]
            continue
        if status is None and _STATUS.match(line.rstrip("\n")):
            status = number
        elif _PROBLEM.match(line):
            problems.append(number)
    return Marks(status, tuple(problems))


def approve_text(lines: list[str], marks: Marks, *, force: bool) -> list[str]:
    """The entry's lines without its draft mark (and, with `force`, without its `Problem:` lines)."""
    drop = {marks.status} | (set(marks.problems) if force else set())
    return [line for number, line in enumerate(lines) if number not in drop]
