"""Settings, read once: defaults < config/digest.toml (or --config) < .env < DIGEST_* environment variables.

One class lists every setting with its default and its check, so that the settings, config/digest.toml and
docs/settings.md can be read side by side. Where an invalid value came from (the variable, the .env or TOML line)
is worked out in settings_errors.py."""

from __future__ import annotations

import logging
import math
import re
import string
import tomllib
from datetime import timedelta
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from digest.errors import BIDI_CONTROLS, SettingsError
from digest.model import Topic
from digest.settings_errors import explain
from digest.topics import DEFAULT_TOPICS

DEFAULT_CONFIG = Path("config/digest.toml")
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_CONTROL = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{BIDI_CONTROLS}]")
ARXIV_CATEGORY = re.compile(r"[a-z][a-z\-]*(?:\.[A-Za-z][A-Za-z\-]*)?")  # cs.CL, hep-th, q-bio.NC
_ENCODED_WORD = re.compile(r"=\?.*\?=")  # RFC 2047; `email` on Python 3.11.7 decodes one into a header line
MAKE_SECRET_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
MIN_SECRET_CHARS = 32
MIN_SECRET_BITS = 128
# A random key of 32 hex digits has fewer than 8 different ones once in 30 million; `aaaa...`-like keys have 1-3.
MIN_SECRET_DISTINCT = 8
_CHARACTER_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits)
# The values of the `transport` setting and the module that implements each (see digest/transport.py).
TRANSPORTS = {"smtp": "digest.mailer"}


class LlmSettings(BaseModel):
    """An OpenAI-compatible Chat Completions server that writes Chinese drafts (`digest draft`); empty base_url: off.
    The api_key comes from the environment or .env only."""

    model_config = {"extra": "forbid"}

    base_url: str = ""  # e.g. http://localhost:11434/v1 (Ollama)
    model: str = ""
    api_key: SecretStr = SecretStr("")
    timeout: float = Field(default=120.0, gt=0)
    concurrency: int = Field(default=2, ge=1, le=32)


class SmtpSettings(BaseModel):
    """How to reach the SMTP server. The password comes from the environment or a secret file only."""

    model_config = {"extra": "forbid"}  # a misspelt key (`securty`) must not fall back to a default silently

    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str = ""
    password: SecretStr = SecretStr("")
    password_file: Path | None = None
    timeout: float = Field(default=30.0, gt=0)
    verify_tls: bool = True
    helo_name: str = ""  # deliverability: the name sent in EHLO (default: this machine's fully qualified name)

    @field_validator("helo_name")
    @classmethod
    def _helo_name(cls, value: str) -> str:
        if value and not _HOSTNAME.fullmatch(value):
            raise ValueError(f"not a host name: {value!r} (e.g. mail.example.org)")
        return value

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


