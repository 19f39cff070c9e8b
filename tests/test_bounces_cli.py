"""Bounces end to end: `digest send` to a real SMTP server that refuses one reader with 550 5.1.1 and accepts the
others, a DSN for another reader fed to `digest bounces import -`, then `status` and the next issue's `send`.

What a maintainer relies on: a dead address is mailed once and never again, whether the server says so at once or a
bounce comes back later; the rates show in `status`; importing is idempotent and survives kill -9.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import test_send_cli
from tests.conftest import Workspace
from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401  (fixture)
from tests.test_cli_render import paper
from tests.test_send_cli import add_subscribers, ledger

mail_ws = test_send_cli.mail_ws  # the fixture: issue 1 rendered, SMTP settings pointing at `smtp_server`

FIXTURES = Path(__file__).parent / "fixtures" / "bounces"
POSTFIX_DSN = (FIXTURES / "postfix-5.1.1-verp.eml").read_bytes()
POSTFIX_VERP_ID = b"hu3jbaiochdkoz3ykyksqh6f6so22"


def import_bounces(ws: Workspace, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """`digest bounces import ARGS`, with `data` on standard input (as a Postfix pipe transport hands it over)."""
    result = subprocess.run(
        [sys.executable, "-m", "digest", "bounces", "import", *args],
        cwd=ws.root,
        env=ws.env,
        input=data if data is not None else b"",
        capture_output=True,
        timeout=120,
        check=False,
    )
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), result.stderr.decode())


def dsn_for(envelope_sender: str, message_id: str = "<20261204050425.A1A9816E08F@digest.test>") -> bytes:
    """The real Postfix DSN of the fixtures, as if it had come back to `envelope_sender` (a VERP address)."""
    verp_id = re.fullmatch(r"bounces\+([a-z2-7]+)@example\.org", envelope_sender)
    assert verp_id, envelope_sender
    data = POSTFIX_DSN.replace(POSTFIX_VERP_ID, verp_id.group(1).encode())
    return data.replace(b"<20261204050425.A1A9816E08F@digest.test>", message_id.encode())


def statuses(ws: Workspace) -> dict[str, str]:
    return dict(ws.sql("SELECT email, status FROM subscribers"))


@pytest.mark.both_states
def test_dead_addresses_are_mailed_once_then_never_again(mail_ws: Workspace, smtp_server: MailServer) -> None:
    readers = add_subscribers(mail_ws, 4)
    smtp_server.reject = {"reader1@example.org"}  # 550 5.1.1 at RCPT TO

    first = mail_ws.run("send")
    assert "3 sent, 0 failed" in first.stdout and "1 bounced (suppressed)" in first.stdout
    assert ledger(mail_ws)["reader1@example.org"][0] == "bounced"
    assert "550 5.1.1" in ledger(mail_ws)["reader1@example.org"][1]
    assert statuses(mail_ws)["reader1@example.org"] == "bounced"

    # Every message went out with its own VERP return path, in the bounce mailbox of the From domain.
    senders = {m.rcpt_tos[0]: m.mail_from for m in smtp_server.received}
    assert all(re.fullmatch(r"bounces\+[a-z2-7]{29}@example\.org", s) for s in senders.values())
    assert len(set(senders.values())) == 3
    assert "reader2" not in senders["reader2@example.org"]  # the id is opaque: no address in it

    # Later, reader2's server bounces the message it had accepted: the DSN comes back to the VERP address.
    dsn = dsn_for(senders["reader2@example.org"])
    imported = import_bounces(mail_ws, "-", data=dsn)
    assert imported.returncode == 0, imported.stderr
    assert "hard bounce: reader2@example.org, issue 1: suppressed (5.1.1" in imported.stdout
    assert ledger(mail_ws)["reader2@example.org"][0] == "bounced"
    assert statuses(mail_ws)["reader2@example.org"] == "bounced"
    again = import_bounces(mail_ws, "-", data=dsn)
    assert again.returncode == 0 and "already imported" in again.stdout
    assert "0 reports applied, 1 already imported" in again.stderr

    status = mail_ws.run("status").stdout
    assert "bounces of issue 1: 4 mailed: 2 delivered, 2 hard-bounced (50.00%)" in status
    assert "0 complained (0.00%)" in status
    assert "WARNING" in status and "over max_hard_bounce_rate 1.00%" in status

    # The next issue: refused while issue 1's rate is that high, then sent with --force to the two live readers.
    mail_ws.add_seed("002_new.md", paper("A New Paper", "新论文", "https://arxiv.org/abs/2501.00001"))
    mail_ws.run("render", "--now", "2024-09-30T08:00:00+08:00")
    refused = mail_ws.run("send", check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "not sending: issue 1 hard-bounced 50.00% (2 of 4), over max_hard_bounce_rate 1.00%" in refused.stderr
    assert "--force" in refused.stderr
    assert ledger(mail_ws, 2) == {}
    forced = mail_ws.run("send", "--force")
    assert "2 sent" in forced.stdout
    assert set(ledger(mail_ws, 2)) == {readers[0], readers[3]}
    second_issue = [m for m in smtp_server.received if b"A New Paper" in m.message.as_bytes()]
    assert sorted(r for m in second_issue for r in m.rcpt_tos) == [readers[0], readers[3]]


@pytest.mark.both_states
def test_complaint_unsubscribes_and_counts_in_the_rates(mail_ws: Workspace, smtp_server: MailServer) -> None:
    add_subscribers(mail_ws, 3)
    mail_ws.run("send")
    sender = next(m.mail_from for m in smtp_server.received if m.rcpt_tos == ["reader2@example.org"])
    arf = (FIXTURES / "arf-rfc5965-verp.eml").read_bytes()
    arf = re.sub(rb"bounces\+[a-z2-7]{29}@example\.org", sender.encode(), arf)
    result = import_bounces(mail_ws, "-", data=arf)
    assert result.returncode == 0, result.stderr
    assert "complaint: reader2@example.org, issue 1: unsubscribed (complaint (abuse)" in result.stdout
    assert statuses(mail_ws)["reader2@example.org"] == "complained"
    assert ledger(mail_ws)["reader2@example.org"][0] == "complained"
    status = mail_ws.run("status").stdout
    assert "1 complained (33.33%)" in status and "over max_complaint_rate 0.10%" in status


def test_unreadable_and_unmatched_reports_are_named_and_skipped(mail_ws: Workspace, smtp_server: MailServer) -> None:
    add_subscribers(mail_ws, 2)
    mail_ws.run("send")
    box = mail_ws.root / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True)
    sender = next(m.mail_from for m in smtp_server.received if m.rcpt_tos == ["reader0@example.org"])
    (box / "new" / "1.good").write_bytes(dsn_for(sender))
    (box / "new" / "2.no-verp").write_bytes((FIXTURES / "postfix-5.1.1-no-verp.eml").read_bytes())
    (box / "new" / "3.junk\x1b[31m").write_bytes(b"\x00\xff not a message at all")  # a name that recolours
    verp_id = sender.split("+")[1].split("@")[0]
    forged = dsn_for(sender, "<forged@x>").replace(verp_id.encode(), b"aaaaa" + verp_id[5:].encode())
    (box / "cur" / "4.forged").write_bytes(forged)
    result = import_bounces(mail_ws, str(box))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "1.good: hard bounce: reader0@example.org" in result.stdout
    assert re.search(r"2\.no-verp: unmatched dsn report for nobody-here@digest\.test: no valid VERP id", result.stderr)
    assert "3.junk\\x1b[31m: not a bounce or complaint report" in result.stderr and "\x1b" not in result.stderr
    assert "4.forged: unmatched" in result.stderr
    assert "1 report applied, 0 already imported, 3 skipped" in result.stderr
    assert statuses(mail_ws) == {"reader0@example.org": "bounced", "reader1@example.org": "active"}


def test_mbox_and_single_file_and_missing_path(mail_ws: Workspace) -> None:
    mbox = import_bounces(mail_ws, str(FIXTURES / "postfix-mailbox.mbox"))
    # Both real Postfix bounces are read from the mbox: one names subscriber 2 (there is none), one has no VERP id.
    assert "postfix-mailbox.mbox:1: issue 1: subscriber 2 no longer exists" in mbox.stdout
    assert "postfix-mailbox.mbox:2: unmatched dsn report" in mbox.stderr and mbox.returncode == 1
    missing = import_bounces(mail_ws, str(mail_ws.root / "nope"))
    assert missing.returncode == 1 and "nope: no such file or folder" in missing.stderr
    assert "Traceback" not in missing.stderr + mbox.stderr


@pytest.mark.both_states
def test_soft_bounces_suppress_only_after_a_streak_across_issues(mail_ws: Workspace, smtp_server: MailServer) -> None:
    mail_ws.env["DIGEST_SOFT_BOUNCE_LIMIT"] = "2"
    add_subscribers(mail_ws, 2)
    smtp_server.reject_with = {"reader1@example.org": "552 5.2.2 mailbox full"}
    first = mail_ws.run("send")
    assert "1 sent, 1 failed" in first.stdout
    assert ledger(mail_ws)["reader1@example.org"][0] == "failed"
    assert statuses(mail_ws)["reader1@example.org"] == "active"  # one soft bounce: still mailed
    mail_ws.add_seed("002_new.md", paper("A New Paper", "新论文", "https://arxiv.org/abs/2501.00001"))
    mail_ws.run("render", "--now", "2024-09-30T08:00:00+08:00")
    mail_ws.run("send")
    assert statuses(mail_ws)["reader1@example.org"] == "bounced"  # the second in a row
    assert statuses(mail_ws)["reader0@example.org"] == "active"


@pytest.mark.both_states
def test_kill_9_during_import_loses_nothing_and_counts_nothing_twice(
    mail_ws: Workspace, smtp_server: MailServer
) -> None:
    readers = add_subscribers(mail_ws, 300)
    mail_ws.run("send")
    box = mail_ws.root / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True)
    senders = {m.rcpt_tos[0]: m.mail_from for m in smtp_server.received}
    bouncing = readers[::2]
    for i, address in enumerate(bouncing):
        (box / "new" / f"{i:04d}.eml").write_bytes(dsn_for(senders[address], f"<dsn-{i}@mx.example.net>"))

    kills = 0
    for _ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-m", "digest", "bounces", "import", "-q", str(box)],
            cwd=mail_ws.root,
            env=mail_ws.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        before = len(bounced(mail_ws))
        deadline = time.monotonic() + 30
        while len(bounced(mail_ws)) < before + 10 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if proc.poll() is not None:
            break
        proc.kill()  # SIGKILL, in the middle of the mailbox
        proc.wait()
        kills += 1
    assert kills >= 2, "the import finished before it could be killed twice"
    assert 0 < len(bounced(mail_ws)) <= len(bouncing)  # (a fast import may finish between two kills)

    final = import_bounces(mail_ws, "-q", str(box))
    assert final.returncode == 0, final.stderr
    applied, repeated = map(int, re.search(r"(\d+) reports? applied, (\d+) already imported", final.stderr).groups())  # type: ignore[union-attr]
    assert applied + repeated == len(bouncing) and repeated > 0
    assert bounced(mail_ws) == set(bouncing)
    assert mail_ws.sql("SELECT COUNT(*) FROM bounce_reports") == [(len(bouncing),)]
    assert f"{len(readers)} mailed: {len(readers) - len(bouncing)} delivered, {len(bouncing)} hard-bounced" in (
        mail_ws.run("status").stdout
    )


def bounced(ws: Workspace) -> set[str]:
    return {r[0] for r in ws.sql("SELECT email FROM subscribers WHERE status = 'bounced'")}


def test_sender_hygiene_helo_name_and_feedback_id(mail_ws: Workspace, smtp_server: MailServer) -> None:
    add_subscribers(mail_ws, 1)
    mail_ws.run("send", "--to", "me@example.org")
    assert smtp_server.helo_names and not any(name.startswith("[") for name in smtp_server.helo_names)
    mail_ws.env["DIGEST_SMTP__HELO_NAME"] = "mail.example.org"
    mail_ws.run("send")
    assert smtp_server.helo_names[-1] == "mail.example.org"
    assert smtp_server.to("reader0@example.org")[0].message["Feedback-ID"] == (
        "1:digest.digest.example.org:newsletter:digest"
    )
    mail_ws.env["DIGEST_SMTP__HELO_NAME"] = "[127.0.0.1]"
    bad = mail_ws.run("send", check=False)
    assert bad.returncode == 78 and "smtp.helo_name: not a host name" in bad.stderr
