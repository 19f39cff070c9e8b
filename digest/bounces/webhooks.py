"""Mail providers' bounce and complaint webhooks: checking that a request comes from the provider, and reading its
events as the notices `bounces import` applies. Pure: bytes, headers and keys in; events or `Refused` out (the
signing certificate of Amazon SNS is fetched by the caller, digest.web.webhooks).

What each provider proves, and how (field names as each provider documents them):

- Amazon SES through SNS: every message is signed by SNS (`SignatureVersion` 1: SHA1withRSA, 2: SHA256withRSA)
  over a canonical string of named fields, which depends on `Type`; the certificate comes from `SigningCertURL`,
  accepted only over https from `sns.<region>.amazonaws.com`. A valid signature proves only that *some* AWS topic
  sent it: the topic must also be one of `ses_topic_arns`.
- Mailgun: `signature.signature` is the hex HMAC-SHA256 of `timestamp + token` with the webhook signing key; a
  timestamp more than `MAILGUN_MAX_AGE` seconds away from now, or a token seen before, is a replay.
- SendGrid's signed Event Webhook: ECDSA P-256 with SHA-256 over `timestamp + raw body`, the signature (base64
  DER) and timestamp in `X-Twilio-Email-Event-Webhook-Signature` / `-Timestamp`, the public key base64 DER.
- Postmark: HTTP Basic credentials in the webhook URL; digest's generic webhook: `Authorization: Bearer`.

Every event is matched to its delivery by the signed id the message carried (`X-Digest-Delivery`, and Postmark
metadata, Mailgun variables or SendGrid custom args holding the same id); an event without one names only the
address, and then stands for that address's latest delivery (`importer.apply_event`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import re
from collections.abc import Collection, Mapping
from datetime import datetime
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from digest.bounces.classify import BounceKind, Verdict, classify_provider, enhanced_code
from digest.bounces.importer import ProviderEvent
from digest.bounces.reports import DETAIL_CHARS, Notice, NoticeKind, ses_delivery_id, ses_notices
from digest.headers import clean_header

#: The key of the same id in Mailgun variables, SendGrid custom args, SES tags and Postmark metadata.
DELIVERY_VARIABLE = "digest_delivery"
POSTMARK_METADATA = "digest-delivery"  # Postmark metadata names come from the header name X-PM-Metadata-<name>
#: Mailgun: a signature older (or newer) than this many seconds is refused, as Mailgun's documentation advises.
MAILGUN_MAX_AGE = 300
SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
_SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com")
_DELIVERY_ID = re.compile(r"[A-Za-z2-7]{29}")
_MAX_EVENTS = 1000  # SendGrid posts batches; more events than this in one request is no real batch


class Refused(Exception):
    """A request that is not (or not provably) the provider's: `status` 400, 401 or 403, and a short reason in
    our own words (never text from the request)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _text(value: object, limit: int = DETAIL_CHARS) -> str:
    """A field of the request as one clean line: no control characters, no bidi tricks, at most `limit` chars."""
    if value is None or isinstance(value, (dict, list)):
        return ""
    return clean_header(str(value))[:limit]


def _dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _delivery_id(value: object) -> str:
    """A delivery id as the message carried it, or "" when the value is not shaped like one."""
    text = value[0] if isinstance(value, list) and value else value  # SES tags are lists of values
    return str(text).strip().lower() if isinstance(text, str) and _DELIVERY_ID.fullmatch(text.strip()) else ""


def parse_json(body: bytes) -> object:
    """The request body as JSON; Refused(400) when it is not."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Refused(400, "the body is not JSON") from None


# --- shared secrets: the generic webhook (Bearer) and Postmark (HTTP Basic) ----------------------------------


def check_bearer(authorization: str, secret: str) -> None:
    """`Authorization: Bearer <secret>`; Refused(401) otherwise (compared in constant time)."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), secret.encode()):
        raise Refused(401, "missing or wrong bearer token")


def check_basic(authorization: str, secret: str) -> None:
    """HTTP Basic credentials whose password is `secret` (any user name); Refused(401) otherwise."""
    scheme, _, encoded = authorization.strip().partition(" ")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    password = decoded.partition(":")[2]
    if scheme.lower() != "basic" or not hmac.compare_digest(password.encode(), secret.encode()):
        raise Refused(401, "missing or wrong HTTP Basic credentials")


# --- digest's own generic webhook -----------------------------------------------------------------------------

_GENERIC_TYPES = {"hard": BounceKind.HARD, "soft": BounceKind.SOFT}


