"""`digest check` finds what would break a render or a scheduled run first (templates, schedule, state), each as
one line naming the file and line; template errors met while rendering are that same one line, not a traceback."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from tests.conftest import REPO, Workspace


def user_template(workspace: Workspace, name: str, old: str, new: str) -> str:
    """Copy a shipped template into the workspace's templates/ with `old` replaced by `new`; its path as shown."""
    folder = workspace.root / "templates"
    folder.mkdir(exist_ok=True)
    text = (REPO / "templates" / name).read_text(encoding="utf-8")
    assert old in text
    (folder / name).write_text(text.replace(old, new, 1), encoding="utf-8")
    line = text[: text.index(old)].count("\n") + 1
    return f"templates/{name}:{line}"


def only_error(stderr: str) -> str:
    """The one line on stderr (`render` says `digest: error: `; `check` lists problems as it lists seed problems)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0].removeprefix("digest: error: ")


@pytest.mark.parametrize("command", ["render", "check"])
def test_a_template_syntax_error_is_one_line_with_file_and_line(workspace: Workspace, command: str) -> None:
    where = user_template(workspace, "issue.html.j2", "<h1>{{ title }}</h1>", "<h1>{{ title }</h1>")
    result = workspace.run(command, check=False)
    assert result.returncode == 1
    assert only_error(result.stderr) == f"{where}: unexpected '}}'"
    assert command == "render" or not workspace.has_state()


@pytest.mark.parametrize("command", ["render", "check"])
def test_an_undefined_variable_in_the_email_template_is_one_line_with_file_and_line(
    workspace: Workspace, command: str
) -> None:
    template = (REPO / "templates" / "issue.mjml.j2").read_text(encoding="utf-8")
    old = next(line for line in template.splitlines() if "{{ title }}" in line)
    where = user_template(workspace, "issue.mjml.j2", old, old.replace("{{ title }}", "{{ titel }}"))
    result = workspace.run(command, check=False)
    assert result.returncode == 1
    assert only_error(result.stderr) == f"{where}: 'titel' is undefined"
    assert command == "render" or not workspace.has_state()


def test_an_error_inside_an_imported_macro_names_the_macro_s_file_and_line(workspace: Workspace) -> None:
    where = user_template(workspace, "_macros.html.j2", "{{ entry.title_zh }}", "{{ entry.title_zh / 2 }}")
    result = workspace.run("render", check=False)
    assert result.returncode == 1
    assert only_error(result.stderr) == f"{where}: TypeError: unsupported operand type(s) for /: 'str' and 'int'"


def test_an_mjml_error_names_the_template(workspace: Workspace) -> None:
    user_template(workspace, "issue.mjml.j2", "</mj-body>", "<mj-section></mj-body>")
    result = workspace.run("check", check=False)
    assert result.returncode == 1
    assert "template issue.mjml.j2: MJML could not compile" in only_error(result.stderr)


def test_check_passes_with_the_shipped_templates_and_creates_no_state(workspace: Workspace) -> None:
    result = workspace.run("check")
    assert "templates OK" in result.stdout and result.stderr == ""
    assert not workspace.has_state() and not (workspace.root / "state").exists()


def test_check_reports_a_bad_schedule_in_one_line(workspace: Workspace) -> None:
    workspace.env["DIGEST_SCHEDULE"] = "0 8 * * 8"
    result = workspace.run("check", check=False)
    assert result.returncode == 1
    assert only_error(result.stderr).startswith("schedule '0 8 * * 8': day-of-week '8': '8' is not a day")
    assert "schedule '0 8 * * 8' BROKEN" in result.stdout


def test_check_reports_a_corrupt_state_in_one_line_and_leaves_it_alone(workspace: Workspace) -> None:
    workspace.state.parent.mkdir()
    workspace.state.write_bytes(b"this is not a database, it is a text file\n" * 100)
    before = workspace.state.read_bytes()
    result = workspace.run("check", check=False)
    assert result.returncode == 1
    assert only_error(result.stderr) == "state/digest.db: cannot read the state: file is not a database"
    assert workspace.state.read_bytes() == before


def test_check_reads_a_good_state_without_writing_it(workspace: Workspace) -> None:
    workspace.run("render")
    before = workspace.state.read_bytes()
    assert "templates OK; schedule '0 8 * * mon' OK; state state/digest.db\n" in workspace.run("check").stdout
    assert workspace.state.read_bytes() == before


def test_check_reports_a_state_from_a_newer_digest(workspace: Workspace) -> None:
    workspace.run("render")
    with sqlite3.connect(workspace.state) as db:
        db.execute("PRAGMA user_version = 999")
    result = workspace.run("check", check=False)
    assert result.returncode == 1
    assert only_error(result.stderr) == (
        "state/digest.db: state was written by a newer digest (schema 999); upgrade digest"
    )


def test_templates_copied_by_init_pass_check(workspace: Workspace) -> None:
    shutil.copytree(REPO / "templates", workspace.root / "templates")
    assert workspace.run("check").returncode == 0


def test_a_scheduled_firing_logs_a_template_error_as_one_line(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from digest.schedule import run_job

    where = user_template(workspace, "issue.html.j2", "<h1>{{ title }}</h1>", "<h1>{{ titel }}</h1>")
    monkeypatch.chdir(workspace.root)
    for name, value in workspace.env.items():
        if name.startswith("DIGEST_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("DIGEST_SCHEDULE", "* * * * *")
    with caplog.at_level("ERROR", logger="digest"):
        run_job()  # what `digest run` calls at each firing
    assert [r.getMessage() for r in caplog.records] == [f"firing failed: {where}: 'titel' is undefined"]
    assert all(r.exc_info is None for r in caplog.records)


@pytest.mark.both_states
def test_check_reads_the_state_of_either_backend(workspace: Workspace) -> None:
    fresh = workspace.run("check")
    assert fresh.returncode == 0 and fresh.stderr == ""
    workspace.run("render")
    issues = workspace.sql("SELECT COUNT(*) FROM issues")
    checked = workspace.run("check")
    assert checked.stderr == "" and "state " in checked.stdout
    assert workspace.sql("SELECT COUNT(*) FROM issues") == issues


def test_check_reports_an_unreachable_postgresql_state_in_one_line(workspace: Workspace) -> None:
    workspace.env["DIGEST_STATE_URL"] = "postgresql://digest@127.0.0.1:1/digest"  # port 1: nothing listens
    result = workspace.run("check", check=False)
    assert result.returncode == 1
    assert only_error(result.stderr).startswith("state postgresql://digest@127.0.0.1:1/digest: cannot be read: ")
