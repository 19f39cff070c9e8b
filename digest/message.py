"""One subscriber's email of an issue, as the bytes that go over SMTP, and the signup notices (`build_notice_message`)
with the same header writer. Pure: strings in, bytes out.

The header fields are written by `digest.headers`, the body parts' transfer encodings (8bit folding of the HTML)
by `digest.mimebody`; this module puts them together: the issue's `MessageTemplate`, filled in per subscriber, the
reference message it is checked against, DKIM signing and SMTP's DATA form (`WireMessage`). The names other
modules import from here before the split are still importable from here.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

from digest.errors import DeliveryError, SettingsError
from digest.headers import MAX_NAME_CHARS as MAX_NAME_CHARS
from digest.headers import SUBJECT_FIELDS as SUBJECT_FIELDS
from digest.headers import _list_id_header, delivery_fields
from digest.headers import address_field as address_field
from digest.headers import clean_header as clean_header
from digest.headers import feedback_id as feedback_id
from digest.headers import format_subject as format_subject
from digest.headers import list_unsubscribe as list_unsubscribe
from digest.headers import message_id as message_id
from digest.headers import sender_fields as sender_fields
from digest.headers import smtp_address as smtp_address
from digest.headers import text_field as text_field
from digest.mimebody import MAX_LINE_OCTETS as MAX_LINE_OCTETS
from digest.mimebody import URL_ROOM as URL_ROOM
from digest.mimebody import MessageTooLarge as MessageTooLarge
from digest.mimebody import _encoded_body, _folded_template, _html_encoding, _text_cte
from digest.mimebody import fold_html as fold_html
from digest.model import Subscriber
from digest.slots import PREFERENCES_PLACEHOLDER, UNSUBSCRIBE_PLACEHOLDER

#: Gmail clips a message whose HTML is larger than 102 KB; counted on the HTML part as transmitted.
GMAIL_CLIP_BYTES = 102_000

_SMTP = policy.SMTP  # CRLF line ends, non-ASCII headers RFC 2047-encoded, raw headers 7-bit


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
    reply_to: str = ""  # the setting `reply_to`: where replies go, when not to From
    # Mail providers whose webhooks need the delivery id in their own header too (headers.DELIVERY_PROVIDERS).
    providers: tuple[str, ...] = ()

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
    delivery_id: str = "",
) -> WireMessage:
    """The message for one subscriber as SMTP's DATA carries it (`.message` is the message itself: CRLF line ends,
    headers 7-bit, HTML part within `max_html_bytes` as transmitted). Raises MessageTooLarge when the HTML cannot
    be made to fit.

    Made from the issue's `MessageTemplate` (built once, then only the personal parts are filled in). `delivery_id`
    (the delivery's signed VERP id) goes into the header fields providers echo back (`headers.delivery_fields`)."""
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
        delivery_id=delivery_id,
    )


