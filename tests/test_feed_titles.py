"""Titles are plain text in every feed (issue 16; RSS Best Practices Profile, "Character Data"): a paper titled
`Attention <is> all you need` or `a < b` reads back as exactly that, with no markup and no double escaping. RSS 2.0
leaves open whether a title is text or HTML, so its `&`, `<` and `>` are written as the hexadecimal references the
Profile asks for (`&#x26;` `&#x3C;` `&#x3E;`), never as `&lt;`, which is what entity-encoded HTML looks like.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import feedparser
import lxml.etree
import pytest

from digest.model import Issue
from digest.render.feeds import plain_text_titles, render_atom, render_json_feed, render_rss
from tests.render_samples import PUBLISHED, golden_issues, make_site

TITLES = ["Attention <is> all you need", "a < b", "Q&A: is x > y <= z?", "AT&T & R&D"]
SITE_TITLE = "A<B 周报 & co"


def issue_with(titles: list[str]) -> list[Issue]:
    base = golden_issues()[0].entries[0]
    entries = tuple(
        replace(base, id=f"2409.{30000 + i}", url=f"https://arxiv.org/abs/2409.{30000 + i}", title_en=title)
        for i, title in enumerate(titles)
    )
    return [Issue(1, PUBLISHED, entries)]


def title_markup(data: bytes) -> list[bytes]:
    """What is between <title> and </title> in the serialized feed, exactly as written."""
    return re.findall(rb"<title>(.*?)</title>", data)


def test_rss_titles_are_plain_text_in_hexadecimal_references() -> None:
    data = render_rss(make_site(title=SITE_TITLE), issue_with(TITLES))
    written = title_markup(data)
    assert written[0] == "A&#x3C;B 周报 &#x26; co".encode()
    assert b"Attention &#x3C;is&#x3E; all you need" in written and b"a &#x3C; b" in written
    for raw in written:
        assert not re.search(rb"&(amp|lt|gt);", raw), raw  # no entity-encoded look, no double escaping
    root = lxml.etree.fromstring(data)
    assert root.xpath("/rss/channel/title/text()") == [SITE_TITLE]
    assert root.xpath("//item/title/text()") == TITLES
    feed = feedparser.parse(data)
    assert feed.bozo == 0 and feed.feed.title == SITE_TITLE
    assert [e.title for e in feed.entries] == TITLES
    assert {e.title_detail.type for e in feed.entries} == {"text/plain"}


@pytest.mark.parametrize("render", [render_atom, render_json_feed])
def test_atom_and_json_titles_read_back_as_written(render: object) -> None:
    assert callable(render)
    data = render(make_site(title=SITE_TITLE), issue_with(TITLES))
    if render is render_json_feed:
        feed = json.loads(data)
        assert feed["title"] == SITE_TITLE and [i["title"] for i in feed["items"]] == TITLES
        return
    feed = feedparser.parse(data)
    assert feed.bozo == 0 and [e.title for e in feed.entries] == TITLES
    assert lxml.etree.fromstring(data).xpath("//*[local-name()='entry']/*[local-name()='title']/@type") in (
        [],
        ["text"] * len(TITLES),
    )


def test_hexadecimal_references_change_no_text() -> None:
    feed = b"<rss><channel><title>a &lt;b&gt; &amp;amp; &amp;lt; c</title><item><title>&amp;</title></item></channel>"
    feed += b"</rss>"
    rewritten = plain_text_titles(feed)
    assert rewritten == (
        b"<rss><channel><title>a &#x3C;b&#x3E; &#x26;amp; &#x26;lt; c</title>"
        b"<item><title>&#x26;</title></item></channel></rss>"
    )
    before, after = (lxml.etree.fromstring(x).xpath("//title/text()") for x in (feed, rewritten))
    assert before == after == ["a <b> &amp; &lt; c", "&"]
