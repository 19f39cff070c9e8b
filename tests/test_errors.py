"""`printable`: text from outside (file names, seed titles, server replies) reaches the terminal with its controls
escaped, and everything else unchanged."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from digest.errors import printable

CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


def test_escape_sequences_line_breaks_and_bidi_overrides_are_shown_escaped() -> None:
    assert printable("seeds/\x1b[31mred\x1b[0m.md") == "seeds/\\x1b[31mred\\x1b[0m.md"
    assert printable("a\nb\rc\td\x9b") == "a\\nb\\rc\\td\\x9b"
    assert printable("invoice\u202egpj.md") == "invoice\\u202egpj.md"


def test_a_byte_that_was_not_utf8_is_shown_as_that_byte() -> None:
    assert printable(b"caf\xe9.md".decode("utf-8", "surrogateescape")) == "caf\\xe9.md"


def test_lines_keeps_line_breaks_only() -> None:
    assert printable("invalid settings:\n  x\x1b", lines=True) == "invalid settings:\n  x\\x1b"


@given(st.text())
def test_printable_text_is_left_alone_and_no_control_character_gets_through(text: str) -> None:
    shown = printable(text)
    assert not CONTROLS.search(shown)
    if not CONTROLS.search(text):
        assert shown == text
