"""`digest status --html FILE` end to end: three issues published and mailed through a real SMTP server, the page
parsed with lxml and looked at in Chromium.

What an editor relies on: one file that opens offline and from a mail attachment (no script, nothing fetched from
another site, the charts inline SVG), with the numbers `digest status` prints, every outside text escaped, and
readable on a 375 px phone as on a desktop.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from lxml import html as lxml_html

from digest.settings import TopicSetting
from digest.topics import DEFAULT_TOPICS
from tests.browser_util import measure_page
from tests.conftest import Workspace
from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401  (the smtp_server fixture)

HOSTILE = '<script>alert("topic")</script><img src="https://evil.example/x.png"> & Robots'
ARTIFACTS = Path(__file__).resolve().parent / ".artifacts"
SITE = "https://digest.example.org/"


def add_papers(ws: Workspace, name: str, first_id: int, count: int) -> None:
    blocks = [
        f"## Robot paper number {n}\n[机器人论文 {n}](https://arxiv.org/abs/2501.{n:05d})\n\n"
        f"第 {n} 篇机器人论文的摘要。\n"
        for n in range(first_id, first_id + count)
    ]
    (ws.seeds / name).write_text("\n".join(blocks), encoding="utf-8")


def add_readers(ws: Workspace, addresses: list[str]) -> None:
    csv = ws.root / "people.csv"
    csv.write_text("email\n" + "".join(f"{a}\n" for a in addresses), encoding="utf-8")
    ws.run("subscribers", "import", str(csv))


@pytest.fixture
def history_ws(workspace: Workspace, smtp_server: MailServer) -> Workspace:
    """Three issues, each mailed, the list growing from 3 to 8 readers with one bounce and one who left; the first
    topic's English name is hostile HTML."""
    topics = [TopicSetting.of(t).model_dump() for t in DEFAULT_TOPICS]
    topics[0]["name_en"] = HOSTILE
    workspace.env.update(
        {
            "DIGEST_TOPICS": json.dumps(topics),
            "DIGEST_SMTP__HOST": "127.0.0.1",
            "DIGEST_SMTP__PORT": str(smtp_server.port),
            "DIGEST_SMTP__SECURITY": "none",
            "DIGEST_SMTP__TIMEOUT": "5",
            "DIGEST_FROM_ADDRESS": "Digest <digest@example.org>",
            "DIGEST_SEND_RETRIES": "0",
            "DIGEST_MAX_MESSAGES_PER_SECOND": "1000",
            "DIGEST_MAX_HARD_BOUNCE_RATE": "0.5",
        }
    )
    add_readers(workspace, [f"first{i}@example.org" for i in range(3)])
    workspace.run("render")
    workspace.run("send")
    add_readers(workspace, [f"second{i}@example.org" for i in range(4)])
    smtp_server.reject.add("second3@example.org")
    add_papers(workspace, "200_more.md", 1, 4)
    workspace.run("render")
    workspace.run("send")
    workspace.run("subscribers", "remove", "first0@example.org")
    add_readers(workspace, ["third0@example.org", "third1@example.org"])
    add_papers(workspace, "300_more.md", 10, 6)
    workspace.run("render")
    workspace.run("send")
    return workspace


def test_status_html_is_one_offline_page_with_inline_svg_charts(history_ws: Workspace) -> None:
    out = history_ws.root / "status.html"
    result = history_ws.run("status", "--html", str(out))
    assert f"status page written to {out}" in result.stdout
    page = out.read_text(encoding="utf-8")
    tree = lxml_html.fromstring(page)

    assert tree.xpath("//script") == [] and "<script" not in page.lower()  # none of pygal's, none of ours
    headings = tree.xpath("//section/h2/text()")
    assert headings == [
        "Numbers",
        "Subscribers over issues",
        "Delivered per issue (% of mailed)",
        "Bounces and complaints per issue (% of mailed)",
        "Papers per topic",
    ]
    charts = tree.xpath("//section/*[local-name() = 'svg']")
    assert len(charts) == 4, "each chart is an <svg> inside the page, not an <img> or <object>"
    for element in tree.iter():
        if not isinstance(element.tag, str):
            continue
        for name in ("src", "href", "{http://www.w3.org/1999/xlink}href", "xlink:href", "data", "srcset"):
            value = element.get(name)
            if value is None:
                continue
            assert name not in ("src", "data", "srcset"), f"<{element.tag} {name}={value!r}> loads something"
            assert not urlsplit(value).scheme or value.startswith(SITE), f"<{element.tag}> links {value!r}"
    assert tree.xpath("//link") == [] and tree.xpath("//img") == [] and tree.xpath("//iframe") == []

    # the hostile topic name is text, in the chart's label (cut to fit), never markup
    labels = [t for t in tree.xpath("//*[local-name() = 'svg']//text()") if "alert" in t]
    assert labels and all(t.strip() == '<script>alert("topic"…' for t in labels)
    assert not [e for e in tree.iter() if any("evil.example" in v for v in e.attrib.values())]

    # the numbers `digest status` prints are on the page, label and value
    numbers = dict(zip(tree.xpath("//dl/dt/text()"), tree.xpath("//dl/dd/text()"), strict=True))
    printed = history_ws.run("status").stdout
    for key in ("deliveries of issue 3", "bounces of issue 2", "bounces of issue 3", "next scheduled run"):
        line = next(line for line in printed.splitlines() if line.startswith(key + ":"))
        assert numbers[key] == line.split(": ", 1)[1]
    assert numbers["issues"].startswith("3; last: issue 3")
    assert numbers["bounces of issue 2"].startswith("7 mailed: 6 delivered, 1 hard-bounced (14.29%)")

    # the subscriber line rises 3 -> 7 -> 7 (8 joined; one bounced at issue 2, one left before issue 3 ...)
    growth = charts[0]
    values = [int(v) for v in growth.xpath(".//*[local-name() = 'desc'][@class = 'value']/text()")]
    assert values == [3, 7, 7], values


@pytest.mark.slow
def test_status_page_reads_on_a_phone_and_a_desktop(history_ws: Workspace) -> None:
    out = history_ws.root / "status.html"
    history_ws.run("status", "--html", str(out))
    for width in (375, 1280):
        shot = ARTIFACTS / f"status-page-{width}.png"
        assert measure_page(out, width, shot, height=800) <= width, f"the status page scrolls sideways at {width}px"
        assert shot.stat().st_size > 20_000


def test_status_html_names_a_file_it_cannot_write(workspace: Workspace) -> None:
    workspace.run("render")
    (workspace.root / "notes.txt").write_text("a file where a folder should be\n", encoding="utf-8")
    result = workspace.run("status", "--html", str(workspace.root / "notes.txt" / "s.html"), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "notes.txt/s.html: cannot write" in result.stderr
