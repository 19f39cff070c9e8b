"""Bounce classification that reads the diagnostic: the one reason table (hard only for userunknown, hostunknown,
hasmoved, notaccept on a permanent failure, as in Sisimai), odd DSNs, ARF anywhere, Amazon SES JSON by mail, and
`digest bounces import --dry-run --json` run over flufl.bounce's own test corpus against the answers its tests
encode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from digest.bounces.classify import REASONS, BounceKind, Verdict, classify
from digest.bounces.reports import NoticeKind, classification, read_report
from tests.conftest import Workspace

FIXTURES = Path(__file__).parent / "fixtures" / "bounces"
HARD, SOFT = BounceKind.HARD, BounceKind.SOFT

#: (status code or None, diagnostic, expected verdict): at least one case per row of REASONS.
CASES = [
    # The words decide when the code is generic or missing.
    ("5.0.0", "smtp; 550 User unknown", HARD, "userunknown"),
    (None, "550 No such user here", HARD, "userunknown"),
    ("5.0.0", "550 Mailbox unavailable or access denied", HARD, "userunknown"),
    ("5.0.0", "550 The email account that you tried to reach is disabled", HARD, "userunknown"),
    ("5.5.0", "550 5.5.0 Invalid recipient <a@example.org>", HARD, "userunknown"),
    ("5.1.351", "550 5.1.351 Remote server returned 'RESOLVER.ADR.RecipientNotFound'", HARD, "userunknown"),
    (None, "<u@sbcglobal.net>: This user doesn't have a sbcglobal.net account", HARD, "userunknown"),
    ("5.4.4", "Host or domain name not found. Name service error for name=nowhere.invalid", HARD, "hostunknown"),
    ("5.0.0", "550 Host unknown", HARD, "hostunknown"),
    ("5.1.6", "550 5.1.6 recipient has moved", HARD, "hasmoved"),
    ("5.1.10", "556 5.1.10 Recipient address has null MX", HARD, "notaccept"),
    # A temporary failure is never hard, whatever it says.
    ("4.0.0", "450 User unknown in local recipient table", SOFT, "userunknown"),
    # Refusals about the mailbox's state, the message, the sender or the sending host: soft, whatever 5.1.x or
    # 5.2.1 code they carry.
    ("5.1.1", "552 5.1.1 user over quota", SOFT, "mailboxfull"),
    ("5.2.2", "552 5.2.2 Mailbox full", SOFT, "mailboxfull"),
    ("5.0.0", "552 Message size exceeds fixed maximum message size", SOFT, "mesgtoobig"),
    (
        "4.7.1",
        "450 4.7.1 Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/",
        SOFT,
        "greylisted",
    ),
    ("5.1.1", "550 5.1.1 Too many messages from your IP, rate limit exceeded", SOFT, "ratelimited"),
    ("5.1.1", "550 5.1.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org", SOFT, "blocked"),
    ("5.2.1", "550 5.2.1 Your IP 192.0.2.1 is listed in a DNSBL", SOFT, "blocked"),
    ("5.7.1", "554 5.7.1 Message rejected as spam", SOFT, "spamdetected"),
    ("5.1.1", "550 5.1.1 SPF check failed for example.org", SOFT, "authfailure"),
    ("5.1.8", "553 5.1.8 Sender address rejected: Domain not found", SOFT, "rejected"),
    ("5.0.0", "550 Administrative prohibition", SOFT, "rejected"),
    ("5.7.1", "554 5.7.1 Relay access denied", SOFT, "rejected"),
    # Only the code speaks: specific codes decide, generic ones do not.
    ("5.1.1", "", HARD, "userunknown"),
    ("5.1.2", "", HARD, "hostunknown"),
    ("5.2.1", "", HARD, "disabled"),
    ("5.0.0", "", SOFT, "undefined"),
    (None, "", SOFT, "undefined"),
    ("4.4.7", "delivery time expired", SOFT, "expired"),
    ("4.4.1", "connection timed out", SOFT, "networkerror"),
]


@pytest.mark.parametrize(("code", "text", "kind", "reason"), CASES)
def test_the_reason_table(code: str | None, text: str, kind: BounceKind, reason: str) -> None:
    assert classify(code, text, permanent=True) == Verdict(kind, reason)


def test_every_row_of_the_table_is_specified_and_only_four_reasons_are_hard() -> None:
    assert {r.name for r in REASONS} <= {case[3] for case in CASES}
    assert {r.name for r in REASONS if r.hard} == {"userunknown", "hostunknown", "hasmoved", "notaccept", "disabled"}


def _dsn(action: str, status: str, diagnostic: str, recipient: str = "reader@example.org") -> bytes:
    return (
        "From: MAILER-DAEMON@example.net\nTo: bounces@example.org\nSubject: Returned mail\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n--B\n'
        "Content-Type: text/plain\n\nYour message could not be delivered.\n\n--B\n"
        "Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
        f"Final-Recipient: rfc822; {recipient}\nAction: {action}\nStatus: {status}\n"
        f"Diagnostic-Code: smtp; {diagnostic}\n\n--B--\n"
    ).encode()


@pytest.mark.parametrize("action", ["failure", "Failed (permanent failure)", "FAILED"])
def test_an_oddly_worded_action_still_counts(action: str) -> None:
    report = read_report(_dsn(action, "5.0.0", "550 User unknown"))
    assert [(n.kind, n.bounce, n.reason) for n in report.notices] == [(NoticeKind.BOUNCE, HARD, "userunknown")]


def test_delays_and_successes_are_reported_but_ask_nothing() -> None:
    delayed = read_report(_dsn("delayed", "4.2.2", "452 Mailbox full"))
    assert delayed.notices == () and not delayed.problem
    assert classification(delayed) == [
        {"kind": "delay", "recipient": "reader@example.org", "status": "4.2.2", "reason": ""}
    ]


def test_a_dsn_that_names_no_recipient_falls_back_to_flufl_bounce() -> None:
    # Yahoo's non-standard text inside a multipart/report whose delivery-status part names nobody.
    text = (FIXTURES / "provider-exchange-flufl.eml").read_bytes()
    data = text.replace(b"Content-Type: message/rfc822\n", b"Content-Type: message/delivery-status\n\n")
    report = read_report(data)
    assert report.format == "flufl"
    assert [(n.recipient, n.bounce) for n in report.notices] == [("userx@example.COM", HARD)]


ARF_FIELDS = (
    "Feedback-Type: abuse\nUser-Agent: SomeGenerator/1.0\nVersion: 1\n"
    "Original-Mail-From: <bounces+x@example.org>\nOriginal-Rcpt-To: <reader@example.net>\n"
)


def test_arf_is_found_inside_a_multipart_mixed_wrapper_and_as_text_plain() -> None:
    wrapped = (
        "From: abuse@example.net\nTo: bounces@example.org\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="M"\n\n'
        "--M\nContent-Type: text/plain\n\nA complaint, forwarded.\n\n--M\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="R"\n\n--R\n'
        "Content-Type: text/plain\n\nThis is an abuse report.\n\n--R\n"
        f"Content-Type: message/feedback-report\n\n{ARF_FIELDS}\n--R--\n\n--M--\n"
    ).encode()
    plain = (
        "From: fbl@example.net\nTo: bounces@example.org\nSubject: complaint\n\n"
        f"This is an abuse report.\n\n{ARF_FIELDS}"
    ).encode()
    for data in (wrapped, plain):
        report = read_report(data)
        assert report.format == "arf", data
        assert classification(report) == [
            {"kind": "complaint", "recipient": "<reader@example.net>", "status": "", "reason": "abuse"}
        ]


def _ses(notification: dict[str, object], sns: bool = False) -> bytes:
    body = json.dumps(notification)
    if sns:
        body = json.dumps({"Type": "Notification", "MessageId": "1", "Message": body})
    return f"From: no-reply@sns.amazonaws.com\nTo: bounces@example.org\nSubject: AWS Notification\n\n{body}\n".encode()


def test_amazon_ses_notifications_by_mail_are_read_as_what_they_say() -> None:
    permanent = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": "gone@example.net",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
        },
    }
    transient = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Transient",
            "bounceSubType": "MailboxFull",
            "bouncedRecipients": [{"emailAddress": "full@example.net", "status": "5.2.2"}],
        },
    }
    complaint = {"notificationType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": "c@x.net"}]}}
    delivery = {"notificationType": "Delivery", "delivery": {"recipients": ["ok@example.net"]}}
    rows = [
        classification(read_report(_ses(n, sns=i % 2 == 1)))[0]
        for i, n in enumerate((permanent, transient, complaint, delivery))
    ]
    assert [(r["kind"], r["recipient"], r["reason"]) for r in rows] == [
        ("hard", "gone@example.net", "userunknown"),
        ("soft", "full@example.net", "mailboxfull"),
        ("complaint", "c@x.net", "abuse"),
        ("delivered", "ok@example.net", ""),
    ]
    assert read_report(_ses(delivery)).notices == ()  # a delivery asks nothing of the importer


def dry_run(
    ws: Workspace | None, *args: str, data: bytes = b"", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "digest", "bounces", "import", "--dry-run", *args],
        cwd=cwd or (ws.root if ws else None),
        env=ws.env if ws else None,
        input=data,
        capture_output=True,
        timeout=300,
        check=False,
    )
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), result.stderr.decode())


def test_dry_run_json_names_each_message_and_escapes_outside_text(tmp_path: Path) -> None:
    hostile = _dsn("failed", "5.0.0", "550 User unknown \x1b[31mred\x1b[0m", recipient="a\x1b]0;x\x07@example.org")
    result = dry_run(None, "--json", "-", data=hostile, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    row = json.loads(result.stdout)
    assert row["name"] == "-" and row["kind"] == "hard" and row["status"] == "5.0.0" and row["reason"] == "userunknown"
    assert list(tmp_path.iterdir()) == []  # nothing written: no state store, no lock

    mbox = dry_run(None, "--json", str(FIXTURES / "postfix-mailbox.mbox"), cwd=tmp_path)
    assert [json.loads(line) for line in mbox.stdout.splitlines()] == [
        {
            "name": "1",
            "kind": "hard",
            "recipient": "nosuchuser@digest.test",
            "status": "5.1.1",
            "reason": "userunknown",
        },
        {
            "name": "2",
            "kind": "hard",
            "recipient": "nobody-here@digest.test",
            "status": "5.1.1",
            "reason": "userunknown",
        },
    ]


def test_dry_run_over_flufl_bounces_own_corpus_agrees_with_its_expected_answers(tmp_path: Path) -> None:
    expected = json.loads((FIXTURES / "flufl" / "expected.json").read_text())
    result = dry_run(None, "--json", str(FIXTURES / "flufl"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    got: dict[str, dict[str, str]] = {}
    for line in result.stdout.splitlines():
        row = json.loads(line)
        got.setdefault(row["name"], {})[row["recipient"].lower()] = row["kind"]
    agree = []
    for name, want in expected.items():
        kinds = {"delay", "soft"} if want["temporary"] else {"hard", "soft"}
        agree.append(all(got.get(name, {}).get(a.lower()) in kinds for a in want["addresses"]))
    assert sum(agree) / len(agree) >= 0.95, [n for n, ok in zip(expected, agree, strict=True) if not ok]
    # Where the text plainly says why, the reason is read.
    assert got["simple_45.txt"]["subscriber@earthlink.net"] == "soft"  # "User account is overquota"
    assert got["dsn_01.txt"]["userx@example.com"] == "soft"  # Status: 5.0.0 (recipient reached disk quota)
    assert got["microsoft_01.txt"]["userx@example.com"] == "hard"  # "Unknown Recipient"
