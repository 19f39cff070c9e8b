"""Shared fixtures: a scratch working directory with the sample seeds, and the CLI run as a real subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pytest

from digest.model import Issue, Site
from digest.render import make_environment
from tests.postgres_util import Cluster, find_postgres
from tests.render_samples import make_issues, make_site, seed_entries

REPO = Path(__file__).resolve().parent.parent
SAMPLE_SEEDS = REPO / "seeds"


@dataclass
class Workspace:
    """A temporary digest installation: seeds/, site/, state/, settings through DIGEST_* variables."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    state_url: str = ""  # a PostgreSQL database when the test runs on that backend

    @property
    def backend(self) -> str:
        return "postgresql" if self.state_url else "sqlite"

    @property
    def state_location(self) -> Path | str:
        """What Store.open takes for this workspace's state."""
        return self.state_url or self.state

    @property
    def seeds(self) -> Path:
        return self.root / "seeds"

    @property
    def site(self) -> Path:
        return self.root / "site"

    @property
    def state(self) -> Path:
        return self.root / "state" / "digest.db"

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run one statement (`?` placeholders) on the workspace's state, whatever its backend; its rows."""
        return run_sql(self.state_location, query, *params)

    def has_state(self) -> bool:
        """Whether a digest command created the state yet."""
        if not self.state_url:
            return self.state.exists()
        return run_sql(self.state_url, "SELECT to_regclass('issues') IS NOT NULL") == [(True,)]

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `python -m digest ARGS` in the workspace, like a user in a shell."""
        result = subprocess.run(
            [sys.executable, "-m", "digest", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"digest {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """Start `python -m digest ARGS` without waiting (for kill and concurrency tests)."""
        return subprocess.Popen(
            [sys.executable, "-m", "digest", *args],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def add_seed(self, name: str, text: str | bytes) -> Path:
        """Write a seed file (as a maintainer would drop one into seeds/)."""
        path = self.seeds / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path


# --- the state's backends: tests marked `both_states` run once on SQLite and once on a real PostgreSQL -----


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_states") and "state" in metafunc.fixturenames:
        metafunc.parametrize("state", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """A throwaway PostgreSQL server for this test session (one per xdist worker), stopped at the end."""
    bin_dir = find_postgres()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed and cannot be (not root, or apt-get failed)")
    cluster = Cluster.start(bin_dir)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a test's state lives: a SQLite file (the default) or, for `both_states` tests, also a fresh
    PostgreSQL database."""
    if getattr(request, "param", "sqlite") == "postgresql":
        cluster: Cluster = request.getfixturevalue("postgres")
        return cluster.create_database()
    return tmp_path / "work" / "state" / "digest.db"


def run_sql(location: Path | str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """One statement on a state (a SQLite path or a PostgreSQL URL), committed; its rows."""
    if isinstance(location, str):
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            cursor = conn.execute(query.replace("?", "%s"), params)  # type: ignore[arg-type]
            return [tuple(r) for r in cursor.fetchall()] if cursor.description else []
    import sqlite3

    with sqlite3.connect(location, timeout=30, isolation_level=None) as db:
        return [tuple(r) for r in db.execute(query, params).fetchall()]


@pytest.fixture
def workspace(tmp_path: Path, state: Path | str) -> Iterator[Workspace]:
    """A fresh working directory holding a copy of the sample seeds and no config file."""
    root = tmp_path / "work"
    root.mkdir()
    shutil.copytree(SAMPLE_SEEDS, root / "seeds")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        {
            "DIGEST_SITE_URL": "https://digest.example.org/",
            "DIGEST_TITLE": "AI 论文周报",
            "DIGEST_TIMEZONE": "Asia/Shanghai",
            "DIGEST_SECRET_KEY": "test-secret-key-0123456789abcdef",
            "DIGEST_LOCK_TIMEOUT": "30",
            "PYTHONPATH": str(REPO),
        }
    )
    state_url = state if isinstance(state, str) else ""
    if state_url:
        env["DIGEST_STATE_URL"] = state_url
    yield Workspace(root=root, env=env, state_url=state_url)


# --- renderer fixtures: the sample seeds as three issues of a pinned site ------------------------------


@pytest.fixture(scope="module")
def env() -> jinja2.Environment:
    """The template environment with the shipped templates."""
    return make_environment()


@pytest.fixture(scope="module")
def site() -> Site:
    """A pinned publication (title, URL, feed id, time zone)."""
    return make_site()


@pytest.fixture(scope="module")
def issues() -> list[Issue]:
    """The 23 sample papers as issues 1-3, newest first."""
    return make_issues(seed_entries())


@pytest.fixture
def browser(srv: Any) -> Iterator[Any]:
    """A client that sends what a browser sends with a form posted from a page of the site itself, to the module's
    `srv` (a running `digest serve`)."""
    import httpx

    headers = {"Origin": srv.base, "Sec-Fetch-Site": "same-origin"}
    with httpx.Client(base_url=srv.base, timeout=10, headers=headers) as client:
        yield client
