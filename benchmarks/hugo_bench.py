"""Scenario H of benchmarks/run.py: the same papers as a Hugo site (Debian's `hugo`), side by side with digest.

Hugo, the common static-site generator, builds a minimal site generated here from the same seeds: one page per
issue with its papers (English title, Chinese title linked to the paper, the abstract), a paginated list of the
issues, a home page with the newest ones, Hugo's own RSS and sitemap. Measured in one run, interleaved:

- `digest rebuild` of the whole archive (empty output folder) against a full `hugo` build (empty `public/`);
- a new week: `digest render` of one more file of 10 papers against `hugo` building the site with that issue's
  page added (Hugo's CLI has no incremental build: it renders every page again).

Wall time and each child's own peak RSS (wait4). As a script it writes the Hugo project:

    python benchmarks/hugo_bench.py --seeds seeds --out hugo           # then: hugo -s hugo -d public
    python benchmarks/hugo_bench.py --seeds seeds --out hugo --issue 11 --file seeds/000010.txt   # one more page

Hugo is not a dependency of digest: the scenario installs Debian's `hugo` through tests/debian_util.py (as root
with apt), or reports "not run".
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FIRST_ISSUE = datetime.fromisoformat("2000-01-03T08:00:00+00:00")  # as archive.py: issue k is k-1 weeks later
WEEK = timedelta(weeks=1)

CONFIG = """\
baseURL = "https://digest.example.org/"
languageCode = "zh-cn"
title = "Paper Digest"
timeZone = "Asia/Shanghai"
disableKinds = ["taxonomy", "term"]
paginate = 20
[services.rss]
limit = 20
"""

LAYOUTS = {
    "_default/baseof.html": """<!DOCTYPE html>
<html lang="zh"><head><meta charset="utf-8"><title>{{ .Title }} · {{ .Site.Title }}</title></head>
<body><nav><a href="{{ "/" | relURL }}">{{ .Site.Title }}</a> · <a href="{{ "/issues/" | relURL }}">往期</a></nav>
<main>{{ block "main" . }}{{ end }}</main></body></html>
""",
    "_default/single.html": """{{ define "main" }}<article><h1>{{ .Title }}</h1>
<time datetime="{{ .Date.Format "2006-01-02" }}">{{ .Date.Format "2006-01-02" }}</time>
{{ .Content }}
<nav>{{ with .PrevInSection }}<a rel="next" href="{{ .RelPermalink }}">{{ .Title }}</a>{{ end }}
{{ with .NextInSection }}<a rel="prev" href="{{ .RelPermalink }}">{{ .Title }}</a>{{ end }}</nav></article>
{{ end }}""",
    "_default/list.html": """{{ define "main" }}<h1>{{ .Title }}</h1><ul>
{{ range .Paginator.Pages }}<li><a href="{{ .RelPermalink }}">{{ .Title }}</a> {{ .Date.Format "2006-01-02" }}</li>
{{ end }}</ul>
<nav>{{ with .Paginator.Prev }}<a href="{{ .URL }}">newer</a>{{ end }}
{{ with .Paginator.Next }}<a href="{{ .URL }}">older</a>{{ end }}</nav>{{ end }}""",
    "index.html": """{{ define "main" }}<h1>{{ .Site.Title }}</h1><ul>
{{ range first 20 (where .Site.RegularPages "Section" "issues") }}<li><a href="{{ .RelPermalink }}">{{ .Title }}</a>
</li>{{ end }}</ul>{{ end }}""",
}


def published_at(number: int) -> datetime:
    return FIRST_ISSUE + (number - 1) * WEEK


def _page(number: int, entries: Sequence[Any]) -> str:
    """Issue `number`'s page: front matter, then each paper as Markdown."""
    parts = [f'---\ntitle: "第 {number} 期"\ndate: {published_at(number).isoformat()}\n---\n']
    for entry in entries:
        title = entry.title_en.replace("\n", " ")
        abstract = "\n\n".join(entry.abstract)
        parts.append(f"## {title}\n\n[{entry.title_zh}]({entry.url})\n\n{abstract}\n")
    return "\n".join(parts)


def write_project(seeds: Path, out: Path, per_issue: int = 10) -> int:
    """Write `out/config.toml`, `out/layouts/` and one page per issue of `per_issue` papers (the issues of
    archive.py); returns the number of issues."""
    from digest.seeds import read_seeds

    entries = list(read_seeds(seeds).entries)
    content = out / "content" / "issues"
    content.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(CONFIG, encoding="utf-8")
    for name, text in LAYOUTS.items():
        (out / "layouts" / name).parent.mkdir(parents=True, exist_ok=True)
        (out / "layouts" / name).write_text(text, encoding="utf-8")
    (out / "content" / "issues" / "_index.md").write_text('---\ntitle: "往期"\n---\n', encoding="utf-8")
    issues = 0
    for issues, start in enumerate(range(0, len(entries), per_issue), start=1):
        (content / f"{issues}.md").write_text(_page(issues, entries[start : start + per_issue]), encoding="utf-8")
    return issues


