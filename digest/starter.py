"""`digest init`: a working folder for a new newsletter, ready for `digest check` and `digest render`."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from digest.checkup import EXAMPLE_SEED
from digest.errors import DigestError

_PACKAGED_CONFIG = Path(__file__).resolve().parent / "_config"
_SOURCE_CONFIG = Path(__file__).resolve().parent.parent / "config"
ENV_FILE = ".env"
GITIGNORE = """\
# secrets (DIGEST_SECRET_KEY, DIGEST_SMTP__PASSWORD): never commit them
.env
# the state (issues, subscribers, deliveries) and what digest generates from it
/state/
/site/
/preview/
"""


def default_config_text(name: str = "digest.toml") -> str:
    """A file of `config/` shipped with digest: the commented settings, the starter glossary (the wheel's copy,
    else the source tree's)."""
    path = _PACKAGED_CONFIG / name
    return (path if path.is_file() else _SOURCE_CONFIG / name).read_text(encoding="utf-8")


def starter_files(templates: bool) -> dict[str, str]:
    """The files `digest init` writes, by path relative to the folder (the .env is written apart: it is secret)."""
    from digest.render import default_templates_dir  # noqa: PLC0415 (lazy: markupsafe only when used)

    files = {
        "seeds/example.md": EXAMPLE_SEED,
        "config/digest.toml": default_config_text(),
        "config/glossary.csv": default_config_text("glossary.csv"),
        ".gitignore": GITIGNORE,
    }
    if templates:
        shipped = default_templates_dir()
        for path in sorted(shipped.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                files[f"templates/{path.relative_to(shipped).as_posix()}"] = path.read_text(encoding="utf-8")
    return files


def make_folder(folder: Path, *, templates: bool = False, force: bool = False) -> list[str]:
    """Write the starter files into `folder`; the paths written. Refuses (naming them) to overwrite existing files
    unless `force`; an existing .env is never replaced (its key signs links already mailed)."""
    files = starter_files(templates)
    existing = [name for name in (*files, ENV_FILE) if (folder / name).exists()]
    if existing and not force:
        raise DigestError(
            f"{folder}: would overwrite {', '.join(existing)}; move them away or use --force"
            " (an existing .env is kept even then)"
        )
    written = []
    try:
        for name, text in files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(name)
        if not (folder / ENV_FILE).exists():
            _write_secret_env(folder / ENV_FILE)
            written.append(ENV_FILE)
    except OSError as exc:
        raise DigestError(f"{exc.filename or folder}: cannot write: {exc.strerror or exc}") from exc
    return written


def _write_secret_env(path: Path) -> None:
    """The .env with a new DIGEST_SECRET_KEY, created with mode 0600 (never readable by others, not even briefly)."""
    text = (
        "# Secrets for digest, read from the working folder (never commit this file).\n"
        f"DIGEST_SECRET_KEY={secrets.token_urlsafe(32)}\n"
        "# DIGEST_SMTP__PASSWORD=\n"
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
