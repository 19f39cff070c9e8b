"""What a bounce or complaint report says, read from its raw bytes. Pure: bytes in, a `Report` out.

Standard reports are read with the `email` package itself: an RFC 3464 DSN is a multipart/report whose
message/delivery-status part the package parses into header blocks (one per recipient: Action, Status,
Diagnostic-Code), and an RFC 5965 ARF complaint carries a message/feedback-report part, parsed the same way.
Anything else goes to `flufl.bounce` (GNU Mailman's detectors for the non-standard formats of Yahoo, Exchange,
qmail, Exim ...), which names the failed addresses; the reason is then looked for in the text.

The report is matched to a delivery by the VERP ids found in its headers and in the returned message's headers
(Delivered-To, To, X-Postfix-Sender, the original Return-Path ...); `read_verp_id` keeps only genuine ones.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import logging
from dataclasses import dataclass
from email.message import Message
from enum import StrEnum

from digest.bounces.classify import BounceKind, classify_code, enhanced_code
from digest.bounces.verp import find_verp_ids
from digest.message import clean_header

# flufl.bounce logs a traceback for every detector that trips over a malformed message: ours say it in one line.
logging.getLogger("flufl.bounce").disabled = True

#: How much of a diagnostic is kept on the ledger.
DETAIL_CHARS = 300


class NoticeKind(StrEnum):
    """What a report says happened to one message."""

    BOUNCE = "bounce"
    COMPLAINT = "complaint"


@dataclass(frozen=True)
class Notice:
    """One failed recipient of a DSN, or one complaint."""

    kind: NoticeKind
    bounce: BounceKind | None  # None for a complaint
    recipient: str
    detail: str  # status code and diagnostic, cleaned, for the ledger


@dataclass(frozen=True)
class Report:
    """A report as read: its identity (for idempotent imports), the VERP ids it carries, and its notices.
    No notices and no `problem`: a report that asks nothing of us (a delay warning, a success DSN)."""

    key: str
    verp_ids: tuple[str, ...]
    notices: tuple[Notice, ...]
    format: str  # "dsn", "arf", "flufl", or "" when unrecognised
    problem: str = ""  # why the message is not a report we can read


def read_report(data: bytes) -> Report:
    """Parse one message; never raises for malformed input (the problem is in `Report.problem`)."""
    key = report_key(data)
    try:
        msg = email.message_from_bytes(data, policy=email.policy.compat32)
        verp_ids = tuple(dict.fromkeys(_verp_ids(msg)))
        complaint = _part(msg, "message/feedback-report")
        if complaint is not None:
            return Report(key, verp_ids, (_complaint(complaint),), "arf")
        status = _part(msg, "message/delivery-status")
        if status is not None:
            return Report(key, verp_ids, tuple(_dsn_notices(status)), "dsn")
        notices = _flufl_notices(msg)
    except Exception as exc:  # a hostile or broken message must never stop an import
        return Report(key, (), (), "", f"unreadable message: {type(exc).__name__}: {exc}")
    if notices:
        return Report(key, verp_ids, notices, "flufl")
    return Report(key, verp_ids, (), "", "not a bounce or complaint report (no DSN, no ARF, no known format)")


def report_key(data: bytes) -> str:
    """The report's identity: a SHA-256 of its bytes (line ends, an mbox's `>From ` quoting and trailing blank
    lines aside, so the same report read from an mbox and from a Maildir is one). Never its Message-ID: anybody
    can send a junk mail with the Message-ID of a real report, imported first it would stand for it."""
    normal = data.replace(b"\r\n", b"\n").replace(b"\n>From ", b"\nFrom ").rstrip(b"\n")
    return "sha256:" + hashlib.sha256(normal).hexdigest()


def _part(msg: Message, content_type: str) -> Message | None:
    for part in msg.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def _blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    if isinstance(payload, str):  # some senders mislabel the part; read its text as one header block
        return [email.message_from_string(payload.lstrip(), policy=email.policy.compat32)]
    return []


def _value(block: Message, name: str) -> str:
    """A field's value as text: `rfc822; a@b` -> `a@b`, control characters removed."""
    raw = clean_header(str(block.get(name, "")))
    kind, sep, rest = raw.partition(";")
    return rest.strip() if sep and kind.strip().lower() in ("rfc822", "smtp", "x-postfix", "dns") else raw


def _dsn_notices(part: Message) -> list[Notice]:
    """One notice per recipient whose Action is `failed`; delayed/delivered/relayed ask nothing of us."""
    notices = []
    for block in _blocks(part)[1:] or _blocks(part):
        if _value(block, "Action").lower() != "failed":
            continue
        status = _value(block, "Status")
        diagnostic = _value(block, "Diagnostic-Code")
        code = enhanced_code(status) or enhanced_code(diagnostic)
        recipient = _value(block, "Original-Recipient") or _value(block, "Final-Recipient")
        detail = " ".join(x for x in (code or status, diagnostic) if x)
        notices.append(Notice(NoticeKind.BOUNCE, classify_code(code, diagnostic), recipient, detail[:DETAIL_CHARS]))
    return notices


def _complaint(part: Message) -> Notice:
    block = (_blocks(part) or [part])[0]
    feedback = _value(block, "Feedback-Type") or "abuse"
    agent = _value(block, "User-Agent")
    recipient = _value(block, "Original-Rcpt-To")
    detail = f"complaint ({feedback})" + (f" reported by {agent}" if agent else "")
    return Notice(NoticeKind.COMPLAINT, None, recipient, detail[:DETAIL_CHARS])


def _flufl_notices(msg: Message) -> tuple[Notice, ...]:
    """Permanent failures found by flufl.bounce in a non-standard bounce; temporary ones are only warnings."""
    from flufl.bounce import all_failures

    try:
        _temporary, permanent = all_failures(msg)
    except Exception:  # its heuristic detectors trip over some malformed messages: then it is no known format
        return ()
    if not permanent:
        return ()
    text = clean_header(" ".join(_texts(msg)))
    code = enhanced_code(text)
    kind = classify_code(code, text)
    return tuple(
        Notice(NoticeKind.BOUNCE, kind, address.decode("ascii", "replace"), (code or "non-standard bounce")[:40])
        for address in sorted(permanent)
    )


def _texts(msg: Message) -> list[str]:
    texts = []
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                texts.append(payload.decode("utf-8", "replace")[:20_000])
    return texts


def _verp_ids(msg: Message) -> list[str]:
    """Candidate VERP ids from every header of the report, of its DSN/ARF blocks and of the returned message,
    the report's own envelope fields first."""
    found: list[str] = []
    for part in msg.walk():
        for _, value in part.items():
            found.extend(find_verp_ids(str(value)))
        if part.get_content_type() == "text/rfc822-headers":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                headers = email.message_from_bytes(payload, policy=email.policy.compat32)
                for _, value in headers.items():
                    found.extend(find_verp_ids(str(value)))
    return found
