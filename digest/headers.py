"""Header fields as 7-bit bytes, written here and never parsed back by the `email` package: From, To, Subject,
Date, Message-ID, List-Unsubscribe, List-Id, Feedback-ID and the delivery id the providers echo back, for the issue
mail and the signup notices alike.

Header values are cleaned here, before the `email` package sees them: Python 3.11.7 (CVE-2024-6923) can turn an
encoded newline into a real header line, and it raises on a raw CR/LF, which would stop a batch half-way. Headers that
must never be RFC 2047-encoded (List-Unsubscribe's long URL, Message-ID, List-Id) are written by this module itself;
the `email` package would encode a long URL and break it.
"""

from __future__ import annotations

import hashlib
import re
import string
from datetime import datetime
from email import policy
from email.header import Header
from email.headerregistry import Address
from email.utils import format_datetime, parseaddr
from urllib.parse import quote

import idna

from digest.errors import BIDI_CONTROLS, SettingsError

_CRLF = "\r\n"
_SMTP_LINE: int = policy.SMTP.max_line_length or 78  # where `email` folds headers
SUBJECT_FIELDS = frozenset({"title", "number", "date", "count"})
#: Display names are shortened to this many characters in To (mail clients show about 30).
MAX_NAME_CHARS = 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]")
_BIDI = re.compile(f"[{BIDI_CONTROLS}]")


def clean_header(value: str) -> str:
    """A header value with every control character (CR, LF, NUL, TAB, NEL, U+2028 ...) turned into one space and
    bidi controls (U+202E ...) dropped: a name or subject reads as it is written."""
    return " ".join(_CONTROL.sub(" ", _BIDI.sub("", value)).split())


