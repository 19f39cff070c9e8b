"""What every page handler of the web app shares: settings, clock and secret in one object, pages on the site's
own base template (bilingual, escaped, strict headers), the client address, and state work in worker threads.

Handlers never touch the state on the event loop: `Web.in_thread` runs the work in a small pool of its own, so a
burst of writes waiting for a busy state cannot use up the threads that serve static files.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from digest.model import Site
from digest.render.site import base_context
from digest.settings import Settings
from digest.store import Backend, Store, backend_for

log = logging.getLogger("digest.web")
T = TypeVar("T")
Clock = Callable[[], datetime]

# The token is in the URL of most pages: never send it on as a Referer, never cache or index the page.
PAGE_HEADERS: Mapping[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
}
_STYLE = re.compile(r"<style>(.*?)</style>", re.S)


@dataclass(frozen=True)
class Text:
    """One message in the site's language with its English alongside."""

    zh: str
    en: str


@dataclass
class Web:
    """The web app's settings and collaborators, built once by `create_app`."""

    settings: Settings
    secret: str
    clock: Clock
    env: jinja2.Environment
    db_limiter: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(4))
    backend: Backend = field(init=False)

    def __post_init__(self) -> None:
        # As many pooled sessions (PostgreSQL) as threads that may use one at a time.
        self.backend = backend_for(self.settings.state_location).for_requests(int(self.db_limiter.total_tokens))

    @property
    def site(self) -> Site:
        """The publication as the base template needs it."""
        s = self.settings
        return Site(title=s.title, url=s.site_url, author=s.author, description=s.description, language=s.language)

    @property
    def root(self) -> str:
        """The path of the site root as browsers see it (`/`, or `/digest/` behind a proxy with a prefix)."""
        return urlsplit(self.settings.site_url).path or "/"

    def now(self) -> datetime:
        """The time of this request (read once per request)."""
        return self.clock()

    def open_store(self) -> Store:
        """The state, waiting at most `web_db_wait` seconds when a writer holds it."""
        return Store.open(self.backend, busy_timeout=self.settings.web_db_wait)

    async def in_thread(self, work: Callable[..., T], *args: Any) -> T:
        """Run blocking work (the state, SMTP) off the event loop, in the app's own small pool."""
        return await anyio.to_thread.run_sync(work, *args, limiter=self.db_limiter)

    def page(
        self,
        heading: Text,
        texts: Sequence[Text] = (),
        *,
        status: int = 200,
        form: str | None = None,
        headers: Mapping[str, str] | None = None,
        signup_form: bool = True,
        **values: Any,
    ) -> HTMLResponse:
        """A page on the site's base template: a bilingual heading and texts, then an optional form template."""
        context = base_context(self.site, self.root)
        context.update(
            title=f"{heading.zh} · {heading.en}",
            heading=heading,
            texts=texts,
            form=form,
            signup_url=self.root + "subscribe" if signup_form else None,
            root_path=self.root,
            **values,
        )
        html = self.env.get_template("web_page.html.j2").render(context)
        return HTMLResponse(html, status_code=status, headers={**page_headers(html), **(headers or {})})


def page_headers(html: str) -> dict[str, str]:
    """The strict headers of a web page; its own inline styles are allowed by hash, nothing else runs."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode() + "'"
        for css in _STYLE.findall(html)
    )
    styles = hashes or "'none'"
    csp = f"default-src 'none'; style-src {styles}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    return {**PAGE_HEADERS, "Content-Security-Policy": csp}


def ip_address_text(value: str) -> str | None:
    """`value` as the canonical text of an IP address, or None when it is not one (a zone index such as
    `fe80::1%eth0` may hold any text, so it is refused too)."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return None
    return str(address)


class ForwardedClient:
    """ASGI middleware behind a proxy listed in `trusted_proxies`: the client is what X-Forwarded-For names
    (uvicorn's rules: the last address not itself a trusted proxy; the scheme from X-Forwarded-Proto), but only
    when that is an IP address. Anything else (`<script>`, control characters, a name) leaves the peer address."""

    _PEER = "digest.peer"

    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[str]) -> None:

        self.app = app
        self.proxy = ProxyHeadersMiddleware(self._checked, trusted_hosts=list(trusted_proxies))  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.proxy({**scope, self._PEER: scope.get("client")}, receive, send)  # type: ignore[arg-type]

    async def _checked(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if client and ip_address_text(str(client[0])) is None:
            log.warning("X-Forwarded-For from %s names no IP address: the peer address is used", scope[self._PEER])
            scope["client"] = scope[self._PEER]
        await self.app(scope, receive, send)


def client_ip(request: Request) -> str:
    """The client's address: the peer, or (behind a proxy listed in `trusted_proxies`) the IP address
    X-Forwarded-For names (see ForwardedClient); never anything but an IP address's text (or "")."""
    return (ip_address_text(request.client.host) or "") if request.client else ""
