"""Signup with double opt-in: `GET /subscribe` (the form), `POST /subscribe` (ask for confirmation by mail),
`GET /confirm/<token>` (a button; link scanners that only GET confirm nobody) and `POST /confirm/<token>`.

The answer to a signup is the same page whatever the address's state (new, pending, active, unsubscribed,
suppressed), so the form tells nobody who is subscribed; what differs (which mail, or none) happens after the answer
is sent. A bounced, complained or deleted address is neither mailed nor changed. Abuse limits live in the state
(shared by every process): signup requests per client network (an IPv4 address or an IPv6 /64; over the limit: 429)
and confirmation mails per mailbox (`a+x@` counts as `a@`; over the limit: the same answer, no mail), plus a
honeypot field that bots fill.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.errors import DigestError
from digest.model import Subscriber, SubscriberSource, SubscriberStatus
from digest.settings import Settings
from digest.store import Store, email_hash
from digest.subscribers import InvalidAddress, clean_name, normalize_address
from digest.tokens import BadToken, Purpose, TokenSubject, confirm_link, preferences_link, read_token
from digest.transport import deliver_notice
from digest.web.forms import (
    CSRF_COOKIE,
    CSRF_FIELD,
    csrf_ok,
    csrf_token,
    new_csrf_cookie,
    read_form,
    same_origin,
)
from digest.web.mails import Notice, build_notice, render_notice
from digest.web.pages import Text, Web, client_ip
from digest.web.preferences import TOPIC_FIELD, chosen_topics, topic_choices

log = logging.getLogger("digest.web")

HONEYPOT = "website"  # a field people never see, and form-filling bots rarely leave empty
MAX_NAME = 100
# Only an address that chose to leave may come back through the form. A bounced or complained one (or one whose
# owner deleted it, kept as a hash in the suppression list) is the publisher's to restore, with the CLI: a stranger
# typing it in must neither mail it nor reset its record.
_REJOIN = (SubscriberStatus.UNSUBSCRIBED,)
_SUPPRESSED = (SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED)
IPV6_PREFIX = 64  # one subscriber line or host gets a whole /64: its addresses count as one client

CHECK_INBOX = Text("请查收确认邮件", "Check your inbox")
CHECK_INBOX_TEXT = Text(
    "如果这个地址可以订阅，我们已发出一封确认邮件。请打开邮件中的链接并点击按钮完成订阅。",
    "If this address can subscribe, a confirmation mail is on its way. Open its link and press the button.",
)


def mailbox_of(email: str) -> str:
    """The mailbox an address delivers to, as the per-address limit counts it: `Victim+1@Example.org` and
    `victim+2@example.org` are both `victim@example.org` (the local part case-folded, a `+tag` removed)."""
    local, _, domain = email.strip().rpartition("@")
    return f"{local.casefold().partition('+')[0]}@{domain.lower()}"


def network_of(ip: str) -> str:
    """The client as the per-IP limit counts it: an IPv4 address, or the /64 of an IPv6 one (an IPv4-mapped IPv6
    address counts as its IPv4). Anything that is no address is its own bucket."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


@dataclass(frozen=True)
class SignupResult:
    """What a signup request did: refused for its IP, or which mail (if any) goes to the subscriber."""

    ip_limited: bool = False
    notice: Notice | None = None
    subscriber: Subscriber | None = None


def record_signup(
    store: Store,
    settings: Settings,
    email: str,
    name: str,
    ip: str,
    now: datetime,
    topics: Sequence[str] = (),
) -> SignupResult:
    """In one transaction: count the request against its IP, make the address pending (unless it is active or
    paused already) with the topics ticked on the form, and decide the mail, counted against the address. An active
    subscriber's topics are changed only on its preference page (the form must not let anyone change them)."""
    ip_bucket = f"ip:{network_of(ip)}"
    address_bucket = f"address:{email_hash(mailbox_of(email))}"
    with store.transaction():
        # The limits count rows, then add one: hold the client's and the mailbox's keys (always in this order) so
        # that concurrent requests on other hosts count after this one.
        store.serialize(f"signup-{ip_bucket}")
        store.serialize(f"signup-{address_bucket}")
        store.prune_events(now - timedelta(seconds=max(settings.signup_ip_window, settings.signup_address_window)))
        if (
            store.count_events(ip_bucket, now - timedelta(seconds=settings.signup_ip_window))
            >= settings.signup_ip_limit
        ):
            return SignupResult(ip_limited=True)
        store.record_event(ip_bucket, now)
        existing = store.subscriber(email)
        if (existing is not None and existing.status in _SUPPRESSED) or store.suppression(email) is not None:
            log.info("signup of a suppressed address: no mail, nothing changed")
            return SignupResult()
        notice = Notice.CONFIRM
        if existing is None or existing.status in _REJOIN:
            # A new address, or one that left: pending again with a fresh nonce, so earlier links stay dead.
            store.add_subscriber(
                email,
                name,
                now,
                resubscribe=True,
                status=SubscriberStatus.PENDING,
                source=SubscriberSource.FORM,
                signup_ip=ip if settings.keep_signup_ip else None,
            )
            joined = store.subscriber(email)
            if joined is not None:
                store.set_subscriber_topics(joined.id, topics)
        elif existing.status is not SubscriberStatus.PENDING:
            notice = Notice.ALREADY
        subscriber = store.subscriber(email)
        window = now - timedelta(seconds=settings.signup_address_window)
        if store.count_events(address_bucket, window) >= settings.signup_address_limit:
            log.info("signup of an address over its mail limit: no mail sent")
            return SignupResult(subscriber=subscriber)
        store.record_event(address_bucket, now)
        return SignupResult(notice=notice, subscriber=subscriber)


