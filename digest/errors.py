"""The few errors `digest` raises on purpose, each with a message a user can act on."""


class DigestError(Exception):
    """Base of every error the CLI reports as one line on stderr (exit code 1)."""

    exit_code = 1


class SettingsError(DigestError):
    """A setting is missing or invalid; the message names the file or variable."""

    exit_code = 2


class StoreError(DigestError):
    """The SQLite state could not be read or written (sqlite3 errors are translated to this)."""


class BusyError(DigestError):
    """Another digest process holds the writer lock on the same state."""

    exit_code = 75  # EX_TEMPFAIL: try again later


class RenderError(DigestError):
    """A template or the MJML compiler failed."""


class DeliveryError(DigestError):
    """Mail could not be sent at all (bad SMTP settings, unreachable server)."""
