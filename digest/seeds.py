"""Seed files -> entries + problems: a pure parser (`parse_seed`, `merge_scans`) and a thin folder reader.

Format of one entry (see seeds/*.txt)::

    ## <English title>
    [<Chinese title>](<URL>)
    Topics: <slug>, <slug>          (optional: the paper's topics, overriding the topic rules)

    <abstract: one or more paragraphs>

A draft (written by `digest draft`) also has a line `Status: draft`, perhaps `Problem: ...` lines, and HTML
comments (`<!-- ... -->`, the English abstract kept for the editor). Comments are dropped from every entry (never
published, never hashed); a draft is not an entry but a `ProblemKind.DRAFT` problem, so nothing publishes it.

The `Topics:` line (`topics:` and `TOPICS:` too) may stand anywhere in the entry after the link line; only syntax
is checked here (slugs are checked against the configured topics where those are known:
`digest.topics.topic_problems`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from digest.model import Entry, EntryLimits, EntryRef, Located, Problem, ProblemKind, SeedScan
from digest.seedfiles import list_seed_files, read_seed_file
from digest.text import DROPPED, join_soft_lines, remove_xml_illegal, resolve_latex_accents

__all__ = [
    "DEFAULT_LIMITS",
    "EntryLimits",
    "deduplicate",
    "duplicate_problem",
    "entry_id",
    "merge_scans",
    "parse_seed",
    "read_seeds",
    "scan_seed",
]


_LINK_HINT = '"[中文标题](https://...)"'

# The common link line, matched without backtracking (each class excludes the delimiter after it);
# anything fancier (brackets in the text, parentheses in the URL, a title) goes through `_scan_link`.
_SIMPLE_LINK_SRC = r"\[([^\[\]\\\n]*)\]\((?:<([^<>\n]*)>|([^\s()<>\\]*))\)[ \t]*"
_SIMPLE_LINK = re.compile(_SIMPLE_LINK_SRC)
# After the heading line: blank lines, then a simple link line (the shape of nearly every entry).
_LINK_AFTER_HEADING = re.compile(r"(?:[ \t]*\n)*[ \t]*" + _SIMPLE_LINK_SRC + r"(?:\n|\Z)")
_HTTP_URL = re.compile(r"https?://[^\s/?#\\:@]", re.IGNORECASE)
_ARXIV = re.compile(
    r"https?://(?:www\.|export\.)?arxiv\.org/(?:abs|pdf|html)/"
    r"(\d{4}\.\d{4,5}|[a-z][a-z\-]*(?:\.[a-z]{2})?/\d{7})"
    r"(?:v\d+)?(?:\.pdf)?/?(?:[?#].*)?",
    re.IGNORECASE,
)
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # how surrogateescape decodes a bad byte
_XML_ILLEGAL = re.compile(DROPPED)  # XML-illegal characters and bidi controls
# Until bad bytes are reported, their escapes (lone surrogates) must survive the cleaning.
_XML_ILLEGAL_BUT_BAD_BYTES = re.compile(DROPPED.replace("\ud800-\udfff", "\ud800-\udc7f\udd00-\udfff"))
# Characters a URL must percent-encode; a raw one is a typo or an attempt to break out of an attribute.
_NOT_IN_URL = re.compile(r'[\s"<>\\]')
_DEFAULT_PORTS = {"http": "80", "https": "443"}
# "Topics: llm, agents" on a line of its own (a full-width colon and comma too: the line is often typed in Chinese).
_TOPICS_LINE = re.compile(r"^[ \t]*(?:[Tt]opics|TOPICS)[ \t]*[:：](.*)$", re.MULTILINE)
_TOPIC_SEPARATORS = re.compile(r"[\s,，、;；]+")
# An HTML comment (the English abstract of a draft); an unclosed one runs to the end of the entry.
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
# "Status: draft" and a draft's "Problem: why the model's answer was refused", each on a line of its own.
_STATUS_DRAFT = re.compile(r"^[ \t]*[Ss]tatus[ \t]*[:：][ \t]*(?:draft|DRAFT|Draft)[ \t]*$\n?", re.MULTILINE)
_PROBLEM_LINE = re.compile(r"^[ \t]*[Pp]roblem[ \t]*[:：](.*)$\n?", re.MULTILINE)
# The common entry head, whose fields need no normalizing: "## title" (words one space apart, no backslash),
# the link line right after it (same for the text; an http(s) URL with nothing to percent-encode), and the
# arXiv id when the URL is a plain arXiv link (else `entry_id` decides). `scan_seed` takes it as it stands.
_PLAIN_WORDS = r"[^\s\\{extra}]+(?: [^\s\\{extra}]+)*"
_FAST_ENTRY = re.compile(
    "## (" + _PLAIN_WORDS.format(extra="") + r")\n+"
    r"\[(" + _PLAIN_WORDS.format(extra=r"\[\]") + r")\]"
    r"\((https?://(?:(?:www\.|export\.)?arxiv\.org/(?:abs|pdf|html)/(\d{4}\.\d{4,5})(?:v\d+)?(?:\.pdf)?/?(?=\))"
    r"|[^\s/?#\\:@()<>\"][^\s()<>\"\\]*))\)[ \t]*\n+"
)


DEFAULT_LIMITS = EntryLimits()


def _over(text: str, limit: int) -> bool:
    """Whether `text` is longer than `limit` bytes in UTF-8 (encoding only when the length cannot tell)."""
    if len(text) > limit:
        return True
    return 4 * len(text) > limit and _size(text) > limit


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _too_large(what: str, text: str, limit: int, setting: str) -> str:
    size = _size(text)
    shown = f"{size / 1024:,.0f} KiB" if size >= 10 * 1024 else f"{size:,} bytes"
    return f"{what} is {shown}, over the limit of {limit:,} bytes ({setting}): shorten it"


def entry_id(url: str) -> str:
    """A paper's identity: the bare arXiv id for any arXiv link form, else the normalized URL."""
    url = url.strip()
    arxiv = _ARXIV.fullmatch(url)
    if arxiv:
        paper = arxiv.group(1)
        # New ids are digits; old ones keep their archive name, lowercased except a subject class (math.GT).
        archive, slash, number = paper.partition("/")
        if not slash:
            return paper
        name, dot, subject = archive.partition(".")
        return f"{name.lower()}{dot}{subject.upper()}/{number}"
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket: still an identity, just not a normalized one
        return url
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if hostport.startswith("["):
        host, _, rest = hostport.partition("]")
        host += "]"
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = hostport.partition(":")
    scheme = parts.scheme.lower()
    netloc = f"{userinfo}{at}{host.lower()}"
    if port and port != _DEFAULT_PORTS.get(scheme):
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), parts.query, ""))


