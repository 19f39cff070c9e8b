"""Where a first publish spends its time: this process against its parse workers (issue 19).

    python benchmarks/first_publish_timeline.py                     # 100,000 entries in a temp folder, 3 runs
    python benchmarks/first_publish_timeline.py --entries 5000 --runs 1

Runs each `digest render` in a child process on a fresh state, with timers around the phases that matter to the question
"is the main process on the critical path?": the start (until the parse workers are given the files), the window
while they parse (what this process does meanwhile: recording the papers and issue 1, whose files a worker renders
from a copy of the state; "issue 1 here" is this process's share), and the tail after
the last file (writing the files, the commit). Prints one line per run and the medians. It wraps private names
of digest (`Publisher._publish`, the parse pool's `map`): when they change, it fails loudly rather than
measuring something else. A report, not a test; `tests/test_benchmarks.py` runs it small so that it cannot rot.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

BEGAN = time.perf_counter()  # a run is a child process: its start counts from here (digest's imports included)
sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402  (a sibling module, not a package)
from run import precompile  # noqa: E402

NOW = "2000-01-03T08:00:00+00:00"


class Timeline:
    """Wall and CPU marks of one run, taken by wrappers around digest's phases."""

    def __init__(self) -> None:
        self.start = BEGAN
        self.marks: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.spans: dict[str, float] = {}

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, time.perf_counter() - self.start)
        self.cpu.setdefault(name, time.process_time())

    def add(self, name: str, seconds: float) -> None:
        self.spans[name] = self.spans.get(name, 0.0) + seconds


def _wrap(owner: Any, name: str, around: Callable[..., Any]) -> Callable[[], None]:
    """Replace owner.name by around(original, *args, **kwargs); returns what undoes it."""
    original = getattr(owner, name)
    setattr(owner, name, lambda *a, **k: around(original, *a, **k))
    return lambda: setattr(owner, name, original)


def one_run() -> dict[str, float]:
    """One first publish in this process, in the current folder (a fresh state); its phases in seconds."""
    line = Timeline()

    def pool_map(original: Callable[..., Iterator[Any]], *args: Any, **kwargs: Any) -> Iterator[Any]:
        line.mark("workers given the files")
        results = original(*args, **kwargs)

        def watched() -> Iterator[Any]:
            for result in results:
                yield result
                line.marks["last file parsed"] = time.perf_counter() - line.start
                line.cpu["last file parsed"] = time.process_time()

        return watched()

    def timed(label: str) -> Callable[..., Any]:
        def around(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                line.add(label, time.perf_counter() - began)

        return around

    from digest.cli import main
    from digest.publisher import Publisher

    _wrap(ProcessPoolExecutor, "map", pool_map)
    _wrap(Publisher, "_publish", timed("issue 1"))
    main(["render", "--now", NOW], standalone_mode=False)
    end = time.perf_counter() - line.start
    times = os.times()
    if "workers given the files" not in line.marks or "last file parsed" not in line.marks:
        raise SystemExit("the seeds were not parsed in worker processes: give --entries 5000 or more")
    given, last = line.marks["workers given the files"], line.marks["last file parsed"]
    return {
        "start": given,
        "window": last - given,
        "tail": end - last,
        "wall in python": end,
        "main cpu": times.user + times.system,
        "main cpu in window": line.cpu["last file parsed"] - line.cpu["workers given the files"],
        "issue 1 here (in window)": line.spans.get("issue 1", 0.0),
        "workers cpu": times.children_user + times.children_system,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The timeline of a first publish (issue 19): a report, not a test.")
    parser.add_argument("--entries", type=int, default=100_000, help="papers in the corpus (10 per file)")
    parser.add_argument("--runs", type=int, default=3, help="first publishes to time (medians printed)")
    parser.add_argument("--workdir", type=Path, help="build the corpus here and keep it (default: a temp folder)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one timed run, in its workspace
    args = parser.parse_args(argv)
    if args.child:
        phases = one_run()
        print(json.dumps(phases))
        return 0
    precompile()  # as an installed digest runs (see run.py)
    workspace = args.workdir or Path(tempfile.mkdtemp(prefix="digest-timeline-"))
    (workspace / "seeds").mkdir(parents=True, exist_ok=True)
    if not any((workspace / "seeds").iterdir()):
        corpus.write_corpus(workspace / "seeds", args.entries)
    env = {
        "DIGEST_SEEDS_DIR": "seeds",
        "DIGEST_OUTPUT_DIR": "site",
        "DIGEST_STATE_PATH": "state/digest.db",
        "DIGEST_JOBS_PATH": "state/jobs.db",
        "DIGEST_TEMPLATES_DIR": "no-such-templates",
        "DIGEST_SITE_URL": "https://digest.example.org/",
        "DIGEST_TIMEZONE": "Asia/Shanghai",
    }
    runs = []
    for n in range(args.runs):
        for name in ("site", "state"):
            for path in sorted((workspace / name).rglob("*"), reverse=True) if (workspace / name).exists() else []:
                path.rmdir() if path.is_dir() else path.unlink()
        done = subprocess.run(
            [sys.executable, __file__, "--child"],
            cwd=workspace,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}, **env},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or "published issue 1" not in done.stdout:
            raise SystemExit(f"the first publish failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        runs.append(json.loads(done.stdout.splitlines()[-1]))
        shown = ", ".join(f"{k} {v:.3f}" for k, v in runs[-1].items())
        print(f"run {n + 1}: {shown}", flush=True)
    keys = list(runs[0])
    medians = {k: statistics.median(r[k] for r in runs) for k in keys}
    print(f"median of {len(runs)} ({args.entries:,} entries, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}):")
    for key in keys:
        print(f"  {key:<22} {medians[key]:7.3f} s")
    share = medians["main cpu in window"] / medians["window"] if medians["window"] else 0.0
    print(f"  this process was busy {share:.0%} of the window (the rest it waited for the workers)")
    cap = args.entries / medians["main cpu"] if medians["main cpu"] else 0.0
    print(f"  its own CPU caps a first import at {cap:,.0f} entries/s, however many workers parse")
    return 0


if __name__ == "__main__":
    sys.exit(main())
