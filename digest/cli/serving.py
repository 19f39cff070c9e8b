"""Long-running and state commands: `serve`, `run` and `migrate-state`."""

from __future__ import annotations

import sys

import click

from digest import schedule
from digest.cli import (
    NOW_OPTION,
    Context,
    _say,
    _warn_localhost_site,
    main,
    pass_ctx,
    reports_errors,
)
from digest.store import backend_for
from digest.store.copy import copy_state
from digest.wording import counted


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
    Behind a reverse proxy, list it in trusted_proxies so the client IP comes from X-Forwarded-For. web_workers
    processes share the port (default: one per CPU core; 1 for a single process).

    Example: digest serve --host 0.0.0.0 --port 8080
    """
    from digest.web import serve as run_server  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

    _warn_localhost_site(ctx.settings)
    settings = ctx.settings.model_copy(update={"web_static": False}) if no_static else ctx.settings
    pinned = ctx.now(now) if now else None
    run_server(settings, host, port, clock=(lambda: pinned) if pinned else None)


# --- subscribers and sending ----------------------------------------------------------------------


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
