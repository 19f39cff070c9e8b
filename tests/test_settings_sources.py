"""A bad setting is one line saying where the value came from (file:line, .env:line or the environment variable);
misspelt keys are refused in every table; settings errors have their own exit code (78), apart from usage (2)."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import typing
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from digest.cli import main
from digest.settings import Settings
from tests.conftest import Workspace

SETTINGS_ERROR = 78  # EX_CONFIG


def error_lines(stderr: str) -> list[str]:
    lines = stderr.strip().splitlines()
    assert all(line.startswith("digest: error: ") for line in lines), stderr
    return [line.removeprefix("digest: error: ") for line in lines]


def write_config(workspace: Workspace, text: str) -> None:
    (workspace.root / "config").mkdir(exist_ok=True)
    (workspace.root / "config" / "digest.toml").write_text(text, encoding="utf-8")


def test_a_misspelt_key_in_the_smtp_table_is_refused_with_its_line(workspace: Workspace) -> None:
    write_config(workspace, 'title = "Weekly"\n\n[smtp]\nhost = "mail.example.org"\nsecurty = "none"\n')
    result = workspace.run("check", check=False)
    assert result.returncode == SETTINGS_ERROR
    assert error_lines(result.stderr) == [
        "config/digest.toml:5: smtp.securty: unknown setting; did you mean 'security'?"
    ]


def test_every_nested_table_refuses_unknown_keys() -> None:
    nested = []
    for field in Settings.model_fields.values():
        for kind in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                nested.append(kind)
    assert {k.__name__ for k in nested} >= {"SmtpSettings", "TopicSetting"}
    for kind in nested:
        assert kind.model_config.get("extra") == "forbid", f"{kind.__name__} accepts misspelt keys silently"


def test_a_bad_value_in_the_file_is_named_by_file_and_line(workspace: Workspace) -> None:
    write_config(
        workspace,
        '# comment\ntitle = "Weekly"\n\n[smtp]\nport = "twenty-five"\n\n[[topics]]\nslug = "ok"\nname_zh = "甲"\n'
        'name_en = "A"\n\n[[topics]]\nslug = "Not A Slug"\nname_zh = "乙"\nname_en = "B"\n',
    )
    result = workspace.run("render", check=False)
    assert result.returncode == SETTINGS_ERROR and "Traceback" not in result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 2, lines
    assert any(line.startswith("config/digest.toml:5: smtp.port: Input should be a valid integer") for line in lines)
    assert any(line.startswith("config/digest.toml:13: topics.1.slug: String should match") for line in lines)


def test_a_bad_value_from_the_environment_names_the_variable(workspace: Workspace) -> None:
    write_config(workspace, "[smtp]\nport = 25\n")
    workspace.env["DIGEST_SMTP__PORT"] = "99999"
    result = workspace.run("check", check=False)
    assert result.returncode == SETTINGS_ERROR
    assert error_lines(result.stderr) == [
        "DIGEST_SMTP__PORT (environment): smtp.port: Input should be less than or equal to 65535"
    ]


def test_a_bad_value_from_the_dot_env_file_names_its_line(workspace: Workspace) -> None:
    (workspace.root / ".env").write_text("# secrets\nDIGEST_TIMEZONE=Mars/Olympus\n", encoding="utf-8")
    del workspace.env["DIGEST_TIMEZONE"]
    result = workspace.run("status", check=False)
    assert result.returncode == SETTINGS_ERROR
    [line] = error_lines(result.stderr)
    assert line.startswith(".env:2: DIGEST_TIMEZONE: timezone: unknown time zone 'Mars/Olympus'")


def test_a_usage_error_keeps_click_s_exit_code_2_and_help_lists_the_codes() -> None:
    assert CliRunner().invoke(main, ["render", "--no-such-option"]).exit_code == 2
    shown = CliRunner().invoke(main, ["--help"]).output
    for code, meaning in (("2", "usage error"), ("75", "another digest process"), ("78", "bad settings")):
        assert re.search(rf"^\s+(Exit codes: )?{code} {meaning}", shown, re.MULTILINE), shown


@pytest.mark.parametrize("source", ["file", "environment"])
def test_bad_settings_exit_78_whatever_their_source(workspace: Workspace, source: str) -> None:
    if source == "file":
        write_config(workspace, "feed_max_items = 0\n")
    else:
        workspace.env["DIGEST_FEED_MAX_ITEMS"] = "0"
    result = workspace.run("render", check=False)
    assert result.returncode == SETTINGS_ERROR, result.stderr
    assert not workspace.has_state()


def test_an_unreadable_dot_env_is_one_line_not_a_traceback(workspace: Workspace) -> None:
    import os
    import shutil

    env_file = workspace.root / ".env"
    env_file.write_text("DIGEST_TITLE=Weekly\n", encoding="utf-8")
    env_file.chmod(0o000)
    command = ["check"]
    if os.geteuid() == 0:  # root reads any file: run digest as nobody, as a service user would be
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop privileges")
        for path in (workspace.root, *workspace.root.rglob("*")):
            if path != env_file:
                path.chmod(path.stat().st_mode | 0o055)  # everything else readable by nobody
        for parent in workspace.root.parents:
            if parent.is_relative_to(Path(tempfile.gettempdir())) and parent != Path(tempfile.gettempdir()):
                parent.chmod(parent.stat().st_mode | 0o001)  # pytest's 0700 temp folders: let nobody through
        setpriv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        result = subprocess.run(
            [*setpriv, sys.executable, "-m", "digest", *command],
            cwd=workspace.root,
            env=workspace.env,
            capture_output=True,
            text=True,
            check=False,
        )
    else:
        result = workspace.run(*command, check=False)
    assert result.returncode == SETTINGS_ERROR, result.stderr
    assert error_lines(result.stderr) == [".env: cannot read: Permission denied"]