class TopicSetting(BaseModel):
    """One `[[topics]]` table: a topic's slug (used in URLs and `Topics:` lines), its names, and its rules."""

    model_config = {"extra": "forbid"}

    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    keywords: list[str] = []
    regexes: list[str] = []

    @field_validator("regexes")
    @classmethod
    def _regexes(cls, value: list[str]) -> list[str]:

        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
        return value

    def to_topic(self) -> Topic:
        """The model object renderers use."""
        return Topic(self.slug, self.name_zh, self.name_en, tuple(self.keywords), tuple(self.regexes))

    @classmethod
    def of(cls, topic: Topic) -> TopicSetting:
        """The setting for a shipped topic."""
        return cls(
            slug=topic.slug,
            name_zh=topic.name_zh,
            name_en=topic.name_en,
            keywords=list(topic.keywords),
            regexes=list(topic.patterns),
        )


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
    # where the state lives when not in state_path: postgresql://user@host:port/db (shared by several hosts),
    # or sqlite:///path; empty: state_path
    state_url: str = ""
    templates_dir: Path = Path("templates")

    # selection and feeds
    max_entries_per_issue: int = Field(default=100, ge=1, le=10_000)
    feed_max_items: int = Field(default=50, ge=1, le=10_000)
    archive_page_size: int = Field(default=50, ge=1, le=1000)
    email_max_bytes: int = Field(default=100_000, ge=10_000)
    entry_max_bytes: int = Field(default=65_536, ge=4096)  # one seed entry, heading to next heading (UTF-8)
    title_max_bytes: int = Field(default=1024, ge=256)  # each title of an entry (UTF-8)
    highlights: int = Field(default=3, ge=0, le=50)  # the email's "本周要点": the issue's first N papers
    sender_address: str = ""  # the sender's postal address, in the email's footer (CAN-SPAM)
    topics: list[TopicSetting] = Field(default_factory=lambda: [TopicSetting.of(t) for t in DEFAULT_TOPICS])
    websub_hub: str = ""  # a WebSub hub announced in the feeds and pinged after each render

    # the editor's tools (`digest draft`, `digest approve`); never used by render, send, run or serve
    arxiv_api_url: str = "https://export.arxiv.org/api/query"
    arxiv_delay: float = Field(default=3.0, ge=0)  # seconds between requests; at least 3 for arxiv.org itself
    arxiv_timeout: float = Field(default=30.0, gt=0)
    glossary_path: Path = Path("config/glossary.csv")
    candidates_categories: list[str] = ["cs.CL"]  # `digest candidates`: arXiv categories to list
    candidates_days: int = Field(default=7, ge=1, le=365)  # papers submitted in the last N days
    candidates_limit: int = Field(default=50, ge=1, le=2000)  # rows printed and written
    candidates_keywords: list[str] = []  # words or phrases that lift a paper (case-insensitive)
    candidates_exclude: list[str] = []  # words or phrases that drop a paper from the candidates
    llm: LlmSettings = LlmSettings()

    # concurrency
    lock_timeout: float = Field(default=60.0, ge=0)

    # mail
    from_address: str = "Paper Digest <digest@localhost>"
    subject: str = "{title} · 第 {number} 期 ({date})"
    secret_key: SecretStr = SecretStr("")
    list_id: str = ""
    unsubscribe_url: str = ""  # default: <site_url>unsubscribe, served by `digest serve`
    unsubscribe_mailto: str = ""
    transport: str = "smtp"  # how mail goes out: one of TRANSPORTS
    smtp: SmtpSettings = SmtpSettings()
    smtp_connections: int = Field(default=2, ge=1, le=64)
    max_messages_per_second: float = Field(default=50.0, gt=0)
    send_retries: int = Field(default=3, ge=0, le=10)  # extra tries of a deferred message within one run
    send_retry_delay: float = Field(default=2.0, ge=0, le=600)  # seconds before the first retry; doubles each time
    dkim_selector: str = ""
    dkim_domain: str = ""
    dkim_key_file: Path | None = None
    # who gets the preview before each slot and the report after each mailing; "a@x.org, b@y.org" in the environment
    editor_address: Annotated[tuple[str, ...], NoDecode] = ()

    # deliverability
    bounce_address: str = ""  # envelope sender; default: bounces@<domain of from_address>
    reply_to: str = ""  # Reply-To of every mail (issues and notices); default: none, replies go to From
    verp: bool = True  # bounces+<signed delivery id>@domain, so that a bounce names its delivery
    soft_bounce_limit: int = Field(default=3, ge=1, le=100)  # soft bounces in a row (across issues) -> bounced
    bounce_max_bytes: int = Field(default=1_000_000, ge=10_000)  # `bounces import` reads at most this of a message
    max_hard_bounce_rate: float = Field(default=0.01, ge=0, le=1)  # send refuses above it (unless --force)
    max_complaint_rate: float = Field(default=0.001, ge=0, le=1)  # send refuses above it (unless --force)
    rate_issues: int = Field(default=3, ge=1, le=100)  # issues whose rates `digest status` shows
    # provider webhooks on `digest serve` (docs/bounces.md); each endpoint answers 404 until its setting is set
    webhook_secret: SecretStr = SecretStr("")  # /webhooks/bounce (Bearer) and /webhooks/postmark (HTTP Basic)
    mailgun_signing_key: SecretStr = SecretStr("")  # /webhooks/mailgun: Mailgun's HTTP webhook signing key
    sendgrid_public_key: str = ""  # /webhooks/sendgrid: the signed Event Webhook's verification key (base64)
    ses_topic_arns: list[str] = []  # /webhooks/ses: the SNS topics SES publishes to (arn:aws:sns:...)
    webhook_max_body_bytes: int = Field(default=1_000_000, ge=16_384, le=10_000_000)
    # TEST ONLY, never in production: a CA file that makes /webhooks/ses accept a SigningCertURL or SubscribeURL
    # on a loopback host served with a certificate of that CA (the test suite's fake SNS); empty: off
    sns_test_ca_file: Path | None = None

    # scheduler
    schedule: str = "0 8 * * mon"
    misfire_grace_time: int = Field(default=86_400, ge=1)
    max_send_age: int = Field(default=3 * 86_400, ge=0)
    jobs_path: Path = Path("state/jobs.db")
    # the editor's preview (`digest preview`, and `digest run` at each slot minus preview_lead); empty: no previews
    preview_lead: str = "6h"  # how long before each slot `digest run` mails the preview: 90m, 6h, 1d, 1h30m, 45s

    # signup and web app
    confirm_token_max_age: int = Field(default=7 * 86_400, ge=60)  # seconds a confirmation link stays valid
    signup_ip_limit: int = Field(default=10, ge=1)  # signup requests per client IP ...
    signup_ip_window: int = Field(default=3600, ge=1)  # ... per this many seconds
    signup_address_limit: int = Field(default=3, ge=1)  # confirmation mails per address ...
    signup_address_window: int = Field(default=86_400, ge=1)  # ... per this many seconds
    keep_signup_ip: bool = True  # record the client IP of a signup in the consent record
    signup_mail_queue: int = Field(default=1000, ge=1)  # signup mails waiting in memory; beyond, the sweep sends
    signup_mail_sweep: float = Field(default=60.0, gt=0, le=86_400)  # seconds between looks for owed signup mails
    trusted_proxies: list[str] = []  # proxy addresses whose X-Forwarded-For/-Proto are believed; empty: none
    web_max_body_bytes: int = Field(default=16_384, ge=1024, le=10_000_000)
    web_header_timeout: float = Field(default=10.0, gt=0, le=600)  # a request's headers must arrive within
    web_body_timeout: float = Field(default=20.0, gt=0, le=600)  # a form body must arrive within
    web_keep_alive_timeout: int = Field(default=5, ge=1, le=600)  # idle keep-alive connections close after
    web_max_connections: int = Field(default=500, ge=1)  # beyond this, new requests get 503 at once
    web_max_client_connections: int = Field(default=50, ge=0)  # per client address (0: no cap); then 503
    web_static: bool = True  # serve output_dir too (false: only signup, confirm, preferences, unsubscribe)
    web_db_wait: float = Field(default=2.0, ge=0, le=60)  # seconds a web write waits for a busy state
    web_workers: int = Field(default=0, ge=0, le=64)  # `digest serve` processes on the port; 0: one per CPU core
    log_repeat_interval: float = Field(default=60.0, ge=0)  # the same error is logged once per interval

    @field_validator("candidates_categories")
    @classmethod
    def _categories(cls, value: list[str]) -> list[str]:
        for category in value:
            if not ARXIV_CATEGORY.fullmatch(category):
                raise ValueError(f"{category!r} is not an arXiv category (like cs.CL or hep-th)")
        return value

    @field_validator("preview_lead")
    @classmethod
    def _preview_lead(cls, value: str) -> str:
        parse_duration(value)
        return value.strip()

    @property
    def preview_lead_time(self) -> timedelta:
        """`preview_lead` as a duration."""
        return parse_duration(self.preview_lead)

    @field_validator("transport")
    @classmethod
    def _transport(cls, value: str) -> str:
        if value not in TRANSPORTS:
            raise ValueError(f"not a mail transport: {value!r} (use {' or '.join(map(repr, TRANSPORTS))})")
        return value

    @field_validator("state_url")
    @classmethod
    def _state_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("postgresql://", "postgres://", "sqlite:///")):
            raise ValueError("use postgresql://user@host:port/database, sqlite:///path, or leave it empty")
        return value

    @property
    def state_location(self) -> Path | str:
        """Where the state lives: the PostgreSQL URL or SQLite URL of `state_url`, else `state_path`."""
        return self.state_url or self.state_path

    @field_validator("site_url")
    @classmethod
    def _site_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an absolute http(s) URL, e.g. https://example.org/digest/")
        return value if value.endswith("/") else value + "/"

    @field_validator("topics")
    @classmethod
    def _topics(cls, value: list[TopicSetting]) -> list[TopicSetting]:
        slugs = [t.slug for t in value]
        repeated = sorted({s for s in slugs if slugs.count(s) > 1})
        if repeated:
            raise ValueError(f"topic slugs must be unique, repeated: {', '.join(repeated)}")
        if sum(not t.keywords and not t.regexes for t in value) > 1:
            raise ValueError("at most one topic may have no keywords and no regexes (the fallback topic)")
        return value

    @field_validator("websub_hub")
    @classmethod
    def _websub_hub(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be empty or an absolute http(s) URL of a WebSub hub")
        return value

    @property
    def topic_list(self) -> tuple[Topic, ...]:
        """The topics as renderers see them, in the configured order."""
        return tuple(t.to_topic() for t in self.topics)

    @field_validator("title", "subject", "author", "list_id", "sender_address")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("must be one line of text without control characters (it goes into mail headers)")
        if _ENCODED_WORD.search(value):
            raise ValueError("must not contain an RFC 2047 encoded word (=?...?=): it goes into mail headers")
        return value

    @field_validator("from_address")
    @classmethod
    def _from_address(cls, value: str) -> str:
        _mailbox(value, "'Paper Digest <digest@example.org>'")
        return value

    @field_validator("reply_to")
    @classmethod
    def _reply_to(cls, value: str) -> str:
        if value:
            _mailbox(value, "'Editors <editors@example.org>'")
        return value

    @field_validator("bounce_address", "unsubscribe_mailto")
    @classmethod
    def _plain_address(cls, value: str) -> str:
        if value and _mailbox(value.removeprefix("mailto:").split("?")[0], "'bounces@example.org'") != (
            "",
            value.removeprefix("mailto:").split("?")[0],
        ):
            raise ValueError("must be a bare address, without a display name or <>")
        return value

    @field_validator("editor_address", mode="before")
    @classmethod
    def _editor_address(cls, value: Any) -> tuple[str, ...]:
        given = value.split(",") if isinstance(value, str) else list(value)
        if all(isinstance(item, str) and not item.strip() for item in given):
            return ()  # none set (the default): no need to load the address rules, ~30 ms of every command's start
        from digest.subscribers import InvalidAddress, normalize_address  # noqa: PLC0415 (it imports the store)

        addresses: list[str] = []
        for item in given:
            if not isinstance(item, str):
                raise ValueError(f"not an address: {item!r}")
            if not item.strip():
                continue
            try:
                address = normalize_address(item)
            except InvalidAddress as exc:
                raise ValueError(str(exc)) from None
            if address not in addresses:
                addresses.append(address)
        return tuple(addresses)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name like Asia/Shanghai)") from exc
        return value

    @field_validator("sendgrid_public_key")
    @classmethod
    def _sendgrid_public_key(cls, value: str) -> str:
        if value.strip():
            from digest.bounces.webhooks import sendgrid_key  # noqa: PLC0415 (lazy: cryptography only when a key is set)

            sendgrid_key(value)  # ValueError: pydantic names the setting
        return value.strip()

    @field_validator("ses_topic_arns")
    @classmethod
    def _ses_topic_arns(cls, value: list[str]) -> list[str]:
        for arn in value:
            if not re.fullmatch(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}", arn):
                raise ValueError(f"{arn!r} is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<topic>)")
        return value

    @field_validator("secret_key", "webhook_secret")
    @classmethod
    def _secret_key(cls, value: SecretStr) -> SecretStr:
        weakness = secret_key_weakness(value.get_secret_value())
        if weakness:
            raise ValueError(f"{weakness}; make one with: {MAKE_SECRET_KEY}")
        return value

    @property
    def bounce_mailbox(self) -> str:
        """Where bounces go (the envelope sender before VERP): `bounce_address`, else bounces@<From domain>."""

        return self.bounce_address or "bounces@" + parseaddr(self.from_address)[1].rpartition("@")[2]

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


