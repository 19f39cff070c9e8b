"""The editor's tools over files and the network: `digest draft` (arXiv metadata -> draft entries in a seed file)
and `digest approve` (drafts -> entries the next render publishes). Never used by render, send, run or serve."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING

from digest.arxiv_api import ArxivPaper, ArxivSource
from digest.drafts import DraftText, approve_text, draft_entry, draft_marks, english_abstract, parse_paper_id
from digest.errors import DigestError, NoStateError
from digest.glossary import Glossary, read_glossary
from digest.model import Entry, ProblemKind, SeedScan
from digest.output import write_atomic
from digest.publisher import Publisher
from digest.render import make_environment
from digest.seedfiles import list_seed_files
from digest.seeds import parse_seed
from digest.settings import Settings
from digest.topics import assign_topics

__all__ = ["ApproveReport", "DraftReport", "approve", "draft_papers"]

if TYPE_CHECKING:
    from digest.llm import ModelDraft

Say = Callable[[str], None]


@dataclass
class DraftReport:
    """What `draft` did: entries written (to `out`), ids skipped with why, ids arXiv does not know."""

    out: Path
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    requests: int = 0
    model_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _known_elsewhere(settings: Settings, ids: Sequence[str]) -> dict[str, str]:
    """Why each of `ids` must not be drafted again: published in an issue, or present in a seed file."""

    publisher = Publisher(settings)
    why: dict[str, str] = {}
    try:
        with publisher.read_store() as store:
            for paper, prior in store.prior_entries(list(ids)).items():
                if prior.issue is not None:
                    why[paper] = f"{paper}: already published in issue {prior.issue}"
    except NoStateError:
        pass
    scan = publisher.scan_seeds()
    wanted = set(ids)
    places = [(e.id, e.source, e.line) for e in scan.entries]
    places += [(p.entry_id, p.source, p.line) for p in scan.problems if p.kind is ProblemKind.DRAFT and p.entry_id]
    for paper, source, line in places:
        if paper in wanted and paper not in why:
            why[paper] = f"{paper}: already in {source}:{line}"
    return why


def draft_papers(
    settings: Settings,
    ids: Sequence[str],
    out: Path,
    say: Say,
    *,
    refresh: bool = False,
    source: ArxivSource | None = None,
) -> DraftReport:
    """Fetch `ids` from arXiv and append one draft entry per paper found to `out` (kept as it is otherwise)."""
    report = DraftReport(out)
    skip = _known_elsewhere(settings, ids)
    for paper in ids:
        if paper in skip:
            report.skipped.append(skip[paper])
            say(skip[paper])
    wanted = [i for i in ids if i not in skip]
    if not wanted:
        return report
    if source is None:
        contact = parseaddr(settings.from_address)[1] or settings.from_address
        source = ArxivSource(
            settings.arxiv_api_url, contact, delay=settings.arxiv_delay, timeout=settings.arxiv_timeout
        )
    found = source.lookup(wanted)
    report.requests = source.requests
    papers: list[ArxivPaper] = []
    for paper in wanted:
        meta = found.papers.get(paper)
        if meta is None:
            reason = found.refused.get(paper)
            line = f"{paper}: not found on arXiv" + (f" ({reason})" if reason else "")
            report.not_found.append(line)
            say(line)
        else:
            papers.append(meta)
    chinese = _translate(settings, papers, say, report, refresh) if settings.llm.base_url and papers else {}
    texts: list[str] = []
    for meta in papers:
        model = chinese.get(meta.id)
        text = DraftText(topics=_guess_topics(settings, meta))
        if model is not None:
            answer = model.answer
            text = DraftText(
                answer.title_zh if answer else "", answer.abstract_zh if answer else (), text.topics, model.problems
            )
        texts.append(draft_entry(meta, text))
        report.written.append(meta.id)
        if model is None:
            say(f"{meta.versioned_id}: drafted: {meta.title}")
    if texts:
        _append(out, "".join(texts))
    return report


def _translate(
    settings: Settings, papers: Sequence[ArxivPaper], say: Say, report: DraftReport, refresh: bool
) -> dict[str, ModelDraft]:
    """Ask the model for each paper's Chinese fields (cached answers are reused), saying how each went."""
    from digest.llm import CACHE_PREFIX, Translator  # noqa: PLC0415 (lazy: jinja2 and openai only when used)

    if not settings.llm.model:
        raise DigestError("llm.model is empty: set DIGEST_LLM__MODEL (e.g. qwen2.5:7b) or leave llm.base_url empty")
    glossary = load_glossary(settings.glossary_path)
    publisher = Publisher(settings)
    with publisher.open_store() as store:
        rows = store.session.execute("SELECT key, value FROM meta WHERE key LIKE ?", (CACHE_PREFIX + "%",)).fetchall()
    cached = {str(k): str(v) for k, v in rows}
    translator = Translator(settings.llm, make_environment(settings.templates_dir), glossary, cached, refresh=refresh)

    def done(paper: ArxivPaper, model: ModelDraft) -> None:
        report.model_requests += model.requests
        report.prompt_tokens += model.prompt_tokens
        report.completion_tokens += model.completion_tokens
        state = "drafted" if model.answer else "drafted without Chinese: " + "; ".join(model.problems)
        say(f"{paper.versioned_id}: {state}: {paper.title}")

    results, new = translator.translate_all(papers, done)
    if new:
        with publisher.open_store() as store, store.transaction():
            for key, value in new.items():
                store.set_meta(key, value)
    return results


