"""The few errors `digest` raises on purpose, each with a message a user can act on; and how text from outside
(file names, seed titles, server replies) is made safe to print."""

import re

# Unicode's Bidi_Control characters (ALM, LRM, RLM, the embeddings and overrides U+202A-U+202E, the isolates
# U+2066-U+2069), as a regex class body: invisible, and they reorder the text around them, so a title, name or note
# could show something other than what it says ("Trojan Source", CVE-2021-42574). Here, not in text.py, because
# headers and settings refuse them too and must not load text.py's parsers (linkify-it, pylatexenc) to do so.
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
# C0 and C1 controls, DEL, bidi controls, line and paragraph separators, and lone surrogates (bytes of a file name
# that were not UTF-8).
_CONTROLS = f"\x7f-\x9f\u2028\u2029{BIDI_CONTROLS}\ud800-\udfff"
_UNPRINTABLE = re.compile(f"[\x00-\x1f{_CONTROLS}]")
_UNPRINTABLE_BUT_NEWLINE = re.compile(f"[\x00-\x09\x0b-\x1f{_CONTROLS}]")


def printable(text: str, *, lines: bool = False) -> str:
    """`text` with every control character shown as an escape (`\\x1b`, `\\n`, `\\u202e`): a file name cannot
    recolour the terminal, move the cursor or fake a line of output. `lines=True` keeps line breaks (a message of
    several lines that digest itself wrote)."""
    pattern = _UNPRINTABLE_BUT_NEWLINE if lines else _UNPRINTABLE
    return pattern.sub(_escape, text) if pattern.search(text) else text


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape: show the byte
        return f"\\x{code - 0xDC00:02x}"
    return match.group(0).encode("unicode_escape").decode("ascii")


class DigestError(Exception):
    """Base of every error the CLI reports as one line on stderr (exit code 1)."""

    exit_code = 1


class SettingsError(DigestError):
    """A setting is missing or invalid; the message names the file or variable."""

    exit_code = 78  # EX_CONFIG (sysexits.h); 2 is click's usage error (a mistyped command or option)


class StoreError(DigestError):
    """The state could not be read or written (sqlite3 and psycopg errors are translated to this)."""


class StateBusy(StoreError):
    """Another session held the state's write lock for longer than this one may wait (a render, on SQLite)."""


class StoreConflict(StoreError):
    """A write broke one of the state's constraints (a paper published twice, a duplicate key)."""


class BusyError(DigestError):
    """Another digest process holds the writer lock on the same state."""

    exit_code = 75  # EX_TEMPFAIL: try again later


class RenderError(DigestError):
    """A template or the MJML compiler failed."""


class DeliveryError(DigestError):
    """Mail could not be sent at all (bad SMTP settings, unreachable server)."""


class NoStateError(StoreError):
    """A read-only command found no state to read (it creates none)."""


class ForeignSiteError(DigestError):
    """The output folder was built from another state: writing over it would restart the numbering there."""

    exit_code = 73  # EX_CANTCREAT: the output cannot be written (restore the state, or --force)
