"""The offline search page: a static index built at render time, searched in the browser by a small script.

Why not Pagefind: it finds Chinese words (its extended binary segments them), but it indexes whole pages, needs
the site served over HTTP (it fetches its index; our site also works from `file://`), and re-indexes every page
on every run, so a new week would cost time in proportion to the archive. Here the index is one JavaScript shard
per archive page (`search/shard-<k>.js`: the papers of issues (k-1)*page_size+1 .. k*page_size), loaded with
`<script>` tags (which work from `file://`), so a new week rewrites only the last shard and the manifest.

Matching is substring matching on NFKC-folded, lower-cased text (titles, topic names, abstract): a Chinese query
needs no word segmentation ("扩散" and "扩散模型" both match the text "扩散模型"), and several words separated by
spaces must all match. The script never writes seed text as HTML (textContent only).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

import jinja2

from digest.model import Entry, Issue, Site
from digest.render import Bundle, json_for_script
from digest.render.site import base_context, render_template
from digest.topics import assign_topics

SEARCH_PAGE = "search/index.html"
SEARCH_SCRIPT = "search/search.js"
MANIFEST = "search/manifest.js"


def shard_path(page_number: int) -> str:
    """Output path of the search shard for archive page `page_number`."""
    return f"search/shard-{page_number}.js"


def searchable_text(entry: Entry, topic_names: Sequence[str]) -> str:
    """What a query is matched against: titles, topic names and abstract, folded the way the script folds
    queries (NFKC, lower case) so that full-width letters and case do not matter."""
    text = "\n".join([entry.title_zh, entry.title_en, *topic_names, *entry.abstract])
    return unicodedata.normalize("NFKC", text).lower()


def _paper(site: Site, issue: Issue, entry: Entry) -> dict[str, Any]:
    slugs = assign_topics(entry, site.topics)
    names = [name for t in site.topics if t.slug in slugs for name in (t.name_zh, t.name_en)]
    return {
        "issue": issue.number,
        "anchor": entry.anchor,
        "zh": entry.title_zh,
        "en": entry.title_en,
        "topics": [t.name_zh for t in site.topics if t.slug in slugs],
        "text": searchable_text(entry, names),
    }


def render_search_shard(site: Site, page_number: int, page_issues: Sequence[Issue]) -> bytes:
    """`search/shard-<k>.js`: the papers of archive page k's issues, newest first. Depends only on them."""
    papers = [
        _paper(site, issue, entry)
        for issue in sorted(page_issues, key=lambda i: i.number, reverse=True)
        for entry in issue.entries
    ]
    return f"digestSearch.addShard({page_number},{json_for_script(papers)});\n".encode()


def render_search_manifest(shard_count: int) -> bytes:
    """`search/manifest.js`: how many shards there are (the script loads them newest first)."""
    return f"digestSearch.manifest({json_for_script({'shards': shard_count})});\n".encode()


def render_search_page(site: Site, env: jinja2.Environment) -> Bundle:
    """`search/index.html` and its script (`search.js`, a template a user may override like the others)."""
    return {SEARCH_PAGE: render_search_html(site, env), SEARCH_SCRIPT: search_script(env)}


def render_search_html(site: Site, env: jinja2.Environment) -> bytes:
    """`search/index.html`."""
    context = base_context(site, "../")
    context.update(title=f"搜索 · {site.title}")
    return render_template(env, "search.html.j2", context)


def search_script(env: jinja2.Environment) -> bytes:
    """`search/search.js`: the template's source, as is."""
    assert env.loader is not None
    script, _, _ = env.loader.get_source(env, "search.js")
    return script.encode("utf-8")