def add_issue(out: Path, number: int, seed_file: Path) -> None:
    """One more issue page: the papers of one new seed file (a new week)."""
    from digest.seeds import parse_seed

    entries = parse_seed(seed_file.read_bytes(), seed_file.name).entries
    (out / "content" / "issues" / f"{number}.md").write_text(_page(number, entries), encoding="utf-8")


def _ensure_hugo() -> str | None:
    """The `hugo` binary, installed from Debian when missing and allowed (root with apt-get)."""
    if shutil.which("hugo") is None:
        sys.path.insert(0, str(HERE.parent))
        from tests.debian_util import ensure_packages

        ensure_packages(lambda: [] if shutil.which("hugo") else ["hugo"])
    return shutil.which("hugo")


def scenario(base: Path, sizes: Any, log: Callable[[str], None], bench: Any) -> list[Any]:
    """Scenario H (`bench` is benchmarks/run.py, for its Workspace, run_child, Row and median)."""
    import corpus  # a sibling module

    Row, median, fmt = bench.Row, bench.median, bench.fmt_size
    issues_wanted = sizes.hugo_issues
    hugo = _ensure_hugo()
    if hugo is None:
        return [Row("H vs Hugo", f"{fmt(issues_wanted)} issues", measured="not run", note="no hugo (apt-get hugo)")]
    version = bench.run_child([hugo, "version"], env=dict(os.environ), cwd=base).stdout.split()[1]
    ws = bench.Workspace(base / "hugo")
    corpus.write_corpus(ws.seeds, issues_wanted * 10)
    log(f"  building a {fmt(issues_wanted)}-issue archive in the state and as a Hugo project")
    issues = ws.build_archive()
    ws.python("hugo_bench.py", "--seeds", "seeds", "--out", "hugo")
    env = {**ws.env, "HUGO_CACHEDIR": str(ws.root / "hugo-cache")}
    build = [hugo, "--quiet", "-s", "hugo", "-d", "public"]
    ours, theirs, our_weeks, their_weeks = [], [], [], []
    repeats = min(sizes.repeats, 3)
    for i in range(repeats):
        log(f"  {fmt(issues)} issues: digest rebuild and hugo, run {i + 1}/{repeats}")
        shutil.rmtree(ws.root / "site", ignore_errors=True)
        ours.append(ws.digest("rebuild"))
        shutil.rmtree(ws.root / "hugo" / "public", ignore_errors=True)
        theirs.append(bench.run_child(build, env=env, cwd=ws.root))
    for week in range(1, repeats + 1):
        log(f"  a new week on {fmt(issues)} issues: digest render and hugo, week {week}/{repeats}")
        new = corpus.add_week(ws.seeds)
        number = issues + week
        run = ws.digest("render", "--now", (published_at(number)).isoformat())
        if f"published issue {number} " not in run.stdout:
            raise bench.ScenarioError(f"new week did not publish issue {number}: {run.stdout}")
        our_weeks.append(run)
        ws.python("hugo_bench.py", "--out", "hugo", "--issue", str(number), "--file", str(new))
        their_weeks.append(bench.run_child(build, env=env, cwd=ws.root))
    walls = {name: median([r.wall for r in runs]) for name, runs in
             (("ours", ours), ("theirs", theirs), ("our_weeks", our_weeks), ("their_weeks", their_weeks))}  # fmt: skip
    size = f"{fmt(issues)} issues, {fmt(issues * 10)} papers"

    def row(name: str, runs: list[Any], note: str = "") -> Any:
        return Row(name, size, median([r.wall for r in runs]), max(r.rss_mb for r in runs), note=note,
                   runs=[r.wall for r in runs])  # fmt: skip

    return [
        row("H digest rebuild (whole site)", ours, "empty output folder each run; on every core"),
        row(f"H Hugo {version} full build", theirs, "empty public/ each run; one page per issue, list, RSS, sitemap"),
        Row("H vs Hugo: full build", size, measured=f"{walls['theirs'] / walls['ours']:.2f}x",
            target="Hugo time / digest time", ok=None),
        row("H digest new week", our_weeks, "digest render of one more file of 10 papers"),
        row("H Hugo new week", their_weeks, "the new issue's page added; Hugo builds every page again"),
        Row("H vs Hugo: new week", size, measured=f"{walls['their_weeks'] / walls['our_weeks']:.1f}x",
            target="Hugo time / digest time", ok=None),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=Path, default=Path("seeds"))
    parser.add_argument("--out", type=Path, default=Path("hugo"))
    parser.add_argument("--issue", type=int, help="add only this issue's page, from --file")
    parser.add_argument("--file", type=Path, help="the seed file of the issue added with --issue")
    args = parser.parse_args()
    if args.issue is not None:
        add_issue(args.out, args.issue, args.file)
        print(1)
    else:
        print(write_project(args.seeds, args.out))


if __name__ == "__main__":
    main()
