"""Every page people open is well-formed HTML5: the static site, both copies of the email, and the pages of
`digest serve` (signup, confirmation, preferences, unsubscribe, errors). html5lib reports the parse errors the
HTML standard defines (misnested or unclosed elements, bad attributes, stray end tags); ids must be unique so that
the table of contents and the labels point at one element each."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import html5lib
import httpx
import lxml.html

from digest.store import Store
from digest.tokens import preferences_link
from tests.test_web import NOW, SECRET, add_subscriber, current_token, make_workspace, start_server


def problems(html: bytes) -> list[str]:
    """The HTML5 parse errors and the repeated ids of one page (empty: valid)."""
    parser = html5lib.HTMLParser(strict=False)
    parser.parse(html)
    found = [f"line {line}:{col}: {code} {data or ''}" for (line, col), code, data in parser.errors]
    ids = Counter(lxml.html.fromstring(html).xpath("//@id"))
    found += [f"id {name!r} used {count} times" for name, count in ids.items() if count > 1]
    return found


def test_the_check_catches_broken_markup_and_repeated_ids() -> None:
    assert problems(b"<!DOCTYPE html><title>x</title><p><b>bold</p></i>")
    assert problems(b'<!DOCTYPE html><title>x</title><p id="a">1</p><p id="a">2</p>') == ["id 'a' used 2 times"]
    assert problems(b"<!DOCTYPE html><title>x</title><p>fine</p>") == []


def test_every_page_of_the_site_and_the_email_is_valid_html5(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "work")
    ws.run("render", "--now", NOW)
    pages = sorted(ws.site.rglob("*.html"))  # rglob includes the mailer's hidden copy in issues/N/.mail/
    assert len(pages) > 15 and any(".mail" in p.parts for p in pages)
    report = {str(p.relative_to(ws.site)): problems(p.read_bytes()) for p in pages}
    assert {name: found for name, found in report.items() if found} == {}


def test_every_page_of_digest_serve_is_valid_html5(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "work")
    ws.run("render", "--now", NOW)
    add_subscriber(ws.state, "reader@example.org")
    with Store.open(ws.state) as store:
        subscriber = store.subscriber("reader@example.org")
    assert subscriber is not None
    preferences = preferences_link("http://localhost:8000/", SECRET, subscriber).split("8000", 1)[1]
    server = start_server(ws)
    try:
        with httpx.Client(base_url=server.base, timeout=10) as client:
            answers = {
                "subscribe": client.get("/subscribe"),
                "bad address": client.post(
                    "/subscribe", data={"email": "not an address"}, headers={"Origin": "http://localhost:8000"}
                ),
                "confirm (forged)": client.get("/confirm/forged"),
                "preferences": client.get(preferences),
                "unsubscribe": client.get(
                    "/unsubscribe", params={"token": current_token(ws.state, "reader@example.org")}
                ),
                "not found": client.get("/no/such/page"),
            }
    finally:
        server.stop()
    assert {name: r.status_code for name, r in answers.items()} == {
        "subscribe": 200,
        "bad address": 400,
        "confirm (forged)": 400,
        "preferences": 200,
        "unsubscribe": 200,
        "not found": 404,
    }
    report = {name: problems(r.content) for name, r in answers.items() if "html" in r.headers["content-type"]}
    assert len(report) >= 5
    assert {name: found for name, found in report.items() if found} == {}
