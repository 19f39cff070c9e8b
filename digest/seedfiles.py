"""Listing the seed folder: which files are seeds, in what order, and how their paths are shown.

Kept free of the parser's imports: a no-op run lists 10,000 files and stops here.
"""

from __future__ import annotations

import os
from pathlib import Path

from digest.errors import DigestError
from digest.model import SeedFile

SEED_SUFFIXES = (".md", ".txt")


def is_seed_name(name: str) -> bool:
    """`*.md` / `*.txt`, except dot files (editor backups and lock files are not seeds)."""
    return not name.startswith(".") and name.lower().endswith(SEED_SUFFIXES)


def display_path(path: Path, root: Path) -> str:
    """The path as users should see it in problems: relative to `root` when inside it."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def list_seed_files(folder: Path, root: Path | None = None) -> list[SeedFile]:
    """The seed files in file-name order (the order papers are published), shown relative to `root` (the
    working directory by default). One scandir; paths are joined as strings, not resolved one by one."""
    if not folder.is_dir():
        raise DigestError(f"seeds folder {folder} does not exist (or is not a folder): create it or fix the path")
    prefix = display_path(folder, root if root is not None else Path(os.getcwd()))
    prefix = "" if prefix == "." else prefix.rstrip("/") + "/"
    files = []
    with os.scandir(folder) as listing:
        for item in listing:
            if is_seed_name(item.name) and item.is_file():
                stat = item.stat()
                files.append(SeedFile(item.path, prefix + item.name, stat.st_size, stat.st_mtime_ns))
    files.sort(key=lambda f: f.source)
    return files


def read_seed_file(file: SeedFile) -> bytes:
    """A seed file's bytes, or a DigestError naming the file."""
    try:
        with open(file.path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise DigestError(f"cannot read seed file {file.source}: {exc.strerror or exc}") from exc
