"""The `digest` command line: each command a few lines over the publisher.

Heavy modules (renderers, SMTP, the scheduler) are imported inside the commands that use them, so that
`digest status` and a no-op `digest render` start fast.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from digest.errors import DigestError, NoStateError, printable
from digest.model import SubscriberSource, SubscriberStatus
from digest.wording import counted

if TYPE_CHECKING:
    from digest.publisher import Publisher, PublishResult
    from digest.settings import Settings
    from digest.status import StatusReport
    from digest.store import SubscriberRecord

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("digest")


def _fail(message: str, code: int = 1) -> None:
    for line in printable(message, lines=True).split("\n"):  # one line per problem, each one complete
        click.echo(f"digest: error: {line.strip()}", err=True)
    sys.exit(code)


def _say(line: str, *, err: bool = False) -> None:
    """Print one line that holds outside text (file names, seed titles, server replies) with its controls escaped."""
    click.echo(printable(line), err=err)


def _warn(line: str) -> None:
    click.echo(f"digest: warning: {printable(line)}", err=True)


def _warn_localhost_site(settings: Settings) -> None:
    """Links in feeds and mails would point at this machine: say so while site_url is still the default."""
    from digest.settings import Settings

    if settings.site_url == Settings.model_fields["site_url"].default:
        _warn(f"site_url is still the default {settings.site_url}: set site_url (DIGEST_SITE_URL) to the public URL")


def reports_errors(func: F) -> F:
    """Turn digest's own errors (and SQLite's) into one line on stderr and a non-zero exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DigestError as exc:
            from digest.render import template_error_line

            # A template error wrapped by a renderer: say where it is in the template (file:line).
            _fail(template_error_line(exc) or str(exc), exc.exit_code)
        except sqlite3.Error as exc:
            _fail(f"state database error: {exc}")
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as exc:
            from digest.render import template_error_line

            line = template_error_line(exc)  # a template error: one line, not the renderer's traceback
            if line is None:
                raise
            _fail(line)

    return wrapper  # type: ignore[return-value]


class Context:
    """Settings are read once per command, lazily, so `--help` works even with a broken config."""

    def __init__(self, config: Path | None) -> None:
        self.config = config
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from digest.settings import load_settings

            self._settings = load_settings(self.config)
        return self._settings

    def publisher(self) -> Publisher:
        from digest.publisher import Publisher

        return Publisher(self.settings)

    def now(self, override: str | None) -> datetime:
        """The clock, read here and only here (or pinned with the hidden --now for reproducible runs)."""
        tz = self.settings.tz
        if override:
            try:
                value = datetime.fromisoformat(override)
            except ValueError:
                raise click.BadParameter(f"not an ISO 8601 time: {override}", param_hint="--now") from None
            return value if value.tzinfo else value.replace(tzinfo=tz)
        return datetime.now(tz)


class _PrintableFormatter(logging.Formatter):
    """Log lines carry outside text too (file names in errors, SMTP replies): their controls are escaped."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record), lines=True)  # lines: a traceback has several


pass_ctx = click.make_pass_decorator(Context)
NOW_OPTION = click.option("--now", hidden=True, help="Pretend the current time is this ISO 8601 time.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="DIGEST_CONFIG",
    help="Settings file (default: config/digest.toml if present).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log more detail to stderr.")
@click.version_option(package_name="digest")
@click.pass_context
def main(ctx: click.Context, config: Path | None, verbose: bool) -> None:
    """Publish a weekly digest: seed files in, a numbered issue out as email, feeds and a web archive.

    Settings come from config/digest.toml, .env and DIGEST_* environment variables (in rising order).

    \b
    Exit codes: 0 done (warnings are printed on stderr)
                1 error (render: nothing could be published because of errors)
                2 usage error (a mistyped command or option)
               73 the output folder was built from another state: restore the state, or --force
               75 another digest process holds the state; try again later
               78 bad settings (the message names the file:line or the variable)

    Example: digest init mynews && cd mynews && digest check && digest render
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    if not verbose:
        # Libraries that log every request or page at INFO (the arXiv client, the HTTP client under openai):
        # digest says what each paper came to itself, so their lines are only noise unless asked for.
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
    ctx.obj = Context(config)


#: Third-party loggers kept to errors unless `--verbose`.
QUIET_LOGGERS = ("arxiv", "httpx", "httpx2", "httpcore", "httpcore2", "openai")


MAX_DUPLICATES_SHOWN = 10


def _print_problems(result: PublishResult) -> None:
    """Every invalid entry (they need fixing); duplicates only up to a few (they are harmless and repeat)."""
    duplicates = [p for p in result.problems if p.kind.value == "duplicate"]
    shown = 0
    for problem in result.problems:
        if problem.kind.value == "duplicate":
            shown += 1
            if shown > MAX_DUPLICATES_SHOWN and not result.dry_run:
                continue
        _say(f"{problem} [{problem.kind.value}]", err=True)
    if len(duplicates) > MAX_DUPLICATES_SHOWN and not result.dry_run:
        hidden = len(duplicates) - MAX_DUPLICATES_SHOWN
        click.echo(f"... and {counted(hidden, 'more duplicate')} (`digest check` lists them all)", err=True)


