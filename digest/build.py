"""The site build: one table of outputs (`OUTPUTS`), and the functions that render and write them.

Every file `digest render` and `digest rebuild` write is one row of `OUTPUTS`: its path pattern, its media type,
what it belongs to (an issue, an archive page, a topic, a topic page, the whole site), when a weekly run renders
it again, and the function that renders it. Rendering, `rebuild`, "which files does this week change"
(`changed_outputs`), `digest serve`'s content types (`media_type`) and the tests read the table; adding a feed
format or a per-issue file is one renderer and one row. Rendering is pure (model objects in, bytes out); the
few functions that write (`write_topic_pages`; `digest.parallel_build.rebuild_files`) are named for it. The
publisher decides when; `digest.parallel_build` decides in which processes.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from functools import cache
from typing import TYPE_CHECKING, Any

from digest.errors import DigestError
from digest.model import Issue, Site, Topic
from digest.output import MAIL_FOLDER, write_atomic
from digest.render import ISSUES_FEED, JSON_FEED, TOPIC_FEED_FILES, Bundle, FeedFile, make_environment
from digest.settings import Settings
from digest.store import Store
from digest.topics import assign_topics

if TYPE_CHECKING:
    import jinja2

    from digest.render.email import EmailOptions, RenderedEmail
    from digest.render.site import TopicPaper
    from digest.store import Store

log = logging.getLogger("digest.build")

NOTES_FOLDER = "_notes"  # in the seeds folder: `<number>.md`, the editor's note of that issue's email
TOPIC_RULES_KEY = "topic_rules_of_index"


# ------------------------------------------------------------------------------- the table


class Scope(Enum):
    """What one file of a row belongs to; the `{placeholders}` of its path pattern say which one."""

    ISSUE = "issue"  # {number}
    ARCHIVE_PAGE = "archive page"  # {page}
    TOPIC = "topic"  # {slug}
    TOPIC_PAGE = "topic page"  # {slug}, {page}
    SITE = "site"  # one file


class Refresh(Enum):
    """When a weekly run renders a row's file again (`rebuild` renders every one)."""

    ONCE = "once"  # when its issue is published, never after: the email, as it was mailed
    CHANGED = "changed"  # when its papers change (new, corrected) or a link to a new neighbour appears
    GROWN = "grown"  # only while it is the last page and grows: a full page never changes again
    ALWAYS = "always"  # every run that changes anything


@dataclass
class IssueView:
    """One issue, as its rows render it (the email is rendered once for the five files made from it)."""

    issue: Issue
    newest: int | None
    email: tuple[RenderedEmail, str, str] | None = None  # as mailed, and the published copy's html and text


@dataclass(frozen=True)
class PageView:
    """Archive page `page` and its issues."""

    page: int
    issues: Sequence[Issue]
    last_page: int


@dataclass(frozen=True)
class TopicView:
    """A topic: its newest papers (newest first), how many it has, the issues its feeds carry (newest first)."""

    topic: Topic
    newest: Sequence[TopicPaper]
    total: int
    feed_issues: Sequence[Issue]


@dataclass(frozen=True)
class TopicPageView:
    """Page `page` of a topic and its papers."""

    topic: Topic
    page: int
    papers: Sequence[TopicPaper]


@dataclass(frozen=True)
class SiteView:
    """What the site-wide files are made of."""

    total: int
    last_page: int
    index_issues: Sequence[Issue]  # the newest `archive_page_size` issues, newest first
    feed_issues: Sequence[Issue]  # the issues holding the newest `feed_max_items` papers, newest first
    topic_counts: Mapping[str, int]


@dataclass(frozen=True)
class Output:
    """One row of the table: a kind of file the build writes."""

    pattern: str  # the path in the output folder, with the placeholders of its scope
    media_type: str  # what `digest serve` says it is (every file is UTF-8)
    scope: Scope
    refresh: Refresh
    render: Callable[[Build, Any], bytes]  # (the build, the view of its scope) -> the file's bytes

    def path(self, **values: object) -> str:
        """The file's path for one issue, page or topic."""
        return self.pattern.format(**values)


HTML, TEXT, JSON, XML, JS = "text/html", "text/plain", "application/json", "application/xml", "text/javascript"


