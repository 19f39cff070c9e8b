"""The web archive: one page per issue and an archive index with stable, append-only pages.

Layout of the output folder (links between pages are relative, so the folder also works from `file://`):

    index.html                the newest `page_size` issues, subscribe links, links to every archive page
    archive/page-<k>.html     issues (k-1)*page_size+1 .. k*page_size, numbered from the OLDEST issue
    issues/<n>/index.html     one issue: full abstracts, each paper at `#<entry.anchor>`

Archive pages are stable: once full, page k never changes (it links only to the index and to page k-1), so a
weekly run re-renders `index.html`, the last archive page, the new issue page and the previous issue page (its
"next" link appears), whatever the number of issues.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from digest.model import Issue, Site
from digest.render import Bundle
from digest.render.feeds import FEED_FILES, issue_title, papers_context

DEFAULT_PAGE_SIZE = 50


# ----------------------------------------------------------------------------------- paths


def issue_page_path(number: int) -> str:
    """Output path of issue `number`'s page."""
    return f"issues/{number}/index.html"


def archive_page_path(page_number: int) -> str:
    """Output path of archive page `page_number` (1 = the oldest issues)."""
    return f"archive/page-{page_number}.html"


def archive_page_number(issue_number: int, page_size: int = DEFAULT_PAGE_SIZE) -> int:
    """The archive page that holds issue `issue_number` (issues 1..page_size are on page 1)."""
    if issue_number < 1 or page_size < 1:
        raise ValueError(f"issue numbers and page sizes start at 1, got {issue_number}, {page_size}")
    return (issue_number - 1) // page_size + 1


def archive_page_count(total_issues: int, page_size: int = DEFAULT_PAGE_SIZE) -> int:
    """How many archive pages `total_issues` issues fill (0 when there are none)."""
    return archive_page_number(total_issues, page_size) if total_issues > 0 else 0


def archive_pages_for(issue_numbers: Iterable[int], page_size: int = DEFAULT_PAGE_SIZE) -> dict[int, tuple[int, ...]]:
    """Group issue numbers by archive page: `{page_number: (issue numbers, newest first)}`.

    `rebuild` uses it to render every page with `render_archive_page`.
    """
    pages: dict[int, list[int]] = {}
    for number in sorted(set(issue_numbers), reverse=True):
        pages.setdefault(archive_page_number(number, page_size), []).append(number)
    return {page: tuple(numbers) for page, numbers in sorted(pages.items())}


def archive_issue_numbers(total_issues: int, page_size: int = DEFAULT_PAGE_SIZE) -> range:
    """The issues `render_archive` needs, newest first: the newest `page_size` (covering the last page)."""
    return range(total_issues, max(total_issues - page_size, 0), -1)


# ----------------------------------------------------------------------------------- context


@dataclass(frozen=True)
class _IssueRow:
    issue: Issue
    published_iso: str
    published_date: str


@dataclass(frozen=True)
class _PageLink:
    path: str
    first: int
    last: int


def _local(site: Site, moment: datetime) -> datetime:
    return moment.astimezone(ZoneInfo(site.timezone))


def _row(site: Site, issue: Issue) -> _IssueRow:
    local = _local(site, issue.published)
    return _IssueRow(issue, local.isoformat(), local.strftime("%Y-%m-%d"))


def base_context(site: Site, root: str) -> dict[str, Any]:
    """What base.html.j2 needs: the site, the relative path to the site root, feed autodiscovery links, and where
    the short signup form posts (`digest serve` answers there)."""
    feeds = [{"href": site.link(name), "type": media, "title": title} for name, media, title in FEED_FILES]
    return {"site": site, "root": root, "feeds": feeds, "signup_url": site.link("subscribe")}


def _render(env: jinja2.Environment, name: str, context: dict[str, Any]) -> bytes:
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
    context.update(
        title=issue_title(site, issue),
        published_iso=row.published_iso,
        published_date=row.published_date,
        previous_href=f"../{issue.number - 1}/index.html" if issue.number > 1 else None,
        next_href=f"../{issue.number + 1}/index.html" if newest > issue.number else None,
    )
    return _render(env, "issue.html.j2", context)


def _page_links(total_issues: int, page_size: int) -> list[_PageLink]:
    return [
        _PageLink(archive_page_path(k), (k - 1) * page_size + 1, min(k * page_size, total_issues))
        for k in range(archive_page_count(total_issues, page_size), 0, -1)
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
        title=f"{site.title} · 往期归档：第 {first}–{last} 期",
        page_number=page_number,
        issues=[_row(site, issue) for issue in ordered],
        pages=[],
        older_href=f"page-{page_number - 1}.html" if page_number > 1 else None,
    )
    return _render(env, "archive.html.j2", context)


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
    by_number = {issue.number: issue for issue in issues_newest_first}
    needed = archive_issue_numbers(total_issues, page_size)
    missing = [n for n in needed if n not in by_number]
    if missing:
        raise ValueError(f"render_archive needs issues {missing[0]}..{missing[-1]} (the newest {page_size})")
    index_issues = [by_number[n] for n in needed]
    context = base_context(site, "")
    context.update(
        title=site.title,
        page_number=None,
        issues=[_row(site, issue) for issue in index_issues],
        pages=_page_links(total_issues, page_size),
        older_href=None,
    )
    bundle: Bundle = {"index.html": _render(env, "archive.html.j2", context)}
    if total_issues > 0:
        last_page = archive_page_count(total_issues, page_size)
        last_issues = [i for i in index_issues if archive_page_number(i.number, page_size) == last_page]
        bundle[archive_page_path(last_page)] = render_archive_page(site, last_page, last_issues, env, page_size)
    return bundle
