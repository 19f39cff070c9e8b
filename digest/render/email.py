"""The email of an issue: Jinja2 -> MJML -> HTML (kept under Gmail's clipping size), plus its plain-text twin.

Pure: model objects in, strings out; no clock, no files besides the templates the environment loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

import jinja2
import mjml
from markupsafe import Markup, escape

from digest.errors import RenderError
from digest.model import Entry, Issue, Site
from digest.text import first_sentence, linkify, split_bytes, truncate, wrap_text

#: Generic markers of the personal links (for hand-made mails in tests); a rendered issue uses `personal_slots`.
UNSUBSCRIBE_PLACEHOLDER = "%%UNSUBSCRIBE_URL%%"
PREFERENCES_PLACEHOLDER = "%%PREFERENCES_URL%%"

HTML_TEMPLATE = "issue.mjml.j2"
TEXT_TEMPLATE = "email.txt.j2"

#: Gmail clips messages above 102 KB; the default leaves room for the personal unsubscribe URL.
MAX_HTML_BYTES = 100_000
#: Abstract length (characters) at the "cut" level, and of the first sentence at the "first-sentence" level.
CUT_CHARS = 300
SENTENCE_CHARS = 140
PREHEADER_TITLES = 3

# How much of one paper the email shows, richest first; "hidden" papers are only counted ("and M more").
Shape = Literal["full", "cut", "sentence", "title", "hidden"]
_SHAPES: tuple[Shape, ...] = ("full", "cut", "sentence", "title", "hidden")
_LEVEL_NAMES = {
    "full": "full",
    "cut": "cut",
    "sentence": "first-sentence",
    "title": "titles",
    "hidden": "some-titles",
}


@dataclass(frozen=True)
class PersonalSlots:
    """The markers the mailer replaces with each subscriber's own links (unsubscribe, preferences).

    Made from a hash of the issue's content and the site's random id: seed text cannot carry them (it would have to
    contain a hash of itself), so a `%%UNSUBSCRIBE_URL%%` typed into a paper's URL or abstract is only text."""

    unsubscribe: str
    preferences: str


def personal_slots(site: Site, issue: Issue) -> PersonalSlots:
    """This issue's markers (the same every time the issue is rendered, so a rebuild changes no file)."""
    import hashlib

    payload = "\0".join([site.feed_id, str(issue.number), *(e.content_hash for e in issue.entries)])
    nonce = hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]
    return PersonalSlots(f"%%UNSUBSCRIBE-{nonce}%%", f"%%PREFERENCES-{nonce}%%")


def web_copy(rendered: str, slots: PersonalSlots, link: str) -> str:
    """A rendered part with the personal links replaced by one neutral `link` (the copy published on the site)."""
    return rendered.replace(slots.unsubscribe, link).replace(slots.preferences, link)


@dataclass(frozen=True)
class RenderedEmail:
    """An issue's email: `html` (MJML-compiled) and `text`, with `detail` saying how much of it fits the html.

    `level` is the poorest presentation used ("full", "cut", "first-sentence", "titles", "some-titles");
    `entries_in_full` counts papers whose whole abstract is in the html.
    """

    html: str
    text: str
    detail: str
    level: str = "full"
    entries_in_full: int = 0
    slots: PersonalSlots = PersonalSlots(UNSUBSCRIBE_PLACEHOLDER, PREFERENCES_PLACEHOLDER)


@dataclass(frozen=True)
class _Paper:
    """What the templates see of one paper; the Markup fields are escaped (and linkified) already."""

    title_en: Markup
    title_zh: Markup
    url: str
    web_url: str
    paragraphs: tuple[Markup, ...]
    shortened: bool


def render_email(
    site: Site, issue: Issue, env: jinja2.Environment, *, max_html_bytes: int = MAX_HTML_BYTES
) -> RenderedEmail:
    """Render `issue` as email HTML of at most `max_html_bytes` (UTF-8) and its full plain-text version.

    Shows as much as fits: full abstracts, then cut ones, first sentences, titles, and at last only the first
    titles with a link to the rest on the web page. Raises RenderError when a template or MJML fails, or when
    even the shortest form does not fit.
    """
    for entry in issue.entries:
        if not entry.url.lower().startswith(("http://", "https://")):
            raise RenderError(f"{entry.source}:{entry.line}: paper URL is not http(s): {entry.url!r}")
    count = len(issue.entries)
    slots = personal_slots(site, issue)
    date = issue.published.astimezone(ZoneInfo(site.timezone)).strftime("%Y-%m-%d")
    html_template = _template(env, HTML_TEMPLATE)

    def attempt(step: int) -> tuple[str, tuple[Shape, ...]]:
        shapes = _plan(count, step)
        return _render_html(site, issue, html_template, date, shapes, slots), shapes

    # Steps make the email poorer one paper at a time; the smallest step that fits is the richest email.
    last = 4 * count
    html, shapes = attempt(0)
    if _size(html) > max_html_bytes:
        smallest, smallest_shapes = attempt(last)
        if _size(smallest) > max_html_bytes:
            raise RenderError(
                f"issue {issue.number}: even the shortest email is {_size(smallest)} bytes,"
                f" over the limit of {max_html_bytes}"
            )
        low, high = 0, last  # attempt(low) is too big, attempt(high) fits
        html, shapes = smallest, smallest_shapes
        while high - low > 1:
            middle = (low + high) // 2
            candidate, candidate_shapes = attempt(middle)
            if _size(candidate) <= max_html_bytes:
                high, html, shapes = middle, candidate, candidate_shapes
            else:
                low = middle

    level = _LEVEL_NAMES[shapes[-1]] if shapes else "full"
    in_full = sum(1 for entry, shape in zip(issue.entries, shapes, strict=True) if _is_whole(entry, shape))
    listed = sum(1 for shape in shapes if shape != "hidden")
    detail = f"{level}: {in_full} of {count} entries in full, {listed} listed, {_size(html)} bytes"
    text = _render_text(site, issue, _template(env, TEXT_TEMPLATE), date, slots)
    return RenderedEmail(html=html, text=text, detail=detail, level=level, entries_in_full=in_full, slots=slots)


