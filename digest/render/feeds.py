"""Feeds: RSS 2.0, Atom 1.0, JSON Feed 1.1 (one item per paper) and `issues.xml` (one Atom entry per issue).

The only module that uses feedgen; its mutable builder never leaves this file. Everything is pure and
deterministic: every time comes from the issues (`Issue.published`, `Entry.revised`), never from the clock.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import jinja2
import nh3
from feedgen.feed import FeedGenerator
from lxml import etree  # type: ignore[import-untyped]
from markupsafe import Markup, escape

from digest.model import Entry, Issue, Site, Topic
from digest.render import ATOM, FEED_FILES, ISSUES_FEED, JSON_FEED, RSS, TOPIC_FEED_FILES, Bundle, FeedFile
from digest.text import linkify, truncate
from digest.topics import assign_topics, group_by_topic


def is_subscription_feed(path: str) -> bool:
    """Whether an output path is a feed people subscribe to (the site's or a topic's; archive documents are
    not): the feeds that announce the WebSub hub and whose changes are pinged to it."""
    folder, _, name = path.rpartition("/")
    is_topic = folder.startswith("topics/") and folder.count("/") == 1
    return any(name == feed.name for feed in FEED_FILES) and (folder == "" or is_topic)


#: A feed with no items still needs a fixed `updated`; the epoch keeps the output deterministic.
_EMPTY_FEED_TIME = datetime(1970, 1, 1, tzinfo=UTC)
_SUMMARY_CHARS = 160
_SAFE_SCHEMES = frozenset({"http", "https"})
_ATOM_NS = "http://www.w3.org/2005/Atom"
_HISTORY_NS = "http://purl.org/syndication/history/1.0"  # RFC 5005 feed paging and archiving


# -------------------------------------------------------------------------------- identity


def is_arxiv_id(entry_id: str) -> bool:
    """True for an arXiv id (`2409.13346`, `cs/0501001`); other entry ids are normalized URLs."""
    return not entry_id.startswith(("http://", "https://"))


def paper_id(entry: Entry) -> str:
    """The permanent feed id of a paper: the canonical arXiv abs URL, else the entry's normalized URL."""
    return f"https://arxiv.org/abs/{entry.id}" if is_arxiv_id(entry.id) else entry.id


def safe_url(url: str) -> str | None:
    """`url` if it is an absolute http(s) URL with a host, else None (never emit `javascript:` links)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in _SAFE_SCHEMES or not parts.netloc:
        return None
    return url.strip()


def paper_url(entry: Entry) -> str | None:
    """Where readers go to read the paper: the canonical arXiv abs URL, else the seed's URL (if safe)."""
    return paper_id(entry) if is_arxiv_id(entry.id) else safe_url(entry.url)


def _namespace(site: Site) -> uuid.UUID:
    # site.feed_id is a permanent `urn:uuid:` kept in the state; anything else still gives a stable namespace.
    try:
        return uuid.UUID(site.feed_id)
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_URL, site.feed_id)


def issues_feed_id(site: Site) -> str:
    """The Atom id of `issues.xml`, derived from the permanent feed id (never from the movable site URL)."""
    return uuid.uuid5(_namespace(site), "issues.xml").urn  # a permanent id: never follows a renamed file


def issue_entry_id(site: Site, number: int) -> str:
    """The Atom id of issue `number` in `issues.xml`; permanent for the life of the publication."""
    return uuid.uuid5(_namespace(site), f"issue/{number}").urn


def issue_title(site: Site, issue: Issue) -> str:
    """Plain-text title of an issue (feeds and pages)."""
    return f"{site.title} 第 {issue.number} 期"


def topic_feed_id(site: Site, slug: str) -> str:
    """The Atom id of a topic's paper feeds; permanent like the site's feed id."""
    return uuid.uuid5(_namespace(site), f"topic/{slug}").urn


def topic_folder(slug: str) -> str:
    """Where a topic's pages and feeds live in the output folder."""
    return f"topics/{slug}/"


@dataclass(frozen=True)
class FeedScope:
    """Which papers a paper feed carries and who it says it is: the whole publication, or one topic."""

    feed_id: str
    title: str
    folder: str  # "" for the site root, "topics/<slug>/" for a topic
    topic: str | None = None

    @classmethod
    def whole(cls, site: Site) -> FeedScope:
        """The site's own feeds (`rss.xml` ... at the root)."""
        return cls(site.feed_id, site.title, "")

    @classmethod
    def of_topic(cls, site: Site, topic: Topic) -> FeedScope:
        """The feeds of one topic (`topics/<slug>/rss.xml` ...)."""
        return cls(
            topic_feed_id(site, topic.slug), f"{site.title} · {topic.name_zh}", topic_folder(topic.slug), topic.slug
        )


