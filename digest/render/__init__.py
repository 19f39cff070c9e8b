"""Renderers: pure functions from model objects to file contents (str/bytes). No file or network I/O
besides loading templates."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from markupsafe import Markup

if TYPE_CHECKING:
    import jinja2

#: Rendered files keyed by their path relative to the output folder ("issues/1/index.html").
Bundle = dict[str, bytes]

_PACKAGED = Path(__file__).resolve().parent.parent / "_templates"
_SOURCE_TREE = Path(__file__).resolve().parent.parent.parent / "templates"


def default_templates_dir() -> Path:
    """The templates shipped with digest: the wheel's copy, else the source tree's `templates/`."""
    return _PACKAGED if _PACKAGED.is_dir() else _SOURCE_TREE


def make_environment(templates_dir: Path | None = None) -> jinja2.Environment:
    """A Jinja2 environment that escapes everything in HTML, MJML and XML templates (seed text is untrusted).

    A user's templates folder overrides the shipped templates file by file.
    """
    import jinja2  # imported here: commands that render nothing start faster

    search = [str(templates_dir)] if templates_dir else []
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
    import json

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
