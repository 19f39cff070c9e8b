"""Every change of a subscriber's status, in one place: signup and its confirmation, the preference page, personal
data (download and delete), unsubscribe (one-click, the journal of opt-outs, the CLI), suppression after a bounce or
a complaint, and adding from the CLI or an import (which may restore a suppressed address).

Decisions and store calls only: a store and `now` come in; no HTTP, no SMTP, no clock. The callers (web/, bounces/,
sending.py, the CLI) answer the request, mail the notice or print the line. The status sets are digest.model's.

Every change of status also writes a line of the subscriber's trail (`status_changes`), in the same transaction,
naming its `source`: what made the change (SIGNUP, CONFIRM, PREFERENCES, UNSUBSCRIBE_LINK, LIST_UNSUBSCRIBE, CLI,
`bounce_report(name)`, `webhook(provider, event_id)`, `import_source(format)`). `digest subscribers history` reads it.

Over 600 lines on purpose: issue 18 gave every status change one home, so that no other module writes a status;
splitting it by caller would bring back the scattering it ended.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from digest.model import (
    MAY_REJOIN,
    NOT_ENDED,
    SUBSCRIBED,
    SUPPRESSED,
    Subscriber,
    SubscriberSource,
    SubscriberStatus,
)
from digest.optouts import OptOut, OptOutJournal
from digest.settings import Settings
from digest.store import OwedMail, StatusChange, Store, SubscriberRecord, email_hash
from digest.subscribers import SubscriberRow
from digest.tokens import TokenSubject

log = logging.getLogger(__name__)

IPV6_PREFIX = 64  # one subscriber line or host gets a whole /64: its addresses count as one client

# --- the trail: what made a change ------------------------------------------------------------------------------

SIGNUP = "signup"  # the signup form
CONFIRM = "confirm"  # the confirmation link
PREFERENCES = "preference page"
UNSUBSCRIBE_LINK = "unsubscribe link"  # the link in a mail's footer, or its page's button
LIST_UNSUBSCRIBE = "List-Unsubscribe"  # RFC 8058's one-click POST from a mail client
JOURNALED_OPTOUT = "unsubscribe (journaled while the state was busy)"
CLI = "cli"


def bounce_report(name: str) -> str:
    """The source of a change made by an imported bounce or complaint report (`name`: its file, or `-`)."""
    return f"bounce report {name}"


def webhook(provider: str, event_id: str) -> str:
    """The source of a change made by a provider's webhook event."""
    return f"webhook {provider} {event_id}"


def import_source(fmt: str) -> str:
    """The source of a change made by `subscribers import` of a file in `fmt` (csv, substack, mailchimp ...)."""
    return f"import:{fmt}"


def _trail(
    store: Store, before: Subscriber | None, after: Subscriber | None, source: str, now: datetime, reason: str = ""
) -> None:
    """Write the trail line of a change seen as the subscriber before and after it (nothing when nothing changed).
    A `before` of another row (the address was added anew) counts as no row."""
    if after is None:
        return
    old = before.status if before is not None and before.id == after.id else None
    if old is not after.status:
        store.record_status_change(after.id, old, after.status, source, now, reason)


def _move(
    store: Store,
    subscriber_id: int,
    status: SubscriberStatus,
    now: datetime,
    *,
    source: str,
    detail: str = "",
    only_from: Collection[SubscriberStatus] | None = None,
) -> bool:
    """Inside a transaction: move a subscriber to `status` (optionally only from some statuses) and write the trail
    line; True if it changed. The subscriber's key is held so that the status read is the one changed."""
    store.serialize(f"subscriber:{subscriber_id}")
    before = store.subscriber_by_id(subscriber_id)
    if before is None:
        return False
    if not store.set_subscriber_status(subscriber_id, status, now, detail=detail, only_from=only_from):
        return False
    store.record_status_change(subscriber_id, before.status, status, source, now, detail)
    return True


# --- signup and confirmation (the form) -------------------------------------------------------------------------


def mailbox_of(email: str) -> str:
    """The mailbox an address delivers to, as the per-address limit counts it: `Victim+1@Example.org` and
    `victim+2@example.org` are both `victim@example.org` (the local part case-folded, a `+tag` removed)."""
    local, _, domain = email.strip().rpartition("@")
    return f"{local.casefold().partition('+')[0]}@{domain.lower()}"


