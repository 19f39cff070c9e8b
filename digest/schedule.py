"""APScheduler 3.x wiring for `digest run`: the cron trigger from settings, the persistent job store, signals.

What a firing does is the publisher's business (`Publisher.run_scheduled_job`); this module only decides *when*:

- `schedule` means what crontab(5) says: 5 fields (minute hour day month day-of-week), or 6 with seconds first.
  Day-of-week numbers are translated to names here because APScheduler counts 0 = Monday where crontab counts
  0 (and 7) = Sunday, and when both day-of-month and day-of-week are restricted the trigger fires when either
  matches (crontab's OR, not APScheduler's AND).
- The slot of a firing is the latest fire time of the trigger at or before the moment the job runs. A punctual
  firing and a coalesced catch-up (APScheduler runs only the latest missed time) both get the fire time they
  were scheduled for, and `digest run --once` from system cron at the schedule time gets the same slot, so every
  way of running the job is idempotent per slot.
- The job is stored by text reference with one picklable argument (the config path); it reloads settings.
  On start the stored job's next run time is kept when the schedule is unchanged (replacing it blindly would
  recompute it from "now" and silently drop the catch-up of a run missed while the process was down).
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from digest.errors import BusyError, DigestError, SettingsError, StoreError
from digest.hold import check_slot, read_hold
from digest.store import Store, backend_for
from digest.wording import counted

if TYPE_CHECKING:
    from digest.preview import PreviewReport
    from digest.publisher import Publisher, ScheduledRun
    from digest.settings import Settings

JOB_ID = "digest-issue"
JOB_FUNC = "digest.schedule:run_job"
PREVIEW_JOB_ID = "digest-preview"
JOBS_TABLE = "apscheduler_jobs"  # SQLAlchemyJobStore's default table name

log = logging.getLogger("digest.schedule")

#: Set by SIGTERM / Ctrl-C: the running job finishes the message in flight, records it and returns.
STOP = threading.Event()

_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering: 0 (and 7) is Sunday
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Look back this far for the latest fire time, shortest first so that a frequent schedule stays cheap.
_LOOKBACK = tuple(timedelta(days=d) for d in (1 / 1440, 1 / 24, 1, 8, 32, 367, 8 * 366 + 1))
_USAGE = (
    "expected crontab fields 'minute hour day month day-of-week' (e.g. '0 8 * * mon' or '0 8 * * 1' for Mondays"
    " at 08:00), or 6 fields with seconds first"
)


class Trigger(Protocol):
    """The part of an APScheduler trigger this module uses."""

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None: ...


@dataclass(frozen=True)
class CronSpec:
    """A crontab line in APScheduler's field syntax (day-of-week as names)."""

    second: str
    minute: str
    hour: str
    day: str
    month: str
    day_of_week: str

    def fields(self) -> dict[str, str]:
        """Keyword arguments for `CronTrigger`."""
        return {
            "second": self.second,
            "minute": self.minute,
            "hour": self.hour,
            "day": self.day,
            "month": self.month,
            "day_of_week": self.day_of_week,
        }

    def __str__(self) -> str:
        return " ".join((self.second, self.minute, self.hour, self.day, self.month, self.day_of_week))


def parse_schedule(text: str) -> CronSpec:
    """A crontab(5) line (5 fields, or 6 with seconds first, or @daily-style macros) as APScheduler fields."""
    line = _MACROS.get(text.strip().lower(), text)
    parts = line.split()
    if len(parts) == 5:
        parts = ["0", *parts]
    if len(parts) != 6:
        raise SettingsError(f"schedule {text!r}: {len(parts)} fields; {_USAGE}")
    second, minute, hour, day, month, dow = parts
    try:
        day_of_week = _crontab_days(dow)
    except ValueError as exc:
        raise SettingsError(f"schedule {text!r}: day-of-week {dow!r}: {exc}; {_USAGE}") from None
    return CronSpec(second, minute, hour, day.replace("?", "*"), month, day_of_week)


def _crontab_days(field: str) -> str:
    """A crontab day-of-week field (0/7 = Sunday, names, lists, ranges, steps) as a list of APScheduler names."""
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for item in field.lower().split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise ValueError(f"bad step {step_text!r}")
        if base == "*":
            low, high = 0, 6
        else:
            first, dash, last = base.partition("-")
            low = _day_number(first)
            high = _day_number(last) if dash else (7 if step else low)
            if high < low:
                raise ValueError(f"range {base!r} runs backwards")
        days.update(d % 7 for d in range(low, high + 1, step or 1))
    monday_first = sorted(days, key=lambda d: (d + 6) % 7)
    return ",".join(_DOW_NAMES[d] for d in monday_first)


