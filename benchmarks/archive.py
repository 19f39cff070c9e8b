"""Build a large published archive directly in the state, fast: 10,000 `digest render` runs would take hours.

Parses the seed folder exactly as the CLI does (same display paths, so the stored entries match what the next
`digest render` reads and nothing looks "corrected"), records every entry as seen, and records consecutive
issues of `per_issue` entries, published one week apart, in one transaction. Run with the working directory
the CLI will use: `python benchmarks/archive.py --seeds seeds --state state/digest.db`.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta
from pathlib import Path

from digest.model import Issue
from digest.seeds import read_seeds
from digest.store import Store

#: When the first synthetic issue was published; issue k is published k-1 weeks later.
FIRST_ISSUE = datetime.fromisoformat("2000-01-03T08:00:00+00:00")
WEEK = timedelta(weeks=1)


def published_at(number: int) -> datetime:
    """Publication time of synthetic issue `number` (1-based)."""
    return FIRST_ISSUE + (number - 1) * WEEK


def build_archive(seeds: Path, state: Path, per_issue: int = 10) -> int:
    """Record every entry of `seeds` as published, `per_issue` per issue; return the number of issues."""
    scan = read_seeds(seeds)
    entries = list(scan.entries)
    with Store.open(state) as store, store.transaction():
        store.record_seen(entries, FIRST_ISSUE)
        count = 0
        for count, start in enumerate(range(0, len(entries), per_issue), start=1):
            when = published_at(count)
            store.record_issue(
                Issue(number=count, published=when, entries=tuple(entries[start : start + per_issue])), when
            )
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=Path, default=Path("seeds"))
    parser.add_argument("--state", type=Path, default=Path("state/digest.db"))
    parser.add_argument("--per-issue", type=int, default=10)
    args = parser.parse_args()
    print(build_archive(args.seeds, args.state, args.per_issue))


if __name__ == "__main__":
    main()
