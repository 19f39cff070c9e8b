"""Hard or soft, and why: what a server's refusal says about an address. Pure.

A hard bounce means the address cannot receive mail (it does not exist, its domain does not, the mailbox has moved
or is disabled, the domain takes no mail): mailing it again only hurts the sender's reputation, so it is suppressed
at once. Anything else that failed (mailbox full, message too large, refused as spam, a blocklist, a rate limit,
greylisting, a refusal of the *sender*) is soft: the address may work next week, so only a streak of them
suppresses it. This follows Sisimai's reason table (https://libsisimai.org/en/reason/): hard only for userunknown,
hostunknown, hasmoved and notaccept with a permanent (5xx) failure; its phrase lists informed the patterns below.

All the rules are in `REASONS`, one row per reason, tried in order. The diagnostic's wording is read first, so a
blocklist or quota message that carries 5.1.1 is still soft; the enhanced status code (RFC 3463) decides only when
no row's words match, and a generic code (`x.0.0`) or none decides nothing by itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class BounceKind(StrEnum):
    """How bad a failure is for the address (stored on the ledger row)."""

    HARD = "hard"
    SOFT = "soft"


@dataclass(frozen=True)
class Reason:
    """One row of the table: a reason's name (Sisimai's word), whether a permanent failure for it is hard, the
    enhanced codes that name it when the text says nothing known, and the phrases that name it (lower case)."""

    name: str
    hard: bool
    codes: tuple[str, ...]
    phrases: re.Pattern[str]


def _words(*phrases: str) -> re.Pattern[str]:
    return re.compile("|".join(phrases))


#: Tried top to bottom, on the diagnostic in lower case with its spaces collapsed: the first row whose phrases
#: match wins. Refusals that are about the sender, the message or the sending host come first, so that the
#: 5.1.1 or 5.2.1 some servers put on them does not make the recipient's address look bad.
REASONS: tuple[Reason, ...] = (
    Reason(
        "mailboxfull",
        False,
        ("4.2.2", "5.2.2"),
        _words(
            r"mailbox (?:is )?full",
            r"full mailbox",
            r"mailfolder is full",
            r"over ?(?:the allowed |disk |her |his |their )?quota",
            r"quota (?:exceeded|violation|usage)",
            r"exceed(?:ed|s|ing)? (?:the |their |its )?(?:mailbox |storage |disk )*(?:quota|storage|space)",
            r"(?:not )?enough (?:storage )?space",
            r"mailbox size limit exceeded",
            r"disc quota",
            r"too much mail data",
            r"has too many messages",
            r"space has been used up",
            r"insufficient (?:system )?storage",
        ),
    ),
    Reason(
        "mesgtoobig",
        False,
        ("5.3.4", "4.3.4", "5.2.3", "4.2.3"),
        _words(
            r"message (?:is )?too (?:big|large)",
            r"message size exceeds",
            r"exceeds (?:the )?(?:maximum )?(?:message )?size",
            r"size limit",
            r"message length exceeds",
        ),
    ),
    Reason(
        "greylisted",
        False,
        (),
        _words(r"gr[ae]ylist", r"try again later", r"please retry later", r"temporarily deferred"),
    ),
    Reason(
        "ratelimited",
        False,
        ("4.7.28", "5.7.28"),
        _words(
            r"rate limit",
            r"ratelimit",
            r"too many (?:messages|connections|recipients|mails|emails)",
            r"sending (?:rate|limit)",
            r"unusual rate",
            r"receiving limits",
            r"throttl",
            r"exceeded (?:the )?(?:daily |hourly )?(?:sending |message )?limit",
        ),
    ),
    Reason(
        "blocked",
        False,
        ("5.7.25", "5.7.26"),
        _words(
            r"blocklist",
            r"blacklist",
            r"block ?list",
            r"\brbl\b",
            r"\bdnsbl\b",
            r"spamhaus",
            r"spamcop",
            r"barracuda",
            r"sorbs",
            r"(?<!not )listed (?:at|in|on|by)",
            r"(?<!not )is listed",
            r"client host (?:\[[^]]*\] )?(?:blocked|rejected)",
            r"blocked (?:by|using|because|due)",
            r"access denied\.? \[?[0-9a-f]",  # "access denied. ip name lookup failed [1.2.3.4]" (outlook)
            r"\bip (?:address )?(?:\S+ )?(?:is )?(?:blocked|banned|rejected|not allowed)",
            r"reverse (?:dns|lookup)",
            r"no ptr",
            r"poor reputation",
            r"bad reputation",
            r"connection refused",
        ),
    ),
    Reason(
        "spamdetected",
        False,
        ("5.7.350",),
        _words(
            r"\bspam\b",
            r"junk mail",
            r"unsolicited",
            r"bulk mail",
            r"message (?:was )?(?:rejected|refused|blocked) (?:as|because|due)",
            r"content (?:rejected|filter)",
            r"virus",
            r"malware",
            r"phishing",
            r"suspicious",
        ),
    ),
    Reason(
        "authfailure",
        False,
        ("5.7.23", "5.7.27", "4.7.26"),
        _words(
            r"\bspf\b",
            r"\bdkim\b",
            r"\bdmarc\b",
            r"authenticat",
            r"not authorized to send",
            r"unauthenticated",
        ),
    ),
    Reason(
        "rejected",
        False,
        ("5.1.7", "5.1.8", "5.7.1"),
        _words(
            r"sender (?:address |domain )?(?:\S+ )?(?:rejected|refused|denied|blocked|not (?:allowed|accepted))",
            r"(?:rejected|refused|denied) (?:the )?sender",
            r"sender (?:is |was )?(?:not |un)?(?:verified|verify)",
            r"sender verify failed",
            r"your (?:domain|address|email address) (?:has been |is )?(?:blocked|banned|rejected|not allowed)",
            r"domain of sender",
            r"mail from",
            r"envelope sender",
            r"relay(?:ing)? (?:access )?denied",
            r"not permitted to relay",
            r"we do not relay",
            r"policy",
            r"administrative prohibition",
            r"prohibited",
            r"not accepted for policy",
        ),
    ),
    Reason(
        "hasmoved",
        True,
        ("5.1.6",),
        _words(r"has moved", r"address has changed", r"moved to a new address", r"no longer (?:at|with) "),
    ),
    Reason(
        "notaccept",
        True,
        ("5.1.10",),
        _words(
            r"null mx",
            r"does not accept (?:e-?)?mail",
            r"accepts no mail",
            r"not accepting (?:any )?(?:e-?)?mail",
            r"nullmx",
        ),
    ),
    Reason(
        "hostunknown",
        True,
        ("5.1.2", "5.4.4"),
        _words(
            r"host (?:or domain name )?not found",
            r"host unknown",
            r"unknown host",
            r"domain (?:does not|doesn't) exist",
            r"domain (?:name )?not found",
            r"no such domain",
            r"unknown domain",
            r"domain must exist",
            r"name or service not known",
            r"unrouteable address",
            r"no mx (?:record|host)",
            r"nxdomain",
            r"domain is not reachable",
            r"mail domain mentioned in email address is unknown",
        ),
    ),
    Reason(
        "userunknown",
        True,
        ("5.1.0", "5.1.1", "5.1.3"),
        _words(
            r"user(?:name)? (?:is )?unknown",
            r"unknown (?:user|recipient|mailbox|local ?part|e-?mail address|address)",
            r"address unknown",
            r"no such (?:user|mailbox|recipient|person|address|account)",
            r"user (?:\S+ )?(?:does not|doesn't|not) exist",
            r"(?:mailbox|recipient|address|account|user) (?:\S+ )?(?:does not|doesn't|did not) exist",
            r"(?:recipient|user|mailbox|address) (?:\S+ )?(?:was )?not found",
            r"not (?:a )?(?:valid|known) (?:user|recipient|mailbox)",
            r"is not a known user",
            r"invalid (?:recipient|mailbox|address|user|e-?mail address)",
            r"recipient (?:address )?(?:is )?invalid",
            r"address (?:is )?invalid",
            r"recipient address rejected: (?:user|invalid|unknown|access denied)",
            r"recipientnotfound",
            r"recipient not (?:ok|exist)",
            r"mailbox (?:is )?(?:unavailable|unavaiable|invalid|not present|inactive)",
            r"mailbox not found",
            r"no mailbox",
            r"account (?:has been |is )?(?:disabled|deactivated|suspended|closed|inactive|expired|locked)",
            r"(?:disabled|deactivated|inactive|closed) (?:account|mailbox)",
            r"is disabled",
            r"no longer (?:valid|active|in use|available|exists)",
            r"badrcptto",
            r"no account by that name",
            r"(?:does not|doesn't) have an? \S+ account",
            r"there is no one at this address",
            r"not listed in (?:the )?(?:domino directory|address book|public name)",
            r"utilisateur inconnu",
            r"not our customer",
            r"recipient (?:address )?rejected",
        ),
    ),
    Reason("disabled", True, ("5.2.1",), _words(r"(?!)")),
    Reason("expired", False, ("4.4.7", "5.4.7"), _words(r"delivery time expired", r"retry time", r"too long")),
    Reason(
        "networkerror",
        False,
        ("4.4.1", "4.4.2", "5.4.6", "4.4.6", "5.4.1"),
        _words(r"connection timed out", r"network is unreachable", r"mail loop", r"loops back", r"timeout"),
    ),
)

_BY_NAME = {reason.name: reason for reason in REASONS}
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_BASIC = re.compile(r"(?<![\d.])([45]\d\d)(?![\d.])")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Verdict:
    """What a failure says about the address: hard or soft, and Sisimai's word for why ("undefined" if unknown)."""

    kind: BounceKind
    reason: str


