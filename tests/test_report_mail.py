"""The editor's report after a mailing, end to end: `digest send` and `digest run` as subprocesses, a real SMTP server
(aiosmtpd), the state file.

What an editor relies on: when a mailing ends, each editor address gets exactly one short report with the ledger's
counts, the bounces, the subscribers gained and lost and the status page attached; never a second one for the same
mailing, whatever is killed or run again; no editor_address, no report and nothing recorded.
"""

from __future__ import annotations

import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from lxml import html as lxml_html

from tests.conftest import Workspace
from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401  (the smtp_server fixture)
from tests.test_run_cli import PERIOD, READERS, Runner, add_papers, issues, run_ws, runners, wait_for  # noqa: F401

EDITORS = ("ed@example.org", "chief@example.org")
ARTIFACTS = Path(__file__).resolve().parent / ".artifacts"


@pytest.fixture
def mail_ws(workspace: Workspace, smtp_server: MailServer) -> Workspace:
    """Issue 1 rendered, SMTP pointing at the test server, two editor addresses."""
    workspace.env.update(
        {
            "DIGEST_SMTP__HOST": "127.0.0.1",
            "DIGEST_SMTP__PORT": str(smtp_server.port),
            "DIGEST_SMTP__SECURITY": "none",
            "DIGEST_SMTP__TIMEOUT": "5",
            "DIGEST_FROM_ADDRESS": "Digest <digest@example.org>",
            "DIGEST_SEND_RETRIES": "0",
            "DIGEST_MAX_MESSAGES_PER_SECOND": "1000",
            "DIGEST_EDITOR_ADDRESS": "Ed@Example.org, chief@example.org",
        }
    )
    workspace.run("render", "--now", "2024-09-23T08:00:00+08:00")
    return workspace


def add_readers(ws: Workspace, count: int) -> list[str]:
    addresses = [f"reader{i}@example.org" for i in range(count)]
    csv = ws.root / "people.csv"
    csv.write_text("email\n" + "".join(f"{a}\n" for a in addresses), encoding="utf-8")
    ws.run("subscribers", "import", str(csv))
    return addresses


def reports(server: MailServer, editor: str) -> list[EmailMessage]:
    """The reports the editor got (not the previews `digest run` also mails them before each slot)."""
    return [r.message for r in server.to(editor) if not str(r.message["Subject"]).startswith("[Preview]")]


def body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def report_lines(text: str) -> list[tuple[str, str]]:
    """(label, value) of each `label: value` line of the report's text."""
    found = []
    for line in text.splitlines()[2:]:
        label, colon, value = line.partition(": ")
        if colon:
            found.append((label.rstrip(":").strip(), value.strip()))
    return found


def report_states(ws: Workspace) -> dict[str, str]:
    rows = ws.sql("SELECT key, value FROM meta WHERE substr(key, 1, 14) = 'editor_report:'")
    return {key: value.split(" ")[0] for key, value in rows}


@pytest.mark.both_states
def test_send_mails_each_editor_one_report_with_the_ledgers_counts(mail_ws: Workspace, smtp_server: MailServer):
    readers = add_readers(mail_ws, 4)
    smtp_server.reject.add(readers[3])  # 550 5.1.1: a hard bounce at once
    mail_ws.run("subscribers", "add", "gone@example.org")
    mail_ws.run("subscribers", "remove", "gone@example.org")

    mail_ws.run("send")

    for editor in EDITORS:
        got = reports(smtp_server, editor)
        assert len(got) == 1, f"{editor} got {len(got)} reports"
        message = got[0]
        assert message["Subject"] == "AI 论文周报: issue 1 mailed: 3 sent, 1 failed, 0 deferred, 0 unknown"
        assert message["Auto-Submitted"] == "auto-generated"
        text = body(message)
        lines = dict(report_lines(text))
        assert lines["sent"] == "3" and lines["failed"] == "1" and lines["deferred"] == "0"
        assert lines["unknown"] == "0"
        assert lines["bounces so far"].startswith("1 hard (25.00%), 0 soft")
        assert lines["complaints so far"] == "0 (0.00%)"
        assert lines["subscribers since the start"] == "+5 joined, 2 left; 3 active now"  # one left, one bounced
        assert lines["the issue"] == "https://digest.example.org/issues/1/"
        page = next(p for p in message.iter_attachments() if p.get_filename() == "status.html")
        tree = lxml_html.fromstring(page.get_content())
        assert tree.xpath("//svg") and not tree.xpath("//script")
    # the readers got the issue, and only the issue
    assert all(len(smtp_server.to(r)) == 1 for r in readers[:3])

    again = mail_ws.run("send")  # nothing due: the mailing has ended, its report is out
    assert "0 sent" in again.stdout
    assert all(len(reports(smtp_server, e)) == 1 for e in EDITORS)
    status = mail_ws.run("status").stdout
    assert "report of issue 1 to Ed@example.org: sent " in status  # the address as normalized (domain lower-cased)
    assert report_states(mail_ws) == {
        "editor_report:1": "reported",
        "editor_report:1:Ed@example.org": "sent",
        "editor_report:1:chief@example.org": "sent",
    }


