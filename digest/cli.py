"""The `digest` command line: each command a few lines over the publisher.

Heavy modules (renderers, SMTP, the scheduler) are imported inside the commands that use them, so that
`digest status` and a no-op `digest render` start fast.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from digest.errors import DigestError

if TYPE_CHECKING:
    from digest.publisher import Publisher, PublishResult
    from digest.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("digest")


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"digest: error: {message}", err=True)
    sys.exit(code)


def reports_errors(func: F) -> F:
    """Turn digest's own errors (and SQLite's) into one line on stderr and a non-zero exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DigestError as exc:
            _fail(str(exc), exc.exit_code)
        except sqlite3.Error as exc:
            _fail(f"state database error: {exc}")
        except KeyboardInterrupt:
            _fail("interrupted", 130)

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
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = Context(config)


def _print_problems(result: PublishResult) -> None:
    for problem in result.problems:
        click.echo(f"{problem} [{problem.kind.value}]", err=True)


@main.command()
@click.option("--dry-run", is_flag=True, help="Write the would-be outputs to the preview folder; record nothing.")
@NOW_OPTION
@pass_ctx
@reports_errors
def render(ctx: Context, dry_run: bool, now: str | None) -> None:
    """Build the next issue from unpublished entries, write all outputs and record it.

    Example: digest render --dry-run
    """
    result = ctx.publisher().publish_next_issue(ctx.now(now), dry_run=dry_run)
    _print_problems(result)
    if dry_run:
        for report in result.reports:
            title = f"  {report.title}" if report.title else ""
            click.echo(f"{report.status.value:<10} {report.where}{title}  ({report.detail})")
    click.echo(_summary(result))
    if any(p.kind.value == "invalid" for p in result.problems):
        sys.exit(1)


def _summary(result: PublishResult) -> str:
    invalid = sum(p.kind.value == "invalid" for p in result.problems)
    duplicates = len(result.problems) - invalid
    prefix = "[dry run] would publish" if result.dry_run else "published"
    if result.issue is not None:
        head = f"{prefix} issue {result.issue.number} with {len(result.issue.entries)} papers"
    else:
        head = "[dry run] nothing new" if result.dry_run else "nothing new"
    parts = [head]
    if result.waiting:
        parts.append(f"{result.waiting} waiting for the next issue")
    if result.revised:
        parts.append(f"{result.revised} corrected")
    parts.append(f"{invalid} invalid, {duplicates} duplicate")
    where = f"{result.output_dir}/" + (f"issues/{result.issue.number}/" if result.issue else "")
    parts.append(f"{result.files_changed} files written in {where}")
    text = "; ".join(parts)
    if invalid:
        text += "\ninvalid entries were skipped and will be picked up once fixed (see `digest check`)"
    return text


@main.command()
@pass_ctx
@reports_errors
def rebuild(ctx: Context) -> None:
    """Re-render every output from the state (after a template change); creates no issue.

    Example: digest rebuild
    """
    from rich.progress import Progress

    publisher = ctx.publisher()
    total = publisher.status().issues
    with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("rendering issues", total=total)
        changed = publisher.rebuild(progress=lambda n: bar.advance(task, n))
    click.echo(f"rebuilt {total} issues: {changed} files changed in {publisher.settings.output_dir}/")


@main.command()
@pass_ctx
@reports_errors
def check(ctx: Context) -> None:
    """Validate settings and every seed file; exit 1 if anything is wrong.

    Example: digest check
    """
    settings = ctx.settings
    scan = ctx.publisher().scan_seeds()
    for problem in scan.problems:
        click.echo(f"{problem} [{problem.kind.value}]", err=True)
    click.echo(
        f"{len(scan.entries)} valid entries in {settings.seeds_dir}/, {len(scan.problems)} problems; settings OK"
    )
    if scan.problems:
        sys.exit(1)


@main.command()
@pass_ctx
@reports_errors
def status(ctx: Context) -> None:
    """Show unpublished entries, the last issue and where the outputs are.

    Example: digest status
    """
    report = ctx.publisher().status()
    last = (
        f"issue {report.last_issue} published {report.last_published:%Y-%m-%d %H:%M %Z}"
        if report.last_issue is not None and report.last_published is not None
        else "none yet"
    )
    click.echo(f"unpublished entries: {report.unpublished} (seen in earlier runs, not yet in an issue)")
    click.echo(f"issues: {report.issues}; last: {last}")
    click.echo(f"output folder: {report.output_dir}/")
    click.echo(f"state: {report.state_path}")
    for key, value in report.extra.items():
        click.echo(f"{key}: {value}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@pass_ctx
@reports_errors
def serve(ctx: Context, host: str, port: int) -> None:
    """Serve the archive, the feeds and one-click unsubscribe over HTTP until Ctrl-C.

    Example: digest serve --host 0.0.0.0 --port 8080
    """
    from digest.web import serve as run_server

    run_server(ctx.settings, host, port)


if __name__ == "__main__":
    main()
