"""What the webhook tests share: a list that has mailed issue 1 through a real SMTP server and runs `digest serve`
with every provider webhook set up, a fake Amazon SNS (an HTTPS server on loopback with a certificate of a test CA,
serving the signing certificate and the SubscribeURL), and requests signed the way each provider signs them,
written here from the providers' documentation (not with digest's own code)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from tests.conftest import Workspace
from tests.mail_util import MailServer, free_port
from tests.test_web import Server, make_workspace, start_server

TOPIC = "arn:aws:sns:us-east-1:123456789012:digest-bounces"
WEBHOOK_SECRET = "hook-secret-0123456789abcdefghij"
MAILGUN_KEY = "key-mailgun-signing-0123456789"
READERS = [f"reader{i}@example.org" for i in range(40)]


# --- keys and certificates ----------------------------------------------------------------------------------


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def self_signed(key: rsa.RSAPrivateKey, common: str, *, ip: str | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
    return builder.sign(key, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# --- a fake Amazon SNS: an HTTPS server on loopback --------------------------------------------------------


@dataclass
class FakeSns:
    """Serves the signing certificate and records every GET (the SubscribeURL visits among them)."""

    folder: Path
    signing_key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    port: int = 0
    gets: Counter[str] = field(default_factory=Counter)

    @property
    def ca_file(self) -> Path:
        return self.folder / "test-ca.pem"

    @property
    def cert_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/SimpleNotificationService-test.pem"

    def subscribe_url(self, token: str) -> str:
        return f"https://127.0.0.1:{self.port}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={token}"

    def sign(self, doc: dict[str, str], version: str = "2") -> dict[str, str]:
        """`doc` with SignatureVersion, SigningCertURL and Signature, as SNS signs it (the canonical string of the
        AWS guide "Verifying the signatures of Amazon SNS messages")."""
        names = (
            ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
            if doc["Type"] == "Notification"
            else ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
        )
        canonical = "".join(f"{n}\n{doc[n]}\n" for n in names if n in doc).encode()
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.signing_key.sign(canonical, padding.PKCS1v15(), algorithm)
        return {
            **doc,
            "SignatureVersion": version,
            "Signature": base64.b64encode(signature).decode(),
            "SigningCertURL": self.cert_url,
        }


def start_fake_sns(folder: Path) -> tuple[FakeSns, ThreadingHTTPServer]:
    folder.mkdir(parents=True, exist_ok=True)
    sns = FakeSns(folder)
    tls_key = rsa.generate_private_key(65537, 2048)
    tls_cert = self_signed(tls_key, "test CA and loopback", ip="127.0.0.1")
    sns.ca_file.write_bytes(pem(tls_cert))
    (folder / "tls-key.pem").write_bytes(
        tls_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    signing_pem = pem(self_signed(sns.signing_key, "sns.us-east-1.amazonaws.com"))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            sns.gets[self.path] += 1
            body = signing_pem if self.path.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sns.ca_file, folder / "tls-key.pem")
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    sns.port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return sns, httpd


def ses_notification(sns: FakeSns, ses: dict[str, Any], message_id: str, version: str = "2") -> dict[str, str]:
    """A signed SNS Notification carrying an SES notification."""
    doc = {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Message": json.dumps(ses),
        "Timestamp": "2026-12-07T00:00:00.000Z",
    }
    return sns.sign(doc, version)


def ses_bounce(
    recipient: str, bounce_type: str, subtype: str, diagnostic: str, status: str, delivery: str = ""
) -> dict[str, Any]:
    """An SES bounce notification as SES documents it; with the original headers when `delivery` is given."""
    mail: dict[str, Any] = {"messageId": "0100-ses-id", "destination": [recipient]}
    if delivery:
        mail["headers"] = [
            {"name": "From", "value": "digest@example.org"},
            {"name": "X-Digest-Delivery", "value": delivery},
        ]
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": subtype,
            "bouncedRecipients": [
                {"emailAddress": recipient, "status": status, "action": "failed", "diagnosticCode": diagnostic}
            ],
        },
        "mail": mail,
    }


# --- Mailgun and SendGrid, signed as they sign -------------------------------------------------------------


def mailgun_post(
    event_data: dict[str, Any], *, token: str, timestamp: int | None = None, key: str = MAILGUN_KEY
) -> bytes:
    """A Mailgun webhook body: `signature` is the hex HMAC-SHA256 of timestamp + token with the signing key."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {"signature": {"timestamp": stamp, "token": token, "signature": signature}, "event-data": event_data}
    ).encode()


