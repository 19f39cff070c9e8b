"""Publishing commands: `render`, `rebuild`, `check`, `status`, `backup` and `init`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from digest.cli import (
    NOW_OPTION,
    Context,
    ProgressBars,
    _say,
    _warn_localhost_site,
    main,
    pass_ctx,
    reports_errors,
)
from digest.errors import NoStateError, printable
from digest.output import write_atomic
from digest.wording import counted

if TYPE_CHECKING:
    from digest.publisher import PublishResult
    from digest.status import StatusReport


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
    first. Refuses (exit 73) to write over an output folder built from another state, unless --force. On a terminal,
    the long stretches (every page rendered again, a bulk of seed files read) show a progress bar on stderr.

    Example: digest render --dry-run
    """
    _warn_localhost_site(ctx.settings)
    with ProgressBars() as bars:
        result = ctx.publisher().publish_next_issue(ctx.now(now), dry_run=dry_run, force=force, phase=bars.phase)
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
        parts.append(f"{result.waiting:,} waiting for the next issue")
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
    publisher = ctx.publisher()
    try:
        total = publisher.status().issues
    except NoStateError:
        total = 0  # the rebuild itself refuses a site whose state is lost
    with ProgressBars() as bars:
        changed = publisher.rebuild(progress=bars.phase("rendering issues", total) if bars.phase else None, force=force)
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

    settings = ctx.settings
    _warn_localhost_site(settings)
    publisher = ctx.publisher()
    scan = publisher.scan_seeds()
    for problem in scan.problems:
        _say(f"{problem} [{problem.kind.value}]", err=True)
    from digest.editor import glossary_report  # noqa: PLC0415 (lazy: lxml and arxiv ... only when used)

    for line in glossary_report(settings, scan):  # advice on wording: reported, not a failure
        _say(line, err=True)
    from digest.checkup import schedule_problem, state_problem, template_problems  # noqa: PLC0415 (lazy: not loaded by render)

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

    from digest.starter import make_folder  # noqa: PLC0415 (lazy: not loaded by render)

    written = make_folder(folder, templates=templates, force=force)
    shown = [name for name in written if not name.startswith("templates/")]
    if len(shown) < len(written):
        shown.append(f"templates/ ({len(written) - len(shown)} files)")
    _say(f"{folder}/: wrote {', '.join(shown)}")
    _say(f"next: cd {folder} && digest check && digest render (then edit config/digest.toml: site_url, title ...)")


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
@click.option(
    "--html",
    "html_file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Also write the status as one offline HTML page with charts (no script, nothing loaded from elsewhere).",
)
@pass_ctx
@reports_errors
def status(ctx: Context, html_file: Path | None) -> None:
    """Show unpublished entries, the last issue and where the outputs are.

    With --html, also write a page holding the same numbers and charts of subscribers over issues, delivery and
    bounce rates per issue and papers per topic: open it in a browser, offline (the editor's report after each
    mailing attaches the same page).

    Example: digest status --html status.html
    """
    from digest.cli.editing import _hold_status  # noqa: PLC0415 (lazy: not loaded by render)
    from digest.schedule import schedule_status  # noqa: PLC0415 (lazy: not loaded by render)

    try:
        report = ctx.publisher().status()
    except NoStateError as exc:  # a status creates nothing: the first `render` (or `subscribers add`) does
        _say(f"{exc} (the first `digest render` creates it)")
        _print_drafts(ctx)
        return
    if html_file is not None:
        extra = {**schedule_status(ctx.settings, ctx.now(None)), **_hold_status(ctx)}
        # It may name subscribers (deliveries in doubt): for the owner's eyes, like the state.
        write_atomic(html_file, ctx.publisher().status_page(extra=extra).encode("utf-8"), mode=0o600)
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
    if html_file is not None:
        _say(f"status page written to {html_file}")


def _print_drafts(ctx: Context) -> None:
    """The drafts waiting for `digest approve`, with their problems."""
    drafts = [p for p in ctx.publisher().scan_seeds().problems if p.kind.value == "draft"]
    if drafts:
        _say(f"drafts: {len(drafts)} (`digest approve FILE|ID` publishes them with the next issue)")
    for problem in drafts:
        _say(f"draft {problem}")


def _status_lines(report: StatusReport) -> dict[str, str]:
    """The ledger, rate and late-issue lines of `digest status`, worded (by digest.status, which the status page
    and the editor's report share)."""
    from digest.status import status_lines  # noqa: PLC0415 (lazy: not loaded by render)

    return status_lines(report)
