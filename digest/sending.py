"""Sending one issue to its subscribers: the ledger-driven orchestration behind `digest send` and the mailing
half of a scheduled run. It joins the state (the delivery ledger), the message builder and the SMTP pool; the
Publisher facade hands it the settings, the state opener and the writer lock.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from digest.bounces.rates import over_limits
from digest.bounces.verp import make_verp_id, verp_address
from digest.errors import DeliveryError, DigestError
from digest.model import Delivery, DeliveryStatus, Subscriber
from digest.optouts import OptOutJournal
from digest.output import write_atomic
from digest.settings import Settings
from digest.slots import PersonalSlots, stray_marks
from digest.status import issue_rates
from digest.store import Store, email_key
from digest.topics import papers_in_topics

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from digest.bounces.classify import BounceKind
    from digest.message import DkimKey, IssueMail, WireMessage
    from digest.model import Delivery, Issue, Subscriber
    from digest.render.email import RenderedEmail
    from digest.transport import Messenger, SendResult, Step

#: Renders an issue's email holding only the papers of some topics (the publisher's renderer).
TopicRenderer = Callable[[Store, "Issue", frozenset[str]], "RenderedEmail"]
#: The ledger detail of a subscriber left out because no paper of the issue is in their topics.
NO_PAPER_DETAIL = "skipped: no paper in your topics"


@dataclass
class SendReport:
    """What a `send` did: counts per outcome of this run, and where test copies or dry-run files went."""

    issue: int
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    unknown: int = 0
    bounced: int = 0  # refused for good (address does not exist): the subscriber is suppressed
    not_due: int = 0  # active subscribers owed nothing: mailed in an earlier run, or paused or gone meanwhile
    no_paper: int = 0  # subscribers whose chosen topics have no paper in this issue: no mail, a 'skipped' row
    expired: int = 0  # 'pending' rows of a crashed run, now 'unknown'
    stopped: bool = False
    test_copy: str | None = None
    dry_run_dir: Path | None = None
    seconds: float = 0.0


def check_slots(number: int, slots: PersonalSlots, html: str, text: str) -> None:
    """DeliveryError unless the rendered parts hold each personal-link marker exactly at the template's own slots
    and the markers were made with secret_key: a marker in outside text (a note, a seed, a title, a topic name)
    would receive every subscriber's link, so that issue is not mailed at all."""
    if not slots.keyed:
        raise DeliveryError(
            f"issue {number}: its email was rendered without secret_key (guessable link markers); run `digest rebuild`"
        )
    problem = stray_marks(slots, html, text)
    if problem is not None:
        raise DeliveryError(
            f"issue {number}: not sending: {problem} (outside text such as the editor's note, a seed, a title or a"
            " topic name carries the marker); remove it and run `digest rebuild`"
        )


