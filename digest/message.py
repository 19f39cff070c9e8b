"""One subscriber's email of an issue, as the bytes that go over SMTP, and the signup notices (`build_notice_message`)
with the same header writer. Pure: strings in, bytes out.

Header values are cleaned here, before the `email` package sees them: Python 3.11.7 (CVE-2024-6923) can turn an
encoded newline into a real header line, and it raises on a raw CR/LF, which would stop a batch half-way. Headers that
must never be RFC 2047-encoded (List-Unsubscribe's long URL, Message-ID, List-Id) are written by this module itself;
the `email` package would encode a long URL and break it.

The HTML part is sent 8bit when the server offers 8BITMIME (base64 inflates UTF-8 CJK text by a third and
quoted-printable by up to three times, which would push an issue past Gmail's clipping size). 8bit needs lines of at
most 998 octets, so the HTML is folded at places where a line break changes nothing: whitespace, the end of a tag,
or (as a last resort, inside long CJK runs) an invisible `<wbr>`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import hashlib
import html
import quopri
import re
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy, quoprimime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from urllib.parse import quote

import idna

from digest.errors import DeliveryError, SettingsError
from digest.model import Subscriber
from digest.render.email import PREFERENCES_PLACEHOLDER, UNSUBSCRIBE_PLACEHOLDER
from digest.text import BIDI_CONTROLS

#: Gmail clips a message whose HTML is larger than 102 KB; counted on the HTML part as transmitted.
GMAIL_CLIP_BYTES = 102_000
#: RFC 5322: a line is at most 998 octets, CRLF excluded.
MAX_LINE_OCTETS = 998
#: Room left on each line of the shared HTML for the personal unsubscribe URL that replaces the placeholder.
URL_ROOM = 400
SUBJECT_FIELDS = frozenset({"title", "number", "date", "count"})
#: Display names are shortened to this many characters in To (mail clients show about 30).
MAX_NAME_CHARS = 64

_CRLF = "\r\n"
_SMTP = policy.SMTP  # CRLF line ends, non-ASCII headers RFC 2047-encoded, raw headers 7-bit
_SMTP_LINE: int = _SMTP.max_line_length or 78  # where `email` folds headers and wraps base64 / quoted-printable
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]")
_BIDI = re.compile(f"[{BIDI_CONTROLS}]")
_RAW_TEXT = ("style", "script", "pre", "textarea", "title", "xmp")


class MessageTooLarge(DeliveryError):
    """The HTML part would be clipped by Gmail as transmitted."""


#: The line that ends a message's data in SMTP (after the data's own final CRLF).
END_OF_DATA = b".\r\n"


@dataclass(frozen=True)
class WireMessage:
    """A message as SMTP's DATA carries it (RFC 5321, 4.5.2): CRLF line ends, every dot that starts a line doubled,
    ended by CRLF.CRLF. Made once per message, so that sending it is only a write."""

    data: bytes
    eight_bit: bool  # has octets over 127: MAIL FROM says BODY=8BITMIME

    @property
    def message(self) -> bytes:
        """The message itself (CRLF line ends): the dot-stuffing undone exactly."""
        body = self.data[: -len(END_OF_DATA)].replace(b"\r\n..", b"\r\n.")
        return body[1:] if body.startswith(b"..") else body


def wire_message(data: bytes) -> WireMessage:
    """`data` (any line ends) as DATA sends it."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:  # counting is ~20x cheaper than the regex
        data = re.sub(rb"(?:\r\n|\n|\r(?!\n))", b"\r\n", data)
    eight_bit = not data.isascii()
    data = data.replace(b"\r\n.", b"\r\n..")  # every line end is CRLF now: a C loop instead of a regex
    if data.startswith(b"."):
        data = b"." + data
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return WireMessage(data + END_OF_DATA, eight_bit)


@dataclass(frozen=True)
class IssueMail:
    """What every subscriber's copy of one issue shares: the rendered parts and the header values."""

    issue: int
    html: str
    text: str
    subject: str
    from_address: str
    list_id: str
    domain: str  # the site's host name: right side of Message-ID
    # Where the rendered parts hold each subscriber's own links (per-issue markers that seed text cannot produce).
    unsubscribe_mark: str = UNSUBSCRIBE_PLACEHOLDER
    preferences_mark: str = PREFERENCES_PLACEHOLDER

    @property
    def marks(self) -> tuple[str, str]:
        """The markers of the personal links, in the order of `SLOTS`."""
        return self.unsubscribe_mark, self.preferences_mark


