"""Specification of the web archive: issue pages, the index and its stable archive pages."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import jinja2
import lxml.html
import pytest

from digest.model import Entry, Issue, Site
from digest.render import make_environment
from digest.render.search import MANIFEST, render_search_manifest, render_search_page, render_search_shard, shard_path
from digest.render.site import (
    TopicPaper,
    archive_issue_numbers,
    archive_page_count,
    archive_page_number,
    archive_page_path,
    archive_pages_for,
    pages_for,
    render_archive,
    render_archive_page,
    render_issue_page,
    render_topic,
    render_topic_page,
    render_topics_overview,
    topic_page_path,
)
from digest.topics import assign_topics
from tests import browser_util
from tests.render_samples import (
    PUBLISHED,
    assert_safe_html,
    golden,
    golden_issues,
    hostile_issues,
    make_site,
)

ARTIFACTS = Path(__file__).resolve().parent / ".artifacts"
FEED_TYPES = {
    "rss.xml": "application/rss+xml",
    "atom.xml": "application/atom+xml",
    "feed.json": "application/feed+json",
    "issues.xml": "application/atom+xml",
}


def fake_issues(count: int) -> list[Issue]:
    """`count` small weekly issues, newest first; each paper title names its issue (issue n's data never
    depends on `count`)."""
    issues = []
    for n in range(1, count + 1):
        entry = Entry(
            id=f"2401.{n:05d}",
            title_en=f"Paper of issue {n}",
            title_zh=f"第 {n} 期的论文",
            url=f"https://arxiv.org/abs/2401.{n:05d}",
            abstract=("摘要。",),
            source="seeds/fake.txt",
            line=n,
        )
        issues.append(Issue(n, PUBLISHED + timedelta(weeks=n), (entry,)))
    return issues[::-1]


def page(data: bytes) -> lxml.html.HtmlElement:
    return lxml.html.document_fromstring(data)


def issue_numbers_listed(data: bytes) -> list[int]:
    hrefs = page(data).xpath("//ol[@class='issues']/li/h2/a/@href")
    return [int(h.split("/")[-2]) for h in hrefs]


def assert_page_basics(doc: lxml.html.HtmlElement, site: Site) -> None:
    assert doc.get("lang") == "zh-CN"
    assert doc.xpath("//head/meta[@charset='utf-8']")
    assert doc.xpath("//head/meta[@name='viewport']/@content") == ["width=device-width, initial-scale=1"]
    alternates = {a.get("href"): a.get("type") for a in doc.xpath("//head/link[@rel='alternate']")}
    assert alternates == {site.link(name): media for name, media in FEED_TYPES.items()}
    assert "overflow-wrap: anywhere" in doc.xpath("string(//head/style)")
    assert "PingFang SC" in doc.xpath("string(//head/style)")


# ------------------------------------------------------------------------------------------------ issue page


def test_issue_page_shows_every_paper_in_full(site: Site, issues: list[Issue], env: jinja2.Environment) -> None:
    issue = issues[1]  # issue 2 of 3
    doc = page(render_issue_page(site, issue, env, newest_number=3))
    assert_page_basics(doc, site)
    assert doc.xpath("string(//h1)") == f"{site.title} 第 2 期"
    articles = doc.xpath("//article")
    by_anchor = {e.anchor: e for e in issue.entries}
    assert sorted(a.get("id") for a in articles) == sorted(by_anchor)
    for article in articles:
        entry = by_anchor[article.get("id")]
        text = article.text_content()
        assert entry.title_en in text and entry.title_zh in text
        for paragraph in entry.abstract:
            assert paragraph in text
        assert f"https://arxiv.org/abs/{entry.id}" in article.xpath(".//a/@href")
        assert f"#{entry.anchor}" in article.xpath(".//a/@href")
    # The numbered table of contents jumps to the papers, in page order.
    assert doc.xpath("//nav[@class='toc']//li/a/@href") == [f"#{a.get('id')}" for a in articles]
    assert doc.xpath("//nav[@class='toc']//li/@value") == [str(n) for n in range(1, len(articles) + 1)]


def test_issue_page_navigation_is_relative(site: Site, issues: list[Issue], env: jinja2.Environment) -> None:
    middle = page(render_issue_page(site, issues[1], env, newest_number=3))
    hrefs = middle.xpath("//a/@href")
    assert "../../index.html" in hrefs
    assert middle.xpath("//a[@rel='prev']/@href") == ["../1/index.html"]
    assert middle.xpath("//a[@rel='next']/@href") == ["../3/index.html"]
    first = page(render_issue_page(site, issues[2], env, newest_number=3))
    assert first.xpath("//a[@rel='prev']") == []
    newest = page(render_issue_page(site, issues[0], env))  # no newest_number: it is the newest
    assert newest.xpath("//a[@rel='next']") == []
    assert newest.xpath("//a[@rel='prev']/@href") == ["../2/index.html"]


def test_issue_page_linkifies_urls_in_chinese_text(site: Site, env: jinja2.Environment) -> None:
    issue = golden_issues()[0]
    doc = page(render_issue_page(site, issue, env))
    links = doc.xpath("//div[@class='abstract']//a/@href")
    assert "https://github.com/abhi1nandy2/yesbut_dataset" in links
    assert "https://example.com/code" in links


def test_issue_page_golden(site: Site, env: jinja2.Environment) -> None:
    golden("issue_page.html", render_issue_page(site, golden_issues()[0], env))


def test_pages_escape_hostile_text(env: jinja2.Environment) -> None:
    evil_site = make_site(title='周报 <script>alert("t")</script>', description="<img src=x onerror=alert(1)>")
    issue = replace(hostile_issues()[0], number=1)
    outputs = {"issue": render_issue_page(evil_site, issue, env)}
    outputs.update(render_archive(evil_site, [issue], 1, env, page_size=5))
    for name, data in outputs.items():
        html = data.decode()
        # The one script is the JSON-LD data block: hostile text stays inside it, as JSON strings.
        json_ld, _, rest = html.partition('<script type="application/ld+json">')
        if rest:
            block, _, after = rest.partition("</script>")
            assert not set("<>&") & set(block), "JSON-LD must escape < > & so that seed text cannot close it"
            graph = json.loads(block)["@graph"]
            assert {a["headline"] for a in graph} == {e.title_zh for e in issue.entries}
            assert all(a.get("url", "https://").startswith("https://") for a in graph)
            html = json_ld + after
        assert_safe_html(html, name)
        assert "<script" not in html.lower()
        assert "<b>bold</b>" not in html


# ------------------------------------------------------------------------------------------------ archive


def test_archive_pages_are_numbered_from_the_oldest_issue() -> None:
    assert archive_page_number(1) == 1
    assert archive_page_number(50) == 1
    assert archive_page_number(51) == 2
    assert archive_page_count(0) == 0
    assert archive_page_count(120) == 3
    assert archive_page_path(3) == "archive/page-3.html"
    pages = archive_pages_for(range(1, 121))
    assert sorted(pages) == [1, 2, 3]
    assert pages[1] == tuple(range(50, 0, -1))
    assert pages[3] == tuple(range(120, 100, -1))
    assert list(archive_issue_numbers(120)) == list(range(120, 70, -1))
    assert list(archive_issue_numbers(3)) == [3, 2, 1]


def test_archive_with_120_issues(site: Site, env: jinja2.Environment) -> None:
    everything = fake_issues(120)
    needed = [i for i in everything if i.number in archive_issue_numbers(120)]
    bundle = render_archive(site, needed, 120, env, page_size=50)
    assert sorted(bundle) == ["archive/page-3.html", "index.html"]
    assert issue_numbers_listed(bundle["index.html"]) == list(range(120, 70, -1))
    assert issue_numbers_listed(bundle["archive/page-3.html"]) == list(range(120, 100, -1))
    index = page(bundle["index.html"])
    assert_page_basics(index, site)
    assert index.xpath("//nav[@class='pages']//a/@href") == [
        "archive/page-3.html",
        "archive/page-2.html",
        "archive/page-1.html",
    ]
    assert "issues/120/index.html" in index.xpath("//a/@href")
    assert "Paper of issue 120" in index.text_content()
    # Full pages come from render_archive_page (rebuild renders them all).
    grouped = archive_pages_for(i.number for i in everything)
    by_number = {i.number: i for i in everything}
    page_1 = render_archive_page(site, 1, [by_number[n] for n in grouped[1]], env, page_size=50)
    assert issue_numbers_listed(page_1) == list(range(50, 0, -1))
    doc = page(page_1)
    assert_page_basics(doc, site)
    assert "../index.html" in doc.xpath("//a/@href")
    assert "../issues/50/index.html" in doc.xpath("//a/@href")
    page_3 = page(bundle["archive/page-3.html"])
    assert page_3.xpath("//a[@rel='prev']/@href") == ["page-2.html"]


def test_a_new_issue_changes_only_the_index_and_the_last_page(site: Site, env: jinja2.Environment) -> None:
    def site_files(count: int) -> dict[str, bytes]:
        everything = fake_issues(count)
        by_number = {i.number: i for i in everything}
        files = {
            archive_page_path(k): render_archive_page(site, k, [by_number[n] for n in numbers], env)
            for k, numbers in archive_pages_for(by_number).items()
        }
        needed = [by_number[n] for n in archive_issue_numbers(count)]
        from_archive = render_archive(site, needed, count, env)
        for path, data in from_archive.items():
            if path != "index.html":
                assert files[path] == data, "render_archive and a rebuild disagree"
        files.update(from_archive)
        return files

    for before_count in (120, 149, 150):
        before, after = site_files(before_count), site_files(before_count + 1)
        changed = sorted(p for p in after if before.get(p) != after[p])
        last = archive_page_path(archive_page_number(before_count + 1))
        assert changed == sorted({"index.html", last}), before_count


def test_render_archive_refuses_missing_issues(site: Site, env: jinja2.Environment) -> None:
    with pytest.raises(ValueError, match="needs issues"):
        render_archive(site, fake_issues(120)[:10], 120, env)
    with pytest.raises(ValueError, match="page 2"):
        render_archive_page(site, 2, fake_issues(3), env)


def test_an_empty_archive_is_a_friendly_page(site: Site, env: jinja2.Environment) -> None:
    bundle = render_archive(site, [], 0, env)
    assert list(bundle) == ["index.html"]
    doc = page(bundle["index.html"])
    assert_page_basics(doc, site)
    assert "还没有发布任何一期" in doc.text_content()
    assert site.link("rss.xml") in doc.xpath("//main//a/@href")


def test_site_rendering_is_deterministic(site: Site, issues: list[Issue], env: jinja2.Environment) -> None:
    other = make_environment()
    assert render_issue_page(site, issues[0], env) == render_issue_page(site, issues[0], other)
    assert render_archive(site, issues, 3, env) == render_archive(site, list(issues), 3, other)


def test_archive_golden(site: Site, issues: list[Issue], env: jinja2.Environment) -> None:
    golden("index.html", render_archive(site, issues, 3, env)["index.html"])


# ------------------------------------------------------------------------------------------------ topics


def test_topic_pages_list_bilingual_titles_newest_first_with_feeds(
    site: Site, issues: list[Issue], env: jinja2.Environment
) -> None:
    diffusion = next(t for t in site.topics if t.slug == "diffusion")
    papers = topic_papers(site, issues, "diffusion")
    bundle = render_topic(site, diffusion, papers, len(papers), env)
    assert sorted(bundle) == ["topics/diffusion/index.html", "topics/diffusion/page-1.html"]
    doc = page(bundle["topics/diffusion/index.html"])
    zh = doc.xpath("//ol[@class='papers']/li/a[@class='zh']/text()")
    assert zh == [p.entry.title_zh for p in papers]
    en = doc.xpath("//ol[@class='papers']/li/span[@class='en']")
    assert [e.text for e in en] == [p.entry.title_en for p in papers] and {e.get("lang") for e in en} == {"en"}
    hrefs = doc.xpath("//ol[@class='papers']/li/a[@class='zh']/@href")
    assert hrefs[0] == f"../../issues/{papers[0].issue.number}/index.html#{papers[0].entry.anchor}"
    alternates = doc.xpath("//head/link[@rel='alternate']/@href")
    assert alternates[:3] == [site.link(f"topics/diffusion/{n}") for n in ("rss.xml", "atom.xml", "feed.json")]
    assert site.link("rss.xml") in alternates
    # Every page links to every topic and to the search page.
    for data in (bundle["topics/diffusion/index.html"], render_issue_page(site, issues[0], env)):
        links = page(data).xpath("//a/@href")
        assert "../../search/index.html" in links and "../../topics/index.html" in links
        assert {f"../../topics/{t.slug}/index.html" for t in site.topics} <= set(links)


def test_the_archive_shows_chinese_then_english_titles(
    site: Site, issues: list[Issue], env: jinja2.Environment
) -> None:
    doc = page(render_archive(site, issues, 3, env)["index.html"])
    first = doc.xpath("//ul[@class='titles']/li")[0]
    assert [c.get("class") for c in first] == ["zh", "en"]
    assert first[0].text == issues[0].entries[0].title_zh and first[1].get("lang") == "en"


def fake_topic_papers(count: int) -> list[TopicPaper]:
    return [TopicPaper(issue, 0) for issue in fake_issues(count)]


def test_topic_pages_are_stable_and_a_new_paper_changes_only_the_index_and_last_page(
    site: Site, env: jinja2.Environment
) -> None:
    topic = site.topics[0]

    def topic_files(count: int) -> dict[str, bytes]:
        newest = fake_topic_papers(count)
        oldest_first = newest[::-1]
        files = {
            topic_page_path(topic.slug, k): render_topic_page(
                site, topic, k, [oldest_first[r - 1] for r in sorted(ranks)], env
            )
            for k, ranks in pages_for(range(1, count + 1)).items()
        }
        incremental = render_topic(site, topic, newest[:50], count, env)
        for path, data in incremental.items():
            if path in files:
                assert files[path] == data, "render_topic and a rebuild disagree"
        files.update(incremental)
        return files

    for before_count in (49, 50, 120):
        before, after = topic_files(before_count), topic_files(before_count + 1)
        changed = sorted(p for p in after if before.get(p) != after[p])
        last = topic_page_path(topic.slug, (before_count) // 50 + 1)
        assert changed == sorted({f"topics/{topic.slug}/index.html", last}), before_count


# ------------------------------------------------------------------------------------------------ browser


def topic_papers(site: Site, issues: list[Issue], slug: str) -> list[TopicPaper]:
    """A topic's papers newest first, as the state's topic index lists them."""
    return [
        TopicPaper(issue, position)
        for issue in sorted(issues, key=lambda i: -i.number)
        for position in reversed(range(len(issue.entries)))
        if slug in assign_topics(issue.entries[position], site.topics)
    ]


def write_site(root: Path, site: Site, issues: list[Issue], env: jinja2.Environment) -> None:
    if root.exists():
        shutil.rmtree(root)
    files = render_archive(site, issues, len(issues), env)
    for issue in issues:
        files[f"issues/{issue.number}/index.html"] = render_issue_page(site, issue, env, newest_number=len(issues))
    counts = {}
    for topic in site.topics:
        papers = topic_papers(site, issues, topic.slug)
        counts[topic.slug] = len(papers)
        files.update(render_topic(site, topic, papers, len(papers), env))
    files["topics/index.html"] = render_topics_overview(site, counts, env)
    files.update(render_search_page(site, env))
    files[shard_path(1)] = render_search_shard(site, 1, issues)
    files[MANIFEST] = render_search_manifest(1)
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)


@pytest.mark.slow
@pytest.mark.parametrize("width", [375, 1000])
@pytest.mark.parametrize("which", ["index.html", "issues/3/index.html", "issues/1/index.html"])
def test_pages_fit_the_window(
    which: str, width: int, site: Site, issues: list[Issue], env: jinja2.Environment, tmp_path: Path
) -> None:
    if browser_util.find_chromium() is None:
        pytest.fail("Chromium is needed for the browser tests (apt-get install -y chromium)")
    # A long unbroken URL in an abstract must wrap, not widen the page.
    long_url = "https://example.com/" + "a" * 200
    first = issues[-1]
    wide = Entry(**{**first.entries[0].__dict__, "abstract": (f"代码见 {long_url} 。",)})
    issues = [*issues[:-1], Issue(first.number, first.published, (wide, *first.entries[1:]))]
    write_site(tmp_path / "site", site, issues, env)
    png = ARTIFACTS / f"{which.replace('/', '_').removesuffix('.html')}-{width}.png"
    assert browser_util.measure_page(tmp_path / "site" / which, width, png) == width


SHOTS = Path("/tmp/shots-r")


@pytest.mark.slow
def test_search_finds_papers_by_chinese_and_english_words(
    site: Site, issues: list[Issue], env: jinja2.Environment, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    chromium = browser_util.find_chromium()
    if chromium is None:
        pytest.fail("Chromium is needed for the browser tests (apt-get install -y chromium)")
    write_site(tmp_path / "site", site, issues, env)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=browser_util.BROWSER_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1000, "height": 900})
            tab.goto((tmp_path / "site" / "search" / "index.html").as_uri())

            def results(query: str) -> list[str]:
                tab.fill("#q", query)
                tab.wait_for_function("document.getElementById('status').textContent.startsWith('找到')")
                return [str(t) for t in tab.locator("#results .en").all_text_contents()]

            chinese = results("扩散")
            english = results("diffusion")
            phrase = results("扩散模型")
            for found in (chinese, english, phrase):
                assert "Material Anything: Generating Materials for Any 3D Object via Diffusion" in found
                assert "CAT4D: Create Anything in 4D with Multi-View Video Diffusion Models" in found
                assert "Prithvi WxC: Foundation Model for Weather and Climate" not in found
            assert "Imagine yourself: Tuning-Free Personalized Image Generation" in chinese
            assert results("robot 机器人") == [
                "RACER: Rich Language-Guided Failure Recovery Policies for Imitation Learning"
            ]
            tab.fill("#q", "no-such-word-anywhere")
            tab.wait_for_function("document.getElementById('status').textContent.startsWith('没有')")
            links = tab.locator("#results a").count()
            assert links == 0
        finally:
            browser.close()


@pytest.mark.slow
@pytest.mark.parametrize("width", [375, 1280])
@pytest.mark.parametrize(
    "which", ["index.html", "issues/3/index.html", "topics/diffusion/index.html", "search/index.html?q=扩散"]
)
def test_screenshots_of_the_reader_pages(
    which: str, width: int, site: Site, issues: list[Issue], env: jinja2.Environment, tmp_path: Path
) -> None:
    """Screenshots for people to look at (in /tmp/shots-r/), and no page wider than the window."""
    if browser_util.find_chromium() is None:
        pytest.fail("Chromium is needed for the browser tests (apt-get install -y chromium)")
    write_site(tmp_path / "site", site, issues, env)
    path, _, query = which.partition("?")
    name = path.replace("/", "_").removesuffix(".html")
    png = SHOTS / f"{name}-{width}.png"
    assert browser_util.measure_page(tmp_path / "site" / path, width, png, query=query) == width