def _day_number(token: str) -> int:
    if token in _DOW_NAMES:
        return _DOW_NAMES.index(token)
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token)
    raise ValueError(f"{token!r} is not a day (0-7 with 0 and 7 = Sunday, or sun..sat)")


def make_trigger(schedule: str, tz: tzinfo) -> Trigger:
    """The APScheduler trigger for a crontab line in time zone `tz`; SettingsError if the line is not valid."""
    from apscheduler.triggers.combining import OrTrigger  # noqa: PLC0415 (lazy: apscheduler only when used)
    from apscheduler.triggers.cron import CronTrigger  # noqa: PLC0415 (lazy: apscheduler only when used)

    spec = parse_schedule(schedule)
    try:
        if spec.day != "*" and spec.day_of_week != "*":
            # crontab(5): "if both fields are restricted, the command runs when either field matches"
            both: Trigger = OrTrigger(
                [
                    CronTrigger(**{**spec.fields(), "day_of_week": "*"}, timezone=tz),
                    CronTrigger(**{**spec.fields(), "day": "*"}, timezone=tz),
                ]
            )
            return both
        trigger: Trigger = CronTrigger(**spec.fields(), timezone=tz)
        return trigger
    except ValueError as exc:
        raise SettingsError(f"schedule {schedule!r}: {exc}; {_USAGE}") from None


def settings_trigger(settings: Settings) -> Trigger:
    """The trigger for `settings.schedule` in `settings.timezone`."""
    return make_trigger(settings.schedule, settings.tz)


def job_name(settings: Settings) -> str:
    """The stored job's name; it changes exactly when the schedule does (then the job's next run is recomputed)."""
    return f"digest issue: {parse_schedule(settings.schedule)} ({settings.timezone})"


def last_fire_time(trigger: Trigger, now: datetime) -> datetime | None:
    """The latest time at or before `now` when the trigger fires (None if it never did in the last 8 years)."""
    for window in _LOOKBACK:
        fire = trigger.get_next_fire_time(None, now - window)
        if fire is None or fire > now:
            continue
        while (later := trigger.get_next_fire_time(None, fire + timedelta(microseconds=1))) is not None and (
            later <= now
        ):
            fire = later
        return fire
    return None


def next_fire_time(trigger: Trigger, now: datetime) -> datetime | None:
    """The first time strictly after `now` when the trigger fires."""
    return trigger.get_next_fire_time(None, now + timedelta(microseconds=1))


# --- the job ----------------------------------------------------------------------------------------


def run_job(config: str | None = None) -> None:
    """The scheduled job, stored in the job store by this name: one firing. Errors are logged, never raised
    (a raised error would only become a traceback in APScheduler's log)."""
    _logged_firing("firing", "; the next firing (or `digest send`) finishes the work", config, fire)


def _logged_firing(what: str, when_busy: str, config: str | None, job: Callable[[Settings], object]) -> None:
    """Run `job` with freshly read settings; log its failure as one line (a template's error as its file:line)."""
    from digest.render import template_error_line  # noqa: PLC0415 (lazy: markupsafe only when used)
    from digest.settings import load_settings  # noqa: PLC0415 (lazy: pydantic-settings only when used)

    try:
        job(load_settings(Path(config) if config else None))
    except BusyError as exc:
        log.warning("%s skipped: %s%s", what, exc, when_busy)
    except DigestError as exc:
        log.error("%s failed: %s", what, template_error_line(exc) or exc)
    except Exception as exc:  # a template's own error (an undefined variable ...): its file:line, not a traceback
        line = template_error_line(exc)
        if line is None:
            raise
        log.error("%s failed: %s", what, line)


def fire(settings: Settings, now: datetime | None = None) -> ScheduledRun | None:
    """Run the job for the latest slot at or before `now` (default: the clock) and log what it did."""
    from digest.publisher import Publisher  # noqa: PLC0415 (lazy: pydantic-settings and markupsafe only when used)

    trigger = settings_trigger(settings)
    now = now or datetime.now(settings.tz)
    slot = last_fire_time(trigger, now)
    if slot is None:
        log.info("schedule %r has no fire time before %s: nothing to do", settings.schedule, _when(now, settings))
        return None
    publisher = Publisher(settings)
    following = next_fire_time(trigger, max(now, slot))
    with publisher.lock("run"):  # re-entrant: the hold is read under the lock the firing holds
        if _held(publisher, slot, now, following, settings):
            return None
        run = publisher.run_scheduled_job(slot, now, stop=STOP)
    level = logging.ERROR if run.mail_error else logging.INFO
    log.log(level, "%s; next run %s", describe_run(run, settings), _when(following, settings) if following else "never")
    return run