@dataclass(frozen=True)
class DkimKey:
    """A DKIM signing key: selector, domain and the private key (PEM)."""

    selector: str
    domain: str
    private_key: bytes


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


def build_message(
    mail: IssueMail,
    subscriber: Subscriber,
    *,
    unsubscribe_url: str,
    preferences_url: str = "",
    unsubscribe_mailto: str = "",
    date: datetime,
    msgid: str,
    eight_bit: bool = True,
    dkim: DkimKey | None = None,
    max_html_bytes: int = GMAIL_CLIP_BYTES,
) -> WireMessage:
    """The message for one subscriber as SMTP's DATA carries it (`.message` is the message itself: CRLF line ends,
    headers 7-bit, HTML part within `max_html_bytes` as transmitted). Raises MessageTooLarge when the HTML cannot
    be made to fit.

    Made from the issue's `MessageTemplate` (built once, then only the personal parts are filled in)."""
    template = message_template(
        mail, eight_bit=eight_bit, unsubscribe_mailto=unsubscribe_mailto, max_html_bytes=max_html_bytes
    )
    return template.render_wire(
        subscriber,
        unsubscribe_url=unsubscribe_url,
        preferences_url=preferences_url,
        date=date,
        msgid=msgid,
        dkim=dkim,
    )


#: Holes in a template: the fields and body pieces that differ per subscriber.
_TO, _DATE, _MSGID, _UNSUB = "To", "Date", "Message-ID", "List-Unsubscribe"
#: The personal links in the body, in the order of `IssueMail.marks`; a literal part's hole is "<kind> <slot>".
SLOTS = ("unsubscribe", "preferences")
_TEXT_BODY, _HTML_BODY = "text body", "html body"
_PERSONAL_FIELDS = (_TO, _DATE, _MSGID, _UNSUB)
Links = tuple[str, str]  # (unsubscribe URL, preferences URL)
_MARK_SUBSCRIBER = Subscriber(email="template@template.invalid")
_MARK_DATE = datetime(2000, 1, 1, tzinfo=UTC)
_MARK_MSGID = "<template@template.invalid>"
# What `email` writes for a plain address and a name of ASCII words; anything else goes through its folding.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9.-]+")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9]+(?: [A-Za-z0-9]+)*")


@dataclass(frozen=True)
class _Part:
    """One body part of a template: a literal with URL holes (7bit/8bit) or a source encoded per subscriber."""

    kind: str  # "text" or "html"
    literal: bool  # 7bit/8bit: the links are holes in its bytes; else the part is encoded per subscriber
    cte: str
    source: str  # the part's text with the markers, as build_reference_message encodes it
    room: int  # longest URL (octets) that keeps every line of a literal within MAX_LINE_OCTETS
    marks: tuple[int, int]  # how many times each marker is in the part
    size: int  # octets of the HTML as transmitted, with the markers (8bit literal only)


