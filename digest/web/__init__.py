"""The public web app behind `digest serve`: the site and feeds (static.py), signup with double opt-in
(signup.py), the preference page (preferences.py), one-click unsubscribe (unsubscribe.py) and the mail providers'
bounce webhooks (webhooks.py), on shared page helpers (pages.py) and form handling (forms.py); server.py runs it
under uvicorn.

Every error is a bilingual page with its 4xx/5xx status; a traceback only ever goes to the log.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from digest.errors import StateBusy
from digest.optouts import OptOutJournal
from digest.render import make_environment
from digest.settings import Settings
from digest.web import preferences, signup, unsubscribe, webhooks
from digest.web.forms import BodyLimit
from digest.web.pages import Clock, ForwardedClient, Text, Web
from digest.web.server import serve
from digest.web.static import FastSite, SiteFiles, SiteIndex, route_matcher

__all__ = ["create_app", "serve"]

log = logging.getLogger("digest.web")

JOURNAL_CHECK_SECONDS = 2.0

_ERRORS: dict[int, tuple[Text, Text]] = {
    400: (Text("请求无效", "Bad request"), Text("请求的内容无法处理。", "The request could not be understood.")),
    404: (Text("页面不存在", "Not found"), Text("这里没有这个页面。", "There is no such page here.")),
    405: (
        Text("不支持的方法", "Method not allowed"),
        Text("这个地址不接受这种请求。", "This address does not take that."),
    ),
    408: (
        Text("请求超时", "Request timeout"),
        Text("请求发送得太慢，请重试。", "The request arrived too slowly; try again."),
    ),
    413: (
        Text("内容太大", "Request too large"),
        Text("提交的内容超过了允许的大小。", "What was sent is larger than this site accepts."),
    ),
    500: (
        Text("服务器出错", "Server error"),
        Text("出了点问题，已记录下来。请稍后再试。", "Something went wrong and was logged; please try again later."),
    ),
    503: (
        Text("请稍后再试", "Please try again"),
        Text("服务器暂时繁忙，请一分钟后重试。", "The server is busy; please try again in a minute."),
    ),
}


def serves_site(settings: Settings) -> bool:
    """Whether this host serves the site's files too: `web_static` on and the output folder present (a host that
    only answers signup and unsubscribe has no copy of the site)."""
    return settings.web_static and settings.output_dir.is_dir()


NOT_SET_UP_HEADING = Text("邮件订阅尚未开通", "Email subscription is not set up")
NOT_SET_UP_TEXT = Text(
    "本站还不能通过邮件订阅、确认或退订。可以用 RSS、Atom 或 JSON Feed 订阅。",
    "This site cannot take email signups, confirmations or unsubscribes yet; its feeds (RSS, Atom, JSON Feed) work.",
)


def signup_not_set_up(web: Web) -> list[BaseRoute]:
    """Without `secret_key` no token can be signed or checked: the dynamic endpoints answer 503 with a page
    saying so (the static pages' signup form lands there), and the site and its feeds are served as usual."""

    async def not_set_up(request: Request) -> Response:
        return web.page(NOT_SET_UP_HEADING, [NOT_SET_UP_TEXT], status=503, signup_form=False)

    # The same paths as the real endpoints (building their routes signs nothing).
    real = [*unsubscribe.routes(web, None), *signup.routes(web), *preferences.routes(web)]
    paths = [route.path for route in real if isinstance(route, Route)]
    return [Route(path, not_set_up, methods=["GET", "HEAD", "POST"]) for path in paths]


def create_app(settings: Settings, now: Clock | None = None) -> Starlette:
    """The ASGI app: signup, confirmation, preferences and unsubscribe, then every file of `settings.output_dir`
    (unless `serves_site` says this host has none).

    `now` is read once per request (the time recorded); tests may pin it.
    """
    signup_on = bool(settings.secret_key.get_secret_value())
    web = Web(
        settings=settings,
        secret=settings.require_secret_key() if signup_on else "",
        clock=now if now is not None else (lambda: datetime.now(settings.tz)),
        env=make_environment(settings.templates_dir),
    )
    # SQLite has one writer at a time, and a render holds it while it renders: an unsubscribe that cannot wait goes
    # to a journal. PostgreSQL has no such writer: every web write goes straight to the database.
    journal = OptOutJournal.beside(settings.state_path) if web.backend.journals_optouts and signup_on else None
    outbox = signup.signup_outbox(web) if signup_on else None

    async def error_page(request: Request, exc: Exception) -> Response:
        # A render holding the state longer than `web_db_wait`: the client should simply come back.
        status = exc.status_code if isinstance(exc, HTTPException) else 503 if isinstance(exc, StateBusy) else 500
        if status == 503:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        if status == 500:
            log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        heading, text = _ERRORS.get(status, _ERRORS[400])
        headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
        if status == 503:
            headers["Retry-After"] = "60"
        return web.page(heading, [text], status=status, headers=headers)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def apply_journal(journal: OptOutJournal) -> None:
            while True:
                if journal.waiting():
                    applied = await web.in_thread(unsubscribe.drain_journal, web, journal)
                    if applied:
                        log.info("applied %d journaled unsubscribes", applied)
                await anyio.sleep(JOURNAL_CHECK_SECONDS)

        if outbox is not None:
            outbox.start()
        async with anyio.create_task_group() as tasks:
            if journal is not None:
                tasks.start_soon(apply_journal, journal)
            yield
            tasks.cancel_scope.cancel()
        if outbox is not None:
            await anyio.to_thread.run_sync(outbox.stop)  # the queue drains a few seconds; the rest stays owed
        web.backend.close()

    routes: list[BaseRoute]
    if signup_on:
        routes = [*unsubscribe.routes(web, journal), *signup.routes(web, outbox), *preferences.routes(web)]
    else:
        log.info("signup, confirmation, preferences and unsubscribe are off: secret_key is not set")
        routes = signup_not_set_up(web)
    routes.extend(webhooks.routes(web))
    fast: list[Middleware] = []
    site_index: SiteIndex | None = None
    if serves_site(settings):
        site_files = SiteFiles(directory=settings.output_dir, hub=settings.websub_hub, site_url=settings.site_url)
        # The common request (a built file) is answered before the routes and middlewares; never an app path.
        own = route_matcher([route.path_regex for route in routes if isinstance(route, Route)])
        site_index = SiteIndex(settings.output_dir, hub=settings.websub_hub, site_url=settings.site_url, is_route=own)
        fast.append(Middleware(FastSite, index=site_index))
        routes.append(Mount("/", app=site_files))
    else:
        log.info(
            "serving the dynamic endpoints only (no site files: web_static is off or %s is missing)",
            settings.output_dir,
        )
    app = Starlette(
        routes=routes,
        middleware=[
            *fast,
            Middleware(ForwardedClient, trusted_proxies=settings.trusted_proxies),
            Middleware(
                BodyLimit,
                max_bytes=settings.web_max_body_bytes,
                larger={"/webhooks/": max(settings.webhook_max_body_bytes, settings.web_max_body_bytes)},
            ),
        ],
        # StateBusy by name: Starlette's handler for Exception answers, then re-raises into the server's log.
        exception_handlers={HTTPException: error_page, StateBusy: error_page, Exception: error_page},
        lifespan=lifespan,
    )
    app.state.site_index = site_index  # digest.web.server answers from it before the app (see static.answer)
    return app
