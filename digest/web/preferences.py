"""The personal preference page, `/preferences/<token>` (linked from every issue mail and the welcome mail):
change the name, pause or resume the email, stop it, choose topics (the email then holds only their papers; none
ticked is every paper), and ask for a link to my data.

That link never expires and sits in every issue ever mailed (and every mailbox, forward and archive that holds
one), so it cannot download or delete anything: it mails a short-lived link instead (`/my-data/<token>`, an hour),
whose page downloads my data as JSON or deletes me (the row and its deliveries are erased; only a one-way hash of
the address stays, in the suppression list, so an import cannot silently add it back).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.model import NOT_ENDED, SUBSCRIBED, Subscriber, SubscriberStatus
from digest.store import SubscriberRecord
from digest.subscribers import clean_name
from digest.subscriptions import Change, apply_change, erase, export_personal_data, subscription
from digest.tokens import PERSONAL_DATA_MAX_AGE, BadToken, Purpose, TokenSubject, personal_data_link, read_token
from digest.web.forms import CSRF_FIELD, TOPIC_FIELD, chosen_topics, csrf_ok, csrf_token, read_form, topic_choices
from digest.web.mails import Notice
from digest.web.pages import Text, Web
from digest.web.signup import send_notice

log = logging.getLogger("digest.web")

MAX_NAME = 100
ACTIONS = ("name", "pause", "resume", "stop", "topics", "data-link")
_STATUS_TEXT = {
    SubscriberStatus.PENDING: Text("等待确认", "waiting for confirmation"),
    SubscriberStatus.ACTIVE: Text("正在接收邮件", "receiving the email"),
    SubscriberStatus.PAUSED: Text("已暂停", "paused"),
    SubscriberStatus.UNSUBSCRIBED: Text("已退订", "unsubscribed"),
    SubscriberStatus.BOUNCED: Text("邮件无法送达，已停止", "stopped: mail to this address bounced"),
    SubscriberStatus.COMPLAINED: Text("已标记为垃圾邮件，已停止", "stopped: an issue was reported as spam"),
}
_DONE = {
    "name": Text("名字已保存。", "Your name is saved."),
    "pause": Text("邮件已暂停，随时可以恢复。", "The email is paused; resume it any time."),
    "resume": Text("邮件已恢复。", "The email is on again."),
    "stop": Text("已退订，不会再收到邮件。", "You are unsubscribed and will get no further email."),
    "topics": Text("主题已保存，下一期起生效。", "Your topics are saved; they apply from the next issue."),
    "data-link": Text(
        "我们已把下载或删除数据的链接发到这个地址，一小时内有效。",
        "A link to download or delete your data is on its way to this address; it works for an hour.",
    ),
}


def routes(web: Web) -> list[Route]:
    """The preference page and its form, and the personal-data page its emailed link opens."""
    settings = web.settings

    def subject_of(request: Request, purpose: Purpose = Purpose.PREFERENCES) -> TokenSubject | int:
        max_age = PERSONAL_DATA_MAX_AGE if purpose is Purpose.PERSONAL_DATA else None
        try:
            return read_token(
                web.secret, purpose, settings.site_url, request.path_params["token"], now=web.now(), max_age=max_age
            )
        except BadToken as exc:
            return 419 if exc.expired else 400

    def load(subject: TokenSubject) -> tuple[SubscriberRecord, tuple[str, ...]] | None:
        with web.open_store() as store:
            return subscription(store, subject)

    def invalid(status: int) -> Response:
        texts = {
            400: (
                Text("链接无效", "Invalid link"),
                Text("这个链接不完整或已损坏。", "This link is incomplete or damaged."),
            ),
            410: (
                Text("链接已失效", "Link no longer valid"),
                Text("这个链接属于一个已不存在的订阅。", "This link belongs to a subscription that no longer exists."),
            ),
            419: (  # shown as 410: an expired personal-data link
                Text("链接已失效", "Link no longer valid"),
                Text(
                    "下载或删除数据的链接只在一小时内有效。请打开任意一期邮件底部的“管理订阅”，再申请一个新链接。",
                    "A link to download or delete your data works for an hour. Open “Preferences” at the foot of"
                    " any issue and ask for a new one.",
                ),
            ),
        }
        heading, text = texts[status]
        return web.page(heading, [text], status=min(status, 410))

    def page(
        request: Request,
        loaded: tuple[SubscriberRecord, Sequence[str]],
        notice: Text | None = None,
        status: int = 200,
    ) -> Response:
        token = request.path_params["token"]
        record, chosen = loaded
        sub = record.subscriber
        return web.page(
            Text("订阅设置", "Your subscription"),
            [notice] if notice else [],
            status=status,
            form="_preferences_form.html.j2",
            action=request.url.path,
            csrf=csrf_token(web.secret, token),
            email=sub.email,
            name=sub.name,
            state=sub.status.value,
            state_text=_STATUS_TEXT[sub.status],
            subscribed=sub.status in SUBSCRIBED,  # pause or resume, and unsubscribe
            not_ended=sub.status in NOT_ENDED,  # choose topics (a pending subscriber too)
            signup_form=sub.status not in SUBSCRIBED,
            topics=topic_choices(settings, chosen),
            topic_field=TOPIC_FIELD,
        )

    async def preferences(request: Request) -> Response:
        subject = subject_of(request)
        if isinstance(subject, int):
            return invalid(subject)
        if request.method == "GET":
            loaded = await web.in_thread(load, subject)
            return page(request, loaded) if loaded is not None else invalid(410)
        form = await read_form(request, settings.web_body_timeout)
        now = web.now()
        record = await web.in_thread(load, subject)
        if record is None:
            return invalid(410)
        action = form.get("action", "")
        if not csrf_ok(web.secret, request.path_params["token"], form.get(CSRF_FIELD, ""), now):
            return page(request, record, Text("表单已过期，请重试。", "The form expired; please try again."), 403)
        if action not in ACTIONS:
            return page(request, record, Text("未知的操作。", "Unknown action."), 400)
        name = clean_name(form.get("name", ""))
        if action == "name" and len(name) > MAX_NAME:
            return page(request, record, Text(f"名字最长 {MAX_NAME} 个字符。", f"At most {MAX_NAME} characters."), 400)

        topics = chosen_topics(settings, form)

        def work() -> Change:
            with web.open_store() as store:
                return apply_change(store, settings, subject, action, name, now, topics)

        change = await web.in_thread(work)
        if change.status != 200 or change.record is None:
            return invalid(change.status)
        response = page(request, (change.record, change.topics), _DONE[action])
        if change.mail is not None:
            response.background = BackgroundTask(web.in_thread, send_personal_data_link, web, change.mail, now)
        return response

    def data_page(
        request: Request, loaded: tuple[SubscriberRecord, Sequence[str]], notice: Text | None = None, status: int = 200
    ) -> Response:
        return web.page(
            Text("我的数据", "Your data"),
            [notice] if notice else [],
            status=status,
            form="_personal_data_form.html.j2",
            action=request.url.path,
            csrf=csrf_token(web.secret, request.path_params["token"]),
            email=loaded[0].subscriber.email,
            signup_form=False,
        )

    async def personal_data_page(request: Request) -> Response:
        subject = subject_of(request, Purpose.PERSONAL_DATA)
        if isinstance(subject, int):
            return invalid(subject)
        loaded = await web.in_thread(load, subject)
        if loaded is None:
            return invalid(410)
        if request.method == "GET":
            return data_page(request, loaded)
        form = await read_form(request, settings.web_body_timeout)
        now = web.now()
        if not csrf_ok(web.secret, request.path_params["token"], form.get(CSRF_FIELD, ""), now):
            return data_page(request, loaded, Text("表单已过期，请重试。", "The form expired; please try again."), 403)
        action = form.get("action", "")
        if action == "export":
            return await download(subject)
        if action != "delete":
            return data_page(request, loaded, Text("未知的操作。", "Unknown action."), 400)
        if form.get("confirm_delete") != "yes":
            need = Text("请勾选确认框再删除。", "Tick the box to confirm the deletion.")
            return data_page(request, loaded, need, 400)

        def work() -> bool:
            with web.open_store() as store:
                return erase(store, subject, now)

        if not await web.in_thread(work):
            return invalid(410)
        return web.page(
            Text("已删除", "Deleted"),
            [Text("您的订阅和所有相关记录已删除。", "Your subscription and every record of it are deleted.")],
        )

    async def download(subject: TokenSubject) -> Response:
        def work() -> dict[str, Any] | None:
            with web.open_store() as store:
                return export_personal_data(store, subject)

        found = await web.in_thread(work)
        if found is None:
            return invalid(410)
        body = json.dumps(found, ensure_ascii=False, indent=2) + "\n"
        return Response(
            body,
            media_type="application/json; charset=utf-8",
            headers={
                "Content-Disposition": 'attachment; filename="my-subscription.json"',
                "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer",
                "X-Content-Type-Options": "nosniff",
            },
        )

    return [
        Route("/preferences/{token}", preferences, methods=["GET", "POST"]),
        Route("/my-data/{token}", personal_data_page, methods=["GET", "POST"]),
    ]


def send_personal_data_link(web: Web, subscriber: Subscriber, now: datetime) -> None:
    """Mail the short-lived download-or-delete link (runs after the answer was sent), through the signup notices'
    path."""

    link = personal_data_link(web.settings.site_url, web.secret, subscriber, now)
    send_notice(web, Notice.PERSONAL_DATA, subscriber, now, personal_data_url=link)