def _held(publisher: Publisher, slot: datetime, now: datetime, following: datetime | None, settings: Settings) -> bool:
    """Whether `digest hold` skips this slot (then it is recorded in the hold and logged)."""

    with publisher.open_store() as store:
        hold = check_slot(store, slot.astimezone(UTC).isoformat(), now)
    if hold is None:
        return False
    log.warning(
        "slot %s held (%s%s): nothing published or mailed; its papers wait for the first slot after"
        " `digest release`; next run %s",
        _when(slot, settings),
        f"since {_when(hold.since, settings)}" + (f" until {_when(hold.until, settings)}" if hold.until else ""),
        f": {hold.reason}" if hold.reason else "",
        _when(following, settings) if following else "never",
    )
    return True


# --- the editor's preview -----------------------------------------------------------------------


def run_preview_job(config: str | None = None) -> None:
    """The preview job (`preview_lead` before each slot): one firing; errors are logged, never raised."""
    _logged_firing("preview", "", config, fire_preview)


def preview_slot(settings: Settings, now: datetime) -> datetime | None:
    """The slot whose preview is due at `now` (`now` is within `preview_lead` before it), or None."""
    slot = next_fire_time(settings_trigger(settings), now)
    if slot is None or now < slot - settings.preview_lead_time:
        return None
    return slot


def fire_preview(settings: Settings, now: datetime | None = None) -> PreviewReport | None:
    """Mail the editor the preview of the coming slot when it is due at `now` and was not mailed yet (the slot is
    recorded just before the mail goes: at most once, whatever restarts), unless a hold will skip that slot."""
    from digest.preview import claim_slot, mail_preview  # noqa: PLC0415 (a cycle: digest.preview reads the schedule)
    from digest.publisher import Publisher  # noqa: PLC0415 (lazy: pydantic-settings and markupsafe only when used)

    now = now or datetime.now(settings.tz)
    if not settings.editor_address or (slot_time := preview_slot(settings, now)) is None:
        return None
    slot = slot_time.astimezone(UTC).isoformat()
    publisher = Publisher(settings)
    with publisher.open_store() as store:
        hold = read_hold(store)
        if hold is not None and hold.active(slot_time):
            log.info("preview of slot %s not mailed: the slot is held", _when(slot_time, settings))
            return None

        def claim() -> bool:
            return claim_slot(store, slot)

        report = mail_preview(publisher, now, slot_time=slot_time, claim=claim)
    if report is None:
        log.info("preview of slot %s was mailed already: not again", _when(slot_time, settings))
        return None
    what = f"issue {report.issue} ({counted(report.papers, 'paper')})" if report.issue else "nothing new"
    log.info("preview of slot %s mailed to %s: %s", _when(slot_time, settings), ", ".join(report.to), what)
    return report


class LeadTrigger:
    """Fires `lead` before each fire time of `trigger`: the preview's times. Kept in a memory job store only (it is
    rebuilt from the settings at every start), so it never has to be pickled."""

    def __init__(self, trigger: Trigger, lead: timedelta) -> None:
        self.trigger = trigger
        self.lead = lead

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        previous = previous_fire_time + self.lead if previous_fire_time is not None else None
        fire = self.trigger.get_next_fire_time(previous, now + self.lead)
        return fire - self.lead if fire is not None else None

    def __str__(self) -> str:
        return f"{self.lead} before each slot"

    __repr__ = __str__


def describe_run(run: ScheduledRun, settings: Settings) -> str:
    """One log line for a firing: slot, issue, entries, sent/failed counts, or why nothing was mailed."""
    parts = [f"slot {_when(run.slot_time, settings)}"]
    if run.rerendered:
        parts.append(run.rerendered)
    if run.published is not None:
        parts.append(f"published issue {run.published.number} with {counted(len(run.published.entries), 'paper')}")
    elif run.existing_issue is not None:
        parts.append(f"issue {run.existing_issue} was already published for this slot")
    else:
        parts.append("nothing new: no issue published")
    if run.waiting:
        parts.append(f"{counted(run.waiting, 'paper waits', 'papers wait')} for the next issue")
    if run.send is not None:
        s = run.send
        parts.append(
            f"issue {s.issue} mail: {s.sent} sent, {s.failed} failed, {s.deferred} deferred, {s.unknown} unknown,"
            f" {s.not_due} already done" + (" (stopped early)" if s.stopped else "")
        )
    elif run.mail_error:
        parts.append(run.mail_error)
    elif run.not_sent:
        parts.append(run.not_sent)
    return "; ".join(parts)


