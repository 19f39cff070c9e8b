"""CJK-aware text helpers shared by the seed parser and the renderers: pure functions, no I/O."""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

from linkify_it import LinkifyIt
from markupsafe import Markup, escape
from pylatexenc.latex2text import LatexNodes2Text

from digest.errors import BIDI_CONTROLS

__all__ = [
    "DROPPED",
    "XML_ILLEGAL",
    "clean_text",
    "first_sentence",
    "is_cjk",
    "join_soft_lines",
    "linkify",
    "linkify_text",
    "remove_xml_illegal",
    "resolve_latex_accents",
    "truncate",
]

# Ideographs (with extensions, radicals, strokes, compatibility forms), kana, hangul, bopomofo,
# CJK symbols and punctuation, enclosed CJK, vertical and small forms, fullwidth/halfwidth forms.
_CJK_CLASS = (
    "\u1100-\u11ff"  # hangul jamo
    "\u2e80-\u2fdf"  # CJK radicals, kangxi radicals
    "\u2ff0-\u2fff"  # ideographic description characters
    "\u3000-\u303f"  # CJK symbols and punctuation (、。「」 ...)
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3100-\u312f"  # bopomofo
    "\u3130-\u318f"  # hangul compatibility jamo
    "\u3190-\u31ff"  # kanbun, bopomofo extended, CJK strokes, katakana extension
    "\u3200-\u33ff"  # enclosed CJK letters, CJK compatibility
    "\u3400-\u4dbf"  # extension A
    "\u4e00-\u9fff"  # unified ideographs
    "\ua960-\ua97f"  # hangul jamo extended-A
    "\uac00-\ud7ff"  # hangul syllables, jamo extended-B
    "\uf900-\ufaff"  # compatibility ideographs
    "\ufe10-\ufe1f"  # vertical forms
    "\ufe30-\ufe6f"  # compatibility forms, small form variants
    "\uff00-\uffef"  # halfwidth and fullwidth forms (，：！ ...)
    "\U0001b000-\U0001b16f"  # kana supplement/extended
    "\U00020000-\U0003134f"  # extensions B-G, compatibility supplement
)
_CJK = re.compile(f"[{_CJK_CLASS}]")
# Where a URL inside Chinese text stops: any CJK character, plus the quotes, dash and ellipsis of
# General Punctuation that Chinese uses (not CJK for line joining: English "“hi” there" keeps its spaces).
_URL_STOP = re.compile(f"[{_CJK_CLASS}\u2018\u2019\u201c\u201d\u2014\u2026\u00b7]")

# XML 1.0 forbids these (they make lxml/feedgen and mjml-python fail); DEL and lone surrogates too.
XML_ILLEGAL = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff\ud800-\udfff]"
#: What is dropped from seed text before it reaches any output: XML-illegal characters and bidi controls
#: (errors.BIDI_CONTROLS: invisible, they reorder the text around them).
DROPPED = XML_ILLEGAL[:-1] + BIDI_CONTROLS + "]"
_XML_ILLEGAL = re.compile(DROPPED)

# LaTeX accent macros only. A symbol accent (\" \' \` \^ \~ \= \.) takes the next letter; a letter
# accent (\u \v \H \c \k \r) takes a letter after a space; both take a braced letter, or \i / \j.
# Everything else (paths, "\n", \textbf{...}) is left exactly as written.
_ACCENT = re.compile(
    r"""\\(?:["'`^~=.]|[uvHckr](?![A-Za-z]))"""
    r"""(?:\{\s*(?:[A-Za-z]|\\[ij](?![A-Za-z]))\s*\}"""
    r"""|(?<=[uvHckr]) +[A-Za-z]"""
    r"""|(?<=["'`^~=.])[A-Za-z]"""
    r"""|\\[ij](?![A-Za-z]))"""
)

_SENTENCE_END = re.compile(r"[。！？]|[.!?](?=\s)")
_CLAUSE_END = re.compile(r"[，、；：,;:\s]")
_CLAUSE_PUNCT = "，、；：,;: \t\n"
_URL_SPAN = re.compile(r"https?://\S*", re.IGNORECASE)

# Explicit http(s) URLs only: fuzzy links would turn "train.py" or "README.md" into http://train.py.
_linkifier = LinkifyIt(options={"fuzzy_link": False, "fuzzy_email": False, "fuzzy_ip": False})
_latex = LatexNodes2Text()


def is_cjk(ch: str) -> bool:
    """True for a CJK character (ideograph, kana, hangul, CJK/fullwidth punctuation): no space next to it."""
    return bool(ch) and _CJK.match(ch) is not None


def remove_xml_illegal(s: str) -> str:
    """Drop characters XML cannot carry, so feeds and mail never fail on one stray control byte, and bidi controls
    (`DROPPED`)."""
    return _XML_ILLEGAL.sub("", s) if _XML_ILLEGAL.search(s) else s


