"""Signed, URL-safe tokens for the links in mail: confirm a signup, open the preference page, unsubscribe.

A token carries no address: its payload is the subscription (subscriber id and the random `token_nonce` renewed on
every re-subscription, so links die with the subscription they were made for). It is signed with `secret_key`
(HMAC via itsdangerous, compared in constant time) under a salt naming its purpose and its list, so a confirm token
cannot unsubscribe anybody and a token of one list means nothing to another. The list is named by the URL its links
point to (`site_url` for confirm and preference links, `unsubscribe_endpoint` for unsubscribe links): both
`unsubscribe_link` and `preferences_link` are given that URL, and the web app knows it from its settings, so no
signature has to change to carry a list id. Confirmation tokens also carry their issue time and expire.

Links mailed before these tokens existed (salt "digest-unsubscribe-v1", payload = the address) still unsubscribe,
until the end of LEGACY_UNSUBSCRIBE_LAST_DAY: a signed address never dies otherwise, whatever its owner did since.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeSerializer, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from itsdangerous.serializer import Serializer

from digest.model import Subscriber

LEGACY_UNSUBSCRIBE_SALT = "digest-unsubscribe-v1"
LEGACY_UNSUBSCRIBE_LAST_DAY = date(2027, 6, 30)  # docs/signup.md says so; after it such links get "no longer valid"
_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


class Purpose(StrEnum):
    """What a token may be used for; each purpose signs with its own salt."""

    CONFIRM = "confirm"
    PREFERENCES = "preferences"
    UNSUBSCRIBE = "unsubscribe"
    PERSONAL_DATA = "personal-data"  # download or delete my data: mailed on request, short-lived


# Tokens of these purposes carry their issue time and expire; the others live as long as their subscription.
_TIMED = (Purpose.CONFIRM, Purpose.PERSONAL_DATA)
PERSONAL_DATA_MAX_AGE = 3600  # seconds a download-or-delete link works


@dataclass(frozen=True)
class TokenSubject:
    """The subscription a valid token names (look it up by id, then compare the nonce)."""

    subscriber_id: int
    nonce: str

    def matches(self, subscriber: Subscriber) -> bool:
        """Whether `subscriber` is still the subscription the token was made for (not re-subscribed since)."""
        return subscriber.id == self.subscriber_id and bool(self.nonce) and subscriber.token_nonce == self.nonce


class BadToken(ValueError):
    """A token that is forged, altered, malformed, for another purpose or list, or (`expired`) too old."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


def _salt(purpose: Purpose, scope: str) -> str:
    return f"digest-{purpose.value}-v2|{scope}"


class _Uncompressed(URLSafeSerializer):
    """itsdangerous's URL-safe tokens, made without trying zlib first. Their payload, an id and a random nonce,
    never comes out shorter compressed, so the library always dropped the attempt, yet paid for it: 13 µs per
    token (zlib sets up 256 KB of state), a quarter of building a mailed message. The tokens are the same bytes;
    reading them (compressed ones too) is the library's own code."""

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))


class _UncompressedTimed(URLSafeTimedSerializer):
    """_Uncompressed for the tokens that carry their issue time."""

    dump_payload = _Uncompressed.dump_payload


@lru_cache(maxsize=16)
def _serializer(secret: str, salt: str) -> URLSafeSerializer:
    # Built once per (secret, salt): a send makes 10,000 tokens, and building the serializer is most of their cost.
    return _Uncompressed(secret, salt=salt)


def _timed(secret: str, salt: str, issued: datetime | None = None) -> URLSafeTimedSerializer:
    if issued is None:
        return _UncompressedTimed(secret, salt=salt)
    stamp = int(issued.timestamp())

    class _IssuedAt(TimestampSigner):
        def get_timestamp(self) -> int:
            return stamp

    return _UncompressedTimed(secret, salt=salt, signer=_IssuedAt)