def _feed_row(feed: FeedFile, scope: Scope) -> Output:
    """The row of a paper feed format, at the site root or in every topic's folder."""

    def render(b: Build, v: SiteView | TopicView) -> bytes:
        from digest.render.feeds import FeedScope, paper_feed  # noqa: PLC0415 (lazy: feedgen and jinja2 ... only when used)

        topic = FeedScope.of_topic(b.site, v.topic) if isinstance(v, TopicView) else None
        return paper_feed(feed)(b.site, v.feed_issues, topic)

    if scope is Scope.TOPIC:
        return Output("topics/{slug}/" + feed.name, feed.media_type, scope, Refresh.CHANGED, render)
    return Output(feed.name, feed.media_type, scope, Refresh.ALWAYS, render)


def _r(module: str, name: str) -> Callable[..., Any]:
    """A renderer, imported when first used (commands that render nothing start faster)."""

    return getattr(importlib.import_module(f"digest.render.{module}"), name)  # type: ignore[no-any-return]


_I, _P, _T, _TP, _S = Scope.ISSUE, Scope.ARCHIVE_PAGE, Scope.TOPIC, Scope.TOPIC_PAGE, Scope.SITE
ONCE, CHANGED, GROWN, ALWAYS = Refresh.ONCE, Refresh.CHANGED, Refresh.GROWN, Refresh.ALWAYS

#: Every file the build writes, in the order they render. The feeds' names and types: `digest.render.FEED_FILES`.
OUTPUTS: tuple[Output, ...] = (
    Output("issues/{number}/index.html", HTML, _I, CHANGED,
           lambda b, v: _r("site", "render_issue_page")(b.site, v.issue, b.env, newest_number=v.newest)),
    Output("issues/{number}/email.html", HTML, _I, ONCE, lambda b, v: b.email(v)[1].encode("utf-8")),
    Output("issues/{number}/email.txt", TEXT, _I, ONCE, lambda b, v: b.email(v)[2].encode("utf-8")),
    Output("issues/{number}/" + MAIL_FOLDER + "/email.html", HTML, _I, ONCE,
           lambda b, v: b.email(v)[0].html.encode("utf-8")),
    Output("issues/{number}/" + MAIL_FOLDER + "/email.txt", TEXT, _I, ONCE,
           lambda b, v: b.email(v)[0].text.encode("utf-8")),
    Output("issues/{number}/" + MAIL_FOLDER + "/slots.json", JSON, _I, ONCE,
           lambda b, v: json.dumps(asdict(b.email(v)[0].slots)).encode("utf-8")),
    Output("archive/page-{page}.html", HTML, _P, GROWN,
           lambda b, v: _r("site", "render_archive_page")(b.site, v.page, v.issues, b.env, b.page_size)),
    Output("search/shard-{page}.js", JS, _P, CHANGED,
           lambda b, v: _r("search", "render_search_shard")(b.site, v.page, v.issues)),
    Output("archive/issues-{page}.xml", ISSUES_FEED.media_type, _P, CHANGED,
           lambda b, v: _r("feeds", "render_issues_archive")(b.site, v.page, v.issues, b.env,
                                                              last_page=v.page == v.last_page)),
    Output("archive/feed-{page}.json", JSON_FEED.media_type, _P, CHANGED,
           lambda b, v: _r("feeds", "render_papers_archive")(b.site, v.page, v.issues)),
    Output("sitemaps/issues-{page}.xml", XML, _P, CHANGED,
           lambda b, v: _r("sitemap", "render_issues_sitemap")(b.site, v.page, v.issues, b.env)),
    Output("topics/{slug}/index.html", HTML, _T, CHANGED,
           lambda b, v: _r("site", "render_topic_index")(b.site, v.topic, v.newest, v.total, b.env, b.page_size)),
    Output("topics/{slug}/page-{page}.html", HTML, _TP, GROWN,
           lambda b, v: _r("site", "render_topic_page")(b.site, v.topic, v.page, v.papers, b.env, b.page_size)),
    *(_feed_row(feed, _T) for feed in TOPIC_FEED_FILES),  # the paper feeds: the list in digest.render
    Output("index.html", HTML, _S, ALWAYS,
           lambda b, v: _r("site", "render_index")(b.site, v.index_issues, v.total, b.env, b.page_size)),
    *(_feed_row(feed, _S) for feed in TOPIC_FEED_FILES if feed is not JSON_FEED),
    Output(JSON_FEED.name, JSON_FEED.media_type, _S, ALWAYS,  # pages on through archive/feed-<k>.json (next_url)
           lambda b, v: _r("feeds", "render_json_feed")(b.site, v.feed_issues, archive_pages=v.last_page)),
    Output(ISSUES_FEED.name, ISSUES_FEED.media_type, _S, ALWAYS,
           lambda b, v: _r("feeds", "render_issues_feed")(b.site, v.feed_issues, b.env, archive_pages=v.last_page)),
    Output("topics/index.html", HTML, _S, ALWAYS,
           lambda b, v: _r("site", "render_topics_overview")(b.site, dict(v.topic_counts), b.env)),
    Output("sitemap.xml", XML, _S, ALWAYS, lambda b, v: _r("sitemap", "render_sitemap")(b.site, v.last_page, b.env)),
    Output("sitemaps/pages.xml", XML, _S, ALWAYS,
           lambda b, v: _r("sitemap", "render_pages_sitemap")(b.site, v.last_page, b.env)),
    Output("search/index.html", HTML, _S, ALWAYS, lambda b, v: _r("search", "render_search_html")(b.site, b.env)),
    Output("search/search.js", JS, _S, ALWAYS, lambda b, v: _r("search", "search_script")(b.env)),
    Output("search/manifest.js", JS, _S, ALWAYS, lambda b, v: _r("search", "render_search_manifest")(v.last_page)),
)  # fmt: skip


