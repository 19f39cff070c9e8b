"""The `digest` command line: each command a few lines over the publisher.

Heavy modules (renderers, SMTP, the scheduler) are imported inside the commands that use them, so that
`digest status` and a no-op `digest render` start fast.

This module holds the group (`main`) and what every command shares (`Context`, `reports_errors`, `_say`,
`NOW_OPTION`); the commands live by concern in publishing.py, editing.py, subscribing.py, mailing.py and
serving.py, and register themselves on `main` when their module is imported: only the one a command needs
(COMMAND_MODULES).
"""

from __future__ import annotations

import atexit
import gc
import importlib
import logging
import sqlite3
import sys
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from digest.errors import DigestError, printable

if TYPE_CHECKING:
    from digest.publisher import Publisher
    from digest.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("digest")


def _fail(message: str, code: int = 1) -> None:
    for line in printable(message, lines=True).split("\n"):  # one line per problem, each one complete
        click.echo(f"digest: error: {line.strip()}", err=True)
    sys.exit(code)


def _say(line: str, *, err: bool = False) -> None:
    """Print one line that holds outside text (file names, seed titles, server replies) with its controls escaped."""
    click.echo(printable(line), err=err)


def _warn(line: str) -> None:
    click.echo(f"digest: warning: {printable(line)}", err=True)


def _warn_localhost_site(settings: Settings) -> None:
    """Links in feeds and mails would point at this machine: say so while site_url is still the default."""
    from digest.settings import Settings  # noqa: PLC0415 (lazy: pydantic-settings only when used)

    if settings.site_url == Settings.model_fields["site_url"].default:
        _warn(f"site_url is still the default {settings.site_url}: set site_url (DIGEST_SITE_URL) to the public URL")


def reports_errors(func: F) -> F:
    """Turn digest's own errors (and SQLite's) into one line on stderr and a non-zero exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DigestError as exc:
            from digest.render import template_error_line  # noqa: PLC0415 (lazy: markupsafe only when used)

            # A template error wrapped by a renderer: say where it is in the template (file:line).
            _fail(template_error_line(exc) or str(exc), exc.exit_code)
        except sqlite3.Error as exc:
            _fail(f"state database error: {exc}")
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as exc:
            from digest.render import template_error_line  # noqa: PLC0415 (lazy: markupsafe only when used)

            line = template_error_line(exc)  # a template error: one line, not the renderer's traceback
            if line is None:
                raise
            _fail(line)

    return wrapper  # type: ignore[return-value]


class Context:
    """Settings are read once per command, lazily, so `--help` works even with a broken config."""

    settle_heap = False  # set by run(): the program's own process, not a test's in-process invocation

    def __init__(self, config: Path | None) -> None:
        self.config = config
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from digest.settings import load_settings  # noqa: PLC0415 (lazy: pydantic-settings only when used)

            self._settings = load_settings(self.config)
            if self.settle_heap:
                gc.freeze()  # see run()
        return self._settings

    def publisher(self) -> Publisher:
        from digest.publisher import Publisher  # noqa: PLC0415 (lazy: pydantic-settings and markupsafe only when used)

        return Publisher(self.settings, clock=lambda: self.now(None))

    def now(self, override: str | None) -> datetime:
        """The clock, read here and only here (or pinned with the hidden --now for reproducible runs)."""
        tz = self.settings.tz
        if override:
            try:
                value = datetime.fromisoformat(override)
            except ValueError:
                raise click.BadParameter(f"not an ISO 8601 time: {override}", param_hint="--now") from None
            return value if value.tzinfo else value.replace(tzinfo=tz)
        return datetime.now(tz)


class ProgressBars:
    """Progress bars on stderr for a command's long stretches (every page rendered again, a bulk of seed files
    read), only when someone watches (stderr is a terminal); rich, ~0.15 s of start-up, is imported only when the
    first bar starts. `phase` is None when nobody watches, so the work pays nothing for them."""

    def __init__(self) -> None:
        self._bars: Any = None
        self.phase: Callable[[str, int], Callable[[int], None]] | None = self._start if sys.stderr.isatty() else None

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bars is not None:
            self._bars.stop()  # transient: the bars go, the command's own lines stay

    def _start(self, label: str, total: int) -> Callable[[int], None]:
        if self._bars is None:
            from rich.console import Console  # noqa: PLC0415 (lazy: rich only when used)
            from rich.progress import Progress  # noqa: PLC0415 (lazy: rich only when used)

            self._bars = Progress(console=Console(stderr=True), transient=True)
            self._bars.start()
        bars, task = self._bars, self._bars.add_task(label, total=total)
        return lambda done: bars.advance(task, done)


class _PrintableFormatter(logging.Formatter):
    """Log lines carry outside text too (file names in errors, SMTP replies): their controls are escaped."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record), lines=True)  # lines: a traceback has several


