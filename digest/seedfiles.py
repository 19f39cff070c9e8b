"""Listing the seed folder: which files are seeds, in what order, and how their paths are shown.

Kept free of the parser's imports: a no-op run lists 10,000 files and stops here.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from digest.errors import DigestError, printable
from digest.model import SeedFile

if TYPE_CHECKING:
    from digest.model import EntryLimits

SEED_SUFFIXES = (".md", ".txt")
log = logging.getLogger(__name__)


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
    working directory by default). One scandir; paths are joined as strings, not resolved one by one.

    A symbolic link whose target is outside the folder is skipped with a warning: dropping a link into seeds/
    must not publish a file from elsewhere on the machine."""
    if not folder.is_dir():
        raise DigestError(f"seeds folder {folder} does not exist (or is not a folder): create it or fix the path")
    prefix = display_path(folder, root if root is not None else Path(os.getcwd()))
    prefix = "" if prefix == "." else prefix.rstrip("/") + "/"
    files = []
    real_folder: Path | None = None
    with os.scandir(folder) as listing:
        for item in listing:
            if is_seed_name(item.name) and item.is_file():
                if item.is_symlink():  # from the listing (d_type): ordinary files cost no extra call
                    real_folder = real_folder or folder.resolve()
                    target = Path(os.path.realpath(item.path))
                    if not target.is_relative_to(real_folder):
                        log.warning(
                            "%s: skipped: it links to %s, outside the seeds folder (only files inside it are read)",
                            printable(prefix + item.name),
                            printable(str(target)),
                        )
                        continue
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


def listing_fingerprint(files: Sequence[SeedFile], limits: EntryLimits) -> str:
    """One value for the whole seed listing (and the entry limits it was read with): a no-op run compares it
    instead of 10,000 cache rows."""
    listing = "\n".join([repr(limits), *(f"{f.source}\t{f.size}\t{f.mtime_ns}" for f in files)])
    return hashlib.sha256(listing.encode("utf-8", "surrogateescape")).hexdigest()
