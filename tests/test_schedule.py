"""Business hours (core.schedule): open time between two moments and deadlines in open time,
across a weekend, a holiday, a lunch break, a daylight-saving change and a day that ends at 24:00."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.errors import InvalidInput
from core.schedule import BusinessHours

SH = ZoneInfo("Asia/Shanghai")
# Mon-Fri 09:00-12:00 and 13:00-18:00 in Shanghai (8 h a day); 2026-10-01 and -02 are holidays.
SPEC = {"timezone": "Asia/Shanghai",
        "weekly": {d: ["09:00-12:00", "13:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
        "holidays": ["2026-10-01", "2026-10-02"]}
HOURS = BusinessHours.parse(SPEC)


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)  # type: ignore[misc]


def test_open_time_inside_one_span_and_across_lunch() -> None:
    assert HOURS.business_seconds(sh(2026, 9, 28, 9, 30), sh(2026, 9, 28, 10, 0)) == 1800
    # 11:00-12:00 open, 12:00-13:00 lunch, 13:00-14:00 open
    assert HOURS.business_seconds(sh(2026, 9, 28, 11, 0), sh(2026, 9, 28, 14, 0)) == 7200
    # before opening and after closing count nothing
    assert HOURS.business_seconds(sh(2026, 9, 28, 6, 0), sh(2026, 9, 28, 9, 0)) == 0
    assert HOURS.business_seconds(sh(2026, 9, 28, 18, 0), sh(2026, 9, 28, 23, 0)) == 0
    assert HOURS.business_seconds(sh(2026, 9, 28, 10, 0), sh(2026, 9, 28, 9, 0)) == 0


def test_a_weekend_and_holidays_are_closed() -> None:
    # Friday 2026-09-25 17:00 to Monday 09:30: one hour on Friday, half an hour on Monday
    assert HOURS.business_seconds(sh(2026, 9, 25, 17, 0), sh(2026, 9, 28, 9, 30)) == 5400
    # Wednesday 2026-09-30 17:00 to Monday 2026-10-05 10:00: Thu and Fri are holidays
    assert HOURS.business_seconds(sh(2026, 9, 30, 17, 0), sh(2026, 10, 5, 10, 0)) == 7200
    assert not HOURS.is_open(sh(2026, 10, 1, 10, 0))
    assert HOURS.is_open(sh(2026, 9, 30, 10, 0))
    # the same moment given in UTC
    start = sh(2026, 9, 28, 9, 0).astimezone(UTC)
    assert HOURS.business_seconds(start, start + timedelta(hours=1)) == 3600


def test_a_deadline_in_open_time() -> None:
    # 4 business hours from Friday 16:00: 2 h on Friday, then Monday 09:00-11:00
    assert HOURS.add_business_seconds(sh(2026, 9, 25, 16, 0), 4 * 3600) == sh(2026, 9, 28, 11, 0)
    # from a closed moment it starts counting at the next opening
    assert HOURS.add_business_seconds(sh(2026, 9, 27, 3, 0), 60) == sh(2026, 9, 28, 9, 1)
    # over the lunch break and over the holidays
    assert HOURS.add_business_seconds(sh(2026, 9, 28, 11, 30), 3600) == sh(2026, 9, 28, 13, 30)
    assert HOURS.add_business_seconds(sh(2026, 9, 30, 17, 30), 3600) == sh(2026, 10, 5, 9, 30)
    # a deadline and the open time up to it agree
    for start in (sh(2026, 9, 25, 16, 0), sh(2026, 9, 30, 11, 59), sh(2026, 10, 3, 0, 0)):
        for seconds in (1, 3600, 8 * 3600, 40 * 3600):
            end = HOURS.add_business_seconds(start, seconds)
            assert end is not None and HOURS.business_seconds(start, end) == seconds


def test_a_day_to_midnight_and_daylight_saving() -> None:
    # New York leaves daylight saving on 2026-11-01: that Sunday, open all day, has 25 hours.
    ny = BusinessHours.parse({"timezone": "America/New_York", "weekly": {"sun": ["00:00-24:00"]}})
    day = datetime(2026, 11, 1, tzinfo=ZoneInfo("America/New_York"))
    assert ny.business_seconds(day, day + timedelta(days=2)) == 25 * 3600
    assert ny.is_open(datetime(2026, 11, 1, 23, 59, 59, tzinfo=ZoneInfo("America/New_York")))


def test_a_schedule_never_open_has_no_deadline() -> None:
    never = BusinessHours.parse({"timezone": "UTC", "weekly": {}})
    assert never.add_business_seconds(datetime(2026, 1, 1, tzinfo=UTC), 60) is None
    assert never.business_seconds(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)) == 0


@pytest.mark.parametrize("spec", [
    {"timezone": "Mars/Olympus"},
    {"weekly": {"someday": []}},
    {"weekly": {"mon": ["18:00-09:00"]}},
    {"weekly": {"mon": ["24:00-24:00"]}},
    {"weekly": {"mon": ["9-5"]}},
    {"holidays": ["tomorrow"]},
])
def test_a_bad_schedule_is_refused(spec: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        BusinessHours.parse(spec)