def network_of(ip: str) -> str:
    """The client as the per-IP limit counts it: an IPv4 address, or the /64 of an IPv6 one (an IPv4-mapped IPv6
    address counts as its IPv4). Anything that is no address is its own bucket."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


class SignupMail(Enum):
    """Which mail a signup sends: a confirmation request, or a note that the address is subscribed already."""

    CONFIRM = "confirm"
    ALREADY = "already"


@dataclass(frozen=True)
class SignupResult:
    """What a signup request did: refused for its IP, or which mail (if any) goes to the subscriber."""

    ip_limited: bool = False
    mail: SignupMail | None = None
    subscriber: Subscriber | None = None
    owed: OwedMail | None = None  # the mail as recorded owed (sent after the answer, by this or a later process)


@dataclass(frozen=True)
class SignupRequest:
    """One signup form as posted: the address, the name, the client's IP, when, and the topics ticked."""

    email: str
    name: str
    ip: str
    now: datetime
    topics: tuple[str, ...] = ()

    @property
    def ip_bucket(self) -> str:
        """The rate-limit bucket of the client."""
        return f"ip:{network_of(self.ip)}"

    @property
    def address_bucket(self) -> str:
        """The rate-limit bucket of the mailbox."""
        return f"address:{email_hash(mailbox_of(self.email))}"


def record_signup(
    store: Store,
    settings: Settings,
    email: str,
    name: str,
    ip: str,
    now: datetime,
    topics: Sequence[str] = (),
) -> SignupResult:
    """In one transaction: count the request against its IP, make the address pending (unless it is active or
    paused already) with the topics ticked on the form, and decide the mail, counted against the address and
    recorded as owed. An active subscriber's topics are changed only on its preference page (the form must not let
    anyone change them).

    Only an address that chose to leave may come back through the form. A bounced or complained one (or one whose
    owner deleted it, kept as a hash in the suppression list) is the publisher's to restore, with the CLI: a
    stranger typing it in must neither mail it nor reset its record."""
    return record_signups(store, settings, [SignupRequest(email, name, ip, now, tuple(topics))])[0]


def record_signups(store: Store, settings: Settings, requests: Sequence[SignupRequest]) -> list[SignupResult]:
    """Several signups in ONE transaction, each decided as `record_signup` decides it alone, in order: one commit
    for all (on SQLite the commit's flush to disk is most of a signup's cost)."""
    if not requests:
        return []
    longest = timedelta(seconds=max(settings.signup_ip_window, settings.signup_address_window))
    with store.transaction():
        # The limits count rows, then add one: hold every client's and mailbox's key, in one order (sorted), so
        # that concurrent requests on other hosts count after these and two batches never wait for each other.
        for key in sorted({k for r in requests for k in (r.ip_bucket, r.address_bucket)}):
            store.serialize(f"signup-{key}")
        store.prune_events(min(r.now for r in requests) - longest)
        return [_decide_signup(store, settings, r) for r in requests]


def _decide_signup(store: Store, settings: Settings, request: SignupRequest) -> SignupResult:
    """One signup inside the caller's transaction (see record_signup)."""
    email, name, ip, now, topics = request.email, request.name, request.ip, request.now, request.topics
    ip_bucket, address_bucket = request.ip_bucket, request.address_bucket
    if store.count_events(ip_bucket, now - timedelta(seconds=settings.signup_ip_window)) >= settings.signup_ip_limit:
        return SignupResult(ip_limited=True)
    store.record_event(ip_bucket, now)
    existing = store.subscriber(email)
    if (existing is not None and existing.status in SUPPRESSED) or store.suppression(email) is not None:
        log.info("signup of a suppressed address: no mail, nothing changed")
        return SignupResult()
    mail = SignupMail.CONFIRM
    if existing is None or existing.status in MAY_REJOIN:
        # A new address, or one that left: pending again with a fresh nonce, so earlier links stay dead.
        store.add_subscriber(
            email,
            name,
            now,
            resubscribe=True,
            status=SubscriberStatus.PENDING,
            source=SubscriberSource.FORM,
            signup_ip=ip if settings.keep_signup_ip else None,
        )
        joined = store.subscriber(email)
        _trail(store, existing, joined, SIGNUP, now)
        if joined is not None:
            store.set_subscriber_topics(joined.id, topics)
    elif existing.status is not SubscriberStatus.PENDING:
        mail = SignupMail.ALREADY
    subscriber = store.subscriber(email)
    window = now - timedelta(seconds=settings.signup_address_window)
    if store.count_events(address_bucket, window) >= settings.signup_address_limit:
        log.info("signup of an address over its mail limit: no mail sent")
        return SignupResult(subscriber=subscriber)
    store.record_event(address_bucket, now)
    owed = store.owe_signup_mail(subscriber.id, mail.value, now) if subscriber is not None else None
    return SignupResult(mail=mail, subscriber=subscriber, owed=owed)


