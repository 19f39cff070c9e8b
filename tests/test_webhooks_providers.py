"""`POST /webhooks/mailgun`, `/webhooks/sendgrid`, `/webhooks/postmark` and digest's generic `/webhooks/bounce` on a
real `digest serve`, each request authenticated the way the provider does it (Mailgun's HMAC, SendGrid's ECDSA,
HTTP Basic, a Bearer token), after issue 1 went out through a real SMTP server carrying each delivery's id."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from digest.bounces.verp import make_verp_id
from digest.settings import Settings
from digest.web import create_app
from tests.test_cli_render import paper
from tests.webhook_util import READERS, WEBHOOK_SECRET, Hooked, mailgun_post, start_hooked


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hooked]:
    yield from start_hooked(tmp_path_factory.mktemp("providers"))


def bearer(secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}


def basic(password: str = WEBHOOK_SECRET) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"digest:{password}".encode()).decode()}


# --- the delivery id in every message -------------------------------------------------------------------------


def test_every_message_carries_its_signed_delivery_id_for_each_provider(hooked: Hooked) -> None:
    for received in hooked.smtp.received:
        [reader] = received.rcpt_tos
        msg = received.message
        delivery = str(msg["X-Digest-Delivery"])
        assert received.mail_from == f"bounces+{delivery}@example.org"  # the same id as the VERP return path
        assert json.loads(str(msg["X-Mailgun-Variables"])) == {"digest_delivery": delivery}
        assert json.loads(str(msg["X-SMTPAPI"])) == {"unique_args": {"digest_delivery": delivery}}
        assert str(msg["X-PM-Metadata-digest-delivery"]) == delivery
        assert reader.split("@")[0] not in delivery
    assert len({str(m.message["X-Digest-Delivery"]) for m in hooked.smtp.received}) == len(READERS)


# --- Mailgun ---------------------------------------------------------------------------------------------------


def mailgun_failure(reader: str, event_id: str, *, delivery: str = "", message: str = "") -> dict[str, object]:
    data: dict[str, object] = {
        "id": event_id,
        "event": "failed",
        "severity": "permanent",
        "reason": "bounce",
        "recipient": reader,
        "delivery-status": {"code": 550, "message": message or "5.1.1 The email account does not exist"},
    }
    if delivery:
        data["user-variables"] = {"digest_delivery": delivery}
    return data


def test_mailgun_permanent_failure_suppresses_the_delivery_named_by_its_variables(hooked: Hooked) -> None:
    delivery = hooked.delivery_id("reader10@example.org")
    body = mailgun_post(mailgun_failure("whoever@example.org", "mg-1", delivery=delivery), token="t" * 50)
    response = hooked.post("/webhooks/mailgun", body, {"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert hooked.status("reader10@example.org") == "bounced"
    assert hooked.delivery("reader10@example.org") == ("bounced", "hard")
    # The subscriber's trail names the provider and its event id as what made the change.
    trail = hooked.ws.sql(
        "SELECT c.source FROM status_changes c JOIN subscribers s ON s.id = c.subscriber"
        " WHERE s.email = 'reader10@example.org' AND c.new_status = 'bounced'"
    )
    assert trail == [("webhook mailgun mg-1",)]


def test_mailgun_replayed_stale_and_forged_signatures_change_nothing(hooked: Hooked) -> None:
    event = mailgun_failure("reader11@example.org", "mg-2")
    fresh = mailgun_post(event, token="r" * 50)
    assert hooked.post("/webhooks/mailgun", fresh).status_code == 200
    assert hooked.status("reader11@example.org") == "bounced"
    before = hooked.state_dump()
    # The same signed request again (a replay), and a different event under a used token: refused.
    assert hooked.post("/webhooks/mailgun", fresh).status_code == 403
    reused = mailgun_post(mailgun_failure("reader12@example.org", "mg-3"), token="r" * 50)
    assert hooked.post("/webhooks/mailgun", reused).status_code == 403
    stale = mailgun_post(
        mailgun_failure("reader12@example.org", "mg-4"), token="s" * 50, timestamp=int(time.time()) - 301
    )
    assert hooked.post("/webhooks/mailgun", stale).status_code == 403
    forged = mailgun_post(mailgun_failure("reader12@example.org", "mg-5"), token="f" * 50, key="not-the-key")
    assert hooked.post("/webhooks/mailgun", forged).status_code == 403
    unsigned = json.dumps({"event-data": mailgun_failure("reader12@example.org", "mg-6")}).encode()
    assert hooked.post("/webhooks/mailgun", unsigned).status_code == 403
    assert hooked.state_dump() == before
    assert hooked.status("reader12@example.org") == "active"
    # Mailgun's own retry of an applied event comes with a new token: accepted, and changes nothing.
    retry = mailgun_post(event, token="n" * 50)
    assert hooked.post("/webhooks/mailgun", retry).json()["already"] == 1


def test_mailgun_complaint_and_temporary_failure(hooked: Hooked) -> None:
    complained = {"id": "mg-7", "event": "complained", "recipient": "reader13@example.org"}
    assert hooked.post("/webhooks/mailgun", mailgun_post(complained, token="c" * 50)).status_code == 200
    assert hooked.status("reader13@example.org") == "complained"
    temporary = mailgun_failure("reader14@example.org", "mg-8") | {"severity": "temporary"}
    assert hooked.post("/webhooks/mailgun", mailgun_post(temporary, token="d" * 50)).status_code == 200
    assert hooked.delivery("reader14@example.org") == ("sent", None)  # Mailgun retries it: nothing yet


# --- SendGrid --------------------------------------------------------------------------------------------------


def test_sendgrid_signed_batch_applies_bounces_and_complaints(hooked: Hooked) -> None:
    events = [
        {"sg_event_id": "sg-1", "event": "bounce", "type": "bounce", "email": "reader15@example.org",
         "status": "5.1.1", "reason": "550 5.1.1 unknown user",
         "digest_delivery": hooked.delivery_id("reader15@example.org")},
        {"sg_event_id": "sg-2", "event": "spamreport", "email": "reader16@example.org"},
        {"sg_event_id": "sg-3", "event": "bounce", "type": "blocked", "email": "reader17@example.org",
         "status": "5.7.1", "reason": "550 5.7.1 blocked by spamhaus"},
        {"sg_event_id": "sg-4", "event": "delivered", "email": "reader18@example.org"},
    ]  # fmt: skip
    body = json.dumps(events).encode()
    response = hooked.post("/webhooks/sendgrid", body, hooked.sendgrid.headers(body))
    assert response.status_code == 200 and response.json()["applied"] == 4
    assert hooked.status("reader15@example.org") == "bounced"
    assert hooked.status("reader16@example.org") == "complained"
    assert hooked.status("reader17@example.org") == "active"  # blocked: about the sender, soft
    assert hooked.delivery("reader17@example.org") == ("bounced", "soft")
    assert hooked.delivery("reader18@example.org") == ("sent", None)
    before = hooked.state_dump()
    again = hooked.post("/webhooks/sendgrid", body, hooked.sendgrid.headers(body))  # SendGrid's retry
    assert again.status_code == 200 and again.json()["already"] == 4
    assert hooked.state_dump() == before


def test_sendgrid_tampered_or_unsigned_posts_change_nothing(hooked: Hooked) -> None:
    events = [{"sg_event_id": "sg-9", "event": "bounce", "type": "bounce", "email": "reader19@example.org"}]
    body = json.dumps(events).encode()
    headers = hooked.sendgrid.headers(body)
    before = hooked.state_dump()
    tampered = body.replace(b"reader19", b"reader20")
    assert hooked.post("/webhooks/sendgrid", tampered, headers).status_code == 403
    other_time = headers | {"X-Twilio-Email-Event-Webhook-Timestamp": str(int(time.time()) + 1)}
    assert hooked.post("/webhooks/sendgrid", body, other_time).status_code == 403
    assert hooked.post("/webhooks/sendgrid", body, {"Content-Type": "application/json"}).status_code == 403
    assert hooked.state_dump() == before


# --- Postmark and digest's generic webhook --------------------------------------------------------------------


def test_postmark_needs_its_basic_credentials(hooked: Hooked) -> None:
    bounce = {
        "RecordType": "Bounce", "ID": 4200, "Type": "HardBounce", "TypeCode": 1, "Email": "nobody@example.org",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {"digest-delivery": hooked.delivery_id("reader21@example.org")},
    }  # fmt: skip
    body = json.dumps(bounce).encode()
    before = hooked.state_dump()
    refused = hooked.post("/webhooks/postmark", body, basic("wrong"))
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
    assert hooked.post("/webhooks/postmark", body).status_code == 401
    assert hooked.state_dump() == before
    assert hooked.post("/webhooks/postmark", body, basic()).status_code == 200
    assert hooked.status("reader21@example.org") == "bounced"
    complaint = {"RecordType": "SpamComplaint", "ID": 4201, "Type": "SpamComplaint", "Email": "reader22@example.org"}
    assert hooked.post("/webhooks/postmark", json.dumps(complaint).encode(), basic()).status_code == 200
    assert hooked.status("reader22@example.org") == "complained"


def test_generic_webhook_by_address_or_delivery_id(hooked: Hooked) -> None:
    hard = json.dumps({"email": "READER23@example.org", "type": "hard", "source": "postal", "meta": {"code": 550}})
    refused = hooked.post("/webhooks/bounce", hard.encode(), bearer("wrong-secret-0123456789abcdef"))
    assert refused.status_code == 401 and hooked.status("reader23@example.org") == "active"
    assert hooked.post("/webhooks/bounce", hard.encode(), {"Content-Type": "application/json"}).status_code == 401
    assert hooked.post("/webhooks/bounce", hard.encode(), bearer()).status_code == 200
    assert hooked.status("reader23@example.org") == "bounced"
    delivery = hooked.delivery_id("reader24@example.org")
    complaint = json.dumps({"delivery": delivery, "type": "complaint", "source": "fbl"}).encode()
    assert hooked.post("/webhooks/bounce", complaint, bearer()).status_code == 200
    assert hooked.status("reader24@example.org") == "complained"
    forged = make_verp_id("another-secret-0123456789abcdefgh", 1, 25)
    bogus = json.dumps({"delivery": forged, "type": "hard"}).encode()
    before = hooked.state_dump()
    assert hooked.post("/webhooks/bounce", bogus, bearer()).status_code == 200  # authenticated, but no such delivery
    [remembered] = [r for r in hooked.state_dump() if r not in before]
    assert str(remembered[1]).startswith("unmatched")
    assert hooked.post("/webhooks/bounce", b'{"type": "hard"}', bearer()).status_code == 400


def test_a_bounced_or_reported_notice_ends_an_address_no_issue_went_to(hooked: Hooked) -> None:
    # Confirmation and welcome mails go through the provider too and carry no delivery: its events name only the
    # address. A hard bounce or a complaint ends the address as after an issue; a soft one counts nothing.
    for email in ("notice-hard@example.org", "notice-spam@example.org", "notice-soft@example.org"):
        hooked.ws.run("subscribers", "add", email)
    answers = [
        hooked.post(
            "/webhooks/bounce", json.dumps({"email": email, "type": kind, "id": f"n-{kind}"}).encode(), bearer()
        )
        for email, kind in (
            ("notice-hard@example.org", "hard"),
            ("notice-spam@example.org", "complaint"),
            ("notice-soft@example.org", "soft"),
        )
    ]
    assert [a.json()["applied"] for a in answers] == [1, 1, 1]
    assert hooked.status("notice-hard@example.org") == "bounced"
    assert hooked.status("notice-spam@example.org") == "complained"
    assert hooked.status("notice-soft@example.org") == "active"
    trail = hooked.ws.run("subscribers", "history", "notice-hard@example.org").stdout
    assert "active -> bounced" in trail and "webhook bounce n-hard" in trail
    stranger = json.dumps({"email": "nobody-here@example.org", "type": "hard"}).encode()
    answer = hooked.post("/webhooks/bounce", stranger, bearer()).json()
    assert (answer["applied"], answer["unmatched"]) == (0, 1)  # authenticated, but not on the list: said so


def test_bodies_are_capped_and_nothing_from_them_reaches_the_log_raw(hooked: Hooked) -> None:
    big = json.dumps({"email": "reader26@example.org", "type": "hard", "meta": {"x": "y" * 70_000}}).encode()
    assert hooked.post("/webhooks/bounce", big, bearer()).status_code == 413
    assert hooked.status("reader26@example.org") == "active"
    evil = {
        "email": "reader27@example.org",
        "type": "soft",
        "source": "\x1b[2J\x1b[31mfake\r\nlog line",
        "meta": {"m": "\x07\u202e"},
    }
    assert hooked.post("/webhooks/bounce", json.dumps(evil).encode(), bearer()).status_code == 200
    log = hooked.srv.log()
    assert "webhook bounce" in log
    assert "\x1b" not in log and "\x07" not in log and "\u202e" not in log and "\r\nlog line" not in log


# --- off until set up; the soft-bounce streak -----------------------------------------------------------------


def test_every_endpoint_is_404_until_its_setting_is_set(tmp_path: Path) -> None:
    where = {"output_dir": tmp_path / "none", "state_path": tmp_path / "state.db"}
    settings = Settings(secret_key="test-secret-key-0123456789abcdef", **where)
    with TestClient(create_app(settings)) as client:
        for name in ("bounce", "ses", "mailgun", "postmark", "sendgrid"):
            response = client.post(f"/webhooks/{name}", content=b"{}", headers=bearer())
            assert response.status_code == 404, name
    # A secret set, but no secret_key: the delivery ids cannot be checked, so nothing is on either.
    bare = Settings(webhook_secret=WEBHOOK_SECRET, **where)
    with TestClient(create_app(bare)) as client:
        assert client.post("/webhooks/bounce", content=b"{}", headers=bearer()).status_code == 404


@pytest.mark.both_states
def test_soft_bounces_by_webhook_count_toward_the_streak_across_issues(tmp_path: Path, state: Path | str) -> None:
    for hooked in start_hooked(tmp_path, soft_limit=2, state=state):
        soft = json.dumps({"email": "reader30@example.org", "type": "soft", "source": "postal"}).encode()
        first = hooked.post("/webhooks/bounce", soft, bearer())
        assert first.status_code == 200 and hooked.status("reader30@example.org") == "active"
        hooked.ws.add_seed("002_new.md", paper("A New Paper", "新论文", "https://arxiv.org/abs/2501.00001"))
        hooked.ws.run("render", "--now", "2024-09-30T08:00:00+08:00")
        hooked.ws.run("send")
        # The same body again is the same event (already applied), so the second bounce says which one it is.
        second = json.dumps({"email": "reader30@example.org", "type": "soft", "id": "issue-2-bounce"}).encode()
        assert hooked.post("/webhooks/bounce", second, bearer()).status_code == 200
        assert hooked.delivery("reader30@example.org", issue=2) == ("bounced", "soft")
        assert hooked.status("reader30@example.org") == "bounced"  # 2 soft bounces in a row, as `bounces import`
        # A Mailgun complaint, then its replay, on this backend too.
        complained = {"id": "mg-pg", "event": "complained", "recipient": "reader31@example.org"}
        body = mailgun_post(complained, token="p" * 50)
        assert hooked.post("/webhooks/mailgun", body).status_code == 200
        before = hooked.state_dump()
        assert hooked.post("/webhooks/mailgun", body).status_code == 403
        assert hooked.state_dump() == before and hooked.status("reader31@example.org") == "complained"
