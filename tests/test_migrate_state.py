"""`digest migrate-state`: a SQLite state copied into an empty PostgreSQL database and back, verified by counts and
checksums; the copy is the same publication (rebuilding from it changes no file); a non-empty target is refused."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from tests.conftest import Workspace
from tests.postgres_util import Cluster

NOW = "2026-11-23T08:00:00+08:00"

pytestmark = pytest.mark.slow


def site_digest(site: Path) -> dict[str, str]:
    return {
        str(p.relative_to(site)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(site.rglob("*"))
        # The build marker holds build times, and the state claim names where the state lives (which moved);
        # the claim's state id is compared on its own.
        if p.is_file() and p.name not in (".digest-build.json", ".digest-state")
    }


def claimed_state_id(site: Path) -> str:
    return str(json.loads((site / ".digest-state").read_text(encoding="utf-8"))["state_id"])


def checksums(output: str) -> dict[str, str]:
    return dict(re.findall(r"^(\w+): \d+ rows, sha256 (\w+) on both sides$", output, re.M))


def test_sqlite_to_postgresql_and_back_keeps_every_row_and_the_publication(
    workspace: Workspace, postgres: Cluster
) -> None:
    workspace.run("render", "--now", NOW)
    workspace.run("subscribers", "add", "ada@example.org", "--name", "Ada")
    workspace.run("subscribers", "add", "bob@example.org")
    workspace.run("subscribers", "remove", "bob@example.org")
    before, state_id = site_digest(workspace.site), claimed_state_id(workspace.site)
    url = postgres.create_database()

    there = workspace.run("migrate-state", "--to", url)
    assert "entries: 23/23 rows" in there.stderr and "subscribers: 2/2 rows" in there.stderr
    assert re.search(r"copied \d+ rows in 12 tables from .*digest.db to postgresql://postgres@127.0.0.1", there.stdout)

    on_postgres = {**workspace.env, "DIGEST_STATE_URL": url}
    moved = Workspace(workspace.root, on_postgres, state_url=url)
    assert moved.sql("SELECT email, status FROM subscribers ORDER BY id") == [
        ("ada@example.org", "active"),
        ("bob@example.org", "unsubscribed"),
    ]
    assert "nothing new" in moved.run("render", "--now", NOW).stdout
    moved.run("rebuild")
    assert site_digest(workspace.site) == before  # same site id, same issues: the same publication
    assert claimed_state_id(workspace.site) == state_id  # the moved state still owns its site
    moved.run("subscribers", "add", "cy@example.org")  # numbering continues after the copied ids
    assert moved.sql("SELECT id FROM subscribers WHERE email = 'cy@example.org'") == [(3,)]

    refused = workspace.run("migrate-state", "--to", url, check=False)
    assert refused.returncode == 1 and "not empty" in refused.stderr

    back = workspace.root / "back.db"
    returned = workspace.run("migrate-state", "--from", url, "--to", f"sqlite:///{back}")
    first, second = checksums(there.stdout), checksums(returned.stdout)
    assert first.keys() == second.keys()
    changed = {t for t in first if first[t] != second[t]}
    assert changed == {"subscribers", "status_changes"}  # cy was added on PostgreSQL in between (and its trail)