def enhanced_code(text: str) -> str | None:
    """The first enhanced status code (`5.1.1`) in a reply or diagnostic, or None."""
    match = _ENHANCED.search(text)
    return ".".join(match.groups()) if match else None


def classify(code: str | None, text: str = "", *, permanent: bool | None = None) -> Verdict:
    """The verdict on one failed recipient from its status code (`5.0.0`, may be None) and diagnostic text.

    The text's words decide first (`REASONS`, in order), then a specific status code. A reason in the hard rows is
    hard only for a permanent failure: a 5.x.x status, else a 5xx reply in the text, else `permanent` (what the
    report itself says, e.g. a DSN's `Action: failed` with no code at all)."""
    words = _SPACES.sub(" ", text.lower())
    reason = next((r for r in REASONS if r.phrases.search(words)), None)
    if reason is None and code is not None:
        reason = next((r for r in REASONS if code in r.codes), None)
        if reason is None and code.startswith("5.1.") and code not in ("5.1.7", "5.1.8"):
            reason = _BY_NAME["userunknown"]  # 5.1.x: the destination address is bad (5.1.351 of Office 365 ...)
    if reason is None:
        return Verdict(BounceKind.SOFT, "undefined")
    if code is not None:
        failed = code.startswith("5")
    else:
        basic = _BASIC.search(text)
        failed = basic.group(1).startswith("5") if basic else bool(permanent)
    return Verdict(BounceKind.HARD if reason.hard and failed else BounceKind.SOFT, reason.name)


