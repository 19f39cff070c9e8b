"""The small messages of signup: the confirmation request, the welcome after confirming, and the note to an
address that is already subscribed. Plain text from templates users can edit (`mail_*.txt.j2`: the first line is
the subject, the rest the body). The header is written by `digest.message` exactly as an issue's (never parsed back
by the `email` package, which on Python 3.11.7 turns an encoded word into a real header line); no display name goes
into To.
"""

from __future__ import annotations

from datetime import datetime
from email.utils import make_msgid
from enum import StrEnum
from typing import Any

import jinja2

from digest.message import build_notice_message, clean_header


class Notice(StrEnum):
    """Which signup message; the value names its template."""

    CONFIRM = "mail_confirm.txt.j2"
    WELCOME = "mail_welcome.txt.j2"
    ALREADY = "mail_already.txt.j2"
    PERSONAL_DATA = "mail_personal_data.txt.j2"
    NEW_LINK = "mail_new_link.txt.j2"


def render_notice(env: jinja2.Environment, notice: Notice, **values: Any) -> tuple[str, str]:
    """(subject, body) of a notice: its template's first line and the rest."""
    text = env.get_template(notice.value).render(values)
    first, _, body = text.lstrip("\n").partition("\n")
    subject = first.removeprefix("Subject:").strip()
    return subject, body.lstrip("\n")


def build_notice(
    *, from_address: str, to: str, subject: str, body: str, now: datetime, domain: str, reply_to: str = ""
) -> bytes:
    """One plain-text message, ready for SMTP (`deliver_notice` signs it and gives it its return path)."""
    try:
        host = "".join(clean_header(domain).split()).encode("idna").decode("ascii")
    except UnicodeError:
        host = ""
    return build_notice_message(
        from_address=from_address,
        to=to,
        subject=subject,
        body=body,
        date=now,
        msgid=make_msgid(domain=host or "localhost"),
        reply_to=reply_to,
    )