def _mailbox(value: str, example: str) -> tuple[str, str]:
    """(display name, address) of a `Name <address>` setting; ValueError unless it is exactly one valid address
    and nothing a mail header could be bent with (control characters, a second address, an encoded word)."""

    from email_validator import EmailNotValidError, validate_email  # noqa: PLC0415 (lazy: email-validator only when used)

    if _CONTROL.search(value):
        raise ValueError("must not contain control characters (CR, LF ...)")
    if "=?" in value:
        raise ValueError("must not contain an RFC 2047 encoded word (=?...?=): write the name as plain text")
    found = getaddresses([value])
    if len(found) != 1 or not found[0][1]:
        raise ValueError(f"not one address: {value!r} (e.g. {example})")
    name, address = found[0]
    local, _, domain = address.rpartition("@")
    try:
        # The local part by email-validator's rules; the domain only as a host name ("localhost" is fine here).
        validate_email(f"{local}@example.org", check_deliverability=False, allow_smtputf8=False)
        ascii_domain = domain.encode("idna").decode("ascii")
    except (EmailNotValidError, UnicodeError) as exc:
        raise ValueError(f"not a valid address: {address!r}: {exc}") from None
    if not _HOSTNAME.fullmatch(ascii_domain):
        raise ValueError(f"not a valid address: {address!r}: bad domain")
    return name, address


