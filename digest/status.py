"""What `digest status` reports, as data: built from the store, the settings and a `now` passed in (no clock read
here, no wording: the CLI words it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from digest.bounces.rates import IssueRates, over_limits
from digest.model import DeliveryStatus

if TYPE_CHECKING:
    from digest.settings import Settings
    from digest.store import Store

UNKNOWN_SHOWN = 10  # addresses in doubt listed by name; the rest are counted


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
    )


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
