"""CI (`.ci/run`) fails when any step fails: installing, ruff, ruff format, mypy --strict, pytest, and pytest finding
no tests. The script runs for real in a copy of the repository layout, with stand-in tools on PATH that log their
command line and exit with the code a test asks for. The quick developer command leaves out the benchmark, CI does not.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

# What each tool is called with, in the order CI must call them: the linters before the tests.
STEPS = [
    "python3 -m venv .venv",
    "pip install -q -r requirements.lock",
    "pip install -q --no-deps -e .",
    "ruff check digest tests benchmarks",
    "ruff format --check digest tests benchmarks",
    "mypy --strict digest",
    "pytest",
]

STAND_IN = """#!/usr/bin/env bash
# Log this call, then fail if it is the step the test asks to fail.
call="$(basename "$0") $*"
echo "${call% }" >> "$CI_LOG"
case "$call" in "$FAIL_STEP"*) exit "$FAIL_CODE";; esac
if [ "$call" = "python3 -m venv .venv" ]; then
    mkdir -p .venv/bin
    for tool in pip ruff mypy pytest; do cp "$0" ".venv/bin/$tool"; done
fi
"""


def run_ci(tmp_path: Path, fail_step: str = "", fail_code: int = 0) -> tuple[int, list[str]]:
    """Run a copy of .ci/run with the stand-in tools; its exit code and the tool calls it made."""
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy2(REPO / ".ci" / "run", repo / ".ci" / "run")
    tools = tmp_path / "bin"
    tools.mkdir()
    python3 = tools / "python3"
    python3.write_text(STAND_IN, encoding="utf-8")
    python3.chmod(python3.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.log"
    log.touch()
    env = {
        **os.environ,
        "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}",
        "CI_LOG": str(log),
        "FAIL_STEP": fail_step or "no step fails",
        "FAIL_CODE": str(fail_code),
    }
    result = subprocess.run(
        ["bash", str(repo / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    return result.returncode, log.read_text(encoding="utf-8").splitlines()


def test_ci_runs_every_step_in_order_and_passes_when_they_pass(tmp_path: Path) -> None:
    code, calls = run_ci(tmp_path)
    assert calls == STEPS
    assert code == 0


STEP_IDS = ["venv", "pip-lock", "pip-digest", "ruff-check", "ruff-format", "mypy", "pytest"]


@pytest.mark.parametrize("step", STEPS, ids=STEP_IDS)
def test_ci_fails_and_stops_at_a_failing_step(tmp_path: Path, step: str) -> None:
    code, calls = run_ci(tmp_path, fail_step=step, fail_code=1)
    assert code != 0, f"CI passed although `{step}` failed"
    assert calls == STEPS[: STEPS.index(step) + 1], "the steps after a failing one must not run"


def test_ci_fails_when_pytest_collects_no_tests(tmp_path: Path) -> None:
    code, calls = run_ci(tmp_path, fail_step="pytest", fail_code=5)  # pytest's exit 5: no tests were collected
    assert calls == STEPS
    assert code != 0


def test_ci_runs_every_test_marker_included() -> None:
    """CI's pytest selects nothing away: no -m on its command line nor in pytest's addopts."""
    ci_command = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()[-1]
    assert ci_command.endswith("&& .venv/bin/pytest")
    addopts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    assert "-m" not in addopts["addopts"].split()


def collect(marker_expression: str, path: str) -> subprocess.CompletedProcess[str]:
    options = ["--collect-only", "-q", "-p", "no:cacheprovider", "-m", marker_expression]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *options, path],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_bench_marker_leaves_out_the_benchmark_smoke_test() -> None:
    assert collect("bench", "tests/test_benchmarks.py").returncode == 0
    assert collect("not bench", "tests/test_benchmarks.py").returncode == 5  # nothing left to collect


def test_the_documented_quick_command_leaves_out_slow_tests_and_benchmarks() -> None:
    development = (REPO / "docs" / "development.md").read_text(encoding="utf-8")
    expression = re.findall(r'pytest -m "([^"]+)"', development)[0]
    assert collect(expression, "tests/test_benchmarks.py").returncode == 5
    assert " deselected" in collect(expression, "tests/test_signup_browser.py").stdout  # the browser tests are slow
    quick = collect(expression, "tests/test_cli_help.py")
    assert quick.returncode == 0, quick.stdout + quick.stderr