def _when(moment: datetime, settings: Settings) -> str:
    return moment.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M:%S %Z")


# --- running ----------------------------------------------------------------------------------------


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM and Ctrl-C set STOP (the job finishes the message in flight) instead of killing the process."""
    STOP.clear()

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("%s received: finishing the message in flight, then stopping", signal.Signals(signum).name)
        STOP.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield STOP
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_once(settings: Settings, now: datetime) -> ScheduledRun | None:
    """`digest run --once`: the job for the latest slot at or before `now`, then return. Errors are raised."""
    with stop_on_signals():
        run = fire(settings, now)
        fire_preview(settings, now)  # from system cron at slot minus preview_lead: the editor's preview
        return run


def _create_jobs_table(jobstore: Any, where: object, attempts: int = 5) -> None:
    """Create APScheduler's table before the scheduler starts. Two `digest run` processes starting together on a
    new PostgreSQL database both see no table and both create it; one gets a duplicate-key error from the catalog
    (CREATE TABLE IF NOT EXISTS is not safe against a concurrent CREATE). Trying again finds the other's table."""

    from sqlalchemy.exc import DBAPIError  # noqa: PLC0415 (lazy: sqlalchemy only when used)

    for attempt in range(attempts):
        try:
            jobstore.jobs_t.create(jobstore.engine, checkfirst=True)
            return
        except DBAPIError as exc:
            if attempt == attempts - 1:
                raise StoreError(f"{where}: cannot create the scheduler's job store: {exc.orig}") from None
            time.sleep(0.2 * (attempt + 1))


def run_forever(settings: Settings, config: Path | None) -> None:
    """`digest run`: fire on the schedule until SIGTERM or Ctrl-C, then let the running job stop cleanly."""
    from apscheduler.executors.pool import ThreadPoolExecutor  # noqa: PLC0415 (lazy: apscheduler only when used)
    from apscheduler.jobstores.memory import MemoryJobStore  # noqa: PLC0415 (lazy: apscheduler only when used)
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore  # noqa: PLC0415 (lazy: apscheduler and sqlalchemy only when used)
    from apscheduler.schedulers.background import BackgroundScheduler  # noqa: PLC0415 (lazy: apscheduler only when used)
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415 (lazy: sqlalchemy only when used)

    trigger = settings_trigger(settings)  # a bad schedule stops here, before anything starts
    name = job_name(settings)
    backend = backend_for(settings.state_location)
    # SQLite: the jobs in their own file (jobs_path); PostgreSQL: in the state's database, in APScheduler's table.
    where = settings.jobs_path if backend.name == "sqlite" else backend.where
    try:
        if backend.name == "sqlite":
            settings.jobs_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{settings.jobs_path}: cannot create the job store's folder: {exc.strerror}") from None
    jobstore = SQLAlchemyJobStore(url=backend.job_store_url(settings.jobs_path))
    _create_jobs_table(jobstore, where)
    scheduler = BackgroundScheduler(
        jobstores={"default": jobstore, "memory": MemoryJobStore()},
        executors={"default": ThreadPoolExecutor(1)},
        timezone=settings.tz,
    )
    with stop_on_signals() as stop:
        try:
            scheduler.start(paused=True)  # look at the stored job before anything can fire
        except SQLAlchemyError as exc:
            reason = getattr(exc, "orig", exc)
            raise StoreError(f"{where}: cannot open the scheduler's job store: {reason}") from None
        try:
            now = datetime.now(settings.tz)
            stored = _stored_job(scheduler)
            keep: dict[str, Any] = {}
            if stored is not None and stored.name == name and stored.next_run_time is not None:
                keep["next_run_time"] = stored.next_run_time
                _log_missed(stored.next_run_time, trigger, now, settings)
            elif stored is not None:
                log.info("schedule changed (was %r): the job's next run is recomputed", stored.name)
            job = scheduler.add_job(
                JOB_FUNC,
                trigger,
                args=[str(config) if config is not None else None],
                id=JOB_ID,
                name=name,
                coalesce=True,
                misfire_grace_time=settings.misfire_grace_time,
                max_instances=1,
                replace_existing=True,
                **keep,
            )
            log.info(
                "scheduler started: %r in %s, next run %s; job store %s",
                settings.schedule,
                settings.timezone,
                _when(job.next_run_time, settings),
                settings.jobs_path,
            )
            _add_preview_job(scheduler, trigger, settings, config, now)
            scheduler.resume()
            while not stop.wait(1.0):
                pass
        finally:
            scheduler.shutdown(wait=True)  # the running job sees STOP and returns after the message in flight
    log.info("scheduler stopped")


