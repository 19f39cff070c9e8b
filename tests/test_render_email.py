"""The issue email: laid out as a weekly digest (masthead, note, highlights, contents by topic, papers), MJML
compiled for real, escaped, readable (headings, lang, contrast, dark mode), and small enough to arrive whole."""

from __future__ import annotations

import itertools
import math
import os
import re
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import jinja2
import lxml.html
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from markupsafe import escape

from digest.errors import RenderError
from digest.model import Entry, Issue, Site
from digest.render import make_environment
from digest.render.email import (
    PUBLISHED_NOTE,
    STEPS,
    UNSUBSCRIBE_PLACEHOLDER,
    EmailOptions,
    RenderedEmail,
    _largest_fitting,
    published_copy,
    render_email,
)
from digest.render.feeds import topic_sections
from digest.seeds import read_seeds
from digest.slots import PersonalSlots
from digest.topics import DEFAULT_TOPICS, assign_topics
from tests import browser_util
from tests.conftest import REPO, SAMPLE_SEEDS

GOLDEN = REPO / "tests" / "golden"
ARTIFACTS = REPO / "tests" / ".artifacts"
GMAIL_CLIP = 102 * 1024
SIZE_GOAL = 75 * 1024
SITE = Site(
    title="AI 论文周报",
    url="https://digest.example.org/",
    author="digest",
    feed_id="urn:uuid:6f1c2d3e-0000-4000-8000-000000000001",
    timezone="Asia/Shanghai",
    topics=DEFAULT_TOPICS,
)
PUBLISHED = datetime(2026, 11, 23, 8, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
OPTIONS = EmailOptions(
    note="本周的论文偏重多模态。\n欢迎回信告诉我们你的想法：https://digest.example.org/about\n\nA second paragraph.",
    sender_address="AI 论文周报编辑部, 1 Example Road, Beijing 100000, China",
)


@pytest.fixture(scope="module")
def env() -> jinja2.Environment:
    return make_environment()


@pytest.fixture(scope="module")
def sample_issue() -> Issue:
    return Issue(1, PUBLISHED, read_seeds(SAMPLE_SEEDS, display_root=REPO).entries)


@pytest.fixture(scope="module")
def sample_email(sample_issue: Issue, env: jinja2.Environment) -> RenderedEmail:
    return render_email(SITE, sample_issue, env, options=OPTIONS)


def synthetic(n: int, abstract_chars: int) -> Entry:
    text = ("我们提出了一种新的方法，显著提升了模型在多项基准上的表现。" * 100)[:abstract_chars]
    return Entry(
        id=f"2601.{n:05d}",
        title_en=f"A Study Number {n} of Very Large Models",
        title_zh=f"第 {n} 项关于大模型的研究",
        url=f"https://arxiv.org/abs/2601.{n:05d}",
        abstract=(text,),
        source="seeds/x.md",
        line=n,
    )


def hrefs(html: str) -> list[str]:
    return [str(h) for h in lxml.html.fromstring(html).xpath("//a/@href")]


def size(html: str) -> int:
    return len(html.encode("utf-8"))


def test_sample_issue_matches_the_golden_files(sample_email: RenderedEmail) -> None:
    for name, content in (("email.html", sample_email.html), ("email.txt", sample_email.text)):
        golden = GOLDEN / name
        if os.environ.get("DIGEST_UPDATE_GOLDEN"):
            golden.write_text(content, encoding="utf-8")
        assert content == golden.read_text(encoding="utf-8"), f"{name} differs; DIGEST_UPDATE_GOLDEN=1 to accept"


def test_rendering_is_deterministic(sample_issue: Issue, env: jinja2.Environment) -> None:
    assert render_email(SITE, sample_issue, env, options=OPTIONS) == render_email(
        SITE, sample_issue, env, options=OPTIONS
    )


def test_every_sample_abstract_is_whole_and_the_html_is_under_75_kb(
    sample_email: RenderedEmail, sample_issue: Issue
) -> None:
    assert size(sample_email.html) < SIZE_GOAL, f"{size(sample_email.html)} bytes"
    assert sample_email.level == "full" and sample_email.entries_in_full == 23
    paragraphs = [p.text_content() for p in lxml.html.fromstring(sample_email.html).xpath("//p")]
    for entry in sample_issue.entries:
        for paragraph in entry.abstract:
            assert paragraph.strip() in paragraphs, f"{entry.id}: abstract not whole"
    # The font stack is set per block, not per cell.
    assert sample_email.html.count("'Noto Sans CJK SC'") <= 15


def test_html_is_chinese_with_a_hidden_preheader(sample_email: RenderedEmail) -> None:
    doc = lxml.html.fromstring(sample_email.html)
    assert doc.xpath("/html/@lang") == ["zh-CN"]
    preheader = doc.xpath("//body//div[contains(@style, 'display:none')]")
    assert preheader and "本期 23 篇论文" in preheader[0].text_content()
    assert "PingFang SC" in sample_email.html and "Noto Sans CJK SC" in sample_email.html


def test_masthead_note_highlights_and_contents(sample_email: RenderedEmail, sample_issue: Issue) -> None:
    doc = lxml.html.fromstring(sample_email.html)
    [h1] = doc.xpath("//h1")
    assert "第 1 期" in h1.text_content() and "Issue 1" in h1.text_content()
    assert "2026-11-23" in doc.text_content()
    h2 = [h.text_content() for h in doc.xpath("//h2")]
    assert h2[:3] == ["编者按 / Editor's note", "本周要点 / Highlights", "本期目录 / Contents"]
    # The note: escaped paragraphs, URLs linked.
    assert "https://digest.example.org/about" in hrefs(sample_email.html)
    # Highlights: the issue's first three papers, linked to their place on the issue page.
    web = "https://digest.example.org/issues/1/#"
    highlighted = doc.xpath("//h2[starts-with(., '本周要点')]/following-sibling::p/a/@href")
    assert highlighted == [web + e.anchor for e in sample_issue.entries[:3]]
    # Contents: every paper once, numbered down the issue as the issue page numbers them, grouped by topic.
    contents = doc.xpath("//h2[starts-with(., '本期目录')]/following-sibling::p[@class='t']")
    expected = [(n, e) for s in topic_sections(SITE, sample_issue) for n, e in s.papers]
    assert [p.text_content() for p in contents] == [f"{n}. {e.title_zh}" for n, e in expected]
    assert [p.xpath("a/@href")[0] for p in contents] == [web + e.anchor for _, e in expected]
    # The paper sections follow in the same order, each under its topic's heading.
    topics = [s.topic.name_zh for s in topic_sections(SITE, sample_issue) if s.topic]
    assert [h.split(" / ")[0] for h in h2[3:]] == topics


def test_each_paper_has_a_linked_chinese_title_its_english_title_and_one_quiet_link(
    sample_email: RenderedEmail, sample_issue: Issue
) -> None:
    doc = lxml.html.fromstring(sample_email.html)
    h3 = doc.xpath("//h3")
    assert len(h3) == 23
    by_title = {h.xpath("string(a)"): h for h in h3}
    for entry in sample_issue.entries:
        heading = by_title[entry.title_zh]
        assert heading.xpath("a/@href") == [entry.url]
        [english] = heading.xpath("following-sibling::p[1]")
        assert english.get("lang") == "en" and english.text_content() == entry.title_en
        [quiet] = heading.xpath("following-sibling::p[@class='l']")
        assert quiet.xpath("a/@href") == [entry.url, f"https://digest.example.org/issues/1/#{entry.anchor}"]
        assert quiet.text_content() == "arXiv ↗ · 网页版 / Web"
    assert "阅读论文" not in sample_email.html and "mj-button" not in sample_email.html  # no buttons


def test_english_parts_are_marked_english(sample_email: RenderedEmail) -> None:
    doc = lxml.html.fromstring(sample_email.html)
    english = [e.text_content() for e in doc.xpath("//*[@lang='en']")]
    assert "Issue 1" in english and "/ Highlights" in english and "/ Contents" in english
    assert sum(1 for e in english if e.startswith("/ ") and e.endswith(("AI", "Benchmarks", "Models"))) >= 3
    assert len(english) >= 23 + 8


def test_dark_mode_is_declared_and_styled(sample_email: RenderedEmail) -> None:
    html = sample_email.html
    doc = lxml.html.fromstring(html)
    assert doc.xpath("//head/meta[@name='color-scheme']/@content") == ["light dark"]
    assert doc.xpath("//head/meta[@name='supported-color-schemes']/@content") == ["light dark"]
    styles = "".join(doc.xpath("//head/style/text()"))
    assert "@media (prefers-color-scheme: dark)" in styles


# --- contrast (WCAG 2.x) ------------------------------------------------------------------------------------------


def luminance(colour: str) -> float:
    """WCAG relative luminance of `#rgb` / `#rrggbb`."""
    value = colour.lstrip("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    channels = [int(value[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


_TEXT_COLOUR = re.compile(r"(?<![-\w])color\s*:\s*(#[0-9a-fA-F]{3,6})\b")
_BACKGROUND = re.compile(r"background(?:-color)?\s*:\s*(#[0-9a-fA-F]{3,6})\b")


def test_contrast_formula() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21)
    assert contrast("#7b8794", "#eef1f5") == pytest.approx(3.23, abs=0.01)  # the old footer's grey


def test_every_text_colour_has_at_least_4_5_to_1_on_every_background(sample_email: RenderedEmail) -> None:
    html = sample_email.html
    styles = "".join(lxml.html.fromstring(html).xpath("//head/style/text()"))
    start = styles.index("@media (prefers-color-scheme: dark)")
    dark = styles[start:]
    light = html.replace(dark, "")  # every inline style and the light half of the head's styles
    pairs = {"light": (light, {"#ffffff", "#eef1f5"}), "dark": (dark, set())}
    for mode, (css, backgrounds) in pairs.items():
        backgrounds |= {c.lower() for c in _BACKGROUND.findall(css) if c.lower() != "#ffffff" or mode == "light"}
        colours = {c.lower() for c in _TEXT_COLOUR.findall(css)}
        assert colours and backgrounds
        for colour in colours:
            for background in backgrounds:
                ratio = contrast(colour, background)
                assert ratio >= 4.5, f"{mode}: {colour} on {background} is {ratio:.2f}:1"


# --- the footer and the personal links --------------------------------------------------------------------------


def test_footer_says_why_who_and_links_preferences_and_unsubscribe(sample_email: RenderedEmail) -> None:
    text = lxml.html.fromstring(sample_email.html).text_content()
    assert "你收到这封邮件，是因为你在 https://digest.example.org/ 订阅了《AI 论文周报》。" in text
    assert "You get this email because you subscribed to AI 论文周报 at https://digest.example.org/." in text
    assert OPTIONS.sender_address in text
    links = hrefs(sample_email.html)
    slots = sample_email.slots
    assert links.count(slots.unsubscribe) == 1 and links.count(slots.preferences) == 1
    assert all(h.startswith(("https://", "http://")) or h in (slots.unsubscribe, slots.preferences) for h in links)
    assert slots.unsubscribe.startswith("%%UNSUBSCRIBE-") and slots.unsubscribe != UNSUBSCRIBE_PLACEHOLDER
    assert "https://digest.example.org/issues/1/" in links


def test_without_note_or_sender_address_those_parts_are_left_out(sample_issue: Issue, env: jinja2.Environment) -> None:
    email = render_email(SITE, sample_issue, env, options=EmailOptions(highlights=0))
    text = lxml.html.fromstring(email.html).text_content()
    assert "编者按" not in text and "本周要点" not in text and "本期目录" in text
    assert "编者按" not in email.text and "本周要点" not in email.text


# --- size: shortening every entry the same way --------------------------------------------------------------------


def test_a_too_big_issue_shortens_every_abstract_by_the_same_share(
    sample_issue: Issue, env: jinja2.Environment
) -> None:
    limit = 45_000
    email = render_email(SITE, sample_issue, env, max_html_bytes=limit)
    assert size(email.html) <= limit and email.level == "shortened" and 0 < email.kept < 1
    doc = lxml.html.fromstring(email.html)
    for entry in sample_issue.entries:
        heading = doc.xpath(f"//div[@id='{entry.anchor}']")[0]
        shown = "".join(p.text_content() for p in heading.xpath("p[@class='a']"))
        whole = "".join(entry.abstract)
        # Every paper keeps about the same share of its abstract: the last ones are not sacrificed for the first.
        assert 0.4 * email.kept * len(whole) <= len(shown) <= email.kept * len(whole) + 1, entry.id
        [quiet] = heading.xpath("p[@class='l']")
        assert "阅读全文 / Full abstract" in quiet.text_content()
    text = "".join(email.text.split())
    assert all("".join(p.split()) in text for e in sample_issue.entries for p in e.abstract)  # the text part: whole


def test_a_small_issue_is_shown_in_full(env: jinja2.Environment) -> None:
    email = render_email(SITE, Issue(2, PUBLISHED, tuple(synthetic(n, 600) for n in range(5))), env)
    assert email.level == "full" and email.entries_in_full == 5


@pytest.mark.parametrize("count", [30, 100])
def test_a_huge_issue_stays_under_gmails_clipping_limit_and_lists_everything(
    env: jinja2.Environment, count: int
) -> None:
    issue = Issue(3, PUBLISHED, tuple(synthetic(n, 1500) for n in range(count)))
    email = render_email(SITE, issue, env)
    assert size(email.html) <= 100_000 < GMAIL_CLIP
    assert email.level in ("shortened", "titles")
    links = hrefs(email.html)
    assert all(e.url in links for e in issue.entries)
    assert all(f"https://digest.example.org/issues/3/#{e.anchor}" in links for e in issue.entries)


@settings(max_examples=300)
@given(st.lists(st.integers(0, 3000), min_size=STEPS + 1, max_size=STEPS + 1), st.integers(0, 200_000))
def test_the_share_kept_is_the_largest_that_fits_as_bisection_finds_it(growth: list[int], limit: int) -> None:
    sizes = list(itertools.accumulate(growth))  # any growing size per step, not only a linear one
    fits = [step for step, n in enumerate(sizes) if n <= limit]
    assume(fits and sizes[STEPS] > limit)
    tries: list[int] = []

    def attempt(step: int) -> str:
        tries.append(step)
        return "x" * sizes[step]

    kept, html = _largest_fitting(attempt, limit, (0, attempt(0)), (STEPS, attempt(STEPS)))
    assert kept == fits[-1] and len(html) == sizes[kept]
    assert len(tries) - 2 <= 2 + math.ceil(math.log2(STEPS))  # at worst two more than bisection's 6


def test_a_linear_size_is_found_in_a_few_compiles() -> None:
    tries: list[int] = []

    def attempt(step: int) -> str:
        tries.append(step)
        return "x" * (20_000 + 1_000 * step)

    kept, _ = _largest_fitting(attempt, 50_500, (0, attempt(0)), (STEPS, attempt(STEPS)))
    assert kept == 30 and len(tries) - 2 <= 2  # bisection needs 6


def test_an_issue_too_big_even_as_titles_lists_its_first_papers(env: jinja2.Environment) -> None:
    issue = Issue(3, PUBLISHED, tuple(synthetic(n, 100) for n in range(400)))
    email = render_email(SITE, issue, env, max_html_bytes=20_000)  # tests/test_email_fit.py has the whole order
    assert size(email.html) <= 20_000 and email.level == "partial list" and 0 < email.listed < 400


# --- hostile seed text ------------------------------------------------------------------------------------------

HOSTILE = Entry(
    id="2601.66666",
    title_en='<script>alert(1)</script> "><img src=x onerror=alert(2)> {{ 7*7 }}',
    title_zh='<a href="javascript:alert(3)">点我</a> %%UNSUBSCRIBE_URL%%',
    url="https://arxiv.org/abs/2601.66666",
    abstract=('javascript:alert(4) <iframe src="javascript:alert(5)"></iframe> {% raw %} https://ok.example/x',),
    source="seeds/evil.md",
    line=1,
)
HOSTILE_URL = Entry(
    id="https://evil.example/paper",  # not from the seed parser (it refuses such URLs): the renderer checks again
    title_en="</mj-text><mj-raw><script>alert(7)</script></mj-raw>",
    title_zh="<style>body{display:none}</style>坏链接",
    url="javascript:alert(6)",
    abstract=("</p><h1>not a heading</h1>",),
    source="seeds/evil.md",
    line=9,
)


def test_hostile_seed_text_is_shown_as_text_never_as_markup(env: jinja2.Environment) -> None:
    note = EmailOptions(note='<script>alert(8)</script> <a href="javascript:alert(9)">x</a>')
    email = render_email(SITE, Issue(4, PUBLISHED, (HOSTILE, HOSTILE_URL)), env, options=note)
    doc = lxml.html.fromstring(email.html)
    assert not doc.xpath("//script | //iframe | //img | //body//style")
    assert len(doc.xpath("//h1")) == 1
    assert not any(name.startswith("on") for el in doc.iter() if isinstance(el.tag, str) for name in el.attrib)
    assert all(not h.lower().startswith("javascript:") for h in hrefs(email.html))
    assert "{{ 7*7 }}" in doc.text_content() and "49" not in doc.text_content()
    assert "<script>alert(8)</script>" in doc.text_content()
    # A paper without a safe link is shown without one.
    [bad] = doc.xpath("//h3[contains(., '坏链接')]")
    assert not bad.xpath(".//a")
    # The placeholder typed into a seed is not the issue's marker: only the footer link is replaced by the mailer.
    assert email.html.count(email.slots.unsubscribe) == 1 and email.text.count(email.slots.unsubscribe) == 1
    assert "<script>alert(1)</script>" in email.text and "{{ 7*7 }}" in email.text


def test_the_preheader_is_hidden_without_a_low_contrast_colour(sample_email: RenderedEmail) -> None:
    """SpamAssassin's HTML_FONT_LOW_CONTRAST fires on text whose colour is close to its background (mj-preview's
    white on #eef1f5); a preheader hidden with display:none and no colour of its own gives it no pair to score."""
    doc = lxml.html.fromstring(sample_email.html)
    [preheader] = doc.xpath("//div[contains(text(), '本期 23 篇论文')]")
    style = preheader.get("style")
    assert "display:none" in style and "mso-hide:all" in style and "color" not in style
    white_text = [
        el for el in doc.xpath("//*[@style]") if re.search(r"(?<![-\w])color:\s*#fff(?:fff)?\b", el.get("style"))
    ]
    assert white_text == []


# --- the plain-text part ------------------------------------------------------------------------------------------


def test_plain_text_mirrors_the_html_and_stays_within_mail_line_limits(
    sample_email: RenderedEmail, sample_issue: Issue
) -> None:
    text = sample_email.text
    lines = text.split("\n")
    assert max(len(line.encode("utf-8")) for line in lines) <= 998
    order = [text.index(h) for h in ("编者按 / Editor's note", "本周要点 / Highlights", "本期目录 / Contents")]
    assert order == sorted(order)
    numbered = [(n, e) for s in topic_sections(SITE, sample_issue) for n, e in s.papers]
    for number, entry in numbered:
        assert f"   {entry.url}" in lines
        assert text.count(f"{number}. {entry.title_zh[:10]}") >= 2  # in the contents and above the paper
        assert all("".join(p.split()) in "".join(text.split()) for p in entry.abstract)
    assert f"退订 / Unsubscribe: {sample_email.slots.unsubscribe}" in lines
    assert f"管理订阅 / Preferences: {sample_email.slots.preferences}" in lines
    assert "https://digest.example.org/issues/1/" in lines
    assert OPTIONS.sender_address in text and "你收到这封邮件" in text
    assert "<" not in text.replace("<script>", "")  # no markup leaks into the text part


# --- a reader's topics ------------------------------------------------------------------------------------------


def test_a_readers_topics_keep_only_their_papers(sample_issue: Issue, env: jinja2.Environment) -> None:
    chosen = frozenset({"robotics", "agents"})
    email = render_email(SITE, sample_issue, env, options=EmailOptions(topics=chosen))
    doc = lxml.html.fromstring(email.html)
    expected = [e for e in sample_issue.entries if chosen & set(assign_topics(e, DEFAULT_TOPICS))]
    assert 0 < len(expected) < 23
    assert sorted(h.xpath("string(a)") for h in doc.xpath("//h3")) == sorted(e.title_zh for e in expected)
    assert f"{len(expected)} / 23 篇论文" in doc.text_content()
    assert "只含你选择的主题：机器人与具身智能、智能体" in doc.text_content()
    assert "只含你选择的主题" in email.text
    assert email.slots != render_email(SITE, sample_issue, env).slots  # its own markers
    with pytest.raises(RenderError, match="no paper"):
        render_email(SITE, Issue(5, PUBLISHED, (synthetic(1, 50),)), env, options=EmailOptions(topics=chosen))


@pytest.mark.parametrize("word", ["x" * 2_000_000, "é" * 1_000_000], ids=["ascii", "latin"])
def test_a_2_mb_single_word_abstract_is_wrapped_whole(word: str, env: jinja2.Environment) -> None:
    """Issue 12: the plain-text wrapper was quadratic (36 s for this abstract, under the writer lock). How long it
    takes is measured by benchmarks/run.py (scenario 6), not asserted here: this holds what it produces."""
    issue = Issue(1, PUBLISHED, (replace(synthetic(1, 10), abstract=(word,)),))
    email = render_email(SITE, issue, env)
    pieces = [line for line in email.text.split("\n") if line.startswith(word[0])]
    assert "".join(pieces) == word and max(len(piece.encode("utf-8")) for piece in pieces) <= 900


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [375, 600])
def test_email_fits_phone_and_desktop_widths(
    sample_email: RenderedEmail, width: int, scheme: Literal["light", "dark"], tmp_path: Path
) -> None:
    if browser_util.find_chromium() is None:
        pytest.fail("Chromium is needed for the browser tests (apt-get install -y chromium)")
    page = tmp_path / "email.html"
    page.write_text(sample_email.html, encoding="utf-8")
    shot = ARTIFACTS / f"email-{width}-{scheme}.png"
    assert browser_util.measure_page(page, width, shot, color_scheme=scheme) == width


