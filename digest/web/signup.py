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

import logging
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlsplit

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.errors import DigestError
from digest.model import Subscriber
from digest.subscribers import InvalidAddress, clean_name, normalize_address
from digest.subscriptions import Confirmation, SignupMail, SignupResult, check_confirmation, record_signup
from digest.tokens import BadToken, Purpose, TokenSubject, confirm_link, preferences_link, read_token
from digest.transport import deliver_notice
from digest.web.forms import (
    CSRF_COOKIE,
    CSRF_FIELD,
    TOPIC_FIELD,
    chosen_topics,
    csrf_ok,
    csrf_token,
    new_csrf_cookie,
    read_form,
    same_origin,
    topic_choices,
)
from digest.web.mails import Notice, build_notice, render_notice
from digest.web.pages import Text, Web, client_ip

log = logging.getLogger("digest.web")

HONEYPOT = "website"  # a field people never see, and form-filling bots rarely leave empty
MAX_NAME = 100
# The mail each signup decision sends.
_NOTICES = {SignupMail.CONFIRM: Notice.CONFIRM, SignupMail.ALREADY: Notice.ALREADY}

CHECK_INBOX = Text("请查收确认邮件", "Check your inbox")
CHECK_INBOX_TEXT = Text(
    "如果这个地址可以订阅，我们已发出一封确认邮件。请打开邮件中的链接并点击按钮完成订阅。",
    "If this address can subscribe, a confirmation mail is on its way. Open its link and press the button.",
)


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
        if result.mail is None or result.subscriber is None:
            return check_inbox()
        notice = _NOTICES[result.mail]
        return check_inbox(BackgroundTask(web.in_thread, send_notice, web, notice, result.subscriber, now))

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

    def confirmation(subject: TokenSubject, write: bool, now: datetime) -> Confirmation:
        with web.open_store() as store:
            return check_confirmation(store, subject, write, now)

    async def confirm(request: Request) -> Response:
        token = request.path_params["token"]
        now = web.now()
        subject = resolve(token, now)
        if isinstance(subject, int):
            return link_page(subject)
        if request.method == "GET":
            found = await web.in_thread(confirmation, subject, False, now)
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
        done = await web.in_thread(confirmation, subject, True, now)
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
        reply_to=settings.reply_to,
    )
    try:
        result = deliver_notice(settings, subscriber.email, message)
    except DigestError as exc:
        log.error("signup mail (%s) to subscriber %d not sent: %s", notice.name.lower(), subscriber.id, exc)
        return
    log.info("signup mail (%s) to subscriber %d: %s", notice.name.lower(), subscriber.id, result.outcome.value)
