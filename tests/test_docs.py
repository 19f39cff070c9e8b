"""The docs stay true to the code: docs/cli.md is exactly every command's current `--help`; the README is
the door (the two commands, a quick start, maps of the docs and of the code, in step with the tree);
the guides live in docs/.
"""

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


README = REPO / "README.md"
DOCS = REPO / "docs"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def readme() -> str:
    return README.read_text(encoding="utf-8")


def test_readme_is_the_door_the_long_guides_live_in_docs() -> None:
    text = readme()
    headings = re.findall(r"^## (.+)$", text, re.M)
    # One short table of speed next to the peers (issue 19) may stand before the map; the long texts live in docs/.
    assert headings == ["Quick start", "Documentation", "Speed, next to its peers", "Code map"], (
        "long guides go to docs/, linked from the README"
    )
    speed = text.split("## Speed, next to its peers", 1)[1].split("\n## ", 1)[0]
    assert len(speed.strip().splitlines()) <= 15, (
        "the speed section is one short table; the rest is docs/performance.md"
    )
    before_first_heading = text.split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*)\n```", before_first_heading)
    assert len(commands) == 2 and commands[0].endswith("digest render"), "the two commands come first"
    ci_command = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()[-1]
    assert commands[1] == ci_command, "the README's test command is exactly what .ci/run runs"


def test_readme_links_every_guide_and_every_link_resolves() -> None:
    linked = {target for target in LINK.findall(readme()) if target.startswith("docs/")}
    guides = {f"docs/{page.name}" for page in DOCS.glob("*.md")}
    assert guides - linked == set(), "every guide in docs/ is linked from the README"
    for page in [README, *DOCS.glob("*.md")]:
        prose = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
        for target in LINK.findall(prose):
            if "://" not in target and not target.startswith("mailto:"):
                assert (page.parent / target).exists(), f"{page.relative_to(REPO)} links {target}, which is missing"


def code_map() -> dict[str, str]:
    """The README's code map: each path it names, with its description (continuation lines included)."""
    block = readme().split("## Code map", 1)[1].split("```\n", 1)[1].split("```", 1)[0]
    entries: dict[str, str] = {}
    path = ""
    for line in block.splitlines():
        if line.startswith(" "):
            entries[path] += " " + line.strip()
        else:
            path, _, description = line.partition(" ")
            entries[path] = description.strip()
    return entries


def test_code_map_has_one_line_per_module_and_names_only_what_exists() -> None:
    entries = code_map()
    package = REPO / "digest"
    modules = {f"digest/{p.name}" for p in package.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    packages = {f"digest/{p.parent.name}/" for p in package.glob("*/__init__.py")}
    missing = sorted((modules | packages) - entries.keys())
    assert not missing, f"add a line to the README's code map for {missing}"
    gone = sorted(path for path in entries if not (REPO / path).exists())
    assert not gone, f"the README's code map names {gone}, which no longer exist"
    for name in sorted(packages):
        inner = sorted(p.name for p in (REPO / name).glob("*.py") if p.name != "__init__.py")
        unnamed = [module for module in inner if module not in entries[name]]
        assert not unnamed, f"the README's code map line for {name} does not name {unnamed}"