@dataclass(frozen=True)
class MessageTemplate:
    """One issue's message as bytes with holes for what differs per subscriber (To, Date, Message-ID,
    List-Unsubscribe, the unsubscribe link in both parts).

    Made from `build_reference_message` itself and checked against it when made, so the two give the same bytes;
    whatever the template cannot hold exactly (a URL that would make a line too long, an encoding that would change
    with the URL) is built by `build_reference_message` instead. 8bit and 7bit parts are filled in by a bytes
    join; base64 and quoted-printable parts are encoded per subscriber."""

    mail: IssueMail
    eight_bit: bool
    unsubscribe_mailto: str
    max_html_bytes: int
    boundary: str
    pieces: tuple[bytes | str, ...] = ()  # literal bytes, or the name of a hole; empty: no template
    text: _Part | None = None
    html: _Part | None = None

    wire_pieces: tuple[bytes | str, ...] = ()  # `pieces` dot-stuffed as DATA sends them; empty: not known to be

    def render(
        self,
        subscriber: Subscriber,
        *,
        unsubscribe_url: str,
        preferences_url: str = "",
        date: datetime,
        msgid: str,
        dkim: DkimKey | None = None,
    ) -> bytes:
        """The message for one subscriber (DKIM-signed when a key is given), the same bytes as
        `build_reference_message` with this template's boundary."""
        links = (unsubscribe_url, preferences_url)
        values = self._values(subscriber, links, date, msgid)
        return self._message(values, subscriber, links, date, msgid, dkim)

    def render_wire(
        self,
        subscriber: Subscriber,
        *,
        unsubscribe_url: str,
        preferences_url: str = "",
        date: datetime,
        msgid: str,
        dkim: DkimKey | None = None,
    ) -> WireMessage:
        """`render` as SMTP's DATA carries it. The template's own bytes are dot-stuffed once, when it is made, so
        a message is one join instead of passes over all of its ~70 KB (the send loop's largest cost per message)."""
        links = (unsubscribe_url, preferences_url)
        values = self._values(subscriber, links, date, msgid)
        if values is not None and dkim is None and self.wire_pieces and all(map(_wire_safe, values.values())):
            data = _join(self.wire_pieces, values)
            return WireMessage(data, not data.isascii())
        return wire_message(self._message(values, subscriber, links, date, msgid, dkim))

    def _message(
        self,
        values: dict[str, bytes] | None,
        subscriber: Subscriber,
        links: Links,
        date: datetime,
        msgid: str,
        dkim: DkimKey | None,
    ) -> bytes:
        if values is not None:
            data = _join(self.pieces, values)
        else:
            data = build_reference_message(
                self.mail,
                subscriber,
                unsubscribe_url=links[0],
                preferences_url=links[1],
                unsubscribe_mailto=self.unsubscribe_mailto,
                date=date,
                msgid=msgid,
                eight_bit=self.eight_bit,
                max_html_bytes=self.max_html_bytes,
                boundary=self.boundary,
            )
        return sign_dkim(data, dkim) if dkim is not None else data

    def _fill(self, subscriber: Subscriber, url: str, date: datetime, msgid: str, prefs: str = "") -> bytes | None:
        """The template filled in, or None when this subscriber's values do not fit it exactly."""
        values = self._values(subscriber, (url, prefs), date, msgid)
        return None if values is None else _join(self.pieces, values)

    def _values(self, subscriber: Subscriber, links: Links, date: datetime, msgid: str) -> dict[str, bytes] | None:
        """What fills each hole for this subscriber, or None when their values do not fit the template exactly."""
        if not self.pieces or self.text is None or self.html is None:
            return None
        text_links = tuple(clean_header(url) for url in links)
        if any(not url.isascii() or self.boundary in url for url in text_links):
            return None
        html_links = tuple(html.escape(url, quote=True) for url in text_links)
        marks = self.mail.marks
        values: dict[str, bytes] = {}
        for part, given in ((self.text, text_links), (self.html, html_links)):
            if part.literal:
                if any(len(value) > part.room for value in given):
                    return None
                growth = sum(n * (len(v) - len(m)) for n, v, m in zip(part.marks, given, marks, strict=True))
                if part.kind == "html" and part.size + growth > self.max_html_bytes:
                    return None  # let the reference say it is too large
                for slot, value in zip(SLOTS, given, strict=True):
                    values[f"{part.kind} {slot}"] = value.encode("ascii")
            else:
                body = fill_links(part.source, marks, given)
                if part.kind == "text":
                    cte = _text_cte(body, self.eight_bit)
                else:
                    cte, body = _html_encoding(body, self.eight_bit, self.max_html_bytes)
                if cte != part.cte:
                    return None
                values[f"{part.kind} body"] = _encoded_body(body, cte)
        values[_TO] = _to_field(subscriber)
        values[_DATE] = f"Date: {format_datetime(date)}\r\n".encode("ascii")
        values[_MSGID] = f"Message-ID: {clean_header(msgid)}\r\n".encode("ascii")
        unsub = list_unsubscribe(links[0], self.unsubscribe_mailto).replace(", ", ",\r\n ")
        values[_UNSUB] = f"List-Unsubscribe: {unsub}\r\n".encode("ascii")
        return values


def fill_links(source: str, marks: tuple[str, ...], links: tuple[str, ...]) -> str:
    """`source` with each marker replaced by its link in ONE pass: a link that happens to contain a marker is
    never filled in again."""
    if not any(mark in source for mark in marks):
        return source
    by_mark = dict(zip(marks, links, strict=True))
    return re.sub("|".join(re.escape(mark) for mark in marks), lambda m: by_mark[m.group(0)], source)


