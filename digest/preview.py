"""`digest preview`: the coming issue mailed to the editor exactly as subscribers will get it, with a preflight.

The issue is built by `Publisher.coming_issue` (the render's own selection and email rows, in a transaction that is
rolled back) and mailed through the issue mailer's message builder and the configured transport, so the HTML is the
subscribers' HTML. Two things differ, both on purpose: the subject starts with "[Preview]" and a preflight block
stands above the email (in both parts) saying what goes out, to whom, what waits, and what is wrong.

The personal links of a preview are made for no subscription: subscriber id 0 with an empty nonce. `read_token`
refuses a token without a nonce ("this link is not valid") and no subscriber has id 0, so the preview's unsubscribe
and preference links do nothing, even when the editor is a subscriber too.

A preview records nothing, with one exception made by the scheduler: the slot whose preview went, in the state's
meta table (`preview_mailed`), claimed before the mail goes, so a slot's preview is mailed at most once whatever
restarts or crashes in between (at most once is right for a preview: a lost one is a nuisance, a repeated one spam).
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import make_msgid
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from digest.checkup import schedule_problem, state_problem, template_problems
from digest.editor import glossary_report
from digest.errors import DeliveryError, SettingsError
from digest.hold import read_hold
from digest.message import GMAIL_CLIP_BYTES, MessageTooLarge, build_notice_message
from digest.model import ProblemKind
from digest.schedule import next_fire_time, settings_trigger
from digest.slots import PersonalSlots
from digest.status import delivery_status, issue_rates
from digest.topics import assign_topics
from digest.transport import Outcome, SendResult, deliver_notice
from digest.wording import counted

if TYPE_CHECKING:
    from digest.message import IssueMail
    from digest.publisher import ComingIssue, Publisher
    from digest.settings import Settings
    from digest.store import Store

__all__ = [
    "KEY",
    "SUBJECT_PREFIX",
    "PreviewReport",
    "claim_slot",
    "mail_preview",
    "preflight_html",
    "preflight_text",
    "with_preflight",
]

KEY = "preview_mailed"  # meta: the slot (ISO 8601, UTC) whose preview was last mailed
SUBJECT_PREFIX = "[Preview] "
BANNER_ID = "digest-preview-preflight"  # the block's id in the HTML: the rest is the subscribers' email


@dataclass(frozen=True)
class PreviewReport:
    """What a preview did: to whom, which issue (None: nothing new to publish), and the preflight it carried."""

    to: tuple[str, ...]
    issue: int | None
    papers: int
    html_bytes: int
    preflight: tuple[tuple[str, tuple[str, ...]], ...]


Section = tuple[str, tuple[str, ...]]  # (heading, lines)


def preflight_text(title: str, sections: Sequence[Section]) -> str:
    """The preflight as plain text, for the top of the text part."""
    out = [title, "=" * min(len(title), 72)]
    for heading, lines in sections:
        out += ["", heading + ":"] + [f"  - {line}" for line in lines]
    return "\n".join(out) + "\n\n" + "-" * 72 + "\n\n"


def preflight_html(title: str, sections: Sequence[Section]) -> str:
    """The preflight as one HTML block (inline styles only: mail clients drop style sheets), every text escaped."""
    font = "font-family:-apple-system,'Segoe UI','PingFang SC','Microsoft YaHei','Noto Sans CJK SC',sans-serif"
    parts = [
        f'<div id="{BANNER_ID}" style="{font};max-width:600px;margin:16px auto;padding:12px 16px;'
        'border:2px dashed #b45309;background:#fffbeb;color:#1f2937;font-size:14px;line-height:1.5">',
        f'<div style="font-size:16px;font-weight:bold;color:#92400e">{html.escape(title)}</div>',
    ]
    for heading, lines in sections:
        parts.append(f'<div style="margin-top:8px;font-weight:bold">{html.escape(heading)}</div>')
        items = "".join(f'<li style="margin:0">{html.escape(line)}</li>' for line in lines)
        parts.append(f'<ul style="margin:2px 0 0 0;padding-left:20px">{items}</ul>')
    parts.append("</div>")
    return "".join(parts)


def with_preflight(mail: IssueMail, text_block: str, html_block: str) -> IssueMail:
    """The issue's mail as the editor's preview: "[Preview]" before the subject, the preflight above the email
    (right after `<body ...>` in the HTML, first in the text); the email itself is left as it is."""
    page = mail.html
    start = page.lower().find("<body")
    end = page.find(">", start) + 1 if start >= 0 else 0
    return replace(
        mail,
        subject=SUBJECT_PREFIX + mail.subject,
        html=page[:end] + html_block + page[end:],
        text=text_block + mail.text,
    )


def claim_slot(store: Store, slot: str) -> bool:
    """Record that the preview of `slot` goes now; False when it went already (or a twin claimed it first).
    Claimed before sending: at most once."""
    with store.transaction():
        store.serialize(KEY)  # two schedulers on one PostgreSQL state: one of them claims the slot
        if store.meta(KEY) == slot:
            return False
        store.set_meta(KEY, slot)
    return True


def mail_preview(
    publisher: Publisher,
    now: datetime,
    *,
    to: Sequence[str] | None = None,
    slot_time: datetime | None = None,
    claim: Callable[[], bool] | None = None,
) -> PreviewReport | None:
    """Mail the coming issue (published at `slot_time`, default: the next slot, else `now`) with its preflight to
    `to` (default: editor_address). Records nothing but what `claim` records: called once everything is built,
    right before the mail goes; when it answers False nothing is mailed (None). SettingsError when there is
    nobody to mail."""
    settings = publisher.settings
    recipients = tuple(to or settings.editor_address)
    if not recipients:
        raise SettingsError("editor_address is not set: set it (DIGEST_EDITOR_ADDRESS), or give --to")
    if slot_time is None:
        try:
            slot_time = next_fire_time(settings_trigger(settings), now)
        except SettingsError:
            slot_time = None
    published = slot_time or now
    slot = published.astimezone(UTC).isoformat() if slot_time else None
    coming = publisher.coming_issue(published, now, slot=slot)
    sender = publisher.sender()
    sections: list[Section] = []
    when = _when(published, settings)
    if coming.issue is None:
        title = f"{SUBJECT_PREFIX}{settings.title}: nothing to publish {when}"
        sections.append(("Issue", ("No new paper waits: the slot publishes and mails nothing.",)))
        sections += _preflight(publisher, coming, now, slot_time)
        body = preflight_text(title, sections)
        if claim is not None and not claim():
            return None
        for address in recipients:
            message = build_notice_message(
                from_address=settings.from_address,
                to=address,
                subject=title,
                body=body,
                date=now,
                msgid=_notice_id(settings.site_url),
            )
            _delivered(address, deliver_notice(settings, address, message))
        return PreviewReport(recipients, None, 0, 0, tuple(sections))

    issue = coming.issue
    folder = f"issues/{issue.number}/.mail/"

    slots = PersonalSlots.from_json(json.loads(coming.files[folder + "slots.json"]))
    mail = sender.mail_of(
        issue.number,
        published,
        len(issue.entries),
        coming.files[folder + "email.html"].decode("utf-8"),
        coming.files[folder + "email.txt"].decode("utf-8"),
        slots,
    )
    try:
        size, too_large = sender.html_bytes(mail), ""  # the subscribers' message, as sent: the size Gmail clips at
    except MessageTooLarge as exc:  # `digest send` would refuse it: the preview is where the editor learns so
        size, too_large = len(mail.html.encode("utf-8")), str(exc)
    title = f"{SUBJECT_PREFIX}issue {issue.number} of {settings.title}, to be mailed {when}"
    lines = _issue_lines(settings, coming, size)
    sections.append(("Issue", (*lines, f"NOT MAILABLE: {too_large}") if too_large else lines))
    sections += _preflight(publisher, coming, now, slot_time)
    preview = with_preflight(mail, preflight_text(title, sections), preflight_html(title, sections))
    if claim is not None and not claim():
        return None
    extra = len(preview.html.encode()) - len(mail.html.encode()) + (size if too_large else 0)
    sender.send_preview(preview, recipients, extra_html_bytes=extra)
    return PreviewReport(recipients, issue.number, len(issue.entries), size, tuple(sections))


def _notice_id(site_url: str) -> str:
    host = urlsplit(site_url).hostname or "localhost"
    try:
        return make_msgid("preview", domain=host.encode("idna").decode("ascii"))
    except UnicodeError:
        return make_msgid("preview", domain="localhost")


def _delivered(address: str, result: SendResult) -> None:
    if result.outcome is not Outcome.SENT:
        raise DeliveryError(f"preview to {address} {result.outcome.value}: {result.detail}")


def _issue_lines(settings: Settings, coming: ComingIssue, size: int) -> tuple[str, ...]:
    assert coming.issue is not None
    entries = coming.issue.entries
    names = {t.slug: t.name_en for t in settings.topic_list}
    per_topic = Counter(names.get(next(iter(assign_topics(e, settings.topic_list)), ""), "no topic") for e in entries)
    lines = [
        f"{counted(len(entries), 'paper')}: " + ", ".join(f"{name} {n}" for name, n in per_topic.most_common()),
    ]
    if coming.waiting:
        lines.append(
            f"{counted(coming.waiting, 'more paper waits', 'more papers wait')} for later issues"
            f" (max_entries_per_issue {settings.max_entries_per_issue})"
        )
    verdict = "fits" if size <= GMAIL_CLIP_BYTES else "CLIPPED: readers see the start and a link"
    lines.append(f"email: {size:,} bytes of HTML as sent; Gmail clips above {GMAIL_CLIP_BYTES:,}: {verdict}")
    return tuple(lines)


def _preflight(publisher: Publisher, coming: ComingIssue, now: datetime, slot_time: datetime | None) -> list[Section]:
    """Drafts, problems, subscribers, the last issue's mailing and how to hold: the sections after the issue's."""
    settings = publisher.settings
    scan = publisher.scan_seeds()
    drafts = [f"{p}" for p in coming.problems if p.kind is ProblemKind.DRAFT]
    problems = [f"{p}" for p in coming.problems if p.kind is not ProblemKind.DRAFT]
    problems += glossary_report(settings, scan)
    problems += template_problems(publisher, scan.entries, now)
    problems += [p for p in (schedule_problem(settings), state_problem(settings)[1]) if p]
    sections: list[Section] = [
        ("Drafts still waiting (not in this issue)", tuple(drafts) or ("none",)),
        ("Problems (digest check, glossary)", tuple(problems) or ("none",)),
    ]
    with publisher.open_store() as store:
        active = store.active_subscribers()
        chosen = store.subscriber_topics()
        last = store.mailed_issues(1)
        rates = issue_rates(store, last[0]) if last else None
        deliveries = delivery_status(store, last[0]) if last else None
        hold = read_hold(store)
    partial = sum(1 for s in active if chosen.get(s.id))
    sections.append(
        (
            "Subscribers",
            (
                f"{counted(len(active), 'active subscriber')} will get it"
                + (f" ({partial} of them only the papers of their chosen topics)" if partial else ""),
            ),
        )
    )
    if rates is not None:
        mailed = ", ".join(f"{n} {s.value}" for s, n in deliveries.counts.items() if n) if deliveries else "nothing yet"
        sections.append(
            (f"Last issue mailed ({rates.issue})", (f"deliveries: {mailed}", f"bounces: {rates.describe()}"))
        )
    else:
        sections.append(("Last issue mailed", ("none yet",)))
    # Held until the slot after this one: this slot is skipped even when its firing comes late, the next one runs.
    following = next_fire_time(settings_trigger(settings), slot_time) if slot_time else None
    until = f" --until {following.astimezone(settings.tz):%Y-%m-%dT%H:%M:%S}" if following else ""
    how = [
        f'to stop this issue: digest hold{until} --reason "why" (its papers go out with the next slot)',
        "digest release ends a hold; digest preview --to YOU sends this preview again after a fix",
        "the unsubscribe and preference links in a preview are made for no subscriber: they do nothing",
    ]
    if hold is not None and hold.active(slot_time or now):
        how.insert(0, "HELD" + (f": {hold.reason}" if hold.reason else "") + ": this slot publishes and mails nothing")
    sections.append(("Hold or let it go", tuple(how)))
    return sections


def _when(moment: datetime, settings: Settings) -> str:
    return f"at {moment.astimezone(settings.tz):%Y-%m-%d %H:%M %Z}"