class IssueSender:
    """Mails an issue under the writer lock, recording every delivery in the ledger as it goes."""

    def __init__(
        self,
        settings: Settings,
        open_store: Callable[[], Store],
        lock: Callable[[str], AbstractContextManager[None]],
        clock: Callable[[], datetime],
        render_topics: TopicRenderer | None = None,
        render_missing: Callable[[int], None] | None = None,
        after_mailing: Callable[[Store, int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.open_store = open_store
        self.lock = lock
        self.clock = clock  # the publisher's: deliveries are stamped with the time each one happens
        self.render_topics = render_topics  # without it, every subscriber gets the whole issue
        # Writes an issue's email files from the state when this host has none (another host published it, or
        # the site was rendered by a digest that kept no mailer's copy); without it, a missing copy is an error.
        self.render_missing = render_missing
        # Called under the writer lock when a mailing has run to its end (not stopped): the editor's report.
        self.after_mailing = after_mailing

    def send(
        self,
        *,
        issue: int | None = None,
        to: str | None = None,
        dry_run_dir: Path | None = None,
        retry_unknown: bool = False,
        stop: threading.Event | None = None,
        on_start: Callable[[int], None] | None = None,
        on_result: Callable[[Delivery], None] | None = None,
        messenger: Callable[[], Messenger] | None = None,
        force: bool = False,
    ) -> SendReport:
        """Mail issue `issue` (default: the latest) to every active subscriber who has not had it yet.

        Each delivery is written 'pending' and committed before its message data ends (its final "."), in the
        transaction that records an earlier outcome of that connection; a connection claims its next message as soon
        as the current one is out, so that the commit overlaps the server's work. A crash leaves at most two
        messages per connection unresolved (the one on the wire, and the one before it or the next one claimed);
        the next run marks them 'unknown' and never sends them again unless `retry_unknown`. A subscriber who chose
        topics gets only their papers (one render per distinct choice), and no mail but a 'skipped' row when none
        of them has a paper. `to` sends one unrecorded test copy; `dry_run_dir` writes .eml files instead of
        sending. `stop` ends the run after the messages in flight (a claimed message is in flight).
        A mailing does not start while the previous issue's bounce or complaint rate is over its limit, unless
        `force`.
        """

        from digest.message import message_id  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)
        from digest.subscriptions import drain_optouts  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)
        from digest.transport import DeliveryPool, Job, RateLimiter, make_messenger  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

        secret = self.settings.require_secret_key()
        if not self.settings.unsubscribe_endpoint.startswith("https://"):
            log.warning(
                "the unsubscribe link %s is not https: Gmail and Yahoo ignore one-click unsubscribe without https"
                " (set site_url or unsubscribe_url)",
                self.settings.unsubscribe_endpoint,
            )
        clock = self.clock
        stop = stop or threading.Event()
        settings = self.settings
        messenger = messenger or (lambda: make_messenger(settings))
        dkim = self._dkim_key()
        started = time.monotonic()
        with self.open_store() as store:
            mail = self._issue_mail(store, issue)
        report = SendReport(issue=mail.issue)
        if to is not None:
            self._send_test_copy(mail, to, secret, dkim, messenger(), clock)
            report.sent, report.test_copy = 1, to
            return report

        with self.lock("send") if dry_run_dir is None else nullcontext(), self.open_store() as store:
            if dry_run_dir is None:
                if not force:
                    self._check_rates(store, mail.issue)
                with store.transaction():
                    report.expired = store.expire_pending(clock())
                journal = OptOutJournal.beside(self.settings.state_path)
                applied = drain_optouts(store, journal) if store.backend.journals_optouts else 0
                if applied:
                    log.info("applied %d unsubscribes journaled by digest serve before mailing", applied)
            statuses = store.delivery_statuses(mail.issue)
            again = {None, DeliveryStatus.DEFERRED} | ({DeliveryStatus.UNKNOWN} if retry_unknown else set())
            active = store.active_subscribers()
            todo = [s for s in active if statuses.get(s.id) in again]
            report.not_due = len(active) - len(todo)
            mails = self._topic_mails(store, mail, todo)
            left_out = [s for s in todo if mails[s.id] is None]
            todo = [s for s in todo if mails[s.id] is not None]
            report.no_paper = len(left_out)
            if dry_run_dir is not None:
                self._write_eml_files(mails, todo, dry_run_dir, secret, dkim, clock)
                report.dry_run_dir, report.sent = dry_run_dir, len(todo)
                return report
            if left_out:
                with store.transaction():
                    now = clock()
                    for sub in left_out:
                        store.skip_delivery(mail.issue, sub.id, NO_PAPER_DETAIL, now)
            if not todo:
                if self.after_mailing is not None:
                    self.after_mailing(store, mail.issue)  # ended earlier, maybe before its report went out
                return report

            first = messenger()
            first.open()  # an unreachable server or a bad login stops here, before anything is recorded
            try:
                # The longest address and name make the largest message: if it fits, every message of that mail fits.
                for shared in {id(m): m for m in mails.values() if m is not None}.values():
                    group = [s for s in todo if mails[s.id] is shared]
                    if group:
                        widest = max(group, key=lambda s: len(s.email.encode()) + len(s.name.encode()))
                        self._build(shared, widest, secret, dkim, clock(), first.eight_bit)
            except DeliveryError:
                first.close()
                raise
            if on_start:
                on_start(len(todo))
            count = min(self.settings.smtp_connections, len(todo))
            delays = [self.settings.send_retry_delay * 2**i for i in range(self.settings.send_retries)]
            pool = DeliveryPool(
                [first, *(messenger() for _ in range(count - 1))],
                RateLimiter(self.settings.max_messages_per_second),
                delays,
                stop,
            )
            by_id = {s.id: s for s in todo}
            msgids: dict[int, str] = {}  # the claim records the Message-ID the message carries

            def job(sub: Subscriber) -> Job:
                msgids[sub.id] = msgid = message_id(mail.issue, email_key(sub.email), mail.domain)
                delivery_id = make_verp_id(secret, mail.issue, sub.id)  # signed once, for the return path and headers
                build = self._builder(mails[sub.id] or mail, sub, secret, dkim, clock, msgid, delivery_id)
                return Job(sub.id, self._envelope_sender(delivery_id), _smtp_recipient(sub.email), build)

            try:
                pool.feed(job(sub) for sub in todo)  # each made shortly before a connection needs it
                while pool.running:
                    steps = pool.next_steps()
                    claims = self._commit_steps(store, mail, steps, msgids, clock(), retry_unknown)
                    for step, claimed in zip(steps, claims, strict=True):
                        step.answer(claimed)  # only now may that connection send the message data
                        report.not_due += step.job is not None and not claimed  # unsubscribed meanwhile
                        for done in step.done:
                            status = _ledger_outcome(done.result)[0]
                            setattr(report, status.value, getattr(report, status.value) + 1)
                            if on_result:
                                sub, result = by_id[done.key], done.result
                                on_result(Delivery(mail.issue, sub, status, done.attempts, result.detail))
            finally:
                pool.close()
            report.stopped = stop.is_set()
            report.seconds = time.monotonic() - started  # the mailing's own time, without the editor's report
            if not report.stopped and self.after_mailing is not None:
                self.after_mailing(store, mail.issue)
        return report

    def _commit_steps(
        self,
        store: Store,
        mail: IssueMail,
        steps: Sequence[Step],
        msgids: dict[int, str],
        now: datetime,
        retry_unknown: bool,
    ) -> list[bool]:
        """In ONE transaction (one fsync however many connections are waiting): record each connection's finished
        message and claim ('pending') its next one, under the Message-ID it carries (`msgids`, by subscriber id).
        Returns, per step, whether its next message may go out."""
        claims: list[bool] = []
        with store.transaction():
            for step in steps:
                for done in step.done:
                    status, bounce = _ledger_outcome(done.result)
                    detail = done.result.detail
                    store.record_delivery(
                        mail.issue, done.key, status, detail, now, done.attempts, bounce=bounce and bounce.value
                    )
                    if bounce is not None:
                        self._after_refusal(store, done.key, bounce, detail, now, source=f"send issue {mail.issue}")
                if step.job is None:
                    claims.append(False)
                    continue
                key = step.job.key
                claims.append(store.claim_delivery(mail.issue, key, msgids[key], now, retry_unknown=retry_unknown))
        return claims

    def _after_refusal(
        self, store: Store, subscriber_id: int, bounce: BounceKind, detail: str, now: datetime, *, source: str
    ) -> None:
        """A hard refusal suppresses the address at once, soft ones after a streak (the trail names the issue)."""
        from digest.bounces.classify import BounceKind  # noqa: PLC0415 (lazy: its patterns only when a server refuses)
        from digest.subscriptions import (  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)
            suppress_after_streak,
            suppress_for_hard_bounce,
        )

        if bounce is BounceKind.HARD:
            suppress_for_hard_bounce(store, subscriber_id, detail, now, source=source)
        elif bounce is BounceKind.SOFT:
            suppress_after_streak(store, subscriber_id, self.settings.soft_bounce_limit, detail, now, source=source)

    def _topic_mails(
        self, store: Store, mail: IssueMail, subscribers: Sequence[Subscriber]
    ) -> dict[int, IssueMail | None]:
        """subscriber id -> the mail they get: the whole issue, the issue's papers in their chosen topics (rendered
        once per distinct choice), or None when none of their topics has a paper in it."""

        from digest.message import format_subject  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

        chosen = store.subscriber_topics() if self.render_topics is not None else {}
        topics = self.settings.topic_list
        configured = frozenset(t.slug for t in topics)
        issue: Issue | None = None
        by_choice: dict[frozenset[str], IssueMail | None] = {}
        mails: dict[int, IssueMail | None] = {}
        for sub in subscribers:
            choice = frozenset(chosen.get(sub.id, ())) & configured
            if not choice or choice == configured or self.render_topics is None:
                mails[sub.id] = mail
                continue
            if choice not in by_choice:
                issue = issue or store.load_issues([mail.issue])[0]
                papers = papers_in_topics(issue.entries, topics, choice)
                if not papers:
                    by_choice[choice] = None
                elif len(papers) == len(issue.entries):
                    by_choice[choice] = mail
                else:
                    rendered = self.render_topics(store, issue, choice)
                    check_slots(issue.number, rendered.slots, rendered.html, rendered.text)
                    subject = format_subject(
                        self.settings.subject,
                        title=self.settings.title,
                        number=issue.number,
                        date=issue.published.astimezone(self.settings.tz).strftime("%Y-%m-%d"),
                        count=len(papers),
                    )
                    by_choice[choice] = dataclasses.replace(
                        mail,
                        html=rendered.html,
                        text=rendered.text,
                        subject=subject,
                        unsubscribe_mark=rendered.slots.unsubscribe,
                        preferences_mark=rendered.slots.preferences,
                    )
            mails[sub.id] = by_choice[choice]
        return mails

    def _issue_mail(self, store: Store, number: int | None) -> IssueMail:
        """The shared parts of one issue's email, read from the rendered email.html / email.txt."""
        if number is None:
            number = store.latest_issue_number()
            if number is None:
                raise DeliveryError("no issue has been published yet; run `digest render` first")
        summaries = store.issue_summaries([number])
        if not summaries:
            raise DeliveryError(f"no such issue: {number} (see `digest status` for the latest)")
        head = summaries[0]
        folder = self.settings.output_dir / "issues" / str(number) / ".mail"
        if self.render_missing is not None:
            self.render_missing(number)  # when this host has no copy, or one made without secret_key
        try:
            html = (folder / "email.html").read_text(encoding="utf-8")
            text = (folder / "email.txt").read_text(encoding="utf-8")
            slots = PersonalSlots.from_json(json.loads((folder / "slots.json").read_text(encoding="utf-8")))
        except OSError as exc:
            raise DeliveryError(
                f"issue {number}: cannot read its rendered email in {folder}/ ({exc.strerror}); run `digest rebuild`"
            ) from None
        except (ValueError, KeyError, TypeError):
            raise DeliveryError(f"issue {number}: {folder}/slots.json is damaged; run `digest rebuild`") from None
        return self.mail_of(number, head.published, head.entry_count, html, text, slots)

    def mail_of(
        self, number: int, published: datetime, count: int, html: str, text: str, slots: PersonalSlots
    ) -> IssueMail:
        """The shared parts of issue `number`'s email from its rendered parts (checked: DeliveryError when a
        personal-link marker is out of place); the preview makes its mail here too."""
        from digest.message import IssueMail, format_subject  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

        check_slots(number, slots, html, text)
        domain = urlsplit(self.settings.site_url).hostname or "localhost"
        subject = format_subject(
            self.settings.subject,
            title=self.settings.title,
            number=number,
            date=published.astimezone(self.settings.tz).strftime("%Y-%m-%d"),
            count=count,
        )
        return IssueMail(
            issue=number,
            html=html,
            text=text,
            subject=subject,
            from_address=self.settings.from_address,
            list_id=self.settings.list_id or f"digest.{domain}",
            domain=domain,
            unsubscribe_mark=slots.unsubscribe,
            preferences_mark=slots.preferences,
            reply_to=self.settings.reply_to,
            providers=self._providers(),
        )

    def _providers(self) -> tuple[str, ...]:
        """The mail providers whose webhooks are set up: their own header carries each message's delivery id."""
        s = self.settings
        on = {
            "mailgun": bool(s.mailgun_signing_key.get_secret_value()),
            "postmark": bool(s.webhook_secret.get_secret_value()),
            "sendgrid": bool(s.sendgrid_public_key),
        }
        return tuple(name for name, used in on.items() if used)

    def _dkim_key(self) -> DkimKey | None:
        """The DKIM key when selector, domain and key file are all set; SettingsError when only some are."""
        from digest.transport import dkim_key  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

        return dkim_key(self.settings)

    def _check_rates(self, store: Store, issue: int) -> None:
        """DeliveryError when the last issue mailed before `issue` bounced or drew complaints over the limits."""

        previous = [n for n in store.mailed_issues(2) if n != issue][:1]
        if not previous:
            return
        s = self.settings
        problems = over_limits(issue_rates(store, previous[0]), s.max_hard_bounce_rate, s.max_complaint_rate)
        if problems:
            raise DeliveryError(
                "not sending: " + "; ".join(problems) + ". Mail providers block senders above these rates: clean"
                " the list (see `digest subscribers list`), then run `digest send --force`"
            )

    @cached_property
    def _bounce_mailbox(self) -> str:
        """The bounce mailbox as SMTP needs it, worked out once: parsing the setting cost more than signing the
        VERP id, for every message of a send."""
        from digest.message import smtp_address  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

        return smtp_address(self.settings.bounce_mailbox)

    def _envelope_sender(self, delivery_id: str = "") -> str:
        """The return path: the bounce mailbox, in VERP form naming the delivery (its signed id) when there is one."""
        if not delivery_id or not self.settings.verp:
            return self._bounce_mailbox
        return verp_address(self._bounce_mailbox, delivery_id)

    def _build(
        self,
        mail: IssueMail,
        subscriber: Subscriber,
        secret: str,
        dkim: DkimKey | None,
        date: datetime,
        eight_bit: bool,
        msgid: str | None = None,
        extra_html_bytes: int = 0,
        delivery_id: str | None = None,
    ) -> WireMessage:
        """One subscriber's message, ready for SMTP's DATA (`.message` is the message itself), carrying its
        delivery's signed id in the header fields providers echo back (none for a test copy: no delivery)."""
        from digest.message import (  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)
            GMAIL_CLIP_BYTES,
            build_message,
            message_id,
        )
        from digest.tokens import preferences_link, unsubscribe_link  # noqa: PLC0415 (lazy: itsdangerous only when used)

        if delivery_id is None:  # signed here unless the send did it already; none for a copy that is no delivery
            delivery_id = make_verp_id(secret, mail.issue, subscriber.id) if subscriber.id else ""
        return build_message(
            mail,
            subscriber,
            unsubscribe_url=unsubscribe_link(self.settings.unsubscribe_endpoint, secret, subscriber),
            preferences_url=preferences_link(self.settings.site_url, secret, subscriber),
            unsubscribe_mailto=self.settings.unsubscribe_mailto,
            date=date,
            msgid=msgid or message_id(mail.issue, email_key(subscriber.email), mail.domain),
            eight_bit=eight_bit,
            dkim=dkim,
            max_html_bytes=GMAIL_CLIP_BYTES + extra_html_bytes,
            delivery_id=delivery_id,
        )

    def _builder(
        self,
        mail: IssueMail,
        subscriber: Subscriber,
        secret: str,
        dkim: DkimKey | None,
        clock: Callable[[], datetime],
        msgid: str,
        delivery_id: str,
    ) -> Callable[[bool], WireMessage]:
        return lambda eight_bit: self._build(
            mail, subscriber, secret, dkim, clock(), eight_bit, msgid, delivery_id=delivery_id
        )

    def html_bytes(self, mail: IssueMail) -> int:
        """Octets of the HTML part of `mail` as sent to a subscriber (8bit, links filled in): what Gmail clips at.
        DeliveryError (MessageTooLarge) when it is over the clip size: such an issue cannot be mailed."""
        data = self._build(mail, Subscriber(email="size@example.org"), "size", None, self.clock(), True).message
        parsed = email.message_from_bytes(data, policy=email.policy.SMTP)
        for part in parsed.walk():
            if part.get_content_type() == "text/html":
                return len(part.as_bytes().partition(b"\r\n\r\n")[2])
        return 0

    def send_preview(
        self,
        mail: IssueMail,
        to: Sequence[str],
        *,
        extra_html_bytes: int = 0,
        messenger: Callable[[], Messenger] | None = None,
    ) -> None:
        """One copy of `mail` to each of `to` (the editor's preview), recorded nowhere; its personal links name no
        subscription (id 0, no nonce), so they do nothing. `extra_html_bytes`: the preflight's share of the HTML,
        allowed over the clip size (the issue's own size is checked by `html_bytes`)."""
        from digest.transport import make_messenger  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

        secret = self.settings.require_secret_key()
        dkim = self._dkim_key()
        settings = self.settings
        messenger = messenger or (lambda: make_messenger(settings))
        for address in to:
            self._send_test_copy(mail, address, secret, dkim, messenger(), self.clock, extra_html_bytes)

    def _send_test_copy(
        self,
        mail: IssueMail,
        to: str,
        secret: str,
        dkim: DkimKey | None,
        messenger: Messenger,
        clock: Callable[[], datetime],
        extra_html_bytes: int = 0,
    ) -> None:
        """One copy to `to`, recorded nowhere; its Message-ID differs from the real one so that a mail client
        does not take the real delivery for a duplicate of the test."""
        from digest.message import message_id  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)
        from digest.transport import Outcome  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

        address = _valid_address(to)
        now = clock()
        msgid = message_id(mail.issue, f"test {address.lower()} {now.isoformat()}", mail.domain)
        messenger.open()
        try:
            data = self._build(
                mail, Subscriber(email=address), secret, dkim, now, messenger.eight_bit, msgid, extra_html_bytes
            )
            result = messenger.send(self._envelope_sender(), _smtp_recipient(address), data)
        finally:
            messenger.close()
        if result.outcome is not Outcome.SENT:
            raise DeliveryError(f"test copy to {address} {result.outcome.value}: {result.detail}")

    def _write_eml_files(
        self,
        mails: dict[int, IssueMail | None],
        subscribers: Sequence[Subscriber],
        folder: Path,
        secret: str,
        dkim: DkimKey | None,
        clock: Callable[[], datetime],
    ) -> None:
        """What a send would deliver, one .eml file per subscriber (8bit, as to a server offering 8BITMIME)."""

        try:  # addresses and personal links: for the owner's eyes only, whatever the umask
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise DigestError(f"{folder}: cannot create the dry-run folder: {exc}") from exc
        for sub in subscribers:
            mail = mails[sub.id]
            if mail is None:
                continue
            name = re.sub(r"[^A-Za-z0-9@._+-]", "_", sub.email)
            data = self._build(mail, sub, secret, dkim, clock(), True).message
            write_atomic(folder / f"issue-{mail.issue}-{sub.id:06d}-{name}.eml", data, mode=0o600)


def _ledger_outcome(result: SendResult) -> tuple[DeliveryStatus, BounceKind | None]:
    """The ledger status of a finished message and, for a server's refusal, how bad it is for the address: a
    hard refusal is recorded as 'bounced', a soft one stays 'failed' and counts towards the soft-bounce streak."""
    status = DeliveryStatus(result.outcome.value)
    if status is not DeliveryStatus.FAILED:
        return status, None
    from digest.bounces.classify import BounceKind, classify_reply  # noqa: PLC0415 (lazy: see _after_refusal)

    bounce = classify_reply(result.detail)
    return (DeliveryStatus.BOUNCED if bounce is BounceKind.HARD else status), bounce


def _valid_address(address: str) -> str:
    """The normalized address by the subscriber list's own rules (no internationalized local part: the mailer
    does not speak SMTPUTF8), or DeliveryError naming what is wrong with it."""
    from digest.subscribers import InvalidAddress, normalize_address  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

    try:
        return normalize_address(address)
    except InvalidAddress as exc:
        raise DeliveryError(f"--to: {exc}") from None


def _smtp_recipient(address: str) -> str:
    from digest.message import smtp_address  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)

    return smtp_address(address)
