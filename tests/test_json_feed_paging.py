"""JSON Feed 1.1 paging: `feed.json` holds the newest papers and its `next_url` leads through one JSON archive page
per archive page (`archive/feed-<k>.json`, newest first) down to page 1, as RFC 5005 archive documents page
`issues.xml`. Walking the chain finds every paper ever published."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import Workspace

SITE = "https://digest.example.org/"


def load(site: Path, url: str) -> dict[str, Any]:
    assert url.startswith(SITE), url
    feed: dict[str, Any] = json.loads((site / url.removeprefix(SITE)).read_text(encoding="utf-8"))
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["feed_url"] == url
    return feed


def test_next_url_walks_from_feed_json_through_every_archive_page(workspace: Workspace) -> None:
    workspace.env.update(
        {"DIGEST_MAX_ENTRIES_PER_ISSUE": "10", "DIGEST_ARCHIVE_PAGE_SIZE": "1", "DIGEST_FEED_MAX_ITEMS": "5"}
    )
    for day in ("2026-11-23", "2026-11-30", "2026-12-07"):
        workspace.run("render", "--now", f"{day}T08:00:00+08:00")
    assert workspace.sql("SELECT COUNT(*) FROM issue_entries") == [(23,)]

    visited = [SITE + "feed.json"]
    feed = load(workspace.site, visited[0])
    assert len(feed["items"]) == 5
    seen = [item["id"] for item in feed["items"]]
    while "next_url" in feed:
        visited.append(feed["next_url"])
        feed = load(workspace.site, visited[-1])
        seen += [item["id"] for item in feed["items"]]
    assert visited == [
        SITE + p for p in ("feed.json", "archive/feed-3.json", "archive/feed-2.json", "archive/feed-1.json")
    ]
    assert len(set(seen)) == 23  # every paper, the newest ones twice (feed.json overlaps the newest page)
    # A topic's feed is its newest papers only: no archive chain.
    assert all("next_url" not in json.loads(f.read_bytes()) for f in (workspace.site / "topics").glob("*/feed.json"))

    # A new week rewrites the newest page and starts the next one; older pages keep their content.
    page_1 = (workspace.site / "archive/feed-1.json").read_bytes()
    workspace.add_seed("zz_new.md", "## A new paper\n[新论文](https://arxiv.org/abs/2611.00001)\n\nAbstract.\n")
    workspace.run("render", "--now", "2026-12-14T08:00:00+08:00")
    assert load(workspace.site, SITE + "feed.json")["next_url"] == SITE + "archive/feed-4.json"
    assert load(workspace.site, SITE + "archive/feed-4.json")["next_url"] == SITE + "archive/feed-3.json"
    assert (workspace.site / "archive/feed-1.json").read_bytes() == page_1
