"""Bidi controls (issue 16): U+202A-U+202E, U+2066-U+2069, LRM, RLM and ALM are invisible and reorder the text
around them, so `Safe \\u202eexe.txt` shows as `Safe txt.exe`. They are dropped where text is cleaned (seed text,
notes, header values, names), so no output carries one: the site, the feeds, the mail and its header.
"""

from __future__ import annotations

import json
from pathlib import Path

import feedparser
import lxml.etree
import pytest

from digest.errors import SettingsError
from digest.message import clean_header
from digest.settings import load_settings
from digest.subscribers import clean_name
from digest.text import clean_text
from tests import test_send_cli
from tests.conftest import Workspace
from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401  (fixture)
from tests.test_cli_render import paper

mail_ws = test_send_cli.mail_ws  # the fixture: issue 1 rendered, SMTP settings pointing at `smtp_server`
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
TITLE = "Safe \u202eexe.txt\u202c \u2067Reordered\u2069 Title"
SHOWN = "Safe exe.txt Reordered Title"


def has_bidi(text: str) -> bool:
    return any(c in text for c in BIDI)


@pytest.mark.parametrize("clean", [clean_text, clean_header, clean_name])
def test_the_shared_cleaners_drop_every_bidi_control(clean: object) -> None:
    assert callable(clean)
    assert clean("a" + "b".join(BIDI) + "c") == "a" + "b" * (len(BIDI) - 1) + "c"
    assert clean("שלום \u200dعالم 👩\u200d💻") == "שלום \u200dعالم 👩\u200d💻"  # joiners stay: they reorder nothing


def test_a_bidi_control_in_a_setting_that_reaches_headers_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "digest.toml"
    config.write_text("", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"title: .*control characters"):
        load_settings(config, title="AI \u202e论文周报")


def test_no_output_carries_a_bidi_control(mail_ws: Workspace, smtp_server: MailServer) -> None:
    mail_ws.add_seed(
        "900_bidi.md",
        paper(TITLE, "标题\u202e反转\u202c", "https://arxiv.org/abs/2409.99999", "摘要\u2066内容\u2069 \u200fWe."),
    )
    mail_ws.run("render", "--now", "2024-09-30T08:00:00+08:00")
    mail_ws.run("subscribers", "add", "ada@example.org", "--name", "Ada \u202eecalevoL\u202c")
    mail_ws.run("send")

    site = mail_ws.site
    pages = [p for p in site.rglob("*") if p.is_file() and p.suffix in {".html", ".xml", ".json", ".txt", ".js"}]
    page = next(p for p in site.glob("issues/*/index.html") if SHOWN in p.read_text(encoding="utf-8"))
    assert not has_bidi(page.read_text(encoding="utf-8"))
    rss = (site / "rss.xml").read_bytes()
    assert SHOWN in [e.title for e in feedparser.parse(rss).entries]
    assert all(not has_bidi(t) for t in lxml.etree.fromstring(rss).xpath("//item/title/text()"))
    assert SHOWN in [i["title"] for i in json.loads((site / "feed.json").read_text(encoding="utf-8"))["items"]]
    assert [p for p in pages if has_bidi(p.read_text(encoding="utf-8", errors="replace"))] == []

    [received] = smtp_server.to("ada@example.org")
    msg = received.message
    assert msg["To"].addresses[0].display_name == "Ada ecalevoL"
    assert not has_bidi(str(msg["Subject"]))
    text, html = (part.get_content() for part in msg.iter_parts())
    assert SHOWN in text and not has_bidi(text) and not has_bidi(html)