def test_no_editor_address_no_report_and_nothing_recorded(mail_ws: Workspace, smtp_server: MailServer):
    mail_ws.env["DIGEST_EDITOR_ADDRESS"] = ""
    readers = add_readers(mail_ws, 2)
    mail_ws.run("send")
    assert sorted(smtp_server.recipients()) == sorted(readers)
    assert report_states(mail_ws) == {}


def test_a_test_copy_and_a_dry_run_are_not_mailings(mail_ws: Workspace, smtp_server: MailServer):
    add_readers(mail_ws, 2)
    mail_ws.run("send", "--to", "me@example.org")
    mail_ws.run("send", "--dry-run", str(mail_ws.root / "eml"))
    assert set(smtp_server.recipients()) == {"me@example.org"}
    assert report_states(mail_ws) == {}


@pytest.mark.slow
def test_kill_9_during_the_send_then_a_restart_gives_one_report(mail_ws: Workspace, smtp_server: MailServer):
    readers = add_readers(mail_ws, 40)
    smtp_server.delay = 0.02
    proc = mail_ws.popen("send")
    while len(smtp_server.received) < 10 and proc.poll() is None:
        time.sleep(0.002)
    assert proc.poll() is None, "the send ended before the kill"
    proc.kill()
    proc.communicate()
    assert all(not reports(smtp_server, e) for e in EDITORS)  # the mailing had not ended: no report yet
    assert report_states(mail_ws) == {}

    smtp_server.delay = 0
    mail_ws.run("send")
    mail_ws.run("send")  # and once more: nothing new

    got = smtp_server.recipients()
    unknown_rows = mail_ws.sql(
        "SELECT s.email FROM deliveries d JOIN subscribers s ON s.id = d.subscriber WHERE d.status = 'unknown'"
    )
    assert set(readers) - set(got) <= {email for (email,) in unknown_rows}  # only those in flight at the kill
    for editor in EDITORS:
        assert len(reports(smtp_server, editor)) == 1
    text = body(reports(smtp_server, EDITORS[0])[0])
    lines = dict(report_lines(text))
    sent, unknown = int(lines["sent"]), int(lines["unknown"].split()[0])
    # At most the messages in flight at the kill: two per connection (each claims its next message ahead; see
    # docs/mailing.md), and the send uses two connections.
    assert sent + unknown == 40 and unknown <= 4


def test_a_report_whose_outcome_is_unknown_after_a_kill_is_not_sent_again(mail_ws: Workspace, smtp_server: MailServer):
    mail_ws.env["DIGEST_EDITOR_ADDRESS"] = EDITORS[0]
    add_readers(mail_ws, 1)
    smtp_server.delay = 3  # every message sits in DATA for 3 s: long enough to kill the report's
    proc = mail_ws.popen("send")
    deadline = time.monotonic() + 30
    while report_states(mail_ws).get(f"editor_report:1:{EDITORS[0]}") != "claimed":
        assert proc.poll() is None and time.monotonic() < deadline, "the report was never claimed"
        time.sleep(0.02)
    proc.kill()
    proc.communicate()

    smtp_server.delay = 0
    again = mail_ws.run("send")
    assert f"report of issue 1 to {EDITORS[0]}: outcome unknown" in again.stderr
    mail_ws.run("send")
    assert len(reports(smtp_server, EDITORS[0])) <= 1  # the killed one may have arrived; never a second one
    assert report_states(mail_ws)[f"editor_report:1:{EDITORS[0]}"] == "unknown"
    status = mail_ws.run("status").stdout
    assert f"report of issue 1 to {EDITORS[0]}: unknown " in status and "not sent again" in status


