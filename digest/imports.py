"""Subscriber exports of other platforms (Substack, Mailchimp, Buttondown, Ghost) read into rows with their consent
record. Pure: text in, rows out; `subscribers import --format` applies them (digest.subscriptions).

Each format is one row of FORMATS: the columns that identify it (a file without them is refused as a whole, naming
them) and a function from one CSV record (a dict by header name) to what digest keeps: the address, a name, the
status (active, unsubscribed or bounced) and the consent record (when and from where the reader opted in, when they
confirmed). docs/subscribers-import.md lists the columns each format reads.
"""

from __future__ import annotations

import csv
import io
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from digest.model import Problem, SubscriberStatus
from digest.subscribers import Consent, InvalidAddress, SubscriberRow, clean_name, normalize_address

#: Substack writes this address for a reader who asked Substack to delete their data: never a mailbox.
SUBSTACK_DELETION = "@deletion-request.substack.com"


class WrongFormat(ValueError):
    """A file that is not an export of the platform named: the message names the file and the missing columns."""


@dataclass(frozen=True)
class Read:
    """One record as a platform exported it: the address (unchecked), a name, the status, the consent record;
    `skip` says why it is not imported at all (a deletion request, an unconfirmed signup)."""

    email: str
    name: str = ""
    status: SubscriberStatus = SubscriberStatus.ACTIVE
    consent: Consent = field(default_factory=Consent)
    skip: str = ""


@dataclass(frozen=True)
class Format:
    """A platform's export: the columns that must be there, and how one record reads."""

    required: tuple[str, ...]
    read: Callable[[Mapping[str, str]], Read]
    any_of: tuple[tuple[str, ...], ...] = ()  # groups of which one column must be there (renamed columns)


def _time(value: str) -> datetime | None:
    """A platform's timestamp (ISO 8601, `Z`, or Mailchimp's `YYYY-MM-DD HH:MM:SS`, which is UTC); None if empty or
    unreadable (the consent record then says nothing rather than something wrong)."""
    text = value.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _ip(value: str) -> str | None:
    """An IP address column; None unless it is one (it goes into the consent record as it is)."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def _yes(value: str) -> bool:
    return value.strip().lower() in ("true", "yes", "1")


def _substack(row: Mapping[str, str]) -> Read:
    email = row.get("email", "")
    if email.strip().lower().endswith(SUBSTACK_DELETION):
        return Read(email, skip="a Substack deletion request")
    status = SubscriberStatus.UNSUBSCRIBED if _yes(row.get("email_disabled", "")) else SubscriberStatus.ACTIVE
    return Read(email, status=status, consent=Consent(created=_time(row.get("created_at", ""))))


def _mailchimp(row: Mapping[str, str]) -> Read:
    name = row.get("Name", "") or f"{row.get('First Name', '')} {row.get('Last Name', '')}".strip()
    status = SubscriberStatus.ACTIVE
    if "CLEAN_TIME" in row:  # the "cleaned" file: hard bounces, or soft ones Mailchimp gave up on
        status = SubscriberStatus.BOUNCED
    elif "UNSUB_TIME" in row:  # the "unsubscribed" file
        status = SubscriberStatus.UNSUBSCRIBED
    consent = Consent(
        created=_time(row.get("OPTIN_TIME", "")),
        signup_ip=_ip(row.get("OPTIN_IP", "")) or _ip(row.get("CONFIRM_IP", "")),
        confirmed=_time(row.get("CONFIRM_TIME", "")),
    )
    return Read(row.get("Email Address", ""), name, status, consent)


#: Buttondown's subscriber types (its API's SubscriberType, the export's `subscriber_type` / `type` column).
_BUTTONDOWN_STATUS = {
    "unsubscribed": SubscriberStatus.UNSUBSCRIBED,
    "removed": SubscriberStatus.UNSUBSCRIBED,  # removed by the newsletter: kept so that no import adds it back
    "undeliverable": SubscriberStatus.BOUNCED,
}
_BUTTONDOWN_SKIP = {"unactivated": "never confirmed its signup", "spammy": "marked spammy by Buttondown"}


def _buttondown(row: Mapping[str, str]) -> Read:
    email = row.get("email", "") or row.get("email_address", "")
    kind = (row.get("subscriber_type", "") or row.get("type", "")).strip().lower()
    if kind in _BUTTONDOWN_SKIP:
        return Read(email, skip=f"a Buttondown subscriber that {_BUTTONDOWN_SKIP[kind]}")
    consent = Consent(created=_time(row.get("creation_date", "")), signup_ip=_ip(row.get("ip_address", "")))
    return Read(email, status=_BUTTONDOWN_STATUS.get(kind, SubscriberStatus.ACTIVE), consent=consent)


def _ghost(row: Mapping[str, str]) -> Read:
    status = SubscriberStatus.ACTIVE if _yes(row.get("subscribed_to_emails", "")) else SubscriberStatus.UNSUBSCRIBED
    return Read(row.get("email", ""), row.get("name", ""), status, Consent(created=_time(row.get("created_at", ""))))


FORMATS: Mapping[str, Format] = {
    "substack": Format(("email", "active_subscription", "created_at"), _substack),
    "mailchimp": Format(("Email Address", "OPTIN_TIME", "CONFIRM_TIME"), _mailchimp),
    "buttondown": Format(
        ("creation_date",), _buttondown, any_of=(("email", "email_address"), ("subscriber_type", "type"))
    ),
    "ghost": Format(("email", "subscribed_to_emails", "created_at"), _ghost),
}


def parse_export(text: str, source: str, fmt: str) -> tuple[list[SubscriberRow], list[Problem], list[Problem]]:
    """(rows, problems, skipped) of a platform's export: rows with their status and consent record, bad rows as
    problems (`source:line: reason`), and the rows deliberately left out with why. WrongFormat when the header
    lacks the format's columns."""
    spec = FORMATS[fmt]
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in spec.required if c not in header]
    missing += [" or ".join(group) for group in spec.any_of if not any(c in header for c in group)]
    if missing:
        raise WrongFormat(f"{source}: not a {fmt} export: missing column(s) {', '.join(missing)}")
    reader.fieldnames = header
    rows: list[SubscriberRow] = []
    problems: list[Problem] = []
    skipped: list[Problem] = []
    try:
        for record in reader:
            line = reader.line_num
            cells = {k: (v or "") for k, v in record.items() if isinstance(k, str)}
            if not any(v.strip() for v in cells.values()):
                continue
            read = spec.read(cells)
            if read.skip:
                skipped.append(Problem(source, line, f"skipped: {read.skip}"))
                continue
            try:
                email = normalize_address(read.email)
            except InvalidAddress as exc:
                problems.append(Problem(source, line, str(exc)))
                continue
            rows.append(SubscriberRow(email, clean_name(read.name), line, read.status, read.consent))
    except csv.Error as exc:
        problems.append(Problem(source, reader.line_num, f"unreadable CSV: {exc}; the rest of the file was not read"))
    return rows, problems, skipped
