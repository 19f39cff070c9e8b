"""Reading form posts safely: a cap on body size and time, form parsing by python-multipart, and CSRF checks.

CSRF: a form served by the app carries a signed token bound to something an attacker's page cannot know: the
capability token in the page's URL (confirm, preference pages), or a random cookie set with the signup form
(double submit; the cookie is HttpOnly and SameSite=Strict). The short signup form on the static site pages cannot
carry a per-visitor token, so a signup post without one is accepted only when the browser says it came from the
site itself (`Sec-Fetch-Site: same-origin`, or an `Origin` equal to the site's); otherwise the full form is shown
again with a token, and nothing is mailed. RFC 8058's one-click unsubscribe needs no CSRF token (the token in its
URL is the authorization, and mail clients post it from no page at all).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import anyio
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.settings import Settings

CSRF_COOKIE = "digest_csrf"
CSRF_FIELD = "csrf"
CSRF_MAX_AGE = 86_400  # a form left open for a day must be reloaded
MAX_FIELDS = 20


class BodyLimit:
    """ASGI middleware: a request body larger than `max_bytes` (declared or as it arrives) is refused with 413
    the moment the handler reads it; nothing is buffered beyond the limit. `larger` gives paths starting with a
    prefix another limit (the providers' webhooks post batches of JSON larger than any form)."""

    def __init__(self, app: ASGIApp, max_bytes: int, larger: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        path = str(scope.get("path", ""))
        cap = next((n for prefix, n in self.larger.items() if path.startswith(prefix)), self.max_bytes)
        received = 0

        async def limited() -> Message:
            nonlocal received
            if not declared.isdigit() or int(declared) > cap:
                raise HTTPException(status_code=413)
            message = await receive()
            received += len(message.get("body", b""))
            if received > cap:
                raise HTTPException(status_code=413)
            return message

        await self.app(scope, limited, send)


async def read_form(request: Request, timeout: float) -> dict[str, str]:
    """The posted fields (first value of each; files refused), read within `timeout` seconds (else 408)."""
    try:
        with anyio.fail_after(timeout):
            form = await request.form(max_files=0, max_fields=MAX_FIELDS)
    except TimeoutError:
        raise HTTPException(status_code=408) from None
    fields: dict[str, str] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            raise HTTPException(status_code=400)
        fields.setdefault(name, value)
    return fields


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="digest-csrf-v1")


def _binding_hash(binding: str) -> str:
    return hashlib.sha256(binding.encode("utf-8")).hexdigest()[:32]


def csrf_token(secret: str, binding: str) -> str:
    """A form token valid only together with `binding` (the page's URL token, or the visitor's CSRF cookie)."""
    return str(_serializer(secret).dumps(_binding_hash(binding)))


def csrf_ok(secret: str, binding: str, token: str, now: datetime) -> bool:
    """Whether a posted form token was made for `binding` within the last day (at `now`)."""
    if not binding or not token:
        return False
    try:
        value, issued = _serializer(secret).loads(token, return_timestamp=True)
    except BadSignature:
        return False
    fresh = 0 <= (now - issued).total_seconds() <= CSRF_MAX_AGE
    return fresh and isinstance(value, str) and secrets.compare_digest(value, _binding_hash(binding))


def new_csrf_cookie() -> str:
    """A random value for the double-submit cookie."""
    return secrets.token_urlsafe(24)


def same_origin(request: Request, site_url: str) -> bool:
    """Whether the browser says the post came from a page of this site (Fetch Metadata, else Origin)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site == "same-origin"
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return False
    site = urlsplit(site_url)
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return origin in (f"{site.scheme}://{site.netloc}", own)


TOPIC_FIELD = "topic-"  # one checkbox per topic, `topic-<slug>=yes` (distinct names: a form field has one value)


def topic_choices(settings: Settings, chosen: Sequence[str]) -> list[dict[str, Any]]:
    """The topic checkboxes of a form (signup or preferences), the `chosen` ones ticked."""
    return [{"slug": t.slug, "zh": t.name_zh, "en": t.name_en, "chosen": t.slug in chosen} for t in settings.topic_list]


def chosen_topics(settings: Settings, form: Mapping[str, str]) -> list[str]:
    """The configured topics ticked in a posted form (unknown slugs are ignored)."""
    return [t.slug for t in settings.topic_list if form.get(TOPIC_FIELD + t.slug) == "yes"]