# ----------------------------------------------------------------------------------- items


@dataclass(frozen=True)
class FeedItem:
    """One paper as a feed item, with its times and identity resolved."""

    issue: Issue
    position: int
    entry: Entry
    published: datetime
    updated: datetime

    @property
    def id(self) -> str:
        return paper_id(self.entry)

    @property
    def link(self) -> str | None:
        return paper_url(self.entry)


def feed_items(
    site: Site, issues: Sequence[Issue], topic: str | None = None, *, limit: int | None = None
) -> list[FeedItem]:
    """The newest `limit` (default `site.feed_max_items`) papers (of `topic`, when given): issues newest first,
    papers in issue order."""
    limit = site.feed_max_items if limit is None else limit
    items: list[FeedItem] = []
    for issue in sorted(issues, key=lambda i: i.number, reverse=True):
        for position, entry in enumerate(issue.entries):
            if len(items) >= limit:
                return items
            if topic is not None and topic not in assign_topics(entry, site.topics):
                continue
            items.append(
                FeedItem(
                    issue=issue,
                    position=position,
                    entry=entry,
                    published=issue.entry_published(position),
                    updated=issue.entry_updated(position),
                )
            )
    return items


@lru_cache(maxsize=2048)
def paper_content_html(entry: Entry) -> str:
    """The HTML body of one paper's feed item, built from escaped text and sanitized once more.

    Cached: a paper appears in three formats of the main feed and of each of its topics' feeds."""
    parts: list[Markup] = [Markup('<p lang="en"><strong>{}</strong></p>').format(entry.title_en)]
    if entry.title_zh:
        parts.append(Markup("<p><strong>{}</strong></p>").format(entry.title_zh))
    parts.extend(Markup("<p>{}</p>").format(linkify(paragraph)) for paragraph in entry.abstract)
    url = paper_url(entry)
    if url:
        parts.append(Markup('<p>论文链接：<a href="{0}">{0}</a></p>').format(url))
    return clean_html(Markup("\n").join(parts))


def clean_html(html: str) -> str:
    """Defense in depth for HTML placed in feeds: only http(s) links, no scripts or event handlers."""
    return nh3.clean(
        html,
        url_schemes={"http", "https"},
        generic_attribute_prefixes=set(),
        attributes={"*": {"lang", "id"}, "a": {"href"}, "time": {"datetime"}},
        link_rel=None,
    )


def paper_summary(entry: Entry) -> str:
    """A short plain-text summary: the Chinese title and the start of the abstract."""
    text = truncate(" ".join(entry.abstract), _SUMMARY_CHARS)
    return f"{entry.title_zh}\n{text}".strip() if entry.title_zh else text


def _feed_updated(times: Sequence[datetime]) -> datetime:
    return max(times) if times else _EMPTY_FEED_TIME


# ----------------------------------------------------------------------------------- feedgen


class _LinksExtension:
    """feedgen writes only the `self` atom:link into RSS and has no RFC 5005 `fh:archive`: this extension adds
    the WebSub hub link to RSS and the archive marker to archive documents (extensions, not hand-built XML)."""

    def __init__(self, hub: str, archive: bool) -> None:
        self.hub, self.archive = hub, archive

    def extend_ns(self) -> dict[str, str]:
        return {"fh": _HISTORY_NS} if self.archive else {}

    def extend_rss(self, rss: Any) -> Any:
        channel = rss[0]
        if self.hub:
            link = lxml_sub(channel, f"{{{_ATOM_NS}}}link")
            link.attrib.update({"href": self.hub, "rel": "hub"})
        return rss

    def extend_atom(self, atom: Any) -> Any:
        if self.archive:
            lxml_sub(atom, f"{{{_HISTORY_NS}}}archive")
        return atom


def lxml_sub(parent: Any, tag: str) -> Any:
    """A new child element (feedgen's extensions hand us lxml elements)."""

    return etree.SubElement(parent, tag)


