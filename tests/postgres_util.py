"""A real, throwaway PostgreSQL server for the tests and the benchmarks.

`find_postgres()` provides Debian's server binaries (installing the `postgresql` package with apt-get when running
as root, like browser_util.py installs Chromium); `Cluster.start()` makes a cluster in a temporary folder (initdb as
the `postgres` user: initdb and the server refuse to run as root), listening only on 127.0.0.1 on a free port with
its unix socket in the same temporary folder; `stop()` shuts it down and removes everything.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.debian_util import ensure_packages

_SERVER_USER = "postgres"  # created by Debian's postgresql package


def _bin_dir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def find_postgres() -> Path | None:
    """The folder holding initdb/pg_ctl/postgres. As root, installs Debian's `postgresql` when it is missing.
    None when no server can be provided (not root and not installed, no apt-get, install failed)."""
    if _bin_dir() is None:
        ensure_packages(lambda: [] if _bin_dir() else ["postgresql"])
    return _bin_dir()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """A running throwaway server; `url(db)` names a database on it, `create_database()` makes a fresh one."""

    bin_dir: Path
    folder: Path
    port: int

    @classmethod
    def start(cls, bin_dir: Path) -> Cluster:
        """initdb + pg_ctl start, as the `postgres` user when running as root."""
        folder = Path(tempfile.mkdtemp(prefix="digest-pg-"))
        if os.geteuid() == 0:
            user = pwd.getpwnam(_SERVER_USER)
            os.chown(folder, user.pw_uid, user.pw_gid)
        cluster = cls(bin_dir, folder, _free_port())
        data = folder / "data"
        cluster._run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
        # A test server: durability off (nothing here must survive a crash of the machine), more connections for
        # the concurrency tests, only the loopback address and a private socket folder.
        options = (
            f"-p {cluster.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={folder}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        cluster._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start")
        return cluster

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", _SERVER_USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, cwd=self.folder)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    def url(self, database: str = "postgres") -> str:
        """The connection URL of one database (trust authentication: no password)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown: connections are closed) and remove its folder."""
        try:
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
