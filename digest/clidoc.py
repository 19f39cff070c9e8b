"""The CLI reference, docs/cli.md, generated from every command's `--help`: `python -m digest.clidoc > docs/cli.md`.

tests/test_docs.py fails when the committed file differs from what this prints, so the reference cannot go stale.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import click

from digest.cli import main as digest_cli

# Help is wrapped at this width whatever the terminal, so the generated file is the same on every machine.
HELP_WIDTH = 100
REGENERATE = "python -m digest.clidoc > docs/cli.md"


def command_contexts(command: click.Command, name: str, parent: click.Context | None = None) -> Iterator[click.Context]:
    """A context for the command and then for each of its visible subcommands, depth first, in `--help`'s order."""
    # make_context applies the command's context_settings (help option names, width); it runs no callback.
    ctx = command.make_context(name, [], parent=parent, resilient_parsing=True, terminal_width=HELP_WIDTH)
    yield ctx
    if isinstance(command, click.Group):
        for sub_name in command.list_commands(ctx):
            sub = command.get_command(ctx, sub_name)
            if sub is not None and not sub.hidden:
                yield from command_contexts(sub, sub_name, ctx)


def cli_reference(command: click.Command, name: str = "digest") -> str:
    """docs/cli.md: one section per command and subcommand holding its `--help` text."""
    parts = [
        "# Command-line reference\n",
        "Every command's `--help`, generated from the code by",
        "",
        f"    {REGENERATE}",
        "",
        "Do not edit it by hand: a test fails when it is stale. The other files of docs/ tell how the commands",
        "work together.\n",
    ]
    for ctx in command_contexts(command, name):
        parts.append(f"## `{ctx.command_path}`\n")
        parts.append("```text")
        parts.append(ctx.command.get_help(ctx).rstrip())
        parts.append("```\n")
    return "\n".join(parts)


def main() -> None:
    """Print the reference for `digest` on stdout."""

    sys.stdout.write(cli_reference(digest_cli))


if __name__ == "__main__":
    main()
