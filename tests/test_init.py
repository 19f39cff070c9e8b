"""`digest init`: a new user's first folder works at once (check passes, render publishes) and keeps its secret."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from digest.settings import secret_key_weakness
from tests.conftest import REPO


def digest(cwd: Path, *args: str, pythonpath: str = str(REPO)) -> subprocess.CompletedProcess[str]:
    """`digest ARGS` in `cwd` with no DIGEST_* variable set, as on a fresh machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env["PYTHONPATH"] = pythonpath
    return subprocess.run(
        [sys.executable, "-m", "digest", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_init_makes_a_folder_where_check_passes_and_render_publishes_the_example(tmp_path: Path) -> None:
    made = digest(tmp_path, "init", "news")
    assert made.returncode == 0, made.stderr
    folder = tmp_path / "news"
    check = digest(folder, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "1 valid entry in seeds/, 0 problems" in check.stdout
    assert not (folder / "state").exists(), "check must not create the state"
    render = digest(folder, "render")
    assert render.returncode == 0, render.stdout + render.stderr
    assert "published issue 1 with 1 paper;" in render.stdout
    assert (folder / "site" / "issues" / "1" / "email.html").is_file()


def test_the_env_file_holds_a_strong_new_key_readable_by_its_owner_only(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # even a permissive umask must not make the secret readable by others
    try:
        assert digest(tmp_path, "init", "a").returncode == 0
        assert digest(tmp_path, "init", "b").returncode == 0
    finally:
        os.umask(old_umask)
    keys = []
    for name in ("a", "b"):
        env_file = tmp_path / name / ".env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        [line] = [x for x in env_file.read_text(encoding="utf-8").splitlines() if x.startswith("DIGEST_SECRET_KEY=")]
        key = line.removeprefix("DIGEST_SECRET_KEY=")
        assert secret_key_weakness(key) is None
        keys.append(key)
    assert keys[0] != keys[1]


def test_the_folder_ignores_its_secrets_state_and_outputs(tmp_path: Path) -> None:
    assert digest(tmp_path, "init").returncode == 0
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    for name in (".env", "state/digest.db", "site/index.html", "preview/index.html"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    listed = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.split()
    assert sorted(listed) == [".gitignore", "config/digest.toml", "config/glossary.csv", "seeds/example.md"]


def test_the_repository_ignores_a_dot_env_file() -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO, check=False)
    assert ignored.returncode == 0, "a .env in the checkout (it holds DIGEST_SECRET_KEY) would be committable"


def test_init_copies_the_commented_config_and_the_templates_when_asked(tmp_path: Path) -> None:
    assert digest(tmp_path, "init").returncode == 0
    config = (tmp_path / "config" / "digest.toml").read_text(encoding="utf-8")
    assert config == (REPO / "config" / "digest.toml").read_text(encoding="utf-8")
    assert not (tmp_path / "templates").exists()
    assert digest(tmp_path, "init", "with-templates", "--templates").returncode == 0
    copied = sorted(p.name for p in (tmp_path / "with-templates" / "templates").iterdir())
    assert copied == sorted(p.name for p in (REPO / "templates").iterdir())


def test_init_refuses_to_overwrite_and_names_the_files(tmp_path: Path) -> None:
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "example.md").write_text("mine", encoding="utf-8")
    (tmp_path / ".env").write_text("DIGEST_SECRET_KEY=keep-me\n", encoding="utf-8")
    refused = digest(tmp_path, "init")
    assert refused.returncode == 1
    [line] = refused.stderr.splitlines()
    assert line.startswith("digest: error: ") and "seeds/example.md, .env" in line and "--force" in line
    assert (tmp_path / "seeds" / "example.md").read_text(encoding="utf-8") == "mine"
    assert not (tmp_path / "config").exists(), "nothing is written when anything would be overwritten"

    forced = digest(tmp_path, "init", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "seeds" / "example.md").read_text(encoding="utf-8") != "mine"
    assert (tmp_path / ".env").read_text(encoding="utf-8") == "DIGEST_SECRET_KEY=keep-me\n", "the key is kept"


def test_init_has_help_with_an_example(tmp_path: Path) -> None:
    shown = digest(tmp_path, "init", "--help")
    assert shown.returncode == 0 and "Example: digest init" in shown.stdout and "--templates" in shown.stdout


def test_the_wheel_ships_the_config_and_init_reads_it_from_the_package(tmp_path: Path) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    included = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert included["config/digest.toml"] == "digest/_config/digest.toml"
    assert included["config/glossary.csv"] == "digest/_config/glossary.csv"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if built.returncode != 0:
        pytest.skip(f"cannot build the wheel here (no hatchling?): {built.stderr.strip().splitlines()[-1:]}")
    [wheel] = (tmp_path / "dist").glob("digest-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert {"digest/_config/digest.toml", "digest/_config/glossary.csv"} <= set(archive.namelist())
        archive.extractall(tmp_path / "installed")  # a wheel is a zip of the installed files
    work = tmp_path / "elsewhere"
    work.mkdir()
    made = digest(work, "init", pythonpath=str(tmp_path / "installed"))
    assert made.returncode == 0, made.stderr
    for name in ("digest.toml", "glossary.csv"):  # the settings, and the starter glossary `draft` and `check` use
        assert (work / "config" / name).read_bytes() == (REPO / "config" / name).read_bytes()
    check = digest(work, "check", pythonpath=str(tmp_path / "installed"))
    assert check.returncode == 0, check.stdout + check.stderr


def test_init_where_it_cannot_write_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    result = digest(tmp_path, "init", "a-file/news")
    assert result.returncode == 1
    assert result.stderr.startswith("digest: error: a-file/news") and "cannot write: Not a directory" in result.stderr
    assert len(result.stderr.splitlines()) == 1
