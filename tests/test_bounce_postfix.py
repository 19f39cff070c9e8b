"""Real bounces, made by a real Postfix (tests/fixtures/bounces/postfix/make.py: Debian's Postfix 3.7 relaying to a
local server that refuses), classified by `digest bounces import --dry-run --json` as the reason table says; and
the public baunsu corpus (npm package `baunsu`, MIT) fetched through npm at test time, compared with its own
expected answers."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from digest.bounces.reports import read_report
from digest.bounces.verp import read_verp_id
from tests.test_bounce_classify import dry_run

POSTFIX = Path(__file__).parent / "fixtures" / "bounces" / "postfix"
SECRET = "test-secret-key-0123456789abcdef"

#: file -> (kind, recipient, status, reason, subscriber id in its VERP return path). What the remote said:
#: `550 User unknown` and `552 Requested mail action aborted: mailbox full`, both without an enhanced status code
#: (Postfix reports Status: 5.0.0: the words must decide); the third domain does not exist (Postfix: 5.4.4).
CASES = {
    "550-user-unknown.eml": ("hard", "gone@users.digest.test", "5.0.0", "userunknown", 1),
    "552-mailbox-full.eml": ("soft", "full@users.digest.test", "5.0.0", "mailboxfull", 2),
    "host-unknown.eml": ("hard", "someone@nohost.invalid", "5.4.4", "hostunknown", 3),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_postfix_dsns_are_classified_by_their_words(name: str, tmp_path: Path) -> None:
    kind, recipient, status, reason, subscriber = CASES[name]
    result = dry_run(None, "--json", str(POSTFIX / name), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"name": name, "kind": kind, "recipient": recipient, "status": status, "reason": reason}
    ]
    # Each came back to its VERP return path: the import would find the delivery.
    refs = [read_verp_id(SECRET, v) for v in read_report((POSTFIX / name).read_bytes()).verp_ids]
    assert any(r is not None and (r.issue, r.subscriber_id) == (1, subscriber) for r in refs)
    assert list(tmp_path.iterdir()) == []


def test_the_fixtures_are_postfixs_own_words() -> None:
    """Made by Postfix, not by hand: its headers and its diagnostic text, as the remote server answered."""
    for name, (_, recipient, status, _, _) in CASES.items():
        data = (POSTFIX / name).read_bytes()
        assert b"From: Mail Delivery System <MAILER-DAEMON@digest.test>" in data
        assert b"X-Postfix-Queue-ID: " in data and f"Status: {status}".encode() in data
        assert f"Final-Recipient: rfc822; {recipient}".encode() in data
    assert b"Diagnostic-Code: smtp; 550 User unknown" in (POSTFIX / "550-user-unknown.eml").read_bytes()


#: baunsu's own expected answers, from its tests: every `bounce_*` file is a hard bounce (tests/hardBounceTest.js),
#: `auto_*` an auto-response (tests/autoResponseTest.js), `ordinary_*` no bounce (tests/ordinaryEmailTest.js).
BAUNSU_EXPECTED = {"bounce": "hard", "auto": "auto-reply", "ordinary": "unknown"}
#: Where digest knowingly answers otherwise: sender-side refusals (a blocklist, a spam filter) are soft by the
#: reference reason table (Sisimai: `blocked`, `spamdetected`): the reader's address works.
BAUNSU_SENDER_SIDE = {"bounce_att.txt": "blocked", "bounce_spam.txt": "spamdetected"}


def test_the_baunsu_corpus_through_npm(tmp_path: Path) -> None:
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: the baunsu corpus comes through it")
    packed = subprocess.run(
        ["npm", "pack", "baunsu@0.2.3", "--silent"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert packed.returncode == 0, packed.stderr
    with tarfile.open(tmp_path / packed.stdout.strip().splitlines()[-1]) as tar:
        tar.extractall(tmp_path, filter="data")
    package = tmp_path / "package"
    assert json.loads((package / "package.json").read_text())["license"] == "MIT"
    emails = package / "tests" / "emails"
    result = dry_run(None, "--json", str(emails), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    got = {row["name"]: row for row in map(json.loads, result.stdout.splitlines())}
    # encoded_spam.txt is in no test of baunsu's: it has no expected answer.
    expected = {
        p.name: BAUNSU_EXPECTED[p.name.split("_")[0]]
        for p in emails.iterdir()
        if p.name.split("_")[0] in BAUNSU_EXPECTED
    }
    agree = {name for name, kind in expected.items() if got[name]["kind"] == kind}
    disagree = {name: (got[name]["kind"], got[name]["reason"]) for name in set(expected) - agree}
    print(f"baunsu 0.2.3 (MIT): {len(agree)} of {len(expected)} agree; otherwise: {disagree}")
    assert disagree == {name: ("soft", reason) for name, reason in BAUNSU_SENDER_SIDE.items()}