def _base_feed(
    site: Site,
    *,
    feed_id: str,
    title: str,
    self_file: str,
    self_type: str,
    home: str | None = None,
    links: Sequence[tuple[str, str]] = (),
    archive: bool = False,
) -> FeedGenerator:
    """A feed with its identity and links; `links` are extra (rel, href) pairs such as RFC 5005 archive links."""
    fg = FeedGenerator()
    if site.websub_hub or archive:
        fg.register_extension("digestlinks", lambda: _LinksExtension(site.websub_hub, archive), atom=True, rss=True)
    fg.id(feed_id)
    fg.title(title)
    fg.author({"name": site.author})
    fg.language(site.language)
    fg.description(site.description or site.title)
    fg.generator(site.generator)
    fg.docs("https://www.rssboard.org/rss-specification")
    # RSS <channel><link> is taken from the LAST link() call: self first, the site last.
    fg.link(href=site.link(self_file), rel="self", type=self_type)
    if site.websub_hub:
        fg.link(href=site.websub_hub, rel="hub")
    for rel, href in links:
        fg.link(href=href, rel=rel, type=self_type)
    fg.link(href=home or site.url, rel="alternate", type="text/html")
    return fg


def _paper_feed(site: Site, issues: Sequence[Issue], scope: FeedScope, *, name: str, media: str) -> FeedGenerator:
    items = feed_items(site, issues, scope.topic)
    fg = _base_feed(
        site,
        feed_id=scope.feed_id,
        title=scope.title,
        self_file=scope.folder + name,
        self_type=media,
        home=site.link(scope.folder),
    )
    updated = _feed_updated([item.updated for item in items])
    fg.updated(updated)
    fg.lastBuildDate(updated)
    for item in items:
        fe = fg.add_entry(order="append")
        fe.title(item.entry.title_en)
        link = item.link
        fe.guid(item.id, permalink=link == item.id)
        if link:
            fe.link(href=link, rel="alternate", type="text/html")
        fe.published(item.published)
        fe.updated(item.updated)
        # RSS readers treat <description> as HTML, so the plain-text summary goes in escaped, typed as html.
        fe.summary(str(escape(paper_summary(item.entry))), type="html")
        fe.content(paper_content_html(item.entry), type="html")
    return fg


def render_rss(site: Site, issues: Sequence[Issue], scope: FeedScope | None = None) -> bytes:
    """`rss.xml`: RSS 2.0 (Best Practices Profile), one item per paper, newest first."""
    fg = _paper_feed(site, issues, scope or FeedScope.whole(site), name=RSS.name, media=RSS.media_type)
    return plain_text_titles(bytes(fg.rss_str(pretty=True)))


_RSS_TITLE = re.compile(rb"<title>([^<]*)</title>")  # lxml escapes every `<` in text: the whole title is group 1
_NAMED_REFERENCE = re.compile(rb"&(?:amp|lt|gt);")
_HEX_REFERENCE = {b"&amp;": b"&#x26;", b"&lt;": b"&#x3C;", b"&gt;": b"&#x3E;"}


def plain_text_titles(rss: bytes) -> bytes:
    """`rss` with `&`, `<` and `>` in its titles written as hexadecimal character references, the same text to an
    XML parser. RSS 2.0 does not say whether a title is text or HTML, so readers guess from what it looks like: the
    RSS Best Practices Profile (Character Data) asks for `&#x26;` and `&#x3C;` in plain text (what lxml writes,
    `&lt;`, is what entity-encoded HTML looks like, and the W3C validator warns on it)."""
    return _RSS_TITLE.sub(
        lambda m: b"<title>" + _NAMED_REFERENCE.sub(lambda r: _HEX_REFERENCE[r.group(0)], m.group(1)) + b"</title>",
        rss,
    )


def render_atom(site: Site, issues: Sequence[Issue], scope: FeedScope | None = None) -> bytes:
    """`atom.xml`: Atom 1.0 (RFC 4287), one entry per paper, newest first; feed id is `site.feed_id`."""
    fg = _paper_feed(site, issues, scope or FeedScope.whole(site), name=ATOM.name, media=ATOM.media_type)
    return bytes(fg.atom_str(pretty=True))


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat()


def papers_archive_path(page_number: int) -> str:
    """The JSON Feed archive page `page_number`: every paper of archive page k (the JSON Feed 1.1 `next_url` chain
    from `feed.json`, as RFC 5005 archive documents page `issues.xml`)."""
    return f"archive/feed-{page_number}.json"


def render_json_feed(
    site: Site, issues: Sequence[Issue], scope: FeedScope | None = None, *, archive_pages: int = 0
) -> bytes:
    """`feed.json`: JSON Feed 1.1 with the same items as the RSS and Atom feeds (keys sorted, UTF-8). With
    `archive_pages` (the site's, not a topic's), `next_url` names the newest JSON archive page."""
    scope = scope or FeedScope.whole(site)
    next_url = site.link(papers_archive_path(archive_pages)) if archive_pages and scope.topic is None else None
    items = feed_items(site, issues, scope.topic)
    return _json_feed(
        site, items, scope.title, site.link(scope.folder), site.link(scope.folder + JSON_FEED.name), next_url
    )


