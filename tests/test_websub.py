"""WebSub: after a render that changed feeds, the hub gets one publish ping per changed subscription feed; a hub
that fails or cannot be reached costs a warning, never the render."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import pytest

from digest.publisher import Publisher
from digest.render.feeds import is_subscription_feed
from digest.settings import load_settings
from tests.conftest import SAMPLE_SEEDS

SITE = "https://digest.example.org/"
NOW = datetime(2026, 11, 23, 8, tzinfo=ZoneInfo("Asia/Shanghai"))


class Hub:
    """A local HTTP endpoint that records each POST body and answers with `status`."""

    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.pings: list[dict[str, list[str]]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                assert self.headers["Content-Type"] == "application/x-www-form-urlencoded"
                hub.pings.append(parse_qs(self.rfile.read(length).decode("ascii")))
                self.send_response(hub.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hub"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def feeds(self) -> list[str]:
        assert all(p["hub.mode"] == ["publish"] for p in self.pings)
        return [p["hub.url"][0] for p in self.pings]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub() -> Iterator[Hub]:
    server = Hub()
    yield server
    server.close()


@pytest.fixture
def seeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in [k for k in os.environ if k.startswith("DIGEST_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(SAMPLE_SEEDS, tmp_path / "seeds")
    return tmp_path / "seeds"


def publisher(hub_url: str) -> Publisher:
    return Publisher(load_settings(websub_hub=hub_url, site_url=SITE, max_entries_per_issue=10))


def test_changed_feeds_are_pinged_once_each_after_the_render(seeds: Path, hub: Hub) -> None:
    result = publisher(hub.url).publish_next_issue(NOW)
    assert result.issue is not None
    pinged = hub.feeds()
    assert len(pinged) == len(set(pinged))
    for name in ("rss.xml", "atom.xml", "feed.json", "issues.xml"):
        assert SITE + name in pinged
    assert any(url.startswith(SITE + "topics/") and url.endswith("/atom.xml") for url in pinged)
    assert all(is_subscription_feed(url.removeprefix(SITE)) for url in pinged)
    # Every pinged feed is on disk already (the hub fetches it at once).
    assert all((Path("site") / url.removeprefix(SITE)).is_file() for url in pinged)

    # The next issue changes the feeds again; a run with nothing new changes nothing and pings nothing.
    hub.pings.clear()
    publisher(hub.url).publish_next_issue(NOW + timedelta(days=7))
    assert SITE + "atom.xml" in hub.feeds()
    hub.pings.clear()
    for week in range(2, 5):
        publisher(hub.url).publish_next_issue(NOW + timedelta(days=7 * week))
    hub.pings.clear()
    quiet = publisher(hub.url).publish_next_issue(NOW + timedelta(days=35))
    assert quiet.issue is None and hub.pings == []


def test_no_hub_no_ping(seeds: Path, hub: Hub) -> None:
    publisher("").publish_next_issue(NOW)
    assert hub.pings == []


def test_a_hub_that_refuses_costs_a_warning_not_the_render(seeds: Path, caplog: pytest.LogCaptureFixture) -> None:
    failing = Hub(status=500)
    try:
        with caplog.at_level(logging.WARNING, logger="digest.websub"):
            result = publisher(failing.url).publish_next_issue(NOW)
    finally:
        failing.close()
    assert result.issue is not None and Path("site/atom.xml").is_file()
    assert len(failing.pings) > 4  # an HTTP error does not stop the other pings
    assert any("refused" in r.getMessage() and "HTTP 500" in r.getMessage() for r in caplog.records)


def test_an_unreachable_hub_is_tried_once(seeds: Path, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with caplog.at_level(logging.WARNING, logger="digest.websub"):
        result = publisher(f"http://127.0.0.1:{port}/hub").publish_next_issue(NOW)
    assert result.issue is not None
    warnings = [r.getMessage() for r in caplog.records if r.name == "digest.websub"]
    assert len(warnings) == 1 and "not reached" in warnings[0] and "more feeds not announced" in warnings[0]


def test_subscription_feeds_are_the_site_and_topic_feeds() -> None:
    assert is_subscription_feed("atom.xml") and is_subscription_feed("topics/llm/feed.json")
    assert not is_subscription_feed("archive/issues-1.xml")
    assert not is_subscription_feed("issues/3/index.html")
    assert not is_subscription_feed("topics/llm/page/2/atom.xml")