def rows(scope: Scope, *refresh: Refresh) -> list[Output]:
    """The rows of one scope (those refreshed as given, when given), in table order."""
    return [row for row in OUTPUTS if row.scope is scope and (not refresh or row.refresh in refresh)]


@cache
def _matchers(table: tuple[Output, ...]) -> list[tuple[re.Pattern[str], str]]:
    value = {"number": r"[0-9]+", "page": r"[0-9]+", "slug": r"[^/]+"}
    found = []
    for row in table:
        parts = re.split(r"\{(\w+)\}", row.pattern)
        regex = "".join(value[part] if k % 2 else re.escape(part) for k, part in enumerate(parts))
        found.append((re.compile(regex), row.media_type))
    return found


def media_type(path: str) -> str | None:
    """The media type of a file of the output folder, from the row it belongs to (None: not a built file)."""
    return next((media for regex, media in _matchers(OUTPUTS) if regex.fullmatch(path)), None)


# ------------------------------------------------------------------------------- rendering


def site_of(settings: Settings, store: Store | None) -> Site:
    """The publication as renderers see it; its feed id comes from the state, not the URL (without a store, as
    `digest check` tries the templates: a placeholder id)."""

    s = settings
    site = Site(
        title=s.title,
        url=s.site_url,
        author=s.author,
        description=s.description,
        language=s.language,
        timezone=s.timezone,
        feed_max_items=s.feed_max_items,
        topics=s.topic_list,
        websub_hub=s.websub_hub,
    )
    return replace(site, feed_id=f"urn:uuid:{store.site_uuid()}") if store is not None else site


