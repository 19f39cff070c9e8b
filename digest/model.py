"""The domain objects every other module speaks: plain frozen dataclasses, no I/O, no digest imports."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import NamedTuple, Protocol


class Located(Protocol):
    """Anything that names a paper and where it was found (an Entry, or an EntryRef from the seed cache)."""

    @property
    def id(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def line(self) -> int: ...
    @property
    def content_hash(self) -> str: ...


@dataclass(frozen=True)
class EntryLimits:
    """How large one seed entry may be, in UTF-8 bytes (settings `entry_max_bytes` and `title_max_bytes`): the
    whole entry, from its heading to the next one, and each of its two titles. A larger entry is a problem at its
    line and is not published (one 50 MB abstract made a 53 MB mail per subscriber)."""

    entry: int = 64 * 1024
    title: int = 1024


class EntryRef(NamedTuple):
    """A seed entry without its text: enough to decide what is new without re-reading unchanged files.

    A named tuple, not a dataclass: a bulk import builds 100,000 of them, and tuples are several times cheaper.
    """

    id: str
    content_hash: str
    source: str
    line: int


@dataclass(frozen=True)
class Entry:
    """One paper as read from a seed file, already cleaned (no XML-illegal characters, accents resolved).

    `id` is the paper's identity: the arXiv id (`2409.13346`) for arXiv links, else the normalized URL.
    `abstract` holds paragraphs of plain text; renderers escape and linkify it.
    `revised` is set by the store when the text changed after publication (a corrected translation).
    `topics` are the slugs of the seed's optional `Topics:` line; they win over the topic rules.
    """

    id: str
    title_en: str
    title_zh: str
    url: str
    abstract: tuple[str, ...]
    source: str
    line: int
    revised: datetime | None = None
    topics: tuple[str, ...] = ()

    @cached_property
    def content_hash(self) -> str:
        """A hash of what readers see; a change means a correction, not a new paper."""
        # \x1e/\x1f never occur in cleaned text (they are illegal in XML), so the join is unambiguous.
        fields = [self.title_en, self.title_zh, self.url, "\x1f".join(self.abstract)]
        if self.topics:  # only then: hashes recorded before topics existed stay valid
            fields.append(",".join(self.topics))
        payload = "\x1e".join(fields)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    @property
    def anchor(self) -> str:
        """A stable HTML fragment id for this paper on its issue page."""
        return "p-" + "".join(c if c.isalnum() else "-" for c in self.id).strip("-")


@dataclass(frozen=True)
class SeedFile:
    """A seed file as listed: where it is, how it is shown in messages, and its size and mtime."""

    path: str
    source: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class CachedFile:
    """What the state remembers of one seed file (`scan` is None when only the stat was loaded)."""

    size: int
    mtime_ns: int
    sha256: str = ""
    scan: bytes | None = None

    def matches(self, file: SeedFile) -> bool:
        """Same size and mtime: the file is taken as unchanged without reading it."""
        return self.size == file.size and self.mtime_ns == file.mtime_ns


@dataclass(frozen=True)
class PriorEntry:
    """What the state knows of a paper id: recorded hash, issue (if published), first occurrence."""

    content_hash: str
    issue: int | None
    source: str
    line: int


@dataclass(frozen=True)
class KnownEntry:
    """What the state remembers of an entry: its content hash and the issue it went into (if any)."""

    content_hash: str
    issue: int | None


class ProblemKind(StrEnum):
    """Why an entry was not taken: invalid input, or a repeat of a paper already seen."""

    INVALID = "invalid"
    DUPLICATE = "duplicate"
    DRAFT = "draft"  # marked `Status: draft`: waiting for the editor's `digest approve`, never published


@dataclass(frozen=True)
class Problem:
    """Something wrong in a seed file, reported as `path:line: message`."""

    source: str
    line: int
    message: str
    kind: ProblemKind = ProblemKind.INVALID
    entry_id: str | None = None

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


def encode_problems(problems: Sequence[Problem]) -> str:
    """The problems as JSON, for the state's meta table (the next no-op run reports them again)."""
    return json.dumps([[p.source, p.line, p.message, p.kind.value, p.entry_id] for p in problems], ensure_ascii=False)


def decode_problems(text: str) -> tuple[Problem, ...]:
    """The inverse of `encode_problems`."""
    return tuple(Problem(src, line, msg, ProblemKind(kind), eid) for src, line, msg, kind, eid in json.loads(text))


