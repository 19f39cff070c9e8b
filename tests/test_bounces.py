"""The pure parts of bounce handling: VERP ids, hard/soft classification, and reading real reports (a Postfix DSN
captured from a real MTA, an RFC 5965 ARF complaint, provider formats from flufl.bounce's test data)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digest.bounces.classify import BounceKind, classify_reply
from digest.bounces.rates import IssueRates, over_limits
from digest.bounces.reports import NoticeKind, read_report
from digest.bounces.verp import DeliveryRef, find_verp_ids, make_verp_id, read_verp_id, verp_address

SECRET = "test-secret-key-0123456789abcdef"
FIXTURES = Path(__file__).parent / "fixtures" / "bounces"


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_a_verp_id_names_its_delivery_and_nothing_else(issue: int, subscriber: int) -> None:
    verp_id = make_verp_id(SECRET, issue, subscriber)
    assert read_verp_id(SECRET, verp_id) == DeliveryRef(issue, subscriber)
    assert read_verp_id(SECRET, verp_id.upper()) == DeliveryRef(issue, subscriber)  # MTAs may change the case
    assert read_verp_id("another-secret-0123456789abcdef", verp_id) is None
    assert find_verp_ids(f"To: <{verp_address('bounces@example.org', verp_id)}>") == [verp_id]


def test_a_tampered_or_malformed_verp_id_is_refused() -> None:
    verp_id = make_verp_id(SECRET, 1, 2)
    flipped = ("b" if verp_id[3] == "a" else "a").join([verp_id[:3], verp_id[4:]])
    assert read_verp_id(SECRET, flipped) is None
    assert read_verp_id(SECRET, verp_id[:-1]) is None
    assert read_verp_id(SECRET, "0" * len(verp_id)) is None  # not base32
    assert make_verp_id(SECRET, 1, 2) != make_verp_id(SECRET, 1, 3)


@pytest.mark.parametrize(
    ("detail", "kind"),
    [
        ("RCPT TO: 550 5.1.1 <a@example.org>: Recipient address rejected: User unknown", BounceKind.HARD),
        ("RCPT TO: 550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found", BounceKind.HARD),
        ("RCPT TO: 550 5.2.1 The email account that you tried to reach is disabled", BounceKind.HARD),
        ("RCPT TO: 553 5.1.2 domain does not exist", BounceKind.HARD),
        ("RCPT TO: 550 No such user here", BounceKind.HARD),  # no enhanced code: the wording decides
        ("RCPT TO: 552 5.2.2 Mailbox full", BounceKind.SOFT),
        ("end of data: 554 5.7.1 Message rejected as spam", BounceKind.SOFT),
        ("RCPT TO: 550 Administrative prohibition", BounceKind.SOFT),
        ("cannot build the message: bad data", None),
        ("RCPT TO: 451 4.3.2 try again later", None),
    ],
)
def test_refusals_are_hard_only_when_the_address_is_bad(detail: str, kind: BounceKind | None) -> None:
    assert classify_reply(detail) is kind


def test_real_postfix_dsn() -> None:
    report = read_report((FIXTURES / "postfix-5.1.1-verp.eml").read_bytes())
    assert report.format == "dsn" and not report.problem
    assert read_verp_id(SECRET, report.verp_ids[0]) == DeliveryRef(1, 2)
    [notice] = report.notices
    assert notice.kind is NoticeKind.BOUNCE and notice.bounce is BounceKind.HARD
    assert notice.recipient == "nosuchuser@digest.test"
    assert notice.detail == '5.1.1 unknown user: "nosuchuser"'


def test_gmail_style_dsn_keeps_the_multiline_diagnostic_on_one_line() -> None:
    report = read_report((FIXTURES / "provider-gmail-style-verp.eml").read_bytes())
    [notice] = report.notices
    assert read_verp_id(SECRET, report.verp_ids[0]) == DeliveryRef(1, 1)
    assert notice.bounce is BounceKind.HARD and "\n" not in notice.detail
    assert notice.detail.startswith("5.1.1 550-5.1.1 The email account that you tried to reach does not exist.")


def test_arf_complaint_is_matched_through_the_returned_message() -> None:
    report = read_report((FIXTURES / "arf-rfc5965-verp.eml").read_bytes())
    assert report.format == "arf"
    assert read_verp_id(SECRET, report.verp_ids[0]) == DeliveryRef(1, 3)
    [notice] = report.notices
    assert notice.kind is NoticeKind.COMPLAINT and notice.detail == "complaint (abuse) reported by SomeGenerator/1.0"


@pytest.mark.parametrize(
    ("name", "address", "kind"),
    [
        ("provider-yahoo-flufl.eml", "userx@example.com", BounceKind.SOFT),  # "#4.4.1" no connection
        ("provider-exchange-flufl.eml", "userx@example.COM", BounceKind.HARD),  # "Unknown Recipient"
        ("provider-qmail-flufl.eml", "userx@example.de", BounceKind.SOFT),
    ],
)
def test_non_standard_provider_bounces_go_through_flufl_bounce(name: str, address: str, kind: BounceKind) -> None:
    report = read_report((FIXTURES / name).read_bytes())
    assert report.format == "flufl" and report.verp_ids == ()
    assert [(n.recipient, n.bounce) for n in report.notices] == [(address, kind)]


def test_a_delay_warning_asks_nothing() -> None:
    data = (FIXTURES / "postfix-5.1.1-verp.eml").read_bytes().replace(b"Action: failed", b"Action: delayed")
    report = read_report(data)
    assert report.format == "dsn" and report.notices == () and not report.problem


@given(st.binary(max_size=2000))
def test_any_bytes_give_a_report_or_a_problem_never_an_exception(data: bytes) -> None:
    report = read_report(data)
    assert report.key and (report.notices or report.problem or report.format)


def test_the_same_report_has_the_same_key_in_an_mbox_and_in_a_maildir() -> None:
    data = (FIXTURES / "postfix-5.1.1-verp.eml").read_bytes()
    assert read_report(data).key == read_report(data.replace(b"\n", b"\r\n")).key


def test_rates_warn_above_the_limits() -> None:
    fine = IssueRates(issue=3, mailed=1000, hard=10, soft=40, complained=1)
    assert fine.delivered == 950 and over_limits(fine, 0.01, 0.001) == []
    bad = IssueRates(issue=3, mailed=1000, hard=11, soft=0, complained=2)
    assert over_limits(bad, 0.01, 0.001) == [
        "issue 3 hard-bounced 1.10% (11 of 1000), over max_hard_bounce_rate 1.00%",
        "issue 3 drew 0.20% complaints (2 of 1000), over max_complaint_rate 0.10%",
    ]
    assert IssueRates(1, 0, 0, 0, 0).rate(0) == 0.0
