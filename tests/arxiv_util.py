"""A fake arXiv API on loopback: Atom answers in the shape export.arxiv.org gives (folded title and summary,
several authors, arxiv:primary_category, versioned ids, the `Error` entry for a malformed id, no entry for an
unknown one), `search_query=cat:...` listings newest first in pages, and scripted faults (429 with Retry-After,
503, a slow answer)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape


@dataclass
class FakePaper:
    id: str
    title: str
    abstract: str
    authors: tuple[str, ...] = ("Ada Lovelace", "Alan Turing", "Grace Hopper")
    version: int = 1
    category: str = "cs.CL"
    published: str = "2024-09-20T09:21:49Z"


@dataclass
class FakeArxiv:
    """The server's papers, its script of faults (consumed one per request) and what it was asked."""

    papers: dict[str, FakePaper] = field(default_factory=dict)
    script: list[str] = field(default_factory=list)  # "429:7", "503", "slow:2", "html"
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def add(self, paper: FakePaper) -> None:
        self.papers[paper.id] = paper

    @property
    def asked_ids(self) -> list[list[str]]:
        return [parse_qs(urlsplit(path).query).get("id_list", [""])[0].split(",") for path, _ in self.requests]


_WELL_FORMED = re.compile(r"(\d{2}(0[1-9]|1[0-2])\.\d{4,5}|[a-z\-]+(\.[A-Z]{2})?/\d{7})(v\d+)?")


def _fold(text: str, width: int = 70) -> str:
    """Break text over lines as arXiv does (the Atom text keeps the submitter's line breaks)."""
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) > width:
            lines.append(line)
            line = ""
        line = f"{line} {word}".strip()
    lines.append(line)
    return "\n  ".join(lines)


def entry_xml(paper: FakePaper) -> str:
    vid = f"{paper.id}v{paper.version}"
    authors = "".join(f"\n    <author>\n      <name>{escape(a)}</name>\n    </author>" for a in paper.authors)
    return f"""  <entry>
    <id>http://arxiv.org/abs/{vid}</id>
    <updated>2024-09-23T17:59:46Z</updated>
    <published>{paper.published}</published>
    <title>{escape(_fold(paper.title))}</title>
    <summary>  {escape(_fold(paper.abstract))}
</summary>{authors}
    <arxiv:comment xmlns:arxiv="http://arxiv.org/schemas/atom">12 pages, 5 figures</arxiv:comment>
    <link href="http://arxiv.org/abs/{vid}" rel="alternate" type="text/html"/>
    <link title="pdf" href="http://arxiv.org/pdf/{vid}" rel="related" type="application/pdf"/>
    <arxiv:primary_category xmlns:arxiv="http://arxiv.org/schemas/atom" term="{paper.category}" \
scheme="http://arxiv.org/schemas/atom"/>
    <category term="{paper.category}" scheme="http://arxiv.org/schemas/atom"/>
  </entry>
"""


def error_xml(bad: str) -> str:
    return f"""  <entry>
    <id>http://arxiv.org/api/errors#incorrect_id_format_for_{bad}</id>
    <title>Error</title>
    <summary>incorrect id format for {bad}</summary>
    <updated>2026-12-06T00:00:00-05:00</updated>
    <link href="http://arxiv.org/api/errors#incorrect_id_format_for_{bad}" rel="alternate" type="text/html"/>
    <author>
      <name>arXiv api core</name>
    </author>
  </entry>
"""


def feed_xml(entries: list[str], query: str, total: int | None = None, start: int = 0) -> bytes:
    os = 'xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/"'
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <link href="http://arxiv.org/api/query?{escape(query)}" rel="self" type="application/atom+xml"/>
  <title type="html">ArXiv Query: {escape(query)}</title>
  <id>http://arxiv.org/api/cHxbiOdZaP56ODnBPIenZhzg5f8</id>
  <updated>2026-12-06T00:00:00-05:00</updated>
  <opensearch:totalResults {os}>{len(entries) if total is None else total}</opensearch:totalResults>
  <opensearch:startIndex {os}>{start}</opensearch:startIndex>
  <opensearch:itemsPerPage {os}>{len(entries)}</opensearch:itemsPerPage>
{"".join(entries)}</feed>
""".encode()


def listing(fake: FakeArxiv, query: str) -> bytes:
    """A `search_query=cat:A OR cat:B` listing, newest first, one page (`start`, `max_results`) of it."""
    args = {k: v[0] for k, v in parse_qs(query).items()}
    wanted = set(re.findall(r"cat:([\w.\-]+)", args["search_query"]))
    found = sorted((p for p in fake.papers.values() if p.category in wanted), key=lambda p: p.published, reverse=True)
    start, size = int(args.get("start", "0")), int(args.get("max_results", "10"))
    return feed_xml([entry_xml(p) for p in found[start : start + size]], query, total=len(found), start=start)


def answer(fake: FakeArxiv, path: str) -> bytes:
    query = urlsplit(path).query
    if parse_qs(query).get("search_query"):
        return listing(fake, query)
    ids = [i for i in parse_qs(query).get("id_list", [""])[0].split(",") if i]
    bad = [i for i in ids if not _WELL_FORMED.fullmatch(i)]
    if bad:  # arXiv refuses the whole list for the first malformed id
        return feed_xml([error_xml(bad[0])], query)
    return feed_xml([entry_xml(fake.papers[i.split("v")[0]]) for i in ids if i.split("v")[0] in fake.papers], query)


@contextmanager
def serve_arxiv(fake: FakeArxiv) -> Iterator[FakeArxiv]:
    """Run the fake on 127.0.0.1 (a free port) for the `with` block; `fake.url` is its API URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            fake.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            step = fake.script.pop(0) if fake.script else ""
            if step.startswith("slow:"):
                time.sleep(float(step.split(":")[1]))
            if step.startswith(("429", "503")):
                code, _, after = step.partition(":")
                self.send_response(int(code))
                if after:
                    self.send_header("Retry-After", after)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b"<html><body>Service unavailable</body></html>" if step == "html" else answer(fake, self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/atom+xml; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/api/query"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def settings_for(fake: FakeArxiv) -> dict[str, str]:
    """The settings that point digest at `fake`, with no pause between requests (the pace has its own test)."""
    return {"DIGEST_ARXIV_API_URL": fake.url, "DIGEST_ARXIV_DELAY": "0"}