# --- the signup mails owed (sent after the answer; see digest/web/outbox.py) -------------------------------------

# Which subscribers a signup mail is still for: a confirmation only while pending, the "already subscribed" note
# only while the subscription is on. Anything else (confirmed meanwhile, unsubscribed, suppressed, deleted): dropped.
_MAIL_STILL_FOR: dict[str, frozenset[SubscriberStatus]] = {
    SignupMail.CONFIRM.value: frozenset({SubscriberStatus.PENDING}),
    SignupMail.ALREADY.value: SUBSCRIBED,
}


def claim_signup_mails(
    store: Store, mails: Sequence[OwedMail], owner: str, now: datetime
) -> list[tuple[OwedMail, Subscriber]]:
    """In one transaction, claim for `owner` each mail still waiting (of two processes, one wins each) and still
    wanted by its subscriber; a mail no longer wanted is forgotten. The claimed mails with their subscribers."""
    claimed: list[tuple[OwedMail, Subscriber]] = []
    with store.transaction():
        for mail in mails:
            subscriber = store.subscriber_by_id(mail.subscriber_id)
            if subscriber is None or subscriber.status not in _MAIL_STILL_FOR.get(mail.kind, frozenset()):
                store.forget_signup_mail(mail.waiting)
                continue
            taken = store.claim_signup_mail(mail, owner, now)
            if taken is not None:
                claimed.append((taken, subscriber))
    return claimed


def finish_signup_mails(store: Store, done: Sequence[OwedMail], retry: Sequence[OwedMail]) -> None:
    """In one transaction: forget the mails `done` (sent, or refused for good) and give back those to `retry`."""
    if not done and not retry:
        return
    with store.transaction():
        for mail in done:
            store.forget_signup_mail(mail)
        for mail in retry:
            store.release_signup_mail(mail)


def abandoned_claims(
    mails: Sequence[OwedMail], now: datetime, lease: timedelta, gone: Callable[[str], bool]
) -> list[OwedMail]:
    """The claimed mails whose process is `gone` (killed before it sent them or said so), or whose claim is older
    than `lease` (a process on another host): they are owed again."""
    return [m for m in mails if m.claimed_at is not None and (gone(m.owner) or m.claimed_at < now - lease)]


def release_signup_mails(store: Store, mails: Sequence[OwedMail]) -> int:
    """Give claimed mails back (their claims were abandoned), in one transaction; how many were still so claimed."""
    with store.transaction():
        return sum(store.release_signup_mail(m) for m in mails)


@dataclass(frozen=True)
class Confirmation:
    """What a confirm link found: its subscriber, and whether it can (or did) confirm."""

    status: int  # HTTP status of the answer
    subscriber: Subscriber | None = None


def check_confirmation(store: Store, subject: TokenSubject, write: bool, now: datetime) -> Confirmation:
    """Whether the token's subscription is pending (and, with `write`, confirm it and lift a suppression left by
    an earlier delete-me: its owner has just asked again)."""
    record = store.subscriber_record(subject.subscriber_id)
    if record is None or not subject.matches(record.subscriber):
        return Confirmation(410)
    if record.subscriber.status is not SubscriberStatus.PENDING:
        return Confirmation(409)
    if not write:
        return Confirmation(200, record.subscriber)
    with store.transaction():
        store.serialize(f"subscriber:{subject.subscriber_id}")
        if not store.confirm_subscriber(subject.subscriber_id, now):
            return Confirmation(409)
        store.record_status_change(
            subject.subscriber_id, SubscriberStatus.PENDING, SubscriberStatus.ACTIVE, CONFIRM, now
        )
        store.unsuppress(record.subscriber.email)
    log.info("confirmed subscriber %d", subject.subscriber_id)
    return Confirmation(200, record.subscriber)


# --- the preference page and personal data ----------------------------------------------------------------------


