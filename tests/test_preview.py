"""`digest preview` and the scheduler's preview: the editor gets the coming issue exactly as subscribers will, with
a preflight above it, `preview_lead` before each slot, at most once per slot whatever restarts; nothing is recorded.

Real parts throughout: the CLI as a subprocess, a real SQLite state, aiosmtpd as the mail server, `digest run` as a
process on a seconds schedule, and headless Chromium for the look of the mail.
"""

from __future__ import annotations

import re
import sqlite3
import time
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

import lxml.html
import pytest

from digest.tokens import BadToken, Purpose, read_token
from tests.conftest import REPO, Workspace
from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401 (the smtp_server fixture)
from tests.test_run_cli import READERS, Runner, add_papers, issues, wait_for
from tests.test_run_cli import run_ws as run_ws
from tests.test_run_cli import runners as runners

EDITOR = "editor@example.org"
SECRET = "test-secret-key-0123456789abcdef"  # the workspace's DIGEST_SECRET_KEY
ARTIFACTS = REPO / "tests" / ".artifacts"
LAST_MONDAY = "2026-11-30T08:00:05+08:00"  # slots: Mondays 08:00 (the default schedule) in Asia/Shanghai
BEFORE_SLOT = "2026-12-07T03:00:00+08:00"  # five hours before the next slot (preview_lead 6h: the preview is due)
SLOT = "2026-12-07T08:00:00+08:00"


def html_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def text_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def unfolded(page: str) -> str:
    """The HTML with the mailer's folding for 8bit undone (a space or a tag's end became a line break, a long
    run of Chinese got an invisible `<wbr>`): the page as rendered."""
    page = re.sub(r"<wbr\r?\n>", "", page)
    return re.sub(r"\s+>", ">", re.sub(r"[ \t]*\r?\n", " ", page))


def without_preflight(page: str) -> str:
    """The preview's HTML minus its preflight block: what remains must be the subscribers' email."""
    return re.sub(r'<div id="digest-preview-preflight".*?</ul></div>', "", unfolded(page), count=1, flags=re.S)


