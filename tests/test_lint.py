"""The code base stays clean: ruff (lint and format) and mypy --strict pass, as CI requires."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "digest", "tests", "benchmarks"],
        ["ruff", "format", "--check", "digest", "tests", "benchmarks"],
        ["mypy", "--strict", "digest"],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_tool_passes(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
