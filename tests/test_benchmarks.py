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
    "6 huge word",
    "7 backlog",
    "8 ",
    "9 postgresql: ",
    "H vs Hugo",
    "w serve: digest vs http.server",
)


@pytest.mark.slow
@pytest.mark.bench
def test_quick_benchmarks_run_and_report_every_scenario() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout.splitlines()
    for scenario in SCENARIOS:
        assert any(line.startswith(scenario) for line in table), f"no row for {scenario!r}:\n{result.stdout}"
    assert "CRASHED" not in result.stdout