@lru_cache(maxsize=1024)
def _accent_to_text(macro: str) -> str:
    # Keep the macro unless it names a real accented letter (one code point once composed):
    # `\"q` in an escaped quote is not an umlaut.
    text = unicodedata.normalize("NFC", _latex.latex_to_text(macro))
    return text if len(text) == 1 else macro


def _replace_accent(match: re.Match[str]) -> str:
    return _accent_to_text(match.group(0))


def resolve_latex_accents(s: str) -> str:
    """Show LaTeX accent escapes as letters (`T\\"ULU` -> `TÜLU`); other backslashes stay as written."""
    if "\\" not in s:  # the common case, and pylatexenc is slow
        return s
    return _ACCENT.sub(_replace_accent, s)


def clean_text(s: str) -> str:
    """Make seed text displayable: XML-illegal characters and bidi controls removed, LaTeX accents resolved."""
    return resolve_latex_accents(remove_xml_illegal(s))


def join_soft_lines(lines: Sequence[str]) -> str:
    """Join one paragraph's lines as soft breaks: a space between Latin words, none next to CJK."""
    parts = [stripped for stripped in (line.strip() for line in lines) if stripped]
    if len(parts) <= 1:
        return parts[0] if parts else ""
    out = [parts[0]]
    for prev, part in itertools.pairwise(parts):
        if _CJK.match(prev[-1]) is None and _CJK.match(part[0]) is None:
            out.append(" ")
        out.append(part)
    return "".join(out)


def linkify_text(text: str) -> list[tuple[str, str | None]]:
    """Split text into (text, href) segments, href only for http(s) URLs; plain-text output uses it too."""
    if "://" not in text:
        return [(text, None)] if text else []
    # linkify-it reads CJK letters as part of a word (it finds no URL right after "可在" and swallows
    # "获取" into one): blank them out, keeping indices, so URLs start and stop where Chinese does.
    masked = _URL_STOP.sub(" ", text)
    segments: list[tuple[str, str | None]] = []
    pos = 0
    for match in _linkifier.match(masked) or ():
        href = match.url
        if not href.lower().startswith(("http://", "https://")):
            continue
        if match.index > pos:
            segments.append((text[pos : match.index], None))
        segments.append((text[match.index : match.last_index], href))
        pos = match.last_index
    if pos < len(text):
        segments.append((text[pos:], None))
    return segments


@lru_cache(maxsize=4096, typed=True)  # typed: a Markup argument is not escaped again, a str with its text is
def linkify(text: str) -> Markup:
    """HTML-escape text and turn its http(s) URLs into links: safe to put into a template as is.

    Cached: `rebuild` links every abstract paragraph four times (issue page, email, `issues.xml` archive, JSON
    archive), 1.1 s of CPU for 1,000 issues; a worker's archive page holds ~650 paragraphs."""
    html = []
    for segment, href in linkify_text(text):
        if href is None:
            html.append(str(escape(segment)))
        else:
            html.append(f'<a href="{escape(href)}">{escape(segment)}</a>')
    return Markup("".join(html))


def first_sentence(text: str) -> str:
    """The text up to and including its first sentence end (`。！？` or `. `): a one-line teaser."""
    text = text.strip()
    match = _SENTENCE_END.search(text)
    return text[: match.end()] if match else text


def _url_start(text: str, cut: int) -> int:
    """Move a cut that falls inside a URL to the URL's start: half a URL links somewhere else."""
    for match in _URL_SPAN.finditer(text, 0, cut + 1):
        if match.start() < cut < match.end():
            return match.start()
    return cut


