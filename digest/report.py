"""The editor's report after a mailing: once an issue's mailing ends (`digest send`, or the mailing half of `digest
run`), each `editor_address` gets one short mail with the ledger's counts, the bounces and complaints so far, the
subscribers gained and lost since the previous issue, the issue's link and the status page attached.

Never twice for one mailing, with the ledger's discipline, in the meta table (keys in digest/status.py):
- the end of a mailing is recorded first (`editor_report:N` = "ended ..."); a process that dies after that leaves
  the report due, and the next send or run delivers it;
- each address's report is claimed ("claimed ...", committed) before its message leaves, and its outcome recorded
  after: "sent", "failed" (refused for good), or "deferred" (nothing reached the server; tried again next time);
- a claim found by a later run is a report whose outcome is unknown (the process died while sending it): it becomes
  "unknown" and is not sent again, like an issue's delivery; `digest status` says so.
Once every address has an outcome, the issue's key becomes "reported".
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from digest.bounces.rates import IssueRates
from digest.errors import DeliveryError
from digest.headers import address_field, clean_header, message_id, sender_fields
from digest.model import DeliveryStatus, SubscriberStatus
from digest.status import REPORT_ADDRESS_KEY, REPORT_KEY, editor_report_states, issue_rates
from digest.transport import Outcome, SendResult

if TYPE_CHECKING:
    from digest.settings import Settings
    from digest.store import Store

log = logging.getLogger(__name__)

ATTACHMENT = "status.html"


@dataclass(frozen=True)
class MailingReport:
    """What the editor is told about one issue's mailing."""

    issue: int
    counts: dict[DeliveryStatus, int]  # the whole ledger of the issue, every run of its mailing
    rates: IssueRates  # bounces and complaints so far
    previous: int | None  # the issue before, whose publication starts the gained/lost window
    gained: int
    lost: int
    active: int
    link: str

    @property
    def sent(self) -> int:
        """Messages the server accepted (a complaint came after an acceptance)."""
        return self.counts[DeliveryStatus.SENT] + self.counts[DeliveryStatus.COMPLAINED]

    @property
    def failed(self) -> int:
        """Messages the server refused (hard or soft), or that bounced later (a DSN)."""
        return self.counts[DeliveryStatus.FAILED] + self.counts[DeliveryStatus.BOUNCED]

    @property
    def subject_counts(self) -> str:
        """The counts the subject carries."""
        c = self.counts
        return (
            f"{self.sent} sent, {self.failed} failed, {c[DeliveryStatus.DEFERRED]} deferred,"
            f" {c[DeliveryStatus.UNKNOWN]} unknown"
        )


def mailing_report(store: Store, settings: Settings, issue: int, now: datetime) -> MailingReport:
    """The report on issue `issue`'s mailing as of `now` (read only)."""
    counts = store.delivery_counts(issue)
    heads = {h.number: h for h in store.issue_summaries()}
    previous = max((n for n in heads if n < issue), default=None)
    since = heads[previous].published if previous is not None else None
    gained = lost = active = 0
    for record in store.subscriber_records():
        joined = record.confirmed or record.created
        if record.subscriber.status is not SubscriberStatus.PENDING and (since is None or joined > since):
            gained += joined <= now
        left = record.unsubscribed
        if left is not None and (since is None or left > since) and left <= now:
            lost += 1
        active += record.subscriber.status is SubscriberStatus.ACTIVE
    return MailingReport(
        issue=issue,
        counts=counts,
        rates=issue_rates(store, issue),
        previous=previous,
        gained=gained,
        lost=lost,
        active=active,
        link=f"{settings.site_url}issues/{issue}/",
    )


def report_subject(report: MailingReport, title: str) -> str:
    """The report's subject line."""
    return f"{title}: issue {report.issue} mailed: {report.subject_counts}"


def report_lines(report: MailingReport) -> list[tuple[str, str]]:
    """(label, value) of every line of the report, worded once for the text and the HTML part."""
    c, r = report.counts, report.rates
    since = f"issue {report.previous}" if report.previous is not None else "the start"
    deferred, unknown = c[DeliveryStatus.DEFERRED], c[DeliveryStatus.UNKNOWN]
    skipped = [("not mailed (no paper in their topics)", str(n))] if (n := c[DeliveryStatus.SKIPPED]) else []
    return [
        ("sent", str(report.sent)),
        ("failed", str(report.failed)),
        ("deferred", f"{deferred}" + (" (the next `digest send` tries them again)" if deferred else "")),
        ("unknown", f"{unknown}" + (" (may have been delivered: see `digest status`)" if unknown else "")),
        *skipped,
        ("bounces so far", f"{r.hard} hard ({r.rate(r.hard):.2%}), {r.soft} soft ({r.rate(r.soft):.2%})"),
        ("complaints so far", f"{r.complained} ({r.rate(r.complained):.2%})"),
        (f"subscribers since {since}", f"+{report.gained} joined, {report.lost} left; {report.active} active now"),
        ("the issue", report.link),
        ("status page", f"attached ({ATTACHMENT}): charts of subscribers, delivery, bounces and topics"),
    ]


def report_text(report: MailingReport, title: str) -> str:
    """The plain-text body."""
    lines = report_lines(report)
    width = max(len(label) for label, _ in lines)
    body = "\n".join(f"{label + ':':<{width + 1}} {value}" for label, value in lines)
    return f"{title}: the mailing of issue {report.issue} has ended.\n\n{body}\n\n-- digest (a report, not a reply)\n"


