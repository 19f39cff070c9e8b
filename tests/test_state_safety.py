"""The state and the site stay together: pages follow the settings they were rendered with, a lost or foreign
state never quietly starts over on a published site, backups restore, and read-only commands create nothing."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest

from digest.wording import counted
from tests.conftest import Workspace

NOW = "2026-11-23T08:00:00+08:00"
NEXT_WEEK = "2026-11-30T08:00:00+08:00"
OLD_URL = "https://digest.example.org/"  # the workspace's site_url
NEW_URL = "https://papers.example.net/weekly/"
PAPER = "## A New Paper\n[新论文](https://arxiv.org/abs/2501.00001)\n\n这是一段摘要。We study things.\n"


def files_under(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below `folder` (hidden ones too) with its inode and mtime: a rewrite changes one of them."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            info = path.stat()
            found[path.relative_to(folder).as_posix()] = (info.st_ino, info.st_mtime_ns)
    return found


def files_containing(folder: Path, text: str) -> list[str]:
    needle = text.encode("utf-8")
    return [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def remove_state(ws: Workspace) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{ws.state}{suffix}").unlink(missing_ok=True)


# --- 1. outputs follow their settings ------------------------------------------------------------------


def test_render_after_a_site_url_change_leaves_the_old_url_in_no_file(workspace: Workspace) -> None:
    workspace.run("render", "--now", NOW)
    workspace.add_seed("002_new.md", PAPER)
    workspace.run("render", "--now", NEXT_WEEK)
    assert files_containing(workspace.site, OLD_URL)

    workspace.env["DIGEST_SITE_URL"] = NEW_URL
    result = workspace.run("render", "--now", NEXT_WEEK)

    assert result.stdout.splitlines()[0] == "settings changed (site_url): re-rendering all pages"
    assert files_containing(workspace.site, OLD_URL) == []
    signup = (workspace.site / "index.html").read_text(encoding="utf-8")
    assert f'action="{NEW_URL}subscribe"' in signup  # the signup form posts to the new address
    again = workspace.run("render", "--now", NEXT_WEEK)
    assert "settings changed" not in again.stdout


def test_the_scheduled_run_re_renders_after_a_settings_change_too(workspace: Workspace) -> None:
    workspace.run("render", "--now", NOW)
    workspace.env["DIGEST_SITE_URL"] = NEW_URL

    result = workspace.run("run", "--once", "--now", NEXT_WEEK)

    assert "settings changed (site_url): re-rendering all pages" in result.stderr
    assert files_containing(workspace.site, OLD_URL) == []


def test_render_with_nothing_changed_rewrites_no_file(workspace: Workspace) -> None:
    workspace.run("render", "--now", NOW)
    before = files_under(workspace.site)

    result = workspace.run("render", "--now", NEXT_WEEK)

    assert "settings changed" not in result.stdout + result.stderr
    assert "nothing new" in result.stdout
    assert files_under(workspace.site) == before


def test_an_edited_template_is_picked_up_by_the_next_render(workspace: Workspace) -> None:
    workspace.run("render", "--now", NOW)
    from digest.render import default_templates_dir

    own = workspace.root / "templates"
    own.mkdir()
    shipped = (default_templates_dir() / "issue.html.j2").read_text(encoding="utf-8")
    (own / "issue.html.j2").write_text(shipped.replace("</nav>", "</nav><p>EDITED TEMPLATE</p>"), "utf-8")
    assert "EDITED TEMPLATE" in (own / "issue.html.j2").read_text(encoding="utf-8")

    result = workspace.run("render", "--now", NEXT_WEEK)

    assert "settings changed (templates/issue.html.j2): re-rendering all pages" in result.stdout
    assert "EDITED TEMPLATE" in (workspace.site / "issues" / "1" / "index.html").read_text(encoding="utf-8")


def test_a_re_render_cut_short_is_done_again_by_the_next_render(workspace: Workspace) -> None:
    workspace.run("render", "--now", NOW)
    page = workspace.site / "issues" / "1" / "index.html"
    page.unlink()
    page.mkdir()  # the re-render fails here, as a kill -9 would stop it: after some files, before the end
    workspace.env["DIGEST_SITE_URL"] = NEW_URL

    failed = workspace.run("render", "--now", NEXT_WEEK, check=False)
    assert failed.returncode == 1
    assert "issues/1/index.html: cannot write" in failed.stderr
    recorded = json.loads(workspace.sql("SELECT value FROM meta WHERE key = 'output_settings_of_site'")[0][0])

    page.rmdir()
    result = workspace.run("render", "--now", NEXT_WEEK)

    assert recorded != json.loads(workspace.sql("SELECT value FROM meta WHERE key = 'output_settings_of_site'")[0][0])
    assert "settings changed (site_url): re-rendering all pages" in result.stdout
    assert files_containing(workspace.site, OLD_URL) == []


# --- 2. a lost or foreign state does not start over on a published site ------------------------------------


def test_render_refuses_to_start_a_new_state_over_a_site_whose_state_is_lost(workspace: Workspace) -> None:
    workspace.run("render", "--now", NOW)
    workspace.run("subscribers", "add", "ada@example.org")
    site_state = json.loads((workspace.site / ".digest-state").read_text(encoding="utf-8"))["state_id"]
    remove_state(workspace)
    before = files_under(workspace.site)

    result = workspace.run("render", "--now", NEXT_WEEK, check=False)
    rebuild = workspace.run("rebuild", check=False)

    assert (result.returncode, rebuild.returncode) == (73, 73)
    assert rebuild.stderr == result.stderr
    [line] = result.stderr.splitlines()
    assert site_state in line and "state/digest.db" in line and "site/" in line
    assert "--force" in line and "backup" in line
    assert not workspace.state.exists()  # no new, empty state left behind either
    assert files_under(workspace.site) == before

    forced = workspace.run("render", "--force", "--now", NEXT_WEEK)
    assert "published issue 1 with 23 papers" in forced.stdout
    assert json.loads((workspace.site / ".digest-state").read_text(encoding="utf-8"))["state_id"] != site_state


def test_render_and_rebuild_refuse_a_site_built_from_another_state(workspace: Workspace) -> None:
    workspace.run("render", "--now", NOW)
    [(site_state,)] = workspace.sql("SELECT value FROM meta WHERE key = 'site_uuid'")
    workspace.env["DIGEST_STATE_PATH"] = "state/other.db"
    workspace.run("subscribers", "add", "ada@example.org")  # the other state exists, with its own id
    [(other_state,)] = run_other(workspace, "SELECT value FROM meta WHERE key = 'site_uuid'")
    before = files_under(workspace.site)

    for command in (["render", "--now", NEXT_WEEK], ["rebuild"]):
        result = workspace.run(*command, check=False)
        assert result.returncode == 73, result
        [line] = result.stderr.splitlines()
        assert site_state in line and other_state in line and "state/other.db" in line and "--force" in line
    assert files_under(workspace.site) == before

    workspace.run("rebuild", "--force")
    assert json.loads((workspace.site / ".digest-state").read_text(encoding="utf-8"))["state_id"] == other_state


def run_other(ws: Workspace, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(ws.root / "state" / "other.db") as db:
        return list(db.execute(query).fetchall())


def test_a_site_built_before_the_state_claim_is_recognised_by_its_build_marker(workspace: Workspace) -> None:
    workspace.run("render", "--now", NOW)
    (workspace.site / ".digest-state").unlink()  # as an older digest left it: only .digest-build.json
    remove_state(workspace)

    result = workspace.run("render", "--now", NEXT_WEEK, check=False)

    assert result.returncode == 73
    assert not workspace.state.exists()


# --- 3. backups --------------------------------------------------------------------------------------


def test_a_restored_backup_carries_on_where_it_stopped(workspace: Workspace) -> None:
    workspace.run("render", "--now", NOW)
    workspace.run("subscribers", "add", "ada@example.org")
    backup = workspace.root / "backups" / "digest.db"
    backup.parent.mkdir()

    result = workspace.run("backup", str(backup))

    assert f"to {backup}" in result.stdout
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert [p.name for p in backup.parent.iterdir()] == ["digest.db"]  # no temp file, no -wal beside it
    remove_state(workspace)
    shutil.copyfile(backup, workspace.state)
    before = files_under(workspace.site)
    again = workspace.run("render", "--now", NEXT_WEEK)
    assert "nothing new" in again.stdout
    assert files_under(workspace.site) == before
    assert "ada@example.org" in workspace.run("subscribers", "list").stdout


def test_backup_copies_the_committed_state_while_another_process_holds_a_write_transaction(
    workspace: Workspace,
) -> None:
    workspace.run("render", "--now", NOW)
    writer = sqlite3.connect(workspace.state, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO meta (key, value) VALUES ('uncommitted', 'x')")
        writer.execute("DELETE FROM issue_entries")

        result = workspace.run("backup", "copy.db", timeout=60)
    finally:
        writer.execute("ROLLBACK")
        writer.close()

    assert result.returncode == 0
    with sqlite3.connect(workspace.root / "copy.db") as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("SELECT count(*) FROM meta WHERE key = 'uncommitted'").fetchone() == (0,)
        assert copy.execute("SELECT count(*) FROM issue_entries").fetchone() == (23,)


def test_backup_of_a_postgresql_state_points_to_pg_dump_without_the_password(workspace: Workspace) -> None:
    workspace.env["DIGEST_STATE_URL"] = "postgresql://digest:s3cret-pw@db.example.org:5433/digest"

    result = workspace.run("backup", "digest.dump", check=False)

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "pg_dump" in line and "postgresql://digest@db.example.org:5433/digest" in line
    assert "s3cret-pw" not in result.stdout + result.stderr
    assert not (workspace.root / "digest.dump").exists()


def test_backup_help_has_an_example(workspace: Workspace) -> None:
    assert "Example: digest backup" in workspace.run("backup", "--help").stdout


# --- 4. read-only commands create no state ----------------------------------------------------------------


def test_read_only_commands_create_no_state_in_an_empty_folder(workspace: Workspace) -> None:
    status = workspace.run("status")
    assert status.stdout.startswith("no state yet at state/digest.db")
    listing = workspace.run("subscribers", "list")
    assert "no state yet at state/digest.db" in listing.stderr
    export = workspace.run("subscribers", "export")
    assert export.stdout.startswith("email,name,")
    workspace.run("check")

    assert not (workspace.root / "state").exists()


# --- 5. counts read as English ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "noun", "expected"),
    [
        (1, "issue", "1 issue"),
        (2, "issue", "2 issues"),
        (0, "problem", "0 problems"),
        (1, "entry", "1 entry"),
        (3, "entry", "3 entries"),
        (2, "delivery", "2 deliveries"),
        (5, "day", "5 days"),
        (99_389, "paper", "99,389 papers"),  # a first import of a large backlog reads at a glance
    ],
)
def test_counted(count: int, noun: str, expected: str) -> None:
    assert counted(count, noun) == expected


def test_one_of_a_kind_is_said_in_the_singular(workspace: Workspace) -> None:
    for name in os.listdir(workspace.seeds):
        if not name.startswith("_"):
            os.remove(workspace.seeds / name)
    workspace.add_seed("001.md", PAPER + "\n## Broken One\nno link here\n\n摘要\n")

    check = workspace.run("check", check=False)
    render = workspace.run("render", "--now", NOW, check=False)
    rebuild = workspace.run("rebuild")

    assert "1 valid entry in seeds/, 1 problem; settings OK" in check.stdout
    assert "published issue 1 with 1 paper;" in render.stdout
    assert rebuild.stdout.startswith("rebuilt 1 issue: ")