def _plan(count: int, step: int) -> tuple[Shape, ...]:
    """The shapes of the papers at `step` (0 .. 4*count): each step moves one paper, last first, one shape down."""
    if count == 0:
        return ()
    stage, moved = divmod(step, count)
    if stage >= len(_SHAPES) - 1:
        hidden: tuple[Shape, ...] = ("hidden",)
        return hidden * count
    richer: Shape = _SHAPES[stage]
    poorer: Shape = _SHAPES[stage + 1]
    return (richer,) * (count - moved) + (poorer,) * moved


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


def _shown_paragraphs(entry: Entry, shape: Shape) -> tuple[str, ...]:
    """The abstract as the email shows it in `shape`."""
    paragraphs = tuple(p for p in entry.abstract if p.strip())
    if shape == "full":
        return paragraphs
    if shape == "sentence":
        return (truncate(first_sentence(paragraphs[0]), SENTENCE_CHARS),) if paragraphs else ()
    if shape == "cut":
        shown: list[str] = []
        budget = CUT_CHARS
        for paragraph in paragraphs:
            if budget < CUT_CHARS // 5:  # not worth starting another paragraph
                break
            shown.append(truncate(paragraph, budget))
            budget -= len(paragraph)
        return tuple(shown)
    return ()


def _is_whole(entry: Entry, shape: Shape) -> bool:
    return shape in ("full", "cut", "sentence") and _shown_paragraphs(entry, shape) == _shown_paragraphs(entry, "full")


def _paper(site: Site, issue: Issue, entry: Entry, shape: Shape) -> _Paper:
    shown = _shown_paragraphs(entry, shape)
    return _Paper(
        title_en=_html_text(entry.title_en),
        title_zh=_html_text(entry.title_zh),
        url=entry.url,
        web_url=site.link(f"issues/{issue.number}/#{entry.anchor}"),
        paragraphs=tuple(_linked(p) for p in shown),
        shortened=shown != _shown_paragraphs(entry, "full"),
    )


def _render_html(
    site: Site, issue: Issue, template: jinja2.Template, date: str, shapes: Sequence[Shape], slots: PersonalSlots
) -> str:
    shaped = list(zip(issue.entries, shapes, strict=True))
    cards = [_paper(site, issue, e, s) for e, s in shaped if s in ("full", "cut", "sentence")]
    listed = [_paper(site, issue, e, s) for e, s in shaped if s == "title"]
    number = issue.number
    preheader = " · ".join(e.title_en for e in issue.entries[:PREHEADER_TITLES])
    if len(issue.entries) > PREHEADER_TITLES:
        preheader += " …"
    context = {
        "lang": site.language,
        "site": site,
        "number": number,
        "date": date,
        "total": len(issue.entries),
        "title": f"{site.title} · 第 {number} 期 / Issue {number}",
        "preheader": _html_text(f"本期 {len(issue.entries)} 篇论文 / {len(issue.entries)} papers: {preheader}"),
        "view_url": site.link(f"issues/{number}/"),
        "cards": cards,
        "listed": listed,
        "more_count": shapes.count("hidden"),
        "unsubscribe_url": slots.unsubscribe,
        "preferences_url": slots.preferences,
    }
    try:
        source = template.render(context)
    except jinja2.TemplateError as error:
        raise RenderError(f"template {template.name}: {error}") from error
    try:
        html: str = mjml.mjml2html(source)
    except ValueError as error:
        raise RenderError(
            f"template {template.name}: MJML could not compile issue {number} ({error});"
            " check the template for unclosed tags and raw '<' outside markup"
        ) from error
    return html


def _render_text(site: Site, issue: Issue, template: jinja2.Template, date: str, slots: PersonalSlots) -> str:
    papers = [
        {"title_en": e.title_en, "title_zh": e.title_zh, "url": e.url, "paragraphs": e.abstract} for e in issue.entries
    ]
    context = {
        "site": site,
        "number": issue.number,
        "date": date,
        "total": len(issue.entries),
        "view_url": site.link(f"issues/{issue.number}/"),
        "papers": papers,
        "unsubscribe_url": slots.unsubscribe,
        "preferences_url": slots.preferences,
        "wrap": wrap_text,
    }
    try:
        text = template.render(context)
    except jinja2.TemplateError as error:
        raise RenderError(f"template {template.name}: {error}") from error
    # Whatever the template does, no line may reach the 998-octet limit of RFC 5322.
    return "\n".join(line for raw in text.split("\n") for line in split_bytes(raw))
