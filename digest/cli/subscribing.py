"""`digest subscribers`: add, remove, list, import and export subscribers."""

from __future__ import annotations

import sys
from collections import Counter
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING

import click

from digest.cli import (
    NOW_OPTION,
    Context,
    _fail,
    _say,
    main,
    pass_ctx,
    reports_errors,
)
from digest.errors import NoStateError
from digest.model import SubscriberSource, SubscriberStatus
from digest.wording import counted

if TYPE_CHECKING:
    from digest.store import SubscriberRecord


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

    from digest.subscribers import InvalidAddress, SubscriberRow, clean_name, normalize_address  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

    if "<" in email:  # "Ada Lovelace <ada@example.org>", as copied from a mail client
        display, address = parseaddr(email)
        email, name = (address, name or display) if address else (email, name)
    try:
        row = SubscriberRow(normalize_address(email), clean_name(name), 0)
    except InvalidAddress as exc:
        _fail(str(exc))
        return
    from digest.subscriptions import add_subscribers  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

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
    from digest.subscriptions import unsubscribe_address  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

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

    from digest.subscribers import parse_subscriber_csv  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)
    from digest.subscriptions import add_subscribers  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

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
    from digest.subscribers import export_csv  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

    click.echo(export_csv(_subscriber_records(ctx)), nl=False)


def _subscriber_records(ctx: Context) -> list[SubscriberRecord]:
    """Every subscriber; none (said on stderr) when there is no state yet, which a listing does not create."""
    try:
        return ctx.publisher().subscriber_records()
    except NoStateError as exc:
        _say(str(exc), err=True)
        return []
