"""Settings, read once: defaults < config/digest.toml (or --config) < .env < DIGEST_* environment variables."""

from __future__ import annotations

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

    # signup and web app
    confirm_token_max_age: int = Field(default=7 * 86_400, ge=60)  # seconds a confirmation link stays valid
    signup_ip_limit: int = Field(default=10, ge=1)  # signup requests per client IP ...
    signup_ip_window: int = Field(default=3600, ge=1)  # ... per this many seconds
    signup_address_limit: int = Field(default=3, ge=1)  # confirmation mails per address ...
    signup_address_window: int = Field(default=86_400, ge=1)  # ... per this many seconds
    keep_signup_ip: bool = True  # record the client IP of a signup in the consent record
    trusted_proxies: list[str] = []  # proxy addresses whose X-Forwarded-For/-Proto are believed; empty: none
    web_max_body_bytes: int = Field(default=16_384, ge=1024, le=10_000_000)
    web_header_timeout: float = Field(default=10.0, gt=0, le=600)  # a request's headers must arrive within
    web_body_timeout: float = Field(default=20.0, gt=0, le=600)  # a form body must arrive within
    web_keep_alive_timeout: int = Field(default=5, ge=1, le=600)  # idle keep-alive connections close after
    web_max_connections: int = Field(default=500, ge=1)  # beyond this, new requests get 503 at once
    web_db_wait: float = Field(default=2.0, ge=0, le=60)  # seconds a web write waits for a busy state
    log_repeat_interval: float = Field(default=60.0, ge=0)  # the same error is logged once per interval

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

    @property
    def unsubscribe_endpoint(self) -> str:
        """Where one-click unsubscribe requests go (`digest serve` answers there)."""
        return self.unsubscribe_url or self.site_url + "unsubscribe"

    def require_secret_key(self) -> str:
        """The token secret; sending or serving without one would make forgeable unsubscribe links."""
        key = self.secret_key.get_secret_value()
        if len(key) < 16:
            raise SettingsError(
                "secret_key is not set (or shorter than 16 characters): set DIGEST_SECRET_KEY, "
                'e.g. to the output of: python -c "import secrets; print(secrets.token_urlsafe(32))"'
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
            lines.append(f"{path} or {env}: {where}: {err['msg']}")
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
