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
from digest.model import DeliveryStatus, Subscriber
from digest.store import Store
from digest.subscriptions import (
    bounce_report,
    suppress_after_streak,
    suppress_for_complaint,
    suppress_for_hard_bounce,
    webhook,
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
    return apply_notice(store, ref, notice, now, soft_limit, source), False


def apply_notice(store: Store, ref: DeliveryRef, notice: Notice, now: datetime, soft_limit: int, source: str) -> str:
    """Apply one bounce or complaint to its delivery and subscriber, inside the caller's transaction: the one
    suppression path of `bounces import` and the provider webhooks; `source` goes on the subscriber's trail (the
    report, or the provider and its event id). Returns what it did, for one line of output."""
    sub = store.subscriber_by_id(ref.subscriber_id)
    if sub is None:
        return f"issue {ref.issue}: subscriber {ref.subscriber_id} no longer exists"
    where = f"{sub.email}, issue {ref.issue}"
    if notice.kind is NoticeKind.COMPLAINT:
        store.record_bounce(ref.issue, sub.id, DeliveryStatus.COMPLAINED, None, notice.detail, now)
        suppress_for_complaint(store, sub.id, notice.detail, now, source=source)
        return f"complaint: {where}: unsubscribed ({notice.detail})"
    kind = notice.bounce or BounceKind.SOFT
    store.record_bounce(ref.issue, sub.id, DeliveryStatus.BOUNCED, kind.value, notice.detail, now)
    if kind is BounceKind.HARD:
        suppress_for_hard_bounce(store, sub.id, notice.detail, now, source=source)
        return f"hard bounce: {where}: suppressed ({notice.detail})"
    streak = suppress_after_streak(store, sub.id, soft_limit, notice.detail, now, source=source)
    return f"soft bounce: {where}: {streak}"


@dataclass(frozen=True)
class ProviderEvent:
    """One authenticated event of a mail provider's webhook, as its notices: `key` is its identity (provider and
    the provider's event id: applying it twice changes nothing), `delivery_id` the signed id the message carried
    (X-Digest-Delivery, echoed back) or "" when the provider names only the address; `nonce` a value the
    provider's signature covers that must never be seen twice (Mailgun's token), or ""."""

    key: str
    notices: tuple[Notice, ...]
    delivery_id: str = ""
    nonce: str = ""


def apply_event(store: Store, event: ProviderEvent, *, secret: str, now: datetime, soft_limit: int) -> ImportResult:
    """Apply one provider event in one transaction with the record of its key (like one report of `bounces
    import`). A delivery id decides the delivery; without one, each notice's address names its subscriber and that
    subscriber's latest delivery. A replayed `nonce` changes nothing and comes back as a problem that is
    `repeated`. StoreError when the state is busy (the provider retries)."""
    with store.transaction():
        store.serialize(f"bounce-report:{event.key}")
        if event.nonce:
            store.serialize(f"bounce-report:{event.nonce}")
            if store.report_outcome(event.nonce) is not None:
                return ImportResult(event.key, "refused: its signature was used before (a replay)", True, True)
            store.record_report(event.nonce, f"signature of {event.key}"[:1000], now)
        before = store.report_outcome(event.key)
        if before is not None:
            return ImportResult(event.key, f"already applied ({before})", repeated=True)
        outcomes = []
        problem = False
        for notice in event.notices:
            if notice.kind not in (NoticeKind.BOUNCE, NoticeKind.COMPLAINT):
                outcomes.append(f"nothing to do ({notice.kind.value})")
                continue
            source = webhook(*event.key.split(":", 1))
            ref = _event_delivery(store, event.delivery_id, notice.recipient, secret)
            if isinstance(ref, Subscriber):
                outcomes.append(_apply_unmailed(store, ref, notice, now, source))
            elif isinstance(ref, str):
                outcomes.append(ref)
                problem = True
            else:
                outcomes.append(apply_notice(store, ref, notice, now, soft_limit, source))
        outcome = "; ".join(outcomes) or "nothing to do (no recipient)"
        store.record_report(event.key, outcome[:1000], now)
    return ImportResult(event.key, outcome, problem)


def _apply_unmailed(store: Store, sub: Subscriber, notice: Notice, now: datetime, source: str) -> str:
    """A provider's bounce or complaint for an address no issue went to: a signup notice (confirmation, welcome)
    went through the provider and came back. A complaint or a hard bounce ends the address as it would after an
    issue; a soft bounce of a notice counts toward nothing (the streak counts issues)."""
    if notice.kind is NoticeKind.COMPLAINT:
        suppress_for_complaint(store, sub.id, notice.detail, now, source=source)
        return f"complaint: {sub.email}, a notice: unsubscribed ({notice.detail})"
    if notice.bounce is BounceKind.HARD:
        suppress_for_hard_bounce(store, sub.id, notice.detail, now, source=source)
        return f"hard bounce: {sub.email}, a notice: suppressed ({notice.detail})"
    return f"soft bounce: {sub.email}, a notice: nothing to do (no issue was mailed)"


def _event_delivery(store: Store, delivery_id: str, recipient: str, secret: str) -> DeliveryRef | Subscriber | str:
    """The delivery an event is about; the subscriber, when it names an address no issue was mailed to; or why
    neither is known (nothing is changed then)."""
    if delivery_id:
        ref = read_verp_id(secret, delivery_id)
        return ref if ref is not None else "unmatched: the delivery id is not one of this list's"
    sub = store.subscriber(recipient) if recipient else None
    if sub is None:
        return "unmatched: the address is not on the list"
    issue = store.latest_delivery(sub.id)
    return sub if issue is None else DeliveryRef(issue, sub.id)


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
