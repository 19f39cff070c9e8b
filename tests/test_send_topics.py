"""Per-subscriber topics through the real path (issue 10): `digest send` to an SMTP server gives a subscriber who
chose topics only their papers, and one whose topics have no paper this week no mail but a ledger row, never
undone by a later send."""

from __future__ import annotations

import re
import sqlite3

import lxml.html

from digest.store import Store
from tests import test_send_cli
from tests.conftest import Workspace
from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401  (fixture)
from tests.test_send_cli import add_subscribers, ledger

mail_ws = test_send_cli.mail_ws  # the fixture: issue 1 (the 23 sample papers) rendered, SMTP at `smtp_server`


def choose_topics(ws: Workspace, choices: dict[str, list[str]]) -> None:
    with Store.open(ws.state) as store, store.transaction():
        for address, slugs in choices.items():
            sub = store.subscriber(address)
            assert sub is not None
            store.set_subscriber_topics(sub.id, slugs)


def papers_in(html: str) -> list[str]:
    return [h.xpath("string(a)") for h in lxml.html.fromstring(html).xpath("//h3")]


def test_readers_get_the_papers_of_their_topics_or_no_mail(mail_ws: Workspace, smtp_server: MailServer) -> None:
    everything, robotics, other, both = add_subscribers(mail_ws, 4)
    # In the sample, one paper is about robotics, one about agents, none falls to the fallback topic "other".
    choose_topics(mail_ws, {robotics: ["robotics"], other: ["other"], both: ["agents", "robotics", "gone"]})

    result = mail_ws.run("send")
    assert "3 sent" in result.stdout and "1 not mailed (no paper in their topics)" in result.stdout
    assert sorted(smtp_server.recipients()) == sorted([everything, robotics, both])

    def html_and_text(address: str) -> tuple[str, str]:
        [received] = smtp_server.to(address)
        text, html = (part.get_content() for part in received.message.iter_parts())
        assert not re.search(r"%%(?:UNSUBSCRIBE|PREFERENCES)-[0-9a-f]+%%", text + html), "every marker filled in"
        assert "/preferences/" in html and "/unsubscribe?token=" in html
        return html, text

    full_html, _ = html_and_text(everything)
    assert len(papers_in(full_html)) == 23
    robotics_html, robotics_text = html_and_text(robotics)
    assert papers_in(robotics_html) == ["RACER: 丰富的语言引导故障恢复策略"]
    assert "只含你选择的主题：机器人与具身智能" in robotics_html and "1 / 23 篇论文" in robotics_text
    both_html, _ = html_and_text(both)
    assert papers_in(both_html) == [
        "RACER: 丰富的语言引导故障恢复策略",
        "ShowUI: 一个用于GUI视觉智能体的视觉-语言-动作模型",
    ]

    rows = ledger(mail_ws)
    assert rows[other] == ("skipped", "skipped: no paper in your topics")
    assert {rows[a][0] for a in (everything, robotics, both)} == {"sent"}

    # A later send mails nobody: the skipped reader keeps their one row, and the others got theirs.
    again = mail_ws.run("send")
    assert "0 sent" in again.stdout and "4 skipped" in again.stdout
    assert len(smtp_server.received) == 3 and ledger(mail_ws) == rows
    with sqlite3.connect(mail_ws.state) as db:
        assert db.execute("SELECT COUNT(*) FROM deliveries WHERE issue = 1").fetchone()[0] == 4
    status = mail_ws.run("status").stdout
    assert "3 sent" in status and "1 skipped" in status


def test_a_dry_run_writes_only_the_mails_that_would_go_out(mail_ws: Workspace, smtp_server: MailServer) -> None:
    everything, other = add_subscribers(mail_ws, 2)
    choose_topics(mail_ws, {other: ["other"]})
    out = mail_ws.root / "dry"
    mail_ws.run("send", "--dry-run", str(out))
    assert [p.name.split("-", 3)[-1] for p in sorted(out.iterdir())] == [f"{everything}.eml"]
    assert ledger(mail_ws) == {} and smtp_server.received == []