def make_token(secret: str, purpose: Purpose, scope: str, subscriber: Subscriber, *, issued: datetime) -> str:
    """A token for one subscription and one purpose on the list at `scope`; `issued` dates the tokens that expire
    (confirm, personal data)."""
    payload = [subscriber.id, subscriber.token_nonce]
    if purpose in _TIMED:
        return str(_timed(secret, _salt(purpose, scope), issued).dumps(payload))
    return str(_serializer(secret, _salt(purpose, scope)).dumps(payload))


def read_token(
    secret: str, purpose: Purpose, scope: str, token: str, *, now: datetime, max_age: float | None = None
) -> TokenSubject:
    """The subscription a token names; BadToken when it is not a valid token of this purpose and list, or when a
    token that expires (confirm, personal data) is older than `max_age` seconds at `now`."""
    salt = _salt(purpose, scope)
    try:
        if purpose in _TIMED:
            value, issued = _timed(secret, salt).loads(token, return_timestamp=True)
            if max_age is not None and (now - issued).total_seconds() > max_age:
                raise BadToken("this link has expired", expired=True)
        else:
            value = _serializer(secret, salt).loads(token)
    except SignatureExpired:  # pragma: no cover - expiry is checked above, against `now`
        raise BadToken("this link has expired", expired=True) from None
    except BadSignature:
        raise BadToken("this link is not valid") from None
    match value:
        case [int(subscriber_id), str(nonce)] if nonce:
            return TokenSubject(subscriber_id, nonce)
    raise BadToken("this link is not valid")


def read_legacy_unsubscribe_token(secret: str, token: str, now: datetime) -> str | None:
    """The address of an unsubscribe link mailed before tokens named subscriptions (None if it is not one);
    BadToken (`expired`) for one used after LEGACY_UNSUBSCRIBE_LAST_DAY (the date where `now` is)."""
    try:
        value = _serializer(secret, LEGACY_UNSUBSCRIBE_SALT).loads(token)
    except BadSignature:
        return None
    if not isinstance(value, str) or not value:
        return None
    if now.date() > LEGACY_UNSUBSCRIBE_LAST_DAY:
        raise BadToken(f"unsubscribe links of this kind ended on {LEGACY_UNSUBSCRIBE_LAST_DAY}", expired=True)
    return value


def _with_token(url: str, token: str) -> str:
    separator = "&" if "?" in url else "?"
    return url + separator + urlencode({"token": token})


def unsubscribe_link(endpoint: str, secret: str, subscriber: Subscriber) -> str:
    """The personal one-click unsubscribe URL for `subscriber` (bound to `endpoint`, the list's unsubscribe URL)."""
    # Unsubscribe and preference tokens never expire, so their issue time does not matter.
    token = make_token(secret, Purpose.UNSUBSCRIBE, endpoint, subscriber, issued=_EPOCH)
    return _with_token(endpoint, token)


def preferences_link(site_url: str, secret: str, subscriber: Subscriber) -> str:
    """The personal preference page URL for `subscriber` (`site_url` ends with "/")."""
    token = make_token(secret, Purpose.PREFERENCES, site_url, subscriber, issued=_EPOCH)
    return f"{site_url}preferences/{token}"


def personal_data_link(site_url: str, secret: str, subscriber: Subscriber, issued: datetime) -> str:
    """The link mailed on request from the preference page: download or delete my data, for an hour (the
    preference link in every issue never expires, so it cannot do either)."""
    token = make_token(secret, Purpose.PERSONAL_DATA, site_url, subscriber, issued=issued)
    return f"{site_url}my-data/{token}"


def confirm_link(site_url: str, secret: str, subscriber: Subscriber, issued: datetime) -> str:
    """The link of a confirmation mail: opening it shows a button; only the button's POST confirms."""
    return f"{site_url}confirm/{make_token(secret, Purpose.CONFIRM, site_url, subscriber, issued=issued)}"
