"""The status page (`digest status --html`, and the page attached to the editor's report): the numbers of `digest
status` and four charts, in one self-contained HTML file. Pure.

The charts are pygal's SVG, inlined: pygal always adds a `<script>` with its tooltip config (even with `js=[]`), so
every script element and comment is removed from its tree before the SVG is written into the page. Nothing is
loaded from anywhere: the page opens offline, from a mail attachment, with scripts blocked.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import datetime

from lxml import etree  # type: ignore[import-untyped]

from digest.status import StatusHistory

_WIDTH, _HEIGHT = 520, 340  # the viewBox: the SVG scales to its column, so labels are sized for a 375 px phone too
TOPIC_LABEL_CHARS = 22  # a longer topic name is cut (with "…"): pygal would give it the whole chart

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK SC", sans-serif;
  color: #1f2328; background: #f6f8fa; }
main { max-width: 1200px; margin: 0 auto; padding: 16px; }
h1 { font-size: 1.5rem; margin: 0 0 4px; overflow-wrap: anywhere; }
.when { color: #57606a; margin: 0 0 16px; }
.cards { display: grid; grid-template-columns: 1fr; gap: 16px; }
@media (min-width: 760px) { .cards { grid-template-columns: 1fr 1fr; } }
section { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 12px 16px; min-width: 0; }
h2 { font-size: 1.1rem; margin: 0 0 8px; }
dl { margin: 0; display: grid; grid-template-columns: minmax(0, max-content) minmax(0, 1fr); gap: 4px 16px; }
dt { font-weight: 600; overflow-wrap: anywhere; }
dd { margin: 0; overflow-wrap: anywhere; }
@media (max-width: 520px) { dl { grid-template-columns: 1fr; } dd { margin-bottom: 8px; } }
svg { display: block; width: 100%; height: auto; }
.empty { color: #57606a; }
.wide { grid-column: 1 / -1; }
"""


def status_page(
    *, title: str, generated: datetime, lines: Mapping[str, str], history: StatusHistory, link: str = ""
) -> str:
    """The whole page: `lines` are the worded numbers of `digest status` (label -> value), `history` what the
    charts show. Every outside text (title, labels, topic names) is escaped here or by pygal."""
    esc = html.escape
    numbers = "".join(f"<dt>{esc(key)}</dt><dd>{esc(value)}</dd>" for key, value in lines.items())
    charts = "".join(
        f"<section><h2>{esc(heading)}</h2>{svg or '<p class=empty>no data yet</p>'}</section>"
        for heading, svg in _charts(history)
    )
    site = f' · <a href="{esc(link, quote=True)}">{esc(link)}</a>' if link else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · status</title><style>{_CSS}</style></head><body><main>"
        f"<h1>{esc(title)} · status</h1>"
        f'<p class="when">as of {esc(generated.strftime("%Y-%m-%d %H:%M %Z"))}{site}</p>'
        f'<div class="cards"><section class="wide"><h2>Numbers</h2><dl>{numbers}</dl></section>{charts}</div>'
        "</main></body></html>\n"
    )


