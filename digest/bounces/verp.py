"""The VERP return path: `bounces+<id>@domain`, where <id> names one delivery (issue, subscriber) and is signed.

A bounce goes to the envelope sender, and remote servers often rewrite or hide the recipient; the envelope sender
comes back unchanged, so the id in it names the delivery even then. The id carries two numbers (masked) and an HMAC, no
address: a stranger cannot forge one for somebody else's delivery (a forged bounce would suppress a reader), and
the address does not leak through the return path. Lower-case base32: some MTAs lower-case local parts.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass

_PURPOSE = b"digest-verp-v1"
_MAC_BYTES = 10  # 80 bits: forging one id takes ~2^79 tries
_PAYLOAD = struct.Struct(">II")  # issue, subscriber id
_ID_CHARS = 29  # base32 of 18 bytes, unpadded
#: A VERP id anywhere in a header value: `<local>+<id>@`.
_IN_TEXT = re.compile(rf"\+([a-z2-7]{{{_ID_CHARS}}})@", re.IGNORECASE)


@dataclass(frozen=True)
class DeliveryRef:
    """The delivery a VERP id names."""

    issue: int
    subscriber_id: int


@functools.lru_cache(maxsize=8)
def _key(secret: str) -> bytes:
    """The VERP key derived from `secret_key` (kept: every message of a send derives it twice, for its return path
    and for its X-Digest-Delivery field)."""
    return hmac.new(secret.encode("utf-8"), _PURPOSE, hashlib.sha256).digest()


def _mac(secret: str, payload: bytes) -> bytes:
    return hmac.new(_key(secret), payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _mask(secret: str, mac: bytes, payload: bytes) -> bytes:
    """The numbers XORed with a keyed stream, so that ids of consecutive deliveries do not look alike."""
    stream = hmac.new(_key(secret), b"mask" + mac, hashlib.sha256).digest()
    return bytes(a ^ b for a, b in zip(payload, stream, strict=False))


def make_verp_id(secret: str, issue: int, subscriber_id: int) -> str:
    """The signed, opaque id of one delivery (29 lower-case letters and digits)."""
    payload = _PAYLOAD.pack(issue, subscriber_id)
    mac = _mac(secret, payload)
    return base64.b32encode(mac + _mask(secret, mac, payload)).decode("ascii").rstrip("=").lower()


def read_verp_id(secret: str, verp_id: str) -> DeliveryRef | None:
    """The delivery an id names, or None when it is malformed or its signature does not match."""
    if len(verp_id) != _ID_CHARS:
        return None
    try:
        raw = base64.b32decode(verp_id.upper() + "===")
    except ValueError:
        return None
    mac = raw[:_MAC_BYTES]
    payload = _mask(secret, mac, raw[_MAC_BYTES:])
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        return None
    issue, subscriber_id = _PAYLOAD.unpack(payload)
    return DeliveryRef(issue, subscriber_id)


def verp_address(bounce_address: str, verp_id: str) -> str:
    """`local+id@domain` from the configured bounce address `local@domain`."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{verp_id}@{domain}"


def find_verp_ids(text: str) -> list[str]:
    """Every candidate VERP id in a piece of text (a header value), in order; verify each with `read_verp_id`."""
    return [m.group(1).lower() for m in _IN_TEXT.finditer(text)]
