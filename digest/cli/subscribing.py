"""`digest subscribers`: add, remove, list, import and export subscribers."""

from __future__ import annotations

import json
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
from digest.model import Problem, SubscriberSource, SubscriberStatus
from digest.wording import counted

if TYPE_CHECKING:
    from digest.store import SubscriberRecord


@main.group()
def subscribers() -> None:
    """Keep the subscriber list: add, remove, list, import and export addresses; undo a suppression, see a history.

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
        f", {counts[s]:,} {s.value}" for s in SubscriberStatus if s is not SubscriberStatus.ACTIVE and counts[s]
    )
    click.echo(f"{counted(len(records), 'subscriber')}: {counts[SubscriberStatus.ACTIVE]:,} active{others}", err=True)


@subscribers.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--resubscribe", is_flag=True, help="Add back addresses that had unsubscribed or asked to be deleted (suppressed)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "substack", "mailchimp", "buttondown", "ghost"]),
    default="csv",
    show_default=True,
    help="Whose export FILE is: digest's own CSV, or another platform's (consent columns and statuses are kept).",
)
@NOW_OPTION
@pass_ctx
@reports_errors
def subscribers_import(ctx: Context, file: Path, resubscribe: bool, fmt: str, now: str | None) -> None:
    """Import subscribers from a CSV file with columns email[,name] (a header row is optional), or from another
    platform's export (--format substack|mailchimp|buttondown|ghost; the columns each reads are in
    docs/subscribers-import.md).

    A platform's opt-in time and IP and confirmation time go into the consent record (source import:PLATFORM); its
    unsubscribed rows stay unsubscribed, its cleaned or undeliverable rows come in bounced; Substack's deletion
    requests and unconfirmed signups are skipped (listed). A file without the format's columns is one error (exit 1).
    Bad rows are reported as FILE:LINE: reason and skipped; the good rows are imported; exit 1 if any was bad.

    Example: digest subscribers import --format mailchimp subscribed_members_export.csv
    """

    from digest.imports import WrongFormat, parse_export  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)
    from digest.subscribers import parse_subscriber_csv  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)
    from digest.subscriptions import add_subscribers, import_source  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"{file}: cannot read: {exc}")
        return
    skipped: list[Problem] = []
    if fmt == "csv":
        rows, problems = parse_subscriber_csv(text, str(file))
    else:
        try:
            rows, problems, skipped = parse_export(text, str(file), fmt)
        except WrongFormat as exc:
            _fail(str(exc))
            return
    for problem in [*skipped, *problems]:
        _say(str(problem), err=True)
    with ctx.publisher().open_store() as store:
        added = add_subscribers(
            store,
            rows,
            ctx.now(now),
            resubscribe=resubscribe,
            source=SubscriberSource.IMPORT,
            trail=import_source(fmt),
            platform="" if fmt == "csv" else fmt,
        )
    outcomes = Counter(outcome if outcome in _OUTCOME_TEXT else "kept" for _, outcome in added)
    read = Counter(row.status.value for row in rows)
    shape = f" (the file: {', '.join(f'{n:,} {s}' for s, n in sorted(read.items()))})" if fmt != "csv" else ""
    gone = f", {len(skipped):,} skipped" if skipped else ""
    _say(
        f"{file}: {outcomes['added']:,} added, {outcomes['exists']:,} already subscribed,"
        f" {outcomes['resubscribed']:,} subscribed again, {outcomes['kept']:,} kept unsubscribed or suppressed,"
        f" {counted(len(problems), 'bad row')}{gone}{shape}"
    )
    if problems:
        sys.exit(1)


@subscribers.command("unsuppress")
@click.argument("email")
@click.option("--reason", required=True, help="Why (kept on the address's history): the mailbox was fixed ...")
@click.option("--resubscribe", is_flag=True, help="Also add back an address deleted at its owner's request.")
@NOW_OPTION
@pass_ctx
@reports_errors
def subscribers_unsuppress(ctx: Context, email: str, reason: str, resubscribe: bool, now: str | None) -> None:
    """Return a bounced or complained address to active, the reason recorded in its history.

    An address its owner deleted (kept only as a hash) is refused unless --resubscribe; an unsubscribed one is its
    reader's choice (`subscribers add --resubscribe` overrides it). Exit 1 when nothing changed.

    Example: digest subscribers unsuppress ada@example.org --reason "mailbox fixed, she asked by phone"
    """
    from digest.subscriptions import Unsuppress, unsuppress  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

    with ctx.publisher().read_store() as store:  # no state yet: nothing to undo, and none is made
        outcome, found = unsuppress(store, email, reason, ctx.now(now), resubscribe=resubscribe)
    if outcome is Unsuppress.RESTORED:
        _say(f"{email}: active again")
    elif outcome is Unsuppress.RESUBSCRIBED:
        _say(f"{email}: had been deleted at its owner's request; added back, active")
    elif outcome is Unsuppress.ERASED:
        _fail(f"{email}: deleted at its owner's request; --resubscribe adds it back")
    elif outcome is Unsuppress.NOT_SUPPRESSED and found is not None:
        _fail(f"{email}: {found.status.value}, not bounced or complained: nothing changed")
    else:
        _fail(f"{email}: no such subscriber")


@subscribers.command("history")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the address, its status and its changes.")
@pass_ctx
@reports_errors
def subscribers_history(ctx: Context, email: str, as_json: bool) -> None:
    """Show every status change of an address, oldest first: when, from and to which status, what made it
    (signup, confirm, preference page, unsubscribe link, List-Unsubscribe, bounce report NAME, webhook PROVIDER
    EVENT, send issue N, cli, import:FORMAT) and the reason given. Exit 1 for an unknown address.

    Example: digest subscribers history ada@example.org --json
    """
    from digest.subscriptions import history, history_item  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

    with ctx.publisher().read_store() as store:  # a listing creates no state
        found, changes, erased = history(store, email)
    if found is None:
        gone = "deleted at its owner's request (its history went with it)" if erased else "no such subscriber"
        _fail(f"{email}: {gone}")
        return
    if as_json:
        data = {"email": found.email, "status": found.status.value, "changes": [history_item(c) for c in changes]}
        click.echo(json.dumps(data, ensure_ascii=True))
        return
    for change in changes:
        was = change.old.value if change.old else "(new)"
        why = f"  {change.reason}" if change.reason else ""
        _say(f"{change.at.isoformat(timespec='seconds')}  {was} -> {change.new.value}  {change.source}{why}")
    _say(f"{found.email}: {found.status.value}, {counted(len(changes), 'change')}", err=True)


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
