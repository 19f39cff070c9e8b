"""The personal-link markers: where the mailer puts each subscriber's own unsubscribe and preferences links.

The email renderer places them and the mailer fills them, so they live here, apart from both: building and
sending a message then loads no renderer (jinja2, mjml and feedgen stay out of `digest send`, ~0.15 s of its
start-up on the 2-core machine).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from digest.model import Issue, Site

#: Generic markers of the personal links (for hand-made mails in tests); a rendered issue uses `personal_slots`.
UNSUBSCRIBE_PLACEHOLDER = "%%UNSUBSCRIBE_URL%%"
PREFERENCES_PLACEHOLDER = "%%PREFERENCES_URL%%"


@dataclass(frozen=True)
class PersonalSlots:
    """The markers the mailer replaces with each subscriber's own links (unsubscribe, preferences), and how many
    times the template itself places each of them in the html and text parts.

    With the secret key (`keyed`) a marker is an HMAC of the issue's content: nobody without the key can write
    it into a seed, a note, a title or a topic name. The mailer also refuses a part that holds a marker more often
    than the template has slots for it (`stray_marks`), so even a known marker never receives a link."""

    unsubscribe: str
    preferences: str
    keyed: bool = False  # made with secret_key; unkeyed markers (no key at render time) are never mailed
    html_slots: tuple[int, int] = (0, 0)  # the template's own (unsubscribe, preferences) slots in the html part
    text_slots: tuple[int, int] = (0, 0)  # ... and in the text part

    @classmethod
    def from_json(cls, data: object) -> PersonalSlots:
        """Read back what `asdict` wrote to slots.json (ValueError/KeyError/TypeError when it is damaged)."""
        if not isinstance(data, dict):
            raise TypeError("slots.json is not an object")

        def pair(name: str) -> tuple[int, int]:
            first, second = data.get(name, (0, 0))
            return int(first), int(second)

        return cls(
            str(data["unsubscribe"]),
            str(data["preferences"]),
            data.get("keyed") is True,
            pair("html_slots"),
            pair("text_slots"),
        )


def personal_slots(site: Site, issue: Issue, key: str = "") -> PersonalSlots:
    """This issue's markers (the same every time the issue is rendered with the same `key`, so a rebuild changes
    no file). `key` is secret_key: without it the markers are a plain hash of public data (not for mailing)."""
    payload = "\0".join([site.feed_id, str(issue.number), *(e.content_hash for e in issue.entries)])
    if key:
        message = b"digest personal link markers\0" + payload.encode("utf-8")
        nonce = hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()[:32]
    else:
        nonce = hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]
    return PersonalSlots(f"%%UNSUBSCRIBE-{nonce}%%", f"%%PREFERENCES-{nonce}%%", keyed=bool(key))


def probe_slots(slots: PersonalSlots) -> PersonalSlots:
    """Markers of the same length derived from `slots` (as secret as they are), to count the template's slots:
    outside text that knew a marker would not know these."""
    nonce = slots.unsubscribe.removeprefix("%%UNSUBSCRIBE-").removesuffix("%%")
    probe = hashlib.sha256(f"probe\0{nonce}".encode()).hexdigest()[: len(nonce)]
    return PersonalSlots(f"%%UNSUBSCRIBE-{probe}%%", f"%%PREFERENCES-{probe}%%")


def count_slots(rendered: str, slots: PersonalSlots) -> tuple[int, int]:
    return rendered.count(slots.unsubscribe), rendered.count(slots.preferences)


def stray_marks(slots: PersonalSlots, html: str, text: str) -> str | None:
    """Which part holds a marker more (or less) often than the template has slots for it, as a phrase; None when
    every marker is exactly at the template's own slots."""
    for part, body, expected in (("email.html", html, slots.html_slots), ("email.txt", text, slots.text_slots)):
        found = count_slots(body, slots)
        for name, count, wanted in zip(("unsubscribe", "preferences"), found, expected, strict=True):
            if count != wanted:
                return f"{part} holds the {name} link marker {count} times but the template has {wanted} slot(s) for it"
    return None
