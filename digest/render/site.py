"""The web archive: issue pages, an archive index and topic pages, all with stable, append-only pagination.

Layout of the output folder (links between pages are relative, so the folder also works from `file://`):

    index.html                   the newest `page_size` issues, subscribe links, links to every archive page
    archive/page-<k>.html        issues (k-1)*page_size+1 .. k*page_size, numbered from the OLDEST issue
    issues/<n>/index.html        one issue: papers grouped by topic, full abstracts, each at `#<entry.anchor>`
    topics/index.html            every topic, its paper count and feeds
    topics/<slug>/index.html     the topic's newest `page_size` papers and links to its pages
    topics/<slug>/page-<k>.html  the topic's papers (k-1)*page_size+1 .. k*page_size, numbered from the OLDEST

Pages are stable: items (issues, or a topic's papers) are numbered from the oldest, so once full, page k never
changes (it links only to the index and to page k-1). A weekly run re-renders `index.html`, the last archive
page, the new issue page, the previous issue page (its "next" link appears), and for each topic the new issue
touches its index and last page, whatever the size of the archive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from digest.model import Entry, Issue, Site, Topic
from digest.render import Bundle, json_for_script
from digest.render.feeds import (
    FEED_FILES,
    TOPIC_FEED_FILES,
    issue_title,
    paper_id,
    paper_url,
    papers_context,
    topic_folder,
)
from digest.text import truncate
from digest.topics import assign_topics

DEFAULT_PAGE_SIZE = 50


# ----------------------------------------------------------------------------------- paths


def archive_page_path(page_number: int) -> str:
    """Output path of archive page `page_number` (1 = the oldest issues)."""
    return f"archive/page-{page_number}.html"


# Stable pagination of items numbered 1..n from the oldest (issues in the archive, a topic's papers).


def page_number(ordinal: int, page_size: int = DEFAULT_PAGE_SIZE) -> int:
    """The page that holds item `ordinal` (items 1..page_size are on page 1)."""
    if ordinal < 1 or page_size < 1:
        raise ValueError(f"issue numbers and page sizes start at 1, got {ordinal}, {page_size}")
    return (ordinal - 1) // page_size + 1


def page_count(total: int, page_size: int = DEFAULT_PAGE_SIZE) -> int:
    """How many pages `total` items fill (0 when there are none)."""
    return page_number(total, page_size) if total > 0 else 0


def pages_for(ordinals: Iterable[int], page_size: int = DEFAULT_PAGE_SIZE) -> dict[int, tuple[int, ...]]:
    """Group item numbers by page: `{page_number: (item numbers, newest first)}` (what `rebuild` renders)."""
    pages: dict[int, list[int]] = {}
    for number in sorted(set(ordinals), reverse=True):
        pages.setdefault(page_number(number, page_size), []).append(number)
    return {page: tuple(numbers) for page, numbers in sorted(pages.items())}


def index_ordinals(total: int, page_size: int = DEFAULT_PAGE_SIZE) -> range:
    """The items an index page shows, newest first: the newest `page_size` (which cover the last page)."""
    return range(total, max(total - page_size, 0), -1)


# The archive numbers issues 1..n: its call sites read better with these names.
archive_page_number = page_number
archive_page_count = page_count
archive_pages_for = pages_for
archive_issue_numbers = index_ordinals


def topic_index_path(slug: str) -> str:
    """Output path of a topic's index page."""
    return topic_folder(slug) + "index.html"


def topic_page_path(slug: str, page: int) -> str:
    """Output path of page `page` of a topic (1 = its oldest papers)."""
    return topic_folder(slug) + f"page-{page}.html"


# ----------------------------------------------------------------------------------- context


@dataclass(frozen=True)
class _IssueRow:
    issue: Issue
    published_iso: str
    published_date: str


@dataclass(frozen=True)
class _PageLink:
    path: str
    label: str