def _scan_link(line: str) -> tuple[str, str] | None:
    """Parse `[text](url)` with nested brackets, escapes, `<url>`, balanced parentheses, a title."""
    if not line.startswith("["):
        return None
    depth, i, n = 0, 0, len(line)
    while i < n:
        ch = line[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                break
        i += 1
    if i >= n or not line.startswith("(", i + 1):
        return None
    text = line[1:i].replace("\\[", "[").replace("\\]", "]")
    i += 2
    while i < n and line[i] in " \t":
        i += 1
    if line.startswith("<", i):
        end = line.find(">", i)
        if end < 0 or "<" in line[i + 1 : end]:
            return None
        url, i = line[i + 1 : end], end + 1
    else:
        start, parens = i, 0
        while i < n:
            ch = line[i]
            if ch == "\\" and i + 1 < n:
                i += 2
                continue
            if ch in " \t" or (ch == ")" and parens == 0):
                break
            parens += ch == "("
            parens -= ch == ")"
            i += 1
        if parens:
            return None
        url = line[start:i].replace("\\(", "(").replace("\\)", ")")
    while i < n and line[i] in " \t":
        i += 1
    if i < n and line[i] in "\"'(":  # optional link title, ignored
        closer = ")" if line[i] == "(" else line[i]
        end = line.find(closer, i + 1)
        if end < 0:
            return None
        i = end + 1
        while i < n and line[i] in " \t":
            i += 1
    if not line.startswith(")", i) or line[i + 1 :].strip():
        return None
    return text, url


def _parse_link(line: str) -> tuple[str, str] | None:
    """The (text, url) of a link line, or None when the line is not exactly one Markdown link."""
    simple = _SIMPLE_LINK.fullmatch(line)
    if simple:
        url = simple.group(2) if simple.group(2) is not None else simple.group(3)
        return simple.group(1), url
    return _scan_link(line)


def _quote(line: str, limit: int = 60) -> str:
    """A short, printable excerpt of a seed line for a problem message."""
    line = remove_xml_illegal(line.strip())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _may_name_topics(body: str) -> bool:
    """False only when `body` has no Topics line, draft status or comment (substring tests, much cheaper than the
    lines' regexes)."""
    return "opics" in body or "OPICS" in body or "<!--" in body or "tatus" in body or "TATUS" in body


def _paragraphs(body: str) -> list[str]:
    """The abstract's paragraphs: blank lines separate them, soft breaks inside are joined."""
    paragraphs: list[str] = []
    for part in body.strip().split("\n\n"):
        if "\n" not in part:  # the common case: a paragraph written as one line
            part = part.strip()
            if part:
                paragraphs.append(part)
            continue
        lines: list[str] = []
        for line in part.split("\n"):
            if line and not line.isspace():
                lines.append(line)
            elif lines:
                paragraphs.append(join_soft_lines(lines))
                lines = []
        if lines:
            paragraphs.append(join_soft_lines(lines))
    return paragraphs


def _parse_entry(chunk: str, start: int, source: str, limits: EntryLimits = DEFAULT_LIMITS) -> Entry | Problem:
    """One entry from its text, which starts with its heading (at line `start`) and is XML-clean."""
    eol = chunk.find("\n")
    if eol < 0:
        eol = len(chunk)
    if _over(raw := chunk[2:eol].strip(), limits.title):
        return Problem(source, start, _too_large("the English title", raw, limits.title, "title_max_bytes"))
    if _over(chunk, limits.entry):
        return Problem(source, start, _too_large("the entry", chunk, limits.entry, "entry_max_bytes"))
    title_en = " ".join(resolve_latex_accents(chunk[2:eol]).split())
    if not title_en:
        return Problem(source, start, 'empty heading: write the English title after "## "')
    fast = _LINK_AFTER_HEADING.match(chunk, eol + 1)
    if fast is not None:  # blank lines and a plain link line: no need to look at lines one by one
        link_line_no = start + chunk.count("\n", 0, fast.start(1))
        text, url = fast.group(1), fast.group(2) if fast.group(2) is not None else fast.group(3)
        body = chunk[fast.end() :]
    else:
        lines = chunk[eol + 1 :].split("\n")
        i, n = 0, len(lines)
        while i < n and not lines[i].strip():
            i += 1
        if i == n:
            return Problem(source, start, f"expected a Markdown link line {_LINK_HINT} after the heading")
        link_line_no = start + 1 + i
        link = _parse_link(lines[i].strip())
        if link is None:
            return Problem(
                source,
                link_line_no,
                f"expected a Markdown link line {_LINK_HINT} after the heading, found {_quote(lines[i])!r}",
            )
        text, url = link
        body = "\n".join(lines[i + 1 :])
    if _over(raw := text.strip(), limits.title):
        return Problem(source, link_line_no, _too_large("the Chinese title", raw, limits.title, "title_max_bytes"))
    url = url.strip()
    if not _HTTP_URL.match(url):
        return Problem(source, link_line_no, f"the link must be an http(s) URL, found {_quote(url)!r}; use https://...")
    if _NOT_IN_URL.search(url):
        return Problem(
            source,
            link_line_no,
            f'the URL {_quote(url)!r} contains a space or one of " < > \\; percent-encode it (a space is %20)',
        )
    draft: list[str] | None = None
    if "<!--" in body:
        # Keep the comment's line breaks, so a Topics line after it is found and nothing inside it is.
        body = _COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), body)
    if ("tatus" in body or "TATUS" in body) and (status := _STATUS_DRAFT.search(body)):
        body = body[: status.start()] + body[status.end() :]
        draft = [m.group(1).strip() for m in _PROBLEM_LINE.finditer(body)]
        body = _PROBLEM_LINE.sub("", body)
    topics: tuple[str, ...] = ()
    if _may_name_topics(body):  # most entries have no Topics line
        found = _TOPICS_LINE.search(body)
        if found:
            topics = tuple(dict.fromkeys(t.lower() for t in _TOPIC_SEPARATORS.split(found.group(1)) if t))
            body = body[: found.start()] + body[found.end() :]
    title_zh = " ".join(resolve_latex_accents(text).split())
    if draft is not None:
        if not title_zh:
            draft.append("no Chinese title yet")
        if not _paragraphs(body):
            draft.append("no Chinese abstract yet")
        return _draft(source, start, entry_id(url), title_en, draft)
    if not title_zh:
        return Problem(source, link_line_no, f"the link text (Chinese title) is empty; write it as {_LINK_HINT}")
    abstract = _paragraphs(body)
    if not abstract:
        return Problem(source, link_line_no, "the abstract is empty: write it after the link line")
    return Entry(
        id=entry_id(url),
        title_en=title_en,
        title_zh=title_zh,
        url=url,
        abstract=tuple(map(resolve_latex_accents, abstract)),
        source=source,
        line=start,
        topics=topics,
    )


