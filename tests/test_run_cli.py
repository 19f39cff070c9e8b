"""`digest run` end to end: real scheduler processes (a schedule in seconds), a real SMTP server, the state file.

What a maintainer relies on: one issue per schedule slot however many processes fire or restart; each subscriber
gets each issue once; a missed run is caught up once (within misfire_grace_time) and never more; a stop finishes the
message in flight and leaves a consistent ledger; nothing stale is mailed late.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import Workspace
from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401 (the smtp_server fixture)

pytestmark = pytest.mark.slow
PERIOD = 2  # seconds between slots
READERS = ("ada@example.org", "grace@example.org")


@pytest.fixture
def run_ws(workspace: Workspace, smtp_server: MailServer) -> Workspace:
    """A workspace with two subscribers, SMTP pointing at the test server and a schedule every PERIOD seconds."""
    workspace.env.update(
        {
            "DIGEST_SCHEDULE": f"*/{PERIOD} * * * * *",
            "DIGEST_MISFIRE_GRACE_TIME": "3600",
            "DIGEST_SMTP__HOST": "127.0.0.1",
            "DIGEST_SMTP__PORT": str(smtp_server.port),
            "DIGEST_SMTP__SECURITY": "none",
            "DIGEST_SMTP__TIMEOUT": "5",
            "DIGEST_FROM_ADDRESS": "Digest <digest@example.org>",
            "DIGEST_MAX_MESSAGES_PER_SECOND": "1000",
            "DIGEST_SEND_RETRY_DELAY": "0.05",
        }
    )
    for address in READERS:
        workspace.run("subscribers", "add", address)
    return workspace


class Runner:
    """A `digest run` process whose log goes to a file that the test can read while it runs."""

    def __init__(self, ws: Workspace, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.log_path = ws.root / f"{name}.log"
        self.started = datetime.now().astimezone()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "digest", "run", *args],
                cwd=ws.root,
                env={**ws.env, **(env or {})},
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def scheduled_runs(self) -> list[datetime]:
        """The fire times APScheduler ran the job for, from its 'Running job ... (scheduled at ...)' lines."""
        return [datetime.fromisoformat(m) for m in re.findall(r"Running job .*\(scheduled at ([^)]+)\)", self.log)]

    def resumed(self) -> datetime:
        """When the scheduler started processing jobs (a run scheduled before that is a catch-up)."""
        match = re.search(r"^(\S+ \S+) INFO apscheduler.scheduler: Resumed scheduler job processing", self.log, re.M)
        assert match, self.log
        return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").astimezone()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def runners() -> Iterator[list[Runner]]:
    started: list[Runner] = []
    yield started
    for runner in started:
        runner.kill()


def wait_for(condition: Callable[[], bool], timeout: float, what: str, logs: list[Runner] = ()) -> None:  # type: ignore[assignment]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    detail = "\n".join(f"--- {r.log_path.name}:\n{r.log[-3000:]}" for r in logs)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{detail}")


def issues(ws: Workspace) -> list[tuple[int, str | None, int]]:
    """(number, slot, entry count) of every issue."""
    if not ws.has_state():
        return []
    return ws.sql(  # type: ignore[return-value]
        "SELECT i.number, i.slot, COUNT(ie.entry_id) FROM issues i LEFT JOIN issue_entries ie"
        " ON ie.issue = i.number GROUP BY i.number ORDER BY i.number"
    )


def ledger(ws: Workspace) -> list[tuple[int, str, str]]:
    return ws.sql(  # type: ignore[return-value]
        "SELECT d.issue, s.email, d.status FROM deliveries d JOIN subscribers s ON s.id = d.subscriber"
    )


def copies(server: MailServer) -> dict[tuple[str, str], int]:
    """(recipient, Message-ID) -> how many times it arrived."""
    counts: dict[tuple[str, str], int] = {}
    for received in list(server.received):
        for rcpt in received.rcpt_tos:
            key = (rcpt.lower(), str(received.message["Message-ID"]))
            counts[key] = counts.get(key, 0) + 1
    return counts


def add_papers(ws: Workspace, name: str, first_id: int, count: int) -> None:
    """A new seed file with `count` papers never seen before."""
    blocks = [
        f"## Paper number {n}\n[论文 {n}](https://arxiv.org/abs/2501.{n:05d})\n\n第 {n} 篇论文的摘要。\n"
        for n in range(first_id, first_id + count)
    ]
    draft = ws.root / name  # written outside seeds/, then renamed in: a firing never sees half a file
    draft.write_text("\n".join(blocks), encoding="utf-8")
    draft.replace(ws.seeds / name)


def every_reader_got(server: MailServer, issues_each: int) -> bool:
    counts = server.recipients()
    return all(counts[r] == issues_each for r in READERS)


def assert_no_duplicates(server: MailServer) -> None:
    doubled = {k: n for k, n in copies(server).items() if n > 1}
    assert not doubled, f"mailed more than once: {doubled}"


@pytest.mark.both_states
def test_one_issue_per_slot_as_seed_files_appear(run_ws: Workspace, smtp_server: MailServer, runners: list[Runner]):
    runner = Runner(run_ws, "run")
    runners.append(runner)
    wait_for(lambda: len(issues(run_ws)) == 1 and every_reader_got(smtp_server, 1), 15, "issue 1 mailed", runners)
    # a slot with nothing new publishes nothing and sends nothing, and says so
    wait_for(lambda: "nothing new: no issue published" in runner.log, 3 * PERIOD + 2, "an empty slot", runners)
    assert len(issues(run_ws)) == 1
    assert every_reader_got(smtp_server, 1)

    add_papers(run_ws, "100_new.md", 1, 3)
    wait_for(lambda: len(issues(run_ws)) == 2 and every_reader_got(smtp_server, 2), 3 * PERIOD + 5, "issue 2", runners)
    time.sleep(PERIOD + 0.5)  # one more slot: still two issues, no third copy
    assert runner.stop() == 0
    log = runner.log

    rows = issues(run_ws)
    assert [(n, count) for n, _, count in rows] == [(1, 23), (2, 3)]
    slots = [datetime.fromisoformat(slot) for _, slot, _ in rows if slot]
    assert len(slots) == 2 and slots[0] < slots[1]
    assert all(s.second % PERIOD == 0 and s.microsecond == 0 for s in slots)  # a slot is a fire time of the schedule
    assert every_reader_got(smtp_server, 2)
    assert_no_duplicates(smtp_server)
    assert sorted(status for _, _, status in ledger(run_ws)) == ["sent"] * 4
    # each firing logs slot, issue, entries, counts, next run
    assert re.search(r"slot .*; published issue 2 with 3 papers; issue 2 mail: 2 sent, 0 failed.*; next run ", log)
    assert "SIGTERM received" in log and "scheduler stopped" in log


@pytest.mark.both_states
def test_two_schedulers_on_one_state_make_one_issue_per_slot(
    run_ws: Workspace,
    smtp_server: MailServer,
    runners: list[Runner],
) -> None:
    first, second = Runner(run_ws, "first"), Runner(run_ws, "second")
    runners += [first, second]
    wait_for(lambda: len(issues(run_ws)) == 1 and every_reader_got(smtp_server, 1), 15, "issue 1 mailed", runners)
    add_papers(run_ws, "100_new.md", 1, 2)
    wait_for(lambda: len(issues(run_ws)) == 2 and every_reader_got(smtp_server, 2), 3 * PERIOD + 5, "issue 2", runners)
    # a manual `run --once` for the slot that both schedulers just handled is a no-op
    once = run_ws.run("run", "--once")
    assert "published issue" not in once.stderr
    time.sleep(2 * PERIOD)
    assert first.stop() == 0 and second.stop() == 0

    assert [(n, c) for n, _, c in issues(run_ws)] == [(1, 23), (2, 2)]
    assert every_reader_got(smtp_server, 2)
    assert_no_duplicates(smtp_server)
    assert len(smtp_server.received) == 4
    assert first.scheduled_runs() and second.scheduled_runs()  # both schedulers really fired
    logs = first.log + second.log
    assert logs.count("published issue 1 ") == 1 and logs.count("published issue 2 ") == 1


@pytest.mark.both_states
def test_kill_9_then_restart_catches_up_once(run_ws: Workspace, smtp_server: MailServer, runners: list[Runner]) -> None:
    runner = Runner(run_ws, "run1")
    runners.append(runner)
    wait_for(lambda: len(issues(run_ws)) == 1 and every_reader_got(smtp_server, 1), 15, "issue 1 mailed", runners)
    runner.proc.send_signal(signal.SIGKILL)
    runner.proc.wait(timeout=10)

    add_papers(run_ws, "100_new.md", 1, 2)
    time.sleep(2.5 * PERIOD)  # at least two slots missed while nothing runs
    restarted = Runner(run_ws, "run2")
    runners.append(restarted)
    wait_for(lambda: len(issues(run_ws)) == 2 and every_reader_got(smtp_server, 2), 10, "the catch-up", runners)
    time.sleep(PERIOD + 0.5)
    assert restarted.stop() == 0
    # A restart right at a slot boundary coalesces the catch-up with the slot that falls due as jobs resume (in
    # CI: decided at :15.996, resumed at :16.000, one run for the :16 slot): still one run, for the latest slot.
    boundary = restarted.resumed() + timedelta(milliseconds=50)
    caught_up = [t for t in restarted.scheduled_runs() if t <= boundary]
    assert len(caught_up) == 1, restarted.log  # coalesced: several missed slots, one run
    assert "catching up once now" in restarted.log
    # Published for the latest missed slot, or a later one: `fire` takes the latest slot at or before the moment
    # the run starts, and in CI (PostgreSQL, loaded) the catch-up scheduled for :06 started after :08 and published
    # for :08. Never for an older missed slot, and only once.
    published = datetime.fromisoformat(str(issues(run_ws)[1][1]))
    assert caught_up[0] <= published <= datetime.now(UTC)
    assert published.second % PERIOD == 0 and published.microsecond == 0
    assert [(n, c) for n, _, c in issues(run_ws)] == [(1, 23), (2, 2)]
    assert_no_duplicates(smtp_server)


def test_a_run_missed_for_longer_than_the_grace_time_is_not_caught_up(
    run_ws: Workspace, smtp_server: MailServer, runners: list[Runner]
) -> None:
    period = 8  # a gap wide enough to restart between "grace time passed" and "next slot", even on a busy machine
    run_ws.env.update({"DIGEST_SCHEDULE": f"*/{period} * * * * *", "DIGEST_MISFIRE_GRACE_TIME": "1"})
    runner = Runner(run_ws, "run1")
    runners.append(runner)
    wait_for(lambda: len(issues(run_ws)) == 1 and every_reader_got(smtp_server, 1), 15, "issue 1 mailed", runners)
    runner.proc.send_signal(signal.SIGKILL)
    runner.proc.wait(timeout=10)
    add_papers(run_ws, "100_new.md", 1, 2)

    # restart 1.3 s after a missed slot: the scheduler is up about 2 s after it (past the 1 s grace), before the next
    time.sleep(period)
    time.sleep((1.3 - time.time() % period) % period)
    late = Runner(run_ws, "run2")
    runners.append(late)
    wait_for(lambda: len(issues(run_ws)) == 2 and every_reader_got(smtp_server, 2), 20, "issue 2", runners)
    assert late.stop() == 0
    assert not [t for t in late.scheduled_runs() if t < late.resumed()], late.log
    assert "older than misfire_grace_time" in late.log and "was missed by" in late.log
    assert [(n, c) for n, _, c in issues(run_ws)] == [(1, 23), (2, 2)]  # the backlog went into the regular issue
    assert_no_duplicates(smtp_server)


@pytest.mark.both_states
def test_sigterm_during_a_send_leaves_a_consistent_ledger_and_the_next_firing_finishes(
    run_ws: Workspace,
    smtp_server: MailServer,
    runners: list[Runner],
) -> None:
    people = run_ws.root / "people.csv"
    people.write_text("".join(f"reader{i}@example.org\n" for i in range(30)), encoding="utf-8")
    run_ws.run("subscribers", "import", str(people))
    smtp_server.delay = 0.1
    runner = Runner(run_ws, "run", env={"DIGEST_SMTP_CONNECTIONS": "1"})
    runners.append(runner)
    wait_for(lambda: len(smtp_server.received) >= 3, 15, "the send to start", runners)
    assert runner.stop() == 0
    assert "(stopped early)" in runner.log and "scheduler stopped" in runner.log

    rows = ledger(run_ws)
    statuses = [status for _, _, status in rows]
    assert "pending" not in statuses and set(statuses) == {"sent"}
    assert 3 <= len(rows) < 32
    assert len(smtp_server.received) == len(rows)  # everything that went out is recorded, nothing more
    assert_no_duplicates(smtp_server)

    smtp_server.delay = 0
    run_ws.run("run", "--once")  # the next firing (a later slot, nothing new) finishes the fresh issue
    assert len(issues(run_ws)) == 1
    assert len(smtp_server.received) == 32
    assert set(smtp_server.recipients().values()) == {1}
    assert_no_duplicates(smtp_server)
    assert sorted(set(status for _, _, status in ledger(run_ws))) == ["sent"]


@pytest.mark.both_states
def test_once_is_idempotent_per_slot_and_stale_issues_are_not_mailed(
    workspace: Workspace,
    smtp_server: MailServer,
) -> None:
    ws = workspace
    ws.env.update(
        {
            "DIGEST_SCHEDULE": "0 8 * * 1",  # crontab: Mondays 08:00 (Asia/Shanghai in the workspace)
            "DIGEST_SMTP__HOST": "127.0.0.1",
            "DIGEST_SMTP__PORT": str(smtp_server.port),
            "DIGEST_SMTP__SECURITY": "none",
        }
    )
    monday = "2024-09-23T08:00"  # a Monday
    first = ws.run("run", "--once", "--now", f"{monday}:30+08:00")
    assert "published issue 1 with 23 papers" in first.stderr and "no active subscribers" in first.stderr
    assert issues(ws) == [(1, "2024-09-23T00:00:00+00:00", 23)]  # crontab 1 = Monday, 08:00 Shanghai
    for address in READERS:
        ws.run("subscribers", "add", address)

    # Friday, same slot: the issue is 4 days old, past max_send_age (3 days): not mailed by the scheduler
    friday = ws.run("run", "--once", "--now", "2024-09-27T09:00:00+08:00")
    assert "already published for this slot" in friday.stderr
    assert "older than max_send_age" in friday.stderr and "digest send --issue 1" in friday.stderr
    assert smtp_server.received == []
    status = ws.run("status").stdout
    assert "issue 1 not mailed: 2 active subscribers" in status and "digest send --issue 1" in status
    assert "next scheduled run:" in status

    # the same slot again while the issue is fresh: mailed once; later firings for the slot do nothing more
    add_papers(ws, "100_new.md", 1, 2)
    for hour in ("09", "10"):
        again = ws.run("run", "--once", "--now", f"2024-09-23T{hour}:00:00+08:00")
        assert "already published for this slot" in again.stderr
    assert every_reader_got(smtp_server, 1) and len(smtp_server.received) == 2
    assert len(issues(ws)) == 1  # the new papers wait for the next slot

    nxt = ws.run("run", "--once", "--now", "2024-09-30T08:00:00+08:00")
    assert "published issue 2 with 2 papers" in nxt.stderr
    assert [slot for _, slot, _ in issues(ws)] == ["2024-09-23T00:00:00+00:00", "2024-09-30T00:00:00+00:00"]
    assert every_reader_got(smtp_server, 2)
    assert_no_duplicates(smtp_server)


def test_bad_schedule_is_one_line_and_exit_78(workspace: Workspace) -> None:
    workspace.env["DIGEST_SCHEDULE"] = "0 8 * * 8"
    for args in (["run"], ["run", "--once"]):
        result = workspace.run(*args, check=False)
        assert result.returncode == 78
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("digest: error: schedule '0 8 * * 8'"), result.stderr
    assert issues(workspace) == []


def test_without_a_secret_key_the_issue_is_published_but_not_mailed_and_the_daemon_refuses_to_start(
    run_ws: Workspace, smtp_server: MailServer
) -> None:
    del run_ws.env["DIGEST_SECRET_KEY"]
    once = run_ws.run("run", "--once", check=False)
    assert once.returncode == 1
    assert "published issue 1 with 23 papers" in once.stderr and "issue 1 not mailed" in once.stderr
    assert (run_ws.site / "issues" / "1" / "email.html").is_file()
    assert smtp_server.received == []
    daemon = run_ws.run("run", check=False, timeout=30)
    assert daemon.returncode == 78 and "DIGEST_SECRET_KEY" in daemon.stderr
