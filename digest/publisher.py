"""The facade that wires the pieces: publish the next issue, rebuild the site, report status.

Order of a publish, so that a crash anywhere leaves a correct state: take the writer lock, open a write
transaction, record the issue inside it, render every output from that (uncommitted) state, write the files
atomically and durably, and only then COMMIT. A crash before COMMIT records nothing (the next run builds the
same issue again and overwrites the files); a crash after it is done. `site/.digest-build.json` is written after
the commit; when it does not match the state, the next run re-renders the shared pages (feeds, index).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import jinja2

from digest.compose import EntryReport, IssuePlan, describe, plan_next_issue
from digest.lock import writer_lock
from digest.model import Issue, Problem, SeedScan, Site
from digest.output import write_atomic, write_bundle
from digest.render import Bundle, make_environment
from digest.settings import Settings
from digest.store import Store

BUILD_MARKER = ".digest-build.json"
Progress = Callable[[int], None]


@dataclass(frozen=True)
class PublishResult:
    """What a `render` did (or, in a dry run, would do)."""

    issue: Issue | None
    problems: tuple[Problem, ...]
    revised: int
    waiting: int
    output_dir: Path
    files_changed: int
    dry_run: bool = False
    reports: tuple[EntryReport, ...] = ()
    existing_issue: int | None = None  # set when the schedule slot already had an issue


@dataclass(frozen=True)
class StatusReport:
    """What `digest status` prints."""

    unpublished: int
    issues: int
    last_issue: int | None
    last_published: datetime | None
    output_dir: Path
    state_path: Path
    extra: dict[str, str] = field(default_factory=dict)


class Publisher:
    """Joins settings, state, renderers and output; the only place that decides when things happen."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._env: jinja2.Environment | None = None

    # --- wiring -------------------------------------------------------------------------------

    @property
    def env(self) -> jinja2.Environment:
        """The template environment (user templates folder first, shipped templates as fallback)."""
        if self._env is None:
            folder = self.settings.templates_dir
            self._env = make_environment(folder if folder.is_dir() else None)
        return self._env

    def open_store(self) -> Store:
        """Open the state file named in settings."""
        return Store.open(self.settings.state_path, busy_timeout=max(self.settings.lock_timeout, 5.0))

    def lock(self, what: str) -> AbstractContextManager[None]:
        """The writer lock: one process writes to a given state at a time."""
        return writer_lock(self.settings.state_path, self.settings.lock_timeout, what)

    def site(self, store: Store) -> Site:
        """The publication as renderers see it; its feed id comes from the state, not the URL."""
        s = self.settings
        return Site(
            title=s.title,
            url=s.site_url,
            author=s.author,
            description=s.description,
            language=s.language,
            feed_id=f"urn:uuid:{store.site_uuid()}",
            timezone=s.timezone,
            feed_max_items=s.feed_max_items,
        )

    def scan_seeds(self) -> SeedScan:
        """Parse every seed file (pure parsing over one directory read)."""
        from digest.seeds import read_seeds

        return read_seeds(self.settings.seeds_dir)

    # --- publishing ---------------------------------------------------------------------------

    def publish_next_issue(self, now: datetime, *, slot: str | None = None, dry_run: bool = False) -> PublishResult:
        """Build the next issue from unpublished entries, write every output, record it; or do nothing."""
        scan = self.scan_seeds()
        out_dir = self.settings.preview_dir if dry_run else self.settings.output_dir
        with self.lock("render"), self.open_store() as store:
            if slot is not None and (existing := store.issue_for_slot(slot)) is not None:
                return PublishResult(None, scan.problems, 0, 0, out_dir, 0, existing_issue=existing)
            with store.transaction(commit=not dry_run):
                known = store.known_entries()
                plan = plan_next_issue(scan.entries, known, self.settings.max_entries_per_issue)
                number = store.next_issue_number()
                reports = tuple(describe(scan.entries, scan.problems, known, plan, number))
                store.record_seen(scan.entries, now)
                store.record_revisions(plan.revised, now)
                issue = None
                if plan.has_issue:
                    issue = Issue(number=number, published=now, entries=plan.new, slot=slot)
                    store.record_issue(issue, now)
                bundle = self._changed_outputs(store, plan, issue, repair=not dry_run)
                changed = write_bundle(out_dir, bundle)
            if not dry_run:
                self._write_build_marker(store)
        return PublishResult(
            issue=issue,
            problems=scan.problems,
            revised=len(plan.revised),
            waiting=len(plan.waiting),
            output_dir=out_dir,
            files_changed=changed,
            dry_run=dry_run,
            reports=reports,
        )

    def _changed_outputs(self, store: Store, plan: IssuePlan, issue: Issue | None, repair: bool) -> Bundle:
        """The files that change with this run: the new issue, corrected issues, feeds and the index."""
        pages: set[int] = set()
        emails: set[int] = set()
        if issue is not None:
            pages.add(issue.number)
            emails.add(issue.number)
            if issue.number > 1:
                pages.add(issue.number - 1)  # its "next issue" link appears
        pages |= store.issues_of_entries(e.id for e in plan.revised)
        shared = bool(pages) or (repair and not self._build_marker_matches(store))
        if not shared:
            return {}
        return self.render_outputs(store, pages=pages, emails=emails)

    def render_outputs(self, store: Store, *, pages: Iterable[int], emails: Iterable[int]) -> Bundle:
        """Render issue pages and emails for the given issues, plus the feeds, index and last archive page."""
        from digest.render.feeds import render_feeds
        from digest.render.site import archive_issue_numbers, issue_page_path, render_archive, render_issue_page

        site = self.site(store)
        page_set, email_set = set(pages), set(emails)
        total = store.issue_count()
        newest = store.latest_issue_number()
        archive_numbers = list(archive_issue_numbers(total, self.settings.archive_page_size))
        feed_numbers = store.newest_issue_numbers_for_items(self.settings.feed_max_items)
        wanted = sorted(page_set | email_set | set(archive_numbers) | set(feed_numbers), reverse=True)
        issues = {i.number: i for i in store.load_issues(wanted)}
        bundle: Bundle = {}
        for n in sorted(page_set):
            bundle[issue_page_path(n)] = render_issue_page(site, issues[n], self.env, newest_number=newest)
        for n in sorted(email_set):
            bundle.update(self._email_files(site, issues[n]))
        bundle.update(
            render_archive(
                site,
                [issues[n] for n in sorted(archive_numbers, reverse=True)],
                total,
                self.env,
                self.settings.archive_page_size,
            )
        )
        bundle.update(render_feeds(site, [issues[n] for n in feed_numbers], self.env))
        return bundle

    def _email_files(self, site: Site, issue: Issue) -> Bundle:
        from digest.render.email import render_email

        rendered = render_email(site, issue, self.env, max_html_bytes=self.settings.email_max_bytes)
        return {
            f"issues/{issue.number}/email.html": rendered.html.encode("utf-8"),
            f"issues/{issue.number}/email.txt": rendered.text.encode("utf-8"),
        }

    # --- rebuild ------------------------------------------------------------------------------

    def rebuild(self, progress: Progress | None = None, chunk: int = 100) -> int:
        """Re-render every output from the state (after a template change); creates no issue."""
        from digest.render.site import (
            archive_page_path,
            archive_pages_for,
            issue_page_path,
            render_archive_page,
            render_issue_page,
        )

        with self.lock("rebuild"), self.open_store() as store:
            site = self.site(store)
            numbers = store.issue_numbers()
            newest = numbers[-1] if numbers else None
            changed = 0
            for start in range(0, len(numbers), chunk):
                batch = store.load_issues(numbers[start : start + chunk])
                bundle: Bundle = {}
                for issue in batch:
                    bundle[issue_page_path(issue.number)] = render_issue_page(
                        site, issue, self.env, newest_number=newest
                    )
                    bundle.update(self._email_files(site, issue))
                changed += write_bundle(self.settings.output_dir, bundle)
                if progress:
                    progress(len(batch))
            pages = archive_pages_for(numbers, self.settings.archive_page_size)
            for page_number, page_issue_numbers in sorted(pages.items()):
                page_issues = store.load_issues(list(page_issue_numbers))
                data = render_archive_page(site, page_number, page_issues, self.env, self.settings.archive_page_size)
                changed += write_atomic(self.settings.output_dir / archive_page_path(page_number), data)
            changed += write_bundle(self.settings.output_dir, self.render_outputs(store, pages=(), emails=()))
            self._write_build_marker(store)
        return changed

    # --- status -------------------------------------------------------------------------------

    def status(self) -> StatusReport:
        """Counts for `digest status` (read-only: no lock taken)."""
        with self.open_store() as store:
            summaries = store.issue_summaries([n] if (n := store.latest_issue_number()) is not None else [])
            last = summaries[0] if summaries else None
            return StatusReport(
                unpublished=store.unpublished_count(),
                issues=store.issue_count(),
                last_issue=last.number if last else None,
                last_published=last.published if last else None,
                output_dir=self.settings.output_dir,
                state_path=self.settings.state_path,
            )

    # --- build marker -------------------------------------------------------------------------

    def _build_marker(self, store: Store) -> bytes:
        return json.dumps(
            {"latest_issue": store.latest_issue_number(), "site": store.site_uuid()}, sort_keys=True
        ).encode("utf-8")

    def _build_marker_matches(self, store: Store) -> bool:
        path = self.settings.output_dir / BUILD_MARKER
        try:
            return path.read_bytes() == self._build_marker(store)
        except OSError:
            return False

    def _write_build_marker(self, store: Store) -> None:
        write_atomic(self.settings.output_dir / BUILD_MARKER, self._build_marker(store))
