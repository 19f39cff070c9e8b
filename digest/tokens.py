"""Signed, URL-safe unsubscribe tokens (HMAC via itsdangerous; compared in constant time)."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlencode

from itsdangerous import BadSignature, URLSafeSerializer

from digest.model import Subscriber

_SALT = "digest-unsubscribe-v1"


@lru_cache(maxsize=8)
def _serializer(secret: str) -> URLSafeSerializer:
    # Built once per secret: a send makes 10,000 tokens, and building the serializer is most of a token's cost.
    return URLSafeSerializer(secret, salt=_SALT)


def make_token(secret: str, email: str) -> str:
    """A token that names exactly one address and cannot be made without the secret."""
    return str(_serializer(secret).dumps(email.strip().lower()))


def read_token(secret: str, token: str) -> str | None:
    """The address a token was made for, or None when it is forged, altered or malformed."""
    try:
        value = _serializer(secret).loads(token)
    except BadSignature:
        return None
    return value if isinstance(value, str) else None


def unsubscribe_link(endpoint: str, secret: str, subscriber: Subscriber) -> str:
    """The personal one-click unsubscribe URL for `subscriber`."""
    separator = "&" if "?" in endpoint else "?"
    return endpoint + separator + urlencode({"token": make_token(secret, subscriber.email)})


def preferences_link(site_url: str, secret: str, subscriber: Subscriber) -> str:
    """The personal link to a subscriber's preferences page (minimal stand-in; the signup branch owns the real one)."""
    return site_url + "preferences/" + make_token(secret, subscriber.email)