FORCE_OVER_SITE = click.option(
    "--force", is_flag=True, help="Write over an output folder that was built from another state (or a lost one)."
)


@main.command()
@click.option("--dry-run", is_flag=True, help="Write the would-be outputs to the preview folder; record nothing.")
@FORCE_OVER_SITE
@NOW_OPTION
@pass_ctx
@reports_errors
def render(ctx: Context, dry_run: bool, force: bool, now: str | None) -> None:
    """Build the next issue from unpublished entries, write all outputs and record it.

    When a setting or template that shapes the pages changed since the last render, every page is rendered again
    first. Refuses (exit 73) to write over an output folder built from another state, unless --force.

    Example: digest render --dry-run
    """
    _warn_localhost_site(ctx.settings)
    result = ctx.publisher().publish_next_issue(ctx.now(now), dry_run=dry_run, force=force)
    if result.rerendered:
        _say(result.rerendered)
    _print_problems(result)
    if dry_run:
        for report in result.reports:
            title = f"  {report.title}" if report.title else ""
            _say(f"{report.status.value:<10} {report.where}{title}  ({report.detail})")
    click.echo(_summary(result))
    # A week that published is a good week for cron (the skipped entries were printed above); 1 only when errors
    # left nothing to publish.
    if result.issue is None and any(p.kind.value == "invalid" for p in result.problems):
        sys.exit(1)


def _summary(result: PublishResult) -> str:
    invalid = sum(p.kind.value == "invalid" for p in result.problems)
    drafts = sum(p.kind.value == "draft" for p in result.problems)
    duplicates = len(result.problems) - invalid - drafts
    prefix = "[dry run] would publish" if result.dry_run else "published"
    if result.issue is not None:
        head = f"{prefix} issue {result.issue.number} with {counted(len(result.issue.entries), 'paper')}"
    else:
        head = "[dry run] nothing new" if result.dry_run else "nothing new"
    parts = [head]
    if result.waiting:
        parts.append(f"{result.waiting} waiting for the next issue")
    if result.revised:
        parts.append(f"{result.revised} corrected")
    parts.append(f"{invalid} invalid, {duplicates} duplicate" + (f", {drafts} draft" if drafts else ""))
    written = f"{counted(result.files_changed, 'file')} written in {printable(str(result.output_dir))}/"
    if result.issue is not None:
        written += f" (the issue: {printable(f'{result.output_dir}/issues/{result.issue.number}/')})"
    parts.append(written)
    text = "; ".join(parts)
    if invalid:
        text += "\ninvalid entries were skipped and will be picked up once fixed (see `digest check`)"
    return text


@main.command()
@FORCE_OVER_SITE
@pass_ctx
@reports_errors
def rebuild(ctx: Context, force: bool) -> None:
    """Re-render every output from the state (after a template change); creates no issue.

    Refuses (exit 73) to write over an output folder built from another state, unless --force.

    Example: digest rebuild
    """
    from rich.progress import Progress

    publisher = ctx.publisher()
    try:
        total = publisher.status().issues
    except NoStateError:
        total = 0  # the rebuild itself refuses a site whose state is lost
    with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("rendering issues", total=total)
        changed = publisher.rebuild(progress=lambda n: bar.advance(task, n), force=force)
    _say(f"rebuilt {counted(total, 'issue')}: {counted(changed, 'file')} changed in {publisher.settings.output_dir}/")


@main.command()
@NOW_OPTION
@pass_ctx
@reports_errors
def check(ctx: Context, now: str | None) -> None:
    """Validate settings, every seed file, the templates (each compiled, the email and issue page rendered with
    a sample issue), the schedule and the state (read only; none is created); exit 1 if anything is wrong.

    Example: digest check
    """
    from digest.checkup import schedule_problem, state_problem, template_problems

    settings = ctx.settings
    _warn_localhost_site(settings)
    publisher = ctx.publisher()
    scan = publisher.scan_seeds()
    for problem in scan.problems:
        _say(f"{problem} [{problem.kind.value}]", err=True)
    from digest.editor import glossary_report

    for line in glossary_report(settings, scan):  # advice on wording: reported, not a failure
        _say(line, err=True)
    templates = template_problems(publisher, scan.entries, ctx.now(now))
    schedule = schedule_problem(settings)
    state, state_error = state_problem(settings)
    others = [*templates, *(p for p in (schedule, state_error) if p)]
    for line in others:
        _say(line, err=True)
    drafts = sum(p.kind.value == "draft" for p in scan.problems)  # waiting for `digest approve`: not a fault
    valid = counted(len(scan.entries), "valid entry", "valid entries")
    problems = counted(len(scan.problems) - drafts, "problem") + (f", {counted(drafts, 'draft')}" if drafts else "")
    _say(f"{valid} in {settings.seeds_dir}/, {problems}; settings OK")
    _say(
        f"templates {'OK' if not templates else 'BROKEN'}; schedule {settings.schedule!r}"
        f" {'OK' if not schedule else 'BROKEN'}; state {state}{' BROKEN' if state_error else ''}"
    )
    if len(scan.problems) > drafts or others:
        sys.exit(1)