pass_ctx = click.make_pass_decorator(Context)
NOW_OPTION = click.option("--now", hidden=True, help="Pretend the current time is this ISO 8601 time.")


#: Which module of this package defines each command: a command's module is imported only when it runs (or when
#: `--help` lists them all), so `digest render` does not load the mail, web and editing commands' imports.
#: tests/test_cli_help.py holds this table to the commands the modules define.
COMMAND_MODULES = {
    "approve": "editing",
    "candidates": "editing",
    "draft": "editing",
    "hold": "editing",
    "preview": "editing",
    "release": "editing",
    "backup": "publishing",
    "check": "publishing",
    "init": "publishing",
    "rebuild": "publishing",
    "render": "publishing",
    "status": "publishing",
    "bounces": "mailing",
    "send": "mailing",
    "migrate-state": "serving",
    "run": "serving",
    "serve": "serving",
    "subscribers": "subscribing",
}


class _LazyGroup(click.Group):
    """A group whose commands register themselves when their module (COMMAND_MODULES) is imported."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module in sorted(set(COMMAND_MODULES.values())):
            importlib.import_module(f"digest.cli.{module}")
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            importlib.import_module(f"digest.cli.{COMMAND_MODULES[cmd_name]}")
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="DIGEST_CONFIG",
    help="Settings file (default: config/digest.toml if present).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log more detail to stderr.")
@click.version_option(package_name="digest")
@click.pass_context
def main(ctx: click.Context, config: Path | None, verbose: bool) -> None:
    """Publish a weekly digest: seed files in, a numbered issue out as email, feeds and a web archive.

    Settings come from config/digest.toml, .env and DIGEST_* environment variables (in rising order).

    \b
    Exit codes: 0 done (warnings are printed on stderr)
                1 error (render: nothing could be published because of errors)
                2 usage error (a mistyped command or option)
               73 the output folder was built from another state: restore the state, or --force
               75 another digest process holds the state; try again later
               78 bad settings (the message names the file:line or the variable)

    Example: digest init mynews && cd mynews && digest check && digest render
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    if not verbose:
        # Libraries that log every request or page at INFO (the arXiv client, the HTTP client under openai):
        # digest says what each paper came to itself, so their lines are only noise unless asked for.
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
    ctx.obj = Context(config)


#: Third-party loggers kept to errors unless `--verbose`.
QUIET_LOGGERS = ("arxiv", "httpx", "httpx2", "httpcore", "httpcore2", "openai")


def run() -> None:
    """The `digest` program (console script and `python -m digest`): `main`, with the heap settled once the
    settings are read. gc.freeze() hides what start-up built (pydantic's schemas, the modules: ~40,000 objects)
    from the garbage collector for good, and again at exit, where the last collection would walk everything:
    together about 40 ms of a 4 s send of 2,000 messages (docs/performance.md). Only cycles made before a
    freeze go uncollected, which a one-shot command never misses; tests that invoke `main` in their own process
    keep their collector as it is."""
    Context.settle_heap = True
    atexit.register(gc.freeze)
    main()
