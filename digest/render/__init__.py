"""Renderers: pure functions from model objects to file contents (str/bytes). No file or network I/O
besides loading templates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from markupsafe import Markup

from digest.errors import DigestError

if TYPE_CHECKING:
    import jinja2

#: Rendered files keyed by their path relative to the output folder ("issues/1/index.html").
Bundle = dict[str, bytes]


class FeedFile(NamedTuple):
    """A feed format: its file name, media type, link title and renderer, written down here only. The table of
    outputs (`digest.build.OUTPUTS`, which `digest serve` reads), the autodiscovery links, the feeds' self links
    and the WebSub pings all follow this list: a new paper feed format is its renderer and one line here."""

    name: str
    media_type: str
    title: str
    renderer: str = ""  # a paper feed: the `digest.render.feeds` function (site, issues, scope); else: a row of its own


RSS = FeedFile("rss.xml", "application/rss+xml", "RSS", "render_rss")
ATOM = FeedFile("atom.xml", "application/atom+xml", "Atom", "render_atom")
JSON_FEED = FeedFile("feed.json", "application/feed+json", "JSON Feed", "render_json_feed")
ISSUES_FEED = FeedFile("issues.xml", "application/atom+xml", "每期合集 (Atom)")
#: The site's feeds, also used for `<link rel="alternate">` autodiscovery.
FEED_FILES: tuple[FeedFile, ...] = (RSS, ATOM, JSON_FEED, ISSUES_FEED)
#: The paper feeds: at the site root and in every topic's folder (a topic has no issues feed).
TOPIC_FEED_FILES: tuple[FeedFile, ...] = tuple(feed for feed in FEED_FILES if feed.renderer)


_PACKAGED = Path(__file__).resolve().parent.parent / "_templates"
_SOURCE_TREE = Path(__file__).resolve().parent.parent.parent / "templates"


def default_templates_dir() -> Path:
    """The templates shipped with digest: the wheel's copy, else the source tree's `templates/`."""
    return _PACKAGED if _PACKAGED.is_dir() else _SOURCE_TREE


def make_environment(templates_dir: Path | None = None) -> jinja2.Environment:
    """A Jinja2 environment that escapes everything in HTML, MJML and XML templates (seed text is untrusted).

    A user's templates folder (when it exists) overrides the shipped templates file by file.
    """
    import jinja2  # noqa: PLC0415 (lazy: jinja2 only when used)

    search = [str(templates_dir)] if templates_dir and templates_dir.is_dir() else []
    search.append(str(default_templates_dir()))
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(search),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "mjml", "xml", "html.j2", "mjml.j2", "xml.j2"),
            disabled_extensions=("txt", "txt.j2"),
            default_for_string=True,
            default=True,
        ),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def json_for_script(value: object) -> Markup:
    """JSON safe inside an HTML `<script>` element (JSON-LD, search shards): `<`, `>` and `&` become `\\u003c`
    escapes, so seed text can never close the element or open a comment; U+2028/U+2029 are escaped for old JS."""

    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return Markup(text)  # safe by construction for a <script> body; HTML-escaping it would corrupt the JSON


def template_error_line(error: BaseException) -> str | None:
    """`templates/x.j2:LINE: message` for an error in a template: a syntax error, or any error raised while
    rendering (an undefined variable, a failed filter, a division by zero): the line comes from the innermost
    template frame of the traceback (a macro or an included template, if the error is there). None for an error
    that did not happen in a template."""
    import jinja2  # noqa: PLC0415 (lazy: jinja2 only when used)

    if isinstance(error, DigestError):  # a renderer's error wrapping the template's own
        return template_error_line(error.__cause__) if error.__cause__ is not None else None
    if isinstance(error, jinja2.TemplateSyntaxError):
        name = error.filename or error.name or "<template>"
        return f"{_shown_path(name)}:{error.lineno}: {error.message}"
    place: tuple[str, int] | None = None
    tb = error.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):  # Jinja2 rewrites the frames of template code to the template's file and line
            place = (filename, tb.tb_lineno)
        tb = tb.tb_next
    if isinstance(error, jinja2.TemplateError):
        message = error.message or type(error).__name__
    elif place is not None:
        message = f"{type(error).__name__}: {error}"
    else:
        return None
    if place is None:
        return f"template error: {message}"
    return f"{_shown_path(place[0])}:{place[1]}: {message}"


def _shown_path(filename: str) -> str:
    """A template's path as the user typed it: relative to the working directory when it is inside it."""
    path = Path(filename)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return filename
