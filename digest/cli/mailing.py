"""Mailing commands: `send` an issue and `bounces import`."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterable
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from digest.cli import (
    NOW_OPTION,
    Context,
    _say,
    _warn,
    main,
    pass_ctx,
    reports_errors,
)
from digest.errors import printable
from digest.model import Delivery
from digest.wording import counted

if TYPE_CHECKING:
    from digest.settings import Settings


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

    _warn_sender(ctx.settings)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo("digest: stopping after the messages in flight (again to abort at once)", err=True)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    console: Any = _Quiet()
    progress: Any = console
    if sys.stderr.isatty():  # rich is ~0.15 s of start-up: only for someone watching
        from rich.console import Console  # noqa: PLC0415 (lazy: rich only when used)
        from rich.progress import Progress  # noqa: PLC0415 (lazy: rich only when used)

        console = Console(stderr=True)
        progress = Progress(console=console, transient=True)
    try:
        with progress as bar:
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
        f"issue {report.issue}: {report.sent:,} sent, {report.failed:,} failed, {report.deferred:,} deferred,"
        f" {report.unknown:,} unknown, {report.not_due:,} skipped"
        + (f", {report.bounced:,} bounced (suppressed)" if report.bounced else "")
        + (f", {report.no_paper:,} not mailed (no paper in their topics)" if report.no_paper else "")
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


class _Quiet:
    """What `send` shows when stderr is no terminal (cron, a pipe, a log): no progress bar, each failure on a line
    of its own. Stands in for rich's Progress and Console."""

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: float | None = None) -> int:
        return 0

    def advance(self, task: int) -> None:
        pass

    def update(self, task: int, total: float | None = None) -> None:
        pass

    def print(self, text: str, markup: bool = False, highlight: bool = False) -> None:
        click.echo(text, err=True)


def _warn_sender(settings: Settings) -> None:
    """Mail that names no postal sender, or comes from @localhost, is what spam filters and the law dislike."""

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

    from digest.bounces.mailboxes import read_messages  # noqa: PLC0415 (lazy: `send` shares this module)

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
        f"{counted(counts['applied'], 'report')} applied, {counts['repeated']:,} already imported,"
        f" {counts['problems']:,} skipped",
        err=True,
    )
    if counts["problems"]:
        sys.exit(1)


def _classify_bounces(messages: Iterable[tuple[str, bytes]], as_json: bool) -> None:

    from digest.bounces.reports import classification, read_report  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

    for name, data in messages:
        for row in classification(read_report(data)):
            if as_json:  # ensure_ascii: every control and non-ASCII character of outside text is escaped
                click.echo(json.dumps({"name": name, **row}))
            else:
                _say(" ".join([name, row["kind"], row["recipient"] or "-", row["status"] or "-", row["reason"] or "-"]))