@dataclass(frozen=True)
class Confirmation:
    """What a confirm link found: its subscriber, and whether it can (or did) confirm."""

    status: int  # HTTP status of the answer
    subscriber: Subscriber | None = None


_LINK_TEXTS: dict[int, tuple[Text, Text]] = {
    400: (
        Text("链接无效", "Invalid link"),
        Text("这个链接不完整或已损坏。", "This link is incomplete or damaged."),
    ),
    409: (
        Text("链接已使用", "Link already used"),
        Text(
            "这个确认链接已经用过，订阅已经生效。", "This confirmation link was already used; the subscription is on."
        ),
    ),
    410: (
        Text("链接已失效", "Link no longer valid"),
        Text(
            "这个链接已过期或属于更早的一次订阅。请重新订阅以获取新的确认邮件。",
            "This link has expired or belongs to an earlier signup. Please sign up again for a new confirmation mail.",
        ),
    ),
}


def routes(web: Web) -> list[Route]:
    """The signup and confirmation endpoints."""
    settings = web.settings

    def form_page(
        status: int, message: Text | None, email: str = "", name: str = "", chosen: Sequence[str] = ()
    ) -> Response:
        cookie = new_csrf_cookie()
        response = web.page(
            Text("邮件订阅", "Subscribe by email"),
            [message] if message else [],
            status=status,
            form="_subscribe_form.html.j2",
            signup_form=False,
            csrf=csrf_token(web.secret, cookie),
            email=email,
            name=name,
            honeypot=HONEYPOT,
            topics=topic_choices(settings, chosen),
            topic_field=TOPIC_FIELD,
        )
        secure = urlsplit(settings.site_url).scheme == "https"
        response.set_cookie(
            CSRF_COOKIE, cookie, max_age=86_400, path=web.root, secure=secure, httponly=True, samesite="strict"
        )
        return response

    def check_inbox(background: BackgroundTask | None = None) -> Response:
        response = web.page(CHECK_INBOX, [CHECK_INBOX_TEXT])
        response.background = background
        return response

    async def subscribe(request: Request) -> Response:
        if request.method == "GET":
            return form_page(200, None, email=request.query_params.get("email", "")[:320])
        form = await read_form(request, settings.web_body_timeout)
        email_text, name_text = form.get("email", "").strip(), form.get("name", "")
        topics = chosen_topics(settings, form)
        now = web.now()
        token_ok = csrf_ok(web.secret, request.cookies.get(CSRF_COOKIE, ""), form.get(CSRF_FIELD, ""), now)
        if not token_ok and not same_origin(request, settings.site_url):
            again = Text("请再按一次订阅", "Please press Subscribe once more")
            return form_page(403, again, email=email_text[:320], name=name_text[:MAX_NAME], chosen=topics)
        if form.get(HONEYPOT):
            log.info("signup with the honeypot filled: ignored")
            return check_inbox()
        try:
            email = normalize_address(email_text)
        except InvalidAddress:
            bad = Text("邮件地址无效，请检查后重试。", "That is not a valid email address; please check it.")
            return form_page(400, bad, email=email_text[:320], name=name_text[:MAX_NAME], chosen=topics)
        name = clean_name(name_text)
        if len(name) > MAX_NAME:
            long = Text(f"名字最长 {MAX_NAME} 个字符。", f"The name can be at most {MAX_NAME} characters.")
            return form_page(400, long, email=email, name=name[:MAX_NAME], chosen=topics)

        def work() -> SignupResult:
            with web.open_store() as store:
                return record_signup(store, settings, email, name, client_ip(request), now, topics)

        result = await web.in_thread(work)
        if result.ip_limited:
            return web.page(
                Text("请求过于频繁", "Too many requests"),
                [
                    Text(
                        "这个网络的订阅请求太多了，请稍后再试。", "Too many signups from your network; try again later."
                    )
                ],
                status=429,
                headers={"Retry-After": str(settings.signup_ip_window)},
            )
        if result.notice is None or result.subscriber is None:
            return check_inbox()
        return check_inbox(BackgroundTask(web.in_thread, send_notice, web, result.notice, result.subscriber, now))

    def resolve(token: str, now: datetime) -> TokenSubject | int:
        try:
            return read_token(
                web.secret, Purpose.CONFIRM, settings.site_url, token, now=now, max_age=settings.confirm_token_max_age
            )
        except BadToken as exc:
            return 410 if exc.expired else 400

    def link_page(status: int) -> Response:
        heading, text = _LINK_TEXTS[status]
        return web.page(heading, [text], status=status)

    async def confirm(request: Request) -> Response:
        token = request.path_params["token"]
        now = web.now()
        subject = resolve(token, now)
        if isinstance(subject, int):
            return link_page(subject)
        if request.method == "GET":
            found = await web.in_thread(check_confirmation, web, subject, False, now)
            if found.status != 200 or found.subscriber is None:
                return link_page(found.status)
            return web.page(
                Text("确认订阅", "Confirm your subscription"),
                [
                    Text(
                        f"确认用 {found.subscriber.email} 订阅《{settings.title}》？",
                        f"Subscribe {found.subscriber.email} to {settings.title}?",
                    )
                ],
                form="_confirm_form.html.j2",
                signup_form=False,
                action=request.url.path,
                csrf=csrf_token(web.secret, token),
            )
        form = await read_form(request, settings.web_body_timeout)
        if not csrf_ok(web.secret, token, form.get(CSRF_FIELD, ""), now):
            return web.page(
                Text("请从确认页面提交", "Please use the confirmation page"),
                [
                    Text(
                        "请重新打开邮件中的链接，再按确认按钮。",
                        "Open the link in the mail again and press the button.",
                    )
                ],
                status=403,
            )
        done = await web.in_thread(check_confirmation, web, subject, True, now)
        if done.status != 200 or done.subscriber is None:
            return link_page(done.status)
        response = web.page(
            Text("订阅成功", "You are subscribed"),
            [
                Text(
                    f"{done.subscriber.email} 将收到下一期《{settings.title}》。",
                    f"{done.subscriber.email} will receive the next issue of {settings.title}.",
                )
            ],
            preferences=preferences_link(settings.site_url, web.secret, done.subscriber),
            form="_confirmed.html.j2",
            signup_form=False,
        )
        response.background = BackgroundTask(web.in_thread, send_notice, web, Notice.WELCOME, done.subscriber, now)
        return response

    return [
        Route("/subscribe", subscribe, methods=["GET", "POST"]),
        Route("/confirm/{token}", confirm, methods=["GET", "POST"]),
    ]


