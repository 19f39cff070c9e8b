"""The benchmark script must keep running (issue 5): `benchmarks/run.py --quick` end to end, no timing asserts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = (
    "1 first publish",
    "2 no-op render",
    "3 new week",
    "4 rebuild",
    "5 ",
    "5m Postfix: digest send",
    "6 huge word",
    "7 backlog",
    "8 ",
    "9 postgresql: ",
    "H vs Hugo",
    "w serve: digest vs http.server",
    "s signups",
)


@pytest.mark.slow
@pytest.mark.bench
def test_quick_benchmarks_run_and_report_every_scenario() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=1200,  # a fresh machine first installs postfix, nginx, wrk and hugo (Debian) for scenarios 5m, w, s, H
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout.splitlines()
    for scenario in SCENARIOS:
        assert any(line.startswith(scenario) for line in table), f"no row for {scenario!r}:\n{result.stdout}"
    assert "CRASHED" not in result.stdout


@pytest.mark.bench
def test_the_first_publish_timeline_reports_each_phase(tmp_path: Path) -> None:
    """benchmarks/first_publish_timeline.py wraps private names of digest: it must fail, not mismeasure, when they
    change, and it must keep running while they do not."""
    script = REPO / "benchmarks" / "first_publish_timeline.py"
    result = subprocess.run(
        [sys.executable, str(script), "--entries", "5000", "--runs", "1", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    phases = ("start", "window", "tail", "main cpu in window", "issue 1 here (in window)", "workers cpu")
    for phase in phases:
        assert f"\n  {phase} " in result.stdout, result.stdout
    assert "this process was busy" in result.stdout and "caps a first import at" in result.stdout