@dataclass(frozen=True)
class TopicPaper:
    """A paper of a topic: the issue it was published in and its position there."""

    issue: Issue
    position: int

    @property
    def entry(self) -> Entry:
        return self.issue.entries[self.position]


@dataclass(frozen=True)
class _PaperRow:
    issue: Issue
    entry: Entry
    published_iso: str
    published_date: str


def _local(site: Site, moment: datetime) -> datetime:
    return moment.astimezone(ZoneInfo(site.timezone))


def _row(site: Site, issue: Issue) -> _IssueRow:
    local = _local(site, issue.published)
    return _IssueRow(issue, local.isoformat(), local.strftime("%Y-%m-%d"))


def base_context(site: Site, root: str) -> dict[str, Any]:
    """What base.html.j2 needs: the site, the relative path to the site root, feed autodiscovery links, and where
    the short signup form posts (`digest serve` answers there)."""
    feeds = [{"href": site.link(name), "type": media, "title": title} for name, media, title, _ in FEED_FILES]
    return {"site": site, "root": root, "feeds": feeds, "signup_url": site.link("subscribe")}


def topic_feed_links(site: Site, topic: Topic) -> list[dict[str, str]]:
    """Autodiscovery and subscribe links of a topic's feeds."""
    return [
        {
            "href": site.link(topic_folder(topic.slug) + name),
            "type": media,
            "title": f"{site.title} · {topic.name_zh} · {title}",  # autodiscovery: says which feed it is
            "label": title,  # on the topic's own page the topic is obvious
        }
        for name, media, title, _ in TOPIC_FEED_FILES
    ]


def render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> bytes:
    return env.get_template(name).render(context).encode("utf-8")


# ----------------------------------------------------------------------------------- pages


def render_issue_page(site: Site, issue: Issue, env: jinja2.Environment, *, newest_number: int | None = None) -> bytes:
    """`issues/<n>/index.html`: the whole issue with full abstracts.

    Links to issue n-1 when n > 1, and to issue n+1 only when `newest_number` (the newest published issue)
    is above n; when issue n+1 is published, re-render issue n with the new `newest_number`.
    """
    row = _row(site, issue)
    newest = issue.number if newest_number is None else newest_number
    context = base_context(site, "../../")
    context.update(papers_context(site, issue, absolute=False))
    canonical = site.link(f"issues/{issue.number}/")
    context.update(
        title=issue_title(site, issue),
        canonical=canonical,
        share_description=truncate("；".join(e.title_zh for e in issue.entries), 200) or site.description,
        json_ld=json_for_script(issue_json_ld(site, issue, canonical, row.published_iso)),
        published_iso=row.published_iso,
        published_date=row.published_date,
        previous_href=f"../{issue.number - 1}/index.html" if issue.number > 1 else None,
        next_href=f"../{issue.number + 1}/index.html" if newest > issue.number else None,
    )
    return render_template(env, "issue.html.j2", context)


def issue_json_ld(site: Site, issue: Issue, canonical: str, published_iso: str) -> dict[str, Any]:
    """schema.org data of an issue page: one `ScholarlyArticle` per paper, part of the issue."""

    part_of = {
        "@type": "PublicationIssue",
        "issueNumber": str(issue.number),
        "datePublished": published_iso,
        "url": canonical,
        "isPartOf": {"@type": "Periodical", "name": site.title, "url": site.url},
    }
    articles = []
    for entry in issue.entries:
        article: dict[str, Any] = {
            "@type": "ScholarlyArticle",
            "@id": paper_id(entry),
            "headline": entry.title_zh,
            "alternativeHeadline": entry.title_en,
            "name": entry.title_en,
            "abstract": "\n\n".join(entry.abstract),
            "inLanguage": site.language,
            "mainEntityOfPage": f"{canonical}#{entry.anchor}",
            "isPartOf": part_of,
            "about": [t.name_en for t in site.topics if t.slug in assign_topics(entry, site.topics)],
        }
        url = paper_url(entry)
        if url:
            article["url"] = url
        articles.append(article)
    return {"@context": "https://schema.org", "@graph": articles}


