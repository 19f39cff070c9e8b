"""What a build does per file and per paper, counted (not timed): the work `digest rebuild` repeats ten thousand
times (issue 19). Folding the plain text and syncing folders were most of a rebuild's profile."""

from __future__ import annotations

import os
import stat
from collections import Counter
from pathlib import Path

import jinja2
import pytest

from digest.model import Issue, Site
from digest.output import write_bundle
from digest.render import email


def test_an_email_folds_each_text_once_though_its_text_part_is_rendered_twice(
    site: Site, issues: list[Issue], env: jinja2.Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The text part is rendered again with other link markers to count its slots; the papers' text is the
    same both times, so it is folded once."""
    calls: Counter[tuple[object, ...]] = Counter()
    fold = email.wrap_text

    def counting(text: str, indent: str = "", first: str = "") -> str:
        calls[(text, indent, first)] += 1
        return fold(text, indent, first)

    monkeypatch.setattr(email, "wrap_text", counting)
    rendered = email.render_email(site, issues[0], env)
    assert rendered.text
    assert calls
    assert {key: n for key, n in calls.items() if n > 1} == {}
    assert rendered.text == email.render_email(site, issues[0], env).text  # the same text as folding each time


def test_writing_an_issues_files_syncs_each_folder_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file is fsynced before its rename, and each folder once after its files' renames (before returning:
    the build marker, written after, never gets ahead of the files)."""
    synced: list[str] = []
    real_fsync = os.fsync

    def counting(fd: int) -> None:
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting)
    files = {f"issues/7/{name}": b"x" for name in ("index.html", "email.html", "email.txt")} | {
        f"issues/7/.mail/{name}": b"y" for name in ("email.html", "email.txt", "slots.json")
    }
    assert write_bundle(tmp_path, files) == 6
    assert Counter(synced) == {"file": 6, "folder": 2}
    assert synced[-2:] == ["folder", "folder"]
    assert {p: (tmp_path / p).read_bytes() for p in files} == files
