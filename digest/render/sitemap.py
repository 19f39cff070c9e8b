"""sitemap.xml (sitemaps.org 0.9) as an index of small sitemaps, paginated like the archive so that a new week
rewrites only the index, the pages sitemap and the sitemap of the last archive page."""

from __future__ import annotations

from collections.abc import Sequence

import jinja2

from digest.model import Issue, Site
from digest.render import Bundle
from digest.render.site import archive_page_path, topic_index_path

SITEMAP = "sitemap.xml"
PAGES_SITEMAP = "sitemaps/pages.xml"


def issues_sitemap_path(page_number: int) -> str:
    """The sitemap of archive page `page_number`'s issue pages."""
    return f"sitemaps/issues-{page_number}.xml"


def render_sitemap_index(site: Site, page_count: int, env: jinja2.Environment) -> Bundle:
    """`sitemap.xml` (the index) and `sitemaps/pages.xml` (index, archive pages, topics, search)."""
    return {SITEMAP: render_sitemap(site, page_count, env), PAGES_SITEMAP: render_pages_sitemap(site, page_count, env)}


def render_sitemap(site: Site, page_count: int, env: jinja2.Environment) -> bytes:
    """`sitemap.xml`: the sitemap index (the pages sitemap, then one sitemap per archive page)."""
    maps = [site.link(PAGES_SITEMAP), *(site.link(issues_sitemap_path(k)) for k in range(1, page_count + 1))]
    return env.get_template("sitemap.xml.j2").render(index=True, locations=[(url, None) for url in maps]).encode()


def render_pages_sitemap(site: Site, page_count: int, env: jinja2.Environment) -> bytes:
    """`sitemaps/pages.xml`: the index, topics and search pages, and every archive page."""
    pages = [site.url, site.link("topics/index.html"), site.link("search/index.html")]
    pages += [site.link(topic_index_path(t.slug)) for t in site.topics]
    pages += [site.link(archive_page_path(k)) for k in range(1, page_count + 1)]
    return env.get_template("sitemap.xml.j2").render(index=False, locations=[(url, None) for url in pages]).encode()


def render_issues_sitemap(site: Site, page_number: int, page_issues: Sequence[Issue], env: jinja2.Environment) -> bytes:
    """`sitemaps/issues-<k>.xml`: the issue pages of archive page k, each with its last change."""
    locations = [
        (site.link(f"issues/{issue.number}/"), issue.updated.date().isoformat())
        for issue in sorted(page_issues, key=lambda i: i.number)
    ]
    return env.get_template("sitemap.xml.j2").render(index=False, locations=locations).encode("utf-8")