@main.command()
@click.argument("papers", nargs=-1, metavar="ID_OR_URL...")
@click.option(
    "--from", "from_file", type=click.File("r", encoding="utf-8"), help="Read ids or URLs from FILE, one a line."
)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Seed file to append the drafts to.")
@click.option("--refresh", is_flag=True, help="Ask the model again instead of reusing its cached answers.")
@NOW_OPTION
@pass_ctx
@reports_errors
def draft(
    ctx: Context, papers: tuple[str, ...], from_file: Any, out: Path | None, refresh: bool, now: str | None
) -> None:
    """Write a draft entry (Status: draft) for each arXiv paper, from the arXiv API, to a seed file
    (default seeds/draft-<date>.md; an existing file is kept and appended to). Papers already published or in the
    seeds are skipped; an id arXiv does not know is reported and the others are still written (exit 1).

    Example: digest draft 2409.13346 https://arxiv.org/abs/2409.13592v2 --from ids.txt
    """
    from digest.drafts import parse_paper_ids
    from digest.editor import draft_papers

    lines = list(papers) + (from_file.read().splitlines() if from_file else [])
    ids, bad = parse_paper_ids(lines)
    if bad:
        _fail("\n".join(f"{b}: not an arXiv id or arXiv URL" for b in bad), 2)
    if not ids:
        _fail("no arXiv ids given: digest draft ID_OR_URL... or --from FILE", 2)
    settings = ctx.settings
    target = out or settings.seeds_dir / f"draft-{ctx.now(now):%Y-%m-%d}.md"
    report = draft_papers(settings, ids, target, lambda line: _say(line, err=True), refresh=refresh)
    _say(
        f"{counted(len(report.written), 'draft')} written to {target}; {len(report.skipped)} skipped,"
        f" {len(report.not_found)} not found on arXiv ({counted(report.requests, 'arXiv request')})"
    )
    if settings.llm.base_url:
        _say(
            f"model: {counted(report.model_requests, 'request')}, {report.prompt_tokens} prompt +"
            f" {report.completion_tokens} completion tokens"
        )
    if report.not_found:
        sys.exit(1)


@main.command()
@click.option("--category", help="arXiv categories, comma-separated (default: candidates_categories).")
@click.option("--days", type=click.IntRange(1, 365), help="Papers submitted in the last N days (candidates_days).")
@click.option("--limit", type=click.IntRange(1, 2000), help="Rows to show and write (candidates_limit).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Write the ids for `draft --from`.")
@NOW_OPTION
@pass_ctx
@reports_errors
def candidates(
    ctx: Context, category: str | None, days: int | None, limit: int | None, out: Path | None, now: str | None
) -> None:
    """Rank the recent papers of arXiv categories by closeness to what this digest publishes (BM25 against the
    seeds' papers, the topic rules, candidates_keywords; candidates_exclude drops a paper). Papers already in the
    seeds or published are left out. --out writes a list for `digest draft --from`.

    Example: digest candidates --category cs.CL,cs.CV --days 7 --out ids.txt
    """
    from digest.candidates import candidates_file, find_candidates
    from digest.output import write_atomic
    from digest.settings import ARXIV_CATEGORY

    settings = ctx.settings
    categories = [c.strip() for c in category.split(",") if c.strip()] if category else settings.candidates_categories
    bad = [c for c in categories if not ARXIV_CATEGORY.fullmatch(c)]
    if bad or not categories:
        _fail(f"--category {','.join(bad)!r}: not an arXiv category (like cs.CL or hep-th)", 2)
    days = days or settings.candidates_days
    found = find_candidates(settings, categories, days, ctx.now(now))
    ranked = found.ranked[: limit or settings.candidates_limit]
    _say(f"{'id':<12} {'score':>5}  {'topics':<16} {'title':<60}  why")
    for c in ranked:
        title = c.paper.title if len(c.paper.title) <= 60 else c.paper.title[:59] + "…"
        _say(f"{c.paper.id:<12} {c.score:5.2f}  {','.join(c.topics) or '-':<16} {title:<60}  {c.why}")
    _say(
        f"{counted(len(ranked), 'candidate')} shown of {len(found.ranked)} from {','.join(categories)}, last"
        f" {counted(days, 'day')}: {found.fetched} listed, {found.known} already in the seeds or published,"
        f" {found.excluded} excluded ({counted(found.requests, 'arXiv request')})"
    )
    if out is not None:
        heading = f"digest candidates {','.join(categories)}, last {counted(days, 'day')}, {ctx.now(now):%Y-%m-%d}"
        try:
            write_atomic(out, candidates_file(ranked, heading).encode("utf-8"))
        except OSError as exc:
            _fail(f"{out}: cannot write: {exc.strerror}")
        _say(f"written to {out}: delete the lines you do not want, then `digest draft --from {out}`")