def subscription(store: Store, subject: TokenSubject) -> tuple[SubscriberRecord, tuple[str, ...]] | None:
    """The token's subscription and its chosen topics; None when it no longer exists (deleted, or signed up
    again since the token was made)."""
    record = store.subscriber_record(subject.subscriber_id)
    if record is None or not subject.matches(record.subscriber):
        return None
    return record, store.subscriber_topics(subject.subscriber_id).get(subject.subscriber_id, ())


def personal_data(
    record: SubscriberRecord,
    deliveries: list[tuple[Any, ...]],
    topics: Sequence[str] = (),
    history: Sequence[StatusChange] = (),
) -> dict[str, Any]:
    """Everything the state holds about one subscriber, as `download my data` returns it (its trail of status
    changes included)."""

    def when(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    sub = record.subscriber
    return {
        "subscriber": {"email": sub.email, "name": sub.name, "status": sub.status.value, "topics": list(topics)},
        "consent": {
            "source": record.consent_source,
            "created": when(record.created),
            "signup_ip": record.signup_ip,
            "confirmed": when(record.confirmed),
            "status_changed": when(record.status_changed),
            "status_detail": record.status_detail,
        },
        "deliveries": [
            {"issue": issue, "status": status.value, "attempts": attempts, "detail": detail, "updated": when(at)}
            for issue, status, attempts, detail, at in deliveries
        ],
        "history": [history_item(change) for change in history],
    }


def history_item(change: StatusChange) -> dict[str, Any]:
    """One trail line as data (the personal-data download, `subscribers history --json`)."""
    return {
        "from": change.old.value if change.old else None,
        "to": change.new.value,
        "source": change.source,
        "at": change.at.isoformat(),
        "reason": change.reason,
    }


def export_personal_data(store: Store, subject: TokenSubject) -> dict[str, Any] | None:
    """`personal_data` of the token's subscription; None when it no longer exists."""
    found = subscription(store, subject)
    if found is None:
        return None
    record, topics = found
    return personal_data(
        record,
        list(store.subscriber_deliveries(subject.subscriber_id)),
        topics,
        store.status_changes(subject.subscriber_id),
    )


@dataclass(frozen=True)
class Change:
    """The outcome of a preference form: the record afterwards (None once deleted), or an HTTP error status."""

    status: int
    record: SubscriberRecord | None = None
    topics: tuple[str, ...] = ()
    mail: Subscriber | None = None  # who gets the personal-data link ("data-link", within its limit)


def apply_change(
    store: Store,
    settings: Settings,
    subject: TokenSubject,
    action: str,
    name: str,
    now: datetime,
    topics: Sequence[str] = (),
) -> Change:
    """Apply one preference action to the token's subscription, in one transaction (`topics`: the slugs ticked
    for the "topics" action; "data-link" decides whether a personal-data link may be mailed: at most
    `settings.signup_address_limit` per `signup_address_window`)."""
    with store.transaction():
        record = store.subscriber_record(subject.subscriber_id)
        if record is None or not subject.matches(record.subscriber):
            return Change(410)
        sub_id = subject.subscriber_id
        if action == "name":
            store.set_subscriber_name(sub_id, name)
        elif action == "pause":
            _move(store, sub_id, SubscriberStatus.PAUSED, now, source=PREFERENCES, only_from=[SubscriberStatus.ACTIVE])
        elif action == "resume":
            _move(store, sub_id, SubscriberStatus.ACTIVE, now, source=PREFERENCES, only_from=[SubscriberStatus.PAUSED])
        elif action == "stop":
            _move(store, sub_id, SubscriberStatus.UNSUBSCRIBED, now, source=PREFERENCES, only_from=NOT_ENDED)
        elif action == "topics":
            store.set_subscriber_topics(sub_id, topics)
        elif action == "data-link":
            bucket = f"data-link:{sub_id}"
            store.serialize(bucket)
            window = now - timedelta(seconds=settings.signup_address_window)
            if store.count_events(bucket, window) < settings.signup_address_limit:
                store.record_event(bucket, now)
                mail = record.subscriber
            else:
                log.info("personal-data link for subscriber %d over its limit: no mail sent", sub_id)
                mail = None
            return Change(200, record, store.subscriber_topics(sub_id).get(sub_id, ()), mail)
        return Change(200, store.subscriber_record(sub_id), store.subscriber_topics(sub_id).get(sub_id, ()))


def erase(store: Store, subject: TokenSubject, now: datetime) -> bool:
    """Delete the token's subscription, its deliveries and its trail of status changes, keeping only a hash of the
    address in the suppression list; False if the subscription no longer exists."""
    with store.transaction():
        record = store.subscriber_record(subject.subscriber_id)
        if record is None or not subject.matches(record.subscriber):
            return False
        store.erase_subscriber(subject.subscriber_id)
        store.suppress(record.subscriber.email, "deleted by its owner on the personal-data page", now)
    log.info("subscriber %d deleted itself", subject.subscriber_id)
    return True


# --- unsubscribe ------------------------------------------------------------------------------------------------


def unsubscribe(store: Store, subscriber_id: int, now: datetime, *, source: str = UNSUBSCRIBE_LINK) -> bool:
    """End a subscription that has not ended, in one transaction (StoreError when the state is busy); True if it
    changed."""
    with store.transaction():
        return _move(store, subscriber_id, SubscriberStatus.UNSUBSCRIBED, now, source=source, only_from=NOT_ENDED)


def unsubscribe_address(store: Store, email: str, now: datetime, *, source: str = CLI) -> Subscriber | None:
    """Unsubscribe an address (the row stays, so imports do not re-add it); the subscriber as it was before, None if
    the address is unknown."""
    with store.transaction():
        found = store.subscriber(email)
        if found is not None:
            _move(store, found.id, SubscriberStatus.UNSUBSCRIBED, now, source=source, only_from=NOT_ENDED)
        return found


def apply_optouts(store: Store, optouts: Sequence[OptOut]) -> None:
    """Unsubscribe every journaled opt-out still valid, in one transaction (applying one twice changes nothing).
    An opt-out of an earlier subscription (its nonce no longer matches) is dropped: that reader signed up again."""
    with store.transaction():
        for optout in optouts:
            if optout.subscriber_id is not None:
                record = store.subscriber_record(optout.subscriber_id)
                if record is not None and TokenSubject(optout.subscriber_id, optout.nonce).matches(record.subscriber):
                    _move(
                        store,
                        optout.subscriber_id,
                        SubscriberStatus.UNSUBSCRIBED,
                        optout.at,
                        source=JOURNALED_OPTOUT,
                        only_from=NOT_ENDED,
                    )
            elif optout.email and (found := store.subscriber(optout.email)) is not None:
                unsubscribed = SubscriberStatus.UNSUBSCRIBED
                _move(store, found.id, unsubscribed, optout.at, source=JOURNALED_OPTOUT, only_from=NOT_ENDED)


def drain_optouts(store: Store, journal: OptOutJournal) -> int:
    """Apply the opt-outs waiting in `journal` to `store` (the web app when the state is free again, a mailing
    before it picks its recipients); how many there were."""
    return journal.drain(lambda optouts: apply_optouts(store, optouts)) if journal.waiting() else 0


# --- bounces and complaints -------------------------------------------------------------------------------------


def suppress_for_complaint(store: Store, subscriber_id: int, detail: str, now: datetime, *, source: str) -> bool:
    """A reader marked an issue as spam: end the subscription (a bounced one too: the complaint says more).
    `source`: what reported it (`bounce_report(name)`, `webhook(provider, event_id)`), for the trail."""
    return _move(
        store,
        subscriber_id,
        SubscriberStatus.COMPLAINED,
        now,
        source=source,
        detail=detail,
        only_from=NOT_ENDED | {SubscriberStatus.BOUNCED},
    )


def suppress_for_hard_bounce(store: Store, subscriber_id: int, detail: str, now: datetime, *, source: str) -> bool:
    """The address does not exist: suppress the subscription unless it has ended already (`source` as above)."""
    return _move(store, subscriber_id, SubscriberStatus.BOUNCED, now, source=source, detail=detail, only_from=NOT_ENDED)


def suppress_after_streak(
    store: Store, subscriber_id: int, limit: int, detail: str, now: datetime, *, source: str
) -> str:
    """After a soft bounce: suppress the subscriber once `limit` of its latest deliveries in a row bounced soft."""
    store.serialize(f"subscriber:{subscriber_id}")  # the streak is read, then written
    streak = store.soft_bounce_streak(subscriber_id)
    if streak < limit:
        return f"{streak} of {limit} soft bounces in a row ({detail})"
    suppress_for_hard_bounce(
        store, subscriber_id, f"{streak} soft bounces in a row; last: {detail}", now, source=source
    )
    return f"{streak} soft bounces in a row: suppressed ({detail})"


# --- the publisher's undo ---------------------------------------------------------------------------------------


class Unsuppress(Enum):
    """What `unsuppress` did, or why it refused."""

    RESTORED = "restored"  # bounced or complained -> active
    RESUBSCRIBED = "resubscribed"  # an erased address added back (with `resubscribe`)
    UNKNOWN = "unknown"  # no such subscriber, and never erased
    ERASED = "erased"  # deleted at its owner's request: only `resubscribe` adds it back
    NOT_SUPPRESSED = "not suppressed"  # active, pending, paused or unsubscribed: nothing to undo


def unsuppress(
    store: Store, email: str, reason: str, now: datetime, *, resubscribe: bool = False, source: str = CLI
) -> tuple[Unsuppress, Subscriber | None]:
    """Return a bounced or complained address to active, in one transaction, the publisher's `reason` on its trail
    (the mail system was wrong, or the reader fixed the mailbox). An address erased at its owner's request is
    refused unless `resubscribe` (then it is added anew, active). An unsubscribed one is its reader's choice: not
    this command's to undo."""
    with store.transaction():
        found = store.subscriber(email)
        if found is None:
            if store.suppression(email) is None:
                return Unsuppress.UNKNOWN, None
            if not resubscribe:
                return Unsuppress.ERASED, None
            store.unsuppress(email)
            store.add_subscriber(email, "", now, status=SubscriberStatus.ACTIVE, source=SubscriberSource.CLI)
            added = store.subscriber(email)
            _trail(store, None, added, source, now, reason)
            return Unsuppress.RESUBSCRIBED, added
        if found.status not in SUPPRESSED:
            return Unsuppress.NOT_SUPPRESSED, found
        _move(store, found.id, SubscriberStatus.ACTIVE, now, source=source, detail=reason, only_from=SUPPRESSED)
        store.unsuppress(email)
        return Unsuppress.RESTORED, store.subscriber_by_id(found.id)


def history(store: Store, email: str) -> tuple[Subscriber | None, list[StatusChange], bool]:
    """An address's subscriber, its trail of status changes (oldest first), and whether it was erased at its
    owner's request (then there is neither: erasure takes the trail too)."""
    found = store.subscriber(email)
    if found is None:
        return None, [], store.suppression(email) is not None
    return found, store.status_changes(found.id), False


# --- the CLI and imports ----------------------------------------------------------------------------------------


def add_subscribers(
    store: Store,
    rows: Iterable[SubscriberRow],
    now: datetime,
    *,
    resubscribe: bool = False,
    source: SubscriberSource = SubscriberSource.CLI,
    trail: str = CLI,
    platform: str = "",
) -> list[tuple[SubscriberRow, str]]:
    """Add validated rows in one transaction; each row's outcome is "added", "exists", "resubscribed",
    "unsubscribed" (an opt-out is kept unless `resubscribe`) or "suppressed" (the address was erased at its
    owner's request or suppressed; only `resubscribe` restores it). No writer lock: a send in progress re-checks
    each subscriber just before mailing them. `trail`: the source written on the trail (CLI, `import_source(...)`);
    `platform`: the platform whose export the rows come from (the consent record's "import:<platform>"), whose
    consent columns (`row.consent`) replace the import's own time."""
    outcomes: list[tuple[SubscriberRow, str]] = []
    with store.transaction():
        for row in rows:
            before = store.subscriber(row.email)
            if store.suppression(row.email) is not None and before is None:
                if not resubscribe:
                    outcomes.append((row, "suppressed"))
                    continue
                store.unsuppress(row.email)
            consent = row.consent
            outcome = store.add_subscriber(
                row.email,
                row.name,
                now,
                resubscribe=resubscribe,
                status=row.status,
                source=source,
                signup_ip=consent.signup_ip if consent else None,
                created=consent.created if consent else None,
                confirmed=consent.confirmed if consent else None,
                source_detail=platform,
            )
            if outcome not in ("exists", "suppressed") and (before is None or outcome == "resubscribed"):
                _trail(store, before, store.subscriber(row.email), trail, now)
            outcomes.append((row, outcome))
    return outcomes
