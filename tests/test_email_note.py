"""The email's parts that come from the seed folder and the settings, through `digest render` and `rebuild`: the
editor's note (`seeds/_notes/<N>.md`, escaped), the highlights count and the sender's postal address."""

from __future__ import annotations

import lxml.html

from tests.conftest import Workspace


def published_email(ws: Workspace, number: int = 1) -> lxml.html.HtmlElement:
    return lxml.html.fromstring((ws.site / "issues" / str(number) / "email.html").read_text(encoding="utf-8"))


def test_the_editors_note_highlights_and_sender_address_reach_the_email(workspace: Workspace) -> None:
    notes = workspace.seeds / "_notes"
    notes.mkdir()
    (notes / "1.md").write_text(
        "本周重点是多模态。<script>alert(1)</script>\n详见 https://digest.example.org/about\n\n"
        '<a href="javascript:x">第二段</a>',
        encoding="utf-8",
    )
    workspace.env.update({"DIGEST_HIGHLIGHTS": "2", "DIGEST_SENDER_ADDRESS": "1 Example Road, Beijing, China"})
    result = workspace.run("render", "--now", "2024-09-23T08:00:00+08:00")
    assert "_notes" not in result.stdout + result.stderr  # the notes folder is not read as seeds
    doc = published_email(workspace)
    note = doc.xpath("//h2[starts-with(., '编者按')]/following-sibling::p")
    assert [p.text_content() for p in note] == [
        "本周重点是多模态。<script>alert(1)</script>详见 https://digest.example.org/about",
        '<a href="javascript:x">第二段</a>',
    ]
    assert not doc.xpath("//body//script") and "javascript:" not in "".join(doc.xpath("//a/@href"))
    assert len(doc.xpath("//h2[starts-with(., '本周要点')]/following-sibling::p")) == 2
    assert "1 Example Road, Beijing, China" in doc.text_content()
    text = (workspace.site / "issues" / "1" / "email.txt").read_text(encoding="utf-8")
    assert "编者按 / Editor's note" in text and "1 Example Road, Beijing, China" in text

    # An edited note is picked up by `rebuild`.
    (notes / "1.md").write_text("改过的编者按。", encoding="utf-8")
    workspace.run("rebuild")
    assert "改过的编者按。" in published_email(workspace).text_content()