def report_html(report: MailingReport, title: str) -> str:
    """The HTML body: the same lines in a table, every text escaped."""
    esc = html.escape
    rows = "".join(
        f'<tr><th style="text-align:left;padding:4px 12px 4px 0;vertical-align:top">{esc(label)}</th>'
        f'<td style="padding:4px 0;overflow-wrap:anywhere">'
        + (f'<a href="{esc(value, quote=True)}">{esc(value)}</a>' if value == report.link else esc(value))
        + "</td></tr>"
        for label, value in report_lines(report)
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
        '<body style="margin:0;padding:16px;font:16px/1.5 system-ui,sans-serif;color:#1f2328;background:#fff">'
        f'<h1 style="font-size:20px;margin:0 0 12px">{esc(title)}: the mailing of issue {report.issue} has ended</h1>'
        f'<table style="border-collapse:collapse;max-width:640px">{rows}</table>'
        '<p style="color:#57606a;font-size:14px">-- digest (a report, not a reply)</p></body></html>'
    )


def report_message(
    report: MailingReport, *, title: str, from_address: str, to: str, date: datetime, domain: str, page: str
) -> bytes:
    """The whole message: text and HTML alternatives, the status page attached. The header is written like every
    notice's (`sender_fields`); its Message-ID is the same for every attempt at this issue and address."""
    msg = EmailMessage(policy=SMTP)
    msg.set_content(report_text(report, title), subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(report_html(report, title), subtype="html", charset="utf-8", cte="quoted-printable")
    msg.add_attachment(page.encode("utf-8"), maintype="text", subtype="html", filename=ATTACHMENT, cte="base64")
    mime, sep, body = msg.as_bytes(policy=SMTP).partition(b"\r\n\r\n")
    msgid = message_id(report.issue, f"editor report {to.lower()}", domain)
    head = sender_fields(from_address, address_field("To", "", to), report_subject(report, title), date) + (
        f"Message-ID: {clean_header(msgid).replace(' ', '')}\r\nAuto-Submitted: auto-generated\r\n".encode("ascii")
    )
    return head + mime + sep + body


def end_mailing(store: Store, issue: int, now: datetime) -> bool:
    """Record that issue `issue`'s mailing has ended (once); False when it had ended before or mailed nobody."""
    if not any(store.delivery_counts(issue).values()):
        return False
    key = REPORT_KEY.format(issue=issue)
    with store.transaction():
        if store.meta(key) is not None:
            return False
        store.set_meta(key, f"ended {now.isoformat()}")
    return True


def deliver_due_reports(
    store: Store,
    settings: Settings,
    clock: Callable[[], datetime],
    deliver: Callable[[str, bytes], SendResult],
    page: Callable[[], str],
) -> list[tuple[int, str, str]]:
    """Mail every report due (an ended mailing, an editor address with no outcome yet). Run under the writer lock.
    Returns (issue, address, outcome) of each report attempted or found unknown."""
    done: list[tuple[int, str, str]] = []
    prefix = REPORT_KEY.format(issue="")
    due = sorted(
        int(key.removeprefix(prefix))
        for key, value in store.meta_with_prefix(prefix).items()
        if key.removeprefix(prefix).isdigit() and value.startswith("ended ")
    )
    domain = urlsplit(settings.site_url).hostname or "localhost"
    attachment: str | None = None
    for issue in due:
        states = editor_report_states(store, issue)
        report: MailingReport | None = None
        for address in settings.editor_address:
            key = REPORT_ADDRESS_KEY.format(issue=issue, address=address)
            state = states.get(address, "")
            if state.startswith("claimed "):
                # Claimed by a process that never recorded the outcome: it may have gone out. Never twice.
                with store.transaction():
                    store.set_meta(key, f"unknown {clock().isoformat()}")
                log.warning(
                    "report of issue %d to %s: outcome unknown (digest stopped while sending it); not sent again",
                    issue,
                    address,
                )
                done.append((issue, address, "unknown"))
                continue
            if state and not state.startswith("deferred "):
                continue
            now = clock()
            report = report or mailing_report(store, settings, issue, now)
            attachment = attachment if attachment is not None else page()
            data = report_message(
                report,
                title=settings.title,
                from_address=settings.from_address,
                to=address,
                date=now,
                domain=domain,
                page=attachment,
            )
            with store.transaction():
                store.set_meta(key, f"claimed {now.isoformat()}")
            try:
                result = deliver(address, data)
                outcome, detail = result.outcome, result.detail
            except DeliveryError as exc:  # the transport could not be used at all: nothing went out
                outcome, detail = Outcome.DEFERRED, str(exc)
            state = {
                Outcome.SENT: "sent",
                Outcome.FAILED: "failed",
                Outcome.DEFERRED: "deferred",
                Outcome.UNKNOWN: "unknown",
            }[outcome]
            with store.transaction():
                store.set_meta(key, f"{state} {clock().isoformat()} {clean_header(detail)}".rstrip())
            (log.info if state == "sent" else log.warning)(
                "report of issue %d to %s: %s %s", issue, address, state, clean_header(detail)
            )
            done.append((issue, address, state))
        states = editor_report_states(store, issue)
        if all(states.get(a, "").split(" ")[0] in {"sent", "failed", "unknown"} for a in settings.editor_address):
            with store.transaction():
                store.set_meta(REPORT_KEY.format(issue=issue), f"reported {clock().isoformat()}")
    return done
