"""What CI installs is what the README says and what pyproject.toml asks for: one test command, and a lock that pins
every dependency at a version past its floor (a dependency added without refreshing the lock fails here)."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO


def locked_versions() -> dict[str, str]:
    text = (REPO / "requirements.lock").read_text(encoding="utf-8")
    return {canonicalize_name(name): version for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)}


def test_ci_runs_the_readme_test_command_which_installs_the_lock() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    command = re.findall(r"```sh\n(.*pytest)\n```", readme)[0]
    assert "-r requirements.lock" in command and "--no-deps -e ." in command
    ci_lines = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command in ci_lines


def test_the_lock_pins_every_dependency_past_its_floor_with_hashes() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["test"]]]
    locked = locked_versions()
    missing = [str(r) for r in wanted if canonicalize_name(r.name) not in locked]
    assert not missing, f"not in requirements.lock (refresh it, see docs/development.md): {missing}"
    too_old = [f"{r} (locked: {v})" for r in wanted if (v := locked[canonicalize_name(r.name)]) not in r.specifier]
    assert not too_old, f"requirements.lock is below these floors (refresh it): {too_old}"
    entries = (REPO / "requirements.lock").read_text(encoding="utf-8").split("==")[1:]
    assert all("--hash=sha256:" in entry for entry in entries), "every pinned package carries its hashes"
