"""Moving in from another platform: `digest subscribers import --format substack|mailchimp|buttondown|ghost FILE`
keeps what the export says about each reader (status and consent record: opt-in time and IP, confirmation time,
source import:PLATFORM), skips what must not be imported, and refuses a file of another format as one error. Real
CLI runs on a real state (SQLite and PostgreSQL), on small fixtures shaped like each platform's export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from digest.imports import FORMATS
from tests.conftest import Workspace

FIXTURES = Path(__file__).parent / "fixtures" / "imports"


def records(ws: Workspace) -> dict[str, tuple[str, str, str, str | None, str | None, str]]:
    """email -> (status, source, created, signup_ip, confirmed, source_detail), as the state holds them."""
    rows = ws.sql("SELECT email, status, source, created, signup_ip, confirmed, source_detail FROM subscribers")
    return {r[0]: tuple(r[1:]) for r in rows}  # type: ignore[misc]


def history(ws: Workspace, email: str) -> list[tuple[str | None, str, str]]:
    data = json.loads(ws.run("subscribers", "history", email, "--json").stdout)
    return [(c["from"], c["to"], c["source"]) for c in data["changes"]]


NOW = "2026-12-07T09:00:00+00:00"


@pytest.mark.both_states
def test_mailchimp_keeps_consent_and_its_unsubscribed_and_cleaned_files(workspace: Workspace) -> None:
    for name in ("subscribed", "unsubscribed", "cleaned"):
        path = FIXTURES / f"mailchimp-{name}_members_export.csv"
        result = workspace.run("subscribers", "import", "--format", "mailchimp", str(path), "--now", NOW)
        assert "0 bad rows" in result.stdout, result.stdout
    got = records(workspace)
    assert got["ada@example.org"] == (
        "active",
        "import",
        "2024-03-14T09:12:31+00:00",
        "198.51.100.7",
        "2024-03-14T09:14:00+00:00",
        "mailchimp",
    )
    # No opt-in time in the export: the import's own time, and the confirmation it does record.
    assert got["grace@example.org"][:5] == ("active", "import", NOW, None, "2015-03-16T14:40:47+00:00")
    assert got["left@example.org"][0] == "unsubscribed" and got["gone@example.org"][0] == "bounced"
    assert history(workspace, "gone@example.org") == [(None, "bounced", "import:mailchimp")]
    listing = workspace.run("subscribers", "export").stdout
    assert "ada@example.org,Ada Lovelace,active" in listing
    mine = json.loads(workspace.run("subscribers", "history", "ada@example.org", "--json").stdout)
    assert mine["changes"][0]["at"] == NOW  # the trail says when it came in; the consent record since when


@pytest.mark.both_states
def test_substack_skips_deletion_requests_and_keeps_readers_who_turned_mail_off(workspace: Workspace) -> None:
    path = FIXTURES / "substack-email_list.csv"
    result = workspace.run("subscribers", "import", "--format", "substack", str(path), "--now", NOW, check=False)
    assert result.returncode == 1, "one bad address in the file"
    assert f"{path}:5: skipped: a Substack deletion request" in result.stderr
    assert f"{path}:6: invalid address 'not-an-address'" in result.stderr
    assert "1 skipped" in result.stdout and "2 added" in result.stdout
    got = records(workspace)
    assert set(got) == {"ada@example.org", "grace@example.org", "quiet@example.org"}
    assert got["ada@example.org"] == ("active", "import", "2024-03-14T09:12:31+00:00", None, None, "substack")
    assert got["quiet@example.org"][0] == "unsubscribed"


@pytest.mark.both_states
def test_buttondown_and_ghost(workspace: Workspace) -> None:
    workspace.run("subscribers", "import", "--format", "buttondown", str(FIXTURES / "buttondown-subscribers.csv"))
    got = records(workspace)
    assert "never@example.org" not in got  # never confirmed its signup on Buttondown
    assert got["paid@example.org"][:4] == ("active", "import", "2024-04-01T12:00:00+00:00", "2001:db8::7")
    assert got["left@example.org"][0] == "unsubscribed" and got["bounced@example.org"][0] == "bounced"
    assert got["ada@example.org"][3] == "198.51.100.7" and got["ada@example.org"][5] == "buttondown"

    workspace.run("subscribers", "import", "--format", "ghost", str(FIXTURES / "ghost-members.csv"))
    got = records(workspace)
    assert got["quiet@example.org"][0] == "unsubscribed" and got["quiet@example.org"][5] == "ghost"
    assert got["ada@example.org"][5] == "buttondown", "already subscribed: the first consent record stays"
    assert history(workspace, "quiet@example.org") == [(None, "unsubscribed", "import:ghost")]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_a_file_of_another_format_is_one_error_naming_the_file_and_the_columns(workspace: Workspace, fmt: str) -> None:
    wrong = FIXTURES / ("ghost-members.csv" if fmt != "ghost" else "mailchimp-subscribed_members_export.csv")
    result = workspace.run("subscribers", "import", "--format", fmt, str(wrong), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert str(wrong) in line and f"not a {fmt} export: missing column(s)" in line
    assert not workspace.has_state() or workspace.sql("SELECT COUNT(*) FROM subscribers") == [(0,)]


def test_the_docs_list_every_column_each_format_reads() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "subscribers-import.md").read_text(encoding="utf-8")
    for name, spec in FORMATS.items():
        section = doc.split(f"## {name}", 1)[1].split("\n## ", 1)[0]
        for column in [*spec.required, *(c for group in spec.any_of for c in group)]:
            assert f"`{column}`" in section, (name, column)
