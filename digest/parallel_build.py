"""The site build in worker processes: a full rebuild spread over every core, and a first import's issue rendered
beside the scan of the seeds. What is rendered is `digest.build`'s; this module only decides where."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, as_completed
from typing import TYPE_CHECKING

from digest.build import TOPIC_RULES_KEY, Build, changed_outputs, environment, index_topics, site_of
from digest.model import Issue
from digest.output import write_bundle
from digest.render import Bundle
from digest.settings import Settings
from digest.store import Store, backend_for
from digest.workers import worker_pool

if TYPE_CHECKING:
    import jinja2

log = logging.getLogger("digest.build")


def rebuild_files(
    build: Build,
    store: Store,
    progress: Callable[[int], None] | None,
    chunk: int,
    workers: int | None,
    written: list[str],
) -> int:
    """Write every output from the state; returns files changed (and the shared files written, in `written`).

    The issues are rendered on every core (each worker opens the state read-only), archive page by archive
    page: a worker renders a page's issue files, then the page with its search shard, RFC 5005 document and
    sitemap from the same papers. This process indexes the topics and renders the topic pages and feeds
    meanwhile. The caller holds the writer lock and removed the temp files a killed run left."""

    from digest.render.site import archive_pages_for  # noqa: PLC0415 (lazy: feedgen and jinja2 ... only when used)

    settings = build.settings
    numbers = store.issue_numbers()
    newest = numbers[-1] if numbers else None
    pages = archive_pages_for(numbers, settings.archive_page_size)
    # (issues, and after the last part of a page: the page and all its issues)
    tasks: list[tuple[list[int], tuple[int, Sequence[int]] | None]] = []
    for page, page_numbers in pages.items():
        ordered = sorted(page_numbers)
        parts = [ordered[i : i + chunk] for i in range(0, len(ordered), chunk)]
        tasks.extend((part, (page, page_numbers) if part is parts[-1] else None) for part in parts)
    jobs = workers if workers is not None else min(os.cpu_count() or 1, max(1, len(tasks)))
    changed = 0
    with worker_pool(jobs) if jobs > 1 and len(tasks) > 1 else _InProcess() as pool:
        dump = settings.model_dump()
        futures = {
            pool.submit(_rebuild_issues, dump, part, newest, page, len(pages)): len(part) for part, page in tasks
        }
        store.set_meta(TOPIC_RULES_KEY, "")  # re-derive every paper's topics from the current rules
        with store.transaction():
            touched = index_topics(store, settings.topic_list, None, set())
        changed += build.write_topic_pages(store)
        shared = build.outputs(store, pages=(), emails=(), topics=touched)
        changed += write_bundle(settings.output_dir, shared, written=written, clean=False)
        for future in as_completed(futures):
            changed += future.result()
            if progress:
                progress(futures[future])
    return changed


_WORKER_ENVS: dict[str, tuple[Settings, jinja2.Environment]] = {}


def _rebuild_issues(
    settings_dump: dict[str, object],
    numbers: list[int],
    newest: int | None,
    page: tuple[int, Sequence[int]] | None,
    last_page: int,
) -> int:
    """Worker of `rebuild`: render and write the files of some issues, then archive page `page` (when given) with
    its extras; returns files changed.

    A worker process keeps its settings and templates across chunks, so its templates are compiled once."""

    key = json.dumps(settings_dump, sort_keys=True, default=str)
    if key not in _WORKER_ENVS:
        settings = Settings.model_validate(settings_dump)
        _WORKER_ENVS[key] = (settings, environment(settings))
    settings, env = _WORKER_ENVS[key]
    backend = backend_for(settings.state_location)
    with Store.open(backend, busy_timeout=max(settings.lock_timeout, 5.0)) as store:
        build = Build(settings, env, site_of(settings, store))
        loaded: list[Issue] = []
        bundle = build.issues_files(store, numbers, newest, loaded)
        if page is not None:
            bundle.update(build.archive_files(store, *page, last_page, loaded))
    return write_bundle(settings.output_dir, bundle, clean=False)  # `rebuild` removed the leftovers


class _InProcess:
    """A stand-in for a process pool when one core (or one chunk) makes forking not worth it."""

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Callable[..., int], *args: object) -> Future[int]:
        future: Future[int] = Future()
        future.set_result(fn(*args))
        return future


def render_elsewhere(
    settings: Settings,
    store: Store,
    build: Callable[[], Build],
    revised_issues: set[int],
    issue: Issue | None,
    topics: set[str],
    repair: bool,
) -> Callable[[], Bundle]:
    """`changed_outputs`, rendered in a worker process from a copy of the state as this session sees it now (its
    open transaction included); returns what waits for the files. A first import renders issue 1 so while this
    process records the papers the parse workers send: rendering is the largest share of its own work.

    The worker reads a copy, so it renders what this process would render here and now. Where the backend makes
    no copies (PostgreSQL) or when the worker fails (a template error, a lost process), the files
    are rendered here (by `build()`: this process needs no template engine otherwise), so that errors read as
    they always do."""
    changes = (revised_issues, issue, topics, repair)
    snapshot = store.snapshot()
    if snapshot is None:
        bundle = changed_outputs(build(), store, *changes)
        return lambda: bundle
    pool = worker_pool(1)
    future = pool.submit(_render_snapshot, settings.model_dump(), snapshot, *changes)
    done: list[Bundle] = []

    def wait() -> Bundle:
        if not done:
            try:
                done.append(future.result())
            except Exception as exc:  # rendered again here, where any error is reported as usual
                log.debug("rendering in a worker failed (%s): rendering here", type(exc).__name__)
                done.append(changed_outputs(build(), store, *changes))
            finally:
                pool.shutdown()
        return done[0]

    return wait


def _render_snapshot(
    settings_dump: dict[str, object],
    snapshot: bytes,
    revised_issues: set[int],
    issue: Issue | None,
    topics: set[str],
    repair: bool,
) -> Bundle:
    """Worker of `render_elsewhere`."""
    settings = Settings.model_validate(settings_dump)
    with Store.from_snapshot(backend_for(settings.state_location), snapshot) as store:
        build = Build(settings, environment(settings), site_of(settings, store))
        return changed_outputs(build, store, revised_issues, issue, topics, repair)