def _hold_status(ctx: Context) -> dict[str, str]:
    from digest.hold import hold_status

    tz = ctx.settings.tz
    with ctx.publisher().read_store() as store:
        return hold_status(store, ctx.now(None), lambda t: f"{t.astimezone(tz):%Y-%m-%d %H:%M:%S %Z}")


@main.command()
@click.option("--until", help="End the hold by itself at this date or time (ISO 8601, in `timezone`).")
@click.option("--reason", default="", help="Why: shown by `digest status` and in the scheduler's log.")
@NOW_OPTION
@pass_ctx
@reports_errors
def hold(ctx: Context, until: str | None, reason: str, now: str | None) -> None:
    """Hold the scheduler: `digest run` publishes and mails nothing until `digest release` (or --until). Each
    skipped slot is logged and shown by `digest status`; its papers go into the first issue after the release. A
    mailing already running finishes.

    Example: digest hold --until 2026-12-21 --reason "conference week"
    """
    from digest.drafts import one_line
    from digest.hold import Hold, read_hold, write_hold

    settings = ctx.settings
    moment = ctx.now(now)
    end: datetime | None = None
    if until:
        try:
            end = datetime.fromisoformat(until)
        except ValueError:
            _fail(f"--until {until!r}: not a date or time (like 2026-12-21 or 2026-12-21T08:00)", 2)
        assert end is not None
        end = end if end.tzinfo else end.replace(tzinfo=settings.tz)
        if end <= moment:
            _fail(f"--until {until!r}: already past", 2)
    with ctx.publisher().open_store() as store:
        before = read_hold(store)
        record = Hold(since=before.since if before else moment, until=end, reason=one_line(reason)[:300])
        record.skipped = before.skipped if before else []
        write_hold(store, record)
    when = f"until {end:%Y-%m-%d %H:%M %Z}" if end else "until `digest release`"
    _say(f"held {when}: the scheduler publishes and mails nothing; papers wait for the first slot after it")


@main.command()
@pass_ctx
@reports_errors
def release(ctx: Context) -> None:
    """End a hold: the next scheduled slot publishes and mails again, with every paper that waited.

    Example: digest release
    """
    from digest.hold import clear_hold

    with ctx.publisher().open_store() as store:
        hold = clear_hold(store)
    if hold is None:
        _say("not held: nothing to release")
        return
    _say(
        f"released: {counted(len(hold.skipped), 'slot was', 'slots were')} skipped; the next slot publishes what waited"
    )


@main.command()
@click.argument("targets", nargs=-1, required=True, metavar="FILE|ID...")
@click.option("--force", is_flag=True, help="Approve drafts that fail the checks too.")
@pass_ctx
@reports_errors
def approve(ctx: Context, targets: tuple[str, ...], force: bool) -> None:
    """Remove the `Status: draft` mark from the drafts in FILE or of paper ID that pass the checks (Chinese title
    and abstract present, no Problem: line); the file is rewritten atomically, unchanged elsewhere.

    Example: digest approve seeds/draft-2026-12-07.md
    """
    from digest.editor import approve as approve_drafts

    report = approve_drafts(ctx.settings, targets, force=force)
    for line in report.approved:
        _say(line)
    for line in report.refused:
        _say(line, err=True)
    _say(f"{counted(len(report.approved), 'draft')} approved, {len(report.refused)} refused")
    if report.refused:
        sys.exit(1)


@main.command()
@click.argument("folder", metavar="[DIR]", default=".", type=click.Path(path_type=Path, file_okay=False))
@click.option("--templates", is_flag=True, help="Also copy the shipped templates into DIR/templates/ to edit them.")
@click.option("--force", is_flag=True, help="Overwrite the starter files if they exist (an existing .env is kept).")
@reports_errors
def init(folder: Path, templates: bool, force: bool) -> None:
    """Make a working folder for a new newsletter: seeds/ with an example entry, the commented
    config/digest.toml, a .env holding a new DIGEST_SECRET_KEY (mode 0600) and a .gitignore.

    Refuses to overwrite existing files (it names them) unless --force; `digest check` passes right after.

    Example: digest init mynews --templates && cd mynews && digest render
    """
    from digest.starter import make_folder

    written = make_folder(folder, templates=templates, force=force)
    shown = [name for name in written if not name.startswith("templates/")]
    if len(shown) < len(written):
        shown.append(f"templates/ ({len(written) - len(shown)} files)")
    _say(f"{folder}/: wrote {', '.join(shown)}")
    _say(f"next: cd {folder} && digest check && digest render (then edit config/digest.toml: site_url, title ...)")