def check_confirmation(web: Web, subject: TokenSubject, write: bool, now: datetime) -> Confirmation:
    """Whether the token's subscription is pending (and, with `write`, confirm it and lift a suppression left by
    an earlier delete-me: its owner has just asked again)."""
    with web.open_store() as store:
        record = store.subscriber_record(subject.subscriber_id)
        if record is None or not subject.matches(record.subscriber):
            return Confirmation(410)
        if record.subscriber.status is not SubscriberStatus.PENDING:
            return Confirmation(409)
        if not write:
            return Confirmation(200, record.subscriber)
        with store.transaction():
            if not store.confirm_subscriber(subject.subscriber_id, now):
                return Confirmation(409)
            store.unsuppress(record.subscriber.email)
        log.info("confirmed subscriber %d", subject.subscriber_id)
        return Confirmation(200, record.subscriber)


def send_notice(web: Web, notice: Notice, subscriber: Subscriber, now: datetime, **values: str) -> None:
    """Render and mail one signup notice (runs after the answer was sent), with `values` for its template beyond
    the common ones; failures are logged, not shown."""
    settings = web.settings
    latest = None
    if notice is Notice.WELCOME:
        with web.open_store() as store:
            number = store.latest_issue_number()
        latest = f"{settings.site_url}issues/{number}/" if number is not None else None
    subject, body = render_notice(
        web.env,
        notice,
        title=settings.title,
        site_url=settings.site_url,
        email=subscriber.email,
        # Only once the address is confirmed: before, the form's free text would be mailed to any address.
        name=subscriber.name if notice is Notice.WELCOME else "",
        confirm_url=confirm_link(settings.site_url, web.secret, subscriber, now),
        expires_days=max(1, settings.confirm_token_max_age // 86_400),
        preferences_url=preferences_link(settings.site_url, web.secret, subscriber),
        latest_issue_url=latest,
        **values,
    )
    message = build_notice(
        from_address=settings.from_address,
        to=subscriber.email,
        subject=subject,
        body=body,
        now=now,
        domain=urlsplit(settings.site_url).hostname or "localhost",
    )
    try:
        result = deliver_notice(settings, subscriber.email, message)
    except DigestError as exc:
        log.error("signup mail (%s) to subscriber %d not sent: %s", notice.name.lower(), subscriber.id, exc)
        return
    log.info("signup mail (%s) to subscriber %d: %s", notice.name.lower(), subscriber.id, result.outcome.value)
