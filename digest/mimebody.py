"""The body parts' transfer encodings: which Content-Transfer-Encoding each part gets, the encoded bytes, and the
folding of the HTML for 8bit.

The HTML part is sent 8bit when the server offers 8BITMIME (base64 inflates UTF-8 CJK text by a third and
quoted-printable by up to three times, which would push an issue past Gmail's clipping size). 8bit needs lines of at
most 998 octets, so the HTML is folded at places where a line break changes nothing: whitespace, the end of a tag,
or (as a last resort, inside long CJK runs) an invisible `<wbr>`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import quopri
import re
from email import policy, quoprimime

from digest.errors import DeliveryError

_SMTP_LINE: int = policy.SMTP.max_line_length or 78  # where `email` wraps base64 / quoted-printable
#: RFC 5322: a line is at most 998 octets, CRLF excluded.
MAX_LINE_OCTETS = 998
#: Room left on each line of the shared HTML for the personal unsubscribe URL that replaces the placeholder.
URL_ROOM = 400
_RAW_TEXT = ("style", "script", "pre", "textarea", "title", "xmp")


class MessageTooLarge(DeliveryError):
    """The HTML part would be clipped by Gmail as transmitted."""


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