@main.command("migrate-state")
@click.option(
    "--to", "target", required=True, help="The empty state to fill: postgresql://..., sqlite:///PATH or PATH."
)
@click.option("--from", "source", default=None, help="The state to copy (default: the configured state).")
@pass_ctx
@reports_errors
def migrate_state(ctx: Context, target: str, source: str | None) -> None:
    """Copy the whole state into an empty database of either backend, verified by counts and checksums.

    Stop `digest run`, `serve` and cron jobs first; then point DIGEST_STATE_URL at the target.

    Example: digest migrate-state --to postgresql://digest@db.example.org/digest
    """
    from digest.store import backend_for
    from digest.store.copy import copy_state

    def progress(table: str, done: int, total: int) -> None:
        _say(f"{table}: {done}/{counted(total, 'row')}", err=True)

    origin = backend_for(source or ctx.settings.state_location)
    destination = backend_for(target)
    # The writer lock of the source: no render or send changes it while it is copied.
    with origin.writer_lock(ctx.settings.lock_timeout, "migrate-state"):
        tables = copy_state(origin, destination, progress)
    for copied in tables:
        _say(f"{copied.table}: {counted(copied.rows, 'row')}, sha256 {copied.checksum[:16]} on both sides")
    total = sum(c.rows for c in tables)
    summary = f"copied {counted(total, 'row')} in {counted(len(tables), 'table')}"
    _say(f"{summary} from {origin.where} to {destination.where}; verified")


@main.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@pass_ctx
@reports_errors
def backup(ctx: Context, file: Path) -> None:
    """Copy the whole state into FILE (mode 0600), safely while `digest run` or `serve` use it.

    SQLite: the online backup API writes one consistent copy under a temp name, checks it, then renames it to
    FILE. PostgreSQL: prints how to use pg_dump instead and exits 1. Restore: stop every digest process, delete
    state/digest.db-wal and -shm if present, copy FILE back to state_path.

    Example: digest backup backups/digest-$(date +%F).db
    """
    publisher = ctx.publisher()
    size = publisher.backend.backup(file)
    _say(f"backed up {publisher.backend.where} to {file} ({size:,} bytes)")


@main.command()
@pass_ctx
@reports_errors
def status(ctx: Context) -> None:
    """Show unpublished entries, the last issue and where the outputs are.

    Example: digest status
    """
    from digest.schedule import schedule_status

    try:
        report = ctx.publisher().status()
    except NoStateError as exc:  # a status creates nothing: the first `render` (or `subscribers add`) does
        _say(f"{exc} (the first `digest render` creates it)")
        _print_drafts(ctx)
        return
    last = (
        f"issue {report.last_issue} published {report.last_published.astimezone(ctx.settings.tz):%Y-%m-%d %H:%M %Z}"
        if report.last_issue is not None and report.last_published is not None
        else "none yet"
    )
    click.echo(f"unpublished entries: {report.unpublished} (seen in earlier runs, not yet in an issue)")
    click.echo(f"issues: {report.issues}; last: {last}")
    _say(f"output folder: {report.output_dir}/")
    _say(f"state: {report.state}")
    lines = {**_status_lines(report), **schedule_status(ctx.settings, ctx.now(None)), **_hold_status(ctx)}
    for key, value in lines.items():
        _say(f"{key}: {value}")
    _print_drafts(ctx)


def _print_drafts(ctx: Context) -> None:
    """The drafts waiting for `digest approve`, with their problems."""
    drafts = [p for p in ctx.publisher().scan_seeds().problems if p.kind.value == "draft"]
    if drafts:
        _say(f"drafts: {len(drafts)} (`digest approve FILE|ID` publishes them with the next issue)")
    for problem in drafts:
        _say(f"draft {problem}")


def _status_lines(report: StatusReport) -> dict[str, str]:
    """The ledger, rate and late-issue lines of `digest status`, worded."""
    lines: dict[str, str] = {}
    if (mailed := report.deliveries) is not None:
        lines[f"deliveries of issue {mailed.issue}"] = ", ".join(f"{n} {s.value}" for s, n in mailed.counts.items())
        if mailed.unknown:
            shown = ", ".join(mailed.unknown) + (" ..." if mailed.more_unknown else "")
            lines["unknown (may have been delivered)"] = (
                f"{shown}; after checking, re-send with `digest send --issue {mailed.issue} --retry-unknown`"
            )
    for issue in report.rates:
        number = issue.rates.issue
        lines[f"bounces of issue {number}"] = issue.rates.describe()
        for i, problem in enumerate(issue.over):
            lines[f"WARNING {number}.{i + 1}"] = problem + ": `digest send` will refuse the next issue (see --force)"
    if (late := report.late) is not None:
        lines[f"issue {late.issue} not mailed"] = (
            f"{counted(late.missing, 'active subscriber has', 'active subscribers have')} not had it and it is older"
            f" than max_send_age ({late.max_send_age}s), so `digest run` will not mail it; it stays on the site and"
            f" in the feeds; send it by hand with `digest send --issue {late.issue}`"
        )
    return lines


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option(
    "--no-static",
    is_flag=True,
    help="Serve only signup, confirmation, preferences and unsubscribe, not the site's files (a web-only host).",
)
@NOW_OPTION
@pass_ctx
@reports_errors
def serve(ctx: Context, host: str, port: int, no_static: bool, now: str | None) -> None:
    """Serve the site and feeds, signup with double opt-in, preferences and one-click unsubscribe until Ctrl-C.

    Endpoints: /subscribe, /confirm/<token>, /preferences/<token>, /my-data/<token>, /unsubscribe?token=..., and
    the files of output_dir. Without the output folder (or with --no-static, or web_static = false) only the
    dynamic endpoints answer. Without secret_key only the site and feeds are served (signup answers "not set up").
    Behind a reverse proxy, list it in trusted_proxies so the client IP comes from X-Forwarded-For.

    Example: digest serve --host 0.0.0.0 --port 8080
    """
    from digest.web import serve as run_server

    _warn_localhost_site(ctx.settings)
    settings = ctx.settings.model_copy(update={"web_static": False}) if no_static else ctx.settings
    pinned = ctx.now(now) if now else None
    run_server(settings, host, port, clock=(lambda: pinned) if pinned else None)


