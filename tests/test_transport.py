"""The transport seam: issue mail and the signup notices go out through the one messenger `make_messenger` builds
from the settings, so both say the same EHLO name; the `transport` setting is checked; TLS settings are built once."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from digest.errors import DeliveryError, SettingsError
from digest.message import WireMessage
from digest.settings import TRANSPORTS, Settings, load_settings
from digest.transport import Messenger, Outcome, SendResult, deliver_notice, make_messenger
from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401  (fixture)
from tests.test_signup import mails_to, serve_with_mail


def settings_for(smtp: MailServer, **smtp_values: object) -> Settings:
    """The sample config, mailing through the test server."""
    smtp_settings = {"host": "127.0.0.1", "port": smtp.port, "security": "none", **smtp_values}
    return load_settings(from_address="digest@example.org", smtp=smtp_settings)


def test_a_confirmation_mail_says_the_configured_helo_name(tmp_path: Path, smtp_server: MailServer) -> None:
    srv = serve_with_mail(tmp_path / "work", smtp_server, None, smtp__helo_name="mail.example.org")
    try:
        headers = {"Origin": srv.base, "Sec-Fetch-Site": "same-origin"}
        with httpx.Client(base_url=srv.base, timeout=10, headers=headers) as browser:
            answer = browser.post("/subscribe", data={"email": "ada@example.org", "website": ""})
        assert answer.status_code == 200
        mails_to(smtp_server, "ada@example.org", 1)
    finally:
        srv.stop()
    assert smtp_server.helo_names == ["mail.example.org"]


def test_a_notice_without_helo_name_never_says_an_address_literal(smtp_server: MailServer) -> None:
    # smtplib's own fallback (when this machine's name has no dot) is "[127.0.0.1]", which spam filters score.
    settings = settings_for(smtp_server)
    result = deliver_notice(settings, "ada@example.org", b"Subject: hi\r\n\r\nhello\r\n")
    assert result.outcome is Outcome.SENT
    [name] = smtp_server.helo_names
    assert not name.startswith("[") and "." in name


def test_the_transport_setting_is_checked() -> None:
    with pytest.raises(SettingsError, match=r"transport.*not a mail transport: 'pigeon' \(use 'smtp'\)"):
        load_settings(transport="pigeon")


def test_notices_and_issue_mail_share_the_configured_messenger(smtp_server: MailServer) -> None:
    settings = settings_for(smtp_server, helo_name="mx.example.org")
    messenger = make_messenger(settings)
    try:
        assert messenger.send("digest@example.org", "bob@example.org", b"Subject: x\r\n\r\nx\r\n").outcome is (
            Outcome.SENT
        )
    finally:
        messenger.close()
    deliver_notice(settings, "ada@example.org", b"Subject: y\r\n\r\ny\r\n")
    assert smtp_server.helo_names == ["mx.example.org", "mx.example.org"]


def count_tls_contexts(monkeypatch: pytest.MonkeyPatch) -> list[ssl.SSLContext]:
    """Every TLS context built from now on (real ones, recorded), by create_default_context() or directly."""
    built: list[ssl.SSLContext] = []
    real = ssl.SSLContext.__new__

    def recording(cls: type[ssl.SSLContext], *args: Any, **kwargs: Any) -> ssl.SSLContext:
        context = real(cls, *args, **kwargs)
        built.append(context)
        return context

    monkeypatch.setattr(ssl.SSLContext, "__new__", recording)
    return built


def test_an_unverified_tls_context_loads_no_ca_certificates(monkeypatch: pytest.MonkeyPatch) -> None:
    """verify_tls = false never reads the CA bundle, so building one does not pay ~20 ms to load it."""
    from digest import mailer

    loaded: list[bool] = []
    real = ssl.SSLContext.load_default_certs

    def recording(self: ssl.SSLContext, *args: Any) -> None:
        loaded.append(self.verify_mode == ssl.CERT_REQUIRED)
        real(self, *args)

    monkeypatch.setattr(ssl.SSLContext, "load_default_certs", recording)
    mailer.tls_context.cache_clear()
    unverified = mailer.tls_context(False)
    assert loaded == []
    verified = mailer.tls_context(True)
    assert loaded == [True]
    mailer.tls_context.cache_clear()  # the next test builds its own, unrecorded
    assert (unverified.verify_mode, unverified.check_hostname) == (ssl.CERT_NONE, False)
    assert (verified.verify_mode, verified.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert unverified.minimum_version == verified.minimum_version
    assert unverified.options == verified.options


def test_no_tls_context_is_built_for_a_plain_connection(
    smtp_server: MailServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = count_tls_contexts(monkeypatch)
    settings = settings_for(smtp_server)
    for n in range(3):
        assert deliver_notice(settings, f"reader{n}@example.org", b"Subject: x\r\n\r\nx\r\n").outcome is Outcome.SENT
    assert built == []


def test_the_tls_context_is_built_once_per_process(smtp_server: MailServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from digest import mailer

    mailer.tls_context.cache_clear()  # another test of this process may have built it already
    built = count_tls_contexts(monkeypatch)
    # The test server offers no STARTTLS: each connection fails after the context is needed, not before.
    settings = settings_for(smtp_server, security="starttls", verify_tls=False)
    for _ in range(3):
        with pytest.raises(DeliveryError, match="STARTTLS"):
            make_messenger(settings).open()
    assert len(built) == 1
    assert smtp_server.connections == 3


# --- a second transport: one module exposing messenger(settings), one row of TRANSPORTS ----------------------------


@dataclass
class Outbox:
    """A transport that keeps every message (this test module is its module)."""

    sent: list[tuple[str, str, bytes]] = field(default_factory=list)
    eight_bit: bool = True

    def open(self) -> None:
        pass

    def send(
        self,
        sender: str,
        recipient: str,
        data: bytes | WireMessage,
        confirm: Callable[[], bool] | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> SendResult:
        if confirm is not None and not confirm():  # the ledger withdrew it: it must not go out
            return SendResult(Outcome.DEFERRED, "withdrawn")
        OUTBOX.sent.append((sender, recipient, data if isinstance(data, bytes) else data.data))
        return SendResult(Outcome.SENT, "kept")

    def close(self) -> None:
        pass


OUTBOX = Outbox()


def messenger(settings: Settings) -> Messenger:
    return OUTBOX


def test_a_second_transport_is_one_module_and_one_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(TRANSPORTS, "outbox", __name__)
    settings = load_settings(from_address="digest@example.org", transport="outbox")
    OUTBOX.sent.clear()
    assert deliver_notice(settings, "ada@example.org", b"Subject: hi\r\n\r\nhello\r\n") == SendResult(
        Outcome.SENT, "kept"
    )
    # The return path is the bounce mailbox (bounces@ the From domain), never From itself.
    assert OUTBOX.sent == [("bounces@example.org", "ada@example.org", b"Subject: hi\r\n\r\nhello\r\n")]
