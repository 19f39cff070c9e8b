"""One line for each invalid setting, naming where its value came from (`DIGEST_X (environment)`, `.env:LINE`,
`config/digest.toml:LINE`) and, for a misspelt key, the setting it was probably meant to be: so that a bad value
is found without reading a traceback. Readers of files for error messages only, never for the values."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel


def explain(err: Any, path: Path, root: type[BaseModel]) -> str:
    """One line for one invalid setting, naming where the value came from: `DIGEST_X (environment)`,
    `.env:LINE`, `config/digest.toml:LINE`, or only the setting when it is a default or an override."""
    loc = tuple(err["loc"])
    where = ".".join(str(part) for part in loc) or "settings"
    message = err["msg"].removeprefix("Value error, ")  # pydantic's prefix for a validator's own message
    if err["type"] == "extra_forbidden":
        message = "unknown setting" + _did_you_mean(root, loc)
    names = [part for part in loc if isinstance(part, str)]
    env_names = ["DIGEST_" + "__".join(names[:k]).upper() for k in range(len(names), 0, -1)]
    environ = {key.upper() for key in os.environ}
    for name in env_names:
        if name in environ:
            return f"{name} (environment): {where}: {message}"
    dotenv = Path(".env")
    for name in env_names:
        line = _assignment_line(dotenv, re.compile(rf"\s*(?:export\s+)?{name}\s*=", re.IGNORECASE))
        if line:
            return f"{dotenv}:{line}: {name}: {where}: {message}"
    line = _toml_line(path, loc)
    if line:
        return f"{path}:{line}: {where}: {message}"
    return f"{env_names[0] if env_names else 'settings'}: {where}: {message}"


def _did_you_mean(root: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """`; did you mean 'security'?` for a misspelt key, from the fields of the table it is in."""

    model: Any = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        inner = getattr(annotation, "__args__", (annotation,))
        model = next((t for t in inner if isinstance(t, type) and issubclass(t, BaseModel)), None)
        if model is None:
            return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _assignment_line(path: Path, pattern: re.Pattern[str]) -> int | None:
    """The 1-based number of the first line of `path` matching `pattern`, if the file can be read."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    return next((n for n, text in enumerate(lines, 1) if pattern.match(text)), None)


def _toml_line(path: Path, loc: tuple[Any, ...]) -> int | None:
    """The line of the TOML file that sets the setting at `loc` (("smtp", "port"), ("topics", 1, "slug")); else
    the line of its table, else None. A reader for error messages, not a TOML parser."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    parts = [str(p) for p in loc if not isinstance(p, int)]
    index = next((p for p in loc if isinstance(p, int)), 0)
    table: list[str] = []
    seen: dict[str, int] = {}
    found: int | None = None
    header = re.compile(r"\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?")
    key = re.compile(r"\s*([A-Za-z0-9_.-]+)\s*=")
    for number, text in enumerate(lines, 1):
        head = header.match(text)
        if head:
            name = head.group(2)
            seen[name] = seen.get(name, -1) + 1
            table = name.split(".")
            if head.group(1) == "[[" and seen[name] != index:
                table = ["\0"]  # another element of the array of tables
            elif table == parts[: len(table)] and found is None and len(table) == len(parts) - 1:
                found = number
            continue
        assignment = key.match(text)
        if assignment and [*table, *assignment.group(1).split(".")] == parts:
            return number
        if assignment and not table and assignment.group(1) == parts[0]:
            found = found or number  # `smtp = { ... }` inline, or a whole list
    return found
