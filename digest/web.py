"""The small HTTP app behind `digest serve`: the output folder (archive, issues, feeds) and one-click unsubscribe.

Static files go through Starlette's `StaticFiles` (ETag, Last-Modified, 304, Range), narrowed to the output folder:
no dotfiles, no `..`, no symlink leading outside, and the feed content types set explicitly. `/unsubscribe` reads an
HMAC-signed token (digest.tokens); the token alone authorizes the POST, so there is no session and no CSRF token.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from enum import Enum
from pathlib import Path
from urllib.parse import parse_qs, urlencode

import anyio.to_thread
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import NotModifiedResponse, PathLike, StaticFiles
from starlette.types import Scope

from digest.errors import DigestError, StoreError
from digest.settings import Settings
from digest.tokens import read_token

log = logging.getLogger("digest.web")

Clock = Callable[[], datetime]

# Explicit types for what `digest render` writes; mimetypes would say application/xml or application/json.
CONTENT_TYPES: Mapping[str, str] = {
    "rss.xml": "application/rss+xml; charset=utf-8",
    "atom.xml": "application/atom+xml; charset=utf-8",
    "issues.xml": "application/atom+xml; charset=utf-8",
    "feed.json": "application/feed+json; charset=utf-8",
}
SUFFIX_TYPES: Mapping[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".xml": "application/xml; charset=utf-8",
    ".json": "application/json; charset=utf-8",
}
# The generated pages carry no scripts; forbid them so that a rendering bug cannot become script injection.
SITE_CSP = "script-src 'none'; object-src 'none'; base-uri 'none'; frame-ancestors 'self'"
MAX_FORM_BYTES = 16 * 1024


def content_type(path: str) -> str | None:
    """The Content-Type for a file of the output folder, or None to let Starlette guess."""
    name = os.path.basename(path)
    if name in CONTENT_TYPES:
        return CONTENT_TYPES[name]
    return SUFFIX_TYPES.get(os.path.splitext(name)[1].lower())


def is_hidden(path: str) -> bool:
    """True for any path with a component starting with a dot (`.digest-build.json`, `.x.tmp`, `..`)."""
    return path != "." and any(part.startswith(".") for part in path.replace("\\", "/").split("/"))


class SiteFiles(StaticFiles):
    """StaticFiles for the output folder: dotfiles hidden, explicit content types, security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        # `path` is already percent-decoded and normalized; anything still hidden or climbing is refused here,
        # and lookup_path (follow_symlink=False) refuses what resolves outside the folder.
        if is_hidden(path) or "\x00" in path:
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        """The file (or 304) with its proper type; conditional headers are handled as in StaticFiles."""
        media_type = content_type(os.fspath(full_path))
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
        if media_type is not None and media_type.startswith("text/html"):
            headers["Content-Security-Policy"] = SITE_CSP
        response = FileResponse(
            full_path, status_code=status_code, stat_result=stat_result, media_type=media_type, headers=headers
        )
        if self.is_not_modified(response.headers, Headers(scope=scope)):
            return NotModifiedResponse(response.headers)
        return response


# --- unsubscribe pages ---------------------------------------------------------------------------

_STYLE = (
    "body{font-family:system-ui,-apple-system,'PingFang SC','Microsoft YaHei',sans-serif;max-width:36rem;"
    "margin:3rem auto;padding:0 1rem;line-height:1.6;color:#222}h1{font-size:1.4rem}"
    "button{font-size:1rem;padding:.5rem 1.5rem;cursor:pointer}.en{color:#555}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
PAGE_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # The token is in the URL: never send it on as a Referer, never cache or index the page.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
}
_PAGE = Markup(
    '<!DOCTYPE html>\n<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n'
    '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
    '<meta name="robots" content="noindex">\n<title>{heading_zh} · {heading_en}</title>\n'
    "<style>" + _STYLE.replace("{", "{{").replace("}", "}}") + "</style>\n</head>\n<body>\n"
    '<h1>{heading_zh}<br><span class="en" lang="en">{heading_en}</span></h1>\n'
    '<p>{text_zh}</p>\n<p class="en" lang="en">{text_en}</p>\n{extra}</body>\n</html>\n'
)
_FORM = Markup(
    '<form method="post" action="?{query}">\n'
    '<input type="hidden" name="List-Unsubscribe" value="One-Click">\n'
    '<button type="submit">退订 · Unsubscribe</button>\n</form>\n'
)


class Outcome(Enum):
    """What an unsubscribe request found or did; each has its page."""

    CONFIRM = "confirm"
    DONE = "done"
    ALREADY = "already"
    BAD_TOKEN = "bad-token"
    UNKNOWN = "unknown"
    BUSY = "busy"


