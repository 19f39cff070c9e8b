"""What `digest status` reports, as data: built from the store, the settings and a `now` passed in (no clock read
here). `status_lines` words it once, for the CLI, the status page and the editor's report alike."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from digest.bounces.rates import IssueRates, over_limits
from digest.model import DeliveryStatus, SubscriberStatus
from digest.wording import counted

if TYPE_CHECKING:
    from digest.settings import Settings
    from digest.store import Store

UNKNOWN_SHOWN = 10  # addresses in doubt listed by name; the rest are counted
HISTORY_ISSUES = 52  # issues the status page charts (a year of a weekly digest)
#: meta keys of the editor's report after a mailing (digest/report.py): the issue's ('ended' or 'reported', then a
#: time) and one per editor address ('claimed', 'sent', 'deferred', 'failed' or 'unknown', a time, a detail)
REPORT_KEY = "editor_report:{issue}"
REPORT_ADDRESS_KEY = "editor_report:{issue}:{address}"


@dataclass(frozen=True)
class Deliveries:
    """The ledger of the newest issue: a count per delivery status, and the addresses whose outcome is unknown."""

    issue: int
    counts: dict[DeliveryStatus, int]
    unknown: tuple[str, ...]  # the first UNKNOWN_SHOWN of them
    more_unknown: bool


@dataclass(frozen=True)
class MailedRates:
    """One mailed issue's bounce and complaint rates, and each limit they are over."""

    rates: IssueRates
    over: tuple[str, ...]


@dataclass(frozen=True)
class LateIssue:
    """The newest scheduled issue is older than `max_send_age` and `missing` active subscribers have not had it."""

    issue: int
    missing: int
    max_send_age: int


@dataclass(frozen=True)
class StatusReport:
    """What `digest status` shows."""

    unpublished: int
    issues: int
    last_issue: int | None
    last_published: datetime | None
    output_dir: Path
    state: str
    deliveries: Deliveries | None = None
    rates: tuple[MailedRates, ...] = ()
    late: LateIssue | None = None
    editor_reports: tuple[tuple[str, str], ...] = ()  # (address, state) of the report on the newest issue


def status_report(store: Store, settings: Settings, state: str, now: datetime) -> StatusReport:
    """The report of `store` at `now` (read only); `state` says where the state lives."""
    summaries = store.issue_summaries([n] if (n := store.latest_issue_number()) is not None else [])
    last = summaries[0] if summaries else None
    return StatusReport(
        unpublished=store.unpublished_count(),
        issues=store.issue_count(),
        last_issue=last.number if last else None,
        last_published=last.published if last else None,
        output_dir=settings.output_dir,
        state=state,
        deliveries=delivery_status(store, last.number) if last else None,
        rates=rates_status(store, settings.rate_issues, settings.max_hard_bounce_rate, settings.max_complaint_rate),
        late=late_issue(store, now, settings.max_send_age),
        editor_reports=tuple(editor_report_states(store, last.number).items()) if last else (),
    )


def editor_report_states(store: Store, issue: int) -> dict[str, str]:
    """address -> what became of the editor's report on `issue` ("sent 2026-12-07T08:01:02+00:00" ...)."""
    prefix = REPORT_ADDRESS_KEY.format(issue=issue, address="")
    return {key.removeprefix(prefix): value for key, value in store.meta_with_prefix(prefix).items()}


def delivery_status(store: Store, issue: int) -> Deliveries | None:
    """Counts of the issue's deliveries and the addresses in doubt; None before it was mailed to anyone."""
    counts = store.delivery_counts(issue)
    if not any(counts.values()):
        return None
    unknown = store.deliveries(issue, DeliveryStatus.UNKNOWN)
    shown = tuple(d.subscriber.email for d in unknown[:UNKNOWN_SHOWN])
    return Deliveries(issue, counts, shown, len(unknown) > UNKNOWN_SHOWN)


def issue_rates(store: Store, issue: int) -> IssueRates:
    """The bounce and complaint counts of one issue, from the ledger."""
    mailed, hard, soft, complained = store.bounce_counts(issue)
    return IssueRates(issue, mailed, hard, soft, complained)


def rates_status(store: Store, issues: int, max_hard: float, max_complaints: float) -> tuple[MailedRates, ...]:
    """The rates of the last `issues` mailed issues, each with the limits it is over."""
    found = []
    for number in store.mailed_issues(issues):
        rates = issue_rates(store, number)
        found.append(MailedRates(rates, tuple(over_limits(rates, max_hard, max_complaints))))
    return tuple(found)


def late_issue(store: Store, now: datetime, max_send_age: int) -> LateIssue | None:
    """The newest scheduled issue when it is too old for the scheduler to mail and some active subscribers have not
    had it."""
    newest = store.latest_slot_issue()
    if newest is None:
        return None
    head = store.issue_summaries([newest])[0]
    if now - head.published <= timedelta(seconds=max_send_age):
        return None
    done = {DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN, DeliveryStatus.PENDING}
    statuses = store.delivery_statuses(newest)
    missing = sum(statuses.get(s.id) not in done for s in store.active_subscribers())
    return LateIssue(newest, missing, max_send_age) if missing else None


@dataclass(frozen=True)
class IssuePoint:
    """One issue on the status page's charts: subscribers on the day it was published, and what its mail did."""

    issue: int
    published: datetime
    subscribers: int
    rates: IssueRates


@dataclass(frozen=True)
class TopicCount:
    """How many published papers one topic has."""

    slug: str
    name: str
    papers: int


@dataclass(frozen=True)
class StatusHistory:
    """What the status page charts: the newest issues (oldest first) and the papers per topic."""

    issues: tuple[IssuePoint, ...]
    topics: tuple[TopicCount, ...]


def status_history(store: Store, settings: Settings, limit: int = HISTORY_ISSUES) -> StatusHistory:
    """The newest `limit` issues with the subscribers active when each was published (joined, confirmed when
    the signup needed it, not yet gone) and their bounce rates; and the published papers of each topic."""
    heads = sorted(store.issue_summaries(store.issue_numbers()[-limit:]), key=lambda h: h.number)
    spans = []
    for record in store.subscriber_records():
        if record.subscriber.status is SubscriberStatus.PENDING:
            continue  # never confirmed: never a reader
        spans.append((record.confirmed or record.created, record.unsubscribed))
    points = tuple(
        IssuePoint(
            head.number,
            head.published,
            sum(joined <= head.published and (left is None or left > head.published) for joined, left in spans),
            issue_rates(store, head.number),
        )
        for head in heads
    )
    topics = tuple(TopicCount(t.slug, t.name_en, store.topic_paper_count(t.slug)) for t in settings.topics)
    return StatusHistory(points, topics)


def status_lines(report: StatusReport) -> dict[str, str]:
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
    for address, state in report.editor_reports:
        what, _, rest = state.partition(" ")
        when, _, detail = rest.partition(" ")
        if what == "unknown":
            detail = "outcome unknown (digest stopped while sending it): not sent again; ask the editor"
        elif what == "claimed":
            detail = "being sent now, or digest stopped while sending it: the next send or run says which"
        lines[f"report of issue {report.last_issue} to {address}"] = f"{what} {when}" + (
            f": {detail}" if detail else ""
        )
    return lines