def load_glossary(path: Path) -> Glossary:
    """The glossary file, or an empty glossary when there is none."""
    try:
        data = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Glossary()
    except (OSError, UnicodeDecodeError) as exc:
        raise DigestError(f"{path}: cannot read the glossary: {exc}") from None
    return read_glossary(data, str(path))


def _guess_topics(settings: Settings, paper: ArxivPaper) -> tuple[str, ...]:
    """The topic rules on the English text; the fallback topic is left to the rules at publication time."""
    topics = settings.topic_list
    fallback = {t.slug for t in topics if t.is_fallback}
    probe = Entry(paper.id, paper.title, "", "", (paper.abstract,), "", 0)
    return tuple(slug for slug in assign_topics(probe, topics) if slug not in fallback)


def _append(out: Path, text: str) -> None:
    """Add `text` at the end of `out`, atomically, leaving what is there byte for byte."""
    try:
        before = out.read_bytes()
    except FileNotFoundError:
        before = b""
    except OSError as exc:
        raise DigestError(f"{out}: cannot read: {exc.strerror}") from None
    if before and not before.endswith(b"\n"):
        before += b"\n"
    if before and not before.endswith(b"\n\n"):
        before += b"\n"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, before + text.encode("utf-8"))
    except OSError as exc:
        raise DigestError(f"{out}: cannot write: {exc.strerror}") from None


@dataclass
class ApproveReport:
    """What `approve` did: drafts approved and drafts refused (`FILE:LINE: why`)."""

    approved: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def approve(settings: Settings, targets: Sequence[str], *, force: bool) -> ApproveReport:
    """Remove the draft mark from the drafts named by file or paper id that pass the checks (all with `force`)."""

    report = ApproveReport()
    glossary = load_glossary(settings.glossary_path)

    def glossary_check(entry: Entry, chunk: str) -> list[str]:
        return ["glossary: " + p for p in _glossary_problems(glossary, entry, chunk)]

    files = {f.source: Path(f.path) for f in list_seed_files(settings.seeds_dir)}
    by_file: dict[Path, str | None] = {}  # None: every draft of the file
    wanted_ids: set[str] = set()
    for target in targets:
        path = Path(target)
        if path.is_file():
            by_file[path] = None
            continue
        paper = parse_paper_id(target)
        if paper is None:
            raise DigestError(f"{target}: neither a seed file nor an arXiv id")
        wanted_ids.add(paper)
    if wanted_ids:
        for path in files.values():
            by_file.setdefault(path, "ids")
    found_ids: set[str] = set()
    for path, which in by_file.items():
        found_ids |= _approve_file(path, None if which is None else wanted_ids, force, report, glossary_check)
    for paper in sorted(wanted_ids - found_ids):
        report.refused.append(f"{paper}: no draft of this paper in {settings.seeds_dir}/")
    return report