def snapshot(ws: Workspace) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of the SQLite state."""
    db = sqlite3.connect(f"file:{ws.state}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(db.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}
    finally:
        db.close()


def files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def unsubscribe_token(message: EmailMessage) -> str:
    found = re.search(r"token=([A-Za-z0-9_.-]+)", str(message["List-Unsubscribe"]))
    assert found, message["List-Unsubscribe"]
    return found.group(1)


@pytest.fixture
def week(run_ws: Workspace, smtp_server: MailServer) -> Workspace:
    """Issue 1 published and mailed last Monday; this week two new papers and a draft with a problem wait."""
    ws = run_ws
    ws.env["DIGEST_SCHEDULE"] = "0 8 * * mon"
    ws.env["DIGEST_EDITOR_ADDRESS"] = EDITOR
    ws.run("subscribers", "add", EDITOR)  # the editor reads the digest too: the preview's links must not touch that
    ws.run("run", "--once", "--now", LAST_MONDAY)  # the scheduler's firing of last week's slot: issue 1, mailed
    add_papers(ws, "100_new.md", 1, 2)
    ws.add_seed(
        "200_draft.md",
        "## Drafted Paper\n[草稿论文](https://arxiv.org/abs/2501.09999)\n\nStatus: draft\n"
        "Problem: check the figures\n\n草稿摘要。\n",
    )
    smtp_server.received.clear()
    return ws


def test_preview_mails_the_coming_issue_as_subscribers_will_get_it_and_records_nothing(
    week: Workspace, smtp_server: MailServer
) -> None:
    ws = week
    state_before, site_before = snapshot(ws), files(ws.site)
    said = ws.run("preview", "--to", "Desk@Example.ORG", "--now", BEFORE_SLOT).stdout
    assert "preview of issue 2 (2 papers) mailed to Desk@example.org; nothing recorded" in said
    assert snapshot(ws) == state_before  # no issue number, no paper published, no ledger row, no meta
    assert files(ws.site) == site_before and not (ws.root / "preview").exists()  # no output file
    [mail] = smtp_server.received
    assert mail.rcpt_tos == ["Desk@example.org"] and EDITOR not in mail.rcpt_tos
    preview = mail.message

    # The issue as subscribers get it: published at the slot, then a test copy (links made for no subscriber,
    # like the preview's): the preview's HTML is that email with the preflight block above it, byte for byte.
    ws.run("render", "--now", SLOT)
    ws.run("send", "--to", "Desk@example.org")
    real = smtp_server.received[-1].message
    assert str(preview["Subject"]) == "[Preview] " + str(real["Subject"])
    assert "第 2 期" in str(preview["Subject"])
    assert without_preflight(html_part(preview)) == unfolded(html_part(real))
    assert text_part(preview).endswith(text_part(real))
    doc = lxml.html.fromstring(html_part(preview))
    assert "Paper number 1" in doc.text_content() and "Paper number 2" in doc.text_content()

    preflight = " ".join(" ".join(doc.get_element_by_id("digest-preview-preflight").itertext()).split())
    assert "issue 2 of AI 论文周报, to be mailed at 2026-12-07 08:00 CST" in preflight
    assert "Issue 2 papers: Other 2" in preflight
    assert "Problems (digest check, glossary) none" in preflight
    assert re.search(r"email: [\d,]+ bytes of HTML as sent; Gmail clips above 102,000: fits", preflight)
    assert (
        "Drafts still waiting (not in this issue) seeds/200_draft.md:1: draft: Drafted Paper; problem: check the"
        " figures" in preflight
    )
    assert "Subscribers 3 active subscribers will get it" in preflight
    assert "Last issue mailed (1) deliveries: 3 sent" in preflight
    assert "0 hard-bounced (0.00%)" in preflight
    assert 'digest hold --until 2026-12-14T08:00:00 --reason "why"' in preflight  # this slot held, the next not

    # Its personal links name no subscription: the server reads them as not valid, and the editor stays subscribed.
    with pytest.raises(BadToken):
        read_token(SECRET, Purpose.UNSUBSCRIBE, "https://digest.example.org/unsubscribe", unsubscribe_token(preview),
                   now=datetime.now().astimezone())  # fmt: skip
    statuses = dict(ws.sql("SELECT email, status FROM subscribers"))
    assert statuses[EDITOR] == "active"


def test_preview_goes_to_editor_address_and_says_so_when_nothing_waits(
    week: Workspace, smtp_server: MailServer
) -> None:
    ws = week
    ws.env["DIGEST_EDITOR_ADDRESS"] = f"{EDITOR}, chief@example.org"
    (ws.seeds / "100_new.md").unlink()
    ws.run("preview", "--now", BEFORE_SLOT)
    assert sorted(r for m in smtp_server.received for r in m.rcpt_tos) == ["chief@example.org", EDITOR]
    notice = smtp_server.received[0].message
    assert str(notice["Subject"]) == "[Preview] AI 论文周报: nothing to publish at 2026-12-07 08:00 CST"
    assert "No new paper waits" in text_part(notice) and "check the figures" in text_part(notice)


def test_an_issue_too_large_to_mail_is_previewed_and_the_preflight_says_so(
    run_ws: Workspace, smtp_server: MailServer
) -> None:
    from tests.test_email_fit import sample_papers, seed_text

    run_ws.add_seed("300_many.md", seed_text(sample_papers(60)))  # 83 papers with their abstracts in full: ~200 KB
    run_ws.env.update({"DIGEST_EMAIL_MAX_BYTES": "400000", "DIGEST_EDITOR_ADDRESS": EDITOR})
    run_ws.run("preview", "--now", BEFORE_SLOT)
    [mail] = smtp_server.received
    preflight = text_part(mail.message).split("-" * 72)[0]
    assert "Gmail clips above 102,000: CLIPPED" in preflight
    assert "NOT MAILABLE: the HTML part is" in preflight and "lower email_max_bytes" in preflight
    assert "83 papers" in preflight
    assert issues(run_ws) == []


def test_bad_preview_settings_name_the_setting_and_where_it_came_from(workspace: Workspace) -> None:
    ws = workspace
    missing = ws.run("preview", check=False)
    assert missing.returncode == 78
    assert "editor_address is not set" in missing.stderr
    ws.env["DIGEST_EDITOR_ADDRESS"] = "editor@example.org, not an address"
    bad = ws.run("preview", check=False)
    assert bad.returncode == 78
    assert "DIGEST_EDITOR_ADDRESS (environment): editor_address: invalid address 'not an address'" in bad.stderr
    del ws.env["DIGEST_EDITOR_ADDRESS"]
    (ws.root / "config").mkdir()
    (ws.root / "config" / "digest.toml").write_text('title = "x"\npreview_lead = "six hours"\n', encoding="utf-8")
    lead = ws.run("check", check=False)
    assert lead.returncode == 78
    assert "config/digest.toml:2: preview_lead: not a duration: 'six hours' (use a number and a unit" in lead.stderr


@pytest.mark.both_states
def test_run_once_in_the_lead_mails_the_preview_once_then_publishes_at_the_slot(
    week: Workspace, smtp_server: MailServer
) -> None:
    ws = week
    first = ws.run("run", "--once", "--now", BEFORE_SLOT)  # system cron at slot minus preview_lead
    assert "preview of slot 2026-12-07 08:00:00 CST mailed to editor@example.org: issue 2 (2 papers)" in first.stderr
    again = ws.run("run", "--once", "--now", "2026-12-07T04:00:00+08:00")
    assert "preview of slot 2026-12-07 08:00:00 CST was mailed already: not again" in again.stderr
    early = ws.run("run", "--once", "--now", "2026-12-07T01:00:00+08:00")  # before the lead: no preview
    assert "preview" not in early.stderr
    assert [str(m.message["Subject"])[:10] for m in smtp_server.received] == ["[Preview] "]
    assert [n for n, _, _ in issues(ws)] == [1]  # the preview published nothing
    ws.run("run", "--once", "--now", "2026-12-07T08:00:05+08:00")
    assert [n for n, _, _ in issues(ws)] == [1, 2]
    subjects = [str(m.message["Subject"]) for m in smtp_server.received]
    # The preview, the issue to its 3 subscribers, then the editor's report of the mailing (issue 22's last part).
    assert subjects[0].startswith("[Preview] ") and len(subjects) == 1 + 3 + 1
    assert all("第 2 期" in s and not s.startswith("[Preview]") for s in subjects[1:4])
    assert "issue 2 mailed: 3 sent" in subjects[4]


@pytest.mark.slow
def test_the_scheduler_mails_the_preview_before_the_slot_once_even_after_kill_9(
    run_ws: Workspace, smtp_server: MailServer, runners: list[Runner]
) -> None:
    ws = run_ws
    ws.env.update({"DIGEST_SCHEDULE": "*/30 * * * * *", "DIGEST_PREVIEW_LEAD": "20s", "DIGEST_EDITOR_ADDRESS": EDITOR})
    while not 1 <= time.time() % 30 < 4:  # start just after a slot: the next preview is 10 s away
        time.sleep(0.2)
    first = Runner(ws, "run-1")
    runners.append(first)
    wait_for(lambda: "preview of slot" in first.log, 25, "the preview", runners)
    first.proc.kill()  # kill -9 right after the preview went, inside the lead: the restart finds the preview due
    first.proc.wait(timeout=10)
    [preview] = smtp_server.to(EDITOR)
    assert str(preview.message["Subject"]).startswith("[Preview] AI 论文周报 · 第 1 期")
    assert issues(ws) == [] and len(smtp_server.received) == 1  # before the slot: published nothing, mailed no one
    slot = re.search(r"preview of slot (\S+ \S+ \S+) mailed to editor@example.org: issue 1 \(23 papers\)", first.log)
    assert slot, first.log

    second = Runner(ws, "run-2")
    runners.append(second)
    wait_for(lambda: "was mailed already" in second.log, 15, "the restart to look at the due preview", runners)
    assert f"preview of slot {slot.group(1)} was mailed already: not again" in second.log
    wait_for(lambda: all(smtp_server.to(r) for r in READERS), 30, "the slot's issue", runners)
    # One preview for the slot, and the slot's issue came after it. The editor also gets the report of the
    # mailing (when it is done) and, 10 s after the slot, the next slot's preview: count this slot's previews.
    previews = [m for m in smtp_server.to(EDITOR) if str(m.message["Subject"]).startswith("[Preview] ")]
    assert [str(m.message["Subject"]) for m in previews].count(str(preview.message["Subject"])) == 1
    assert smtp_server.received[0] is preview and issues(ws)[0][0] == 1
    issue_subject = str(smtp_server.to(READERS[0])[0].message["Subject"])
    assert "[Preview] " + issue_subject == str(preview.message["Subject"])


@pytest.mark.slow
def test_a_held_slot_gets_no_preview_and_publishes_nothing(
    run_ws: Workspace, smtp_server: MailServer, runners: list[Runner]
) -> None:
    ws = run_ws
    ws.env.update({"DIGEST_PREVIEW_LEAD": "1s", "DIGEST_EDITOR_ADDRESS": EDITOR})  # slots every 2 s
    ws.run("hold", "--reason", "conference week")
    runner = Runner(ws, "run")
    runners.append(runner)
    wait_for(lambda: runner.log.count("not mailed: the slot is held") >= 2, 15, "two held previews", runners)
    wait_for(lambda: runner.log.count("nothing published or mailed") >= 2, 10, "two held slots", runners)
    assert issues(ws) == [] and smtp_server.received == []
    ws.run("release")

    def previewed() -> bool:  # the editor also gets the mailing's report, which may come first
        return any(str(m.message["Subject"]).startswith("[Preview] ") for m in smtp_server.to(EDITOR))

    wait_for(lambda: previewed() and bool(issues(ws)), 15, "a preview and an issue", runners)


@pytest.mark.slow
def test_the_preview_mail_looks_right_in_a_browser(run_ws: Workspace, smtp_server: MailServer) -> None:
    """The screenshot docs/preview-mail.png is made here (copied from tests/.artifacts/preview-mail.png): the first
    issue of the sample papers, three to an issue, and a draft waiting."""
    from tests.browser_util import measure_page

    run_ws.env.update(
        {"DIGEST_MAX_ENTRIES_PER_ISSUE": "3", "DIGEST_EDITOR_ADDRESS": EDITOR, "DIGEST_SCHEDULE": "0 8 * * mon"}
    )
    run_ws.add_seed("zz_draft.md", "## Drafted Paper\n[](https://arxiv.org/abs/2501.09999)\n\nStatus: draft\n")
    run_ws.run("preview", "--now", BEFORE_SLOT)
    page = ARTIFACTS / "preview-mail.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    markup = html_part(smtp_server.received[0].message)
    page.write_text(markup, encoding="utf-8")
    width = measure_page(page, 640, ARTIFACTS / "preview-mail.png", height=1400)
    assert width <= 640  # nothing overflows sideways in a 640 px mail pane
    preflight = " ".join(lxml.html.fromstring(markup).get_element_by_id("digest-preview-preflight").itertext())
    assert "20 more papers wait for later issues" in preflight
    assert "no Chinese title yet; problem: no Chinese abstract yet" in preflight
