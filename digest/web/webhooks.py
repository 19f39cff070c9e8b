"""The provider webhooks of `digest serve`: `POST /webhooks/bounce` (digest's generic JSON, Bearer), `/webhooks/ses`
(Amazon SNS), `/webhooks/mailgun`, `/webhooks/postmark` (HTTP Basic) and `/webhooks/sendgrid`.

Each endpoint is off (404, as if it did not exist: nothing to authenticate against, and a stranger learns nothing
about which providers the list uses) until its setting is set, and so are all of them without `secret_key` (the
delivery ids in the mail cannot be checked). A request that is not provably the provider's gets 401 (no or wrong
credentials) or 403 (a signature that does not match, a replay, a foreign SNS topic) and changes nothing. Bodies are
capped at `webhook_max_body_bytes` (413). Events are applied by `importer.apply_event`: one transaction each, with
the record of the provider's event id, so a provider's retry changes nothing; a busy state is 503 and the
provider tries again. Logs carry the provider, the event's identity and the outcome, all cleaned: never the body.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import threading
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import datetime

import anyio
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from digest.bounces import webhooks as hooks
from digest.bounces.importer import ImportResult, ProviderEvent, apply_event
from digest.errors import printable
from digest.web.pages import Web

log = logging.getLogger("digest.web")

#: Loopback names that `sns_test_ca_file` (tests only) lets SigningCertURL and SubscribeURL use.
TEST_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_CERT_CACHE_SIZE = 32
_CERT_MAX_BYTES = 65_536
_FETCH_TIMEOUT = 10.0
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

Handler = Callable[[Request], Awaitable[Response]]


class Unavailable(Exception):
    """Something the request needs cannot be had right now (the SNS certificate): 503, the provider retries."""


def _answer(status: int, text: str, **extra: object) -> JSONResponse:
    return JSONResponse({"status": status, "message": text, **extra}, status_code=status, headers=_HEADERS)


def routes(web: Web) -> list[Route]:
    """The five webhook endpoints, each answering 404 while its setting (or `secret_key`) is missing."""
    settings = web.settings
    secret = settings.webhook_secret.get_secret_value() if web.secret else ""
    mailgun_key = settings.mailgun_signing_key.get_secret_value() if web.secret else ""
    sendgrid_key = settings.sendgrid_public_key if web.secret else ""
    topics = frozenset(settings.ses_topic_arns) if web.secret else frozenset()
    test_hosts = TEST_HOSTS if settings.sns_test_ca_file is not None else frozenset()
    if test_hosts:
        log.warning("sns_test_ca_file is set: /webhooks/ses trusts loopback hosts (for the test suite only)")
    certificates: dict[str, bytes] = {}  # SigningCertURL -> PEM, shared by the worker threads
    certificates_lock = threading.Lock()

    async def read_body(request: Request) -> bytes:
        try:
            with anyio.fail_after(settings.web_body_timeout):
                return await request.body()
        except TimeoutError:
            raise HTTPException(status_code=408) from None

    def apply(events: list[ProviderEvent], now: datetime) -> list[ImportResult]:
        with web.open_store() as store:
            return [
                apply_event(store, event, secret=web.secret, now=now, soft_limit=settings.soft_bounce_limit)
                for event in events
            ]

    async def applied(provider: str, events: list[ProviderEvent], now: datetime) -> Response:
        results = await web.in_thread(apply, events, now)
        for result in results:
            log.info("webhook %s: %s: %s", provider, printable(result.name[:120]), printable(result.outcome[:300]))
        if any(r.problem and r.repeated for r in results):
            return _answer(403, "refused: a replayed signature")
        done = [r for r in results if not r.repeated and not r.problem]
        unmatched = [r for r in results if not r.repeated and r.problem]
        already = len(results) - len(done) - len(unmatched)
        return _answer(200, "ok", applied=len(done), unmatched=len(unmatched), already=already)

    def guarded(provider: str, on: bool, handle: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            if not on:
                return _answer(404, f"the {provider} webhook is not set up here")
            try:
                return await handle(request)
            except hooks.Refused as refused:
                log.warning("webhook %s refused (%d): %s", provider, refused.status, refused.reason)
                headers = {}
                if refused.status == 401:
                    scheme = "Basic" if provider == "postmark" else "Bearer"
                    headers["WWW-Authenticate"] = f'{scheme} realm="digest webhooks"'
                response = _answer(refused.status, refused.reason)
                response.headers.update(headers)
                return response
            except Unavailable as exc:
                log.warning("webhook %s: %s", provider, exc)
                response = _answer(503, str(exc))
                response.headers["Retry-After"] = "60"
                return response

        return endpoint

    async def generic(request: Request) -> Response:
        hooks.check_bearer(request.headers.get("authorization", ""), secret)
        body = await read_body(request)
        event = hooks.generic_event(hooks.parse_json(body), body)
        return await applied("bounce", [event], web.now())

    async def postmark(request: Request) -> Response:
        hooks.check_basic(request.headers.get("authorization", ""), secret)
        body = await read_body(request)
        return await applied("postmark", [hooks.postmark_event(hooks.parse_json(body))], web.now())

    async def mailgun(request: Request) -> Response:
        body = await read_body(request)
        doc = hooks.parse_json(body)
        now = web.now()
        token = hooks.verify_mailgun(doc, mailgun_key, now)
        event = hooks.mailgun_event(doc)
        nonce = "mailgun-token:" + hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
        return await applied("mailgun", [ProviderEvent(event.key, event.notices, event.delivery_id, nonce)], now)

    async def sendgrid(request: Request) -> Response:
        body = await read_body(request)
        hooks.verify_sendgrid(
            sendgrid_key,
            request.headers.get(hooks.SENDGRID_TIMESTAMP, ""),
            request.headers.get(hooks.SENDGRID_SIGNATURE, ""),
            body,
        )
        return await applied("sendgrid", hooks.sendgrid_events(hooks.parse_json(body)), web.now())

    def context() -> ssl.SSLContext:
        ca = settings.sns_test_ca_file
        return ssl.create_default_context(cafile=str(ca)) if ca is not None else ssl.create_default_context()

    def fetch(url: str, limit: int) -> bytes:
        """GET an https URL already checked by `sns_host_ok` (redirects are not followed)."""

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None

        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context()), NoRedirect())
        try:
            with opener.open(url, timeout=_FETCH_TIMEOUT) as reply:
                if reply.status != 200:
                    raise Unavailable(f"Amazon SNS answered {reply.status}")
                data: bytes = reply.read(limit + 1)
        except OSError as exc:
            raise Unavailable(f"cannot reach Amazon SNS ({type(exc).__name__})") from None
        if len(data) > limit:
            raise Unavailable("Amazon SNS sent more than expected")
        return data

    def certificate(url: str) -> bytes:
        with certificates_lock:
            cached = certificates.get(url)
        if cached is None:
            cached = fetch(url, _CERT_MAX_BYTES)
            with certificates_lock:
                if len(certificates) >= _CERT_CACHE_SIZE:
                    certificates.pop(next(iter(certificates)))
                certificates[url] = cached
        return cached

    async def ses(request: Request) -> Response:
        body = await read_body(request)
        doc = hooks.parse_json(body)
        if not isinstance(doc, dict):
            raise hooks.Refused(400, "not an Amazon SNS message")
        hooks.sns_string_to_sign(doc)  # a known Type with all its fields, before anything is fetched
        hooks.sns_topic(doc, topics)
        url = hooks.sns_signing_cert_url(doc, test_hosts)
        hooks.verify_sns(doc, await web.in_thread(certificate, url))
        kind = doc["Type"]
        if kind == "SubscriptionConfirmation":
            subscribe = str(doc.get("SubscribeURL", ""))
            if not hooks.sns_host_ok(subscribe, test_hosts):
                raise hooks.Refused(403, "SubscribeURL is not an https URL on sns.<region>.amazonaws.com")
            await web.in_thread(fetch, subscribe, _CERT_MAX_BYTES)
            log.info("webhook ses: subscription to %s confirmed", printable(str(doc["TopicArn"])))
            return _answer(200, "subscription confirmed")
        if kind == "UnsubscribeConfirmation":
            log.warning("webhook ses: unsubscribed from %s", printable(str(doc["TopicArn"])))
            return _answer(200, "ok")
        event = hooks.ses_event(doc)
        if event is None:
            return _answer(200, "not an SES bounce, complaint or delivery notification: nothing to do")
        return await applied("ses", [event], web.now())

    table: list[tuple[str, bool, Handler]] = [
        ("bounce", bool(secret), generic),
        ("ses", bool(topics), ses),
        ("mailgun", bool(mailgun_key), mailgun),
        ("postmark", bool(secret), postmark),
        ("sendgrid", bool(sendgrid_key), sendgrid),
    ]
    return [Route(f"/webhooks/{name}", guarded(name, on, handle), methods=["POST"]) for name, on, handle in table]