def generic_event(doc: object, body: bytes) -> ProviderEvent:
    """`{"email" | "delivery", "type": "hard"|"soft"|"complaint", "source", "meta", "id"?}` (listmonk's shape, with
    digest's delivery id in place of listmonk's subscriber and campaign uuids). Its identity is `id` when given,
    else the body's hash: the same post twice is one event."""
    doc = _dict(doc)
    kind = _text(doc.get("type"), 20).lower()
    if kind not in ("hard", "soft", "complaint"):
        raise Refused(400, 'type must be "hard", "soft" or "complaint"')
    email = _text(doc.get("email"), 320)
    delivery = _delivery_id(doc.get("delivery"))
    if not email and not delivery:
        raise Refused(400, "an event needs an email or a delivery id")
    source = _text(doc.get("source"), 40) or "webhook"
    meta = doc.get("meta")
    described = _text(json.dumps(meta, ensure_ascii=False, sort_keys=True)[:DETAIL_CHARS]) if meta else ""
    detail = f"{source}: {kind}" + (f" {described}" if described else "")
    if kind == "complaint":
        notice = Notice(NoticeKind.COMPLAINT, None, email, detail[:DETAIL_CHARS], "", "feedback")
    else:
        verdict = classify_provider(None, described, hard=kind == "hard")
        notice = Notice(NoticeKind.BOUNCE, verdict.kind, email, detail[:DETAIL_CHARS], "", verdict.reason)
    given = _text(doc.get("id"), 200)
    identity = given or hashlib.sha256(body).hexdigest()
    return ProviderEvent(f"bounce:{identity}", (notice,), delivery)


# --- Amazon SES through SNS ------------------------------------------------------------------------------------

_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


def sns_string_to_sign(doc: Mapping[str, object]) -> bytes:
    """The canonical string SNS signs: for each field of the message's `Type`, in byte order, its name and its
    value, each followed by a newline (a Notification's `Subject` only when present). Refused(400) when a field
    is missing or the type is unknown."""
    fields = _SNS_FIELDS.get(str(doc.get("Type")))
    if fields is None:
        raise Refused(400, "not an Amazon SNS message (unknown Type)")
    lines = []
    for name in fields:
        value = doc.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            raise Refused(400, f"Amazon SNS message without {name}")
        lines.append(f"{name}\n{value}\n")
    return "".join(lines).encode("utf-8")


def sns_host_ok(url: str, test_hosts: Collection[str] = ()) -> bool:
    """Whether a SigningCertURL or SubscribeURL may be fetched: https, on `sns.<region>.amazonaws.com` (no user
    name, no other port). `test_hosts` adds loopback hosts for the test suite only (`sns_test_ca_file`)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != "https" or parts.username is not None or parts.password is not None or not parts.hostname:
        return False
    host = parts.hostname.lower()
    if _SNS_HOST.fullmatch(host):
        return port in (None, 443)
    return host in test_hosts and _is_loopback(host)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def sns_signing_cert_url(doc: Mapping[str, object], test_hosts: Collection[str] = ()) -> str:
    """The message's SigningCertURL once it is known to be one SNS uses; Refused(403) otherwise."""
    url = doc.get("SigningCertURL")
    if not isinstance(url, str) or not sns_host_ok(url, test_hosts) or not urlsplit(url).path.endswith(".pem"):
        raise Refused(403, "SigningCertURL is not an https URL on sns.<region>.amazonaws.com")
    return url