def _charts(history: StatusHistory) -> list[tuple[str, str]]:
    """(heading, inline SVG or "" when there is nothing to draw) of each chart."""
    import pygal  # type: ignore[import-untyped]  # noqa: PLC0415 (lazy: pygal only when a page is drawn)

    points = history.issues
    labels = [str(p.issue) for p in points]
    found: list[tuple[str, str]] = []
    every = {"x_labels_major_every": max(1, len(points) // 8), "show_minor_x_labels": len(points) <= 10}

    growth = pygal.Line(_config(), x_title="issue", show_legend=False, **every)
    growth.x_labels = labels
    growth.y_labels = _whole_numbers([p.subscribers for p in points])
    growth.add("subscribers", [p.subscribers for p in points])
    found.append(_section("Subscribers over issues", growth, bool(points)))

    mailed = [p for p in points if p.rates.mailed]
    delivered = pygal.Bar(_config(), x_title="issue", y_title="%", range=(0, 100), show_legend=False, **every)
    delivered.x_labels = [str(p.issue) for p in mailed]
    delivered.add("delivered", [round(100 * p.rates.rate(p.rates.delivered), 2) for p in mailed])
    found.append(_section("Delivered per issue (% of mailed)", delivered, bool(mailed)))

    bounces = pygal.Line(
        _config(), max_scale=6, x_title="issue", y_title="%", legend_at_bottom=True, legend_at_bottom_columns=3, **every
    )
    bounces.x_labels = [str(p.issue) for p in mailed]
    bounces.add("hard", [round(100 * p.rates.rate(p.rates.hard), 2) for p in mailed])
    bounces.add("soft", [round(100 * p.rates.rate(p.rates.soft), 2) for p in mailed])
    bounces.add("complaints", [round(100 * p.rates.rate(p.rates.complained), 3) for p in mailed])
    found.append(_section("Bounces and complaints per issue (% of mailed)", bounces, bool(mailed)))

    topics = pygal.HorizontalBar(_config(), show_legend=False)
    shown = history.topics[::-1]  # pygal draws the first bar at the bottom: the first topic goes on top
    topics.x_labels = [_cut(t.name) for t in shown]
    topics.add("papers", [t.papers for t in shown])
    topics.y_labels = _whole_numbers([0, *(t.papers for t in shown)])
    found.append(_section("Papers per topic", topics, any(t.papers for t in history.topics)))
    return found


def _cut(name: str) -> str:
    return name if len(name) <= TOPIC_LABEL_CHARS else name[: TOPIC_LABEL_CHARS - 1].rstrip() + "…"


def _whole_numbers(values: list[int]) -> list[int]:
    """At most about six whole-number ticks covering `values` (pygal would put 4.2 subscribers on the axis)."""
    if not values:
        return []
    low, high = min(values), max(values)
    step = max(1, -(-(high - low) // 6))
    return list(range(low - low % step, high + step, step))


def _section(heading: str, chart: object, drawn: bool) -> tuple[str, str]:
    return heading, _svg(chart, heading) if drawn else ""


def _config() -> object:
    """The settings every chart shares: no size on the SVG (it scales to its column), large labels, no script."""
    import pygal  # noqa: PLC0415 (lazy: pygal only when a page is drawn)
    from pygal.style import Style  # type: ignore[import-untyped]  # noqa: PLC0415 (lazy, as above)

    style = Style(
        background="#ffffff",
        plot_background="#ffffff",
        foreground="#1f2328",
        foreground_strong="#1f2328",
        foreground_subtle="#d0d7de",
        colors=("#0969da", "#cf222e", "#bf8700", "#8250df", "#1a7f37"),
        font_family="system-ui, sans-serif",
        label_font_size=19,
        major_label_font_size=19,
        legend_font_size=19,
        value_font_size=17,
        title_font_size=20,
    )
    return pygal.Config(
        width=_WIDTH,
        height=_HEIGHT,
        explicit_size=False,
        disable_xml_declaration=True,
        js=[],
        style=style,
        print_values=False,
        show_y_guides=True,
        margin=8,
        margin_bottom=18,
        truncate_label=-1,  # never cut a number; topic names are cut by _cut
        truncate_legend=-1,
    )


def _svg(chart: object, heading: str) -> str:
    """The chart as an inline <svg> element with no script and no comment (pygal's tree, cleaned), its <title>
    (what a screen reader announces) the section's heading."""
    tree = chart.render_tree()  # type: ignore[attr-defined]
    for node in tree.xpath("//*[local-name() = 'script'] | //comment()"):
        node.getparent().remove(node)
    for node in tree.xpath("./*[local-name() = 'title']"):
        node.text = heading
    return str(etree.tostring(tree, encoding="unicode", method="xml"))