def render_papers_archive(site: Site, page_number: int, page_issues: Sequence[Issue]) -> bytes:
    """`archive/feed-<k>.json`: every paper of archive page k, newest first, with `next_url` to page k-1 (the
    older papers); page 1 has none. The newest page overlaps `feed.json`; readers merge items by id."""
    items = feed_items(site, page_issues, limit=sum(len(issue.entries) for issue in page_issues))
    older = site.link(papers_archive_path(page_number - 1)) if page_number > 1 else None
    title = f"{site.title}（第 {page_number} 页 / page {page_number}）"
    return _json_feed(site, items, title, site.url, site.link(papers_archive_path(page_number)), older)


def _json_feed(
    site: Site, chosen: Sequence[FeedItem], title: str, home: str, feed_url: str, next_url: str | None
) -> bytes:
    items: list[dict[str, Any]] = []
    for item in chosen:
        data: dict[str, Any] = {
            "id": item.id,
            "title": item.entry.title_en,
            "content_html": paper_content_html(item.entry),
            "summary": paper_summary(item.entry),
            "date_published": _rfc3339(item.published),
            "date_modified": _rfc3339(item.updated),
            "language": site.language,
        }
        if item.link:
            data["url"] = item.link
        items.append(data)
    feed: dict[str, Any] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": title,
        "home_page_url": home,
        "feed_url": feed_url,
        "description": site.description or site.title,
        "language": site.language,
        "authors": [{"name": site.author}],
        "items": items,
    }
    if site.websub_hub:
        feed["hubs"] = [{"type": "WebSub", "url": site.websub_hub}]
    if next_url:
        feed["next_url"] = next_url
    return (json.dumps(feed, ensure_ascii=False, sort_keys=True, indent=2) + "\n").encode("utf-8")


@lru_cache(maxsize=256)
def issue_content_html(site: Site, issue: Issue, env: jinja2.Environment) -> str:
    """A whole issue as HTML for `issues.xml`: the same papers partial as the issue page, absolute links.

    Cached: the newest issues are in both `issues.xml` and the newest RFC 5005 archive document."""
    template = env.get_template("_papers.html.j2")
    html = template.render(papers_context(site, issue, absolute=True))
    return clean_html(html)


@dataclass(frozen=True)
class TopicSection:
    """One topic's papers on an issue page, each with its number in the issue's table of contents."""

    topic: Topic | None
    papers: tuple[tuple[int, Entry], ...]


def topic_sections(site: Site, issue: Issue, chosen: frozenset[str] = frozenset()) -> list[TopicSection]:
    """An issue's papers grouped under their primary topics (rule order), numbered 1..n down the page; with
    `chosen` topic slugs, only those topics' sections (see `group_by_topic`)."""
    sections, number = [], 0
    for topic, entries in group_by_topic(issue.entries, site.topics, chosen):
        numbered = []
        for entry in entries:
            number += 1
            numbered.append((number, entry))
        sections.append(TopicSection(topic, tuple(numbered)))
    return sections


def papers_context(site: Site, issue: Issue, *, absolute: bool) -> dict[str, Any]:
    """Template context for `_papers.html.j2` (shared by the issue page and `issues.xml`)."""
    return {
        "site": site,
        "issue": issue,
        "sections": topic_sections(site, issue),
        "base": site.url if absolute else "../../",
        "linkify": linkify,
        "paper_url": paper_url,
        "permalink_base": site.link(f"issues/{issue.number}/") if absolute else "",
    }


def issues_archive_path(page_number: int) -> str:
    """RFC 5005 archive document `page_number` of `issues.xml` (the issues of archive page k)."""
    return f"archive/issues-{page_number}.xml"


def render_issues_feed(
    site: Site, issues: Sequence[Issue], env: jinja2.Environment, *, archive_pages: int = 0
) -> bytes:
    """`issues.xml`: an Atom feed with one entry per issue (the whole issue as HTML), newest first.

    With `archive_pages` (the number of archive pages so far), it links to the newest RFC 5005 archive document
    (`prev-archive`), from which a reader can walk back through every issue.
    """
    # The same issues as the paper feeds carry: bounded by `feed_max_items`, however many the caller passed.
    shown = {item.issue.number for item in feed_items(site, issues)}
    ordered = sorted((i for i in issues if i.number in shown), key=lambda i: i.number, reverse=True)
    links = [("prev-archive", site.link(issues_archive_path(archive_pages)))] if archive_pages else []
    return _issues_document(site, ordered, env, self_file=ISSUES_FEED.name, links=links, archive=False)