@dataclass
class Build:
    """Renders the rows of `OUTPUTS` for one site (settings, templates, and the site as the state names it)."""

    settings: Settings
    env: jinja2.Environment
    site: Site
    page_size: int = field(init=False)

    def __post_init__(self) -> None:
        self.page_size = self.settings.archive_page_size

    def render(self, scope_rows: Iterable[Output], view: object, **values: object) -> Bundle:
        """The files of these rows for one issue, page or topic (`values` fill in the path pattern)."""
        return {row.path(**values): row.render(self, view) for row in scope_rows}

    def issue_files(self, issue: Issue, newest: int | None, *refresh: Refresh) -> Bundle:
        """An issue's files (those refreshed as given, when given)."""
        return self.render(rows(Scope.ISSUE, *refresh), IssueView(issue, newest), number=issue.number)

    def email_files(self, issue: Issue) -> Bundle:
        """The issue's email twice: the copy the mailer fills in per subscriber (in the hidden `.mail/` folder,
        with its link markers in slots.json) and the copy published on the site, which links the subscribe page
        and says that the personal links are in the mail (`published_copy`)."""
        return self.issue_files(issue, None, Refresh.ONCE)

    def page_files(self, page: int, issues: Sequence[Issue], last_page: int, *refresh: Refresh) -> Bundle:
        """Archive page `page` and what belongs to it: its search shard, RFC 5005 archive document, sitemap."""
        return self.render(rows(Scope.ARCHIVE_PAGE, *refresh), PageView(page, issues, last_page), page=page)

    def email(self, view: IssueView) -> tuple[RenderedEmail, str, str]:
        """The issue's email as mailed and the published copy's html and text (rendered once per view)."""
        if view.email is None:
            from digest.render.email import published_copy, render_email  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

            issue = view.issue
            options = self.email_options(issue.number)
            rendered = render_email(
                self.site, issue, self.env, max_html_bytes=self.settings.email_max_bytes, options=options
            )
            if len(rendered.html.encode("utf-8")) > self.settings.email_max_bytes:  # e.g. a very long note
                log.warning("issue %d: the email is %s; it is published anyway, mail clients may clip it",
                            issue.number, rendered.detail)  # fmt: skip
            view.email = (rendered, *published_copy(rendered, self.site.link("subscribe")))
        return view.email

    def email_options(self, number: int, topics: frozenset[str] = frozenset()) -> EmailOptions:
        """What issue `number`'s email shows besides its papers: the editor's note (`<seeds>/_notes/<number>.md`
        or `.txt`, if there is one), the highlights and the sender's address from the settings, and the reader's
        `topics`; the secret key makes the personal-link markers unguessable."""
        return email_options(self.settings, number, topics)

    def topic_email(self, issue: Issue, topics: frozenset[str]) -> RenderedEmail:
        """Issue `issue`'s email holding only the papers of `topics` (for the subscribers who chose them)."""
        from digest.render.email import render_email  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

        options = self.email_options(issue.number, topics)
        return render_email(self.site, issue, self.env, max_html_bytes=self.settings.email_max_bytes, options=options)

    def topic_files(self, store: Store, topic: Topic, loaded: dict[int, Issue], fresh: Iterable[int] = ()) -> Bundle:
        """A topic's index, last page and feeds, from its newest papers (loading the issues that hold them), and
        every other page holding papers of the `fresh` issues (new or corrected): a week that fills the last
        page and starts the next changes both."""
        from digest.render.site import (  # noqa: PLC0415 (lazy: feedgen and jinja2 ... only when used)
            TopicPaper,
            page_count,
            page_number,
            topic_last_page,
        )

        size, max_items = self.page_size, self.settings.feed_max_items
        newest = store.newest_topic_papers(topic.slug, max(size, max_items))
        missing = sorted({n for n, _ in newest} - loaded.keys())
        loaded.update((i.number, i) for i in store.load_issues(missing))
        papers = [TopicPaper(loaded[n], position) for n, position in newest]
        total = store.topic_paper_count(topic.slug)
        feed_issues = [loaded[n] for n in sorted({p.issue.number for p in papers[:max_items]}, reverse=True)]
        bundle = self.render(rows(Scope.TOPIC), TopicView(topic, papers[:size], total, feed_issues), slug=topic.slug)
        if total > 0:
            last, on_last = topic_last_page(papers[:size], total, size)
            view = TopicPageView(topic, last, on_last)
            bundle.update(self.render(rows(Scope.TOPIC_PAGE), view, slug=topic.slug, page=last))
        others: set[int] = set()
        for number in sorted(set(fresh)):
            before, through = (
                store.topic_papers_before(topic.slug, number),
                store.topic_papers_before(topic.slug, number + 1),
            )
            if through > before:
                others.update(range(page_number(before + 1, size), page_number(through, size) + 1))
        for page in sorted(others - {page_count(total, size)}):
            on_page = store.topic_papers_from(topic.slug, (page - 1) * size, size)
            loaded.update((i.number, i) for i in store.load_issues(sorted({n for n, _ in on_page} - loaded.keys())))
            view = TopicPageView(topic, page, [TopicPaper(loaded[n], position) for n, position in on_page])
            bundle.update(self.render(rows(Scope.TOPIC_PAGE), view, slug=topic.slug, page=page))
        return bundle

    def outputs(
        self,
        store: Store,
        *,
        pages: Iterable[int],
        emails: Iterable[int],
        topics: Iterable[str] = (),
        revised: Iterable[int] = (),
        fresh: Iterable[int] = (),
    ) -> Bundle:
        """Render issue pages and emails for the given issues, the pages and feeds of the given topics (with every
        topic page holding papers of the `fresh` issues: new or corrected), plus every
        site-wide file, the last archive page with its search shard, RFC 5005 archive document and sitemap, and
        those files of the archive pages of `revised` issues (and of the page before the last, when the last
        just started: its next-archive link appears)."""
        from digest.render.site import archive_issue_numbers, archive_page_count, archive_page_number  # noqa: PLC0415 (lazy: feedgen and jinja2 ... only when used)

        size = self.page_size
        page_set, email_set = set(pages), set(emails)
        total = store.issue_count()
        newest = store.latest_issue_number()
        last_page = archive_page_count(total, size)
        archive_numbers = list(archive_issue_numbers(total, size))
        feed_numbers = store.newest_issue_numbers_for_items(self.settings.feed_max_items)
        paged = {archive_page_number(n, size) for n in revised} | ({last_page} if last_page else set())
        if last_page > 1 and total % size == 1 % size:
            paged.add(last_page - 1)
        paged_numbers = [n for k in paged for n in range((k - 1) * size + 1, min(k * size, total) + 1)]
        wanted = sorted(
            page_set | email_set | set(archive_numbers) | set(feed_numbers) | set(paged_numbers), reverse=True
        )
        issues = {i.number: i for i in store.load_issues(wanted)}
        bundle: Bundle = {}
        for n in sorted(page_set | email_set):
            chosen = [r for r in rows(Scope.ISSUE) if n in (email_set if r.refresh is Refresh.ONCE else page_set)]
            bundle.update(self.render(chosen, IssueView(issues[n], newest), number=n))
        for k in sorted(paged):
            page_issues = [issues[n] for n in range((k - 1) * size + 1, min(k * size, total) + 1)]
            grown = (Refresh.GROWN,) if k == last_page else ()
            bundle.update(self.page_files(k, page_issues, last_page, Refresh.CHANGED, *grown))
        configured = {t.slug: t for t in self.site.topics}
        for slug in sorted(set(topics) & configured.keys()):
            bundle.update(self.topic_files(store, configured[slug], issues, fresh))
        site_view = SiteView(
            total=total,
            last_page=last_page,
            index_issues=[issues[n] for n in sorted(archive_numbers, reverse=True)],
            feed_issues=[issues[n] for n in feed_numbers],
            topic_counts={t.slug: store.topic_paper_count(t.slug) for t in self.site.topics},
        )
        bundle.update(self.render(rows(Scope.SITE), site_view))
        return bundle

    def archive_files(
        self, store: Store, page: int, numbers: Sequence[int], last_page: int, loaded: Sequence[Issue] = ()
    ) -> Bundle:
        """Archive page `page` (issues `numbers`, newest first) with its search shard, RFC 5005 archive document and
        sitemap (only `rebuild` needs the old, stable pages); `loaded`: issues already loaded."""
        issues = {i.number: i for i in loaded}
        issues.update((i.number, i) for i in store.load_issues([n for n in numbers if n not in issues]))
        return self.page_files(page, [issues[n] for n in numbers], last_page)

    def issues_files(
        self, store: Store, numbers: Sequence[int], newest: int | None, loaded: list[Issue] | None = None
    ) -> Bundle:
        """Every file of these issues (what `rebuild` spreads over the cores); the issues loaded are added to
        `loaded`, when given."""
        bundle: Bundle = {}
        for issue in store.load_issues(numbers):
            bundle.update(self.issue_files(issue, newest))
            if loaded is not None:
                loaded.append(issue)
        return bundle

    def write_topic_pages(self, store: Store) -> int:
        """Render and write every page of every topic (only `rebuild` needs the old, stable ones)."""
        from digest.render.site import TopicPaper, pages_for  # noqa: PLC0415 (lazy: feedgen and jinja2 ... only when used)

        changed = 0
        for topic in self.site.topics:
            papers = store.topic_papers(topic.slug)
            for page, ranks in sorted(pages_for(range(1, len(papers) + 1), self.page_size).items()):
                on_page = [papers[rank - 1] for rank in sorted(ranks)]
                issues = {i.number: i for i in store.load_issues(sorted({n for n, _ in on_page}))}
                view = TopicPageView(topic, page, [TopicPaper(issues[n], p) for n, p in on_page])
                files = self.render(rows(Scope.TOPIC_PAGE), view, slug=topic.slug, page=page)
                changed += sum(write_atomic(self.settings.output_dir / path, data) for path, data in files.items())
        return changed


