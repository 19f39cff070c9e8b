"""The schedule as crontab(5) users mean it: day-of-week numbering, names, 6-field seconds, OR of day fields, slots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from digest.errors import SettingsError
from digest.schedule import last_fire_time, make_trigger, next_fire_time, parse_schedule

SHANGHAI = ZoneInfo("Asia/Shanghai")
SUNDAY = datetime(2024, 9, 22, 12, 0, tzinfo=SHANGHAI)  # 2024-09-23 is a Monday


def fires(schedule: str, start: datetime, count: int = 3) -> list[datetime]:
    trigger = make_trigger(schedule, start.tzinfo or UTC)
    out: list[datetime] = []
    moment = start
    for _ in range(count):
        nxt = next_fire_time(trigger, moment)
        assert nxt is not None
        out.append(nxt)
        moment = nxt
    return out


@pytest.mark.parametrize("schedule", ["0 8 * * 1", "0 8 * * mon", "0 8 * * MON", "0 0 8 * * 1"])
def test_monday_is_1_as_in_crontab_not_as_in_apscheduler(schedule: str) -> None:
    first = fires(schedule, SUNDAY, 2)
    assert first == [datetime(2024, 9, 23, 8, tzinfo=SHANGHAI), datetime(2024, 9, 30, 8, tzinfo=SHANGHAI)]
    assert all(f.weekday() == 0 for f in first)


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("mon-fri", "mon,tue,wed,thu,fri"),
        ("5-7", "fri,sat,sun"),
        ("0-6", "mon,tue,wed,thu,fri,sat,sun"),
        ("*/2", "tue,thu,sat,sun"),  # crontab: 0,2,4,6 = Sun, Tue, Thu, Sat
        ("1,3,5", "mon,wed,fri"),
        ("sat,0", "sat,sun"),
        ("*", "*"),
    ],
)
def test_day_of_week_field_is_translated(field: str, names: str) -> None:
    assert parse_schedule(f"0 8 * * {field}").day_of_week == names


def test_sunday_as_0_and_7_fires_on_sunday() -> None:
    for schedule in ("30 6 * * 0", "30 6 * * 7", "30 6 * * sun"):
        assert fires(schedule, SUNDAY, 1) == [datetime(2024, 9, 29, 6, 30, tzinfo=SHANGHAI)]


def test_six_fields_have_seconds_first() -> None:
    start = datetime(2024, 9, 23, 8, 0, 1, tzinfo=UTC)
    assert fires("*/4 * * * * *", start, 3) == [start.replace(second=s) for s in (4, 8, 12)]


def test_both_day_fields_restricted_means_either_as_in_crontab() -> None:
    # crontab(5): "0 8 1 * mon" runs on the 1st of the month AND on every Monday (APScheduler alone would AND them)
    got = fires("0 8 1 * mon", datetime(2024, 9, 24, tzinfo=SHANGHAI), 3)
    assert [d.date().isoformat() for d in got] == ["2024-09-30", "2024-10-01", "2024-10-07"]


def test_macros() -> None:
    assert fires("@weekly", SUNDAY, 1) == [datetime(2024, 9, 29, 0, 0, tzinfo=SHANGHAI)]


def test_timezone_of_the_schedule() -> None:
    (first,) = fires("0 8 * * mon", SUNDAY, 1)
    assert first.astimezone(UTC) == datetime(2024, 9, 23, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "says"),
    [
        ("0 8 * *", "4 fields"),
        ("0 8 * * * * *", "7 fields"),
        ("0 8 * * 9", "'9' is not a day"),
        ("0 8 * * fri-mon", "runs backwards"),
        ("61 8 * * mon", "61"),
        ("0 25 * * mon", "25"),
        ("0 8 * * mon/x", "bad step"),
        ("every monday", "fields"),
    ],
)
def test_bad_schedules_are_one_clear_line(schedule: str, says: str) -> None:
    with pytest.raises(SettingsError) as info:
        make_trigger(schedule, SHANGHAI)
    message = str(info.value)
    assert "\n" not in message
    assert says in message
    assert repr(schedule) in message
    assert "0 8 * * mon" in message  # shows what a good line looks like


def test_slot_is_the_latest_fire_time_at_or_before_now() -> None:
    weekly = make_trigger("0 8 * * mon", SHANGHAI)
    monday = datetime(2024, 9, 23, 8, 0, tzinfo=SHANGHAI)
    assert last_fire_time(weekly, monday) == monday  # inclusive: a punctual firing gets its own slot
    assert last_fire_time(weekly, monday - timedelta(microseconds=1)) == monday - timedelta(days=7)
    assert last_fire_time(weekly, monday + timedelta(days=3, hours=5)) == monday  # late catch-up, same slot
    frequent = make_trigger("*/3 * * * * *", UTC)
    now = datetime(2024, 9, 23, 0, 0, 7, 500_000, tzinfo=UTC)
    assert last_fire_time(frequent, now) == datetime(2024, 9, 23, 0, 0, 6, tzinfo=UTC)
    yearly = make_trigger("0 0 29 2 *", UTC)  # leap days only
    assert last_fire_time(yearly, datetime(2027, 1, 1, tzinfo=UTC)) == datetime(2024, 2, 29, tzinfo=UTC)


def test_slot_across_daylight_saving_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    trigger = make_trigger("30 2 * * *", berlin)  # 02:30 does not exist on 2024-03-31 in Berlin
    after = datetime(2024, 3, 31, 12, 0, tzinfo=berlin)
    slot = last_fire_time(trigger, after)
    assert slot is not None and slot <= after
    assert last_fire_time(trigger, slot) == slot  # stable: a second firing computes the same slot
