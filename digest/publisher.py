"""The facade that wires the pieces: publish the next issue, rebuild the site, report status.

Order of a publish, so that a crash anywhere leaves a correct state: take the writer lock, open a write
transaction, record the issue inside it, render every output from that (uncommitted) state, write the files
atomically and durably, and only then COMMIT. A crash before COMMIT records nothing (the next run builds the
same issue again and overwrites the files); a crash after it is done. `site/.digest-build.json` is written after
the commit; when it does not match the state, the next run re-renders the shared pages (feeds, index).

The site build (build.py, parallel_build.py), reading the seeds against the state (intake.py), sending
(sending.py), status (status.py), subscriptions and the preview's preflight (preview.py) live elsewhere; what stays
is the wiring and the steps that must share one writer lock and one transaction (publish, rebuild, the coming issue
of a preview, a scheduled run).

The modules only some steps need (the site build, sending, reports, status, WebSub) are imported inside those
steps, so that a render finding nothing new loads none of them (tests/test_cli_render.py holds it so).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2

    from digest.bounces.importer import ImportResult
    from digest.build import Build
    from digest.catalog import Catalog
    from digest.render import Bundle
    from digest.render.email import RenderedEmail
    from digest.sending import IssueSender, SendReport
    from digest.status import StatusReport
    from digest.store import SubscriberRecord

from digest.compose import EntryReport, IssuePlan, describe, plan_from_queue, plan_next_issue
from digest.errors import BusyError, DigestError, ForeignSiteError, NoStateError
from digest.intake import PROBLEMS_KEY, SEEDS_KEY, empty_catalog, materialize, scan
from digest.model import (
    Entry,
    EntryLimits,
    EntryRef,
    Issue,
    KnownEntry,
    Problem,
    SeedFile,
    SeedScan,
    Site,
    decode_problems,
    encode_problems,
)
from digest.output import (
    MAIL_FOLDER,
    STATE_CLAIM,
    build_marker_matches,
    output_settings,
    read_claim,
    remove_stale_temp_files,
    rerender_reason,
    write_atomic,
    write_build_marker,
    write_bundle,
)
from digest.seedfiles import list_seed_files, listing_fingerprint
from digest.settings import Settings
from digest.slots import PersonalSlots
from digest.store import Backend, Store, backend_for
from digest.topics import topic_problems

log = logging.getLogger("digest.publisher")

OUTPUT_SETTINGS_KEY = "output_settings_of_site"  # a hash per page-shaping setting and template the site follows
BACKLOG_KEY = "unpublished_after_last_run"
Progress = Callable[[int], None]
#: Starts a stretch of long work someone may be watching: its label and size in, the callback that advances it out.
Phase = Callable[[str, int], Progress]


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
    rerendered: str = ""  # why every page was rendered again first ("settings changed (site_url): ..."), if so


@dataclass(frozen=True)
class ScheduledRun:
    """What one firing of the schedule did: the issue published for its slot (or the one found there), and the
    mailing of the newest scheduled issue, or why nothing was mailed."""

    slot: str
    slot_time: datetime
    published: Issue | None
    existing_issue: int | None
    waiting: int
    send: SendReport | None
    not_sent: str = ""
    mail_error: str = ""  # mailing was due but could not run (bad SMTP settings, no secret_key ...)
    rerendered: str = ""  # why every page was rendered again first, if it was


@dataclass(frozen=True)
class ComingIssue:
    """The issue the next render would publish, rendered in memory and recorded nowhere (`Publisher.coming_issue`)."""

    issue: Issue | None  # None: no new paper waits, the slot publishes nothing
    files: Bundle  # its email files (`issues/N/.mail/...`), by the rows of OUTPUTS that render writes them with
    waiting: int  # papers left for later issues by max_entries_per_issue
    problems: tuple[Problem, ...]  # the seeds' problems, drafts among them


class Publisher:
    """Joins settings, state, renderers and output; the only place that decides when things happen."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        # The shells pass their clock in (the CLI's honours --now); standing alone, a publisher reads the wall clock.
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(settings.tz))
        self._env: jinja2.Environment | None = None
        self._lock_owner: int | None = None  # thread holding the writer lock through this publisher
        self._backend: Backend | None = None

    # --- wiring -------------------------------------------------------------------------------

    @property
    def env(self) -> jinja2.Environment:
        """The template environment (user templates folder first, shipped templates as fallback)."""
        if self._env is None:
            from digest.build import environment  # noqa: PLC0415 (lazy: see the module doc)

            self._env = environment(self.settings)
        return self._env

    @property
    def backend(self) -> Backend:
        """Where the state lives (settings `state_url`, else `state_path`)."""
        if self._backend is None:
            self._backend = backend_for(self.settings.state_location)
        return self._backend

    def open_store(self) -> Store:
        """Open the state named in settings."""
        return Store.open(self.backend, busy_timeout=max(self.settings.lock_timeout, 5.0))

    def read_store(self) -> Store:
        """Open the state for a command that only reads it: NoStateError when there is none yet, rather than a
        new, empty state file left behind by `digest status`."""
        if not self.backend.exists():
            raise NoStateError(f"no state yet at {self.backend.where}")
        return self.open_store()

    def lock(self, what: str) -> AbstractContextManager[None]:
        """The writer lock: one process writes to a given state at a time. Re-entrant for the thread holding it
        (a scheduled run holds it across publishing and sending; a second flock in one process would deadlock)."""

        if self._lock_owner == threading.get_ident():
            return nullcontext()
        return self._holding(self.backend.writer_lock(self.settings.lock_timeout, what))

    @contextmanager
    def _holding(self, lock: AbstractContextManager[None]) -> Iterator[None]:

        with lock:
            self._lock_owner = threading.get_ident()
            try:
                yield
            finally:
                self._lock_owner = None

    def site(self, store: Store | None) -> Site:
        """The publication as renderers see it (see `digest.build.site_of`)."""
        from digest.build import site_of  # noqa: PLC0415 (lazy: see the module doc)

        return site_of(self.settings, store)

    def build(self, store: Store | None) -> Build:
        """The renderer of every output (`digest.build.OUTPUTS`) for this site."""
        from digest.build import Build  # noqa: PLC0415 (lazy: see the module doc)

        return Build(self.settings, self.env, self.site(store))

    def scan_seeds(self) -> SeedScan:
        """Parse every seed file (pure parsing over one directory read)."""
        from digest.seeds import read_seeds  # noqa: PLC0415 (lazy: linkify-it and pylatexenc only when used)

        return read_seeds(self.settings.seeds_dir, limits=self._entry_limits())

    def _entry_limits(self) -> EntryLimits:
        return EntryLimits(entry=self.settings.entry_max_bytes, title=self.settings.title_max_bytes)

    # --- publishing ---------------------------------------------------------------------------

    def publish_next_issue(
        self,
        now: datetime,
        *,
        slot: str | None = None,
        dry_run: bool = False,
        force: bool = False,
        phase: Phase | None = None,
    ) -> PublishResult:
        """Build the next issue from unpublished entries, write every output, record it; or do nothing.

        First, when a setting or template that shapes the pages changed since the outputs were rendered, every
        page is rendered again (`rebuild`). ForeignSiteError when the output folder was built from another state,
        unless `force`. `phase` is told of the long stretches (every page rendered again, a bulk of seed files
        read), for a progress bar."""
        out_dir = self.settings.preview_dir if dry_run else self.settings.output_dir
        with self.lock("render"), self._owned_store(force, check=not dry_run) as store:
            shaping = self.output_settings()
            rerendered, rebuilt = "", 0
            if not dry_run and (rerendered := self._rerender_reason(store, shaping)):
                # Scheduled: one worker, no fork from the scheduler's threaded process.
                progress = phase("rendering every page again", store.issue_count()) if phase else None
                rebuilt = self.rebuild(progress, force=force, workers=1 if slot is not None else None)
            if slot is not None and (existing := store.issue_for_slot(slot)) is not None:
                return PublishResult(None, (), 0, 0, out_dir, rebuilt, existing_issue=existing, rerendered=rerendered)
            files = list_seed_files(self.settings.seeds_dir)
            fingerprint = listing_fingerprint(files, self._entry_limits())
            if not dry_run and (quiet := self._nothing_changed(store, fingerprint)) is not None:
                return PublishResult(None, quiet, 0, 0, out_dir, rebuilt, rerendered=rerendered)
            with store.transaction(commit=not dry_run):
                limit, limits = self.settings.max_entries_per_issue, self._entry_limits()
                early: _Published | None = None

                def publish_head(head: Sequence[EntryRef], *, elsewhere: bool = False) -> None:
                    # A first import: nothing is published yet, so the issue is the first papers of the seeds,
                    # known long before the rest is read. Render it now, while the workers parse the rest (its
                    # files are written below, once the whole scan went well, as on the other paths).
                    nonlocal early
                    plan = plan_next_issue(head, {}, limit)
                    fresh = empty_catalog(limits)
                    early = self._publish(store, fresh, files, plan, now, slot, dry_run, elsewhere=elsewhere)

                bulk = (lambda files: phase("reading seed files", files)) if phase else None
                head = (limit, publish_head)
                catalog = scan(store, now, files, fingerprint, limits, dry_run=dry_run, head=head, progress=bulk)
                known: Mapping[str, KnownEntry] = {}
                if early is not None:
                    done = early
                    plan = replace(done.plan, waiting=catalog.first_occurrences - len(done.plan.new))
                else:
                    if catalog.known is not None:  # only changed files were read: the rest is what the state says
                        known = catalog.known
                        queue = store.waiting_entries(limit)
                        plan = plan_from_queue(queue, store.waiting_count(), catalog.refs, known, limit)
                    else:
                        known = store.published_entries()
                        plan = plan_next_issue(catalog.refs, known, limit)
                    done = self._publish(store, catalog, files, plan, now, slot, dry_run)
                store.cache_scans(catalog.cache_updates)
                store.forget_scans(catalog.removed)
                fresh = [done.entries[r.id] for r in [*plan.new, *plan.revised]]
                catalog.problems.extend(topic_problems(fresh, self.settings.topic_list))
                store.set_meta(BACKLOG_KEY, str(plan.waiting))
                store.set_meta(SEEDS_KEY, fingerprint)
                store.set_meta(PROBLEMS_KEY, encode_problems(catalog.problems))
                store.set_meta(OUTPUT_SETTINGS_KEY, json.dumps(shaping, sort_keys=True))  # what the pages follow
                written: list[str] = []
                changed = write_bundle(out_dir, done.files(), written=written)
                reports: tuple[EntryReport, ...] = ()
                if dry_run:
                    titles = {i: e.title_en for i, e in catalog.parsed.items()}
                    reports = tuple(describe(catalog.refs, catalog.problems, known, plan, done.number, titles))
            if not dry_run:
                self._write_build_marker(store)
        if not dry_run:
            self._announce_feeds(written)
        return PublishResult(
            issue=done.issue,
            problems=tuple(catalog.problems),
            revised=len(plan.revised),
            waiting=plan.waiting,
            output_dir=out_dir,
            files_changed=changed + rebuilt,
            dry_run=dry_run,
            reports=reports,
            rerendered=rerendered,
        )

    def coming_issue(self, published: datetime, now: datetime, *, slot: str | None = None) -> ComingIssue:
        """The issue a render at `published` would make now, with its email rendered as render renders it, inside a
        transaction that is always rolled back: no issue number taken, no paper marked, nothing written to disk."""
        limit = self.settings.max_entries_per_issue
        with self.lock("preview"), self.open_store() as store:
            files = list_seed_files(self.settings.seeds_dir)
            fingerprint = listing_fingerprint(files, self._entry_limits())
            with store.transaction(commit=False):
                catalog = scan(store, now, files, fingerprint, self._entry_limits(), dry_run=True)
                plan = plan_next_issue(catalog.refs, store.published_entries(), limit)
                problems = tuple(catalog.problems)
                if not plan.has_issue:
                    return ComingIssue(None, {}, plan.waiting, problems)
                entries = materialize(store, catalog, files, plan.new)
                papers = tuple(entries[r.id] for r in plan.new)
                issue = Issue(number=store.next_issue_number(), published=published, entries=papers, slot=slot)
                bundle = self.build(store).email_files(issue)
        return ComingIssue(issue, bundle, plan.waiting, problems)

    def _publish(
        self,
        store: Store,
        catalog: Catalog,
        files: Sequence[SeedFile],
        plan: IssuePlan[EntryRef],
        now: datetime,
        slot: str | None,
        dry_run: bool,
        *,
        elsewhere: bool = False,
    ) -> _Published:
        """Record the plan's issue and corrections in the open transaction and render every output they change
        (`elsewhere`: in a worker process, while this one goes on; `_Published.files` waits for them)."""
        number = store.next_issue_number()
        entries = materialize(store, catalog, files, [*plan.new, *plan.revised])
        store.record_revisions([entries[r.id] for r in plan.revised], now)
        issue = None
        if plan.has_issue:
            issue = Issue(number=number, published=now, entries=tuple(entries[r.id] for r in plan.new), slot=slot)
            store.record_issue(issue, now)
        revised_issues = store.issues_of_entries(r.id for r in plan.revised)
        from digest.build import changed_outputs, index_topics  # noqa: PLC0415 (lazy: see the module doc)

        with_topics = index_topics(store, self.settings.topic_list, issue, revised_issues)
        repair = not dry_run and not self._build_marker_matches(store)
        changes = (revised_issues, issue, with_topics, repair)
        if elsewhere:  # see render_elsewhere
            from digest.parallel_build import render_elsewhere  # noqa: PLC0415 (lazy: see the module doc)

            pending = render_elsewhere(self.settings, store, lambda: self.build(store), *changes)
            return _Published(plan, number, entries, issue, {}, pending)
        return _Published(plan, number, entries, issue, changed_outputs(self.build(store), store, *changes))

    def _nothing_changed(self, store: Store, fingerprint: str) -> tuple[Problem, ...] | None:
        """The fast no-op: the seed listing (names, sizes, mtimes) is the one the last run scanned, nothing
        waits, and the outputs match the state. Returns the problems remembered from the last run, or None."""
        if store.meta(BACKLOG_KEY) != "0" or store.meta(SEEDS_KEY) != fingerprint:
            return None
        if not self._build_marker_matches(store):
            return None
        return decode_problems(store.meta(PROBLEMS_KEY) or "[]")

    # --- rebuild ------------------------------------------------------------------------------

    def rebuild(
        self, progress: Progress | None = None, chunk: int = 50, workers: int | None = None, *, force: bool = False
    ) -> int:
        """Re-render every output from the state (after a template change); creates no issue.

        The issues are rendered on every core (each worker opens the state read-only), archive page by archive
        page: a worker renders a page's issue pages and emails, then the page with its search shard, RFC 5005
        document and sitemap from the same papers (their topics and links already worked out in that process).
        This process indexes the topics and renders the topic pages and feeds meanwhile. The settings and templates
        the pages follow are recorded once every file is written (a rebuild killed midway is redone by the next
        render). ForeignSiteError when the output folder was built from another state, unless `force`.
        """
        with self.lock("rebuild"), self._owned_store(force) as store:
            shaping = self.output_settings()
            # Several processes write into the same folders from here on: none may take another's temp file for
            # a leftover of a killed run, so the leftovers go now, and every write below leaves temp files alone.
            remove_stale_temp_files(self.settings.output_dir, below=True)
            written: list[str] = []
            from digest.parallel_build import rebuild_files  # noqa: PLC0415 (lazy: see the module doc)

            changed = rebuild_files(self.build(store), store, progress, chunk, workers, written)
            with store.transaction():
                store.set_meta(OUTPUT_SETTINGS_KEY, json.dumps(shaping, sort_keys=True))
            self._write_build_marker(store)
        self._announce_feeds(written)
        return changed

    def _announce_feeds(self, written: Sequence[str]) -> None:
        """Ping the WebSub hub (if one is set) for every subscription feed this run changed; once the outputs
        are written and the state committed, so the hub fetches what subscribers should get. Failures are
        warnings (logged by `digest.websub`), never a failed render."""
        hub = self.settings.websub_hub
        if not hub:
            return  # without a hub, nothing to load: the feeds module brings feedgen, lxml and jinja2 (~0.1 s)
        from digest.render.feeds import is_subscription_feed  # noqa: PLC0415 (lazy: feedgen and jinja2 ... only when used)

        feeds = [path for path in written if is_subscription_feed(path)]
        if feeds:
            site_url = self.settings.site_url
            from digest.websub import ping_hub  # noqa: PLC0415 (lazy: see the module doc)

            ping_hub(hub, [site_url + path for path in feeds])

    # --- status -------------------------------------------------------------------------------

    def status(self) -> StatusReport:
        """The report for `digest status`, as of now (read-only: no lock taken)."""
        with self.read_store() as store:
            from digest.status import status_report  # noqa: PLC0415 (lazy: see the module doc)

            return status_report(store, self.settings, self.backend.where, self.clock())

    def status_page(self, store: Store | None = None, extra: Mapping[str, str] | None = None) -> str:
        """The status page (`digest status --html`, the editor's report's attachment): `digest status`'s numbers
        (and `extra` lines) with the charts, as of now."""
        now = self.clock()
        with nullcontext(store) if store is not None else self.read_store() as session:
            from digest.render.statuspage import status_page  # noqa: PLC0415 (lazy: see the module doc)
            from digest.status import status_history, status_lines, status_report  # noqa: PLC0415 (lazy: see the module doc)

            report = status_report(session, self.settings, self.backend.where, now)
            history = status_history(session, self.settings)
        last = (
            f"issue {report.last_issue}, published {report.last_published.astimezone(self.settings.tz):%Y-%m-%d %H:%M}"
            if report.last_issue is not None and report.last_published is not None
            else "none yet"
        )
        lines = {
            "issues": f"{report.issues}; last: {last}",
            "unpublished entries": str(report.unpublished),
            **status_lines(report),
            **(extra or {}),
        }
        return status_page(
            title=self.settings.title, generated=now, lines=lines, history=history, link=self.settings.site_url
        )

    # --- subscribers --------------------------------------------------------------------------

    def subscriber_records(self) -> list[SubscriberRecord]:
        """Every subscriber with when they joined and left."""
        with self.read_store() as store:
            return store.subscriber_records()

    # --- bounces ------------------------------------------------------------------------------

    def import_bounces(self, messages: Iterable[tuple[str, bytes]], now: datetime) -> Iterator[ImportResult]:
        """Apply bounce and complaint reports, one transaction per message (no writer lock: like an unsubscribe,
        a send in progress re-checks each subscriber just before mailing them). One import runs at a time: a
        second waits up to `lock_timeout` for the first, then stops with BusyError (exit 75)."""
        from digest.bounces.importer import import_reports  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

        s = self.settings
        secret = s.require_secret_key()
        with self.backend.writer_lock(s.lock_timeout, "bounces import", name="bounces"), self.open_store() as store:
            yield from import_reports(
                store, messages, secret=secret, now=now, soft_limit=s.soft_bounce_limit, max_bytes=s.bounce_max_bytes
            )

    # --- sending ------------------------------------------------------------------------------

    def sender(self) -> IssueSender:
        """What mails an issue (`digest send`, and the mailing half of a scheduled run)."""

        from digest.sending import IssueSender  # noqa: PLC0415 (lazy: see the module doc)

        return IssueSender(
            self.settings,
            self.open_store,
            self.lock,
            clock=self.clock,
            render_topics=self.topic_email,
            render_missing=self._email_on_this_host,
            after_mailing=self._report_mailing,
        )

    def _report_mailing(self, store: Store, issue: int) -> None:
        """The mailing of `issue` has ended: record it, then mail every editor's report due (this one, and any a
        crash left unsent). No `editor_address`: nothing is recorded. A report that cannot go out is a warning,
        never a failed send."""
        if not self.settings.editor_address:
            return
        try:
            from digest.report import deliver_due_reports, end_mailing  # noqa: PLC0415 (lazy: see the module doc)
            from digest.transport import deliver_notice  # noqa: PLC0415 (lazy: see the module doc)

            end_mailing(store, issue, self.clock())
            deliver_due_reports(
                store,
                self.settings,
                self.clock,
                lambda to, data: deliver_notice(self.settings, to, data),
                lambda: self.status_page(store),
            )
        except DigestError as exc:
            log.warning("the editor's report of issue %d: %s", issue, exc)

    def topic_email(self, store: Store, issue: Issue, topics: frozenset[str]) -> RenderedEmail:
        """Issue `issue`'s email holding only the papers of `topics` (for the subscribers who chose them)."""
        return self.build(store).topic_email(issue, topics)

    # --- scheduled runs (`digest run`) -------------------------------------------------------

    def run_scheduled_job(
        self, slot_time: datetime, now: datetime, *, stop: threading.Event | None = None
    ) -> ScheduledRun:
        """One firing of the schedule for the slot `slot_time` (the fire time it stands for).

        Publishes the slot's issue unless the slot already has one (issues.slot is UNIQUE), then mails the newest
        scheduled issue to every active subscriber who has not had it: that finishes a send cut short by a crash
        or a stop. Nothing is mailed when that issue is older than `max_send_age` (send it by hand with `digest
        send --issue N`) or when `stop` is set. The writer lock is held throughout, so a second scheduler or a
        manual render/send waits for the whole firing and then finds the slot done."""

        slot = slot_time.astimezone(UTC).isoformat()
        with self.lock("run"):
            result = self.publish_next_issue(now, slot=slot)
            with self.open_store() as store:
                newest = store.latest_slot_issue()
                head = store.issue_summaries([newest])[0] if newest is not None else None
                active = len(store.active_subscribers())
            send: SendReport | None = None
            not_sent = mail_error = ""
            if head is None:
                not_sent = "no scheduled issue to mail"
            elif now - head.published > timedelta(seconds=self.settings.max_send_age):
                not_sent = (
                    f"issue {head.number} is older than max_send_age ({self.settings.max_send_age}s): not mailed"
                    f" by the scheduler; send it by hand with `digest send --issue {head.number}`"
                )
            elif stop is not None and stop.is_set():
                not_sent = f"stopping: issue {head.number} not mailed now; the next firing or `digest send` mails it"
            elif active == 0:
                not_sent = "no active subscribers: nothing to mail"
            else:
                try:
                    send = self.sender().send(issue=head.number, stop=stop)
                except BusyError:
                    raise
                except DigestError as exc:
                    # The issue is published (site and feeds are up to date); only the mail waits for a fix.
                    mail_error = f"issue {head.number} not mailed: {exc}; the next firing or `digest send` retries"
        return ScheduledRun(
            slot=slot,
            slot_time=slot_time,
            published=result.issue,
            rerendered=result.rerendered,
            existing_issue=result.existing_issue,
            waiting=result.waiting,
            send=send,
            not_sent=not_sent,
            mail_error=mail_error,
        )

    def _email_on_this_host(self, number: int) -> None:
        """Write the issue's email files from the state when this host's output folder lacks them: with a shared
        PostgreSQL state, the issue may have been published by another host, and a site rendered before the mailer
        kept its own copy (`.mail/`) has none (rendering is deterministic, so the copy is the same). Also when the
        copy was rendered without secret_key (its link markers could be guessed, so it is never mailed)."""
        folder = self.settings.output_dir / "issues" / str(number) / MAIL_FOLDER
        try:
            if PersonalSlots.from_json(json.loads((folder / "slots.json").read_text(encoding="utf-8"))).keyed:
                return
        except (OSError, ValueError, KeyError, TypeError):
            pass  # missing or damaged: render it again
        with self._owned_store(force=False) as store:
            issue = store.load_issues([number])[0]
            files = self.build(store).email_files(issue)
        write_bundle(self.settings.output_dir, files)
        log.info("issue %d: no rendered email on this host; rendered it here from the state", number)

    def check_ready_to_mail(self) -> None:
        """Raise a SettingsError when there are subscribers but mail cannot be signed (no secret_key)."""
        with self.open_store() as store:
            if store.active_subscribers():
                self.settings.require_secret_key()

    # --- which state the output folder belongs to, which settings it follows -------------------------

    @contextmanager
    def _owned_store(self, force: bool, *, check: bool = True) -> Iterator[Store]:
        """Open the state to write the output folder from it. Unless `force`, refuse (ForeignSiteError) when the
        folder was built from another state, or when its state is gone (opening would make a new, empty one that
        starts over at issue 1 over the published site). Then claim the folder for this state, before any page
        is written."""
        out = self.settings.output_dir
        claim = read_claim(out) if check and not force else None
        if claim is not None and not self.backend.exists():
            raise ForeignSiteError(
                f"{out}/ was built from state {claim[0]} ({claim[1]}), but there is no state at {self.backend.where}:"
                " a new one would publish issue 1 again over the site, without its subscribers; restore the state"
                " from a backup (docs/backup.md), or run again with --force to start over"
            )
        with self.open_store() as store:
            if check:
                mine = store.site_uuid()
                if claim is not None and claim[0] != mine:
                    raise ForeignSiteError(
                        f"{out}/ was built from another state ({claim[0]}, {claim[1]}), not from"
                        f" {self.backend.where} ({mine}): point state_path or state_url at that state or restore it"
                        " from a backup (docs/backup.md), or run again with --force to write over it"
                    )
                data = {"state_id": mine, "state": self.backend.where}
                write_atomic(out / STATE_CLAIM, json.dumps(data, sort_keys=True).encode("utf-8") + b"\n")
            yield store

    def output_settings(self) -> dict[str, str]:
        """What the pages are rendered with (see `digest.output.output_settings`)."""
        return output_settings(self.settings)

    def _rerender_reason(self, store: Store, current: Mapping[str, str]) -> str:
        """Why every page must be rendered again before this render, or "" when they follow `current`."""
        return rerender_reason(store.meta(OUTPUT_SETTINGS_KEY), store.issue_count(), current)

    def _build_marker_matches(self, store: Store) -> bool:
        return build_marker_matches(self.settings.output_dir, store.latest_issue_number(), store.site_uuid())

    def _write_build_marker(self, store: Store) -> None:
        write_build_marker(self.settings.output_dir, store.latest_issue_number(), store.site_uuid())


@dataclass(frozen=True)
class _Published:
    """What `Publisher._publish` recorded, and the files to write."""

    plan: IssuePlan[EntryRef]
    number: int
    entries: dict[str, Entry]
    issue: Issue | None
    bundle: Bundle
    pending: Callable[[], Bundle] | None = None  # the bundle, rendered elsewhere: waits for it

    def files(self) -> Bundle:
        """The files to write (once they are rendered)."""
        return self.pending() if self.pending is not None else self.bundle