def _draft(source: str, line: int, paper: str, title_en: str, problems: list[str]) -> Problem:
    """A draft entry, reported (never published) with the problems its `Problem:` lines name."""
    message = f"draft: {_quote(title_en)}" + "".join(f"; problem: {p}" for p in problems if p)
    return Problem(source, line, message, kind=ProblemKind.DRAFT, entry_id=paper)


def _heading_at(text: str, index: int) -> bool:
    """Whether the line at `index` (starting with `##`) is an entry heading: `## title` or a bare `##`."""
    after = text[index + 2 : index + 3]
    if after in (" ", "\n", ""):
        return True
    if not after.isspace():
        return False  # "###", "##title"
    end = text.find("\n", index)
    return text[index : end if end >= 0 else len(text)].rstrip() == "##"


def _heading_offsets(text: str) -> list[int]:
    """Offsets of the entry headings; found with str.find (C speed), not a per-line Python loop."""
    offsets = [0] if text.startswith("##") and _heading_at(text, 0) else []
    pos = text.find("\n##")
    while pos >= 0:
        if _heading_at(text, pos + 1):
            offsets.append(pos + 1)
        pos = text.find("\n##", pos + 3)
    return offsets


_Located = TypeVar("_Located", bound=Located)


def deduplicate(entries: Iterable[_Located], seen: dict[str, Located], problems: list[Problem]) -> list[_Located]:
    """Keep the first entry per id (`seen` carries earlier files); later ones become DUPLICATE problems."""
    kept = []
    for entry in entries:
        first = seen.get(entry.id)
        if first is None:
            seen[entry.id] = entry
            kept.append(entry)
        else:
            problems.append(duplicate_problem(entry.source, entry.line, first))
    return kept