def _join(pieces: tuple[bytes | str, ...], values: dict[str, bytes]) -> bytes:
    return b"".join(values[p] if isinstance(p, str) else p for p in pieces)


def _wire_safe(value: bytes) -> bool:
    """Whether a hole's value can go into the dot-stuffed template as it is: CRLF line ends only and no line of it
    starting with a dot (the template's literals never start a line with one, see `_wire_pieces`)."""
    return (
        not value.startswith(b".")
        and b"\n." not in value
        and value.count(b"\r") == value.count(b"\n") == value.count(b"\r\n")
    )


def _wire_pieces(pieces: tuple[bytes | str, ...]) -> tuple[bytes | str, ...]:
    """The template's pieces as DATA sends them (leading dots doubled, ended by CRLF.CRLF), or () when a hole could
    decide whether a literal starts a line or splits a CRLF: values go in as they are (see `_wire_safe`)."""
    if not pieces or not isinstance(pieces[-1], bytes) or not pieces[-1].endswith(b"\r\n"):
        return ()
    wire: list[bytes | str] = []
    for i, piece in enumerate(pieces):
        if isinstance(piece, str):
            wire.append(piece)
            continue
        if (i and piece.startswith((b".", b"\n"))) or piece.endswith(b"\r"):
            return ()
        piece = piece.replace(b"\r\n.", b"\r\n..")
        wire.append(b"." + piece if i == 0 and piece.startswith(b".") else piece)
    return (*wire, END_OF_DATA)


@functools.lru_cache(maxsize=8)
def message_template(
    mail: IssueMail, *, eight_bit: bool, unsubscribe_mailto: str = "", max_html_bytes: int = GMAIL_CLIP_BYTES
) -> MessageTemplate:
    """The template of one issue's message for a server with (or without) 8BITMIME. Made once per issue and
    kept: building each message with the `email` package is most of the cost of a send."""
    html_source = _folded_template(mail.html) if eight_bit else mail.html
    boundary = _boundary(mail, html_source)
    bare = MessageTemplate(mail, eight_bit, unsubscribe_mailto, max_html_bytes, boundary)
    try:
        reference = build_reference_message(
            mail,
            _MARK_SUBSCRIBER,
            unsubscribe_url=mail.unsubscribe_mark,
            preferences_url=mail.preferences_mark,
            unsubscribe_mailto=unsubscribe_mailto,
            date=_MARK_DATE,
            msgid=_MARK_MSGID,
            eight_bit=eight_bit,
            max_html_bytes=max_html_bytes,
            boundary=boundary,
        )
        template = _cut_template(bare, reference, html_source)
    except (DeliveryError, ValueError):  # each message then says for itself what is wrong
        return bare
    # The template must give the reference's bytes, or it is not used at all; its wire form, the reference's.
    values = template._values(_MARK_SUBSCRIBER, mail.marks, _MARK_DATE, _MARK_MSGID)
    if values is None or _join(template.pieces, values) != reference:
        return bare
    wire = _wire_pieces(template.pieces)
    if wire and _join(wire, values) == wire_message(reference).data:
        template = dataclasses.replace(template, wire_pieces=wire)
    return template


def _boundary(mail: IssueMail, html_source: str) -> str:
    """A MIME boundary in the `email` package's style, derived from the content (so a message is reproducible)
    and absent from it."""
    seed = hashlib.sha256(f"{mail.issue}\0{mail.text}\0{mail.html}".encode()).digest()
    for salt in range(100):
        number = int.from_bytes(hashlib.sha256(seed + bytes([salt])).digest()[:8], "big") % 10**19
        boundary = f"==============={number:019d}=="
        if boundary not in mail.text and boundary not in html_source:
            return boundary
    raise ValueError("no MIME boundary found")  # practically impossible


