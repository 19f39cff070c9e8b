"""What a bounce or complaint report says, read from its raw bytes. Pure: bytes in, a `Report` out.

Standard reports are read with the `email` package itself: an RFC 3464 DSN is a multipart/report whose
message/delivery-status part the package parses into header blocks (one per recipient: Action, Status,
Diagnostic-Code), and an RFC 5965 ARF complaint carries a message/feedback-report part, parsed the same way.
An ARF report is found wherever it sits (inside a multipart/mixed wrapper, or sent as text/plain), a DSN's
`Action:` is read leniently (`failure`, a trailing comment), and an Amazon SES notification mailed as JSON is read as
what it says (Bounce Permanent/Transient, Complaint, Delivery). Anything else, and a DSN that names no recipient,
goes to `flufl.bounce` (GNU Mailman's detectors for the non-standard formats of Yahoo, Exchange, qmail, Exim ...),
which names the failed addresses. Hard or soft, and why, is decided by `classify` from the code and the words.

The report is matched to a delivery by the VERP ids found in its headers and in the returned message's headers
(Delivered-To, To, X-Postfix-Sender, the original Return-Path ...); `read_verp_id` keeps only genuine ones.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from email.message import Message
from enum import StrEnum

from digest.bounces.classify import BounceKind, Verdict, classify, classify_ses, enhanced_code
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
    # Informational only (in `Report.others`): nothing to apply.
    DELAY = "delay"
    DELIVERED = "delivered"
    AUTO_REPLY = "auto-reply"


@dataclass(frozen=True)
class Notice:
    """One failed recipient of a DSN, or one complaint."""

    kind: NoticeKind
    bounce: BounceKind | None  # None for a complaint
    recipient: str
    detail: str  # status code and diagnostic, cleaned, for the ledger
    status: str = ""  # the enhanced status code (or bare reply code) when the report gives one
    reason: str = ""  # Sisimai's word: userunknown, mailboxfull, blocked ... ("feedback" type for a complaint)


@dataclass(frozen=True)
class Report:
    """A report as read: its identity (for idempotent imports), the VERP ids it carries, and its notices.
    No notices and no `problem`: a report that asks nothing of us (a delay warning, a success DSN)."""

    key: str
    verp_ids: tuple[str, ...]
    notices: tuple[Notice, ...]
    format: str  # "dsn", "arf", "ses", "flufl", "auto-reply", or "" when unrecognised
    problem: str = ""  # why the message is not a report we can read
    others: tuple[Notice, ...] = ()  # what asks nothing of us: delays, successes, an auto-reply


def read_report(data: bytes) -> Report:
    """Parse one message; never raises for malformed input (the problem is in `Report.problem`)."""
    key = report_key(data)
    try:
        msg = email.message_from_bytes(data, policy=email.policy.compat32)
        verp_ids = tuple(dict.fromkeys(_verp_ids(msg)))
        complaint = _part(msg, "message/feedback-report") or _text_arf(msg)
        if complaint is not None:
            return Report(key, verp_ids, (_complaint(complaint),), "arf")
        ses_doc = _ses_doc(msg)
        ses = ses_notices(ses_doc) if ses_doc is not None else None
        if ses is not None:
            notices, others = _split(ses)
            delivery = ses_delivery_id(ses_doc)  # X-Digest-Delivery in the notification's copy of the headers
            return Report(key, verp_ids + ((delivery,) if delivery else ()), notices, "ses", others=others)
        status = _part(msg, "message/delivery-status")
        dsn = _dsn_notices(status) if status is not None else []
        if dsn:
            notices, others = _split(dsn)
            return Report(key, verp_ids, notices, "dsn", others=others)
        notices, others = _flufl_notices(msg)
    except Exception as exc:  # a hostile or broken message must never stop an import
        return Report(key, (), (), "", f"unreadable message: {type(exc).__name__}: {exc}")
    if notices or others:
        return Report(key, verp_ids, notices, "flufl", others=others)
    if status is not None:
        return Report(key, verp_ids, (), "dsn", "a delivery status report that names no recipient")
    if _is_auto_reply(msg):
        return Report(
            key, verp_ids, (), "auto-reply", others=(Notice(NoticeKind.AUTO_REPLY, None, "", "", "", "vacation"),)
        )
    return Report(key, verp_ids, (), "", "not a bounce or complaint report (no DSN, no ARF, no known format)")


def classification(report: Report) -> list[dict[str, str]]:
    """What `bounces import --dry-run --json` prints for one message: one record per recipient, or one of kind
    "unknown" when the message names none. Kinds: hard, soft, complaint, delay, delivered, auto-reply, unknown."""
    rows = []
    for notice in (*report.notices, *report.others):
        kind = notice.bounce.value if notice.bounce is not None else notice.kind.value
        rows.append({"kind": kind, "recipient": notice.recipient, "status": notice.status, "reason": notice.reason})
    return rows or [{"kind": "unknown", "recipient": "", "status": "", "reason": ""}]


def _split(notices: list[Notice]) -> tuple[tuple[Notice, ...], tuple[Notice, ...]]:
    """Failures and complaints (to apply), and the rest (informational)."""
    act = tuple(n for n in notices if n.kind in (NoticeKind.BOUNCE, NoticeKind.COMPLAINT))
    return act, tuple(n for n in notices if n not in act)


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


_COMMENT = re.compile(r"\([^)]*\)")
_BASIC = re.compile(r"(?<![\d.])([45]\d\d)(?![\d.])")


def _action(block: Message) -> str:
    """`failed`, `delayed`, `delivered` (relayed and expanded too) or "": the first word, comments removed, read
    leniently (`failure`, `Failed (permanent)`); no Action at all is decided by the Status class."""
    words = _COMMENT.sub(" ", _value(block, "Action")).lower().split()
    word = words[0] if words else ""
    if word.startswith("fail"):
        return "failed"
    if word.startswith("delay"):
        return "delayed"
    if word in ("delivered", "relayed", "expanded"):
        return "delivered"
    status = _value(block, "Status")
    return {"5": "failed", "4": "delayed", "2": "delivered"}.get(status.strip()[:1], "") if not word else ""


def _dsn_notices(part: Message) -> list[Notice]:
    """One notice per recipient: failed ones to apply; delayed/delivered/relayed ask nothing of us."""
    notices = []
    for block in _blocks(part)[1:] or _blocks(part):
        recipient = (_value(block, "Original-Recipient") or _value(block, "Final-Recipient")).strip().strip("<>")
        action = _action(block)
        if not recipient or not action:
            continue
        status = _value(block, "Status")
        diagnostic = _value(block, "Diagnostic-Code")
        code = enhanced_code(status) or enhanced_code(diagnostic)
        if action == "failed":
            verdict = classify(code, f"{status} {diagnostic}", permanent=True)  # `5.0.0 (disk quota)`
            detail = " ".join(x for x in (code or status, diagnostic) if x)
            notices.append(_bounce(verdict, recipient, detail, code or _basic(diagnostic)))
        else:
            kind = NoticeKind.DELAY if action == "delayed" else NoticeKind.DELIVERED
            notices.append(Notice(kind, None, recipient, diagnostic[:DETAIL_CHARS], code or "", ""))
    return list(dict.fromkeys(notices))  # some MTAs repeat a block


def _bounce(verdict: Verdict, recipient: str, detail: str, status: str) -> Notice:
    return Notice(NoticeKind.BOUNCE, verdict.kind, recipient, detail[:DETAIL_CHARS], status, verdict.reason)


def _failure_code(text: str) -> str | None:
    """An enhanced code of a failure (4.x.x or 5.x.x) in free text: 2.x.x there is more often a version number."""
    code = enhanced_code(_FAILURE.sub(" ", text))
    return code if code and code[0] in "45" else None


_FAILURE = re.compile(r"(?<![\d.])2\.\d{1,3}\.\d{1,3}(?![\d.])")


def _basic(text: str) -> str:
    match = _BASIC.search(text)
    return match.group(1) if match else ""


def _text_arf(msg: Message) -> Message | None:
    """An ARF report sent without its message/feedback-report label: a text part holding a block of fields with
    Feedback-Type (some providers send it as text/plain). Returns the part whose payload is that block."""
    for part in msg.walk():
        if part.get_content_type() != "text/plain":
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        text = payload.decode("utf-8", "replace")[:20_000]
        start = re.search(r"(?im)^(?:feedback-type|version)[ \t]*:", text)
        if start and re.search(r"(?im)^feedback-type[ \t]*:", text[start.start() :]):
            block = email.message_from_string(text[start.start() :].lstrip(), policy=email.policy.compat32)
            if block.get("Feedback-Type") is not None:
                wrapper = Message()
                wrapper.set_payload([block])
                return wrapper
    return None


def _complaint(part: Message) -> Notice:
    block = (_blocks(part) or [part])[0]
    feedback = _value(block, "Feedback-Type") or "abuse"
    agent = _value(block, "User-Agent")
    recipient = _value(block, "Original-Rcpt-To")
    detail = f"complaint ({feedback})" + (f" reported by {agent}" if agent else "")
    return Notice(NoticeKind.COMPLAINT, None, recipient, detail[:DETAIL_CHARS], "", feedback.lower()[:40])


#: Where the human-readable part of a non-standard bounce stops and the returned message begins.
_RETURNED = re.compile(
    r"(?im)^.*(?:below this line is a copy|copy of the (?:original )?message|original message (?:follows|headers)"
    r"|unsent message below|returned message|headers of the (?:original|returned) message|message headers follow"
    r"|-- ?original message ?--|^received: )"
)


def _flufl_notices(msg: Message) -> tuple[tuple[Notice, ...], tuple[Notice, ...]]:
    """Failures found by flufl.bounce in a non-standard bounce (permanent ones to apply; temporary ones are only
    warnings), each classified by the words next to its address in the bounce's own text."""
    from flufl.bounce import all_failures  # noqa: PLC0415 (lazy: flufl only when used)

    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # its heuristic detectors trip over some malformed messages: then it is no known format
        return (), ()
    if not permanent and not temporary:
        return (), ()
    texts = _texts(msg)
    text = texts[0] if texts else ""
    cut = _RETURNED.search(text, 40)
    text = clean_header(text[: cut.start()] if cut else text)[:8000]
    notices = []
    for raw in sorted(permanent):
        address = address_text(raw)
        at = text.lower().find(address.lower())
        # The reason usually follows the address; else it is near it; else anywhere in the notice.
        windows = [text[at : at + 600], text[max(at - 200, 0) : at + 600]] if at >= 0 else []
        for near in [*windows, text]:
            code = _failure_code(near) or _failure_code(text)
            verdict = classify(code, near, permanent=True)
            if verdict.reason != "undefined":
                break
        status = code or _basic(near) or _basic(text)
        notices.append(_bounce(verdict, address, f"{status or 'non-standard bounce'} {near.strip()}", status))
    others = tuple(
        Notice(NoticeKind.DELAY, None, address_text(raw), "non-standard delay warning", "", "")
        for raw in sorted(temporary - permanent)
    )
    return tuple(notices), others