# --- subscribers and sending ----------------------------------------------------------------------


@main.group()
def subscribers() -> None:
    """Keep the subscriber list: add, remove, list, import and export addresses.

    Example: digest subscribers add ada@example.org --name "Ada Lovelace"
    """


_OUTCOME_TEXT = {
    "added": "added",
    "exists": "already subscribed",
    "resubscribed": "subscribed again",
}


def _outcome_text(outcome: str) -> str:
    """What `subscribers add` did; an address that left or was suppressed is kept so unless --resubscribe."""
    return _OUTCOME_TEXT.get(outcome) or f"{outcome} earlier; kept {outcome} (use --resubscribe to add it back)"


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default="", help="Display name used in the To header.")
@click.option("--resubscribe", is_flag=True, help="Add back an address that had unsubscribed.")
@NOW_OPTION
@pass_ctx
@reports_errors
def subscribers_add(ctx: Context, email: str, name: str, resubscribe: bool, now: str | None) -> None:
    """Add one subscriber (syntax-checked; case-only duplicates are the same subscriber).

    Example: digest subscribers add ada@example.org --name "Ada Lovelace"
    """
    from email.utils import parseaddr

    from digest.subscribers import InvalidAddress, SubscriberRow, clean_name, normalize_address

    if "<" in email:  # "Ada Lovelace <ada@example.org>", as copied from a mail client
        display, address = parseaddr(email)
        email, name = (address, name or display) if address else (email, name)
    try:
        row = SubscriberRow(normalize_address(email), clean_name(name), 0)
    except InvalidAddress as exc:
        _fail(str(exc))
        return
    from digest.subscriptions import add_subscribers

    with ctx.publisher().open_store() as store:
        [(_, outcome)] = add_subscribers(store, [row], ctx.now(now), resubscribe=resubscribe)
    click.echo(f"{row.email}: {_outcome_text(outcome)}")
    if outcome not in ("added", "exists", "resubscribed"):
        sys.exit(1)


@subscribers.command("remove")
@click.argument("email")
@NOW_OPTION
@pass_ctx
@reports_errors
def subscribers_remove(ctx: Context, email: str, now: str | None) -> None:
    """Unsubscribe an address; it is kept on record so that imports do not add it back.

    Example: digest subscribers remove ada@example.org
    """
    from digest.subscriptions import unsubscribe_address

    with ctx.publisher().open_store() as store:
        found = unsubscribe_address(store, email, ctx.now(now))
    if found is None:
        _fail(f"{email}: no such subscriber")
        return
    click.echo(f"{found.email}: {'unsubscribed' if found.active else 'was already unsubscribed'}")


@subscribers.command("list")
@pass_ctx
@reports_errors
def subscribers_list(ctx: Context) -> None:
    """Show every subscriber with its status (pending/active/paused/unsubscribed/bounced/complained) and since
    when, and how it joined (form, cli, import).

    Example: digest subscribers list
    """
    records = _subscriber_records(ctx)
    width = max((len(r.subscriber.email) for r in records), default=5)
    for record in records:
        sub = record.subscriber
        status = sub.status.value
        if record.status_since:  # "pending 2026-12-01": since when
            status += f" {record.status_since:%Y-%m-%d}"
        _say(f"{sub.email:<{width}}  {status:<23}  {record.source.value:<6}  {sub.name}".rstrip())
    from collections import Counter

    counts = Counter(r.subscriber.status for r in records)
    others = "".join(
        f", {counts[s]} {s.value}" for s in SubscriberStatus if s is not SubscriberStatus.ACTIVE and counts[s]
    )
    click.echo(f"{counted(len(records), 'subscriber')}: {counts[SubscriberStatus.ACTIVE]} active{others}", err=True)


@subscribers.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--resubscribe", is_flag=True, help="Add back addresses that had unsubscribed or asked to be deleted (suppressed)."
)
@NOW_OPTION
@pass_ctx
@reports_errors
def subscribers_import(ctx: Context, file: Path, resubscribe: bool, now: str | None) -> None:
    """Import subscribers from a CSV file with columns email[,name] (a header row is optional).

    Bad rows are reported as FILE:LINE: reason and skipped; the good rows are imported; exit 1 if any was bad.

    Example: digest subscribers import people.csv
    """
    from collections import Counter

    from digest.subscribers import parse_subscriber_csv
    from digest.subscriptions import add_subscribers

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"{file}: cannot read: {exc}")
        return
    rows, problems = parse_subscriber_csv(text, str(file))
    for problem in problems:
        _say(str(problem), err=True)
    with ctx.publisher().open_store() as store:
        added = add_subscribers(store, rows, ctx.now(now), resubscribe=resubscribe, source=SubscriberSource.IMPORT)
    outcomes = Counter(outcome if outcome in _OUTCOME_TEXT else "kept" for _, outcome in added)
    _say(
        f"{file}: {outcomes['added']} added, {outcomes['exists']} already subscribed,"
        f" {outcomes['resubscribed']} subscribed again, {outcomes['kept']} kept unsubscribed or suppressed,"
        f" {counted(len(problems), 'bad row')}"
    )
    if problems:
        sys.exit(1)