def truncate(text: str, max_chars: int) -> str:
    """Shorten text to at most max_chars characters ending in `…`, at a sentence or clause end if possible."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    if max_chars <= 1:
        return "…"[:max_chars]
    limit = max_chars - 1  # room for the ellipsis
    window = text[:limit]
    floor = limit // 2  # a boundary counts only if it keeps at least half of what is allowed
    ends = [m.end() for m in _SENTENCE_END.finditer(window)]
    if ends and ends[-1] > floor:
        cut = ends[-1]
    else:
        clauses = [m.start() for m in _CLAUSE_END.finditer(window)]
        cut = clauses[-1] if clauses and clauses[-1] > floor else limit
    cut = _url_start(text, cut) or cut  # a text that starts with a long URL still gets cut
    while cut > 0 and unicodedata.combining(text[cut]):  # never strand an accent from its letter
        cut -= 1
    return text[:cut].rstrip(_CLAUSE_PUNCT) + "…"


# --- plain-text wrapping (the email's text part) ------------------------------------------------

#: Display columns of the plain-text version (a CJK character takes two).
TEXT_COLUMNS = 76
#: Hard limit for one text line, well under RFC 5322's 998 octets.
MAX_LINE_BYTES = 900

# Characters that must not begin a line (closing punctuation) or end one (opening punctuation).
_NO_START = set("，。、；：？！）」』】〉》〕…—％,.;:?!)]}%'\"”’")
_NO_END = set("（「『【〈《〔“‘([{")


@lru_cache(maxsize=16384)
def _char_columns(char: str) -> int:
    return 2 if unicodedata.east_asian_width(char) in "WF" else 1


def _columns(text: str) -> int:
    if text.isascii():  # the common case, and the per-character lookup is most of the cost of a long word
        return len(text)
    if len(text) == 1:  # a CJK character: most pieces of a Chinese abstract
        return _char_columns(text)
    return sum(map(_char_columns, text))


# A run of visible ASCII: after its first character it only ever extends the current token (narrow, no space).
_ASCII_RUN = re.compile(r"[!-~]{2,}")
# A run of CJK ideographs and Hangul syllables (all wide, none of them punctuation): after a wide character that
# opens nothing, each one is a piece of its own, so a run is cut into pieces at once instead of one step each.
_IDEOGRAPH_RUN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3]+")


def _tokens(text: str) -> list[tuple[bool, str, int, bool]]:
    """Split into pieces, each with whether a space comes before it, its display columns and whether it is a run.

    Latin words and URLs stay whole; every CJK character is a piece of its own (a line may break between two),
    except that closing punctuation sticks to what precedes it and opening punctuation to what follows. A run of
    ideographs comes as one piece marked as a run: a line may break between any two of its characters (2 columns
    each), and wrapping takes as many as fit at once instead of one at a time.
    Linear in the length of the text: a piece grows in a list, never by copying the string (a 2 MB word took 36 s).
    """
    tokens: list[tuple[bool, str, int, bool]] = []
    current: list[str] = []  # the piece being built, joined when the next one starts
    current_space = False
    current_width = 0
    space = False
    in_word = False
    pos, size = 0, len(text)
    while pos < size:
        char = text[pos]
        if char.isspace():
            space, in_word = True, False
            pos += 1
            continue
        columns = _char_columns(char)
        wide = columns == 2
        glue = current and not space and (char in _NO_START or current[-1][-1] in _NO_END)
        if current and (glue or (in_word and not wide)):
            current.append(char)
            current_width += columns
        else:
            if current:
                tokens.append((current_space, "".join(current), current_width, False))
            current, current_space, current_width = [char], space, columns
        in_word = not wide
        space = False
        pos += 1
        if wide and char not in _NO_END and pos < size and text[pos] >= "\u3400":
            ideographs = _IDEOGRAPH_RUN.match(text, pos)
            if ideographs is not None:
                chunk = ideographs.group()
                tokens.append((current_space, "".join(current), current_width, False))
                if len(chunk) > 1:
                    tokens.append((False, chunk[:-1], 2 * len(chunk) - 2, True))
                current, current_space, current_width = [chunk[-1]], False, 2
                pos = ideographs.end()
            continue
        run = _ASCII_RUN.match(text, pos - 1) if char < "\x7f" else None  # only an ASCII character starts one
        if run is not None:  # the rest of the run joins this piece whatever it holds
            current.append(text[pos : run.end()])
            current_width += run.end() - pos
            pos = run.end()
    if current:
        tokens.append((current_space, "".join(current), current_width, False))
    return tokens


def wrap_text(text: str, indent: str = "", first: str = "") -> str:
    """Fold `text` into lines of about TEXT_COLUMNS display columns for plain-text mail.

    Breaks between CJK characters and at spaces between Latin words; URLs and long words are never split
    (unless a line would pass MAX_LINE_BYTES). `first` prefixes the first line, `indent` the others.
    """
    lines: list[str] = []
    line, width, prefix = first, _columns(first), first
    for space, token, token_width, run in _tokens(text):
        if run:  # as many of its characters as fit, a line at a time: the lines one piece per character gives
            start = 0
            while start < len(token):
                fit = (TEXT_COLUMNS - width) // 2  # a run never has a space before it
                if line == prefix:
                    fit = max(fit, 1)
                elif fit <= 0:
                    lines.append(line)
                    line, width, prefix = indent, _columns(indent), indent
                    continue
                piece = token[start : start + fit]
                line += piece
                width += 2 * len(piece)
                start += len(piece)
            continue
        gap = 1 if space and line != prefix else 0
        if line != prefix and width + gap + token_width > TEXT_COLUMNS:
            lines.append(line)
            line, width, prefix, gap = indent, _columns(indent), indent, 0
        line += " " * gap + token
        width += gap + token_width
    lines.append(line)
    return "\n".join(piece for raw in lines for piece in split_bytes(raw.rstrip()))


def split_bytes(line: str) -> list[str]:
    """`line` cut into pieces of at most MAX_LINE_BYTES UTF-8 bytes (only an absurdly long word needs it)."""
    data = line.encode("utf-8")
    if len(data) <= MAX_LINE_BYTES:
        return [line]
    pieces: list[str] = []
    start = 0
    while start < len(data):
        cut = start + MAX_LINE_BYTES
        while cut < len(data) and data[cut] & 0xC0 == 0x80:  # never inside a character: back to its first byte
            cut -= 1
        pieces.append(data[start:cut].decode("utf-8"))
        start = cut
    return pieces