@dataclass
class SendGridSigner:
    """The signed Event Webhook: ECDSA P-256 / SHA-256 over timestamp + body; the public key as SendGrid shows it."""

    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    @property
    def public_key(self) -> str:
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: str | None = None) -> dict[str, str]:
        stamp = timestamp or str(int(time.time()))
        signature = self.key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            "Content-Type": "application/json",
        }


# --- the list: issue 1 mailed, `digest serve` with every webhook on --------------------------------------


@dataclass
class Hooked:
    """A list that mailed issue 1 to READERS and serves the webhooks."""

    ws: Workspace
    smtp: MailServer
    srv: Server
    sns: FakeSns
    sendgrid: SendGridSigner

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(self.srv.base + path, content=body, headers=headers or {}, timeout=20)

    def status(self, email: str) -> str:
        return str(self.ws.sql("SELECT status FROM subscribers WHERE email = ?", email)[0][0])

    def delivery(self, email: str, issue: int = 1) -> tuple[str, str | None]:
        """(ledger status, bounce kind) of one delivery."""
        row = self.ws.sql(
            "SELECT d.status, d.bounce FROM deliveries d JOIN subscribers s ON s.id = d.subscriber"
            " WHERE s.email = ? AND d.issue = ?",
            email,
            issue,
        )[0]
        return str(row[0]), row[1]

    def delivery_id(self, email: str) -> str:
        """The X-Digest-Delivery field of the mail `email` received."""
        [received] = [m for m in self.smtp.received if m.rcpt_tos == [email]]
        value = received.message["X-Digest-Delivery"]
        assert value, "no X-Digest-Delivery field"
        return str(value)

    def state_dump(self) -> list[tuple[Any, ...]]:
        """Everything a webhook may change: subscribers, deliveries and the remembered reports."""
        return [
            *self.ws.sql("SELECT email, status, status_detail, soft_bounces FROM subscribers ORDER BY id"),
            *self.ws.sql("SELECT issue, subscriber, status, bounce, detail FROM deliveries ORDER BY issue, subscriber"),
            *self.ws.sql("SELECT key, outcome FROM bounce_reports ORDER BY key"),
        ]


def start_hooked(root: Path, *, soft_limit: int = 3, state: Path | str | None = None) -> Iterator[Hooked]:
    """Render issue 1, mail it to READERS through a real SMTP server, then `digest serve` with every webhook (the
    state in PostgreSQL when `state` is its URL)."""
    smtp = MailServer(port=free_port())
    controller = Controller(smtp, hostname="127.0.0.1", port=smtp.port)
    controller.start()
    sns, httpd = start_fake_sns(root / "sns")
    sendgrid = SendGridSigner()
    ws = make_workspace(root / "work", state if isinstance(state, str) else None)
    ws.env.update(
        {
            "DIGEST_SITE_URL": "https://digest.example.org/",
            "DIGEST_SMTP__HOST": "127.0.0.1",
            "DIGEST_SMTP__PORT": str(smtp.port),
            "DIGEST_SMTP__SECURITY": "none",
            "DIGEST_FROM_ADDRESS": "Digest <digest@example.org>",
            "DIGEST_MAX_MESSAGES_PER_SECOND": "1000",
            "DIGEST_SOFT_BOUNCE_LIMIT": str(soft_limit),
            "DIGEST_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "DIGEST_MAILGUN_SIGNING_KEY": MAILGUN_KEY,
            "DIGEST_SENDGRID_PUBLIC_KEY": sendgrid.public_key,
            "DIGEST_SES_TOPIC_ARNS": json.dumps([TOPIC]),
            "DIGEST_SNS_TEST_CA_FILE": str(sns.ca_file),
            "DIGEST_WEBHOOK_MAX_BODY_BYTES": "65536",
        }
    )
    ws.run("render", "--now", "2024-09-23T08:00:00+08:00")
    csv = ws.root / "people.csv"
    csv.write_text("email,name\n" + "".join(f"{a},\n" for a in READERS), encoding="utf-8")
    ws.run("subscribers", "import", str(csv))
    ws.run("send")
    srv = start_server(ws)
    try:
        yield Hooked(ws, smtp, srv, sns, sendgrid)
    finally:
        srv.stop()
        httpd.shutdown()
        controller.stop()