def render_issues_archive(
    site: Site, page_number: int, page_issues: Sequence[Issue], env: jinja2.Environment, *, last_page: bool
) -> bytes:
    """RFC 5005 archive document `archive/issues-<k>.xml`: the issues of archive page k, linked to the
    subscription document (`current`) and to its neighbours. Like the archive page, a full one never changes
    except for its `next-archive` link, which appears once, when page k+1 starts."""
    ordered = sorted(page_issues, key=lambda i: i.number, reverse=True)
    links = [("current", site.link(ISSUES_FEED.name))]
    if page_number > 1:
        links.append(("prev-archive", site.link(issues_archive_path(page_number - 1))))
    if not last_page:
        links.append(("next-archive", site.link(issues_archive_path(page_number + 1))))
    return _issues_document(site, ordered, env, self_file=issues_archive_path(page_number), links=links, archive=True)


def _issues_document(
    site: Site,
    ordered: Sequence[Issue],
    env: jinja2.Environment,
    *,
    self_file: str,
    links: Sequence[tuple[str, str]],
    archive: bool,
) -> bytes:
    fg = _base_feed(
        site,
        feed_id=issues_feed_id(site),
        title=f"{site.title}（每期合集）",
        self_file=self_file,
        self_type=ISSUES_FEED.media_type,
        links=links,
        archive=archive,
    )
    updated = _feed_updated([issue.updated for issue in ordered])
    fg.updated(updated)
    fg.lastBuildDate(updated)
    for issue in ordered:
        fe = fg.add_entry(order="append")
        fe.id(issue_entry_id(site, issue.number))
        fe.title(issue_title(site, issue))
        fe.link(href=site.link(f"issues/{issue.number}/"), rel="alternate", type="text/html")
        fe.published(issue.published)
        fe.updated(issue.updated)
        fe.summary(f"{len(issue.entries)} 篇论文：" + "；".join(e.title_en for e in issue.entries))
        fe.content(issue_content_html(site, issue, env), type="html")
    return bytes(fg.atom_str(pretty=True))


def render_feeds(site: Site, issues: Sequence[Issue], env: jinja2.Environment, *, archive_pages: int = 0) -> Bundle:
    """All the site's feeds keyed by file name (`rss.xml`, `atom.xml`, `feed.json`, `issues.xml`)."""
    bundle = {feed.name: paper_feed(feed)(site, issues, None) for feed in TOPIC_FEED_FILES}
    bundle[JSON_FEED.name] = render_json_feed(site, issues, archive_pages=archive_pages)  # pages on (next_url)
    bundle[ISSUES_FEED.name] = render_issues_feed(site, issues, env, archive_pages=archive_pages)
    return bundle


def render_topic_feeds(site: Site, topic: Topic, issues: Sequence[Issue]) -> Bundle:
    """A topic's paper feeds (`topics/<slug>/rss.xml`, `atom.xml`, `feed.json`): its newest `feed_max_items`
    papers among `issues` (pass the issues that hold them: `Store.newest_topic_papers`)."""
    scope = FeedScope.of_topic(site, topic)
    return {scope.folder + feed.name: paper_feed(feed)(site, issues, scope) for feed in TOPIC_FEED_FILES}


def paper_feed(feed: FeedFile) -> Callable[[Site, Sequence[Issue], FeedScope | None], bytes]:
    """The renderer of a paper feed format (`FeedFile.renderer`, a function of this module)."""
    render: Callable[[Site, Sequence[Issue], FeedScope | None], bytes] = globals()[feed.renderer]
    return render


__all__ = [
    "ATOM",
    "FEED_FILES",
    "ISSUES_FEED",
    "JSON_FEED",
    "RSS",
    "TOPIC_FEED_FILES",
    "FeedFile",
    "FeedItem",
    "FeedScope",
    "clean_html",
    "feed_items",
    "is_arxiv_id",
    "issue_content_html",
    "issue_entry_id",
    "issue_title",
    "issues_archive_path",
    "issues_feed_id",
    "paper_content_html",
    "paper_feed",
    "paper_id",
    "paper_summary",
    "paper_url",
    "papers_archive_path",
    "papers_context",
    "render_atom",
    "render_feeds",
    "render_issues_archive",
    "render_issues_feed",
    "render_json_feed",
    "render_papers_archive",
    "render_rss",
    "render_topic_feeds",
    "safe_url",
    "topic_feed_id",
    "topic_folder",
]