def span(first: int, last: int) -> str:
    """A range of numbers as a reader writes it: "1–50", and "1" for a range of one (never "1–1")."""
    return f"{first}–{last}" if last > first else str(first)


def _page_links(total: int, page_size: int, path: Callable[[int], str], unit: str) -> list[_PageLink]:
    return [
        _PageLink(path(k), f"第 {span((k - 1) * page_size + 1, min(k * page_size, total))} {unit}")
        for k in range(page_count(total, page_size), 0, -1)
    ]


def render_archive_page(
    site: Site,
    page_number: int,
    page_issues: Sequence[Issue],
    env: jinja2.Environment,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> bytes:
    """`archive/page-<k>.html`: the issues of page k (any order in, newest first out).

    Its content depends only on its own issues, so a full page never changes again.
    """
    wrong = [i.number for i in page_issues if archive_page_number(i.number, page_size) != page_number]
    if wrong:
        raise ValueError(f"issues {wrong} do not belong on archive page {page_number}")
    ordered = sorted(page_issues, key=lambda i: i.number, reverse=True)
    first = (page_number - 1) * page_size + 1
    last = ordered[0].number if ordered else first
    context = base_context(site, "../")
    context.update(
        title=f"{site.title} · 往期归档：第 {span(first, last)} 期",
        page_number=page_number,
        issues=[_row(site, issue) for issue in ordered],
        pages=[],
        older_href=f"page-{page_number - 1}.html" if page_number > 1 else None,
    )
    return render_template(env, "archive.html.j2", context)


def render_archive(
    site: Site,
    issues_newest_first: Sequence[Issue],
    total_issues: int,
    env: jinja2.Environment,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> Bundle:
    """`index.html` and the last archive page: all that changes when an issue is published.

    `issues_newest_first` must hold the issues numbered `archive_issue_numbers(total_issues, page_size)` (the
    newest `page_size`; the last archive page is a subset of them); more are ignored. Issues are numbered
    1..total_issues. With no issues, the index is a friendly "nothing yet" page.
    """
    index_issues = _index_issues(issues_newest_first, total_issues, page_size)
    bundle: Bundle = {"index.html": _render_index(site, index_issues, total_issues, env, page_size)}
    if total_issues > 0:
        last_page = archive_page_count(total_issues, page_size)
        last_issues = [i for i in index_issues if archive_page_number(i.number, page_size) == last_page]
        bundle[archive_page_path(last_page)] = render_archive_page(site, last_page, last_issues, env, page_size)
    return bundle


def render_index(
    site: Site,
    issues_newest_first: Sequence[Issue],
    total_issues: int,
    env: jinja2.Environment,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> bytes:
    """`index.html` alone (see `render_archive`)."""
    index_issues = _index_issues(issues_newest_first, total_issues, page_size)
    return _render_index(site, index_issues, total_issues, env, page_size)


def _index_issues(issues_newest_first: Sequence[Issue], total_issues: int, page_size: int) -> list[Issue]:
    by_number = {issue.number: issue for issue in issues_newest_first}
    needed = archive_issue_numbers(total_issues, page_size)
    missing = [n for n in needed if n not in by_number]
    if missing:
        raise ValueError(f"render_archive needs issues {missing[0]}..{missing[-1]} (the newest {page_size})")
    return [by_number[n] for n in needed]


def _render_index(
    site: Site, index_issues: Sequence[Issue], total_issues: int, env: jinja2.Environment, page_size: int
) -> bytes:
    context = base_context(site, "")
    context.update(
        title=site.title,
        page_number=None,
        issues=[_row(site, issue) for issue in index_issues],
        pages=_page_links(total_issues, page_size, archive_page_path, "期"),
        older_href=None,
    )
    return render_template(env, "archive.html.j2", context)


# ----------------------------------------------------------------------------------- topics


def _paper_row(site: Site, paper: TopicPaper) -> _PaperRow:
    row = _row(site, paper.issue)
    return _PaperRow(paper.issue, paper.entry, row.published_iso, row.published_date)


def _topic_context(site: Site, topic: Topic) -> dict[str, Any]:
    context = base_context(site, "../../")
    context.update(topic=topic, extra_feeds=topic_feed_links(site, topic))
    return context


def render_topic_page(
    site: Site,
    topic: Topic,
    page: int,
    papers: Sequence[TopicPaper],
    env: jinja2.Environment,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> bytes:
    """`topics/<slug>/page-<k>.html`: the topic's papers numbered (k-1)*page_size+1 .. k*page_size, given
    oldest first (their numbers are implied by the page), shown newest first. Depends only on its own papers."""
    if len(papers) > page_size:
        raise ValueError(f"{len(papers)} papers do not fit on one page of {page_size}")
    first = (page - 1) * page_size + 1
    context = _topic_context(site, topic)
    context.update(
        title=f"{topic.name_zh} · 第 {span(first, first + len(papers) - 1)} 篇 · {site.title}",
        page_number=page,
        first=first,
        last=first + len(papers) - 1,
        total=None,
        papers=[_paper_row(site, p) for p in reversed(papers)],
        pages=[],
        older_href=f"page-{page - 1}.html" if page > 1 else None,
    )
    return render_template(env, "topic.html.j2", context)


def render_topic(
    site: Site,
    topic: Topic,
    newest: Sequence[TopicPaper],
    total: int,
    env: jinja2.Environment,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> Bundle:
    """A topic's index and last page: all that changes when an issue adds papers to it.

    `newest` holds the topic's newest `page_size` papers (or all, when fewer), newest first; `total` counts
    every paper of the topic (they are numbered 1..total from the oldest).
    """
    bundle: Bundle = {topic_index_path(topic.slug): render_topic_index(site, topic, newest, total, env, page_size)}
    if total > 0:
        last, on_last = topic_last_page(newest, total, page_size)
        bundle[topic_page_path(topic.slug, last)] = render_topic_page(site, topic, last, on_last, env, page_size)
    return bundle


def render_topic_index(
    site: Site,
    topic: Topic,
    newest: Sequence[TopicPaper],
    total: int,
    env: jinja2.Environment,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> bytes:
    """`topics/<slug>/index.html` alone (see `render_topic`)."""
    shown = list(newest[:page_size])
    if len(shown) < min(total, page_size):
        raise ValueError(f"render_topic needs the newest {min(total, page_size)} papers, got {len(shown)}")
    context = _topic_context(site, topic)
    context.update(
        title=f"{topic.name_zh} · {site.title}",
        page_number=None,
        total=total,
        papers=[_paper_row(site, p) for p in shown],
        pages=_page_links(total, page_size, lambda k: topic_page_path(topic.slug, k), "篇"),
        older_href=None,
    )
    return render_template(env, "topic.html.j2", context)


def topic_last_page(
    newest: Sequence[TopicPaper], total: int, page_size: int = DEFAULT_PAGE_SIZE
) -> tuple[int, list[TopicPaper]]:
    """The number of a topic's last page and its papers (oldest first), from its newest `page_size` papers."""
    last = page_count(total, page_size)
    shown = list(newest[:page_size])
    on_last = [
        p
        for rank, p in zip(index_ordinals(total, page_size), shown, strict=False)
        if page_number(rank, page_size) == last
    ]
    return last, on_last[::-1]


def render_topics_overview(site: Site, counts: dict[str, int], env: jinja2.Environment) -> bytes:
    """`topics/index.html`: every configured topic with its number of papers and its feeds."""
    context = base_context(site, "../")
    context.update(
        title=f"主题 · {site.title}",
        topics=[{"topic": t, "count": counts.get(t.slug, 0), "feeds": topic_feed_links(site, t)} for t in site.topics],
    )
    return render_template(env, "topics.html.j2", context)
