"""Paper metadata from the arXiv API, politely: the `arxiv` package's client and Atom parser, with our own HTTP
round trip (a timeout, a User-Agent naming digest and its sender, 429/503 retried after `Retry-After`, at most one
request every `delay` seconds, as arXiv's terms of use ask). Used only by `digest draft`."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import arxiv
import requests
from arxiv import _feed  # the package's own Atom parser (lxml, no network, no entities)
from lxml import etree  # type: ignore[import-untyped]

from digest import __version__
from digest.errors import DigestError

__all__ = ["ArxivError", "ArxivPaper", "ArxivSource", "bare_id"]

BATCH = 50  # ids per request (id_list); arXiv answers up to 2,000 per page, smaller pages fail less
POLITE_DELAY = 3.0  # seconds between requests to arxiv.org itself (https://info.arxiv.org/help/api/tou.html)
MAX_WAIT = 300.0  # a Retry-After longer than this is not waited for: the run stops with a clear line instead
_ATOM = "{http://www.w3.org/2005/Atom}"
_VERSION = re.compile(r"v(\d+)$")


class ArxivError(DigestError):
    """The arXiv API could not be asked or gave an answer we cannot read."""


@dataclass(frozen=True)
class ArxivPaper:
    """One paper's metadata as arXiv gives it (title and abstract with their folded lines joined)."""

    id: str  # bare: 2409.13346
    version: int
    title: str
    abstract: str
    authors: tuple[str, ...]
    primary_category: str
    published: datetime

    @property
    def versioned_id(self) -> str:
        return f"{self.id}v{self.version}"


@dataclass(frozen=True)
class Lookup:
    """What arXiv said about a list of ids: the papers found, and an explanation per id it refused."""

    papers: dict[str, ArxivPaper]
    refused: dict[str, str]


def bare_id(short_id: str) -> tuple[str, int]:
    """`2409.13346v2` -> (`2409.13346`, 2); no version -> 1."""
    found = _VERSION.search(short_id)
    if found is None:
        return short_id, 1
    return short_id[: found.start()], int(found.group(1))


def _one_line(text: str) -> str:
    return " ".join(text.split())


class ArxivSource(arxiv.Client):  # type: ignore[misc]  # the package has no type hints
    """The `arxiv` client with our transport: `lookup(ids)` fetches metadata in batches of `BATCH` ids."""

    def __init__(
        self,
        api_url: str,
        contact: str,
        *,
        delay: float = POLITE_DELAY,
        timeout: float = 30.0,
        retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        host = (urlsplit(api_url).hostname or "").lower()
        if host == "arxiv.org" or host.endswith(".arxiv.org"):
            delay = max(delay, POLITE_DELAY)  # a test server may be asked faster; arXiv never
        super().__init__(page_size=BATCH, delay_seconds=delay, num_retries=retries)
        self.query_url_format = api_url + ("&" if "?" in api_url else "?") + "{}"
        self.api_url = api_url
        self.timeout = timeout
        self.user_agent = f"digest/{__version__} (newsletter drafts; {contact})"
        self._sleep = sleep
        self._clock = clock
        self._last: float | None = None
        self.requests = 0
        self._refused: dict[str, str] = {}

    def lookup(self, ids: Sequence[str], progress: Callable[[int], None] | None = None) -> Lookup:
        """The newest version of each bare id; ids arXiv does not know are simply absent from `papers`."""
        papers: dict[str, ArxivPaper] = {}
        refused: dict[str, str] = {}
        for start in range(0, len(ids), BATCH):
            batch = list(ids[start : start + BATCH])
            while batch:
                self._refused = {}
                found = self._fetch(batch)
                papers.update(found)
                refused.update(self._refused)
                # arXiv refuses a whole id_list for one malformed id: ask again for the others.
                batch = [i for i in batch if i not in found and i not in refused] if self._refused else []
            if progress:
                progress(min(start + BATCH, len(ids)))
        return Lookup(papers, refused)

    def _fetch(self, batch: list[str]) -> dict[str, ArxivPaper]:
        search = arxiv.Search(id_list=batch, max_results=len(batch))
        found: dict[str, ArxivPaper] = {}
        for result in self.results(search):
            paper = _paper(result)
            if paper is not None and paper.id in batch:
                found[paper.id] = paper
        return found

    def _parse_feed(self, url: str, first_page: bool = True, _try_index: int = 0) -> Any:
        """One page of results (overrides the package's transport; its parser reads the Atom)."""
        content = self._get(url)
        errors = _error_entries(content)
        self._refused.update(errors)
        feed = _feed.parse(content)
        if feed.malformed:
            raise ArxivError(f"arXiv: the answer from {self.api_url} is not an Atom feed ({feed.error})")
        return feed

    def _get(self, url: str) -> bytes:
        attempt = 0
        while True:
            if self._last is not None:
                wait = self.delay_seconds - (self._clock() - self._last)
                if wait > 0:
                    self._sleep(wait)
            try:
                response = requests.get(url, headers={"User-Agent": self.user_agent}, timeout=self.timeout)
            except requests.Timeout:
                raise ArxivError(f"arXiv: no answer from {self.api_url} within {self.timeout:g} s") from None
            except requests.RequestException as exc:
                raise ArxivError(f"arXiv: cannot reach {self.api_url}: {type(exc).__name__}") from None
            finally:
                self._last = self._clock()
                self.requests += 1
            if response.status_code == 200:
                return response.content
            if response.status_code in (429, 503) and attempt < self.num_retries:
                wait = _retry_after(response.headers.get("Retry-After"), default=self.delay_seconds * 2**attempt)
                if wait > MAX_WAIT:
                    raise ArxivError(
                        f"arXiv: {self.api_url} answered {response.status_code}, asking to wait {wait:.0f} s: try later"
                    )
                self._sleep(wait)
                attempt += 1
                continue
            raise ArxivError(
                f"arXiv: {self.api_url} answered HTTP {response.status_code}"
                + (f" after {attempt + 1} tries" if attempt else "")
            )


def _retry_after(value: str | None, default: float) -> float:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), else `default`."""
    if not value:
        return default
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, when.timestamp() - time.time())


def _error_entries(content: bytes) -> dict[str, str]:
    """arXiv's answer to a malformed id: an entry titled `Error` whose summary names the id."""
    try:
        root = etree.fromstring(content, etree.XMLParser(resolve_entities=False, no_network=True, recover=True))
    except etree.XMLSyntaxError:
        return {}
    if root is None:
        return {}
    refused: dict[str, str] = {}
    for entry in root.iterfind(f"{_ATOM}entry"):
        if (entry.findtext(f"{_ATOM}id") or "").startswith("http://arxiv.org/api/errors"):
            summary = _one_line(entry.findtext(f"{_ATOM}summary") or "error")
            _, _, named = summary.rpartition(" for ")
            refused[bare_id(named.strip())[0] if named else summary] = summary
    return refused


def _paper(result: arxiv.Result) -> ArxivPaper | None:
    if "arxiv.org/api/errors" in result.entry_id or not result.title:
        return None
    paper, version = bare_id(result.get_short_id())
    return ArxivPaper(
        id=paper,
        version=version,
        title=_one_line(result.title),
        abstract=_one_line(result.summary),
        authors=tuple(_one_line(a.name) for a in result.authors),
        primary_category=result.primary_category,
        published=result.published,
    )
