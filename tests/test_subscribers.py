"""Keeping the subscriber list: `digest subscribers add/remove/list/import/export`, and the CSV rules behind them."""

from __future__ import annotations

import csv
import io

import pytest

from digest.subscribers import InvalidAddress, normalize_address, parse_subscriber_csv
from tests.conftest import Workspace


def test_addresses_are_checked_for_syntax_only_and_normalized() -> None:
    assert normalize_address(" Ada@Example.ORG ") == "Ada@example.org"
    assert normalize_address("x@bücher.example") == "x@bücher.example"
    for bad in ("", "no-at-sign", "a@b", "a b@example.org", "a@example..org", "用户@example.org"):
        with pytest.raises(InvalidAddress):
            normalize_address(bad)


def test_csv_with_or_without_header_reports_bad_rows_by_line() -> None:
    rows, problems = parse_subscriber_csv("a@example.org\nnot an address,X\n\nb@example.org,Bee\r\n", "in.csv")
    assert [(r.email, r.name, r.line) for r in rows] == [("a@example.org", "", 1), ("b@example.org", "Bee", 4)]
    assert [str(p) for p in problems] == [
        "in.csv:2: invalid address 'not an address': An email address must have an @-sign."
    ]
    rows, problems = parse_subscriber_csv("\ufeffName,Email\nAda,ada@example.org\n", "x.csv")
    assert [(r.email, r.name) for r in rows] == [("ada@example.org", "Ada")] and not problems


def test_add_list_remove_and_case_only_duplicates(workspace: Workspace) -> None:
    assert "added" in workspace.run("subscribers", "add", "Ada@Example.org", "--name", "Ada").stdout
    assert "already subscribed" in workspace.run("subscribers", "add", "ada@example.ORG").stdout
    bad = workspace.run("subscribers", "add", "nope", check=False)
    assert bad.returncode == 1 and "invalid address 'nope'" in bad.stderr
    workspace.run("subscribers", "add", "bob@example.org")
    assert "unsubscribed" in workspace.run("subscribers", "remove", "BOB@example.org").stdout
    listing = workspace.run("subscribers", "list")
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["Ada@example.org", "active", "cli", "Ada"]
    assert lines[1].split()[:2] == ["bob@example.org", "unsubscribed"]
    assert "2 subscribers: 1 active, 1 unsubscribed" in listing.stderr
    missing = workspace.run("subscribers", "remove", "who@example.org", check=False)
    assert missing.returncode == 1 and "no such subscriber" in missing.stderr


def test_add_accepts_an_address_as_copied_from_a_mail_client(workspace: Workspace) -> None:
    assert "li@example.org: added" in workspace.run("subscribers", "add", "李四 <li@example.org>").stdout
    assert workspace.run("subscribers", "list").stdout.split() == ["li@example.org", "active", "cli", "李四"]


def test_import_keeps_good_rows_reports_bad_ones_and_respects_unsubscribes(workspace: Workspace) -> None:
    workspace.run("subscribers", "add", "gone@example.org")
    workspace.run("subscribers", "remove", "gone@example.org")
    people = workspace.root / "people.csv"
    people.write_text(
        "email,name\nann@example.org,Ann\nbroken@,X\nGONE@example.org,Gone\nann@EXAMPLE.org,dup\n", encoding="utf-8"
    )
    result = workspace.run("subscribers", "import", str(people), check=False)
    assert result.returncode == 1
    assert f"{people}:3: invalid address 'broken@'" in result.stderr
    assert (
        "1 added, 1 already subscribed, 0 subscribed again, 1 kept unsubscribed or suppressed, 1 bad row"
        in result.stdout
    )
    assert "gone@example.org" in workspace.run("subscribers", "list").stdout.split("unsubscribed")[0]

    people.write_text("gone@example.org\n", encoding="utf-8")
    again = workspace.run("subscribers", "import", str(people), "--resubscribe")
    assert "1 subscribed again" in again.stdout
    assert "unsubscribed" not in workspace.run("subscribers", "list").stdout


