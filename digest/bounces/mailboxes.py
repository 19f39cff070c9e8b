"""Raw messages from where bounces are kept: a Maildir, an mbox file, one .eml file, or standard input (a Postfix
`pipe` transport or a `.forward` hands over one message). Thin I/O: paths in, (name, bytes) out."""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from digest.errors import DigestError


class MailboxError(DigestError):
    """The place to read reports from does not exist or is not a mailbox."""


def read_messages(source: str, stdin: BinaryIO) -> Iterator[tuple[str, bytes]]:
    """Every message at `source` ("-": standard input) with a name to report it by (file, or mbox:N)."""
    if source == "-":
        yield "<stdin>", stdin.read()
        return
    path = Path(source)
    if path.is_dir():
        folders = [path / "new", path / "cur"]
        if not any(f.is_dir() for f in folders):
            raise MailboxError(f"{path}: a folder but not a Maildir (no new/ or cur/ inside)")
        for folder in folders:
            if folder.is_dir():
                for file in sorted(folder.iterdir()):
                    if file.is_file() and not file.name.startswith("."):
                        yield str(file), _read(file)
        return
    if not path.is_file():
        raise MailboxError(f"{path}: no such file or folder")
    with path.open("rb") as fh:
        is_mbox = fh.read(5) == b"From "
    if not is_mbox:
        yield str(path), _read(path)
        return
    box = mailbox.mbox(path, create=False)
    try:
        for number, key in enumerate(box.keys(), start=1):
            yield f"{path}:{number}", box.get_bytes(key)
    finally:
        box.close()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MailboxError(f"{path}: cannot read: {exc.strerror}") from None
