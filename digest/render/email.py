"""The email of an issue: Jinja2 -> MJML -> HTML (kept under Gmail's clipping size), plus its plain-text twin.

Laid out as an editor lays out a weekly paper digest: a masthead, the editor's note, the highlights (the first
papers of the issue), a numbered table of contents grouped by topic (the issue page's grouping and numbering), then
the papers topic by topic, and a footer saying why the reader gets it, who sends it, and where to change that.

Pure: model objects in, strings out; no clock, no files besides the templates the environment loads.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import jinja2
import mjml
from markupsafe import Markup, escape

from digest.errors import RenderError
from digest.model import Entry, Issue, Site
from digest.render.feeds import is_arxiv_id, paper_url, topic_sections
from digest.slots import (
    PREFERENCES_PLACEHOLDER,
    UNSUBSCRIBE_PLACEHOLDER,
    PersonalSlots,
    count_slots,
    personal_slots,
    probe_slots,
)
from digest.text import first_sentence, join_soft_lines, linkify, split_bytes, truncate, wrap_text
from digest.topics import papers_in_topics

HTML_TEMPLATE = "issue.mjml.j2"
TEXT_TEMPLATE = "email.txt.j2"

#: Gmail clips messages above 102 KB; the default leaves room for the personal unsubscribe URL.
MAX_HTML_BYTES = 100_000
#: Length (characters) of a highlight's one-sentence teaser.
SENTENCE_CHARS = 140
PREHEADER_TITLES = 3
#: How finely the shortening searches: every abstract keeps k/STEPS of its length (k = STEPS: whole).
STEPS = 64
#: A shortened abstract keeps at least this many characters, or none (a stub of a few words says nothing).
MIN_KEPT_CHARS = 40


#: What the copy of the email published on the site says where the mail had the reader's own links.
PUBLISHED_NOTE = (
    "退订与管理订阅：请用你收到的邮件里的个人链接",
    "To unsubscribe or change your topics, use the personal links in the mail you received",
)


def published_copy(rendered: RenderedEmail, subscribe_url: str) -> tuple[str, str]:
    """(html, text) of the copy of the email published on the site (`issues/N/email.html`): anyone can open it,
    so instead of the reader's personal links it offers the subscribe page and says where those links are (an
    "Unsubscribe" that led to the signup form only confused readers)."""
    slots = rendered.slots
    zh, en = PUBLISHED_NOTE
    subscribe = f'<a href="{escape(subscribe_url)}"'
    html = _replace_links(rendered.html, slots.preferences, lambda attrs: f"{subscribe}{attrs}>订阅 / Subscribe</a>")
    html = _replace_links(html, slots.unsubscribe, lambda attrs: f'{zh} <span lang="en">/ {en}</span>')
    text = _replace_lines(rendered.text, slots.preferences, f"订阅 / Subscribe: {subscribe_url}")
    text = _replace_lines(text, slots.unsubscribe, f"{zh}\n{en}")
    return html, text


# The markers differ in every issue: a pattern holding one would be compiled anew for each email (4 per issue, a
# third of a millisecond each, ~0.5 s of a 1,000-issue rebuild), so the markers are found with str.find and only
# what follows them is matched, by patterns compiled once. Same matches as re.sub of `<a href="MARKER"([^>]*)>`
# `[^<]*</a>` and of `^.*MARKER.*$` (re.M) would find.
_LINK_REST = re.compile(r"([^>]*)>[^<]*</a>")


def _replace_links(html: str, marker: str, link: Callable[[str], str]) -> str:
    """Every `<a href="MARKER" ...>text</a>` of `html` replaced by `link(its other attributes)`."""
    start = f'<a href="{marker}"'
    parts: list[str] = []
    done, at = 0, html.find(start)
    while at != -1:
        rest = _LINK_REST.match(html, at + len(start))
        if rest is None:
            at = html.find(start, at + 1)
            continue
        parts += (html[done:at], link(rest.group(1)))
        done = rest.end()
        at = html.find(start, done)
    return "".join(parts) + html[done:] if parts else html


def _replace_lines(text: str, marker: str, line: str) -> str:
    """Every line of `text` holding `marker` replaced by `line` (lines end at "\\n" only, as for re.M's `^` and `$`)."""
    if "\\" in line:  # re.sub reads backslashes in the replacement as escapes (or refuses them): keep its reading
        return re.sub(f"^.*{re.escape(marker)}.*$", line, text, flags=re.M)
    if marker not in text:
        return text
    return "\n".join(line if marker in old else old for old in text.split("\n"))


@dataclass(frozen=True)
class EmailOptions:
    """What an issue's email shows besides the papers: from the settings, the seed folder and the reader.

    `note`: the editor's note (plain text, paragraphs separated by blank lines; escaped, URLs linked).
    `highlights`: how many of the issue's first papers "本周要点" names (0: none).
    `sender_address`: the sender's postal address for the footer (CAN-SPAM asks for one).
    `topics`: the reader's topic slugs; the email then holds only their papers (empty: every paper).
    `mark_key`: the secret key the personal-link markers are made with (see `personal_slots`).
    """

    note: str = ""
    highlights: int = 3
    sender_address: str = ""
    topics: frozenset[str] = frozenset()
    mark_key: str = field(default="", repr=False)  # secret_key: makes the link markers unguessable


@dataclass(frozen=True)
class RenderedEmail:
    """An issue's email: `html` (MJML-compiled) and `text`, with `detail` saying how much of it fits the html.

    `level` is "full" (every abstract whole), "shortened" (every abstract cut to the same share of its length),
    "titles" (no abstracts), "titles, no contents" (no table of contents either), "list" (a compact list of the
    Chinese titles, each linking the issue page) or "partial list" (the first `listed` papers of that list and
    "M more on the web"); `entries_in_full` counts papers whose whole abstract is in the html, `kept` the share
    of each abstract kept. `listed` is how many papers the html names.
    """

    html: str
    text: str
    detail: str
    level: str = "full"
    entries_in_full: int = 0
    slots: PersonalSlots = PersonalSlots(UNSUBSCRIBE_PLACEHOLDER, PREFERENCES_PLACEHOLDER)
    kept: float = 1.0
    listed: int = 0


@dataclass(frozen=True)
class _Paper:
    """What the templates see of one paper; the Markup fields are escaped (and linkified) already."""

    entry: Entry
    number: int
    anchor: str
    title_en: Markup
    title_zh: Markup
    url: str | None
    host: str
    web_url: str
    teaser: Markup
    paragraphs: tuple[Markup, ...]
    shortened: bool


@dataclass(frozen=True)
class _Section:
    name_zh: str
    name_en: str
    papers: tuple[_Paper, ...]


@dataclass(frozen=True)
class _Layout:
    """How much of the email's frame a long issue keeps: the table of contents, papers as a compact list of
    titles, and how many papers the list leaves to the web page."""

    contents: bool = True
    compact: bool = False
    more: int = 0


FULL_LAYOUT = _Layout()


@dataclass(frozen=True)
class _Names:
    zh: str
    en: str


def render_email(
    site: Site,
    issue: Issue,
    env: jinja2.Environment,
    *,
    max_html_bytes: int = MAX_HTML_BYTES,
    options: EmailOptions = EmailOptions(),
) -> RenderedEmail:
    """Render `issue` (only the papers of `options.topics`, when given) as email HTML of at most `max_html_bytes`
    (UTF-8) and its full plain-text version.

    When the whole issue does not fit, every abstract is shortened to the same share of its length (the largest
    share that fits), down to titles only; then the table of contents goes, then the papers become a compact
    list of titles linking the issue page, then the list keeps its first papers and says how many more are on
    the web. Raises RenderError when a template or MJML fails or when the reader's topics hold no paper; never
    for the size (an issue is published whatever its email's size: at worst the email is over the limit).
    """
    total = len(issue.entries)
    chosen = options.topics & {t.slug for t in site.topics}  # slugs no longer configured are ignored
    if chosen:
        shown = papers_in_topics(issue.entries, site.topics, chosen)
        if not shown:
            raise RenderError(f"issue {issue.number}: no paper in the topics {', '.join(sorted(options.topics))}")
        issue = Issue(issue.number, issue.published, shown, issue.slot)
    slots = personal_slots(site, issue, options.mark_key)
    date = issue.published.astimezone(ZoneInfo(site.timezone)).strftime("%Y-%m-%d")
    context = _context(site, issue, date, total, options, slots)
    html_template = _template(env, HTML_TEMPLATE)

    # Computed once: the whole-abstract sections serve the first try and the text part, the highlights every try.
    whole = _sections(site, issue, STEPS, chosen)
    highlights = _highlights(site, issue, options, chosen)

    def attempt(steps: int) -> str:
        sections = whole if steps == STEPS else _sections(site, issue, steps, chosen)
        return _render_html(html_template, context, sections, highlights, FULL_LAYOUT)

    # Every abstract keeps steps/STEPS of its length: the largest share that fits is the richest email.
    kept = STEPS
    count = len(issue.entries)
    listed = count
    html = attempt(kept)
    level = "full"
    layout = FULL_LAYOUT
    sections: Sequence[_Section] = whole
    if _size(html) > max_html_bytes:
        smallest = attempt(0)
        if _size(smallest) <= max_html_bytes:
            kept, html = _largest_fitting(attempt, max_html_bytes, (0, smallest), (STEPS, html))
            level = "shortened" if kept else "titles"
        else:
            kept = 0
            level, listed, html, (sections, layout) = _list_fitting(
                html_template, context, whole, highlights, max_html_bytes
            )
    if layout is FULL_LAYOUT and kept != STEPS:
        sections = _sections(site, issue, kept, chosen)

    in_full = sum(1 for entry in issue.entries if _kept_paragraphs(entry, kept) == _paragraphs(entry)) if kept else 0
    share = f"{kept * 100 // STEPS}% of each abstract" if level == "shortened" else level
    detail = f"{share}: {in_full} of {count} entries in full, {listed} listed, {_size(html)} bytes"
    if _size(html) > max_html_bytes:
        detail += f", over the limit of {max_html_bytes} (email_max_bytes)"
    text_template = _template(env, TEXT_TEMPLATE)
    # The probe below folds the same papers again: fold each text once (wrap_text is pure, and most of the cost).
    wrap = functools.cache(wrap_text)
    text = _render_text(text_template, context, whole, highlights, wrap)
    # Count the template's own slots by rendering the same email (same papers, same layout) with other markers:
    # outside text holding this issue's markers would raise the count in `html`/`text` but not here, and the
    # mailer refuses a mismatch.
    probe = probe_slots(slots)
    probe_context = {**context, "unsubscribe_url": probe.unsubscribe, "preferences_url": probe.preferences}
    slots = replace(
        slots,
        html_slots=count_slots(_render_html(html_template, probe_context, sections, highlights, layout), probe),
        text_slots=count_slots(_render_text(text_template, probe_context, whole, highlights, wrap), probe),
    )
    return RenderedEmail(
        html=html,
        text=text,
        detail=detail,
        level=level,
        entries_in_full=in_full,
        slots=slots,
        kept=kept / STEPS,
        listed=listed,
    )


def _list_fitting(
    template: jinja2.Template,
    context: dict[str, object],
    whole: Sequence[_Section],
    highlights: list[_Paper],
    limit: int,
) -> tuple[str, int, str, tuple[Sequence[_Section], _Layout]]:
    """(level, papers listed, html, the sections and layout it was rendered from) for an issue whose titles alone
    do not fit: without the table of contents, then as a compact list of titles, then the first papers of that
    list (as many as fit) and "M more on the web". The smallest of these when even that is too large (it still
    links the issue page)."""
    total = sum(len(s.papers) for s in whole)
    dropped, no_contents_layout = _abstracts_dropped(whole), _Layout(contents=False)
    no_contents = _render_html(template, context, dropped, highlights, no_contents_layout)
    if _size(no_contents) <= limit:
        return "titles, no contents", total, no_contents, (dropped, no_contents_layout)
    compact = _Layout(contents=False, compact=True)
    full_list = _render_html(template, context, whole, highlights, compact)
    if _size(full_list) <= limit:
        return "list", total, full_list, (whole, compact)

    def first(n: int) -> str:
        return _render_html(template, context, _first_papers(whole, n), highlights, _Layout(False, True, total - n))

    listed, html = _largest_fitting(first, limit, (0, first(0)), (total, full_list))
    return "partial list", listed, html, (_first_papers(whole, listed), _Layout(False, True, total - listed))


def _abstracts_dropped(sections: Sequence[_Section]) -> list[_Section]:
    return [
        _Section(s.name_zh, s.name_en, tuple(replace(p, paragraphs=(), shortened=True) for p in s.papers))
        for s in sections
    ]


def _first_papers(sections: Sequence[_Section], n: int) -> list[_Section]:
    """The sections holding the first `n` papers (in the contents' numbering), the last one cut."""
    kept: list[_Section] = []
    for section in sections:
        if n <= 0:
            break
        kept.append(_Section(section.name_zh, section.name_en, section.papers[:n]))
        n -= len(section.papers)
    return kept


def _largest_fitting(
    attempt: Callable[[int], str], limit: int, fits: tuple[int, str], too_big: tuple[int, str]
) -> tuple[int, str]:
    """The largest step whose email is at most `limit` bytes, and that email, between a step that fits and a
    larger one that does not. Each MJML compile is costly and the size grows about linearly with the step, so
    the first try is where the line through the two ends crosses the limit and the second its neighbour across
    the limit (2 tries instead of bisection's 6); bisection finishes when the line was wrong. The answer is the
    one bisection gives for any growing size."""
    (low, low_html), (high, high_html) = fits, too_big

    def probe(step: int) -> None:
        nonlocal low, low_html, high
        candidate = attempt(step)
        if _size(candidate) <= limit:
            low, low_html = step, candidate
        else:
            high = step

    if high - low > 1:
        crossing = low + (limit - _size(low_html)) * (high - low) // max(1, _size(high_html) - _size(low_html))
        guess = min(max(crossing, low + 1), high - 1)
        probe(guess)
        if high - low > 1:
            probe(low + 1 if guess == low else high - 1)
    while high - low > 1:
        probe((low + high) // 2)
    return low, low_html


def note_paragraphs(note: str) -> tuple[str, ...]:
    """The editor's note as paragraphs (blank lines separate them; lines within one are joined)."""

    paragraphs: list[list[str]] = [[]]
    for line in note.replace("\r\n", "\n").split("\n"):
        if line.strip():
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    return tuple(join_soft_lines(p) for p in paragraphs if p)


def _size(html: str) -> int:
    return len(html.encode("utf-8"))


def _template(env: jinja2.Environment, name: str) -> jinja2.Template:
    try:
        return env.get_template(name)
    except jinja2.TemplateError as error:
        raise RenderError(f"template {name}: {error}") from error


def _html_text(text: str) -> Markup:
    """Escaped seed text, with `%%` hidden from the mailer's placeholder substitution (an entity reads the same)."""
    return Markup(str(escape(text)).replace("%%", "&#37;%"))


def _linked(text: str) -> Markup:
    return Markup(str(linkify(text)).replace("%%", "&#37;%"))


def _paragraphs(entry: Entry) -> tuple[str, ...]:
    return tuple(p.strip() for p in entry.abstract if p.strip())


def _kept_paragraphs(entry: Entry, steps: int) -> tuple[str, ...]:
    """The abstract shortened to `steps`/STEPS of its length (whole paragraphs first, the last one cut)."""
    paragraphs = _paragraphs(entry)
    if steps >= STEPS:
        return paragraphs
    budget = math.ceil(sum(len(p) for p in paragraphs) * steps / STEPS)
    if budget < MIN_KEPT_CHARS:
        return ()
    kept: list[str] = []
    for paragraph in paragraphs:
        if budget < MIN_KEPT_CHARS:
            break
        kept.append(truncate(paragraph, budget))
        budget -= len(paragraph)
    return tuple(kept)


def _host(entry: Entry, url: str | None) -> str:
    if url is None:
        return ""
    if is_arxiv_id(entry.id):
        return "arXiv"
    host = urlsplit(url).hostname or "原文"
    return host.removeprefix("www.")


def _paper(site: Site, issue: Issue, number: int, entry: Entry, steps: int) -> _Paper:
    shown = _kept_paragraphs(entry, steps)
    url = paper_url(entry)
    paragraphs = _paragraphs(entry)
    return _Paper(
        entry=entry,
        number=number,
        anchor=entry.anchor,
        title_en=_html_text(entry.title_en),
        title_zh=_html_text(entry.title_zh),
        url=url,
        host=_host(entry, url),
        web_url=site.link(f"issues/{issue.number}/#{entry.anchor}"),
        teaser=_html_text(truncate(first_sentence(paragraphs[0]), SENTENCE_CHARS)) if paragraphs else Markup(""),
        paragraphs=tuple(_linked(p) for p in shown),
        shortened=shown != paragraphs,
    )


def _sections(site: Site, issue: Issue, steps: int, chosen: frozenset[str]) -> list[_Section]:
    """The issue page's topic sections and numbering (only the `chosen` topics' sections, when a reader chose
    some), each paper shortened to `steps`/STEPS."""
    sections = []
    for section in topic_sections(site, issue, chosen):
        names = (section.topic.name_zh, section.topic.name_en) if section.topic else ("本期论文", "Papers")
        if names[1] == names[0]:  # "AI for Science" is its own Chinese name: say it once
            names = (names[0], "")
        papers = tuple(_paper(site, issue, number, entry, steps) for number, entry in section.papers)
        sections.append(_Section(names[0], names[1], papers))
    return sections


def _highlights(site: Site, issue: Issue, options: EmailOptions, chosen: frozenset[str]) -> list[_Paper]:
    """The first `options.highlights` papers of the issue (the editor's order), with their numbers in the contents;
    none when the issue has no more papers than that."""
    if options.highlights <= 0 or len(issue.entries) <= options.highlights:
        return []  # a short email (a reader's topics) is all highlights: the contents say enough
    sections = topic_sections(site, issue, chosen)
    numbers = {entry.id: number for section in sections for number, entry in section.papers}
    return [_paper(site, issue, numbers[e.id], e, 0) for e in issue.entries[: options.highlights]]


def _context(
    site: Site, issue: Issue, date: str, total: int, options: EmailOptions, slots: PersonalSlots
) -> dict[str, object]:
    number = issue.number
    count = len(issue.entries)
    preheader = " · ".join(e.title_zh for e in issue.entries[:PREHEADER_TITLES])
    if count > PREHEADER_TITLES:
        preheader += " …"
    selected = [_Names(t.name_zh, t.name_en) for t in site.topics if t.slug in options.topics]
    return {
        "lang": site.language,
        "site": site,
        "number": number,
        "date": date,
        "total": total,
        "shown": count,
        "selected": selected,
        "title": f"{site.title} · 第 {number} 期 / Issue {number}",
        "preheader": _html_text(f"本期 {count} 篇论文 / {count} papers: {preheader}"),
        "view_url": site.link(f"issues/{number}/"),
        "note_text": note_paragraphs(options.note),
        "note": tuple(_linked(p) for p in note_paragraphs(options.note)),
        "sender_address": options.sender_address,
        "reason": _Names(
            f"你收到这封邮件，是因为你在 {site.url} 订阅了《{site.title}》。",
            f"You get this email because you subscribed to {site.title} at {site.url}.",
        ),
        "unsubscribe_url": slots.unsubscribe,
        "preferences_url": slots.preferences,
    }


def _render_html(
    template: jinja2.Template,
    context: dict[str, object],
    sections: Sequence[_Section],
    highlights: list[_Paper],
    layout: _Layout,
) -> str:
    try:
        source = template.render(context, sections=sections, highlights=highlights, layout=layout)
    except jinja2.TemplateError as error:
        raise RenderError(f"template {template.name}: {error}") from error
    try:
        html: str = mjml.mjml2html(source)
    except ValueError as error:
        raise RenderError(
            f"template {template.name}: MJML could not compile issue {context['number']} ({error});"
            " check the template for unclosed tags and raw '<' outside markup"
        ) from error
    return html


def _render_text(
    template: jinja2.Template,
    context: dict[str, object],
    whole: Sequence[_Section],
    highlighted: Sequence[_Paper],
    wrap: Callable[..., str] = wrap_text,
) -> str:
    """The plain-text part: the same structure as the HTML (highlights, contents, numbered papers), whole abstracts
    (`whole`: the sections with every abstract in full); `wrap` folds long text (`wrap_text`, maybe cached)."""
    sections = [
        {"name_zh": s.name_zh, "name_en": s.name_en, "papers": [_text_paper(p) for p in s.papers]} for s in whole
    ]
    highlights = [_text_paper(p) for p in highlighted]
    try:
        text = template.render(context, sections=sections, highlights=highlights, wrap=wrap)
    except jinja2.TemplateError as error:
        raise RenderError(f"template {template.name}: {error}") from error
    # Whatever the template does, no line may reach the 998-octet limit of RFC 5322.
    return "\n".join(line for raw in text.split("\n") for line in split_bytes(raw))


def _text_paper(paper: _Paper) -> dict[str, object]:
    """A paper as the text template sees it: plain strings (no escaping in a text part)."""
    entry = paper.entry
    return {
        "number": paper.number,
        "title_en": entry.title_en,
        "title_zh": entry.title_zh,
        "url": paper.url or "",
        "web_url": paper.web_url,
        "teaser": truncate(first_sentence(_paragraphs(entry)[0]), SENTENCE_CHARS) if _paragraphs(entry) else "",
        "paragraphs": _paragraphs(entry),
    }
