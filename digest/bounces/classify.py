"""Hard or soft: what a server's refusal says about an address. Pure.

A hard bounce means the address cannot receive mail (it does not exist, its domain does not, the mailbox is
disabled): mailing it again only hurts the sender's reputation, so it is suppressed at once. Anything else that
failed (mailbox full, message refused as too large or as spam, a policy block, a temporary failure reported in a
DSN) is soft: the address may work next week, so only a streak of them suppresses it. The enhanced status code
(RFC 3463) decides; a bare 5xx reply decides by its wording only for the phrases servers use for unknown users.
"""

from __future__ import annotations

import re
from enum import StrEnum


class BounceKind(StrEnum):
    """How bad a failure is for the address (stored on the ledger row)."""

    HARD = "hard"
    SOFT = "soft"


#: Enhanced status codes (RFC 3463) that say the address itself is bad.
HARD_CODES = frozenset(
    {
        "5.1.0",  # other address status
        "5.1.1",  # bad destination mailbox address
        "5.1.2",  # bad destination system address (the domain does not exist)
        "5.1.3",  # bad destination mailbox address syntax
        "5.1.6",  # destination mailbox has moved, no forwarding address
        "5.1.10",  # recipient address has null MX (RFC 7505)
        "5.2.1",  # mailbox disabled, not accepting messages
    }
)
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_BASIC = re.compile(r"(?<!\d)([245]\d\d)(?!\d)")
_UNKNOWN_USER = re.compile(
    r"user unknown|unknown user|no such (?:user|mailbox|recipient)|does not exist|recipient unknown"
    r"|unknown recipient|mailbox not found|invalid recipient|address rejected: user",
    re.IGNORECASE,
)


def enhanced_code(text: str) -> str | None:
    """The first enhanced status code (`5.1.1`) in a reply or diagnostic, or None."""
    match = _ENHANCED.search(text)
    return ".".join(match.groups()) if match else None


def classify_code(code: str | None, text: str = "") -> BounceKind:
    """Hard for the codes in HARD_CODES (or, without a code, for a 5xx that says "user unknown"); else soft."""
    if code is not None:
        return BounceKind.HARD if code in HARD_CODES else BounceKind.SOFT
    basic = _BASIC.search(text)
    if basic and basic.group(1).startswith("5") and _UNKNOWN_USER.search(text):
        return BounceKind.HARD
    return BounceKind.SOFT


def classify_reply(detail: str) -> BounceKind | None:
    """What a permanent SMTP refusal recorded as `detail` (e.g. "RCPT TO: 550 5.1.1 ...") means; None when it is
    not a server's 5xx reply at all (the message could not be built, a local error)."""
    basic = _BASIC.search(detail)
    if basic is None or not basic.group(1).startswith("5"):
        return None
    return classify_code(enhanced_code(detail), detail)
