"""The state's files on disk: private to their owner whatever the umask (subscriber addresses and the delivery
ledger are in them), and a state folder that cannot be written is one line of error, not a traceback."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Workspace

NOW = "2026-11-23T08:00:00+08:00"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which files are world-readable unless their creator says otherwise (the CLI runs as
    a subprocess and inherits it)."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def test_the_state_is_private_under_umask_022(workspace: Workspace, umask_022: None) -> None:
    workspace.run("render", "--now", NOW)
    folder = workspace.state.parent
    assert mode(folder) == 0o700
    assert mode(workspace.state) == 0o600
    assert mode(folder / "digest.db.lock") == 0o600
    # While a connection is open SQLite keeps -wal and -shm beside the file, with the file's mode.
    with sqlite3.connect(workspace.state) as db:
        db.execute("SELECT count(*) FROM issues").fetchone()
        assert mode(folder / "digest.db-wal") == 0o600
        assert mode(folder / "digest.db-shm") == 0o600
    # The site is public, as before.
    assert mode(workspace.site / "index.html") == 0o644


def test_send_dry_run_files_are_private_under_umask_022(workspace: Workspace, umask_022: None) -> None:
    workspace.run("render", "--now", NOW)
    workspace.run("subscribers", "add", "reader@example.org")
    out = workspace.root / "dry"
    workspace.run("send", "--dry-run", str(out))
    files = list(out.glob("*.eml"))
    assert files and "reader@example.org" in files[0].read_text(encoding="utf-8")
    assert mode(out) == 0o700
    assert all(mode(f) == 0o600 for f in files)


@pytest.mark.parametrize("lock_file", ["present", "missing"])
def test_a_read_only_state_folder_is_one_error_line(workspace: Workspace, lock_file: str) -> None:
    """The folder is made immutable with `chattr +i`: tests run as root, whom a mode of 0555 does not stop."""
    workspace.run("render", "--now", NOW)
    folder = workspace.state.parent
    if lock_file == "missing":
        (folder / "digest.db.lock").unlink()
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not available on this file system: {made.stderr.strip()}")
    try:
        workspace.add_seed("zz_new.md", "## A new paper\n[新论文](https://arxiv.org/abs/2611.00001)\n\nAbstract.\n")
        result = workspace.run("render", "--now", "2026-11-30T08:00:00+08:00", check=False)
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("digest: error: state/digest.db")
    assert "the state folder state/ and the files in it must be writable by this user" in lines[0]
