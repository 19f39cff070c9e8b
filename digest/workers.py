"""Worker processes (a bulk parse, a full rebuild) that end when the process that started them is gone.

Killed with -9, a parent cannot stop its workers: a ProcessPoolExecutor's workers then wait for work forever on
a queue nobody writes, holding memory and the terminal's or cron's output pipe open. Each worker here watches
its parent and exits within a quarter of a second of losing it.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

WATCH_SECONDS = 0.25


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers exit when this process is gone."""
    return ProcessPoolExecutor(max_workers=workers, initializer=_watch_parent, initargs=(os.getpid(),))


def _watch_parent(parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="digest-parent-watch", daemon=True).start()