def verify_sns(doc: Mapping[str, object], certificate_pem: bytes) -> None:
    """Check the message's signature with the certificate from its SigningCertURL; Refused(403) when it does not
    match (or the version is not 1 or 2)."""

    version = doc.get("SignatureVersion")
    algorithm: hashes.HashAlgorithm
    if version == "1":
        algorithm = hashes.SHA1()  # SNS's SignatureVersion 1 is SHA1withRSA
    elif version == "2":
        algorithm = hashes.SHA256()
    else:
        raise Refused(403, "SignatureVersion must be 1 or 2")
    try:
        signature = base64.b64decode(str(doc.get("Signature", "")), validate=True)
        key = x509.load_pem_x509_certificate(certificate_pem).public_key()
    except (binascii.Error, ValueError):
        raise Refused(403, "the signature or the signing certificate cannot be read") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise Refused(403, "the signing certificate holds no RSA key")
    try:
        key.verify(signature, sns_string_to_sign(doc), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise Refused(403, "the Amazon SNS signature does not match") from None


def sns_topic(doc: Mapping[str, object], topics: Collection[str]) -> str:
    """The message's TopicArn when it is one of `ses_topic_arns`; Refused(403) otherwise: any AWS account can
    subscribe this URL to a topic of its own, and its messages are validly signed too."""
    topic = doc.get("TopicArn")
    if not isinstance(topic, str) or topic not in topics:
        raise Refused(403, "TopicArn is not one of ses_topic_arns")
    return topic


def ses_event(doc: Mapping[str, object]) -> ProviderEvent | None:
    """The SES notification in a verified SNS Notification; None when its Message is no SES bounce, complaint or
    delivery notification. Its identity is the SNS MessageId (kept the same on SNS's retries)."""
    message_id = _text(doc.get("MessageId"), 100)
    if not message_id:
        raise Refused(400, "Amazon SNS message without MessageId")
    try:
        ses = json.loads(str(doc.get("Message", "")))
    except (ValueError, RecursionError):
        return None
    notices = ses_notices(ses)
    if notices is None:
        return None
    delivery = _delivery_id(ses_delivery_id(ses))
    return ProviderEvent(f"ses:{message_id}", tuple(notices), delivery)


# --- Mailgun ---------------------------------------------------------------------------------------------------


def verify_mailgun(doc: object, signing_key: str, now: datetime) -> str:
    """Check `signature` (HMAC-SHA256 of timestamp + token) and the timestamp's age; the token, which the caller
    must refuse to see twice. Refused(403) otherwise."""
    block = _dict(_dict(doc).get("signature"))
    timestamp, token, signature = (str(block.get(k, "")) for k in ("timestamp", "token", "signature"))
    if not timestamp.isdigit() or not token or not signature:
        raise Refused(403, "no Mailgun signature")
    expected = hmac.new(signing_key.encode("utf-8"), (timestamp + token).encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise Refused(403, "the Mailgun signature does not match")
    if abs(now.timestamp() - int(timestamp)) > MAILGUN_MAX_AGE:
        raise Refused(403, f"the Mailgun signature is more than {MAILGUN_MAX_AGE} seconds old")
    return token


def mailgun_event(doc: object) -> ProviderEvent:
    """A Mailgun event (`event-data`): failed with severity permanent (a bounce, classified by its words),
    complained; temporary failures, deliveries and the rest ask nothing of us. Identity: `event-data.id`."""
    data = _dict(_dict(doc).get("event-data"))
    event_id = _text(data.get("id"), 200)
    if not event_id:
        raise Refused(400, "Mailgun event without event-data.id")
    event = _text(data.get("event"), 40)
    recipient = _text(data.get("recipient"), 320)
    delivery = _delivery_id(_dict(data.get("user-variables")).get(DELIVERY_VARIABLE))
    status = _dict(data.get("delivery-status"))
    text = " ".join(_text(status.get(k)) for k in ("message", "description") if status.get(k))
    code = enhanced_code(_text(status.get("enhanced-code"), 20)) or enhanced_code(text)
    notice: Notice
    if event == "complained":
        notice = Notice(NoticeKind.COMPLAINT, None, recipient, "complaint reported by Mailgun", "", "abuse")
    elif event == "failed" and _text(data.get("severity"), 20) == "permanent":
        reason = _text(data.get("reason"), 40)
        if reason == "suppress-bounce" and not text:
            verdict = Verdict(BounceKind.HARD, "suppressed")  # Mailgun's own list of addresses that bounced
        else:
            verdict = classify_provider(code, text, hard=reason in ("bounce", "suppress-bounce"))
        basic = _text(status.get("code"), 10)
        detail = f"Mailgun {reason or 'failed'} {code or basic} {text}"
        notice = Notice(
            NoticeKind.BOUNCE, verdict.kind, recipient, detail[:DETAIL_CHARS], code or basic, verdict.reason
        )
    elif event == "failed":
        notice = Notice(NoticeKind.DELAY, None, recipient, "temporary failure (Mailgun retries)", code or "", "")
    else:
        notice = Notice(NoticeKind.DELIVERED, None, recipient, f"Mailgun {event or 'event'}", "", "")
    return ProviderEvent(f"mailgun:{event_id}", (notice,), delivery)


# --- Postmark --------------------------------------------------------------------------------------------------

#: Postmark bounce `Type`s that are bounces to apply; the rest (Transient, DnsError, AutoResponder ...) are
#: warnings or auto-replies and ask nothing of us. True: Postmark calls it permanent.
_POSTMARK_BOUNCES = {
    "HardBounce": True,
    "BadEmailAddress": True,
    "SoftBounce": False,
    "SpamNotification": False,  # a receiving filter refused the message as spam: about the message, soft
    "VirusNotification": False,
    "Blocked": False,
    "DMARCPolicy": False,
    "ManuallyDeactivated": False,
}


def postmark_event(doc: object) -> ProviderEvent:
    """A Postmark Bounce (by `Type`) or SpamComplaint record; Delivery and the rest ask nothing of us. Identity:
    the record type and its `ID` (or MessageID and address when it has none)."""
    data = _dict(doc)
    record = _text(data.get("RecordType"), 40)
    kind = _text(data.get("Type"), 40)
    recipient = _text(data.get("Email") or data.get("Recipient"), 320)
    metadata = _dict(data.get("Metadata"))
    delivery = _delivery_id(metadata.get(POSTMARK_METADATA) or metadata.get(DELIVERY_VARIABLE))
    details = _text(data.get("Details"))
    code = enhanced_code(details)
    notice: Notice
    if record == "SpamComplaint" or kind == "SpamComplaint":
        notice = Notice(NoticeKind.COMPLAINT, None, recipient, "complaint reported by Postmark", "", "abuse")
    elif record == "Bounce" and kind in _POSTMARK_BOUNCES:
        verdict = classify_provider(code, details, hard=_POSTMARK_BOUNCES[kind])
        detail = f"Postmark {kind} {details}"
        notice = Notice(NoticeKind.BOUNCE, verdict.kind, recipient, detail[:DETAIL_CHARS], code or "", verdict.reason)
    elif record == "Delivery":
        notice = Notice(NoticeKind.DELIVERED, None, recipient, "delivered (Postmark)", "", "")
    else:
        notice = Notice(NoticeKind.DELAY, None, recipient, f"Postmark {record} {kind}".strip(), "", "")
    identity = _text(data.get("ID"), 40) or f"{_text(data.get('MessageID'), 100)}:{recipient}"
    if identity == ":":
        raise Refused(400, "Postmark record without ID or MessageID")
    return ProviderEvent(f"postmark:{record}:{identity}", (notice,), delivery)


# --- SendGrid --------------------------------------------------------------------------------------------------


def verify_sendgrid(public_key: str, timestamp: str, signature: str, body: bytes) -> None:
    """Check the Event Webhook's ECDSA signature over `timestamp + body` with the public key (base64 DER, as
    SendGrid shows it); Refused(403) otherwise."""

    if not timestamp or not signature:
        raise Refused(403, f"no {SENDGRID_SIGNATURE} or {SENDGRID_TIMESTAMP}")
    key = sendgrid_key(public_key)
    try:
        key.verify(base64.b64decode(signature, validate=True), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        raise Refused(403, "the SendGrid signature does not match") from None


def sendgrid_key(public_key: str) -> ec.EllipticCurvePublicKey:
    """The EC public key of `sendgrid_public_key` (base64 DER, or PEM); ValueError when it is none."""

    text = public_key.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem_public_key(text.encode("ascii"))
        else:
            key = load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"not a base64 DER public key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an elliptic-curve (ECDSA) public key")
    return key


def sendgrid_events(doc: object) -> list[ProviderEvent]:
    """The events of one SendGrid post (a JSON array): `bounce` (type bounce: permanent; blocked: soft),
    `spamreport`, `dropped` for a bounced or spam-reporting address; the rest ask nothing of us. Identity:
    `sg_event_id`."""
    if not isinstance(doc, list) or len(doc) > _MAX_EVENTS:
        raise Refused(400, "a SendGrid post is a JSON array of events")
    events = []
    for item in doc:
        data = _dict(item)
        event_id = _text(data.get("sg_event_id"), 200)
        if not event_id:
            raise Refused(400, "SendGrid event without sg_event_id")
        event = _text(data.get("event"), 40)
        recipient = _text(data.get("email"), 320)
        reason = _text(data.get("reason"))
        status = _text(data.get("status"), 20)
        code = enhanced_code(status) or enhanced_code(reason)
        notice: Notice
        if event == "spamreport" or (event == "dropped" and reason == "Spam Reporting Address"):
            notice = Notice(NoticeKind.COMPLAINT, None, recipient, "complaint reported by SendGrid", "", "abuse")
        elif event == "bounce":
            bounce_type = _text(data.get("type"), 20) or "bounce"
            verdict = classify_provider(code, reason, hard=bounce_type == "bounce")
            detail = f"SendGrid {bounce_type} {code or status} {reason}"
            notice = Notice(
                NoticeKind.BOUNCE, verdict.kind, recipient, detail[:DETAIL_CHARS], code or status, verdict.reason
            )
        elif event == "dropped" and reason == "Bounced Address":
            notice = Notice(
                NoticeKind.BOUNCE, BounceKind.HARD, recipient, "SendGrid dropped: Bounced Address", "", "suppressed"
            )
        elif event == "delivered":
            notice = Notice(NoticeKind.DELIVERED, None, recipient, "delivered (SendGrid)", "", "")
        else:
            notice = Notice(NoticeKind.DELAY, None, recipient, f"SendGrid {event or 'event'}", "", "")
        events.append(ProviderEvent(f"sendgrid:{event_id}", (notice,), _delivery_id(data.get(DELIVERY_VARIABLE))))
    return events
