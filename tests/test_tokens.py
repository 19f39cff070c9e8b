"""The tokens in personal links are itsdangerous's own format: made without the library's zlib attempt (which never
shortened them and cost a quarter of building each mailed message), they are the bytes the library makes, and a
token the library compressed still reads."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import pytest
from itsdangerous import URLSafeSerializer, URLSafeTimedSerializer

from digest.model import Subscriber
from digest.tokens import BadToken, Purpose, make_token, read_token

SECRET = "token-test-secret-0123456789abcdef"
SCOPE = "https://digest.example.org/"
ISSUED = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)


def salt(purpose: Purpose) -> str:
    return f"digest-{purpose.value}-v2|{SCOPE}"


@pytest.mark.parametrize("purpose", [Purpose.UNSUBSCRIBE, Purpose.PREFERENCES])
def test_lasting_tokens_are_the_bytes_itsdangerous_makes(purpose: Purpose) -> None:
    for n in range(300):
        sub = Subscriber(id=n * 7919 + 1, email=f"r{n}@example.org", token_nonce=secrets.token_urlsafe(16))
        expected = URLSafeSerializer(SECRET, salt=salt(purpose)).dumps([sub.id, sub.token_nonce])
        assert make_token(SECRET, purpose, SCOPE, sub, issued=ISSUED) == expected


def test_timed_tokens_are_the_bytes_itsdangerous_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    sub = Subscriber(id=42, email="ada@example.org", token_nonce=secrets.token_urlsafe(16))
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: ISSUED.timestamp())
    expected = URLSafeTimedSerializer(SECRET, salt=salt(Purpose.CONFIRM)).dumps([sub.id, sub.token_nonce])
    assert make_token(SECRET, Purpose.CONFIRM, SCOPE, sub, issued=ISSUED) == expected


def test_a_token_the_library_compressed_still_reads() -> None:
    nonce = "a" * 60  # repetitive: itsdangerous compresses it (its token starts with ".")
    token = URLSafeSerializer(SECRET, salt=salt(Purpose.PREFERENCES)).dumps([7, nonce])
    assert token.startswith(".")
    subject = read_token(SECRET, Purpose.PREFERENCES, SCOPE, token, now=ISSUED)
    assert (subject.subscriber_id, subject.nonce) == (7, nonce)
    with pytest.raises(BadToken):  # and the purpose is still checked
        read_token(SECRET, Purpose.UNSUBSCRIBE, SCOPE, token, now=ISSUED)
