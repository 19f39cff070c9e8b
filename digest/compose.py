"""Decides what goes into the next issue, from the scanned entries and what the state remembers. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from digest.model import KnownEntry, Located, Problem, ProblemKind

R = TypeVar("R", bound=Located)


@dataclass(frozen=True)
class IssuePlan(Generic[R]):
    """The next issue's entries, how many are left for later, and published entries whose text changed."""

    new: tuple[R, ...]
    waiting: int
    revised: tuple[R, ...]

    @property
    def has_issue(self) -> bool:
        """True when there is anything to publish."""
        return bool(self.new)


def plan_next_issue(entries: Sequence[R], known: Mapping[str, KnownEntry], max_entries: int) -> IssuePlan[R]:
    """Take unpublished entries in seed order, at most `max_entries`; spot corrections of published ones."""
    unpublished: list[R] = []
    revised: list[R] = []
    for entry in entries:
        record = known.get(entry.id)
        if record is None or record.issue is None:
            unpublished.append(entry)
        elif record.content_hash != entry.content_hash:
            revised.append(entry)
    return IssuePlan(
        new=tuple(unpublished[:max_entries]),
        waiting=max(0, len(unpublished) - max_entries),
        revised=tuple(revised),
    )


def plan_from_queue(
    head: Sequence[R], waiting: int, scanned: Sequence[R], known: Mapping[str, KnownEntry], max_entries: int
) -> IssuePlan[R]:
    """The same plan when the unpublished entries come as the head of a queue in seed order (`waiting` of them
    in all) and only some entries were read again (`scanned`): corrections can only be among those."""
    revised = [
        e
        for e in scanned
        if (r := known.get(e.id)) is not None and r.issue is not None and r.content_hash != e.content_hash
    ]
    new = tuple(head[:max_entries])
    return IssuePlan(new=new, waiting=waiting - len(new), revised=tuple(revised))


class EntryStatus(StrEnum):
    """How a dry run describes each entry it saw."""

    NEW = "new"
    WAITING = "waiting"
    PUBLISHED = "published"
    REVISED = "revised"
    DUPLICATE = "duplicate"
    INVALID = "invalid"
    DRAFT = "draft"


@dataclass(frozen=True)
class EntryReport:
    """One line of a dry-run listing."""

    status: EntryStatus
    where: str
    title: str
    detail: str = ""


def describe(
    entries: Sequence[Located],
    problems: Sequence[Problem],
    known: Mapping[str, KnownEntry],
    plan: IssuePlan[Any],
    next_number: int,
    titles: Mapping[str, str],
) -> list[EntryReport]:
    """Explain every entry: new (in issue N), waiting, already published (in issue N), duplicate, invalid."""
    new_ids = {e.id for e in plan.new}
    revised_ids = {e.id for e in plan.revised}
    reports: list[EntryReport] = []
    for entry in entries:
        where = f"{entry.source}:{entry.line}"
        record = known.get(entry.id)
        if entry.id in new_ids:
            reports.append(EntryReport(EntryStatus.NEW, where, titles.get(entry.id, ""), f"in issue {next_number}"))
        elif record is not None and record.issue is not None:
            status = EntryStatus.REVISED if entry.id in revised_ids else EntryStatus.PUBLISHED
            detail = f"in issue {record.issue}" + (", text corrected" if entry.id in revised_ids else "")
            reports.append(EntryReport(status, where, titles.get(entry.id, ""), detail))
        else:
            reports.append(
                EntryReport(EntryStatus.WAITING, where, titles.get(entry.id, ""), "over max_entries_per_issue")
            )
    for problem in problems:
        status = {ProblemKind.DUPLICATE: EntryStatus.DUPLICATE, ProblemKind.DRAFT: EntryStatus.DRAFT}.get(
            problem.kind, EntryStatus.INVALID
        )
        reports.append(EntryReport(status, f"{problem.source}:{problem.line}", "", problem.message))
    return reports
