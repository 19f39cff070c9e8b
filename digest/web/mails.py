"""The small messages of signup: the confirmation request, the welcome after confirming, and the note to an
address that is already subscribed. Plain text from templates users can edit (`mail_*.txt.j2`: the first line is
the subject, the rest the body), built with the `email` package (policy.SMTP, 7-bit transfer encodings) with every
header value cleaned first. No display name goes into To: the address alone cannot smuggle a header.
"""

from __future__ import annotations

from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from enum import StrEnum
from typing import Any

import jinja2

from digest.message import clean_header, smtp_address

_POLICY = policy.SMTP.clone(cte_type="7bit")


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


def build_notice(*, from_address: str, to: str, subject: str, body: str, now: datetime, domain: str) -> bytes:
    """One plain-text message, ready for SMTP."""
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = clean_header(from_address)
    local, _, host = smtp_address(clean_header(to)).rpartition("@")
    msg["To"] = Address(username=local, domain=host)
    msg["Subject"] = clean_header(subject)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=clean_header(domain) or "localhost")
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body)
    return msg.as_bytes()
