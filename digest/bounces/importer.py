"""Applying bounce and complaint reports to the ledger and the subscribers.

Each message is applied in its own transaction, together with the record that it was imported: a kill at any
moment leaves every message either wholly applied and remembered or not touched at all, and importing it again
(the same mailbox read twice, a retried pipe delivery) changes nothing. A report is known by a hash of its bytes,
never by its Message-ID (a junk mail could carry a real report's). Messages that cannot be used (unreadable, not a
report, longer than `max_bytes`) are remembered as well, so the next run skips them after one look-up instead of
parsing them again.

A report is matched only by its signed VERP id. Matching by the address or Message-ID of the returned message
is not done: both can be known to a stranger, who could then suppress any reader with a forged bounce.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from digest.bounces.classify import BounceKind
from digest.bounces.reports import Notice, NoticeKind, Report, read_report, report_key
from digest.bounces.verp import DeliveryRef, read_verp_id
from digest.model import DeliveryStatus
from digest.store import Store
from digest.subscriptions import (
    bounce_report,
    suppress_after_streak,
    suppress_for_complaint,
    suppress_for_hard_bounce,
)

#: How much of one message is read (setting `bounce_max_bytes`): real reports are a few KB.
DEFAULT_MAX_BYTES = 1_000_000


@dataclass(frozen=True)
class ImportResult:
    """What importing one message did, for one line of output; `problem` when it could not be used."""

    name: str
    outcome: str
    problem: bool = False
    repeated: bool = False


def import_reports(
    store: Store,
    messages: Iterable[tuple[str, bytes]],
    *,
    secret: str,
    now: datetime,
    soft_limit: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Iterator[ImportResult]:
    """Read and apply each message, one transaction each; yields as it goes (so a kill loses no finished one).
    A message longer than `max_bytes` is recorded as seen and not parsed (its first bytes name it)."""
    for name, data in messages:
        key = report_key(data)
        before = store.report_outcome(key)  # the cheap way out for what an earlier run saw, junk included
        if before is not None:
            yield ImportResult(name, f"already imported ({before})", repeated=True)
            continue
        if len(data) > max_bytes:
            report = Report(key, (), (), "", f"larger than {max_bytes} bytes (bounce_max_bytes): not read")
        else:
            report = read_report(data)
        with store.transaction():
            store.serialize(f"bounce-report:{report.key}")  # one host applies a report, the other sees it applied
            before = store.report_outcome(report.key)
            if before is not None:
                yield ImportResult(name, f"already imported ({before})", repeated=True)
                continue
            if report.problem:
                outcome, problem = report.problem, True
            else:
                outcome, problem = _apply(store, report, secret, now, soft_limit, bounce_report(name))
            store.record_report(report.key, outcome, now)
        yield ImportResult(name, outcome, problem)


def _apply(store: Store, report: Report, secret: str, now: datetime, soft_limit: int, source: str) -> tuple[str, bool]:
    if not report.notices:
        return "nothing to do (a delay warning or a success notice)", False
    ref = _delivery(report, secret)
    notice = _worst(report.notices)
    if ref is None:
        who = f" for {notice.recipient}" if notice.recipient else ""
        return f"unmatched {report.format} report{who}: no valid VERP id (not sent by this list?)", True
    sub = store.subscriber_by_id(ref.subscriber_id)
    if sub is None:
        return f"issue {ref.issue}: subscriber {ref.subscriber_id} no longer exists", False
    where = f"{sub.email}, issue {ref.issue}"
    if notice.kind is NoticeKind.COMPLAINT:
        store.record_bounce(ref.issue, sub.id, DeliveryStatus.COMPLAINED, None, notice.detail, now)
        suppress_for_complaint(store, sub.id, notice.detail, now, source=source)
        return f"complaint: {where}: unsubscribed ({notice.detail})", False
    kind = notice.bounce or BounceKind.SOFT
    store.record_bounce(ref.issue, sub.id, DeliveryStatus.BOUNCED, kind.value, notice.detail, now)
    if kind is BounceKind.HARD:
        suppress_for_hard_bounce(store, sub.id, notice.detail, now, source=source)
        return f"hard bounce: {where}: suppressed ({notice.detail})", False
    streak = suppress_after_streak(store, sub.id, soft_limit, notice.detail, now, source=source)
    return f"soft bounce: {where}: {streak}", False


def _delivery(report: Report, secret: str) -> DeliveryRef | None:
    for verp_id in report.verp_ids:
        ref = read_verp_id(secret, verp_id)
        if ref is not None:
            return ref
    return None


def _worst(notices: tuple[Notice, ...]) -> Notice:
    """With VERP each report is about one delivery; of several notices the most serious counts."""

    def weight(n: Notice) -> int:
        return 2 if n.kind is NoticeKind.COMPLAINT else 1 if n.bounce is BounceKind.HARD else 0

    return max(notices, key=weight)