def _cut_template(bare: MessageTemplate, reference: bytes, html_source: str) -> MessageTemplate:
    """Split the reference message into literal pieces and holes."""
    head, sep, body = reference.partition(b"\r\n\r\n")
    pieces: list[bytes | str] = []
    seen: list[str] = []
    for field in re.split(rb"\r\n(?=[^ \t])", head):
        if not field:
            continue
        name = field.split(b":", 1)[0].decode("ascii")
        if name in _PERSONAL_FIELDS:
            pieces.append(name)
            seen.append(name)
        else:
            pieces.append(field + b"\r\n")
    if sorted(seen) != sorted(_PERSONAL_FIELDS):
        raise ValueError("unexpected header fields in the reference message")
    pieces.append(sep[2:])  # the blank line between header and body
    delimiter = b"\r\n--" + bare.boundary.encode("ascii")
    chunks = (b"\r\n" + body).split(delimiter)  # preamble, text part, html part, "--" + epilogue
    if len(chunks) != 4 or chunks[0] or not chunks[3].startswith(b"--"):
        raise ValueError("unexpected MIME structure in the reference message")
    parts: list[_Part] = []
    marks = bare.mail.marks
    hole_of = {mark.encode("ascii"): slot for mark, slot in zip(marks, SLOTS, strict=True)}
    splitter = re.compile(b"(" + b"|".join(re.escape(m.encode("ascii")) for m in marks) + b")")
    for chunk, source, part_kind, opening in zip(
        chunks[1:3],
        (bare.mail.text, html_source),
        ("text", "html"),
        (delimiter[2:], delimiter),  # the body starts with the first delimiter, without a line break before it
        strict=True,
    ):
        part_head, _, content = chunk.partition(b"\r\n\r\n")
        cte = re.search(rb"Content-Transfer-Encoding: (\S+)", part_head)
        if cte is None:
            raise ValueError("a part without Content-Transfer-Encoding")
        pieces.append(opening + part_head + b"\r\n\r\n")
        kind = cte.group(1).decode("ascii")
        counts = (source.count(marks[0]), source.count(marks[1]))
        if kind in ("7bit", "8bit"):
            room = MAX_LINE_OCTETS
            for line in source.split("\n"):
                found = [line.count(mark) for mark in marks]
                if any(found):  # every link on the line gets an equal share of what is left of it
                    held = sum(n * len(m) for n, m in zip(found, marks, strict=True))
                    free = MAX_LINE_OCTETS - len(line.encode("utf-8")) + held
                    room = min(room, free // sum(found))
            size = len(source.encode("utf-8")) + source.count("\n")
            parts.append(_Part(part_kind, True, kind, source, room, counts, size))
            for i, piece in enumerate(splitter.split(content)):
                pieces.append(f"{part_kind} {hole_of[piece]}" if i % 2 else piece)
        else:
            parts.append(_Part(part_kind, False, kind, source, 0, counts, 0))
            pieces.append(f"{part_kind} body")
    pieces.append(delimiter + chunks[3])
    merged: list[bytes | str] = []
    for piece in pieces:  # adjacent literals as one, so that rendering joins fewer pieces
        if isinstance(piece, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += piece
        elif piece != b"":
            merged.append(piece)
    return dataclasses.replace(bare, pieces=tuple(merged), text=parts[0], html=parts[1])


def _encoded_body(text: str, cte: str) -> bytes:
    """A part's body as `email` writes it with policy.SMTP (contentmanager's _encode_text, then CRLF)."""
    lines = text.encode("utf-8").splitlines()
    if cte in ("7bit", "8bit"):
        return b"\r\n".join(lines) + b"\r\n"
    if cte == "base64":
        data = b"\r\n".join(lines) + b"\r\n"
        step = _SMTP_LINE // 4 * 3
        encoded = b"".join(binascii.b2a_base64(data[i : i + step]) for i in range(0, len(data), step))
        return encoded.replace(b"\n", b"\r\n")
    qp = quoprimime.body_encode((b"\n".join(lines) + b"\n").decode("latin-1"), _SMTP_LINE)
    return qp.replace("\n", "\r\n").encode("ascii")


def _to_field(subscriber: Subscriber) -> bytes:
    """The To field: the subscriber's name as a display name, encoded by `address_field`."""
    return address_field("To", subscriber.name, subscriber.email)


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


def build_reference_message(
    mail: IssueMail,
    subscriber: Subscriber,
    *,
    unsubscribe_url: str,
    preferences_url: str = "",
    unsubscribe_mailto: str = "",
    date: datetime,
    msgid: str,
    eight_bit: bool = True,
    dkim: DkimKey | None = None,
    max_html_bytes: int = GMAIL_CLIP_BYTES,
    boundary: str | None = None,
) -> bytes:
    """The same bytes as `build_message(...).message`, built with the `email` package for this one subscriber:
    the reference that message templates are made from and checked against, and the way out for what a template
    cannot hold."""
    links = (clean_header(unsubscribe_url), clean_header(preferences_url))
    text = fill_links(mail.text, mail.marks, links)
    # Folding is slow in Python: fold the shared page once, leaving room on each line for the personal URL.
    shared = _folded_template(mail.html) if eight_bit else mail.html
    page = fill_links(shared, mail.marks, tuple(html.escape(link, quote=True) for link in links))

    msg = EmailMessage(policy=_SMTP)  # only MIME structure: address and text fields are written by this module
    msg.set_content(text, subtype="plain", charset="utf-8", cte=_text_cte(text, eight_bit))
    html_cte, folded = _html_encoding(page, eight_bit, max_html_bytes)
    msg.add_alternative(folded, subtype="html", charset="utf-8", cte=html_cte)
    if boundary is not None:
        msg.set_boundary(boundary)

    head, sep, body = msg.as_bytes(policy=_SMTP).partition(b"\r\n\r\n")
    head = sender_fields(mail.from_address, _to_field(subscriber), mail.subject, date) + head
    raw = [
        ("Message-ID", clean_header(msgid)),
        ("List-Id", _list_id_header(mail.list_id)),
        ("List-Unsubscribe", list_unsubscribe(unsubscribe_url, unsubscribe_mailto).replace(", ", ",\r\n ")),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("Feedback-ID", feedback_id(mail.issue, mail.list_id)),
    ]
    extra = b"".join(f"{name}: {value}\r\n".encode("ascii") for name, value in raw)
    data = head + b"\r\n" + extra.rstrip(b"\r\n") + sep + body
    if dkim is not None:
        data = sign_dkim(data, dkim)
    return data


def sender_fields(from_address: str, to_field: bytes, subject: str, date: datetime) -> bytes:
    """From, To, Subject and Date as 7-bit header bytes, written by this module and never parsed by the `email`
    package: the head of every message digest sends, issue mail and signup notices alike."""
    name, address = _from_parts(from_address)
    return (
        address_field("From", name, address)
        + to_field
        + text_field("Subject", subject)
        + f"Date: {format_datetime(date)}\r\n".encode("ascii")
    )


def build_notice_message(*, from_address: str, to: str, subject: str, body: str, date: datetime, msgid: str) -> bytes:
    """A plain-text transactional message (the signup notices), its header written like an issue's
    (`sender_fields`, To without a display name): `email` only encodes the body and writes the MIME fields."""
    msg = EmailMessage(policy=_SMTP)
    msg.set_content(body, subtype="plain", charset="utf-8", cte=_text_cte(body, eight_bit=False))
    mime, sep, encoded = msg.as_bytes(policy=_SMTP).partition(b"\r\n\r\n")
    head = sender_fields(from_address, address_field("To", "", to), subject, date) + (
        f"Message-ID: {clean_header(msgid).replace(' ', '')}\r\nAuto-Submitted: auto-generated\r\n".encode("ascii")
    )
    return head + mime + sep + encoded


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


def _text_cte(text: str, eight_bit: bool) -> str:
    fits = _fits(text)
    if text.isascii() and fits:
        return "7bit"
    if eight_bit and fits:
        return "8bit"
    return _smaller_encoding(text.encode("utf-8"))[0]


def _html_encoding(page: str, eight_bit: bool, limit: int) -> tuple[str, str]:
    """(transfer encoding, body text) for the HTML part; MessageTooLarge if it is over `limit` as transmitted."""
    if eight_bit:
        folded = page if _fits(page) else fold_html(page)
        if _fits(folded):
            size = len(folded.encode("utf-8")) + folded.count("\n")  # CRLF on the wire
            if size > limit:
                raise MessageTooLarge(
                    f"the HTML part is {size} bytes as sent (8bit), over Gmail's clipping size of {limit};"
                    " lower email_max_bytes and run `digest rebuild`"
                )
            return "8bit", folded
    cte, size = _smaller_encoding(page.encode("utf-8"))
    if size > limit:
        why = "the server does not offer 8BITMIME" if not eight_bit else "its lines cannot be folded for 8bit"
        raise MessageTooLarge(
            f"the HTML part would be {size} bytes as sent ({cte}; {why}), over Gmail's clipping size of {limit};"
            " lower email_max_bytes and run `digest rebuild`, or use a server that offers 8BITMIME"
        )
    return cte, page


def _fits(page: str) -> bool:
    return all(len(line.encode("utf-8")) <= MAX_LINE_OCTETS for line in page.split("\n"))


@functools.lru_cache(maxsize=4)
def _folded_template(page: str) -> str:
    return fold_html(page, MAX_LINE_OCTETS - URL_ROOM)


def _smaller_encoding(data: bytes) -> tuple[str, int]:
    b64 = len(base64.encodebytes(data)) * 77 // 76  # CRLF instead of LF
    qp = len(quopri.encodestring(data.replace(b"\n", b"\r\n")))
    return ("base64", b64) if b64 <= qp else ("quoted-printable", qp)


def fold_html(page: str, limit: int = MAX_LINE_OCTETS) -> str:
    """`page` with line breaks added where they change nothing, so that lines stay within `limit` octets.

    Break points, best first: a space outside attribute values and raw-text elements (becomes a newline), the end
    of a tag (`<p>` -> `<p\\n>`), and inside a long run of non-ASCII text an invisible `<wbr\\n>`.
    """
    out: list[str] = []
    for line in page.split("\n"):
        out.extend(_fold_line(line, limit - len("<wbr")))  # room for the last-resort break
    return "\n".join(out)


def _fold_line(line: str, limit: int) -> list[str]:
    if len(line.encode("utf-8")) <= limit:
        return [line]
    pieces: list[str] = []
    start = 0  # start of the current output line in `line`
    size = 0  # octets since `start`
    candidate: tuple[int, str] | None = None  # (index, kind)
    in_tag = False
    quote_char = ""
    declaration = False
    raw_text = ""  # name of the raw-text element we are inside
    i = 0
    n = len(line)
    while i < n:
        c = line[i]
        width = len(c.encode("utf-8"))
        if in_tag:
            if quote_char:
                if c == quote_char:
                    quote_char = ""
            elif c in "\"'" and not declaration:
                quote_char = c
            elif c == ">":
                if not declaration:
                    candidate = (i, "before")
                in_tag = False
            elif c == " " and not declaration:
                candidate = (i, "space")
        elif c == "<":
            rest = line[i + 1 : i + 12].lower()
            if raw_text:
                if rest.startswith("/" + raw_text):
                    raw_text = ""
                    in_tag, declaration = True, False
            else:
                in_tag = True
                declaration = rest.startswith("!")
                tag = re.match(r"[a-z0-9]+", rest)
                if tag and tag.group(0) in _RAW_TEXT:
                    raw_text = tag.group(0)
        elif not raw_text:
            if c == " ":
                candidate = (i, "space")
            elif width > 1 and i > start and not line[i - 1].isspace() and line[i - 1] != ">":
                candidate = (i, "wbr")
        size += width
        if size > limit and candidate is not None:
            at, kind = candidate
            if kind == "space":
                pieces.append(line[start:at])
                start = at + 1
            elif kind == "before":
                pieces.append(line[start:at])
                start = at  # the next line begins with ">"
            else:
                pieces.append(line[start:at] + "<wbr")
                line = line[:at] + ">" + line[at:]
                n += 1
                i += 1
                start = at
            size = len(line[start : i + 1].encode("utf-8"))
            candidate = None
        i += 1
    pieces.append(line[start:])
    return pieces


def sign_dkim(data: bytes, key: DkimKey) -> bytes:
    """`data` with a DKIM-Signature header prepended, covering the headers receivers check for one-click."""
    import dkim

    headers = [
        b"from",
        b"to",
        b"subject",
        b"date",
        b"message-id",
        b"list-id",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
        b"feedback-id",
        b"mime-version",
        b"content-type",
    ]
    try:
        signature = dkim.sign(
            data,
            key.selector.encode("ascii"),
            key.domain.encode("ascii"),
            key.private_key,
            include_headers=headers,
        )
    except dkim.DKIMException as exc:
        raise SettingsError(f"dkim: cannot sign with the configured key: {exc}") from exc
    return bytes(signature) + data