def address_text(raw: bytes) -> str:
    return clean_header(raw.decode("ascii", "replace"))


def _texts(msg: Message) -> list[str]:
    texts = []
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                texts.append(payload.decode("utf-8", "replace")[:20_000])
    return texts


def _ses_doc(msg: Message) -> object | None:
    """The JSON of an Amazon SES notification (or of the SNS envelope around one) mailed as such; None when the
    message holds no JSON."""
    if msg.is_multipart():
        return None
    payload = msg.get_payload(decode=True)
    if not isinstance(payload, bytes) or not payload.lstrip().startswith(b"{"):
        return None
    try:
        doc: object = json.loads(payload[:1_000_000])
        if isinstance(doc, dict) and isinstance(doc.get("Message"), str):  # the SNS envelope
            doc = json.loads(doc["Message"])
    except (ValueError, RecursionError):
        return None
    return doc


def ses_delivery_id(doc: object) -> str:
    """The X-Digest-Delivery value among an SES notification's original headers (present when the identity
    includes them) or its `digest_delivery` message tag (event publishing), lower-cased; "" when there is none."""
    mail = _dict(_dict(doc).get("mail"))
    for header in _list(mail.get("headers")):
        entry = _dict(header)
        if str(entry.get("name", "")).lower() == "x-digest-delivery":
            return clean_header(str(entry.get("value", "")))[:40].lower()
    tags = _list(_dict(mail.get("tags")).get("digest_delivery"))
    return clean_header(str(tags[0]))[:40].lower() if tags else ""


