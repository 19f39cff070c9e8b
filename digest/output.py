"""The output folder: rendered files written atomically (temp file in the same folder, fsync, rename, fsync the
folder), and what the folder says about itself: the state it was built from (`.digest-state`), the newest issue
it holds (`.digest-build.json`), and the settings and templates its pages follow (`output_settings`)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from digest.errors import DigestError
from digest.settings import Settings

BUILD_MARKER = ".digest-build.json"
MAIL_FOLDER = ".mail"  # per issue: the email as the mailer fills it in (a dot folder: `digest serve` hides it)
STATE_CLAIM = ".digest-state"  # in the output folder: the id of the state it was built from (hidden when served)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644, sync_folder: bool = True) -> bool:
    """Replace `path` with `data` so readers see the old or the new file, never a torn one (its permissions: `mode`).

    Returns False (and leaves the file and its mtime alone) when the content is already identical, so
    HTTP caches and rsync see no change. `sync_folder=False`: the caller fsyncs the folder (once for many files)
    before it relies on the rename having reached the disk.
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
        if sync_folder:
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
    bundle paths to `written`, when given). Each folder written to is fsynced once, before returning (an issue's
    seven files live in two folders: 2 folder fsyncs instead of 7).

    The caller holds the writer lock, so temp files found in the folders written to are leftovers of a killed
    run: they are removed first. Not with `clean=False`: processes writing into the same folders at once (the
    workers of `rebuild`, which removes the leftovers of the whole output folder before it starts them) would
    remove each other's temp files.
    """
    changed = 0
    base = root.resolve()
    cleaned: set[Path] = set()
    renamed: dict[Path, None] = {}  # the folders to fsync, in the order first written
    for relative, data in sorted(files.items()):
        target = (base / relative).resolve()
        if base not in target.parents:
            raise DigestError(f"refusing to write outside the output folder: {relative}")
        if clean and target.parent not in cleaned:
            cleaned.add(target.parent)
            remove_stale_temp_files(target.parent)
        if write_atomic(target, data, sync_folder=False):
            renamed[target.parent] = None
            changed += 1
            if written is not None:
                written.append(relative)
        if progress:
            progress(1)
    try:
        for folder in renamed:
            _fsync_dir(folder)
    except OSError as exc:
        raise DigestError(f"{root}: cannot sync the output folder: {exc}") from exc
    return changed


#: The settings that shape rendered files (what renderers get through Site and EmailOptions). Templates count too.
OUTPUT_SETTINGS = (
    "title",
    "description",
    "author",
    "site_url",
    "language",
    "timezone",
    "feed_max_items",
    "archive_page_size",
    "email_max_bytes",
    "highlights",
    "sender_address",
    "topics",
    "websub_hub",
)


def output_settings(settings: Settings) -> dict[str, str]:
    """A short hash of each setting that shapes the rendered files and of each template file (the user's
    templates folder, digest's own as one): what the pages were rendered with, so that a change is noticed."""
    from digest.render import default_templates_dir  # noqa: PLC0415 (lazy: markupsafe only when used)

    values = settings.model_dump(mode="json", include=set(OUTPUT_SETTINGS))
    result = {name: _short_hash(json.dumps(value, sort_keys=True).encode("utf-8")) for name, value in values.items()}
    folder = settings.templates_dir
    result.update((f"{folder}/{name}", _short_hash(data)) for name, data in _template_files(folder))
    shipped = b"".join(
        name.encode("utf-8") + b"\0" + _short_hash(data).encode("ascii")
        for name, data in _template_files(default_templates_dir())
    )
    result["digest's own templates"] = _short_hash(shipped)
    return result


def _short_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _template_files(folder: Path) -> list[tuple[str, bytes]]:
    """(name relative to `folder`, content) of every template file in it, by name; hidden files (editors' swap
    files, temp files) are not templates, and the prompts of `digest draft` (draft_*) shape no page."""
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if (
            path.is_file()
            and not path.name.startswith("draft_")
            and not any(p.startswith(".") for p in name.split("/"))
        ):
            try:
                found.append((name, path.read_bytes()))
            except OSError as exc:
                raise DigestError(f"{path}: cannot read the template ({exc.strerror})") from None
    return found


def rerender_reason(recorded: str | None, issue_count: int, current: Mapping[str, str]) -> str:
    """Why every page must be rendered again, or "" when the pages follow `current`: `recorded` is what they were
    rendered with (`output_settings`, as JSON), None when not recorded."""
    if recorded is None:  # a new state (its first render records them), or one from before they were recorded
        return "" if issue_count == 0 else "page settings not recorded yet: re-rendering all pages"
    before = json.loads(recorded)
    changed = sorted(k for k in current.keys() | before.keys() if current.get(k) != before.get(k))
    if not changed:
        return ""
    names = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    return f"settings changed ({names}): re-rendering all pages"


def _build_marker(latest_issue: int | None, state_id: str) -> bytes:
    return json.dumps({"latest_issue": latest_issue, "site": state_id}, sort_keys=True).encode("utf-8")


def build_marker_matches(folder: Path, latest_issue: int | None, state_id: str) -> bool:
    """Whether the folder's build marker says it holds issue `latest_issue` of state `state_id`."""
    try:
        return (folder / BUILD_MARKER).read_bytes() == _build_marker(latest_issue, state_id)
    except OSError:
        return False


def write_build_marker(folder: Path, latest_issue: int | None, state_id: str) -> None:
    """Record that the folder holds every output up to issue `latest_issue` of state `state_id`."""
    write_atomic(folder / BUILD_MARKER, _build_marker(latest_issue, state_id))


def read_claim(folder: Path) -> tuple[str, str] | None:
    """(state id, state location) of the state the output folder was built from, or None when it says nothing:
    its `.digest-state`, else (a site built by an older digest) the state id in its build marker."""
    try:
        data = json.loads((folder / STATE_CLAIM).read_text(encoding="utf-8"))
        return str(data["state_id"]), str(data.get("state", "?"))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        return str(json.loads((folder / BUILD_MARKER).read_text(encoding="utf-8"))["site"]), "location not recorded"
    except (OSError, ValueError, KeyError, TypeError):
        return None
