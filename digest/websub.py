"""WebSub publishing (W3C WebSub, section 6 "Publishing"): tell the hub which feeds changed, so that it fetches
them and pushes them to subscribers now rather than at their next poll. The only module that speaks to a hub.

A ping is a courtesy: the feeds are already written, so a hub that is down or slow costs a warning, never a
failed render. After the first hub that cannot be reached at all, the remaining pings of the run are skipped
(a black-holed hub would otherwise cost the timeout once per feed).
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

from digest import __version__

log = logging.getLogger("digest.websub")
PING_TIMEOUT = 5.0  # seconds per request


def ping_hub(hub: str, feed_urls: Sequence[str], *, timeout: float = PING_TIMEOUT) -> list[str]:
    """POST `hub.mode=publish&hub.url=<feed>&hub.topic=<feed>` to `hub` for each feed URL (WebSub leaves the
    publish request to the hub: PubSubHubbub 0.4 hubs read `hub.url`, others `hub.topic`, so both are sent); returns
    the failures (each also logged as a warning). Never raises."""
    failures: list[str] = []
    for position, url in enumerate(feed_urls):
        fields = {"hub.mode": "publish", "hub.url": url, "hub.topic": url}
        body = urllib.parse.urlencode(fields).encode("ascii")
        request = urllib.request.Request(
            hub,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": f"digest/{__version__} (WebSub publisher)",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:  # the hub answered: later feeds may still be accepted
            failures.append(f"WebSub hub {hub} refused {url}: HTTP {exc.code} {exc.reason}")
            log.warning("%s", failures[-1])
        except (OSError, ValueError) as exc:  # unreachable, timed out, bad URL: the rest would fail the same way
            skipped = len(feed_urls) - position - 1
            failures.append(
                f"WebSub hub {hub} not reached for {url}: {getattr(exc, 'reason', exc)}"
                + (f"; {skipped} more feeds not announced" if skipped else "")
            )
            log.warning("%s", failures[-1])
            break
    return failures