_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(text: str) -> timedelta:
    """`6h`, `90m`, `1d`, `1h30m`, `45s` as a timedelta; ValueError (naming the forms) for anything else or zero."""
    compact = "".join(text.split()).lower()
    match = _DURATION.fullmatch(compact)
    if not compact or match is None:
        raise ValueError(f"not a duration: {text!r} (use a number and a unit: 6h, 90m, 1d, 1h30m, 45s)")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    lead = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if lead <= timedelta(0) or lead > timedelta(days=30):
        raise ValueError(f"{text!r}: must be more than 0 and at most 30 days")
    return lead


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
    except OSError as exc:  # a .env or config file this user may not read (e.g. root's 0600 .env under systemd)
        raise SettingsError(f"{exc.filename or path}: cannot read: {exc.strerror or exc}") from exc
    except ValidationError as exc:
        raise SettingsError("\n".join(explain(err, path, Settings) for err in exc.errors())) from exc
    _refuse_password_in_toml(path)
    return with_file


_warned_secret_in: set[Path] = set()


def _refuse_password_in_toml(path: Path) -> None:
    """A password in a committed config file leaks; accept it only from the environment or a secret file. A
    `secret_key` there is accepted (refusing it would stop running installations) with one warning per process."""
    if not path.is_file():
        return
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    if data.get("secret_key") and path.resolve() not in _warned_secret_in:
        _warned_secret_in.add(path.resolve())
        logging.getLogger("digest").warning(
            "%s: secret_key is stored in the config file, which is easily committed or shared; "
            "move it to DIGEST_SECRET_KEY in the environment or .env",
            path,
        )
    smtp = data.get("smtp", {})
    if isinstance(smtp, dict) and smtp.get("password"):
        raise SettingsError(
            f"{path}: smtp.password must not be stored in the config file; "
            "set DIGEST_SMTP__PASSWORD or smtp.password_file instead"
        )
    for name, variable in (
        ("webhook_secret", "DIGEST_WEBHOOK_SECRET"),
        ("mailgun_signing_key", "DIGEST_MAILGUN_SIGNING_KEY"),
    ):
        if data.get(name):
            raise SettingsError(
                f"{path}: {name} must not be stored in the config file; set {variable} in the environment or .env"
            )
    llm = data.get("llm", {})
    if isinstance(llm, dict) and llm.get("api_key"):
        raise SettingsError(
            f"{path}: llm.api_key must not be stored in the config file; set DIGEST_LLM__API_KEY in the environment"
            " or .env instead"
        )