def ses_notices(doc: object) -> list[Notice] | None:
    """The notices of one Amazon SES notification (its JSON, parsed), mailed or posted to the webhook alike: Bounce
    (each recipient classified by `classify_ses`), Complaint, Delivery; None when it is no SES notification."""
    if not isinstance(doc, dict):
        return None
    kind = str(doc.get("notificationType") or doc.get("eventType") or "")
    if kind not in ("Bounce", "Complaint", "Delivery"):
        return None
    notices = []
    if kind == "Bounce":
        bounce = _dict(doc.get("bounce"))
        bounce_type = clean_header(str(bounce.get("bounceType", "")))[:40]
        subtype = clean_header(str(bounce.get("bounceSubType", "")))[:40]
        for item in _list(bounce.get("bouncedRecipients")):
            rcpt = _dict(item)
            diagnostic = clean_header(str(rcpt.get("diagnosticCode", "")))[:DETAIL_CHARS]
            status = clean_header(str(rcpt.get("status", "")))[:40]
            code = enhanced_code(status) or enhanced_code(diagnostic)
            verdict = classify_ses(bounce_type, subtype, code, diagnostic)
            detail = f"SES {bounce_type}/{subtype} {code or ''} {diagnostic}"
            notices.append(_bounce(verdict, clean_header(str(rcpt.get("emailAddress", ""))), detail, code or status))
    elif kind == "Complaint":
        complaint = _dict(doc.get("complaint"))
        feedback = clean_header(str(complaint.get("complaintFeedbackType") or "abuse"))[:40]
        for item in _list(complaint.get("complainedRecipients")):
            recipient = clean_header(str(_dict(item).get("emailAddress", "")))
            notices.append(
                Notice(
                    NoticeKind.COMPLAINT,
                    None,
                    recipient,
                    f"complaint ({feedback}) reported by SES",
                    "",
                    feedback.lower()[:40],
                )
            )
    else:
        delivery = _dict(doc.get("delivery"))
        for item in _list(delivery.get("recipients")):
            notices.append(Notice(NoticeKind.DELIVERED, None, clean_header(str(item)), "delivered (SES)", "2.0.0", ""))
    return notices


