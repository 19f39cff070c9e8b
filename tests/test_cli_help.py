"""Every command documents itself: `--help` works and shows a description, for every command and subcommand."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from digest.cli import COMMAND_MODULES, main


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = [prefix]
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # as --help lists them: every command module loaded
        command = group.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            found.extend(all_commands(command, (*prefix, name)))
        else:
            found.append((*prefix, name))
    return found


COMMANDS = all_commands(main)


def test_each_command_is_found_in_the_module_the_lazy_table_names() -> None:
    """`digest X` imports only COMMAND_MODULES[X]: a command missing there, or named with the wrong module, would
    not be found (or would load the wrong code)."""
    defined = {name: command.callback.__module__ if command.callback else "" for name, command in main.commands.items()}
    assert sorted(main.commands) == sorted(COMMAND_MODULES)
    assert defined == {name: f"digest.cli.{module}" for name, module in COMMAND_MODULES.items()}


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
