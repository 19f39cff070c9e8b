"""deploy/: the systemd units pass `systemd-analyze verify` and are hardened; the image runs digest as a non-root
user installed from the hash-pinned lock; compose runs `run` and `serve` on one state volume."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

DEPLOY = REPO / "deploy"
UNITS = ["digest-run.service", "digest-serve.service"]
INSTALLED = "/opt/digest/bin/digest"  # where the units expect digest; the test points them at this venv's


def installed_units(tmp_path: Path) -> list[Path]:
    """The units as installed on a machine where digest lives in this test run's environment."""
    digest = Path(sys.executable).parent / "digest"
    assert digest.is_file(), f"no digest script beside {sys.executable}"
    paths = []
    for name in UNITS:
        text = (DEPLOY / name).read_text(encoding="utf-8")
        assert INSTALLED in text
        (tmp_path / name).write_text(text.replace(INSTALLED, str(digest)), encoding="utf-8")
        paths.append(tmp_path / name)
    return paths


def unit_settings(name: str) -> dict[str, str]:
    settings = {}
    for line in (DEPLOY / name).read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings[key] = value
    return settings


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install -y systemd)")
    result = subprocess.run(
        ["systemd-analyze", "verify", *map(str, installed_units(tmp_path))], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_the_units_expose_little_by_systemd_s_own_measure(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install -y systemd)")
    for unit in installed_units(tmp_path):
        result = subprocess.run(
            ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
            capture_output=True,
            text=True,
            check=False,
        )
        found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
        assert found, result.stdout + result.stderr
        assert float(found.group(1)) <= 2.0, f"{unit.name} is exposed {found.group(1)} (10 = unprotected)"


@pytest.mark.parametrize("name", UNITS)
def test_a_unit_runs_as_an_unprivileged_user_and_writes_only_the_state_and_site(name: str) -> None:
    unit = unit_settings(name)
    assert unit["User"] == "digest" and unit["NoNewPrivileges"] == "yes" and unit["PrivateTmp"] == "yes"
    assert unit["ProtectSystem"] == "strict" and unit["CapabilityBoundingSet"] == ""
    writable = set(unit["ReadWritePaths"].split())
    assert "/srv/digest/state" in writable and writable <= {
        "/srv/digest/state",
        "/srv/digest/site",
        "/srv/digest/preview",
    }
    assert unit["EnvironmentFile"] == "/srv/digest/.env" and unit["WorkingDirectory"] == "/srv/digest"
    assert "78" in unit["RestartPreventExitStatus"].split()  # bad settings: restarting does not help


def final_stage(dockerfile: str) -> str:
    return dockerfile.rsplit("\nFROM ", 1)[1]


def test_the_image_installs_the_lock_with_hashes_and_runs_as_a_non_root_user() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert "--require-hashes -r requirements.lock" in dockerfile
    users = re.findall(r"^USER (\S+)", final_stage(dockerfile), re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.MULTILINE):
        for path in source.split():
            assert (REPO / path).exists(), f"COPY {path}: not in the repository"
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".env", ".venv", ".git", "state"} <= set(ignored)


def test_compose_runs_both_processes_on_one_state_volume() -> None:
    compose = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    services = re.split(r"^  (\w+):\n", compose.split("\nservices:\n", 1)[1].split("\nvolumes:\n")[0], flags=re.M)
    by_name = dict(zip(services[1::2], services[2::2], strict=True))
    assert set(by_name) == {"run", "serve"}
    assert '["run"]' in by_name["run"] and '["serve"' in by_name["serve"]
    for body in by_name.values():
        assert "- state:/srv/digest/state\n" in body and "- site:/srv/digest/site" in body


def docker_available() -> str | None:
    """Why docker cannot build here, or None."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        return f"no docker daemon is reachable: {info.stderr.strip().splitlines()[-1:] or info.returncode}"
    return None


@pytest.mark.slow
def test_the_image_builds_and_its_digest_starts_as_a_non_root_user(tmp_path: Path) -> None:
    why = docker_available()
    if why:
        pytest.skip(why)
    tag = "digest-test:deploy"
    subprocess.run(["docker", "build", "-f", "deploy/Dockerfile", "-t", tag, "."], cwd=REPO, check=True, timeout=1800)
    uid = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"], capture_output=True, text=True, check=True
    )
    assert uid.stdout.strip() != "0"
    version = subprocess.run(["docker", "run", "--rm", tag, "--version"], capture_output=True, text=True, check=True)
    assert "digest" in version.stdout


def test_compose_file_is_valid_for_docker_compose(tmp_path: Path) -> None:
    if shutil.which("docker-compose"):
        compose = ["docker-compose"]
    elif shutil.which("docker") and subprocess.run(["docker", "compose", "version"], check=False).returncode == 0:
        compose = ["docker", "compose"]
    else:
        pytest.skip("neither docker compose nor docker-compose is installed (apt-get install -y docker-compose)")
    (tmp_path / ".env").write_text("DIGEST_SECRET_KEY=x\n", encoding="utf-8")  # as `digest init` leaves it
    result = subprocess.run(
        [*compose, "-f", str(DEPLOY / "compose.yaml"), "config"],
        env={"DIGEST_FOLDER": str(tmp_path), "PATH": "/usr/local/bin:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"{tmp_path}/seeds:/srv/digest/seeds:ro" in result.stdout
    assert "DIGEST_SECRET_KEY: x" in result.stdout  # the secrets reach both processes as environment variables
