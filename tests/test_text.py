"""Specification of digest.text: CJK-aware joining, cleaning, linkify, sentences and truncation."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st
from markupsafe import Markup

from digest.text import _tokens as wrap_pieces
from digest.text import (
    clean_text,
    first_sentence,
    is_cjk,
    join_soft_lines,
    linkify,
    linkify_text,
    remove_xml_illegal,
    split_bytes,
    truncate,
    wrap_text,
)

XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff\ud800-\udfff]")


def hrefs(html: str) -> list[str]:
    return re.findall(r'<a href="([^"]*)">', html)


# is_cjk


def test_ideographs_kana_hangul_are_cjk() -> None:
    assert all(is_cjk(ch) for ch in "中文かなカナ한글")


def test_cjk_and_fullwidth_punctuation_are_cjk() -> None:
    assert all(is_cjk(ch) for ch in "，。、：；！？（）《》「」　")


def test_latin_digits_and_ascii_punctuation_are_not_cjk() -> None:
    assert not any(is_cjk(ch) for ch in "aZ09.,:;!?()-é “”")


def test_empty_string_is_not_cjk() -> None:
    assert is_cjk("") is False


# join_soft_lines


def test_soft_break_between_cjk_characters_adds_no_space() -> None:
    assert join_soft_lines(["我们提出了", "一种方法"]) == "我们提出了一种方法"


def test_soft_break_between_latin_words_adds_one_space() -> None:
    assert join_soft_lines(["Large language", "models"]) == "Large language models"


def test_soft_break_next_to_cjk_on_either_side_adds_no_space() -> None:
    assert join_soft_lines(["模型 LLM", "很大"]) == "模型 LLM很大"
    assert join_soft_lines(["模型", "LLM 很大"]) == "模型LLM 很大"


def test_soft_break_after_cjk_punctuation_adds_no_space() -> None:
    assert join_soft_lines(["毫不逊色。", "We release"]) == "毫不逊色。We release"


def test_soft_break_between_latin_punctuation_and_word_adds_a_space() -> None:
    assert join_soft_lines(["Hello,", "world"]) == "Hello, world"


def test_leading_indentation_is_dropped() -> None:
    assert join_soft_lines(["讨论。", "  除了模型"]) == "讨论。除了模型"
    assert join_soft_lines(["Large", "\t\tlanguage models"]) == "Large language models"


def test_joining_no_lines_gives_empty_text() -> None:
    assert join_soft_lines([]) == ""
    assert join_soft_lines(["   "]) == ""


# clean_text


def test_latex_umlaut_is_resolved() -> None:
    assert clean_text(r"我们引入了T\"ULU 3，" + r"T\"{U}LU") == "我们引入了TÜLU 3，TÜLU"


def test_every_latex_accent_macro_is_resolved() -> None:
    source = r"\'e \`e \^o \~n \=a \.z \u{a} \v{s} \H{o} \c{c} \k{a} \r{a} \v s \c c"
    assert clean_text(source) == "é è ô ñ ā ż ă š ő ç ą å š ç"


def test_ordinary_backslashes_survive() -> None:
    text = r"C:\users\new \textbf{bold} 100% $x$ a\\b {braces} ~tilde"
    assert clean_text(text) == text


def test_escaped_quote_that_is_no_accent_survives() -> None:
    assert clean_text(r"say \"quoted\" text") == r"say \"quoted\" text"


def test_xml_illegal_characters_are_removed() -> None:
    dirty = "a\x00b\x08c\x0bd\x0ce\x1ff\x7fg\ufffeh\uffffi\ud800j"
    assert clean_text(dirty) == "abcdefghij"


def test_tab_newline_and_carriage_return_are_kept() -> None:
    assert remove_xml_illegal("a\tb\nc\rd") == "a\tb\nc\rd"


@given(st.text())
def test_clean_text_never_leaves_xml_illegal_characters(text: str) -> None:
    assert not XML_ILLEGAL.search(clean_text(text))


# linkify


def test_link_stops_at_cjk_punctuation() -> None:
    html = linkify("代码可在以下网址获取：https://rich-language-failure-recovery.github.io。")
    assert hrefs(html) == ["https://rich-language-failure-recovery.github.io"]
    assert html.endswith("</a>。")


def test_link_stops_where_cjk_text_begins_and_starts_right_after_it() -> None:
    html = linkify("模型可在https://github.com/showlab/ShowUI获取。")
    assert html == '模型可在<a href="https://github.com/showlab/ShowUI">https://github.com/showlab/ShowUI</a>获取。'


def test_link_stops_at_chinese_quotes() -> None:
    assert hrefs(linkify("见“https://example.com/a”。")) == ["https://example.com/a"]


def test_trailing_ascii_punctuation_is_left_out_of_the_link() -> None:
    html = linkify("See https://example.com/a. Or (https://example.org/b), or https://x.io/c_(d).")
    assert hrefs(html) == ["https://example.com/a", "https://example.org/b", "https://x.io/c_(d)"]


def test_markup_in_text_is_escaped() -> None:
    html = linkify("<script>alert('x')</script> & more")
    assert isinstance(html, Markup)
    assert "<script>" not in html
    assert html.startswith("&lt;script&gt;")
    assert "&amp; more" in html


def test_non_http_schemes_are_never_linked() -> None:
    html = linkify("javascript:alert(1) data:text/html,x ftp://f.example/x mailto:a@b.cn //cdn.example/x")
    assert hrefs(html) == []


def test_bare_domains_and_file_names_are_not_linked() -> None:
    assert hrefs(linkify("演示：cat-4d.github.io，代码见 train.py 和 README.md")) == []


def test_href_attribute_value_is_escaped() -> None:
    html = linkify('https://example.com/?a=1&b="2"')
    assert hrefs(html) == ["https://example.com/?a=1&amp;b=&#34;2&#34;"]


def test_uppercase_scheme_is_linked() -> None:
    assert hrefs(linkify("HTTPS://EXAMPLE.COM/A")) == ["HTTPS://EXAMPLE.COM/A"]


def test_linkify_text_gives_plain_segments_with_hrefs() -> None:
    assert linkify_text("见 https://a.example/x。") == [
        ("见 ", None),
        ("https://a.example/x", "https://a.example/x"),
        ("。", None),
    ]


def test_linkify_text_of_text_without_urls_is_one_segment() -> None:
    assert linkify_text("没有链接") == [("没有链接", None)]
    assert linkify_text("") == []


@given(st.text())
def test_linkify_segments_rebuild_the_text(text: str) -> None:
    assert "".join(segment for segment, _ in linkify_text(text)) == text


@given(st.text(alphabet=st.sampled_from(list("javscript:JAVSCRIPT()/<>\"'& .htp中文：。\n"))))
def test_linkify_never_emits_a_javascript_href(text: str) -> None:
    html = linkify(text)
    assert 'href="javascript:' not in html.lower()
    assert "<script" not in html.lower()


@given(st.text())
def test_linkify_hrefs_are_always_http(text: str) -> None:
    for href in hrefs(linkify(text)):
        assert href.lower().startswith(("http://", "https://"))


# first_sentence


def test_first_sentence_ends_at_chinese_full_stop() -> None:
    assert first_sentence("扩散模型表现出色。本研究中，我们推出了模型。") == "扩散模型表现出色。"


def test_first_sentence_ends_at_chinese_question_or_exclamation_mark() -> None:
    assert first_sentence("迈向AI医生？我们评估了") == "迈向AI医生？"
    assert first_sentence("太好了！然后") == "太好了！"


def test_first_sentence_ends_at_period_followed_by_space() -> None:
    assert first_sentence("We release Llama 3.1 weights. Then more.") == "We release Llama 3.1 weights."


def test_first_sentence_of_text_without_sentence_end_is_the_whole_text() -> None:
    assert first_sentence("  no end here ") == "no end here"


# truncate


ABSTRACT = "我们提出了一种新的方法，它很好。然后我们做了很多实验，结果很好，非常好，真的非常好。"


def test_short_text_is_not_truncated() -> None:
    assert truncate("短文本。", 10) == "短文本。"


def test_truncated_text_fits_and_ends_with_an_ellipsis() -> None:
    for max_chars in range(2, len(ABSTRACT)):
        result = truncate(ABSTRACT, max_chars)
        assert len(result) <= max_chars
        assert result.endswith("…")


def test_truncate_prefers_a_sentence_end() -> None:
    assert truncate(ABSTRACT, 30) == "我们提出了一种新的方法，它很好。…"


def test_truncate_falls_back_to_a_clause_end_without_its_comma() -> None:
    assert truncate(ABSTRACT, 15) == "我们提出了一种新的方法…"


def test_truncate_cuts_mid_clause_when_no_boundary_keeps_enough() -> None:
    assert truncate(ABSTRACT, 8) == "我们提出了一种…"


def test_truncate_does_not_cut_inside_a_url() -> None:
    assert truncate("Code is at https://example.com/a/very/long/path/to/the/code and more", 40) == "Code is at…"


def test_truncate_keeps_combining_accents_with_their_letter() -> None:
    decomposed = "abcd" + "e\u0301" * 10  # é as e + COMBINING ACUTE ACCENT
    assert truncate(decomposed, 6) == "abcd…"


def test_truncate_to_nothing() -> None:
    assert truncate("text", 0) == ""
    assert truncate("text", 1) == "…"


@given(st.text(), st.integers(min_value=0, max_value=200))
def test_truncate_never_exceeds_the_limit(text: str, max_chars: int) -> None:
    assert len(truncate(text, max_chars)) <= max_chars


# --- plain-text wrapping for the email's text part --------------------------------------------------------


def _columns(line: str) -> int:
    return sum(2 if is_cjk(c) else 1 for c in line)


def test_wrap_breaks_between_cjk_characters_within_76_columns() -> None:
    lines = wrap_text("扩散模型在多种图像生成任务中表现出色。" * 20).split("\n")
    assert len(lines) > 1 and all(_columns(line) <= 76 for line in lines)
    assert "".join(lines) == "扩散模型在多种图像生成任务中表现出色。" * 20


def test_wrap_keeps_latin_words_and_urls_whole_and_never_starts_a_line_with_closing_punctuation() -> None:
    url = "https://github.com/abhi1nandy2/yesbut_dataset"
    text = "数据集和代码可在 " + url + " 获取。" + "We release the weights and the training code. " * 4
    lines = wrap_text(text, indent="   ").split("\n")
    assert any(url in line for line in lines)
    words = {w for line in lines for w in line.split()}
    assert {"release", "weights", "training"} <= words
    assert not any(line.strip().startswith(("，", "。")) for line in lines)
    assert all(line.startswith("   ") for line in lines[1:])


def test_no_line_passes_the_mail_byte_limit_even_for_one_endless_word() -> None:
    pieces = split_bytes("链" * 1000)
    assert len(pieces) > 1 and all(len(p.encode("utf-8")) <= 900 for p in pieces)
    assert "".join(pieces) == "链" * 1000


@given(st.text(alphabet="ab 12 ，。（）「」中文扩散模型한국어éü—(.)\n\u3000", max_size=300))
def test_wrapping_loses_and_reorders_nothing(text: str) -> None:
    wrapped = wrap_text(text, indent="   ", first="1. ")
    assert "".join(wrapped[3:].split()) == "".join(text.split())


def wrap_piece_by_piece(text: str, indent: str, first: str) -> str:
    """The plain greedy fill, with every character of a run of ideographs a piece of its own."""
    pieces = [
        (space and not i, char, 2) if run else (space, token, columns)
        for space, token, columns, run in wrap_pieces(text)
        for i, char in enumerate(token if run else [token])
    ]
    lines, line, prefix = [], first, first
    width = sum(2 if is_cjk(c) else 1 for c in first)
    for space, piece, columns in pieces:
        gap = 1 if space and line != prefix else 0
        if line != prefix and width + gap + columns > 76:
            lines.append(line)
            line, width, prefix, gap = indent, len(indent), indent, 0
        line, width = line + " " * gap + piece, width + gap + columns
    lines.append(line)
    return "\n".join(piece for raw in lines for piece in split_bytes(raw.rstrip()))


ideographs = st.text(alphabet="中文扩散模型한국어", min_size=1, max_size=90)
odd_bits = st.text(alphabet="ab 12 ，。（）「」éü—(.)\n\u3000", min_size=1, max_size=4)


@given(
    st.lists(st.one_of(ideographs, odd_bits), max_size=12).map("".join),
    st.sampled_from([("", ""), ("   ", "1. "), (" " * 80, ""), ("", "一" * 37), ("", "x" * 90)]),
)
@example("中" * 100, (" " * 80, ""))  # an indent wider than a line: one character per line
@example("a" + "中" * 100, ("", ""))  # an odd number of columns left: the next character does not fit
def test_a_run_of_ideographs_wraps_as_one_piece_per_character_would(text: str, prefixes: tuple[str, str]) -> None:
    indent, first = prefixes
    assert wrap_text(text, indent, first) == wrap_piece_by_piece(text, indent, first)


@given(st.text(alphabet="中文扩散模型한국어㐀", min_size=1, max_size=500))
def test_runs_of_ideographs_fill_lines_to_76_columns(text: str) -> None:
    lines = wrap_text(text).split("\n")
    assert all(len(line) * 2 <= 76 for line in lines)
    assert all(len(line) * 2 > 74 for line in lines[:-1])  # full lines: a break only where the next would not fit
