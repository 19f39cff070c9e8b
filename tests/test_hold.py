"""`digest hold` / `digest release` with the real scheduler on a seconds schedule and a local SMTP server: a held
slot publishes and mails nothing, is logged and shown by status; after the release the next slot publishes the
backlog. The hold lives in the state, so it holds every process that starts later too."""

from __future__ import annotations

import re

import pytest

from tests.conftest import Workspace
from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401 (the smtp_server fixture)
from tests.test_run_cli import READERS, Runner, add_papers, every_reader_got, issues, wait_for

# the run_ws and runners fixtures (an explicit re-export, so pytest finds them here)
from tests.test_run_cli import run_ws as run_ws
from tests.test_run_cli import runners as runners

pytestmark = pytest.mark.slow
HELD = re.compile(r"slot (\S+ \S+ \S+) held \(since .*: conference week\): nothing published or mailed")


@pytest.mark.both_states
def test_a_held_slot_publishes_nothing_and_after_release_the_next_slot_publishes_the_backlog(
    run_ws: Workspace,
    smtp_server: MailServer,
    runners: list[Runner],
) -> None:
    said = run_ws.run("hold", "--reason", "conference week").stdout
    assert "held until `digest release`" in said
    runner = Runner(run_ws, "run")
    runners.append(runner)
    wait_for(lambda: len(HELD.findall(runner.log)) >= 2, 15, "two held slots", runners)
    add_papers(run_ws, "100_new.md", 1, 2)  # papers that arrive during the hold wait too
    wait_for(lambda: len(HELD.findall(runner.log)) >= 3, 10, "a third held slot", runners)
    assert issues(run_ws) == [] and smtp_server.received == []
    status = run_ws.run("status").stdout
    assert re.search(r"^hold: since .* until `digest release`: conference week", status, re.M), status
    skipped = re.search(r"^held slots: (\d+) skipped: ", status, re.M)
    assert skipped and int(skipped.group(1)) >= 3, status

    released = run_ws.run("release").stdout
    assert re.search(r"released: \d+ slots were skipped", released), released
    wait_for(lambda: len(issues(run_ws)) == 1 and every_reader_got(smtp_server, 1), 15, "the backlog issue", runners)
    [(_, slot, papers)] = issues(run_ws)
    assert papers == 23 + 2  # every paper that waited through the hold, in one issue
    held_slots = HELD.findall(runner.log)
    assert slot is not None and not any(slot[11:19] in held for held in held_slots)  # a slot after the release
    assert "hold" not in run_ws.run("status").stdout
    assert len(smtp_server.received) == len(READERS)


def test_a_hold_until_a_date_ends_by_itself_and_survives_restarts(workspace: Workspace) -> None:
    ws = workspace
    ws.env["DIGEST_SCHEDULE"] = "0 8 * * 1"  # Mondays 08:00 (Asia/Shanghai in the workspace)
    ws.run("hold", "--until", "2024-09-30", "--reason", "conference week", "--now", "2024-09-20T12:00:00+08:00")
    held = ws.run("run", "--once", "--now", "2024-09-23T08:00:30+08:00")  # a new process: the hold is in the state
    assert "nothing published or mailed" in held.stderr and issues(ws) == []
    assert "until 2024-09-30 00:00:00 CST" in held.stderr
    after = ws.run("run", "--once", "--now", "2024-09-30T08:00:30+08:00")
    assert "published issue 1 with 23 papers" in after.stderr, after.stderr
    assert "hold" not in ws.run("status").stdout
    assert ws.run("release").stdout.strip() == "not held: nothing to release"


def test_hold_refuses_a_past_or_unreadable_until(workspace: Workspace) -> None:
    past = workspace.run("hold", "--until", "2020-01-01", check=False)
    assert past.returncode == 2 and "already past" in past.stderr
    bad = workspace.run("hold", "--until", "next week", check=False)
    assert bad.returncode == 2 and "not a date or time" in bad.stderr