def format_subject(template: str, *, title: str, number: int, date: str, count: int) -> str:
    """Fill the subject template; only `{title} {number} {date} {count}` are allowed (no attribute access)."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise SettingsError(f"subject: invalid template {template!r}: {exc}") from exc
    unknown = sorted({name for name in fields if name not in SUBJECT_FIELDS})
    if unknown:
        raise SettingsError(
            f"subject: unknown field {{{unknown[0]}}} in {template!r}; use {{title}} {{number}} {{date}} {{count}}"
        )
    return clean_header(template.format(title=clean_header(title), number=number, date=date, count=count))


def message_id(issue: int, email_key: str, domain: str) -> str:
    """The same Message-ID for the same (issue, subscriber, site) every time, so a re-sent copy is recognisably
    the same message; the address itself is hashed, not shown."""
    digest = hashlib.sha256(f"{issue}\0{email_key}".encode()).hexdigest()[:32]
    return f"<digest.{issue}.{digest}@{_ascii_domain(domain) or 'localhost'}>"


def smtp_address(email: str) -> str:
    """The address as SMTP needs it: an internationalized domain in its IDNA (xn--) form."""
    local, _, domain = email.rpartition("@")
    return f"{local}@{_ascii_domain(domain)}" if local else email


def _ascii_domain(domain: str) -> str:
    domain = clean_header(domain).rstrip(".")
    if domain.isascii():
        return domain.lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        return domain.encode("idna").decode("ascii")


def _ascii_url(url: str) -> str:
    """A URL safe for a raw header: no controls, no spaces, non-ASCII percent-encoded."""
    return quote(clean_header(url), safe="/:?&=+%#@!$'()*,;~-._")


def list_unsubscribe(url: str, mailto: str = "") -> str:
    """RFC 2369 value: the https URL first (what RFC 8058 one-click uses), then an optional mailto."""
    parts = [f"<{_ascii_url(url)}>"]
    if mailto:
        target = clean_header(mailto)
        target = (
            target if target.lower().startswith("mailto:") else f"mailto:{smtp_address(target)}?subject=unsubscribe"
        )
        parts.append(f"<{_ascii_url(target)}>")
    return ", ".join(parts)


# What `email` writes for a plain address and a name of ASCII words; anything else goes through its folding.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9.-]+")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9]+(?: [A-Za-z0-9]+)*")


def address_field(field: str, name: str, address: str) -> bytes:
    """`Field: name <address>` as 7-bit header bytes, written here and never parsed by the `email` package.

    A name that is not plain ASCII words is always RFC 2047-encoded (utf-8, base64 or Q, folded by
    `email.header.Header`, which encodes text and never decodes it): a name holding an encoded word such as
    `=?utf-8?q?Evil=0D=0ABcc:...?=` then reaches the reader as that literal text, not as a line break, and no
    name can end the header block or add a field (CVE-2024-6923 re-parses such words into real CR/LF). Names
    longer than MAX_NAME_CHARS are shortened: a To line over 998 octets makes servers refuse the message."""
    display = clean_header(name)
    if len(display) > MAX_NAME_CHARS:
        display = display[: MAX_NAME_CHARS - 1].rstrip() + "…"
    addr = _addr_spec(address)
    if not display:
        return f"{field}: {addr}\r\n".encode("ascii")
    if _PLAIN_NAME.fullmatch(display) and len(field) + len(display) + len(addr) + 5 <= _SMTP_LINE:
        return f"{field}: {display} <{addr}>\r\n".encode("ascii")
    phrase = Header(display, "utf-8", header_name=field).encode(linesep=_CRLF)
    last = phrase.rsplit("\r\n", 1)[-1]
    joint = " " if len(last) + len(addr) + 3 <= _SMTP_LINE else "\r\n "
    return f"{field}: {phrase}{joint}<{addr}>\r\n".encode("ascii")


def text_field(field: str, value: str) -> bytes:
    """`Field: value` for unstructured text (Subject) as 7-bit header bytes, written here: plain ASCII words as
    they are (folded at spaces), anything else, or anything that looks like an encoded word, RFC 2047-encoded."""
    text = clean_header(value)
    plain = text.isascii() and "=?" not in text and all(len(word) <= 60 for word in text.split())
    encoded = Header(text, "us-ascii" if plain else "utf-8", header_name=field).encode(linesep=_CRLF)
    return f"{field}: {encoded}\r\n".encode("ascii")


def _addr_spec(address: str) -> str:
    """An addr-spec safe for a header: IDNA domain, no controls, the local part quoted by the email package if it
    must be (it only quotes, it parses nothing)."""
    addr = smtp_address(clean_header(address).replace(" ", ""))
    if _PLAIN_ADDRESS.fullmatch(addr):
        return addr
    local, _, domain = addr.rpartition("@")
    return Address(username=local, domain=domain).addr_spec


def sender_fields(from_address: str, to_field: bytes, subject: str, date: datetime, reply_to: str = "") -> bytes:
    """From, To, Subject, Date (and Reply-To when the setting `reply_to` is given) as 7-bit header bytes, written by
    this module and never parsed by the `email` package: the head of every message digest sends, issue mail and
    signup notices alike."""
    name, address = _from_parts(from_address)
    head = (
        address_field("From", name, address)
        + to_field
        + text_field("Subject", subject)
        + f"Date: {format_datetime(date)}\r\n".encode("ascii")
    )
    if reply_to:
        head += address_field("Reply-To", *_from_parts(reply_to))
    return head


def _from_parts(value: str) -> tuple[str, str]:
    """(display name, address) of the From setting (validated at load; checked again here for callers that build
    an IssueMail themselves). parseaddr never decodes encoded words."""
    name, addr = parseaddr(clean_header(value))
    if "@" not in addr:
        raise SettingsError(f"from_address: not an address: {value!r} (e.g. 'Paper Digest <digest@example.org>')")
    return name, addr


def feedback_id(issue: int, list_id: str) -> str:
    """Gmail's Feedback-ID (`campaign:customer:type:sender`): complaint statistics per issue and list in Postmaster
    Tools."""
    return f"{issue}:{_list_id_header(list_id).strip('<>')}:newsletter:digest"


def _list_id_header(list_id: str) -> str:
    """`List-Id: <id>` with the id in ASCII (a non-ASCII phrase before it is dropped, not encoded)."""
    value = clean_header(list_id)
    inner = value[value.find("<") + 1 : value.rfind(">")] if "<" in value and ">" in value else value
    inner = re.sub(r"[^A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]", "-", inner).strip(".-") or "digest.localhost"
    return f"<{inner}>"


#: The mail providers whose bounce webhooks need the delivery id in a header of their own (digest.bounces.webhooks).
DELIVERY_PROVIDERS = ("mailgun", "postmark", "sendgrid")
_DELIVERY_ID = re.compile(r"[a-z2-7]{29}")


def delivery_fields(delivery_id: str, providers: tuple[str, ...] = ()) -> bytes:
    """The fields that carry a message's delivery id (the signed VERP id: letters and digits only, never text from
    outside) so that a provider's bounce webhook names the delivery: `X-Digest-Delivery` (which SES echoes in a
    notification's original headers), Mailgun's `X-Mailgun-Variables`, Postmark's `X-PM-Metadata-*` and SendGrid's
    `X-SMTPAPI` unique_args for the `providers` in use. Nothing for an id of another shape (a test copy has none)."""
    if not _DELIVERY_ID.fullmatch(delivery_id):
        return b""
    fields = [f"X-Digest-Delivery: {delivery_id}"]
    if "mailgun" in providers:
        fields.append(f'X-Mailgun-Variables: {{"digest_delivery": "{delivery_id}"}}')
    if "postmark" in providers:
        fields.append(f"X-PM-Metadata-digest-delivery: {delivery_id}")
    if "sendgrid" in providers:
        fields.append(f'X-SMTPAPI: {{"unique_args": {{"digest_delivery": "{delivery_id}"}}}}')
    return "".join(f"{field}\r\n" for field in fields).encode("ascii")