@subscribers.command("export")
@pass_ctx
@reports_errors
def subscribers_export(ctx: Context) -> None:
    """Write every subscriber (opt-outs included) with its consent record (source, signup IP, when confirmed) as
    CSV to stdout; `import` reads it back.

    A cell starting with =, +, -, @, tab or CR gets a ' in front, so that a spreadsheet shows it as text instead of
    running it as a formula (CSV injection); `import` removes that quote again.

    Example: digest subscribers export > subscribers.csv
    """
    from digest.subscribers import export_csv

    click.echo(export_csv(_subscriber_records(ctx)), nl=False)


def _subscriber_records(ctx: Context) -> list[SubscriberRecord]:
    """Every subscriber; none (said on stderr) when there is no state yet, which a listing does not create."""
    try:
        return ctx.publisher().subscriber_records()
    except NoStateError as exc:
        _say(str(exc), err=True)
        return []


@main.command()
@click.option("--issue", type=int, help="Issue number (default: the latest).")
@click.option("--to", "to", metavar="EMAIL", help="Send one test copy to this address; record nothing.")
@click.option(
    "--dry-run",
    "dry_run",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="Write each message as an .eml file into DIR instead of sending; record nothing.",
)
@click.option("--retry-unknown", is_flag=True, help="Also re-send deliveries whose outcome is unknown.")
@click.option(
    "--force", is_flag=True, help="Send even though the previous issue's bounce or complaint rate is too high."
)
@pass_ctx
@reports_errors
def send(
    ctx: Context, issue: int | None, to: str | None, dry_run: Path | None, retry_unknown: bool, force: bool
) -> None:
    """Mail an issue to every active subscriber who has not received it yet.

    Safe to interrupt (Ctrl-C, SIGTERM: the messages in flight are finished and recorded) and to run again:
    nobody gets the issue twice. A message whose fate is unknown (the connection broke after it was sent) is
    not re-sent unless --retry-unknown is given. Refuses to start while the previous issue's hard-bounce or
    complaint rate is over max_hard_bounce_rate / max_complaint_rate, unless --force.

    Example: digest send --to me@example.org
    """
    import signal
    import threading

    from rich.console import Console
    from rich.progress import Progress

    from digest.model import Delivery

    _warn_sender(ctx.settings)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo("digest: stopping after the messages in flight (again to abort at once)", err=True)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    console = Console(stderr=True)
    try:
        with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
            task = bar.add_task("sending", total=None)

            def on_result(delivery: Delivery) -> None:
                bar.advance(task)
                if delivery.status.value != "sent":
                    console.print(
                        printable(f"{delivery.subscriber.email}: {delivery.status.value}: {delivery.detail}"),
                        markup=False,
                        highlight=False,
                    )

            report = (
                ctx.publisher()
                .sender()
                .send(
                    issue=issue,
                    to=to,
                    dry_run_dir=dry_run,
                    retry_unknown=retry_unknown,
                    force=force,
                    stop=stop,
                    on_start=lambda total: bar.update(task, total=total),
                    on_result=on_result,
                )
            )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if report.test_copy:
        click.echo(f"issue {report.issue}: test copy sent to {report.test_copy} (not recorded)")
        return
    if report.dry_run_dir:
        _say(f"issue {report.issue}: [dry run] {counted(report.sent, 'message')} written to {report.dry_run_dir}/")
        return
    rate = f", {report.sent / report.seconds:.1f} messages/s" if report.seconds > 0 and report.sent else ""
    click.echo(
        f"issue {report.issue}: {report.sent} sent, {report.failed} failed, {report.deferred} deferred,"
        f" {report.unknown} unknown, {report.not_due} skipped"
        + (f", {report.bounced} bounced (suppressed)" if report.bounced else "")
        + (f", {report.no_paper} not mailed (no paper in their topics)" if report.no_paper else "")
        + f" ({report.seconds:.1f} s{rate})"
    )
    if report.expired:
        click.echo(
            f"{counted(report.expired, 'delivery', 'deliveries')} interrupted by an earlier crash"
            " are now 'unknown' (see `digest status`)",
            err=True,
        )
    if report.stopped:
        click.echo("stopped before the end: run `digest send` again to continue", err=True)
    elif report.deferred:
        click.echo("some deliveries were deferred: run `digest send` again later", err=True)


