"""A tenant's business hours: a weekly schedule in its time zone, with holidays (the routing
settings' ``business_hours``). Routing asks whether it is open now (``business_hours`` rule
conditions); reports and SLA policies measure time in it (``business_seconds``) and set deadlines
in it (``add_business_seconds``).

The spec::

    {"timezone": "Asia/Shanghai",
     "weekly": {"mon": ["09:00-12:00", "13:00-18:00"], ..., "sun": []},   # "24:00" ends a day
     "holidays": ["2026-10-01", "2026-10-02"]}

Days missing from ``weekly`` are closed; a holiday is closed all day. Spans are local wall-clock
times: across a daylight-saving change a span is as long as the clock says it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import InvalidInput

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# add_business_seconds looks this many days ahead for open time before it gives up (a schedule
# with no open day at all, or holidays for longer than that).
HORIZON_DAYS = 800


def _clock(value: str) -> time | None:
    """A time of day; None for "24:00" (the end of the day)."""
    if value == "24:00":
        return None
    try:
        hh, mm = value.split(":")
        return time(int(hh), int(mm))
    except (ValueError, TypeError):
        raise InvalidInput(f"{value!r} is not a time of day (HH:MM)", code="invalid_business_hours") from None


@dataclass(frozen=True)
class BusinessHours:
    zone: ZoneInfo
    # weekday (0 = Monday) -> its open spans, each (start, end) local; end None is midnight after
    weekly: dict[int, tuple[tuple[time, time | None], ...]]
    holidays: frozenset[date]

    @classmethod
    def parse(cls, spec: dict[str, Any]) -> BusinessHours:
        try:
            zone = ZoneInfo(str(spec.get("timezone", "UTC")))
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(f"unknown time zone {spec.get('timezone')!r}", code="invalid_business_hours") from None
        weekly: dict[int, tuple[tuple[time, time | None], ...]] = {}
        raw_weekly = spec.get("weekly") or {}
        if not isinstance(raw_weekly, dict):
            raise InvalidInput("weekly maps mon..sun to lists of 'HH:MM-HH:MM'", code="invalid_business_hours")
        for day, spans in raw_weekly.items():
            if day not in DAYS or not isinstance(spans, list):
                raise InvalidInput(f"weekly: {day!r} is not one of {DAYS}", code="invalid_business_hours")
            parsed: list[tuple[time, time | None]] = []
            for span in spans:
                start, sep, end = str(span).partition("-")
                if not sep:
                    raise InvalidInput(f"{span!r} is not 'HH:MM-HH:MM'", code="invalid_business_hours")
                a, b = _clock(start.strip()), _clock(end.strip())
                if a is None or (b is not None and not a < b):
                    raise InvalidInput(f"{span!r} ends before it starts", code="invalid_business_hours")
                parsed.append((a, b))
            weekly[DAYS.index(day)] = tuple(sorted(parsed, key=lambda s: s[0]))
        holidays = set()
        for raw in spec.get("holidays") or []:
            try:
                holidays.add(date.fromisoformat(str(raw)))
            except ValueError:
                raise InvalidInput(f"holiday {raw!r} is not YYYY-MM-DD", code="invalid_business_hours") from None
        return cls(zone, weekly, frozenset(holidays))

    def is_open(self, when: datetime) -> bool:
        local = when.astimezone(self.zone)
        if local.date() in self.holidays:
            return False
        now = local.time()
        return any(a <= now and (b is None or now < b) for a, b in self.weekly.get(local.weekday(), ()))

    def spans(self, day: date) -> list[tuple[datetime, datetime]]:
        """The open spans of one local day, as aware UTC datetimes (none on a holiday)."""
        if day in self.holidays:
            return []
        out = []
        for a, b in self.weekly.get(day.weekday(), ()):
            start = datetime.combine(day, a, self.zone)
            end = (datetime.combine(day + timedelta(days=1), time(0), self.zone) if b is None
                   else datetime.combine(day, b, self.zone))
            out.append((start.astimezone(UTC), end.astimezone(UTC)))
        return out

    def _open_from(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Open spans that end after ``start``, in order, clipped to begin no earlier than it."""
        day = start.astimezone(self.zone).date() - timedelta(days=1)
        for _ in range(HORIZON_DAYS):
            for a, b in self.spans(day):
                if b > start:
                    yield max(a, start), b
            day += timedelta(days=1)

    def business_seconds(self, start: datetime, end: datetime) -> float:
        """How much of [start, end) the schedule is open, in seconds (0 when end <= start)."""
        if end <= start:
            return 0.0
        total = 0.0
        day = start.astimezone(self.zone).date() - timedelta(days=1)
        last = end.astimezone(self.zone).date() + timedelta(days=1)
        while day <= last:
            for a, b in self.spans(day):
                lo, hi = max(a, start), min(b, end)
                if hi > lo:
                    total += (hi - lo).total_seconds()
            day += timedelta(days=1)
        return total

    def add_business_seconds(self, start: datetime, seconds: float) -> datetime | None:
        """The moment ``seconds`` of open time after ``start`` have passed; None if the schedule has
        that little open time in the next HORIZON_DAYS days."""
        left = timedelta(seconds=seconds)
        for a, b in self._open_from(start):
            if b - a >= left:
                return a + left
            left -= b - a
        return None
