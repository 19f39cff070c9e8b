"""Writes rendered files atomically: temp file in the same folder, fsync, rename, fsync the folder."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from digest.errors import DigestError


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> bool:
    """Replace `path` with `data` so readers see the old or the new file, never a torn one (its permissions: `mode`).

    Returns False (and leaves the file and its mtime alone) when the content is already identical, so
    HTTP caches and rsync see no change.
    """
    try:
        if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return True
    except OSError as exc:
        raise DigestError(f"{path}: cannot write: {exc}") from exc


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temp_files(folder: Path, *, below: bool = False) -> None:
    """Delete `.<name>.<random>.tmp` files a killed writer left in `folder` (and in every folder under it)."""
    if folder.is_dir():
        for leftover in folder.rglob(".*.tmp") if below else folder.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)


def write_bundle(
    root: Path,
    files: Mapping[str, bytes],
    progress: Callable[[int], None] | None = None,
    written: list[str] | None = None,
    *,
    clean: bool = True,
) -> int:
    """Write every file of a rendered bundle under `root`; returns how many files changed (and appends their
    bundle paths to `written`, when given).

    The caller holds the writer lock, so temp files found in the folders written to are leftovers of a killed
    run: they are removed first. Not with `clean=False`: processes writing into the same folders at once (the
    workers of `rebuild`, which removes the leftovers of the whole output folder before it starts them) would
    remove each other's temp files.
    """
    changed = 0
    base = root.resolve()
    cleaned: set[Path] = set()
    for relative, data in sorted(files.items()):
        target = (base / relative).resolve()
        if base not in target.parents:
            raise DigestError(f"refusing to write outside the output folder: {relative}")
        if clean and target.parent not in cleaned:
            cleaned.add(target.parent)
            remove_stale_temp_files(target.parent)
        if write_atomic(target, data):
            changed += 1
            if written is not None:
                written.append(relative)
        if progress:
            progress(1)
    return changed