def _warn_sender(settings: Settings) -> None:
    """Mail that names no postal sender, or comes from @localhost, is what spam filters and the law dislike."""
    from email.utils import parseaddr

    if not settings.sender_address.strip():
        _warn(
            "sender_address is empty: the email's footer shows no postal address (CAN-SPAM requires one for"
            " commercial mail); set sender_address (DIGEST_SENDER_ADDRESS)"
        )
    address = parseaddr(settings.from_address)[1]
    if address.rpartition("@")[2].lower() in ("localhost", "localhost.localdomain", ""):
        _warn(
            f"from_address is {address!r}: mail servers refuse or junk mail from localhost;"
            " set from_address (DIGEST_FROM_ADDRESS) to an address of your domain"
        )


@main.group()
def bounces() -> None:
    """Read bounce (DSN) and complaint (ARF) reports: the addresses they name stop getting mail.

    Example: digest bounces import ~/Maildir/.bounces
    """


@bounces.command("import")
@click.argument("source", metavar="PATH|-")
@click.option("-q", "--quiet", is_flag=True, help="Print only problems and the summary.")
@click.option(
    "--dry-run", is_flag=True, help="Only classify each report (nothing is read from or written to the store)."
)
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: one JSON object per (message, recipient).")
@NOW_OPTION
@pass_ctx
@reports_errors
def bounces_import(ctx: Context, source: str, quiet: bool, dry_run: bool, as_json: bool, now: str | None) -> None:
    """Import reports from a Maildir, an mbox file, one .eml file, or standard input (-).

    Each report is matched to its delivery by the VERP id in its return path and recorded on the ledger: a hard
    bounce suppresses the address at once, soft ones after soft_bounce_limit in a row, a complaint unsubscribes.
    Importing a report again changes nothing. Messages that cannot be read or matched are reported as
    NAME: reason and skipped (the exit code is then 1), and remembered, so the next import passes them. At most
    bounce_max_bytes of a message is read. One import at a time: a second waits up to lock_timeout, then exits 75.

    With --dry-run each message is only classified and printed, one line per recipient: NAME KIND RECIPIENT STATUS
    REASON (with --json, an object {"name", "kind", "recipient", "status", "reason"}), KIND one of hard, soft,
    complaint, delay, delivered, auto-reply, unknown, and NAME the file's name, the number in an mbox, or -.

    Example: digest bounces import - < bounce.eml
    """
    from digest.bounces.mailboxes import read_messages

    stdin = sys.stdin.buffer
    if as_json and not dry_run:
        raise click.UsageError("--json goes with --dry-run")
    if dry_run:
        _classify_bounces(read_messages(source, stdin, ctx.settings.bounce_max_bytes, short_names=True), as_json)
        return
    counts = {"applied": 0, "repeated": 0, "problems": 0}
    messages = read_messages(source, stdin, ctx.settings.bounce_max_bytes)
    for result in ctx.publisher().import_bounces(messages, ctx.now(now)):
        # File names and remote servers' diagnostics are outside text: printed with their controls escaped.
        if result.problem:
            counts["problems"] += 1
            _say(f"{result.name}: {result.outcome}", err=True)
            continue
        counts["repeated" if result.repeated else "applied"] += 1
        if not quiet:
            _say(f"{result.name}: {result.outcome}")
    click.echo(
        f"{counted(counts['applied'], 'report')} applied, {counts['repeated']} already imported,"
        f" {counts['problems']} skipped",
        err=True,
    )
    if counts["problems"]:
        sys.exit(1)


def _classify_bounces(messages: Iterable[tuple[str, bytes]], as_json: bool) -> None:
    import json

    from digest.bounces.reports import classification, read_report

    for name, data in messages:
        for row in classification(read_report(data)):
            if as_json:  # ensure_ascii: every control and non-ASCII character of outside text is escaped
                click.echo(json.dumps({"name": name, **row}))
            else:
                _say(" ".join([name, row["kind"], row["recipient"] or "-", row["status"] or "-", row["reason"] or "-"]))


@main.command()
@click.option("--once", is_flag=True, help="Run the job for the latest scheduled time now, then exit (system cron).")
@NOW_OPTION
@pass_ctx
@reports_errors
def run(ctx: Context, once: bool, now: str | None) -> None:
    """Publish and mail the next issue on the schedule (setting `schedule`) until SIGTERM or Ctrl-C.

    Each firing publishes the issue of its slot once (however many processes fire), then mails it; a run missed
    while stopped is caught up once within misfire_grace_time. See docs/scheduling.md.

    Example: DIGEST_SCHEDULE="0 8 * * mon" digest run
    """
    from digest import schedule

    if once:
        _warn_localhost_site(ctx.settings)
        fired = schedule.run_once(ctx.settings, ctx.now(now))
        if fired is not None and fired.mail_error:
            sys.exit(1)  # published, but the mail could not go out: cron should tell someone
        return
    if now is not None:
        raise click.UsageError("--now only goes with --once")
    _warn_localhost_site(ctx.settings)
    ctx.publisher().check_ready_to_mail()  # a daemon should not start fine and then fail every week
    schedule.run_forever(ctx.settings, ctx.config)


if __name__ == "__main__":
    main()