def _published_copy_by_regex(rendered: RenderedEmail, subscribe_url: str) -> tuple[str, str]:
    """`published_copy` as it was written before it stopped compiling patterns per marker: the reference."""
    slots, (zh, en) = rendered.slots, PUBLISHED_NOTE
    html = re.sub(
        f'<a href="{re.escape(slots.preferences)}"([^>]*)>[^<]*</a>',
        lambda m: f'<a href="{escape(subscribe_url)}"{m.group(1)}>订阅 / Subscribe</a>',
        rendered.html,
    )
    html = re.sub(
        f'<a href="{re.escape(slots.unsubscribe)}"[^>]*>[^<]*</a>', f'{zh} <span lang="en">/ {en}</span>', html
    )
    text = re.sub(
        f"^.*{re.escape(slots.preferences)}.*$", f"订阅 / Subscribe: {subscribe_url}", rendered.text, flags=re.M
    )
    text = re.sub(f"^.*{re.escape(slots.unsubscribe)}.*$", f"{zh}\n{en}", text, flags=re.M)
    return html, text


_MARKS = PersonalSlots("%%UNSUBSCRIBE-0a1b%%", "%%PREFERENCES-0a1b%%")
_PIECES = st.sampled_from(
    [_MARKS.unsubscribe, _MARKS.preferences, '<a href="', '<a href="%%PREFERENCES-0a1b%%"', '"', ">", "<", "</a>",
     ' class="x"', "\n", "\r", "a", "退订", " "]
)  # fmt: skip


@given(
    st.lists(_PIECES, max_size=40).map("".join),
    st.lists(_PIECES, max_size=40).map("".join),
    st.sampled_from(["https://d.example/subscribe", "https://d.example/a&b", "https://d.example/\\1\\n"]),
)
def test_published_copy_replaces_what_the_regexes_did(html: str, text: str, subscribe_url: str) -> None:
    rendered = RenderedEmail(html=html, text=text, detail="", slots=_MARKS)
    try:
        expected = _published_copy_by_regex(rendered, subscribe_url)
    except re.error:
        with pytest.raises(re.error):
            published_copy(rendered, subscribe_url)
        return
    assert published_copy(rendered, subscribe_url) == expected
