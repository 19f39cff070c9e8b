"""The baseline of scenario 7: the same seed entries as a Pelican project (one Markdown article per paper,
dated like the synthetic issues of archive.py: 10 papers a week, the issue as its category).

    python benchmarks/pelican_site.py --seeds seeds --out pelican    # then: python -m pelican pelican/content ...

Pelican is not a dependency of digest: `pip install -e '.[bench]'` (or `run.py --install-pelican`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from archive import published_at  # a sibling module

from digest.seeds import read_seeds

CONFIG = """\
AUTHOR = "Paper Digest"
SITENAME = "Paper Digest"
SITEURL = "https://digest.example.org"
TIMEZONE = "Asia/Shanghai"
DEFAULT_LANG = "zh"
DEFAULT_PAGINATION = 20
FEED_ALL_ATOM = "feeds/all.atom.xml"
FEED_ALL_RSS = "feeds/all.rss.xml"
CATEGORY_FEED_ATOM = "feeds/{slug}.atom.xml"
RELATIVE_URLS = False
CACHE_CONTENT = False
LOAD_CONTENT_CACHE = False
"""


def write_project(seeds: Path, out: Path, per_issue: int = 10) -> int:
    """Write `out/content/*.md` and `out/pelicanconf.py`; returns the number of articles."""
    entries = read_seeds(seeds).entries
    content = out / "content"
    content.mkdir(parents=True, exist_ok=True)
    for index, entry in enumerate(entries):
        issue = index // per_issue + 1
        when = published_at(issue).strftime("%Y-%m-%d %H:%M")
        body = "\n\n".join(entry.abstract)
        title = entry.title_en.replace("\n", " ")
        slug = "p-" + "".join(c if c.isalnum() else "-" for c in entry.id)
        (content / f"{slug}.md").write_text(
            f"Title: {title}\nDate: {when}\nCategory: issue-{issue}\nSlug: {slug}\n\n"
            f"[{entry.title_zh}]({entry.url})\n\n{body}\n",
            encoding="utf-8",
        )
    (out / "pelicanconf.py").write_text(CONFIG, encoding="utf-8")
    return len(entries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=Path, default=Path("seeds"))
    parser.add_argument("--out", type=Path, default=Path("pelican"))
    args = parser.parse_args()
    print(write_project(args.seeds, args.out))


if __name__ == "__main__":
    main()
