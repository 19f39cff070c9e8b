"""Raw messages from where bounces are kept: a Maildir, an mbox file, one .eml file, or standard input (a Postfix
`pipe` transport or a `.forward` hands over one message). Thin I/O: paths in, (name, bytes) out.

At most `max_bytes` + 1 bytes of each message are read (`bounce_max_bytes`): a real report is a few KB, so a
longer message is junk, and the importer records it as seen without reading the rest."""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from digest.errors import DigestError


class MailboxError(DigestError):
    """The place to read reports from does not exist or is not a mailbox."""


def read_messages(
    source: str, stdin: BinaryIO, max_bytes: int, *, short_names: bool = False
) -> Iterator[tuple[str, bytes]]:
    """Every message at `source` ("-": standard input) with a name to report it by (file, or mbox:N): its first
    `max_bytes` + 1 bytes (so a longer one is known to be longer). With `short_names` (`--dry-run`), the names
    are the file's name, the message's number in an mbox and `-` for standard input, and a plain folder of
    message files is read as well as a Maildir."""
    if source == "-":
        data = stdin.read(max_bytes + 1)
        while stdin.read(1 << 20):  # the writer (a Postfix pipe) expects its message to be taken whole
            pass
        yield ("-" if short_names else "<stdin>"), data
        return
    path = Path(source)
    if path.is_dir():
        folders = [path / "new", path / "cur"]
        if not any(f.is_dir() for f in folders):
            if not short_names:
                raise MailboxError(f"{path}: a folder but not a Maildir (no new/ or cur/ inside)")
            folders = [path]
        for folder in folders:
            if folder.is_dir():
                for file in sorted(folder.iterdir()):
                    if file.is_file() and not file.name.startswith("."):
                        yield (file.name if short_names else str(file)), _read(file, max_bytes)
        return
    if not path.is_file():
        raise MailboxError(f"{path}: no such file or folder")
    with path.open("rb") as fh:
        is_mbox = fh.read(5) == b"From "
    if not is_mbox:
        yield (path.name if short_names else str(path)), _read(path, max_bytes)
        return
    box = mailbox.mbox(path, create=False)
    try:
        for number, key in enumerate(box.keys(), start=1):
            with box.get_file(key) as message:
                yield (str(number) if short_names else f"{path}:{number}"), message.read(max_bytes + 1)
    finally:
        box.close()


def _read(path: Path, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(max_bytes + 1)
    except OSError as exc:
        raise MailboxError(f"{path}: cannot read: {exc.strerror}") from None
