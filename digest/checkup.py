"""What `digest check` looks at besides the seeds: the templates (compiled, and the email and issue page rendered
once with a sample issue), the schedule line and the state (read only; a missing state is not created).

Each check returns problems as one line each (`templates/x.j2:LINE: message`), so the CLI prints them as they are.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from digest.errors import DigestError
from digest.model import Issue
from digest.schedule import settings_trigger
from digest.store import SCHEMA_VERSION, backend_for
from digest.store.sqlite import SqliteBackend

if TYPE_CHECKING:
    from digest.model import Entry
    from digest.publisher import Publisher
    from digest.settings import Settings

#: The entry `digest init` writes into seeds/, and the sample paper templates are tried with when there is none.
EXAMPLE_SEED = """\
## Attention Is All You Need
[注意力就是你所需要的一切](https://arxiv.org/abs/1706.03762)

主流的序列转换模型基于包含编码器和解码器的复杂循环或卷积神经网络。我们提出一种新的简单网络架构 Transformer，
它完全基于注意力机制，彻底摒弃了循环和卷积。在两项机器翻译任务上的实验表明，这些模型质量更优，同时更易并行化，
训练时间也显著减少。
"""


def template_problems(publisher: Publisher, entries: tuple[Entry, ...], now: datetime) -> list[str]:
    """Every template compiled, then the email (HTML and text) and the issue page rendered once with a sample
    issue of up to three of `entries` (or the example entry): one line per problem."""
    import jinja2  # noqa: PLC0415 (lazy: jinja2 and markupsafe only when used)

    from digest.render import template_error_line  # noqa: PLC0415 (lazy: markupsafe only when used)
    from digest.render.email import render_email  # noqa: PLC0415 (lazy: mjml and feedgen ... only when used)
    from digest.render.site import render_issue_page  # noqa: PLC0415 (lazy: feedgen and jinja2 ... only when used)

    env = publisher.env
    problems = []
    for name in env.list_templates(filter_func=lambda name: name.endswith(".j2")):
        try:
            env.get_template(name)
        except jinja2.TemplateError as exc:
            problems.append(template_error_line(exc) or f"{name}: {exc}")
    if problems:
        return problems  # rendering would stop at the first of them again
    sample = Issue(1, now, entries[:3] or _example_entries())
    site = publisher.site(None)
    try:
        options = publisher.build(None).email_options(sample.number)
        render_email(site, sample, env, max_html_bytes=publisher.settings.email_max_bytes, options=options)
        render_issue_page(site, sample, env)
    except DigestError as exc:
        problems.append(template_error_line(exc) or str(exc))
    except Exception as exc:  # a template can raise anything (a filter's TypeError ...): name its file and line
        line = template_error_line(exc)
        if line is None:
            raise
        problems.append(line)
    return problems


def _example_entries() -> tuple[Entry, ...]:
    from digest.seeds import parse_seed  # noqa: PLC0415 (lazy: linkify-it and pylatexenc ... only when used)

    return parse_seed(EXAMPLE_SEED, "example.md").entries


def schedule_problem(settings: Settings) -> str | None:
    """Why the `schedule` line cannot be used, or None."""

    try:
        settings_trigger(settings)
    except DigestError as exc:
        return str(exc)
    return None


def state_problem(settings: Settings) -> tuple[str, str | None]:
    """(what the state is, why it cannot be used or None). A SQLite state is opened read-only and never created;
    a PostgreSQL one is connected to and its schema version read."""

    backend = backend_for(settings.state_location)
    if isinstance(backend, SqliteBackend):
        return _sqlite_state(backend.path, SCHEMA_VERSION)
    try:
        conn = backend.connect(5.0)
        try:
            version = conn.schema_version()
        finally:
            conn.close()
    except DigestError as exc:
        return backend.where, f"state {backend.where}: cannot be read: {str(exc).splitlines()[0]}"
    return backend.where, _newer(backend.where, version, SCHEMA_VERSION)


def _sqlite_state(path: Path, current: int) -> tuple[str, str | None]:
    if not path.exists():
        return f"{path} (none yet: the first render creates it)", None
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
        finally:
            db.close()
    except (sqlite3.Error, OSError) as exc:
        return str(path), f"{path}: cannot read the state: {exc}"
    if verdict != "ok":
        return str(path), f"{path}: the state is damaged: {verdict}"
    return str(path), _newer(str(path), version, current)


def _newer(where: str, version: int, current: int) -> str | None:
    if version > current:
        return f"{where}: state was written by a newer digest (schema {version}); upgrade digest"
    return None