@dataclass(frozen=True)
class SeedScan:
    """The result of reading seeds: valid entries in seed order, plus every problem found."""

    entries: tuple[Entry, ...] = ()
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class Issue:
    """A numbered issue: its entries in order and when it was published (timezone-aware)."""

    number: int
    published: datetime
    entries: tuple[Entry, ...]
    slot: str | None = None

    def entry_published(self, position: int) -> datetime:
        """Feed time of the entry at `position`: distinct per entry (validators warn on equal times)."""
        return self.published - timedelta(seconds=position)

    def entry_updated(self, position: int) -> datetime:
        """Feed `updated` time: the later of publication and the last correction."""
        entry = self.entries[position]
        published = self.entry_published(position)
        return max(published, entry.revised) if entry.revised else published

    @property
    def updated(self) -> datetime:
        """When anything in this issue last changed."""
        return max([self.published, *(e.revised for e in self.entries if e.revised)])


@dataclass(frozen=True)
class Topic:
    """A subject papers are grouped by: names for readers, and the rules that assign papers to it.

    `keywords` are matched case-insensitively: an ASCII keyword as a whole word (plural allowed) or, ending with
    `*`, as a word prefix; a CJK keyword as a substring. `patterns` are case-insensitive regular expressions.
    Both are matched on the English and Chinese titles and the abstract. A topic with neither is the fallback
    for papers no rule matches.
    """

    slug: str
    name_zh: str
    name_en: str
    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()

    @property
    def is_fallback(self) -> bool:
        """Whether this topic takes the papers no rule matches."""
        return not self.keywords and not self.patterns


@dataclass(frozen=True)
class Site:
    """What renderers need to know about the publication (built from settings by the publisher)."""

    title: str
    url: str  # absolute, ends with "/"
    author: str
    description: str = ""
    language: str = "zh-CN"
    feed_id: str = "urn:uuid:00000000-0000-0000-0000-000000000000"  # permanent, from the state
    timezone: str = "UTC"
    feed_max_items: int = 50
    generator: str = "digest"
    topics: tuple[Topic, ...] = ()
    websub_hub: str = ""

    def link(self, path: str = "") -> str:
        """Absolute URL of a path inside the site."""
        return self.url + path.lstrip("/")


class SubscriberStatus(StrEnum):
    """Where a subscriber is in its life cycle; only `active` ones are mailed."""

    PENDING = "pending"  # signed up, not confirmed yet
    ACTIVE = "active"
    PAUSED = "paused"  # chose to stop the email for a while (preference page)
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"  # suppressed: the address does not exist, or too many soft bounces
    COMPLAINED = "complained"  # suppressed: marked an issue as spam


# The status sets, defined here once; every module that decides on a status uses them (digest.subscriptions
# makes the changes). ENDED and NOT_ENDED divide SubscriberStatus between them.
#: The subscription has ended; the row stays, so an import does not add the address back.
ENDED = frozenset({SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED})
#: Pending, active or paused: its reader can still leave (unsubscribe), or a bounce or complaint end it.
NOT_ENDED = frozenset({SubscriberStatus.PENDING, SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED})
#: Confirmed and not ended: the issues go to it (or will again once it resumes).
SUBSCRIBED = frozenset({SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED})
#: Ended by the mail system (a bounce, a complaint): only the publisher restores it, with the CLI.
SUPPRESSED = frozenset({SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED})
#: Ended by its reader's own choice: the signup form may make it pending again.
MAY_REJOIN = frozenset({SubscriberStatus.UNSUBSCRIBED})


class SubscriberSource(StrEnum):
    """How a subscriber joined (part of the consent record)."""

    FORM = "form"
    CLI = "cli"
    IMPORT = "import"


@dataclass(frozen=True)
class Subscriber:
    """A mail recipient. The row is kept after unsubscribing, so imports do not re-add the address."""

    email: str
    name: str = ""
    status: SubscriberStatus = SubscriberStatus.ACTIVE
    id: int = 0
    token_nonce: str = ""  # random per subscription; links carry it, so they die when the subscription does

    @property
    def active(self) -> bool:
        """Whether the next issue goes to this subscriber."""
        return self.status is SubscriberStatus.ACTIVE


class DeliveryStatus(StrEnum):
    """Ledger states of one (issue, subscriber) delivery."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    DEFERRED = "deferred"
    UNKNOWN = "unknown"
    BOUNCED = "bounced"  # accepted, then a bounce (DSN) came back, or refused permanently as a non-existent mailbox
    COMPLAINED = "complained"  # delivered, then reported as spam (ARF)
    SKIPPED = "skipped"  # not mailed: none of the subscriber's chosen topics has a paper in this issue


@dataclass(frozen=True)
class Delivery:
    """One row of the delivery ledger."""

    issue: int
    subscriber: Subscriber
    status: DeliveryStatus
    attempts: int = 0
    detail: str = ""
