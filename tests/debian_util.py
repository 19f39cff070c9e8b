"""Debian packages the tests need beyond PyPI (chromium and CJK fonts, postgresql), installed on first use.

CI runs on a clean machine as root: the first test that needs a package installs it with apt-get; pytest-xdist
workers that want one at the same time wait on one lock, then see it installed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

_INSTALL_LOCK = Path(tempfile.gettempdir()) / "digest-apt-install.lock"


@contextlib.contextmanager
def install_lock() -> Iterator[None]:
    """Held while checking for and installing packages: one installs, the others wait."""
    with open(_INSTALL_LOCK, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def can_install() -> bool:
    """Whether apt-get can be used here (root, on a Debian-like system)."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def ensure_packages(missing: Callable[[], Sequence[str]]) -> None:
    """Install what `missing()` names (asked again under the lock); the package lists are updated only when a
    first install fails. Failures are left for the caller to notice (the thing is still missing)."""
    if not can_install():
        return
    with install_lock():
        packages = list(missing())
        if not packages:
            return
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        # Wait for a concurrent apt/dpkg run instead of failing on its lock; update the lists if stale.
        install = ["apt-get", "-o", "DPkg::Lock::Timeout=900", "install", "-y", "--no-install-recommends", *packages]
        for command in (install, ["apt-get", "-o", "DPkg::Lock::Timeout=900", "update"], install):
            result = subprocess.run(command, env=env, capture_output=True, timeout=1800, check=False)
            if command is install and result.returncode == 0:
                break
