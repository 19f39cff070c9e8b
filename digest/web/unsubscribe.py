"""One-click unsubscribe, `/unsubscribe?token=...`: `GET` shows a button, `POST` (RFC 8058's one-click from a mail
client, or the button) unsubscribes at once. The token alone authorizes the POST: no session, no CSRF token.

Reading never waits for a writer. Writing waits at most `web_db_wait` seconds: when a render holds the state
longer, the opt-out goes to the journal (digest.optouts), the reader is told it is done, and the app applies it
as soon as the state is free.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import Enum
from functools import partial
from urllib.parse import urlencode

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest import subscriptions
from digest.errors import StoreError
from digest.model import NOT_ENDED, Subscriber
from digest.optouts import OptOut, OptOutJournal
from digest.store import Store, email_hash
from digest.tokens import (
    LEGACY_UNSUBSCRIBE_LAST_DAY,
    BadToken,
    Purpose,
    TokenSubject,
    read_legacy_unsubscribe_token,
    read_token,
    unsubscribe_link,
)
from digest.web.forms import read_form
from digest.web.mails import Notice
from digest.web.pages import Text, Web
from digest.web.signup import send_notice

log = logging.getLogger("digest.web")
# Reading the address out of an ended legacy link (only to mail its owner new links): any time before its end.
LEGACY_SIGNED_ON = datetime.combine(LEGACY_UNSUBSCRIBE_LAST_DAY, datetime.min.time())


class Outcome(Enum):
    """What an unsubscribe request found or did; each has its page."""

    CONFIRM = "confirm"
    DONE = "done"
    ALREADY = "already"
    BAD_TOKEN = "bad-token"
    UNKNOWN = "unknown"
    STALE = "stale"
    ENDED = "ended"  # a legacy link after its last day
    NEW_LINK = "new-link"


_STATUS: Mapping[Outcome, int] = {
    Outcome.BAD_TOKEN: 400,
    Outcome.UNKNOWN: 404,
    Outcome.STALE: 410,
    Outcome.ENDED: 410,
}
_TEXTS: Mapping[Outcome, tuple[Text, Text]] = {
    Outcome.CONFIRM: (
        Text("退订确认", "Unsubscribe?"),
        Text("确定让 {address} 不再收到《{title}》吗？", "Stop sending {title} to {address}?"),
    ),
    Outcome.DONE: (
        Text("已退订", "You are unsubscribed"),
        Text("{address} 将不再收到《{title}》。", "{address} will receive no further issues of {title}."),
    ),
    Outcome.ALREADY: (
        Text("已退订", "Already unsubscribed"),
        Text(
            "{address} 此前已经退订《{title}》，无需再次操作。",
            "{address} was already unsubscribed from {title}; nothing else to do.",
        ),
    ),
    Outcome.BAD_TOKEN: (
        Text("退订链接无效", "Invalid unsubscribe link"),
        Text(
            "这个链接不完整或已损坏。请使用最近一封邮件中的退订链接。",
            "This link is incomplete or damaged. Please use the unsubscribe link of a recent email.",
        ),
    ),
    Outcome.UNKNOWN: (
        Text("未找到订阅", "No such subscription"),
        Text("{address} 不在订阅名单中，无需退订。", "{address} is not on the list; there is nothing to unsubscribe."),
    ),
    Outcome.STALE: (
        Text("链接已失效", "Link no longer valid"),
        Text(
            "这个链接属于更早的一次订阅。请使用最近一封邮件中的退订链接。",
            "This link belongs to an earlier subscription. Please use the unsubscribe link of a recent email.",
        ),
    ),
    Outcome.ENDED: (
        Text("链接已失效", "Link no longer valid"),
        Text(
            "这种旧式退订链接在 {last_day} 之后停用。最近一期邮件底部的退订链接仍然有效；也可以按下面的按钮，"
            "我们会把新的退订和订阅设置链接发到这个链接所属的地址。",
            "Unsubscribe links of this old kind stopped working after {last_day}. The link at the foot of a recent"
            " issue still works; or press the button and we mail new unsubscribe and preference links to the"
            " address this link was made for.",
        ),
    ),
    Outcome.NEW_LINK: (
        Text("请查收邮件", "Check your inbox"),
        Text(
            "如果这个地址仍在订阅名单中，新的退订和订阅设置链接已经发出。",
            "If this address is still on the list, a mail with a new unsubscribe link is on its way to it.",
        ),
    ),
}


def find(store: Store, token: TokenSubject | str) -> Subscriber | Outcome:
    """The subscriber a token (a subscription, or a legacy link's address) names, or why there is none."""
    if isinstance(token, str):
        return store.subscriber(token) or Outcome.UNKNOWN
    record = store.subscriber_record(token.subscriber_id)
    if record is None:
        return Outcome.UNKNOWN
    return record.subscriber if token.matches(record.subscriber) else Outcome.STALE


def drain_journal(web: Web, journal: OptOutJournal) -> int:
    """Apply the journaled opt-outs if the state is free (0 and nothing done when it is still busy)."""
    try:
        with web.open_store() as store:
            return subscriptions.drain_optouts(store, journal)
    except StoreError:
        return 0


def routes(web: Web, journal: OptOutJournal | None) -> list[Route]:
    """The unsubscribe endpoint."""
    settings = web.settings

    def page(outcome: Outcome, address: str = "", token: str = "") -> Response:
        heading, text = _TEXTS[outcome]
        values = {"address": address, "title": settings.title, "last_day": LEGACY_UNSUBSCRIBE_LAST_DAY.isoformat()}
        filled = Text(text.zh.format(**values), text.en.format(**values))
        forms = {Outcome.CONFIRM: "_unsubscribe_form.html.j2", Outcome.ENDED: "_new_link_form.html.j2"}
        return web.page(
            heading,
            [filled],
            status=_STATUS.get(outcome, 200),
            form=forms.get(outcome),
            action="?" + urlencode({"token": token}),
        )

    def resolve(token: str, now: datetime) -> TokenSubject | str | Outcome | None:
        try:
            return read_token(web.secret, Purpose.UNSUBSCRIBE, settings.unsubscribe_endpoint, token, now=now)
        except BadToken:
            pass
        try:
            return read_legacy_unsubscribe_token(web.secret, token, now)
        except BadToken:
            return Outcome.ENDED

    def new_link(address: str, now: datetime) -> Subscriber | None:
        """The subscriber of an ended legacy link, if it is still on the list and under its mail limit."""
        bucket = f"new-link:{email_hash(address)}"
        with web.open_store() as store, store.transaction():
            found = store.subscriber(address)
            if found is None or found.status not in NOT_ENDED:
                return None
            store.serialize(bucket)
            if store.count_events(bucket, now - timedelta(seconds=settings.signup_address_window)) >= (
                settings.signup_address_limit
            ):
                log.info("new link for subscriber %d over its limit: no mail sent", found.id)
                return None
            store.record_event(bucket, now)
            return found

    def apply(
        token: TokenSubject | str, write: bool, now: datetime, source: str = subscriptions.UNSUBSCRIBE_LINK
    ) -> tuple[Outcome, str]:
        """Look the subscription up and, for a POST, unsubscribe it (runs in a worker thread)."""
        with web.open_store() as store:
            found = find(store, token)
            if isinstance(found, Outcome):
                return found, token if isinstance(token, str) else ""
            if found.status not in NOT_ENDED:
                return Outcome.ALREADY, found.email
            if not write:
                return Outcome.CONFIRM, found.email
            try:
                subscriptions.unsubscribe(store, found.id, now, source=source)
            except StoreError as exc:
                if journal is None:
                    raise
                log.warning("state busy (%s): unsubscribe of subscriber %d journaled", exc, found.id)
                journal.append(OptOut(now, found.id, found.token_nonce))
        log.info("unsubscribed %s", found.email)
        return Outcome.DONE, found.email

    async def unsubscribe(request: Request) -> Response:
        token = request.query_params.get("token", "")
        form: dict[str, str] = {}
        if request.method == "POST":
            # RFC 8058 sends `List-Unsubscribe=One-Click` form-encoded; the token is the authorization, so the
            # body is read (bounded) only to find a token a client may have moved there.
            form = await read_form(request, settings.web_body_timeout)
            token = token or form.get("token", "")
        now = web.now()
        subject = resolve(token, now) if token else None
        if subject is None:
            return page(Outcome.BAD_TOKEN)
        if isinstance(subject, Outcome):  # a legacy link after its last day
            if request.method == "POST" and form.get("renew") == "yes":
                owner = read_legacy_unsubscribe_token(web.secret, token, LEGACY_SIGNED_ON)
                found = await web.in_thread(new_link, owner, now) if owner else None
                response = page(Outcome.NEW_LINK)
                if found is not None:
                    link = unsubscribe_link(settings.unsubscribe_endpoint, web.secret, found)
                    response.background = BackgroundTask(
                        web.in_thread, partial(send_notice, unsubscribe_url=link), web, Notice.NEW_LINK, found, now
                    )
                return response
            return page(Outcome.ENDED, token=token)
        one_click = form.get("List-Unsubscribe") == "One-Click"  # RFC 8058, from the mail client
        source = subscriptions.LIST_UNSUBSCRIBE if one_click else subscriptions.UNSUBSCRIBE_LINK
        outcome, address = await web.in_thread(apply, subject, request.method == "POST", now, source)
        if outcome is Outcome.ALREADY and request.method == "POST":
            log.info("already unsubscribed %s", address)
        return page(outcome, address, token)

    return [Route("/unsubscribe", unsubscribe, methods=["GET", "POST"])]
