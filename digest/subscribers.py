"""Subscriber lists as people keep them: address validation and CSV in and out. Pure: text in, rows out.

Addresses are checked for syntax only (`email-validator`, no DNS). Internationalized local parts are refused: they
need SMTPUTF8 end to end, which the mailer does not use; internationalized domains are fine (sent as xn--). Every
address that enters (the signup form, `subscribers add`, a CSV import, `send --to`) must also be an RFC 5321 mailbox:
email-validator's default mode lets a 232-octet local part through, and an RFC 2047 encoded word as the local part
(`=?utf-8?q?a=0D=0ABcc...?=@x`) is valid syntax that Python 3.11.7's `email` package decodes into a header line.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from email_validator import EmailNotValidError, validate_email

from digest.errors import printable
from digest.message import clean_header, smtp_address
from digest.model import Problem, SubscriberStatus
from digest.store import SubscriberRecord

EXPORT_COLUMNS = ("email", "name", "status", "subscribed", "unsubscribed", "source", "signup_ip", "confirmed")
# A spreadsheet runs a cell starting with one of these as a formula (OWASP, "CSV Injection"); `=cmd|calc!A0@x.org`
# is a valid address.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: RFC 5321, 4.5.3.1.1 and the path limit less the angle brackets (RFC 3696 erratum 1690).
MAX_LOCAL_OCTETS = 64
MAX_ADDRESS_OCTETS = 254
_ENCODED_WORD = re.compile(r"=\?.*\?=", re.DOTALL)
_ADDRESS_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class InvalidAddress(ValueError):
    """An address that is not valid syntax; the message says why."""


@dataclass(frozen=True)
class Consent:
    """What another platform's export says about a reader's consent: when and from where they opted in, when they
    confirmed (None: it does not say)."""

    created: datetime | None = None
    signup_ip: str | None = None
    confirmed: datetime | None = None


@dataclass(frozen=True)
class SubscriberRow:
    """One subscriber read from a file: normalized address, cleaned name, where it was, and (from a platform's
    export) its consent record."""

    email: str
    name: str
    line: int
    status: SubscriberStatus = SubscriberStatus.ACTIVE
    consent: Consent | None = None


def normalize_address(address: str) -> str:
    """The address in canonical form (domain lower-cased, IDN normalized); InvalidAddress when it is not one."""
    text = address.strip()
    if not text:
        raise InvalidAddress("empty address")
    if _ADDRESS_CONTROL.search(text):
        raise InvalidAddress(f"invalid address {text!r}: it contains a control character (CR, LF ...)")
    if _ENCODED_WORD.search(text):
        raise InvalidAddress(f"invalid address {text!r}: it contains an RFC 2047 encoded word (=?...?=)")
    try:
        normalized = str(validate_email(text, check_deliverability=False, allow_smtputf8=False).normalized)
    except EmailNotValidError as exc:
        raise InvalidAddress(f"invalid address {text!r}: {exc}") from None
    local = normalized.rpartition("@")[0]
    if len(local.encode("utf-8")) > MAX_LOCAL_OCTETS:
        raise InvalidAddress(
            f"invalid address {text!r}: the part before @ is {len(local.encode())} octets, at most {MAX_LOCAL_OCTETS}"
        )
    wire = smtp_address(normalized)  # what SMTP carries: the domain as xn--
    if len(wire) > MAX_ADDRESS_OCTETS:
        raise InvalidAddress(f"invalid address {text!r}: {len(wire)} octets long, at most {MAX_ADDRESS_OCTETS}")
    return normalized


def clean_name(name: str) -> str:
    """A display name without control characters or runs of whitespace."""
    return clean_header(name)


def parse_subscriber_csv(text: str, source: str) -> tuple[list[SubscriberRow], list[Problem]]:
    """Rows of `email[,name]` (a header row naming the columns is optional; a `status` column with
    `unsubscribed` keeps an opt-out when moving a list). Bad rows become problems, each with its first line, so that
    no row is lost silently; good rows are still returned."""
    rows: list[SubscriberRow] = []
    problems: list[Problem] = []
    columns = {"email": 0, "name": 1}
    first = True
    for line, record in _csv_records(text):
        if isinstance(record, str):
            problems.append(Problem(source, line, record))
            continue
        cells = [cell.strip() for cell in record]
        if not any(cells):
            continue
        if first:
            first = False
            header = [cell.lower() for cell in cells]
            if "email" in header:
                columns = {name: header.index(name) for name in ("email", "name", "status") if name in header}
                continue
        try:
            email = normalize_address(unquote_formula(_cell(cells, columns.get("email"))))
        except InvalidAddress as exc:
            problems.append(Problem(source, line, str(exc)))
            continue
        name = clean_name(unquote_formula(_cell(cells, columns.get("name"))))
        rows.append(SubscriberRow(email, name, line, _status(_cell(cells, columns.get("status")))))
    return rows, problems


def _csv_records(text: str) -> Iterator[tuple[int, list[str] | str]]:
    """(first line, cells) of each CSV record, or (first line, why it was skipped); reading goes on after a bad one.

    A record spanning several lines is refused: no subscriber cell holds a line break, so it is a quote left open
    that took the following rows with it.
    """
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    end = 0  # the last line read so far
    while True:
        line = end + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            end = reader.line_num
            yield line, f"unreadable CSV row: {exc}"
            continue
        end = reader.line_num
        if end > line:
            yield line, f"a quoted cell runs on to line {end} (a missing closing quote?): lines {line}-{end} skipped"
        else:
            yield line, record


def _status(cell: str) -> SubscriberStatus:
    """A status column keeps opt-outs and suppressions when moving a list; anything else imports as active."""
    try:
        status = SubscriberStatus(cell.strip().lower())
    except ValueError:
        return SubscriberStatus.ACTIVE
    return SubscriberStatus.ACTIVE if status is SubscriberStatus.PENDING else status


def _cell(cells: list[str], index: int | None) -> str:
    return cells[index] if index is not None and index < len(cells) else ""


def quote_formula(cell: str) -> str:
    """The cell with a single quote in front when a spreadsheet would run it as a formula (OWASP's rule).

    Cells that already start with quotes before such a character get one more, so `unquote_formula` can undo
    exactly what was added: `'=x@example.org` is a valid address too.
    """
    return "'" + cell if cell.lstrip("'").startswith(FORMULA_STARTS) else cell


def unquote_formula(cell: str) -> str:
    """Undo `quote_formula`, so an exported list imports as it was."""
    return cell[1:] if cell.startswith("'") and cell.lstrip("'").startswith(FORMULA_STARTS) else cell


def export_csv(records: Iterable[SubscriberRecord]) -> str:
    """Every subscriber as CSV with a header row, formulas neutralised (`quote_formula`) and control characters
    shown as escapes (a cell must not reach a terminal raw); `parse_subscriber_csv` reads it back (opt-outs
    included)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for record in records:
        sub = record.subscriber
        writer.writerow(
            quote_formula(printable(cell))
            for cell in [
                sub.email,
                sub.name,
                sub.status.value,
                record.created.isoformat(timespec="seconds"),
                record.unsubscribed.isoformat(timespec="seconds") if record.unsubscribed else "",
                record.source.value,
                record.signup_ip or "",
                record.confirmed.isoformat(timespec="seconds") if record.confirmed else "",
            ]
        )
    return out.getvalue()