def _dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _is_auto_reply(msg: Message) -> bool:
    """An out-of-office or other automatic answer (RFC 3834 Auto-Submitted, or the headers vacation programs set)."""
    submitted = str(msg.get("Auto-Submitted", "")).strip().lower()
    subject = str(msg.get("Subject", "")).lower()
    return (
        submitted.startswith("auto-replied")
        or msg.get("X-Autoreply") is not None
        or msg.get("X-Autorespond") is not None
        or str(msg.get("Precedence", "")).strip().lower() == "auto_reply"
        or subject.startswith(("out of office", "auto:", "automatic reply", "autoreply", "auto-reply"))
    )


def _verp_ids(msg: Message) -> list[str]:
    """Candidate VERP ids from every header of the report, of its DSN/ARF blocks and of the returned message,
    the report's own envelope fields first."""
    found: list[str] = []
    for part in msg.walk():
        for name, value in part.items():
            found.extend(_ids_in(name, str(value)))
        if part.get_content_type() == "text/rfc822-headers":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                headers = email.message_from_bytes(payload, policy=email.policy.compat32)
                for name, value in headers.items():
                    found.extend(_ids_in(name, str(value)))
    return found


def _ids_in(name: str, value: str) -> list[str]:
    """VERP ids in one header field: in an address (`bounces+<id>@`), or the whole of an X-Digest-Delivery field
    (a returned message's copy of it, when a provider replaced the return path)."""
    if name.lower() == "x-digest-delivery":
        return [value.strip().lower()]
    return find_verp_ids(value)