#: Holes in a template: the fields and body pieces that differ per subscriber.
_TO, _DATE, _MSGID, _UNSUB, _DELIVERY = "To", "Date", "Message-ID", "List-Unsubscribe", "X-Digest-Delivery"
#: The personal links in the body, in the order of `IssueMail.marks`; a literal part's hole is "<kind> <slot>".
SLOTS = ("unsubscribe", "preferences")
_TEXT_BODY, _HTML_BODY = "text body", "html body"
_PERSONAL_FIELDS = (_TO, _DATE, _MSGID, _UNSUB, _DELIVERY)
#: The fields `delivery_fields` writes, one hole together (named _DELIVERY).
_DELIVERY_FIELDS = frozenset({_DELIVERY, "X-Mailgun-Variables", "X-PM-Metadata-digest-delivery", "X-SMTPAPI"})
Links = tuple[str, str]  # (unsubscribe URL, preferences URL)
_MARK_SUBSCRIBER = Subscriber(email="template@template.invalid")
_MARK_DATE = datetime(2000, 1, 1, tzinfo=UTC)
_MARK_MSGID = "<template@template.invalid>"
_MARK_DELIVERY = "a" * 29


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
        delivery_id: str = "",
    ) -> bytes:
        """The message for one subscriber (DKIM-signed when a key is given), the same bytes as
        `build_reference_message` with this template's boundary."""
        links = (unsubscribe_url, preferences_url)
        values = self._values(subscriber, links, date, msgid, delivery_id)
        return self._message(values, subscriber, links, date, msgid, dkim, delivery_id)

    def render_wire(
        self,
        subscriber: Subscriber,
        *,
        unsubscribe_url: str,
        preferences_url: str = "",
        date: datetime,
        msgid: str,
        dkim: DkimKey | None = None,
        delivery_id: str = "",
    ) -> WireMessage:
        """`render` as SMTP's DATA carries it. The template's own bytes are dot-stuffed once, when it is made, so
        a message is one join instead of passes over all of its ~70 KB (the send loop's largest cost per message)."""
        links = (unsubscribe_url, preferences_url)
        values = self._values(subscriber, links, date, msgid, delivery_id)
        if values is not None and dkim is None and self.wire_pieces and all(map(_wire_safe, values.values())):
            data = _join(self.wire_pieces, values)
            return WireMessage(data, not data.isascii())
        return wire_message(self._message(values, subscriber, links, date, msgid, dkim, delivery_id))

    def _message(
        self,
        values: dict[str, bytes] | None,
        subscriber: Subscriber,
        links: Links,
        date: datetime,
        msgid: str,
        dkim: DkimKey | None,
        delivery_id: str = "",
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
                delivery_id=delivery_id,
            )
        return sign_dkim(data, dkim) if dkim is not None else data

    def _fill(
        self, subscriber: Subscriber, url: str, date: datetime, msgid: str, prefs: str = "", delivery_id: str = ""
    ) -> bytes | None:
        """The template filled in, or None when this subscriber's values do not fit it exactly."""
        values = self._values(subscriber, (url, prefs), date, msgid, delivery_id)
        return None if values is None else _join(self.pieces, values)

    def _values(
        self, subscriber: Subscriber, links: Links, date: datetime, msgid: str, delivery_id: str = ""
    ) -> dict[str, bytes] | None:
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
        values[_DELIVERY] = delivery_fields(delivery_id, self.mail.providers)
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
            delivery_id=_MARK_DELIVERY,
        )
        template = _cut_template(bare, reference, html_source)
    except (DeliveryError, ValueError):  # each message then says for itself what is wrong
        return bare
    # The template must give the reference's bytes, or it is not used at all; its wire form, the reference's.
    values = template._values(_MARK_SUBSCRIBER, mail.marks, _MARK_DATE, _MARK_MSGID, _MARK_DELIVERY)
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
        if name in _DELIVERY_FIELDS:  # the delivery id's fields, written together: one hole
            if not seen or seen[-1] != _DELIVERY:
                pieces.append(_DELIVERY)
                seen.append(_DELIVERY)
        elif name in _PERSONAL_FIELDS:
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


def _to_field(subscriber: Subscriber) -> bytes:
    """The To field: the subscriber's name as a display name, encoded by `address_field`."""
    return address_field("To", subscriber.name, subscriber.email)


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
    delivery_id: str = "",
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
    head = sender_fields(mail.from_address, _to_field(subscriber), mail.subject, date, mail.reply_to) + head
    raw = [
        ("Message-ID", clean_header(msgid)),
        ("List-Id", _list_id_header(mail.list_id)),
        ("List-Unsubscribe", list_unsubscribe(unsubscribe_url, unsubscribe_mailto).replace(", ", ",\r\n ")),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("Feedback-ID", feedback_id(mail.issue, mail.list_id)),
    ]
    extra = b"".join(f"{name}: {value}\r\n".encode("ascii") for name, value in raw)
    extra += delivery_fields(delivery_id, mail.providers)
    data = head + b"\r\n" + extra.rstrip(b"\r\n") + sep + body
    if dkim is not None:
        data = sign_dkim(data, dkim)
    return data


def build_notice_message(
    *, from_address: str, to: str, subject: str, body: str, date: datetime, msgid: str, reply_to: str = ""
) -> bytes:
    """A plain-text transactional message (the signup notices), its header written like an issue's
    (`sender_fields`, To without a display name) and marked `Auto-Submitted: auto-generated` (RFC 3834: no
    vacation replies to it): `email` only encodes the body and writes the MIME fields. `deliver_notice` signs it."""
    msg = EmailMessage(policy=_SMTP)
    msg.set_content(body, subtype="plain", charset="utf-8", cte=_text_cte(body, eight_bit=False))
    mime, sep, encoded = msg.as_bytes(policy=_SMTP).partition(b"\r\n\r\n")
    head = sender_fields(from_address, address_field("To", "", to), subject, date, reply_to) + (
        f"Message-ID: {clean_header(msgid).replace(' ', '')}\r\nAuto-Submitted: auto-generated\r\n".encode("ascii")
    )
    return head + mime + sep + encoded


def sign_dkim(data: bytes, key: DkimKey) -> bytes:
    """`data` with a DKIM-Signature header prepended, covering the headers receivers check for one-click."""
    import dkim  # noqa: PLC0415 (lazy: dkim only when used)

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
        b"reply-to",
        b"auto-submitted",
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
