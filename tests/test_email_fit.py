"""An issue too long for one email is still published: the email gives up its parts in a fixed order (abstracts,
then the table of contents, then the English titles, then the tail of the list) and always links the issue page.

150 papers with the issue cap raised used to make `render` fail and publish nothing (no site, no feeds): their
titles alone, listed twice, did not fit the 100 KB budget.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import feedparser
import jinja2
import lxml.html
import pytest

from digest.model import Entry, Issue, Site
from digest.render import make_environment
from digest.render.email import render_email
from digest.seeds import read_seeds
from digest.topics import DEFAULT_TOPICS
from tests.conftest import REPO, SAMPLE_SEEDS, Workspace

NOW = "2026-11-23T08:00:00+08:00"
BUDGET = 100_000  # email_max_bytes' default, under Gmail's 102 KB clipping limit
SITE = Site(
    title="AI 论文周报",
    url="https://digest.example.org/",
    author="digest",
    feed_id="urn:uuid:6f1c2d3e-0000-4000-8000-000000000001",
    timezone="Asia/Shanghai",
    topics=DEFAULT_TOPICS,
)
PUBLISHED = datetime(2026, 11, 23, 8, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
VIEW_URL = "https://digest.example.org/issues/1/"


def sample_papers(count: int) -> tuple[Entry, ...]:
    """`count` papers with the sample's real titles, abstracts and topics, each with its own arXiv id."""
    sample = read_seeds(SAMPLE_SEEDS, display_root=REPO).entries
    return tuple(
        replace(sample[i % len(sample)], id=f"2601.{i:05d}", url=f"https://arxiv.org/abs/2601.{i:05d}")
        for i in range(count)
    )


def seed_text(papers: tuple[Entry, ...]) -> str:
    return "".join(f"## {e.title_en}\n[{e.title_zh}]({e.url})\n\n" + "\n\n".join(e.abstract) + "\n\n" for e in papers)


@pytest.fixture(scope="module")
def env() -> jinja2.Environment:
    return make_environment()


def listed_numbers(html: str) -> list[int]:
    """The numbers of the papers the email names: as headings, in the contents or in the compact list."""
    doc = lxml.html.fromstring(html)
    return [int(p.text_content().split(".")[0]) for p in doc.xpath("//h3 | //p[@class='t']")]


@pytest.mark.parametrize("count", [150, 600])
def test_a_long_issue_is_published_and_its_email_fits_and_links_the_web_page(workspace: Workspace, count: int) -> None:
    for sample in workspace.seeds.iterdir():
        sample.unlink()
    workspace.add_seed("000_long.md", seed_text(sample_papers(count)))
    workspace.env["DIGEST_MAX_ENTRIES_PER_ISSUE"] = "1000"
    result = workspace.run("render", "--now", NOW)
    assert f"published issue 1 with {count} papers" in result.stdout
    page = lxml.html.parse(str(workspace.site / "issues" / "1" / "index.html")).getroot()
    assert len(page.xpath("//*[starts-with(@id, 'p-')]")) >= count
    assert len(feedparser.parse(str(workspace.site / "atom.xml")).entries) == 50  # feed_max_items
    email = (workspace.site / "issues" / "1" / "email.html").read_text(encoding="utf-8")
    assert len(email.encode("utf-8")) <= BUDGET
    doc = lxml.html.fromstring(email)
    assert VIEW_URL in doc.xpath("//a/@href")
    numbers = listed_numbers(email)
    assert numbers == list(range(1, len(numbers) + 1))  # each paper once, in the contents' numbering
    if len(numbers) < count:
        assert f"还有 {count - len(numbers)} 篇，见网页版 / and {count - len(numbers)} more on the web" in (
            " ".join(doc.text_content().split())
        )


def test_the_email_gives_up_the_contents_then_the_english_titles_then_the_tail(env: jinja2.Environment) -> None:
    papers = sample_papers(600)
    steps = []
    for count, limit in ((150, BUDGET), (300, BUDGET), (600, 60_000)):
        email = render_email(SITE, Issue(1, PUBLISHED, papers[:count]), env, max_html_bytes=limit)
        assert len(email.html.encode("utf-8")) <= limit
        doc = lxml.html.fromstring(email.html)
        text = " ".join(doc.text_content().split())
        steps.append((email.level, "本期目录" in text, bool(doc.xpath("//p[@lang='en' and @class='en']"))))
        if email.level == "partial list":
            assert 0 < email.listed < count
            assert f"and {count - email.listed} more on the web" in text
            assert listed_numbers(email.html) == list(range(1, email.listed + 1))
        else:
            assert email.listed == count
        assert VIEW_URL in doc.xpath("//a/@href")
        assert all(p.url in email.text for p in papers[:count])  # the text part still has every paper
    assert steps == [
        ("titles, no contents", False, True),
        ("list", False, False),
        ("partial list", False, False),
    ]


def test_an_email_over_the_limit_even_as_a_bare_link_is_still_rendered(env: jinja2.Environment) -> None:
    email = render_email(SITE, Issue(1, PUBLISHED, sample_papers(50)), env, max_html_bytes=10)
    assert email.level == "partial list" and email.listed == 0
    assert "over the limit of 10" in email.detail
    assert VIEW_URL in lxml.html.fromstring(email.html).xpath("//a/@href")


def test_an_email_over_the_limit_anyway_is_published_with_a_warning(workspace: Workspace) -> None:
    notes = workspace.seeds / "_notes"
    notes.mkdir()
    (notes / "1.md").write_text("编者按很长。" * 20_000, encoding="utf-8")  # 360 KB: no layout can fit it
    result = workspace.run("render", "--now", NOW)
    assert "published issue 1 with 23 papers" in result.stdout
    assert "issue 1: the email is" in result.stderr and "over the limit of 100000 (email_max_bytes)" in result.stderr
    assert (workspace.site / "issues" / "1" / "index.html").is_file()