def _add_preview_job(scheduler: Any, trigger: Trigger, settings: Settings, config: Path | None, now: datetime) -> None:
    """The preview job, when editor_address is set: `preview_lead` before each slot, and once at start when a
    preview is due now (a restart inside the lead; the state says whether it went already)."""
    from apscheduler.triggers.base import BaseTrigger  # noqa: PLC0415 (lazy: apscheduler only when used)

    if not settings.editor_address:
        return

    class _Lead(LeadTrigger, BaseTrigger):  # type: ignore[misc]  # add_job takes only its own trigger class
        pass

    due = preview_slot(settings, now) is not None
    job = scheduler.add_job(
        "digest.schedule:run_preview_job",
        _Lead(trigger, settings.preview_lead_time),
        args=[str(config) if config is not None else None],
        id=PREVIEW_JOB_ID,
        name=f"digest preview, {settings.preview_lead} before each slot",
        jobstore="memory",
        coalesce=True,
        misfire_grace_time=int(settings.preview_lead_time.total_seconds()),
        max_instances=1,
        replace_existing=True,
        **({"next_run_time": now} if due else {}),
    )
    log.info("preview to %s %s before each slot; next %s", ", ".join(settings.editor_address),
             settings.preview_lead, _when(job.next_run_time, settings))  # fmt: skip


def _stored_job(scheduler: Any) -> Any:
    try:
        return scheduler.get_job(JOB_ID)
    except Exception as exc:  # an unreadable pickle from another version: replace it
        log.warning("cannot read the stored job (%s); replacing it", exc)
        return None


def _log_missed(stored_next: datetime, trigger: Trigger, now: datetime, settings: Settings) -> None:
    if stored_next > now:
        return
    latest = last_fire_time(trigger, now) or stored_next
    late = now - latest
    if late.total_seconds() <= settings.misfire_grace_time:
        log.info(
            "missed run(s) since %s while stopped: catching up once now for slot %s",
            _when(stored_next, settings),
            _when(latest, settings),
        )
    else:
        log.warning(
            "missed run(s) since %s while stopped; the latest (%s) is older than misfire_grace_time (%ss):"
            " not caught up, its papers go into the next regular issue",
            _when(stored_next, settings),
            _when(latest, settings),
            settings.misfire_grace_time,
        )


# --- status -----------------------------------------------------------------------------------------


def schedule_status(settings: Settings, now: datetime) -> dict[str, str]:
    """`digest status` lines about the scheduler, read from the job store without starting a scheduler."""
    try:
        trigger = settings_trigger(settings)
    except SettingsError as exc:
        return {"next scheduled run": f"none: {exc}"}
    stored = _stored_next_run(settings)
    if stored is None:
        upcoming = next_fire_time(trigger, now)
        when = _when(upcoming, settings) if upcoming else "never"
        return {"next scheduled run": f"{when} once `digest run` is started ({settings.schedule!r})"}
    text = _when(stored, settings)
    if stored < now:
        latest = last_fire_time(trigger, now) or stored
        if (now - latest).total_seconds() <= settings.misfire_grace_time:
            text += " (overdue: `digest run` is not running; it catches up once when started)"
        else:
            text += " (missed: `digest run` is not running; too late to catch up, the next regular run publishes it)"
    return {"next scheduled run": text}


def _stored_next_run(settings: Settings) -> datetime | None:
    """The job's next run time as the job store holds it (no SQLAlchemy import for a status)."""
    backend = backend_for(settings.state_location)
    if backend.name != "sqlite":
        with Store.open(backend, busy_timeout=5.0) as store:
            stamp = store.stored_job_time(JOBS_TABLE, JOB_ID)
        return None if stamp is None else datetime.fromtimestamp(stamp, UTC)
    jobs_path = settings.jobs_path
    if not jobs_path.is_file():
        return None
    try:
        with closing(sqlite3.connect(f"file:{jobs_path.resolve()}?mode=ro", uri=True)) as conn:
            row = conn.execute(f"SELECT next_run_time FROM {JOBS_TABLE} WHERE id = ?", (JOB_ID,)).fetchone()
    except sqlite3.Error:
        return None
    if row is None or row[0] is None:
        return None
    return datetime.fromtimestamp(float(row[0]), UTC)