_STATUS: Mapping[Outcome, int] = {Outcome.BAD_TOKEN: 400, Outcome.UNKNOWN: 404, Outcome.BUSY: 503}
_TEXTS: Mapping[Outcome, tuple[str, str, str, str]] = {
    Outcome.CONFIRM: (
        "退订确认",
        "Unsubscribe?",
        "确定让 {address} 不再收到《{title}》吗？",
        "Stop sending {title} to {address}?",
    ),
    Outcome.DONE: (
        "已退订",
        "You are unsubscribed",
        "{address} 将不再收到《{title}》。",
        "{address} will receive no further issues of {title}.",
    ),
    Outcome.ALREADY: (
        "已退订",
        "Already unsubscribed",
        "{address} 此前已经退订《{title}》，无需再次操作。",
        "{address} was already unsubscribed from {title}; nothing else to do.",
    ),
    Outcome.BAD_TOKEN: (
        "退订链接无效",
        "Invalid unsubscribe link",
        "这个链接不完整或已损坏。请使用最近一封邮件中的退订链接。",
        "This link is incomplete or damaged. Please use the unsubscribe link of a recent email.",
    ),
    Outcome.UNKNOWN: (
        "未找到订阅",
        "No such subscription",
        "{address} 不在订阅名单中，无需退订。",
        "{address} is not on the list; there is nothing to unsubscribe.",
    ),
    Outcome.BUSY: (
        "请稍后再试",
        "Please try again",
        "服务器暂时繁忙，请一分钟后重试。",
        "The server is busy; please try again in a minute.",
    ),
}


def unsubscribe_page(outcome: Outcome, title: str, address: str = "", token: str = "") -> HTMLResponse:
    """The bilingual page for an outcome, every value escaped, with the strict page headers."""
    heading_zh, heading_en, text_zh, text_en = _TEXTS[outcome]
    values = {"address": address, "title": title}
    extra = Markup("")
    if outcome is Outcome.CONFIRM:
        extra = _FORM.format(query=urlencode({"token": token}))
    body = _PAGE.format(
        heading_zh=heading_zh,
        heading_en=heading_en,
        text_zh=Markup.escape(text_zh).format(**values),
        text_en=Markup.escape(text_en).format(**values),
        extra=extra,
    )
    status = _STATUS.get(outcome, 200)
    headers = dict(PAGE_HEADERS)
    if outcome is Outcome.BUSY:
        headers["Retry-After"] = "60"
    return HTMLResponse(str(body), status_code=status, headers=headers)


# --- the app -------------------------------------------------------------------------------------


def create_app(settings: Settings, now: Clock | None = None) -> Starlette:
    """The ASGI app: `/unsubscribe`, then every file of `settings.output_dir`.

    `now` is read for each unsubscribe (the time recorded); tests may pin it.
    """
    from digest.publisher import Publisher

    secret = settings.require_secret_key()
    clock: Clock = now if now is not None else (lambda: datetime.now(settings.tz))
    publisher = Publisher(settings)

    def apply(address: str, write: bool) -> Outcome:
        """Look the address up and, for a POST, unsubscribe it in one transaction (runs in a worker thread)."""
        try:
            with publisher.open_store() as store, store.transaction(commit=write):
                subscriber = store.subscriber(address)
                if subscriber is None:
                    return Outcome.UNKNOWN
                if not subscriber.active:
                    return Outcome.ALREADY
                if not write:
                    return Outcome.CONFIRM
                store.unsubscribe(address, clock())
        except StoreError as exc:
            log.warning("unsubscribe of %s failed: %s", address, exc)
            return Outcome.BUSY
        log.info("unsubscribed %s", address)
        return Outcome.DONE

    async def unsubscribe(request: Request) -> Response:
        token = request.query_params.get("token", "")
        if request.method == "POST":
            # RFC 8058 sends `List-Unsubscribe=One-Click` form-encoded; the token is the authorization, so the
            # body is read (bounded) only to find a token a client may have moved there.
            form = await _read_form(request)
            token = token or form.get("token", "")
        address = read_token(secret, token) if token else None
        if address is None:
            return unsubscribe_page(Outcome.BAD_TOKEN, settings.title)
        outcome = await anyio.to_thread.run_sync(apply, address, request.method == "POST")
        if outcome is Outcome.ALREADY and request.method == "POST":
            log.info("already unsubscribed %s", address)
        return unsubscribe_page(outcome, settings.title, address, token)

    routes = [
        Route("/unsubscribe", unsubscribe, methods=["GET", "POST"]),
        Mount("/", app=SiteFiles(directory=settings.output_dir, html=True, follow_symlink=False)),
    ]
    return Starlette(routes=routes)


async def _read_form(request: Request) -> dict[str, str]:
    """The url-encoded body as a dict (first value per name); other bodies are ignored, big ones refused."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(status_code=413)
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


# --- running it ----------------------------------------------------------------------------------


class _RedactTokens(logging.Filter):
    """Keep unsubscribe tokens (which carry the address) out of the access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "token=" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?token=[redacted]", *args[3:])
        return True


def serve(settings: Settings, host: str, port: int) -> None:
    """Run the app under uvicorn until Ctrl-C or SIGTERM (uvicorn shuts down gracefully on both)."""
    import uvicorn

    settings.require_secret_key()
    output = Path(settings.output_dir)
    if not output.is_dir():
        raise DigestError(f"{output}/: output folder not found; run `digest render` first")
    app = create_app(settings)
    logging.getLogger("uvicorn.access").addFilter(_RedactTokens())
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, lifespan="off", proxy_headers=False, server_header=False
    )
    server = uvicorn.Server(config)
    shown_host = f"[{host}]" if ":" in host else host
    log.info("serving %s/ and one-click unsubscribe on http://%s:%d/", output, shown_host, port)
    # uvicorn re-raises the captured SIGINT after a clean shutdown; a stop by Ctrl-C is not an error.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    log.info("stopped")