def test_export_round_trips_including_opt_outs(workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> None:
    workspace.run("subscribers", "add", "ann@example.org", "--name", 'Ann "A", Jr')
    workspace.run("subscribers", "add", "gone@example.org")
    workspace.run("subscribers", "remove", "gone@example.org")
    exported = workspace.run("subscribers", "export").stdout
    assert exported.splitlines()[0] == "email,name,status,subscribed,unsubscribed,source,signup_ip,confirmed"

    other = Workspace(root=tmp_path_factory.mktemp("other"), env=workspace.env)
    (other.root / "people.csv").write_text(exported, encoding="utf-8")
    other.run("subscribers", "import", "people.csv")
    rows = list(csv.reader(io.StringIO(other.run("subscribers", "export").stdout)))[1:]
    assert [row[:3] for row in rows] == [
        ["ann@example.org", 'Ann "A", Jr', "active"],
        ["gone@example.org", "", "unsubscribed"],
    ]


def test_export_neutralises_spreadsheet_formulas_and_import_reads_them_back(
    workspace: Workspace, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """OWASP's CSV-injection rule: a cell a spreadsheet would run as a formula starts with a single quote."""
    people = [
        ("=cmd|calc!A0@example.org", '=HYPERLINK("https://evil.example/","click")'),
        ("+1@example.org", "-Minus"),
        ("-2@example.org", "@SUM(A1)"),
        ("'=quoted@example.org", "'+already quoted"),
        ("plain@example.org", "Ada"),
    ]
    for address, name in people:
        workspace.run("subscribers", "add", f"--name={name}", "--", address)
    exported = workspace.run("subscribers", "export").stdout
    rows = list(csv.reader(io.StringIO(exported)))[1:]
    assert [row[:2] for row in rows] == [
        ["'=cmd|calc!A0@example.org", '\'=HYPERLINK("https://evil.example/","click")'],
        ["'+1@example.org", "'-Minus"],
        ["'-2@example.org", "'@SUM(A1)"],
        ["''=quoted@example.org", "''+already quoted"],
        ["plain@example.org", "Ada"],
    ]
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row)
    assert "formula" in workspace.run("subscribers", "export", "--help").stdout

    other = Workspace(root=tmp_path_factory.mktemp("other"), env=workspace.env)
    (other.root / "people.csv").write_text(exported, encoding="utf-8")
    other.run("subscribers", "import", "people.csv")
    listed = other.run("subscribers", "list").stdout.splitlines()
    assert [line.split()[0] for line in listed] == [address for address, _ in people]
    again = list(csv.reader(io.StringIO(other.run("subscribers", "export").stdout)))[1:]
    assert [row[:3] for row in again] == [row[:3] for row in rows]


def test_import_loses_no_row_silently_every_skipped_one_is_reported_with_its_line(workspace: Workspace) -> None:
    people = workspace.root / "people.csv"
    people.write_text(
        "email,name\n"
        "ann@example.org,Ann\n"
        f'"{"x" * 200_000}",Huge\n'  # past the csv module's field limit
        "bee@example.org,Bee\n"
        'cee@example.org,"Cee\n'  # an unclosed quote swallows the next lines into one name
        "dee@example.org,Dee\n"
        "eve@example.org,Eve\n",
        encoding="utf-8",
    )
    result = workspace.run("subscribers", "import", str(people), check=False)
    assert result.returncode == 1
    reported = result.stderr.splitlines()
    assert reported[0].startswith(f"{people}:3: unreadable CSV row: field larger than field limit")
    assert reported[1] == (f"{people}:5: a quoted cell runs on to line 7 (a missing closing quote?): lines 5-7 skipped")
    assert "2 added" in result.stdout and "2 bad rows" in result.stdout
    listed = workspace.run("subscribers", "list").stdout.splitlines()
    assert [line.split() for line in listed] == [
        ["ann@example.org", "active", "import", "Ann"],
        ["bee@example.org", "active", "import", "Bee"],
    ]


def test_import_shows_a_file_name_with_escape_sequences_escaped(workspace: Workspace) -> None:
    people = workspace.root / "people\x1b]0;owned\x07.csv"
    people.write_text("email\nbroken@\nok@example.org\n", encoding="utf-8")
    result = workspace.run("subscribers", "import", str(people), check=False)
    assert result.returncode == 1
    assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stdout + result.stderr
    shown = str(people).replace("\x1b", "\\x1b").replace("\x07", "\\x07")
    assert f"{shown}:2: invalid address 'broken@'" in result.stderr
    assert result.stdout.startswith(f"{shown}: 1 added")
