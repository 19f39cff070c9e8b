"""How counts read in messages: "1 issue", "2 issues", "1 entry", "0 entries", "99,389 papers"."""

from __future__ import annotations


def counted(count: int, singular: str, plural: str = "") -> str:
    """`count` (with thousands separators: "99,389 papers") and its noun, singular for exactly one; `plural`
    defaults to the singular plus "s" (or "ies" for a consonant before a final y: "entry" -> "entries")."""
    if count == 1:
        return f"1 {singular}"
    if not plural:
        consonant_y = singular.endswith("y") and singular[-2:-1] not in tuple("aeiou")
        plural = singular[:-1] + "ies" if consonant_y else singular + "s"
    return f"{count:,} {plural}"
