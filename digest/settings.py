"""Settings, read once: defaults < config/digest.toml (or --config) < .env < DIGEST_* environment variables."""

from __future__ import annotations

import math
import string
import tomllib
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from digest.errors import SettingsError

DEFAULT_CONFIG = Path("config/digest.toml")
MAKE_SECRET_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
MIN_SECRET_CHARS = 32
MIN_SECRET_BITS = 128
# A random key of 32 hex digits has fewer than 8 different ones once in 30 million; `aaaa...`-like keys have 1-3.
MIN_SECRET_DISTINCT = 8
_CHARACTER_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits)


class SmtpSettings(BaseModel):
    """How to reach the SMTP server. The password comes from the environment or a secret file only."""

    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str = ""
    password: SecretStr = SecretStr("")
    password_file: Path | None = None
    timeout: float = Field(default=30.0, gt=0)
    verify_tls: bool = True

    def resolved_password(self) -> str:
        """The password from DIGEST_SMTP__PASSWORD, else the first line of `password_file`."""
        if self.password.get_secret_value():
            return self.password.get_secret_value()
        if self.password_file:
            try:
                return self.password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SettingsError(f"smtp.password_file: cannot read {self.password_file}: {exc}") from exc
        return ""


class Settings(BaseSettings):
    """Every setting of digest; config/digest.toml documents each one."""

    model_config = SettingsConfigDict(
        env_prefix="DIGEST_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
    )

    # publication
    title: str = "AI 论文周报 · Weekly AI Papers"
    description: str = "每周精选 AI 新论文：英文标题、中文标题与中文摘要。"
    author: str = "digest"
    site_url: str = "http://localhost:8000/"
    language: str = "zh-CN"
    timezone: str = "UTC"

    # paths (relative to the working directory)
    seeds_dir: Path = Path("seeds")
    output_dir: Path = Path("site")
    preview_dir: Path = Path("preview")
    state_path: Path = Path("state/digest.db")
    templates_dir: Path = Path("templates")

    # selection and feeds
    max_entries_per_issue: int = Field(default=100, ge=1, le=10_000)
    feed_max_items: int = Field(default=50, ge=1, le=10_000)
    archive_page_size: int = Field(default=50, ge=1, le=1000)
    email_max_bytes: int = Field(default=100_000, ge=10_000)

    # concurrency
    lock_timeout: float = Field(default=60.0, ge=0)

    # mail
    from_address: str = "Paper Digest <digest@localhost>"
    subject: str = "{title} · 第 {number} 期 ({date})"
    secret_key: SecretStr = SecretStr("")
    list_id: str = ""
    unsubscribe_url: str = ""  # default: <site_url>unsubscribe, served by `digest serve`
    unsubscribe_mailto: str = ""
    smtp: SmtpSettings = SmtpSettings()
    smtp_connections: int = Field(default=2, ge=1, le=64)
    max_messages_per_second: float = Field(default=50.0, gt=0)
    send_retries: int = Field(default=3, ge=0, le=10)  # extra tries of a deferred message within one run
    send_retry_delay: float = Field(default=2.0, ge=0, le=600)  # seconds before the first retry; doubles each time
    dkim_selector: str = ""
    dkim_domain: str = ""
    dkim_key_file: Path | None = None

    # scheduler
    schedule: str = "0 8 * * mon"
    misfire_grace_time: int = Field(default=86_400, ge=1)
    max_send_age: int = Field(default=3 * 86_400, ge=0)
    jobs_path: Path = Path("state/jobs.db")

    @field_validator("site_url")
    @classmethod
    def _site_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an absolute http(s) URL, e.g. https://example.org/digest/")
        return value if value.endswith("/") else value + "/"

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name like Asia/Shanghai)") from exc
        return value

    @field_validator("secret_key")
    @classmethod
    def _secret_key(cls, value: SecretStr) -> SecretStr:
        weakness = secret_key_weakness(value.get_secret_value())
        if weakness:
            raise ValueError(f"{weakness}; make one with: {MAKE_SECRET_KEY}")
        return value

    @property
    def unsubscribe_endpoint(self) -> str:
        """Where one-click unsubscribe requests go (`digest serve` answers there)."""
        return self.unsubscribe_url or self.site_url + "unsubscribe"

    def require_secret_key(self) -> str:
        """The token secret; sending or serving without one would make forgeable unsubscribe links (a weak one is
        refused when the settings are read)."""
        key = self.secret_key.get_secret_value()
        if not key:
            raise SettingsError(
                f"secret_key is not set: set DIGEST_SECRET_KEY to at least {MIN_SECRET_CHARS} random characters,"
                f" e.g. the output of: {MAKE_SECRET_KEY}"
            )
        return key

    @property
    def tz(self) -> ZoneInfo:
        """The publication's time zone."""
        return ZoneInfo(self.timezone)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: init > env > .env > TOML > defaults.
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            TomlConfigSettingsSource(settings_cls),
            file_secret_settings,
        )


def secret_key_weakness(key: str) -> str | None:
    """Why `key` could be guessed (too short, repetitive, too small an alphabet); None for a random-looking key.

    Only an estimate: the bits are the length times log2 of the character classes used (26 lower, 26 upper,
    10 digits, 33 others), which is what a random key of that alphabet would have.
    """
    if not key:
        return None  # not set: only the commands that sign tokens need it (require_secret_key)
    if len(key) < MIN_SECRET_CHARS:
        return f"{len(key)} characters long; it needs at least {MIN_SECRET_CHARS} random ones"
    if key in (key + key)[1:-1]:
        return "repeats itself (a shorter string written several times)"
    distinct = len(set(key))
    if distinct < MIN_SECRET_DISTINCT:
        return f"only {distinct} different characters; a random key has many more"
    alphabet = sum(len(chars) for chars in _CHARACTER_CLASSES if any(c in chars for c in key))
    if any(not c.isascii() or not c.isalnum() for c in key):
        alphabet += 33
    bits = len(key) * math.log2(alphabet)
    if bits < MIN_SECRET_BITS:
        return (
            f"about {bits:.0f} bits of entropy at best (from its length and kinds of characters);"
            f" it needs {MIN_SECRET_BITS}: use a longer key or more kinds of characters"
        )
    return None


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Read settings once, turning every problem into one clear line per field (no traceback)."""
    path = config if config is not None else DEFAULT_CONFIG
    if config is not None and not path.is_file():
        raise SettingsError(f"{path}: config file not found")

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=path)

    try:
        with_file = _FromFile(**overrides)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: invalid TOML: {exc}") from exc
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(part) for part in err["loc"]) or "settings"
            env = "DIGEST_" + "__".join(str(part) for part in err["loc"]).upper()
            message = err["msg"].removeprefix("Value error, ")  # pydantic's prefix for a validator's own message
            lines.append(f"{path} or {env}: {where}: {message}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from exc
    _refuse_password_in_toml(path)
    return with_file


def _refuse_password_in_toml(path: Path) -> None:
    """A password in a committed config file leaks; accept it only from the environment or a secret file."""
    if not path.is_file():
        return
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    smtp = data.get("smtp", {})
    if isinstance(smtp, dict) and smtp.get("password"):
        raise SettingsError(
            f"{path}: smtp.password must not be stored in the config file; "
            "set DIGEST_SMTP__PASSWORD or smtp.password_file instead"
        )
