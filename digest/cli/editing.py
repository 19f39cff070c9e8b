"""The editor's commands: `draft`, `candidates`, `approve`, `hold` and `release`."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

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
from digest.hold import Hold, clear_hold, hold_status, read_hold, write_hold
from digest.wording import counted


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
    from digest.drafts import parse_paper_ids  # noqa: PLC0415 (lazy: lxml and arxiv ... only when used)
    from digest.editor import draft_papers  # noqa: PLC0415 (lazy: lxml and arxiv ... only when used)

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
    from digest.candidates import candidates_file, find_candidates  # noqa: PLC0415 (lazy: lxml and arxiv ... only when used)
    from digest.output import write_atomic  # noqa: PLC0415 (lazy: pydantic-settings only when used)
    from digest.settings import ARXIV_CATEGORY  # noqa: PLC0415 (lazy: pydantic-settings only when used)

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
    from digest.drafts import one_line  # noqa: PLC0415 (lazy: lxml and arxiv ... only when used)

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
    from digest.editor import approve as approve_drafts  # noqa: PLC0415 (lazy: lxml and arxiv ... only when used)

    report = approve_drafts(ctx.settings, targets, force=force)
    for line in report.approved:
        _say(line)
    for line in report.refused:
        _say(line, err=True)
    _say(f"{counted(len(report.approved), 'draft')} approved, {len(report.refused)} refused")
    if report.refused:
        sys.exit(1)