def classify_code(code: str | None, text: str = "") -> BounceKind:
    """Hard or soft for a failure with status `code` and diagnostic `text` (see `classify`)."""
    return classify(code, text).kind


def classify_reply(detail: str) -> BounceKind | None:
    """What a permanent SMTP refusal recorded as `detail` (e.g. "RCPT TO: 550 5.1.1 ...") means; None when it is
    not a server's 5xx reply at all (the message could not be built, a local error)."""
    basic = _BASIC.search(detail)
    if basic is None or not basic.group(1).startswith("5"):
        return None
    return classify_code(enhanced_code(detail), detail)


def classify_provider(code: str | None, text: str, *, hard: bool) -> Verdict:
    """The verdict on a bounce a mail provider reports with its own judgement (SES Permanent/Transient, Postmark
    HardBounce/SoftBounce, SendGrid bounce/blocked, a generic webhook's hard/soft). The words decide as for a DSN,
    so a blocklist refusal the provider calls permanent stays soft; when they name no reason (or there is no
    diagnostic at all), the provider's `hard` stands. A provider's soft is never made hard."""
    verdict = classify(code, text, permanent=hard)
    if not hard:
        return Verdict(BounceKind.SOFT, verdict.reason)
    if verdict.reason == "undefined" or (verdict.kind is BounceKind.SOFT and not text.strip()):
        return Verdict(BounceKind.HARD, "userunknown")
    return verdict


#: Amazon SES bounce subtypes (https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html) that are about
#: the message or the sender, not the address: soft even under bounceType Permanent, as Sisimai reads them.
SES_SOFT_SUBTYPES: dict[str, str] = {
    "mailboxfull": "mailboxfull",
    "messagetoolarge": "mesgtoobig",
    "contentrejected": "contenterror",
    "attachmentrejected": "contenterror",
}


def classify_ses(bounce_type: str, subtype: str, code: str | None, diagnostic: str) -> Verdict:
    """One bounced recipient of an SES notification (by mail or webhook alike): `bounceType` Permanent is hard
    unless its subtype or the diagnostic's words say otherwise (`classify_provider`); Transient and Undetermined
    are soft; the subtype `Suppressed` (the address is on SES's suppression list) is hard."""
    sub = subtype.lower()
    if bounce_type != "Permanent":
        return classify_provider(code, diagnostic, hard=False)
    if sub in SES_SOFT_SUBTYPES:
        return Verdict(BounceKind.SOFT, SES_SOFT_SUBTYPES[sub])
    verdict = classify(code, diagnostic, permanent=True)
    if verdict.reason == "undefined" or (verdict.kind is BounceKind.SOFT and not diagnostic.strip()):
        return Verdict(BounceKind.HARD, "suppressed" if sub == "suppressed" else "userunknown")
    return verdict
