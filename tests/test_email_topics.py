"""A reader who chose topics gets only those topics' sections: each paper once, under the first of its topics
that the reader chose, and no heading of a topic they did not choose.

A reader who chose two topics got 18 of 23 sample papers under headings of four other topics (their primary
topics), below a line saying "only your topics".
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import lxml.html

from digest.model import Issue, Site
from digest.render import make_environment
from digest.render.email import EmailOptions, render_email
from digest.seeds import read_seeds
from digest.topics import DEFAULT_TOPICS, assign_topics
from tests.conftest import REPO, SAMPLE_SEEDS

SITE = Site(
    title="AI 论文周报",
    url="https://digest.example.org/",
    author="digest",
    feed_id="urn:uuid:6f1c2d3e-0000-4000-8000-000000000001",
    timezone="Asia/Shanghai",
    topics=DEFAULT_TOPICS,
)
PUBLISHED = datetime(2026, 11, 23, 8, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
NAMES = {t.slug: t.name_zh for t in DEFAULT_TOPICS}
CHOSEN = ("multimodal", "llm")  # in rule order; many sample papers have them only as a second or third topic


def test_a_reader_with_two_topics_sees_only_their_sections_each_paper_once() -> None:
    entries = read_seeds(SAMPLE_SEEDS, display_root=REPO).entries
    email = render_email(
        SITE, Issue(1, PUBLISHED, entries), make_environment(), options=EmailOptions(topics=frozenset(CHOSEN))
    )
    expected = {e.title_zh: e for e in entries if set(CHOSEN) & set(assign_topics(e, DEFAULT_TOPICS))}
    assert len(expected) == 13
    assert any(assign_topics(e, DEFAULT_TOPICS)[0] not in CHOSEN for e in expected.values())

    doc = lxml.html.fromstring(email.html)
    papers_card = doc.xpath("//div[h3]/..")  # each topic's block in the papers card: its h2, then its papers
    headings = [" ".join(block.xpath("string(h2)").split()) for block in papers_card]
    assert [h.split(" / ")[0] for h in headings] == [NAMES[slug] for slug in CHOSEN]
    shown = []
    for block in papers_card:
        section = block.xpath("string(h2)").split(" / ")[0].strip()
        for title in block.xpath("div/h3"):
            entry = expected[title.xpath("string(a)")]
            first_chosen = next(s for s in assign_topics(entry, DEFAULT_TOPICS) if s in CHOSEN)
            assert section == NAMES[first_chosen], entry.title_en
            shown.append(entry.id)
    assert sorted(shown) == sorted(e.id for e in expected.values())  # every paper of the topics, once

    contents = [" ".join(b.text_content().split()) for b in doc.xpath("//p[@class='a']/b")]
    assert contents == [NAMES[slug] for slug in CHOSEN]
    lines = {line.strip() for line in email.text.split("\n")}
    for topic in DEFAULT_TOPICS:  # the text part's headings: "name_zh / name_en" lines
        heading = f"{topic.name_zh} / {topic.name_en}" if topic.name_zh != topic.name_en else topic.name_zh
        assert (heading in lines) == (topic.slug in CHOSEN), heading