def email_options(settings: Settings, number: int, topics: frozenset[str] = frozenset()) -> EmailOptions:
    """See `Build.email_options` (the editor's note is read from the seeds folder)."""
    from digest.render.email import EmailOptions  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)
    from digest.text import clean_text  # noqa: PLC0415 (lazy: linkify-it and pylatexenc only when used)

    note = ""
    for suffix in (".md", ".txt"):
        path = settings.seeds_dir / NOTES_FOLDER / f"{number}{suffix}"
        try:
            note = clean_text(path.read_text(encoding="utf-8", errors="replace"))
            break
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise DigestError(f"{path}: cannot read the editor's note ({exc.strerror})") from None
    return EmailOptions(
        note=note,
        highlights=settings.highlights,
        sender_address=settings.sender_address,
        topics=topics,
        mark_key=settings.secret_key.get_secret_value(),
    )


def changed_outputs(
    build: Build, store: Store, revised_issues: set[int], issue: Issue | None, topics: set[str], repair: bool
) -> Bundle:
    """The files that change with this run: the new issue, corrected issues, feeds and the index, and the
    pages and feeds of the topics the new or corrected papers belong to (`repair`: the site-wide files even when
    nothing changed, because the output folder does not match the state)."""
    pages: set[int] = set(revised_issues)
    emails: set[int] = set()
    if issue is not None:
        pages.add(issue.number)
        emails.add(issue.number)
        if issue.number > 1:
            pages.add(issue.number - 1)  # its "next issue" link appears
    if not (pages or topics or repair):
        return {}
    fresh = revised_issues | emails
    return build.outputs(store, pages=pages, emails=emails, topics=topics, revised=revised_issues, fresh=fresh)


