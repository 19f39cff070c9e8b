"""`POST /webhooks/ses` on a real `digest serve`: Amazon SES notifications through Amazon SNS, each signed in the
test (SignatureVersion 1 and 2) with a generated RSA key whose certificate a local HTTPS server on loopback serves.

`sns_test_ca_file` is what lets the server fetch a SigningCertURL from 127.0.0.1 at all: a setting for the test
suite only, off by default (then only https on sns.<region>.amazonaws.com is ever fetched)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from digest.bounces.reports import read_report
from digest.bounces.verp import make_verp_id
from digest.bounces.webhooks import ses_event, sns_host_ok
from digest.settings import Settings
from digest.web.webhooks import TEST_HOSTS
from tests.webhook_util import TOPIC, Hooked, ses_bounce, ses_notification, start_hooked


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hooked]:
    yield from start_hooked(tmp_path_factory.mktemp("sns"))


def post(hooked: Hooked, doc: dict[str, str]) -> int:
    response = hooked.post("/webhooks/ses", json.dumps(doc).encode(), {"x-amz-sns-message-type": doc["Type"]})
    return response.status_code


def test_a_signed_permanent_bounce_suppresses_the_delivery_its_header_names(hooked: Hooked) -> None:
    # The delivery id SES echoes back (the original headers) names reader1's delivery, though the notification's
    # address is another reader's: the signed id decides.
    delivery = hooked.delivery_id("reader1@example.org")
    ses = ses_bounce(
        "someone-else@example.org", "Permanent", "General", "smtp; 550 5.1.1 user unknown", "5.1.1", delivery
    )
    assert post(hooked, ses_notification(hooked.sns, ses, "msg-v2-hard", version="2")) == 200
    assert hooked.status("reader1@example.org") == "bounced"
    assert hooked.delivery("reader1@example.org") == ("bounced", "hard")


def test_signature_version_1_and_an_address_only_complaint(hooked: Hooked) -> None:
    ses = {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": "Reader2@Example.org"}],
            "complaintFeedbackType": "abuse",
        },
        "mail": {"messageId": "0100-x", "destination": ["reader2@example.org"]},
    }
    assert post(hooked, ses_notification(hooked.sns, ses, "msg-v1-complaint", version="1")) == 200
    assert hooked.status("reader2@example.org") == "complained"  # its latest delivery: issue 1
    assert hooked.delivery("reader2@example.org") == ("complained", None)


def test_a_transient_bounce_counts_as_soft_and_a_delivery_changes_nothing(hooked: Hooked) -> None:
    ses = ses_bounce("reader3@example.org", "Transient", "MailboxFull", "smtp; 452 4.2.2 mailbox full", "4.2.2")
    assert post(hooked, ses_notification(hooked.sns, ses, "msg-soft")) == 200
    assert hooked.status("reader3@example.org") == "active"
    assert hooked.delivery("reader3@example.org") == ("bounced", "soft")
    assert hooked.ws.sql("SELECT soft_bounces FROM subscribers WHERE email = 'reader3@example.org'") == [(1,)]
    delivered = {"notificationType": "Delivery", "delivery": {"recipients": ["reader4@example.org"]}, "mail": {}}
    assert post(hooked, ses_notification(hooked.sns, delivered, "msg-delivered")) == 200
    assert hooked.delivery("reader4@example.org") == ("sent", None)


def test_a_replayed_message_changes_nothing_and_the_certificate_is_fetched_once(hooked: Hooked) -> None:
    ses = ses_bounce("reader5@example.org", "Permanent", "General", "", "5.1.1")
    doc = ses_notification(hooked.sns, ses, "msg-replayed")
    assert post(hooked, doc) == 200
    before = hooked.state_dump()
    response = hooked.post("/webhooks/ses", json.dumps(doc).encode())
    assert response.status_code == 200 and response.json()["already"] == 1
    assert hooked.state_dump() == before
    # Cached across every test of the module: fetched at most once by each `digest serve` process (one per core).
    assert 1 <= hooked.sns.gets["/SimpleNotificationService-test.pem"] <= (os.cpu_count() or 1)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: {**d, "Message": d["Message"].replace("reader6", "reader7")},  # another victim
        lambda d: {**d, "MessageId": "msg-tampered-2"},
        lambda d: {**d, "SignatureVersion": "3"},
        lambda d: {**d, "Signature": d["Signature"][:-8] + "AAAAAAA="},
        lambda d: {**d, "TopicArn": "arn:aws:sns:us-east-1:999999999999:attacker"},  # signed, but not our topic
    ],
)
def test_a_tampered_message_is_refused_with_nothing_changed(hooked: Hooked, tamper: object) -> None:
    ses = ses_bounce("reader6@example.org", "Permanent", "General", "smtp; 550 5.1.1 user unknown", "5.1.1")
    doc = ses_notification(hooked.sns, ses, "msg-tampered")
    before = hooked.state_dump()
    assert callable(tamper)
    assert post(hooked, tamper(doc)) == 403
    assert hooked.state_dump() == before
    assert hooked.status("reader6@example.org") == hooked.status("reader7@example.org") == "active"


def test_a_foreign_topic_signed_with_a_valid_signature_is_refused(hooked: Hooked) -> None:
    ses = ses_bounce("reader8@example.org", "Permanent", "General", "", "5.1.1")
    unsigned = {"Type": "Notification", "MessageId": "msg-foreign", "Message": json.dumps(ses)}
    unsigned |= {"Timestamp": "2026-12-07T00:00:00.000Z", "TopicArn": "arn:aws:sns:us-east-1:999999999999:other"}
    doc = hooked.sns.sign(unsigned)
    assert post(hooked, doc) == 403
    assert hooked.status("reader8@example.org") == "active"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/SimpleNotificationService-test.pem",  # not https
        "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
        "https://evil.example/SimpleNotificationService-test.pem",
        "https://user@127.0.0.1:{port}/SimpleNotificationService-test.pem",
        "https://127.0.0.1:{port}/not-a-certificate",
    ],
)
def test_a_signing_cert_url_off_the_sns_hosts_is_never_fetched(hooked: Hooked, url: str) -> None:
    ses = ses_bounce("reader9@example.org", "Permanent", "General", "", "5.1.1")
    doc = ses_notification(hooked.sns, ses, "msg-bad-cert") | {"SigningCertURL": url.format(port=hooked.sns.port)}
    fetched = sum(hooked.sns.gets.values())
    assert post(hooked, doc) == 403
    assert sum(hooked.sns.gets.values()) == fetched
    assert hooked.status("reader9@example.org") == "active"


def test_a_subscription_is_confirmed_only_when_signed_and_on_an_sns_host(hooked: Hooked) -> None:
    good = hooked.sns.subscribe_url("tok-good")
    confirm = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "msg-subscribe",
        "Token": "tok-good",
        "TopicArn": TOPIC,
        "Message": f"You have chosen to subscribe to the topic {TOPIC}.\nTo confirm the subscription, visit the"
        " SubscribeURL included in this message.",
        "SubscribeURL": good,
        "Timestamp": "2026-12-07T00:00:00.000Z",
    }
    visited = good.split(f":{hooked.sns.port}", 1)[1]
    forged = hooked.sns.sign(confirm, "1") | {"Token": "tok-forged"}  # the signature covers the token
    assert post(hooked, forged) == 403 and hooked.sns.gets[visited] == 0
    elsewhere = hooked.sns.sign(confirm | {"SubscribeURL": "https://evil.example/?Action=ConfirmSubscription"}, "2")
    assert post(hooked, elsewhere) == 403
    assert post(hooked, hooked.sns.sign(confirm, "2")) == 200
    assert hooked.sns.gets[visited] == 1


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", True),
        ("https://sns.eu-central-1.amazonaws.com/?Action=ConfirmSubscription", True),
        ("https://sns.us-east-1.amazonaws.com:8443/x.pem", False),
        ("http://sns.us-east-1.amazonaws.com/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com@evil.example/x.pem", False),
        ("https://xsns.us-east-1.amazonaws.com/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com.evil.example/x.pem", False),
        ("https://127.0.0.1/x.pem", False),
        ("https://localhost/x.pem", False),
    ],
)
def test_only_https_on_sns_hosts_by_default(url: str, ok: bool) -> None:
    assert Settings().sns_test_ca_file is None  # the loopback allowance is off unless a test sets it
    assert sns_host_ok(url) is ok
    assert sns_host_ok(url, TEST_HOSTS) is (
        ok or url.startswith("https://127.0.0.1/") or url.startswith("https://localhost/")
    )


def test_mail_borne_and_webhook_ses_notifications_read_the_same() -> None:
    delivery = make_verp_id("test-secret-key-0123456789abcdef", 1, 2)
    ses = ses_bounce(
        "a@example.org", "Permanent", "General", "smtp; 550 5.7.1 blocked using spamhaus", "5.7.1", delivery
    )
    mailed = read_report(
        b"From: MAILER-DAEMON@amazonses.com\r\nContent-Type: application/json\r\n\r\n" + json.dumps(ses).encode()
    )
    posted = ses_event({"MessageId": "m", "Message": json.dumps(ses)})
    assert posted is not None and mailed.format == "ses"
    assert posted.notices == mailed.notices
    assert posted.delivery_id == delivery and delivery in mailed.verp_ids  # both name the delivery
    [notice] = posted.notices
    assert (notice.bounce, notice.reason) == ("soft", "blocked")  # SES says Permanent; a blocklist is no bad address
