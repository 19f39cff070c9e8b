"""Specification of digest.seeds: the seed format, paper identity, duplicates and bad input."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.errors import DigestError
from digest.model import Entry, EntryRef, ProblemKind, SeedScan
from digest.seedfiles import list_seed_files
from digest.seeds import entry_id, merge_scans, parse_seed, read_seeds, scan_seed

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "seeds.json"
XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff\ud800-\udfff]")

ENTRY = "## English Title\n[中文标题](https://arxiv.org/abs/2409.13346)\n\n摘要。\n"


def entry(
    title: str = "English Title", link: str = "[中文标题](https://example.com/p)", abstract: str = "摘要。"
) -> str:
    return f"## {title}\n{link}\n\n{abstract}\n\n"


def only_entry(scan: SeedScan) -> Entry:
    assert scan.problems == ()
    assert len(scan.entries) == 1
    return scan.entries[0]


def golden_view(scan: SeedScan) -> object:
    view = {"entries": [asdict(e) for e in scan.entries], "problems": [str(p) for p in scan.problems]}
    return json.loads(json.dumps(view))  # tuples as lists, as the golden file has them


# The sample seeds, against a golden file


@pytest.fixture(scope="module")
def samples() -> SeedScan:
    return read_seeds(ROOT / "seeds", display_root=ROOT)


def test_sample_seeds_match_the_golden_file(samples: SeedScan) -> None:
    # Regenerate with DIGEST_UPDATE_GOLDEN=1, then read the diff before committing it.
    view = golden_view(samples)
    if os.environ.get("DIGEST_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(view, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    assert view == json.loads(GOLDEN.read_text(encoding="utf-8"))


def test_sample_seeds_hold_23_papers_without_problems(samples: SeedScan) -> None:
    assert len(samples.entries) == 23
    assert samples.problems == ()


def test_sample_seeds_start_with_the_first_paper_of_the_first_file(samples: SeedScan) -> None:
    first = samples.entries[0]
    assert first.id == "2409.13346"
    assert (first.source, first.line) == ("seeds/000_2075edd4e1164766.txt", 1)
    assert first.title_zh == "想象你自己：无调优个性化图像生成"


def test_sample_latex_umlaut_shows_as_tulu(samples: SeedScan) -> None:
    tulu = next(e for e in samples.entries if e.source.startswith("seeds/001_"))
    assert tulu.title_en.startswith("TÜLU 3")
    assert "TÜLU 3" in tulu.abstract[0]
    assert not any("\\" in p for e in samples.entries for p in e.abstract)


def test_sample_indented_soft_break_joins_without_space(samples: SeedScan) -> None:
    tulu = next(e for e in samples.entries if e.id == "2411.15124")
    assert tulu.abstract == (tulu.abstract[0],)
    assert "进行了分析和讨论。除了TÜLU 3模型权重" in tulu.abstract[0]


def test_sample_paragraphs_are_kept_apart(samples: SeedScan) -> None:
    prox = next(e for e in samples.entries if e.id == "2409.17115")
    assert len(prox.abstract) == 5


# Entry boundaries, BOM, CRLF


def test_text_before_the_first_heading_is_ignored() -> None:
    scan = parse_seed("# Weekly picks\nsome notes\n[not a paper](https://x.example)\n\n" + ENTRY, "s.md")
    assert only_entry(scan).line == 5


def test_an_entry_runs_to_the_next_heading() -> None:
    scan = parse_seed(entry("One", abstract="第一段。") + entry("Two", "[二](https://example.com/2)"), "s.md")
    assert [e.title_en for e in scan.entries] == ["One", "Two"]
    assert scan.entries[0].abstract == ("第一段。",)
    assert [e.line for e in scan.entries] == [1, 6]


def test_deeper_headings_do_not_start_an_entry() -> None:
    scan = parse_seed(ENTRY + "\n### not an entry\n更多摘要。\n", "s.md")
    assert only_entry(scan).abstract == ("摘要。", "### not an entry更多摘要。")


def test_utf8_bom_is_accepted() -> None:
    assert only_entry(parse_seed(b"\xef\xbb\xbf" + ENTRY.encode(), "s.md")).title_en == "English Title"


def test_crlf_line_endings_are_accepted() -> None:
    crlf = ENTRY.replace("\n", "\r\n") + "\r\n第二段\r\nsecond line\r\n"
    found = only_entry(parse_seed(crlf.encode(), "s.md"))
    assert found.abstract == ("摘要。", "第二段second line")
    assert found.title_zh == "中文标题"


def test_source_and_heading_line_are_recorded() -> None:
    found = only_entry(parse_seed("\n\n" + ENTRY, "seeds/000_x.txt"))
    assert (found.source, found.line) == ("seeds/000_x.txt", 3)


# Link line


def test_blank_lines_before_the_link_line_are_allowed() -> None:
    assert only_entry(parse_seed("## T\n\n\n[中](https://e.com/x)\n\n摘要\n", "s.md")).url == "https://e.com/x"


def test_link_text_may_contain_brackets() -> None:
    found = only_entry(parse_seed(entry(link="[模型 [v2] 与 \\[注\\]](https://e.com/x)"), "s.md"))
    assert found.title_zh == "模型 [v2] 与 [注]"


def test_url_may_contain_balanced_parentheses() -> None:
    found = only_entry(parse_seed(entry(link="[中](https://en.wikipedia.org/wiki/Foo_(bar))"), "s.md"))
    assert found.url == "https://en.wikipedia.org/wiki/Foo_(bar)"


def test_url_in_angle_brackets_is_accepted() -> None:
    assert only_entry(parse_seed(entry(link="[中](<https://e.com/a(b>)"), "s.md")).url == "https://e.com/a(b"


def test_link_title_is_ignored() -> None:
    assert only_entry(parse_seed(entry(link='[中](https://e.com/x "title")'), "s.md")).url == "https://e.com/x"


def test_titles_are_single_line_with_collapsed_whitespace() -> None:
    found = only_entry(parse_seed(entry(title="  Spaced \t  Out  ", link="[中　文  标题](https://e.com/x)"), "s"))
    assert (found.title_en, found.title_zh) == ("Spaced Out", "中 文 标题")


def test_latex_accents_in_titles_are_resolved() -> None:
    found = only_entry(parse_seed(entry(title='T\\"ULU 3', link='[T\\"ULU 3: 前沿](https://e.com/x)'), "s"))
    assert (found.title_en, found.title_zh) == ("TÜLU 3", "TÜLU 3: 前沿")


# Abstract


def test_soft_breaks_join_cjk_without_space_and_latin_with_space() -> None:
    found = only_entry(
        parse_seed(entry(abstract="我们提出了\n一种方法 for large\nlanguage models\n  以及\n数据。"), "s")
    )
    assert found.abstract == ("我们提出了一种方法 for large language models以及数据。",)


def test_blank_lines_separate_paragraphs() -> None:
    found = only_entry(parse_seed(entry(abstract="第一段。\n\n  \n第二段。\n\n\n第三段。"), "s"))
    assert found.abstract == ("第一段。", "第二段。", "第三段。")


def test_xml_illegal_characters_are_removed_from_titles_and_abstract() -> None:
    dirty = entry(title="Ti\x00tle\x7f", link="[中\x0b文](https://e.com/x)", abstract="摘\x1f要\ufffe。\x0c")
    found = only_entry(parse_seed(dirty, "s"))
    assert (found.title_en, found.title_zh, found.abstract) == ("Title", "中文", ("摘要。",))


# Paper identity


@pytest.mark.parametrize(
    "url",
    [
        "https://arxiv.org/abs/2409.13346",
        "http://arxiv.org/abs/2409.13346",
        "https://www.arxiv.org/abs/2409.13346",
        "https://arxiv.org/abs/2409.13346v2",
        "https://arxiv.org/pdf/2409.13346",
        "https://arxiv.org/pdf/2409.13346v1",
        "https://arxiv.org/pdf/2409.13346.pdf",
        "https://arxiv.org/pdf/2409.13346v3.pdf",
        "HTTPS://ArXiv.org/abs/2409.13346/",
        "https://arxiv.org/abs/2409.13346#comments",
    ],
)
def test_any_arxiv_link_form_maps_to_the_bare_id(url: str) -> None:
    assert entry_id(url) == "2409.13346"


def test_old_style_arxiv_ids_are_kept_with_their_archive() -> None:
    assert entry_id("http://arxiv.org/abs/cs/0501001v2") == "cs/0501001"
    assert entry_id("https://arxiv.org/pdf/hep-th/9901001.pdf") == "hep-th/9901001"
    assert entry_id("https://arxiv.org/abs/math.GT/0309136") == "math.GT/0309136"


def test_five_digit_arxiv_ids_are_recognized() -> None:
    assert entry_id("https://arxiv.org/abs/2501.01234v1") == "2501.01234"


def test_other_urls_are_normalized() -> None:
    assert entry_id("HTTPS://Example.COM:443/Paper/?q=1#abstract") == "https://example.com/Paper?q=1"
    assert entry_id("http://example.com:80/") == "http://example.com"


def test_non_default_ports_and_queries_are_kept() -> None:
    assert entry_id("https://example.com:8443/a?b=2&a=1") == "https://example.com:8443/a?b=2&a=1"


def test_non_arxiv_lookalikes_are_not_arxiv_ids() -> None:
    assert entry_id("https://arxiv.org/list/cs.CL/recent") == "https://arxiv.org/list/cs.CL/recent"
    assert entry_id("https://notarxiv.org/abs/2409.13346") == "https://notarxiv.org/abs/2409.13346"


def test_entry_id_of_garbage_does_not_raise() -> None:
    assert entry_id("http://[::1") == "http://[::1"


# Duplicates


def test_duplicate_within_a_file_is_reported_and_first_wins() -> None:
    text = entry("First", "[一](https://arxiv.org/abs/2409.13346)") + entry(
        "Again", "[二](https://arxiv.org/pdf/2409.13346v2.pdf)"
    )
    scan = parse_seed(text, "seeds/000_x.txt")
    assert [e.title_en for e in scan.entries] == ["First"]
    (problem,) = scan.problems
    assert problem.kind is ProblemKind.DUPLICATE
    assert problem.entry_id == "2409.13346"
    assert str(problem) == "seeds/000_x.txt:6: duplicate of 2409.13346 (first at seeds/000_x.txt:1)"


def test_duplicate_across_files_is_reported_and_first_file_wins() -> None:
    first = parse_seed(entry("First", "[一](https://arxiv.org/abs/2409.13346)"), "seeds/000_a.txt")
    second = parse_seed(
        entry("Other", "[别](https://example.com/p)") + entry("Again", "[二](http://arxiv.org/abs/2409.13346v1)"),
        "seeds/001_b.txt",
    )
    merged = merge_scans([first, second])
    assert [e.title_en for e in merged.entries] == ["First", "Other"]
    (problem,) = merged.problems
    assert (problem.kind, problem.entry_id) == (ProblemKind.DUPLICATE, "2409.13346")
    assert str(problem) == "seeds/001_b.txt:6: duplicate of 2409.13346 (first at seeds/000_a.txt:1)"


def test_normalized_urls_are_duplicates_too() -> None:
    scan = parse_seed(entry(link="[一](https://Example.com/p/)") + entry(link="[二](https://example.com/p#x)"), "s")
    assert len(scan.entries) == 1
    assert scan.problems[0].kind is ProblemKind.DUPLICATE


# Bad input: a problem at the right line, the other entries still returned


def test_missing_link_line_is_invalid() -> None:
    scan = parse_seed("## Title\n\n这里直接是摘要。\n\n" + ENTRY, "s.md")
    (problem,) = scan.problems
    assert problem.kind is ProblemKind.INVALID
    assert str(problem).startswith('s.md:3: expected a Markdown link line "[中文标题](https://...)" after the heading')
    assert len(scan.entries) == 1


def test_heading_without_anything_after_it_is_invalid() -> None:
    scan = parse_seed(ENTRY + "## Lonely\n\n", "s.md")
    (problem,) = scan.problems
    assert str(problem).startswith("s.md:5: expected a Markdown link line")


def test_javascript_link_is_invalid() -> None:
    scan = parse_seed(entry(link="[点我](javascript:alert(1))") + ENTRY, "s.md")
    (problem,) = scan.problems
    assert problem.kind is ProblemKind.INVALID
    assert str(problem).startswith("s.md:2: the link must be an http(s) URL, found 'javascript:alert(1)'")
    assert [e.id for e in scan.entries] == ["2409.13346"]


@pytest.mark.parametrize("url", ["data:text/html,<b>x</b>", "ftp://example.com/p", "//example.com/p", "mailto:a@b.cn"])
def test_non_http_links_are_invalid(url: str) -> None:
    scan = parse_seed(entry(link=f"[中]({url})"), "s.md")
    assert scan.entries == ()
    assert "must be an http(s) URL" in scan.problems[0].message


@pytest.mark.parametrize("url", ["<https://e.com/a b>", 'https://e.com/"onclick=x', "https://e.com\\@evil.example/"])
def test_url_with_spaces_quotes_or_backslashes_is_invalid(url: str) -> None:
    scan = parse_seed(entry(link=f"[中]({url})"), "s.md")
    assert scan.entries == ()
    assert "percent-encode it" in scan.problems[0].message


def test_empty_heading_is_invalid() -> None:
    scan = parse_seed("## \n[中](https://e.com/x)\n\n摘要\n\n##\n[中](https://e.com/y)\n\n摘要\n\n" + ENTRY, "s.md")
    assert [str(p) for p in scan.problems] == [
        's.md:1: empty heading: write the English title after "## "',
        's.md:6: empty heading: write the English title after "## "',
    ]
    assert len(scan.entries) == 1


def test_empty_link_text_is_invalid() -> None:
    scan = parse_seed(entry(link="[  ](https://e.com/x)"), "s.md")
    assert scan.entries == ()
    assert str(scan.problems[0]).startswith("s.md:2: the link text (Chinese title) is empty")


def test_empty_abstract_is_invalid() -> None:
    scan = parse_seed("## Title\n[中](https://e.com/x)\n\n   \n" + ENTRY, "s.md")
    assert [str(p) for p in scan.problems] == ["s.md:2: the abstract is empty: write it after the link line"]
    assert len(scan.entries) == 1


def test_non_utf8_file_reports_the_line_of_the_first_bad_byte() -> None:
    data = ENTRY.encode() + "## GBK entry\n[中文](https://e.com/x)\n\n摘要\n".encode("gbk")
    scan = parse_seed(data, "s.txt")
    (problem,) = scan.problems
    assert problem.kind is ProblemKind.INVALID
    assert str(problem) == "s.txt:6: not valid UTF-8 (byte 0xD6): save the file as UTF-8"
    assert [e.id for e in scan.entries] == ["2409.13346"]


def test_bad_byte_before_the_first_heading_is_still_reported() -> None:
    scan = parse_seed(b"notes \xff\n" + ENTRY.encode(), "s.txt")
    assert [str(p) for p in scan.problems] == ["s.txt:1: not valid UTF-8 (byte 0xFF): save the file as UTF-8"]
    assert len(scan.entries) == 1


def test_problems_are_in_line_order() -> None:
    text = entry(link="[中](ftp://x)") + ENTRY + ENTRY + "## \n"
    assert [p.line for p in parse_seed(text, "s").problems] == [2, 10, 14]


# The folder


def test_seed_files_are_md_and_txt_in_file_name_order(tmp_path: Path) -> None:
    for name in ["b.txt", "a.md", "c.json", "0.TXT", ".hidden.md", "notes"]:
        (tmp_path / name).write_text(ENTRY, encoding="utf-8")
    (tmp_path / "d.md").mkdir()
    assert [Path(f.path).name for f in list_seed_files(tmp_path)] == ["0.TXT", "a.md", "b.txt"]


def test_missing_seeds_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DigestError, match=r"seeds folder .*missing does not exist"):
        read_seeds(tmp_path / "missing")


def test_display_path_is_relative_to_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "000_a.txt").write_text(ENTRY + ENTRY, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    scan = read_seeds(Path("seeds"))
    assert scan.entries[0].source == "seeds/000_a.txt"
    assert str(scan.problems[0]).startswith("seeds/000_a.txt:5: duplicate of 2409.13346")


def test_read_seeds_deduplicates_across_files(tmp_path: Path) -> None:
    (tmp_path / "000_a.txt").write_text(ENTRY, encoding="utf-8")
    (tmp_path / "001_b.md").write_text(ENTRY.replace("abs/2409.13346", "pdf/2409.13346v2"), encoding="utf-8")
    scan = read_seeds(tmp_path, display_root=tmp_path)
    assert [e.source for e in scan.entries] == ["000_a.txt"]
    assert str(scan.problems[0]) == "001_b.md:1: duplicate of 2409.13346 (first at 000_a.txt:1)"


# Properties: any input gives entries + problems, never an exception


def assert_well_formed(scan: SeedScan) -> None:
    for found in scan.entries:
        assert found.url.lower().startswith(("http://", "https://"))
        assert found.title_en.strip() and found.title_zh.strip()
        assert found.abstract and all(p.strip() for p in found.abstract)
        for value in (found.id, found.title_en, found.title_zh, found.url, *found.abstract):
            assert not XML_ILLEGAL.search(value)
    for problem in scan.problems:
        assert problem.line >= 1


@given(st.text())
def test_any_text_parses_without_exception(text: str) -> None:
    assert_well_formed(parse_seed(text, "s"))


@given(st.binary())
def test_any_bytes_parse_without_exception(data: bytes) -> None:
    assert_well_formed(parse_seed(data, "s"))


garbage = st.text(alphabet=st.sampled_from(list('ab 中文。\\"[]()<>#:/\t\x00\x0b\ufeff\r')), max_size=12)
heading = st.builds(lambda s: "##" + s, st.sampled_from(["", " ", "  ", "\t", "#"])).flatmap(
    lambda h: st.builds(lambda t: h + t, garbage)
)
url = st.sampled_from(
    [
        "https://arxiv.org/abs/2409.13346",
        "http://arxiv.org/pdf/2409.13346v2.pdf",
        "https://e.com/a_(b)",
        "<https://e.com/x y>",
        "javascript:alert(1)",
        "data:text/html,x",
        "HTTPS://E.COM:443/",
        "",
        "https://",
    ]
)
link = st.builds(lambda text, u, tail: f"[{text}]({u}){tail}", garbage, url, st.sampled_from(["", " ", ")", "x"]))
line = st.one_of(heading, link, garbage, st.just(""), st.just('  T\\"ULU 3'))
document = st.lists(line, max_size=25).flatmap(
    lambda lines: st.sampled_from(["\n", "\r\n"]).map(lambda nl: nl.join(lines))
)


@settings(max_examples=300)
@given(document)
def test_seed_like_documents_parse_into_well_formed_entries(text: str) -> None:
    scan = parse_seed(text, "s")
    assert_well_formed(scan)
    assert_well_formed(parse_seed(text.encode("utf-8", "surrogatepass"), "s"))
    ids = [e.id for e in scan.entries]
    assert len(ids) == len(set(ids))


@given(document)
def test_every_heading_gives_an_entry_or_a_problem(text: str) -> None:
    scan = parse_seed(text, "s")
    # The parser's own view of lines: one BOM dropped, CR/CRLF as LF, XML-illegal characters gone.
    lines = XML_ILLEGAL.sub("", text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")).split("\n")
    headings = sum(1 for ln in lines if ln.startswith("## ") or ln.rstrip() == "##")
    assert len(scan.entries) + len(scan.problems) == headings


# scan_seed: the light scan a bulk import takes, held to parse_seed's answers


def refs_of(data: str | bytes) -> tuple[list[EntryRef], list[object]]:
    scan = parse_seed(data, "s")
    return [EntryRef(e.id, e.content_hash, e.source, e.line) for e in scan.entries], list(scan.problems)


# Entries of the common shape, and near misses that differ from it in one place, which its fast path must send
# back to the careful parser: spaces to collapse or trim (Unicode ones too), accents to resolve, a Topics line,
# paragraphs two blank lines apart or soft-wrapped, odd URLs, arXiv ids that are not quite ids.
plain_words = st.lists(st.sampled_from(["模型", "Large", "GPT-4", "“引号”", "(1)", "é"]), min_size=1, max_size=4).map(
    " ".join
)
NEAR_MISSES: list[tuple[str, str, str]] = [  # (part, old, new): replace in that part of a plain entry
    *[("title", " ", odd) for odd in ("  ", "\t", "\u3000", "\xa0")],
    *[("title", "", odd) for odd in (" ", "\u3000", 'T\\"ULU ', "a\x1fb ")],
    *[("text", " ", odd) for odd in ("  ", "\u3000", " [v2] ")],
    *[("text", "", odd) for odd in (" ", "\u3000")],
    *[
        ("url", "https://arxiv.org/abs/2409.13346", odd)
        for odd in (
            "https://arxiv.org/abs/2409.13346v3",
            "http://export.arxiv.org/pdf/2409.13346v2.pdf",
            "https://www.arxiv.org/html/2409.1334/",
            "https://arxiv.org/abs/2409.133461",
            "https://arxiv.org/abs/hep-th/9901001",
            "https://ARXIV.org/abs/2409.13346",
            "https://e.com/a_(b)",
            "https://E.com:443/x/",
            "https://e.com/x?y#z",
            "HTTPS://e.com/x",
            "ftp://e.com/x",
            "<https://e.com/x>",
        )
    ],
    *[("gap", "", odd) for odd in ("\n", " \n")],
    *[("tail", "", odd) for odd in (" ", "\t", "x")],
    *[("lead", "\n", odd) for odd in ("", "\n\n", "\n \n")],
    *[
        ("body", "\n\n", odd)
        for odd in (
            "\n\n\n",
            "\n\n\n\n",
            "\n",
            "\n \n",
            "\n\n ",
            " \n\n",
            "\n\nTopics: llm\n\n",
            "\n\nTOPICS: llm\n\n",
            "\n\ntopics：llm\n\n",
        )
    ],
    *[
        ("body", "", odd)
        for odd in (" ", "\t", "\u3000", "a\\b ", "Topics: llm\n", "TOPICS：agents\n", "topics:\n", "opics ")
    ],
    *[("end", "\n\n", odd) for odd in (" \n", "\n\n\n", "", "\u3000\n")],
    # over the size limits (title_max_bytes, entry_max_bytes): a problem on both paths
    ("title", "", "题" * 342),
    ("text", "", "题" * 342),
    ("body", "", "摘" * 22_000),
]


PLAIN_PARTS = {"title": "Large 模型", "gap": "", "text": "大 模型", "url": "https://arxiv.org/abs/2409.13346",
               "tail": "", "lead": "\n", "body": "第一段。\n\n第二段。", "end": "\n\n"}  # fmt: skip


def seed_entry(parts: dict[str, str]) -> str:
    p = parts
    return f"## {p['title']}\n{p['gap']}[{p['text']}]({p['url']}){p['tail']}\n{p['lead']}{p['body']}{p['end']}"


def near_miss(parts: dict[str, str], miss: tuple[str, str, str], at_start: bool) -> dict[str, str]:
    part, old, odd = miss
    text = parts[part]
    if old == "":  # at the start or at the end
        return {**parts, part: odd + text if at_start else text + odd}
    return {**parts, part: text.replace(old, odd, 1)}


@st.composite
def near_entry(draw: st.DrawFn) -> str:
    parts = {
        **PLAIN_PARTS,
        "title": draw(plain_words),
        "text": draw(plain_words),
        "url": draw(st.sampled_from(["https://arxiv.org/abs/2409.13346", "https://e.com/p/1"])),
        "body": draw(st.lists(plain_words, min_size=1, max_size=3).map("\n\n".join)),
    }
    for miss in draw(st.lists(st.sampled_from(NEAR_MISSES), max_size=2)):  # none: a plain entry
        parts = near_miss(parts, miss, draw(st.booleans()))
    return seed_entry(parts)


near_document = st.lists(st.one_of(near_entry(), near_entry(), line), max_size=8).map("".join)


@pytest.mark.parametrize("at_start", [True, False])
@pytest.mark.parametrize("miss", NEAR_MISSES, ids=repr)
def test_the_light_scan_takes_each_near_miss_as_the_parser_does(miss: tuple[str, str, str], at_start: bool) -> None:
    for parts in (PLAIN_PARTS, {**PLAIN_PARTS, "body": "一段。"}):
        plain = seed_entry(parts)
        odd = seed_entry(near_miss(parts, miss, at_start))
        for text in (odd, plain + odd, odd + plain):
            assert scan_seed(text, "s") == refs_of(text)


@settings(max_examples=500)
@given(near_document)
def test_the_light_scan_finds_what_the_parser_finds(text: str) -> None:
    assert scan_seed(text, "s") == refs_of(text)
    assert scan_seed(text.encode("utf-8", "surrogatepass"), "s") == refs_of(text.encode("utf-8", "surrogatepass"))


@settings(max_examples=300)
@given(document)
def test_the_light_scan_agrees_on_seed_like_garbage(text: str) -> None:
    assert scan_seed(text, "s") == refs_of(text)


def test_the_light_scan_agrees_on_the_sample_seeds_and_takes_their_fast_path() -> None:
    for path in sorted((ROOT / "seeds").iterdir()):
        data = path.read_bytes()
        assert scan_seed(data, "s") == refs_of(data)
    # The real entries have the common shape, so the check above compared the fast path, not the parser twice.
    plain = "## Plain Title\n[中文 标题](https://arxiv.org/abs/2409.13346v2)\n\n第一段。\n\n第二段。\n"
    refs, problems = scan_seed(plain, "s")
    assert problems == [] and refs == refs_of(plain)[0] and refs[0].id == "2409.13346"


def test_a_topics_line_may_be_written_in_capitals() -> None:
    found = only_entry(parse_seed(entry(abstract="TOPICS: llm\n\n摘要。"), "s"))
    assert found.topics == ("llm",) and found.abstract == ("摘要。",)