def duplicate_problem(source: str, line: int, first: Located) -> Problem:
    """The problem reported for a repeat, at `source:line`, of the paper first seen as `first`."""
    return Problem(
        source,
        line,
        f"duplicate of {first.id} (first at {first.source}:{first.line})",
        kind=ProblemKind.DUPLICATE,
        entry_id=first.id,
    )


def _clean_text(data: bytes | str) -> tuple[str, bool]:
    """A seed file's text ready to split into entries (BOM, CRs and XML-illegal characters gone), and whether
    it held bytes that are not UTF-8 (kept as lone surrogates, so each entry that holds one is reported)."""
    undecodable = False
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("utf-8", "surrogateescape")
            undecodable = True
    else:
        text = data
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    # One pass over the whole file (none of these is a line break for us, so line numbers stay right).
    illegal = _XML_ILLEGAL_BUT_BAD_BYTES if undecodable else _XML_ILLEGAL
    if illegal.search(text):
        text = illegal.sub("", text)
    return text, undecodable


def parse_seed(data: bytes | str, source: str, limits: EntryLimits = DEFAULT_LIMITS) -> SeedScan:
    """Parse one seed file's content; never raises: bad entries become problems, the rest are returned."""
    text, undecodable = _clean_text(data)
    offsets = _heading_offsets(text)
    problems: list[Problem] = []
    parsed: list[Entry] = []
    if undecodable:
        # The preamble is ignored, but bad bytes there still mean the file was saved in the wrong encoding.
        bad = _not_utf8(source, 1, text[: offsets[0]] if offsets else text)
        if bad:
            problems.append(bad)
    line = 1 + text.count("\n", 0, offsets[0]) if offsets else 0
    for start, end in zip(offsets, [*offsets[1:], len(text)], strict=False):  # no heading: no entry
        chunk = text[start:end]
        bad = _not_utf8(source, line, chunk) if undecodable else None
        result = bad or _parse_entry(chunk, line, source, limits)
        if isinstance(result, Problem):
            problems.append(result)
        else:
            parsed.append(result)
        line += chunk.count("\n")
    entries = deduplicate(parsed, {}, problems)
    problems.sort(key=lambda p: p.line)
    return SeedScan(tuple(entries), tuple(problems))


