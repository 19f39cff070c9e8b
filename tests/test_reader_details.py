"""Small things readers notice: ranges of one ("第 1 期", not "第 1–1 期"), a topic named the same in both languages
said once, highlights of the text mail numbered in order, highlight links coloured as links in light and dark
mode, and a published copy of the email whose "Unsubscribe" does not lead to the signup form."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

import jinja2
import lxml.html
import pytest

from digest.model import Entry, Issue
from digest.render import make_environment
from digest.render.email import EmailOptions, render_email
from digest.render.site import TopicPaper, render_archive, render_issue_page, render_topic, render_topics_overview
from digest.topics import assign_topics
from tests import browser_util
from tests.conftest import Workspace
from tests.render_samples import PUBLISHED, make_site, seed_entries

SITE = make_site()
ARTIFACTS = Path(__file__).resolve().parent / ".artifacts"


@pytest.fixture(scope="module")
def env() -> jinja2.Environment:
    return make_environment()


def one_paper_issue(n: int) -> Issue:
    entry = Entry(
        id=f"2401.{n:05d}",
        title_en=f"Paper {n}",
        title_zh=f"论文 {n}",
        url=f"https://arxiv.org/abs/2401.{n:05d}",
        abstract=("摘要。",),
        source="seeds/x.md",
        line=n,
    )
    return Issue(n, PUBLISHED + timedelta(weeks=n), (entry,))


def text(data: bytes) -> str:
    return " ".join(lxml.html.document_fromstring(data).text_content().split())


def test_a_range_of_one_reads_as_one_number(env: jinja2.Environment) -> None:
    issues = [one_paper_issue(n) for n in range(51, 0, -1)]
    bundle = render_archive(SITE, issues[:50], 51, env, page_size=50)
    index = text(bundle["index.html"])
    assert "第 51 期" in index and "第 1–50 期" in index
    assert "–51" not in index and "51–51" not in index
    assert "往期归档：第 51 期" in text(bundle["archive/page-2.html"])
    topic = SITE.topics[0]
    pages = render_topic(SITE, topic, [TopicPaper(one_paper_issue(1), 0)], 1, env)
    page_1 = text(pages[f"topics/{topic.slug}/page-1.html"])
    assert "第 1 篇" in page_1 and "1–1" not in page_1


def test_a_topic_named_alike_in_both_languages_is_named_once(env: jinja2.Environment) -> None:
    science = next(t for t in SITE.topics if t.name_zh == t.name_en == "AI for Science")
    papers = [e for e in seed_entries() if assign_topics(e, SITE.topics)[0] == science.slug]
    issue = Issue(1, PUBLISHED, tuple(papers))
    page = lxml.html.document_fromstring(render_issue_page(SITE, issue, env))
    assert [" ".join(h.text_content().split()) for h in page.xpath("//h2[@class='topic-heading']")] == [
        "AI for Science"
    ]
    topic_page = render_topic(SITE, science, [TopicPaper(issue, 0)], 1, env)[f"topics/{science.slug}/index.html"]
    assert " ".join(lxml.html.document_fromstring(topic_page).xpath("string(//h1)").split()) == "AI for Science"
    overview = lxml.html.document_fromstring(render_topics_overview(SITE, {science.slug: 1}, env))
    headings = [" ".join(h.text_content().split()) for h in overview.xpath("//h2")]
    assert "AI for Science" in headings and "AI for Science AI for Science" not in headings
    email = render_email(SITE, issue, env)
    assert "AI for Science AI for Science" not in " ".join(lxml.html.fromstring(email.html).text_content().split())
    assert "AI for Science / AI for Science" not in email.text


def test_the_text_mails_highlights_are_numbered_in_order(env: jinja2.Environment) -> None:
    email = render_email(SITE, Issue(1, PUBLISHED, seed_entries()), env, options=EmailOptions(highlights=3))
    part = email.text.split("本周要点 / Highlights")[1].split("本期目录 / Contents")[0]
    numbered = [line.split(".")[0] for line in part.split("\n") if line[:1].isdigit()]
    assert numbered == ["1", "2", "3"]


def link_colours(html_path: Path, scheme: Literal["light", "dark"]) -> dict[str, str]:
    """Computed colours of a highlight link, a paper's quiet link and a paper's title link."""
    from playwright.sync_api import sync_playwright

    chromium = browser_util.find_chromium()
    assert chromium is not None, "Chromium is not available"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=browser_util.BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 375, "height": 812}, color_scheme=scheme)
            page.goto(html_path.resolve().as_uri(), wait_until="load")
            colours: dict[str, str] = page.evaluate(
                """() => ({
                    highlight: getComputedStyle(document.querySelector('p.p > a')).color,
                    link: getComputedStyle(document.querySelector('p.l > a')).color,
                    background: getComputedStyle(document.querySelector('.card td')).backgroundColor,
                })"""
            )
            return colours
        finally:
            browser.close()


def test_highlight_titles_are_coloured_as_links_in_light_and_dark_mode(env: jinja2.Environment) -> None:
    email = render_email(SITE, Issue(1, PUBLISHED, seed_entries()), env)
    path = ARTIFACTS / "reader_details" / "email.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(email.html, encoding="utf-8")
    light, dark = link_colours(path, "light"), link_colours(path, "dark")
    assert light["highlight"] == light["link"] == "rgb(26, 86, 219)"  # #1a56db on white: 6.7:1
    assert dark["highlight"] == dark["link"] == "rgb(138, 180, 248)"  # #8ab4f8 on #1a1d23: 8.1:1
    assert dark["background"] == "rgb(26, 29, 35)"


def test_the_published_copy_offers_subscribing_and_no_unsubscribe_link(workspace: Workspace) -> None:
    workspace.run("render", "--now", "2026-11-23T08:00:00+08:00")
    html = (workspace.site / "issues" / "1" / "email.html").read_text(encoding="utf-8")
    doc = lxml.html.fromstring(html)
    links = {" ".join(a.text_content().split()): a.get("href") for a in doc.xpath("//a")}
    assert not [label for label in links if "Unsubscribe" in label or "退订" in label or "Preferences" in label]
    assert links["订阅 / Subscribe"] == "https://digest.example.org/subscribe"
    assert "use the personal links in the mail you received" in " ".join(doc.text_content().split())
    plain = (workspace.site / "issues" / "1" / "email.txt").read_text(encoding="utf-8")
    assert "Unsubscribe:" not in plain and "Preferences:" not in plain
    assert "订阅 / Subscribe: https://digest.example.org/subscribe" in plain
    assert "use the personal links in the mail you received" in plain
