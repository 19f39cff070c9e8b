"""Every command documents itself: `--help` works and shows a description, for every command and subcommand."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from digest.cli import main


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found.extend(all_commands(command, (*prefix, name)))
        else:
            found.append((*prefix, name))
    return found


COMMANDS = all_commands(main)


def test_the_cli_has_the_commands_of_the_issues() -> None:
    names = {" ".join(c) for c in COMMANDS}
    assert {
        "render",
        "rebuild",
        "check",
        "status",
        "send",
        "serve",
        "run",
        "subscribers add",
        "bounces import",
        "migrate-state",
    } <= names


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "digest")
def test_help_describes_the_command(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    description = result.output.split("\n\n")[1].strip()
    assert len(description) > 15, f"`digest {' '.join(command)}` has no real description"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "digest")
def test_help_shows_an_example(command: tuple[str, ...]) -> None:
    """Each --help ends its description with a command line to copy (docs/cli.md is made of these)."""
    result = CliRunner().invoke(main, [*command, "--help"], prog_name="digest")
    examples = [line.strip() for line in result.output.splitlines() if line.strip().startswith("Example:")]
    assert examples, f"`digest {' '.join(command)} --help` has no `Example:` line"
    assert all("digest " in example for example in examples)