def test_a_deferred_report_goes_out_with_the_next_send_once(mail_ws: Workspace, smtp_server: MailServer):
    readers = add_readers(mail_ws, 2)
    smtp_server.reject_with[EDITORS[0]] = "451 4.3.2 try again later"
    first = mail_ws.run("send")
    assert "report of issue 1 to Ed@example.org: deferred" in first.stderr
    assert not reports(smtp_server, EDITORS[0]) and len(reports(smtp_server, EDITORS[1])) == 1
    assert report_states(mail_ws)["editor_report:1"] == "ended"  # still due

    smtp_server.reject_with.clear()
    mail_ws.run("send")
    mail_ws.run("send")
    assert len(reports(smtp_server, EDITORS[0])) == 1 and len(reports(smtp_server, EDITORS[1])) == 1
    assert all(len(smtp_server.to(r)) == 1 for r in readers)
    assert report_states(mail_ws)["editor_report:1"] == "reported"


@pytest.mark.slow
def test_the_scheduler_sends_one_report_per_mailing(
    run_ws: Workspace,  # noqa: F811 (test_run_cli's fixture)
    smtp_server: MailServer,
    runners: list[Runner],  # noqa: F811 (test_run_cli's fixture)
) -> None:
    run_ws.env["DIGEST_EDITOR_ADDRESS"] = EDITORS[0]
    runner = Runner(run_ws, "run")
    runners.append(runner)
    editor = EDITORS[0]

    def mailed(count: int) -> bool:
        return all(smtp_server.recipients()[r] == count for r in READERS) and len(reports(smtp_server, editor)) == count

    wait_for(lambda: len(issues(run_ws)) == 1 and mailed(1), 20, "issue 1 and its report", runners)
    wait_for(lambda: "nothing new: no issue published" in runner.log, 3 * PERIOD + 2, "an empty slot", runners)
    add_papers(run_ws, "100_new.md", 1, 3)
    wait_for(lambda: len(issues(run_ws)) == 2 and mailed(2), 3 * PERIOD + 8, "issue 2 and its report", runners)
    time.sleep(2 * PERIOD + 0.5)  # more slots: no third report
    assert runner.stop() == 0

    subjects = [m["Subject"] for m in reports(smtp_server, editor)]
    assert subjects == [
        "AI 论文周报: issue 1 mailed: 2 sent, 0 failed, 0 deferred, 0 unknown",
        "AI 论文周报: issue 2 mailed: 2 sent, 0 failed, 0 deferred, 0 unknown",
    ]


@pytest.mark.slow
def test_the_report_reads_on_a_phone(mail_ws: Workspace, smtp_server: MailServer, tmp_path: Path) -> None:
    from tests.browser_util import measure_page

    add_readers(mail_ws, 3)
    mail_ws.run("send")
    message = reports(smtp_server, EDITORS[1])[0]
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    page = tmp_path / "report.html"
    page.write_text(str(part.get_content()), encoding="utf-8")
    assert not lxml_html.fromstring(page.read_text(encoding="utf-8")).xpath("//script | //img | //link")
    for width in (375, 800):
        shot = ARTIFACTS / f"report-mail-{width}.png"
        assert measure_page(page, width, shot, height=600) <= width, f"the report scrolls sideways at {width}px"


def test_editor_address_is_checked_like_a_subscribers(mail_ws: Workspace, smtp_server: MailServer) -> None:
    add_readers(mail_ws, 1)
    for bad in ("ed@example.org, nobody", "ed@example.org\r\nBcc: all@example.net", "=?utf-8?q?x?=@example.org"):
        mail_ws.env["DIGEST_EDITOR_ADDRESS"] = bad
        refused = mail_ws.run("send", check=False)
        assert refused.returncode == 78 and "Traceback" not in refused.stderr
        assert "DIGEST_EDITOR_ADDRESS (environment): editor_address:" in refused.stderr
    assert smtp_server.received == []