def _approve_file(
    path: Path,
    ids: set[str] | None,
    force: bool,
    report: ApproveReport,
    glossary_check: Callable[[Entry, str], list[str]] | None,
) -> set[str]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DigestError(f"{path}: not valid UTF-8: save the file as UTF-8") from None
    lines = text.splitlines(keepends=True)
    heads = [i for i, line in enumerate(lines) if line.startswith("## ") or line.rstrip() == "##"]
    out: list[str] = lines[: heads[0]] if heads else lines
    seen: set[str] = set()
    for n, start in enumerate(heads):
        chunk = lines[start : heads[n + 1] if n + 1 < len(heads) else len(lines)]
        marks = draft_marks(chunk)
        if marks.status is None:
            out += chunk
            continue
        plain = approve_text(chunk, marks, force=True)
        scan = parse_seed("".join(plain), str(path))
        where = f"{path}:{start + 1}"
        entry = scan.entries[0] if scan.entries else None
        paper = (
            entry.id
            if entry
            else next((p.entry_id for p in parse_seed("".join(chunk), str(path)).problems if p.entry_id), None)
        )
        if ids is not None and paper not in ids:
            out += chunk
            continue
        if paper:
            seen.add(paper)
        why: list[str] = []
        if entry is None:
            why += [p.message for p in scan.problems]
        if marks.problems:
            why += [chunk[i].split(":", 1)[1].strip() or "a Problem: line" for i in marks.problems]
        if entry is not None and glossary_check is not None:
            why += glossary_check(entry, "".join(chunk))
        if why and not force:
            report.refused.append(f"{where}: not approved: " + "; ".join(why) + " (fix it, or --force)")
            out += chunk
            continue
        out += approve_text(chunk, marks, force=force)
        report.approved.append(f"{where}: approved {paper}")
    new = "".join(out)
    if new != text:
        write_atomic(path, new.encode("utf-8"))
    return seen


def _glossary_problems(glossary: Glossary, entry: Entry, chunk: str) -> list[str]:
    """Glossary terms of the entry's English text (title, and a draft's English abstract) missing in its Chinese."""
    english = f"{entry.title_en}\n{english_abstract(chunk)}"
    return glossary.problems(english, "\n".join([entry.title_zh, *entry.abstract]))


def glossary_report(settings: Settings, scan: SeedScan) -> list[str]:
    """`FILE:LINE: glossary: "LLM" should be "大语言模型"` for every entry, and every draft with Chinese text, whose
    English text has a glossary term its Chinese text lacks."""
    glossary = load_glossary(settings.glossary_path)
    if not glossary.terms:
        return []
    found: list[str] = []
    for entry in scan.entries:
        found += [f"{entry.source}:{entry.line}: glossary: {p}" for p in _glossary_problems(glossary, entry, "")]
    sources = {Path(f.source): f.path for f in list_seed_files(settings.seeds_dir)}
    for source in dict.fromkeys(p.source for p in scan.problems if p.kind is ProblemKind.DRAFT):
        path = sources.get(Path(source))
        if path is None:
            continue
        for line, entry, chunk in _drafts_of(Path(path), source):
            found += [f"{source}:{line}: glossary: {p}" for p in _glossary_problems(glossary, entry, chunk)]
    return found


def _drafts_of(path: Path, source: str) -> list[tuple[int, Entry, str]]:
    """The drafts of a seed file that parse as entries once unmarked: (line, entry, the entry's text)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []  # the seed scan reports it
    lines = text.splitlines(keepends=True)
    heads = [i for i, line in enumerate(lines) if line.startswith("## ") or line.rstrip() == "##"]
    drafts = []
    for n, start in enumerate(heads):
        chunk = lines[start : heads[n + 1] if n + 1 < len(heads) else len(lines)]
        marks = draft_marks(chunk)
        if marks.status is None:
            continue
        scan = parse_seed("".join(approve_text(chunk, marks, force=True)), source)
        if scan.entries:
            drafts.append((start + 1, scan.entries[0], "".join(chunk)))
    return drafts
