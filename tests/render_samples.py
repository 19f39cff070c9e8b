"""Sample sites, issues and entries shared by the renderer tests (feeds, site pages), and their checks."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import lxml.html

from digest.model import Entry, Issue, Site
from digest.seeds import read_seeds
from digest.topics import DEFAULT_TOPICS

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
SHANGHAI = ZoneInfo("Asia/Shanghai")
#: The pinned clock: issue 3 was published at this moment; issues 1 and 2 one and two weeks earlier.
PUBLISHED = datetime(2024, 9, 23, 8, 0, tzinfo=SHANGHAI)
FEED_ID = "urn:uuid:6f1c2a34-8b1e-4c55-9a0d-3f2e1b7c9d10"
NS = {
    "atom": "http://www.w3.org/2005/Atom",
    "content": "http://purl.org/rss/1.0/modules/content/",
}
HOSTILE = (
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "javascript:alert(1)",
    '"><a href="javascript:x">click</a>',
)


# ------------------------------------------------------------------------------------------------ sample data


def make_site(**changes: object) -> Site:
    site = Site(
        title="AI 论文周报",
        url="https://digest.example.org/",
        author="周报编辑部",
        description="每周精选 AI 论文的中文摘要",
        feed_id=FEED_ID,
        timezone="Asia/Shanghai",
        feed_max_items=50,
        topics=DEFAULT_TOPICS,
    )
    return replace(site, **changes)  # type: ignore[arg-type]


def seed_entries() -> tuple[Entry, ...]:
    """The real CJK abstracts shipped in seeds/."""
    scan = read_seeds(ROOT / "seeds")
    assert len(scan.entries) >= 20
    return scan.entries


def make_issues(entries: tuple[Entry, ...], sizes: tuple[int, ...] = (8, 8, 7)) -> list[Issue]:
    """Issues 1..len(sizes) cut from `entries`, returned newest first (as the publisher passes them)."""
    issues, start = [], 0
    for number, size in enumerate(sizes, start=1):
        published = PUBLISHED - timedelta(weeks=len(sizes) - number)
        issues.append(Issue(number, published, entries[start : start + size]))
        start += size
    return issues[::-1]


def non_arxiv_entry() -> Entry:
    return Entry(
        id="https://openreview.net/forum?id=abc123",
        title_en="A Paper Hosted Elsewhere",
        title_zh="托管在别处的论文",
        url="https://openreview.net/forum?id=abc123&noteId=xyz",
        abstract=("本文的代码见 https://example.com/code。第二句。", "第二段摘要。"),
        source="seeds/extra.txt",
        line=1,
    )


def golden_issues() -> list[Issue]:
    """A small fixed issue for golden files: two real arXiv papers and one non-arXiv paper."""
    first, second = seed_entries()[:2]
    return [Issue(1, PUBLISHED, (first, second, non_arxiv_entry()))]


def hostile_entry(n: int, text: str) -> Entry:
    return Entry(
        id=f"2409.{10000 + n}",
        title_en=f"Title {text}",
        title_zh=f"标题 {text}",
        url=text if n % 2 else f"https://arxiv.org/abs/2409.{10000 + n}",
        abstract=(f"摘要 {text} 见 https://example.com/a?b=<c>", text),
        source="seeds/evil.txt",
        line=n,
    )


def hostile_issues() -> list[Issue]:
    entries = [hostile_entry(n, text) for n, text in enumerate(HOSTILE)]
    entries.append(replace(non_arxiv_entry(), url="javascript:alert(1)", title_en="<b>bold</b>"))
    return [Issue(7, PUBLISHED, tuple(entries))]


def assert_safe_html(html: str, where: str) -> None:
    """No script elements, no event handler attributes, only http(s)/relative/fragment URLs."""
    if not html.strip():
        return
    tree = lxml.html.fromstring(html) if "<html" in html[:200] else lxml.html.fragment_fromstring(html, True)
    for element in tree.iter():
        if not isinstance(element.tag, str):
            continue
        assert element.tag.lower() not in {"script", "iframe", "object", "embed"}, f"{where}: <{element.tag}>"
        for name, value in element.attrib.items():
            assert not name.lower().startswith("on"), f"{where}: {name}={value!r} on <{element.tag}>"
            if name.lower() in {"href", "src", "action", "formaction", "xlink:href"}:
                scheme = urlsplit(value.strip()).scheme.lower()
                assert scheme in {"", "http", "https"}, f"{where}: {name}={value!r}"


def golden(name: str, data: bytes) -> None:
    """Compare with tests/golden/<name>; DIGEST_UPDATE_GOLDEN=1 rewrites the file instead."""
    path = GOLDEN / name
    if os.environ.get("DIGEST_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    assert path.is_file(), f"missing {path}: run with DIGEST_UPDATE_GOLDEN=1"
    assert data == path.read_bytes(), f"{name} differs from the golden file (DIGEST_UPDATE_GOLDEN=1 to accept)"
