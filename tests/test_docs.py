"""The docs stay true to the code: docs/cli.md is exactly every command's current `--help`."""

from __future__ import annotations

import re
import subprocess
import sys

from click.testing import CliRunner

from digest.cli import main
from digest.clidoc import HELP_WIDTH, REGENERATE
from tests.conftest import REPO
from tests.test_cli_help import COMMANDS

CLI_REFERENCE = REPO / "docs" / "cli.md"


def generated_reference() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "digest.clidoc"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout


def test_cli_reference_is_current() -> None:
    committed = CLI_REFERENCE.read_text(encoding="utf-8")
    assert committed == generated_reference(), f"docs/cli.md is stale: regenerate it with `{REGENERATE}`"


def test_cli_reference_holds_the_help_of_every_command_and_subcommand() -> None:
    reference = generated_reference()
    for command in COMMANDS:
        path = " ".join(("digest", *command))
        assert f"## `{path}`\n" in reference, f"no section for `{path}`"
        help_text = CliRunner().invoke(main, [*command, "--help"], prog_name="digest", terminal_width=HELP_WIDTH).output
        assert help_text.strip() in reference, f"`{path} --help` is not in the reference as it prints"


def documented_exit_codes() -> dict[str, str]:
    """The exit code table of the docs (the `| code | meaning |` table, wherever it lives now)."""
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        if "| code | meaning |" in text:
            table = text.split("| code | meaning |", 1)[1].split("\n\n", 1)[0]
            return dict(re.findall(r"^\| (\d+) \| (.*) \|$", table, re.M))
    raise AssertionError("no exit code table in README.md or docs/")


def test_digest_help_lists_every_documented_exit_code() -> None:
    codes = documented_exit_codes()
    assert {"0", "1", "2", "78"} <= codes.keys()
    help_text = CliRunner().invoke(main, ["--help"], prog_name="digest", terminal_width=HELP_WIDTH).output
    listed = set(re.findall(r"^\s+(?:Exit codes:\s+)?(\d+) ", help_text, re.M))
    assert listed == codes.keys(), f"`digest --help` lists exit codes {sorted(listed)}, the docs {sorted(codes)}"
