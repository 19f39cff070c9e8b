"""`digest status` as data: the report is built from the state and a `now` passed in (no clock read), and the CLI
words it."""

from __future__ import annotations

from datetime import datetime

import pytest

from digest.settings import load_settings
from digest.status import LateIssue, status_report
from digest.store import Store
from tests.conftest import Workspace

MONDAY = datetime.fromisoformat("2024-09-23T08:00:30+08:00")  # a scheduled slot: crontab "0 8 * * 1"


@pytest.mark.both_states
def test_a_late_issue_is_judged_by_the_now_passed_in(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = workspace
    ws.env["DIGEST_SCHEDULE"] = "0 8 * * 1"
    ws.run("run", "--once", "--now", MONDAY.isoformat())
    for address in ("ada@example.org", "grace@example.org"):
        ws.run("subscribers", "add", address)
    for name, value in ws.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(ws.root)
    settings = load_settings()

    with Store.open(ws.state_location) as store:
        fresh = status_report(store, settings, "here", MONDAY.replace(hour=9))
        friday = status_report(store, settings, "here", MONDAY.replace(day=27))

    assert (fresh.issues, fresh.last_issue, fresh.state, fresh.late) == (1, 1, "here", None)
    assert friday.late == LateIssue(issue=1, missing=2, max_send_age=settings.max_send_age)
    assert friday.deliveries is None and friday.rates == ()  # nothing mailed yet


def test_the_cli_words_the_report(workspace: Workspace) -> None:
    ws = workspace
    ws.env["DIGEST_SCHEDULE"] = "0 8 * * 1"
    ws.run("run", "--once", "--now", MONDAY.isoformat())
    ws.run("subscribers", "add", "ada@example.org")
    out = ws.run("status").stdout  # today is years after the issue: too old for the scheduler
    assert "issues: 1; last: issue 1 published 2024-09-23 08:00 CST" in out
    assert (
        "issue 1 not mailed: 1 active subscriber has not had it and it is older than max_send_age (259200s), so"
        " `digest run` will not mail it; it stays on the site and in the feeds; send it by hand with"
        " `digest send --issue 1`"
    ) in out
