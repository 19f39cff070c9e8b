"""Specification of the feeds: rss.xml, atom.xml, feed.json (one item per paper), issues.xml (one per issue).

Every feed is produced with the real feedgen and read back with feedparser (as readers do) and lxml XPath (for
what the standards and the RSS Best Practices Profile require).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import feedparser
import jinja2
import lxml.etree
import lxml.html
import pytest

from digest.model import Issue, Site
from digest.render import make_environment
from digest.render.feeds import (
    feed_items,
    issue_entry_id,
    issues_feed_id,
    paper_id,
    render_atom,
    render_feeds,
    render_issues_archive,
    render_issues_feed,
    render_json_feed,
    render_rss,
    render_topic_feeds,
    topic_feed_id,
)
from digest.topics import assign_topics
from tests.render_samples import (
    FEED_ID,
    NS,
    SHANGHAI,
    assert_safe_html,
    golden,
    golden_issues,
    hostile_issues,
    make_site,
)


def xml(data: bytes) -> lxml.etree._Element:
    return lxml.etree.fromstring(data)


def parsed(data: bytes) -> feedparser.FeedParserDict:
    result = feedparser.parse(data)
    assert result.bozo == 0, result.get("bozo_exception")
    return result


def expected_order(issues: list[Issue]) -> list[str]:
    """Paper ids newest first: issues by number desc, papers in issue order."""
    return [paper_id(e) for issue in sorted(issues, key=lambda i: -i.number) for e in issue.entries]


RFC822 = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    r"\d{2}:\d{2}:\d{2} [+-]\d{4}$"
)


# ------------------------------------------------------------------------------------------------ RSS


def test_rss_reads_cleanly_with_one_item_per_paper_newest_first(site: Site, issues: list[Issue]) -> None:
    feed = parsed(render_rss(site, issues))
    assert feed.version == "rss20"
    assert [e.id for e in feed.entries] == expected_order(issues)
    newest = issues[0].entries[0]
    first = feed.entries[0]
    assert first.title == newest.title_en
    assert first.link == f"https://arxiv.org/abs/{newest.id}"
    assert first.published_parsed is not None
    assert feed.feed.link == site.url
    assert feed.feed.language == "zh-CN"


def test_rss_channel_follows_the_best_practices_profile(site: Site, issues: list[Issue]) -> None:
    root = xml(render_rss(site, issues))
    channel = root.find("channel")
    assert channel is not None
    # The channel link is the site, not the feed (feedgen takes the LAST link() call).
    assert channel.xpath("link/text()") == [site.url]
    assert channel.xpath("atom:link[@rel='self']/@href", namespaces=NS) == [site.link("rss.xml")]
    assert channel.xpath("atom:link[@rel='self']/@type", namespaces=NS) == ["application/rss+xml"]
    for tag in ("title", "description", "language", "lastBuildDate", "generator"):
        assert len(channel.findall(tag)) == 1, tag
    items = channel.findall("item")
    assert len(items) == sum(len(i.entries) for i in issues)
    for item in items:
        assert len(item.findall("guid")) == 1
        assert item.findtext("guid")
        assert RFC822.match(item.findtext("pubDate") or ""), item.findtext("pubDate")
        assert item.xpath("content:encoded/text()", namespaces=NS)
        assert item.findtext("description")
        assert item.findtext("link", "").startswith("https://")
        title = item.findtext("title") or ""
        assert "<" not in title and "&lt;" not in title
    # lastBuildDate is the newest item time: no clock involved.
    build = parsedate_to_datetime(channel.findtext("lastBuildDate") or "")
    assert build == issues[0].published


def test_rss_dates_are_distinct_and_timezone_aware(site: Site, issues: list[Issue]) -> None:
    feed = parsed(render_rss(site, issues))
    dates = [parsedate_to_datetime(e.published) for e in feed.entries]
    assert all(d.tzinfo is not None for d in dates)
    assert dates == sorted(dates, reverse=True)
    assert len(set(dates)) == len(dates)
    assert dates[0] == issues[0].entry_published(0)


def test_rss_guid_is_a_permalink_only_when_it_is_the_link(site: Site) -> None:
    issue = golden_issues()[0]
    root = xml(render_rss(site, [issue]))
    arxiv, _, other = root.findall("channel/item")
    assert arxiv.find("guid").get("isPermaLink") == "true"  # type: ignore[union-attr]
    assert arxiv.findtext("guid") == arxiv.findtext("link")
    # A non-arXiv paper: the id is the normalized URL, the link is the URL as written.
    assert other.findtext("guid") == "https://openreview.net/forum?id=abc123"
    assert other.find("guid").get("isPermaLink") == "false"  # type: ignore[union-attr]
    assert other.findtext("link") == "https://openreview.net/forum?id=abc123&noteId=xyz"


# ------------------------------------------------------------------------------------------------ Atom


def test_atom_has_exactly_one_feed_id_title_updated_author(site: Site, issues: list[Issue]) -> None:
    data = render_atom(site, issues)
    root = xml(data)
    for tag in ("id", "title", "updated", "author"):
        assert len(root.xpath(f"atom:{tag}", namespaces=NS)) == 1, tag
    assert root.xpath("atom:id/text()", namespaces=NS) == [FEED_ID]
    assert root.xpath("atom:author/atom:name/text()", namespaces=NS) == [site.author]
    assert root.xpath("atom:link[@rel='self']/@href", namespaces=NS) == [site.link("atom.xml")]
    assert root.xpath("atom:link[@rel='alternate']/@href", namespaces=NS) == [site.url]
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "zh-CN"
    feed = parsed(data)
    assert feed.version == "atom10"
    assert feed.feed.id == FEED_ID
    assert datetime.fromisoformat(feed.feed.updated) == issues[0].published


def test_atom_entries_have_ids_and_distinct_updated_times(site: Site, issues: list[Issue]) -> None:
    root = xml(render_atom(site, issues))
    entries = root.xpath("atom:entry", namespaces=NS)
    assert len(entries) == sum(len(i.entries) for i in issues)
    updated = []
    for entry in entries:
        assert len(entry.xpath("atom:id", namespaces=NS)) == 1
        assert len(entry.xpath("atom:updated", namespaces=NS)) == 1
        assert entry.xpath("atom:content/@type", namespaces=NS) == ["html"]
        updated.append(entry.xpath("string(atom:updated)", namespaces=NS))
    assert len(set(updated)) == len(updated), "two entries share atom:updated"
    feed = parsed(render_atom(site, issues))
    assert [e.id for e in feed.entries] == expected_order(issues)
    for entry in feed.entries:
        assert datetime.fromisoformat(entry.updated).tzinfo is not None
        assert datetime.fromisoformat(entry.published).tzinfo is not None
        assert entry.link.startswith("https://")
        assert entry.title_detail.type == "text/plain"


def test_feed_updated_is_the_newest_item_update(site: Site, issues: list[Issue]) -> None:
    late = datetime(2024, 10, 1, 12, 0, tzinfo=UTC)
    older = issues[1]
    corrected = replace(older, entries=(replace(older.entries[0], revised=late), *older.entries[1:]))
    root = xml(render_atom(site, [issues[0], corrected, issues[2]]))
    assert datetime.fromisoformat(root.xpath("string(atom:updated)", namespaces=NS)) == late


# ------------------------------------------------------------------------------------------------ JSON Feed


def test_json_feed_1_1(site: Site, issues: list[Issue]) -> None:
    data = render_json_feed(site, issues)
    feed = json.loads(data)
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["title"] == site.title
    assert feed["home_page_url"] == site.url
    assert feed["feed_url"] == site.link("feed.json")
    assert feed["authors"] == [{"name": site.author}]
    assert feed["language"] == "zh-CN"
    assert [item["id"] for item in feed["items"]] == expected_order(issues)
    for item in feed["items"]:
        assert item["content_html"].startswith("<p")
        assert item["url"].startswith("https://")
        assert datetime.fromisoformat(item["date_published"]).tzinfo is not None
    # UTF-8, not \u escapes: readable and smaller.
    assert "想象你自己".encode() in data
    assert b"\\u" not in data


# ------------------------------------------------------------------------------------------------ items


def test_only_the_newest_feed_max_items_are_included(issues: list[Issue], env: jinja2.Environment) -> None:
    small = make_site(feed_max_items=10)
    newest_ten = expected_order(issues)[:10]
    assert [e.id for e in parsed(render_rss(small, issues)).entries] == newest_ten
    assert [e.id for e in parsed(render_atom(small, issues)).entries] == newest_ten
    assert [i["id"] for i in json.loads(render_json_feed(small, issues))["items"]] == newest_ten
    # issues.xml carries the issues those items come from (issue 3 has 7 papers, issue 2 the other 3).
    per_issue = parsed(render_issues_feed(small, issues, env))
    assert [e.id for e in per_issue.entries] == [issue_entry_id(small, 3), issue_entry_id(small, 2)]


def test_each_paper_item_carries_the_full_abstract_linkified(site: Site, issues: list[Issue]) -> None:
    feed = parsed(render_atom(site, issues))
    by_id = {e.id: e for e in feed.entries}
    for issue in issues:
        for entry in issue.entries:
            html = by_id[paper_id(entry)].content[0].value
            fragment = lxml.html.fragment_fromstring(html, create_parent=True)
            text = fragment.text_content()
            assert entry.title_en in text and entry.title_zh in text
            for paragraph in entry.abstract:
                assert paragraph in text
            assert f"https://arxiv.org/abs/{entry.id}" in fragment.xpath("//a/@href")
    yesbut = by_id["https://arxiv.org/abs/2409.13592"].content[0].value
    # The URL stops before the Chinese text that follows it.
    assert 'href="https://github.com/abhi1nandy2/yesbut_dataset"' in yesbut


def test_a_corrected_entry_keeps_its_id_and_gets_the_new_updated_time(site: Site, issues: list[Issue]) -> None:
    revised_at = datetime(2024, 9, 25, 10, 30, tzinfo=SHANGHAI)
    issue = issues[0]
    corrected_entry = replace(issue.entries[2], title_zh="更正后的标题", revised=revised_at)
    corrected = replace(issue, entries=(*issue.entries[:2], corrected_entry, *issue.entries[3:]))
    before = {e.id: e for e in parsed(render_atom(site, issues)).entries}
    after = {e.id: e for e in parsed(render_atom(site, [corrected, *issues[1:]])).entries}
    assert before.keys() == after.keys()
    key = paper_id(issue.entries[2])
    assert datetime.fromisoformat(after[key].updated) == revised_at
    assert after[key].published == before[key].published
    assert "更正后的标题" in after[key].content[0].value
    rss = parsed(render_rss(site, [corrected, *issues[1:]]))
    assert [e.id for e in rss.entries] == expected_order(issues)
    item = next(i for i in json.loads(render_json_feed(site, [corrected]))["items"] if i["id"] == key)
    assert datetime.fromisoformat(item["date_modified"]) == revised_at


def test_item_ids_survive_a_site_move(issues: list[Issue], env: jinja2.Environment) -> None:
    here, moved = make_site(), make_site(url="https://new-home.example.net/papers/")
    for render in (render_rss, render_atom):
        assert [e.id for e in parsed(render(here, issues)).entries] == [
            e.id for e in parsed(render(moved, issues)).entries
        ]
    a, b = parsed(render_issues_feed(here, issues, env)), parsed(render_issues_feed(moved, issues, env))
    assert a.feed.id == b.feed.id == issues_feed_id(here)
    assert [e.id for e in a.entries] == [e.id for e in b.entries]
    assert b.entries[0].link == "https://new-home.example.net/papers/issues/3/"


def test_feed_items_times_come_from_the_issue(site: Site, issues: list[Issue]) -> None:
    items = feed_items(site, issues)
    assert items[0].published == issues[0].published
    assert items[1].published == issues[0].published - timedelta(seconds=1)
    assert len({item.updated for item in items}) == len(items)


# ------------------------------------------------------------------------------------------------ issues.xml


def test_issues_feed_has_one_entry_per_issue_with_the_whole_issue(
    site: Site, issues: list[Issue], env: jinja2.Environment
) -> None:
    data = render_issues_feed(site, issues, env)
    feed = parsed(data)
    assert feed.version == "atom10"
    assert feed.feed.id == issues_feed_id(site) != site.feed_id
    assert feed.feed.id.startswith("urn:uuid:")
    assert [e.id for e in feed.entries] == [issue_entry_id(site, n) for n in (3, 2, 1)]
    # Derived from the permanent feed id: uuid5(feed_id, "issue/<n>").
    assert issue_entry_id(site, 3) == uuid.uuid5(uuid.UUID(FEED_ID), "issue/3").urn
    assert [e.link for e in feed.entries] == [site.link(f"issues/{n}/") for n in (3, 2, 1)]
    for entry, issue in zip(feed.entries, issues, strict=True):
        assert entry.title == f"{site.title} 第 {issue.number} 期"
        assert datetime.fromisoformat(entry.updated) == issue.updated
        html = entry.content[0].value
        for paper in issue.entries:
            assert paper.title_en in lxml.html.fragment_fromstring(html, create_parent=True).text_content()
            # Permalinks are absolute inside a feed.
            assert f'href="{site.link(f"issues/{issue.number}/")}#{paper.anchor}"' in html
    root = xml(data)
    for tag in ("id", "title", "updated", "author"):
        assert len(root.xpath(f"atom:{tag}", namespaces=NS)) == 1, tag
    assert root.xpath("atom:link[@rel='self']/@href", namespaces=NS) == [site.link("issues.xml")]
    assert root.xpath("atom:link[@rel='alternate']/@href", namespaces=NS) == [site.url]


def test_render_feeds_returns_all_four_files(site: Site, issues: list[Issue], env: jinja2.Environment) -> None:
    bundle = render_feeds(site, issues, env)
    assert sorted(bundle) == ["atom.xml", "feed.json", "issues.xml", "rss.xml"]
    assert bundle["rss.xml"] == render_rss(site, issues)


def test_an_empty_feed_is_still_valid_and_deterministic(site: Site, env: jinja2.Environment) -> None:
    for name, data in render_feeds(site, [], env).items():
        if name.endswith(".xml"):
            assert parsed(data).entries == []
    assert render_feeds(site, [], env) == render_feeds(site, [], env)


# ------------------------------------------------------------------------------------------------ safety


@pytest.mark.parametrize("feed_name", ["rss.xml", "atom.xml", "feed.json", "issues.xml"])
def test_hostile_seed_text_never_becomes_executable(feed_name: str, env: jinja2.Environment) -> None:
    evil_site = make_site(title='周报 <script>alert("t")</script>', author="<img src=x onerror=alert(1)>")
    data = render_feeds(evil_site, hostile_issues(), env)[feed_name]
    if feed_name == "feed.json":
        items = json.loads(data)["items"]
        contents = [item["content_html"] for item in items]
        links = [item.get("url", "https://") for item in items]
    else:
        feed = parsed(data)
        contents = [e.content[0].value for e in feed.entries]
        links = [link.href for e in feed.entries for link in e.get("links", [])]
        root = xml(data)
        # Titles are text: the markup is escaped, never parsed into elements.
        assert not root.xpath("//*[local-name()='title']/*")
        raw = b"".join(
            lxml.etree.tostring(t)
            for t in root.xpath("//*[local-name()='content' or local-name()='encoded' or local-name()='description']")
        )
        assert b"<script" not in raw.lower()
    assert (contents and len(contents) == len(hostile_issues()[0].entries)) or feed_name == "issues.xml"
    for html in contents:
        assert_safe_html(html, feed_name)
        assert "javascript:" not in "".join(lxml.html.fragment_fromstring(html, True).xpath("//@href"))
    for link in links:
        assert urlsplit(link).scheme in {"http", "https"}, link


def test_a_javascript_url_gives_no_link_at_all(site: Site) -> None:
    feed = json.loads(render_json_feed(site, hostile_issues()))
    by_title = {item["title"]: item for item in feed["items"]}
    assert "url" not in by_title["<b>bold</b>"]
    root = xml(render_rss(site, hostile_issues()))
    item = root.xpath("channel/item[title='<b>bold</b>']")[0]
    assert item.find("link") is None
    assert item.find("guid").get("isPermaLink") == "false"


# ------------------------------------------------------------------------------------------------ determinism


def test_rendering_twice_gives_identical_bytes(site: Site, issues: list[Issue], env: jinja2.Environment) -> None:
    assert render_feeds(site, issues, env) == render_feeds(site, list(issues), make_environment())


def test_no_feedgen_version_or_clock_in_the_output(site: Site, issues: list[Issue]) -> None:
    for data in (render_rss(site, issues), render_atom(site, issues)):
        root = xml(data)
        assert root.xpath("string(//*[local-name()='generator'])") == site.generator
        assert not root.xpath("//*[local-name()='generator']/@version")


@pytest.mark.parametrize("name", ["rss.xml", "atom.xml", "feed.json", "issues.xml"])
def test_golden_feeds(name: str, site: Site, env: jinja2.Environment) -> None:
    golden(name, render_feeds(site, golden_issues(), env)[name])


# ------------------------------------------------------------------------------------------------ topic feeds


def test_topic_feeds_carry_only_that_topics_papers_with_their_own_identity(site: Site, issues: list[Issue]) -> None:
    diffusion = next(t for t in site.topics if t.slug == "diffusion")
    bundle = render_topic_feeds(site, diffusion, issues)
    assert sorted(bundle) == ["topics/diffusion/atom.xml", "topics/diffusion/feed.json", "topics/diffusion/rss.xml"]
    expected = [i for i in expected_order(issues) if any(
        paper_id(e) == i and "diffusion" in assign_topics(e, site.topics) for issue in issues for e in issue.entries
    )]  # fmt: skip
    assert len(expected) >= 5
    rss, atom = parsed(bundle["topics/diffusion/rss.xml"]), parsed(bundle["topics/diffusion/atom.xml"])
    assert [e.id for e in rss.entries] == [e.id for e in atom.entries] == expected
    # The same paper keeps the same id in every feed that carries it.
    assert set(expected) <= {e.id for e in parsed(render_atom(site, issues)).entries}
    root = xml(bundle["topics/diffusion/atom.xml"])
    assert root.xpath("atom:id/text()", namespaces=NS) == [topic_feed_id(site, "diffusion")]
    assert topic_feed_id(site, "diffusion") != site.feed_id
    assert root.xpath("atom:title/text()", namespaces=NS) == [f"{site.title} · {diffusion.name_zh}"]
    assert root.xpath("atom:link[@rel='self']/@href", namespaces=NS) == [site.link("topics/diffusion/atom.xml")]
    assert root.xpath("atom:link[@rel='alternate']/@href", namespaces=NS) == [site.link("topics/diffusion/")]
    for tag in ("id", "title", "updated", "author"):
        assert len(root.xpath(f"atom:{tag}", namespaces=NS)) == 1, tag
    channel = xml(bundle["topics/diffusion/rss.xml"]).find("channel")
    assert channel is not None
    assert channel.xpath("link/text()") == [site.link("topics/diffusion/")]
    assert channel.xpath("atom:link[@rel='self']/@href", namespaces=NS) == [site.link("topics/diffusion/rss.xml")]
    for item in channel.findall("item"):
        assert item.findtext("guid") and RFC822.match(item.findtext("pubDate") or "")
    feed = json.loads(bundle["topics/diffusion/feed.json"])
    assert feed["feed_url"] == site.link("topics/diffusion/feed.json")
    assert [i["id"] for i in feed["items"]] == expected


def test_a_topic_feed_is_bounded_like_the_main_feed(issues: list[Issue]) -> None:
    small = make_site(feed_max_items=2)
    llm = next(t for t in small.topics if t.slug == "llm")
    assert len(parsed(render_topic_feeds(small, llm, issues)["topics/llm/atom.xml"]).entries) == 2


def test_websub_hub_is_announced_in_every_feed(issues: list[Issue], env: jinja2.Environment) -> None:
    hubbed = make_site(websub_hub="https://hub.example.net/")
    bundle = render_feeds(hubbed, issues, env)
    for name in ("atom.xml", "issues.xml"):
        assert xml(bundle[name]).xpath("atom:link[@rel='hub']/@href", namespaces=NS) == ["https://hub.example.net/"]
    rss = xml(bundle["rss.xml"])
    assert rss.xpath("channel/atom:link[@rel='hub']/@href", namespaces=NS) == ["https://hub.example.net/"]
    assert rss.xpath("channel/link/text()") == [hubbed.url]
    assert json.loads(bundle["feed.json"])["hubs"] == [{"type": "WebSub", "url": "https://hub.example.net/"}]
    assert parsed(bundle["rss.xml"]).entries


def test_issues_feed_links_to_rfc_5005_archive_documents(
    site: Site, issues: list[Issue], env: jinja2.Environment
) -> None:
    current = xml(render_issues_feed(site, issues, env, archive_pages=2))
    assert current.xpath("atom:link[@rel='prev-archive']/@href", namespaces=NS) == [site.link("archive/issues-2.xml")]
    history = "http://purl.org/syndication/history/1.0"
    assert not current.xpath("//fh:archive", namespaces={"fh": history})
    page_1 = render_issues_archive(site, 1, issues, env, last_page=False)
    root = xml(page_1)
    assert root.xpath("fh:archive", namespaces={"fh": history})
    assert root.xpath("atom:link[@rel='current']/@href", namespaces=NS) == [site.link("issues.xml")]
    assert root.xpath("atom:link[@rel='next-archive']/@href", namespaces=NS) == [site.link("archive/issues-2.xml")]
    assert not root.xpath("atom:link[@rel='prev-archive']", namespaces=NS)
    assert root.xpath("atom:link[@rel='self']/@href", namespaces=NS) == [site.link("archive/issues-1.xml")]
    feed = parsed(page_1)
    assert feed.feed.id == issues_feed_id(site)
    assert [e.id for e in feed.entries] == [issue_entry_id(site, n) for n in (3, 2, 1)]