# ------------------------------------------------------------------------------- the topic index


def index_topics(store: Store, topics: tuple[Topic, ...], issue: Issue | None, revised: set[int]) -> set[str]:
    """Record the topics of the new issue's and the corrected issues' papers; returns every topic whose
    papers changed. When the topic rules changed since the index was built, every issue is indexed again
    (once) and every topic counts as changed."""
    rules = hashlib.sha256(repr(tuple(topics)).encode("utf-8")).hexdigest()
    if store.meta(TOPIC_RULES_KEY) != rules:
        touched = store.topics_in_use()
        store.clear_paper_topics()
        numbers = store.issue_numbers()
        for start in range(0, len(numbers), 200):
            for old in store.load_issues(numbers[start : start + 200]):
                store.set_paper_topics(old.number, _topic_rows(old, topics))
        store.set_meta(TOPIC_RULES_KEY, rules)
        return touched | {t.slug for t in topics}
    touched = set()
    fresh = [issue] if issue is not None else []
    for changed in [*fresh, *store.load_issues(sorted(revised))]:
        touched |= store.set_paper_topics(changed.number, _topic_rows(changed, topics))
    return touched


def _topic_rows(issue: Issue, topics: tuple[Topic, ...]) -> list[tuple[str, int]]:
    """(topic, position) for every paper of `issue` and each of its topics."""

    return [(slug, position) for position, entry in enumerate(issue.entries) for slug in assign_topics(entry, topics)]


def environment(settings: Settings) -> jinja2.Environment:
    """The template environment (user templates folder first, shipped templates as fallback)."""
    folder = settings.templates_dir
    return make_environment(folder if folder.is_dir() else None)