def scan_seed(
    data: bytes | str, source: str, limits: EntryLimits = DEFAULT_LIMITS
) -> tuple[list[EntryRef], list[Problem]]:
    """What `parse_seed` finds, as refs (id, content hash, where) and problems, without building entries.

    A first import reads every paper only to record it, so the common entry shape (`## title`, the link line,
    one-line paragraphs; nothing to normalize) is checked and hashed straight from the file's text; any other
    entry goes through `_parse_entry`. tests/test_seeds.py holds both to the same answers.
    """
    text, undecodable = _clean_text(data)
    if undecodable:  # rare: the careful path reports every bad byte where it is
        scan = parse_seed(data, source, limits)
        return [EntryRef(e.id, e.content_hash, e.source, e.line) for e in scan.entries], list(scan.problems)
    offsets = _heading_offsets(text)
    problems: list[Problem] = []
    refs: list[EntryRef] = []
    line = 1 + text.count("\n", 0, offsets[0]) if offsets else 0
    fast = _FAST_ENTRY.match
    short = limits.entry // 4  # characters: an entry this long is within the limit whatever they are
    for start, end in zip(offsets, [*offsets[1:], len(text)], strict=False):
        head = fast(text, start, end) if end - start <= short or not _over(text[start:end], limits.entry) else None
        if head is not None and not (_over(head.group(1), limits.title) or _over(head.group(2), limits.title)):
            stop = end
            while stop > start and text[stop - 1] == "\n":
                stop -= 1
            body = text[head.end() : stop]
            if body and not (body[0].isspace() or body[-1].isspace() or "\\" in body or _may_name_topics(body)):
                if "\n" in body:
                    body = body.replace("\n\n", "\x1f") if _plain_paragraphs(body) else ""
                if body:  # the paragraphs joined as `Entry.content_hash` joins them
                    title_en, title_zh, url, arxiv = head.groups()
                    payload = f"{title_en}\x1e{title_zh}\x1e{url}\x1e{body}".encode()
                    refs.append(EntryRef(arxiv or entry_id(url), hashlib.sha256(payload).hexdigest(), source, line))
                    line += text.count("\n", start, end)
                    continue
        result = _parse_entry(text[start:end], line, source, limits)
        if isinstance(result, Problem):
            problems.append(result)
        else:
            refs.append(EntryRef(result.id, result.content_hash, source, line))
        line += text.count("\n", start, end)
    kept = deduplicate(refs, {}, problems)
    problems.sort(key=lambda p: p.line)
    return kept, problems


def _plain_paragraphs(body: str) -> bool:
    """Whether a trimmed abstract of several lines is one-line paragraphs, each trimmed, one blank line apart:
    then its paragraphs are exactly `body.split("\\n\\n")`, as `_paragraphs` would find them."""
    for paragraph in body.split("\n\n"):
        if not paragraph or "\n" in paragraph or paragraph[0].isspace() or paragraph[-1].isspace():
            return False
    return True


def _not_utf8(source: str, line: int, chunk: str) -> Problem | None:
    """A problem at the first undecodable byte of `chunk` (which starts at `line`), if it has one."""
    bad = _ESCAPED_BYTE.search(chunk)
    if bad is None:
        return None
    byte = ord(bad.group(0)) - 0xDC00
    return Problem(
        source,
        line + chunk.count("\n", 0, bad.start()),
        f"not valid UTF-8 (byte 0x{byte:02X}): save the file as UTF-8",
    )


def merge_scans(scans: Iterable[SeedScan]) -> SeedScan:
    """Combine per-file scans in order; a paper seen in an earlier file becomes a DUPLICATE problem."""
    seen: dict[str, Located] = {}
    entries: list[Entry] = []
    problems: list[Problem] = []
    for scan in scans:
        found = list(scan.problems)
        entries.extend(deduplicate(scan.entries, seen, found))
        found.sort(key=lambda p: p.line)
        problems.extend(found)
    return SeedScan(tuple(entries), tuple(problems))


def read_seeds(folder: Path, display_root: Path | None = None, limits: EntryLimits = DEFAULT_LIMITS) -> SeedScan:
    """Read and parse every seed file of a folder, de-duplicated across files (this module's only I/O)."""
    files = list_seed_files(folder, display_root)
    return merge_scans(parse_seed(read_seed_file(file), file.source, limits) for file in files)
