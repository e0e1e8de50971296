"""The report metrics of one ticket, computed from its events alone (docs/reports.md defines each).

:func:`contribution` reads a ticket's events in order and returns what the ticket adds to the
rollups (core.rollups): a vector of integer counters per key (the local day, the agent credited,
the group, the channel), and the ticket's tags (each key is also counted under each tag). Times are
whole milliseconds, so that sums are exact and a rollup updated piecewise equals one rebuilt.

It is pure: the same events and schedule give the same contribution, whatever the clock says.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.events import EventKind
from core.models import REPORT_COUNTERS
from core.schedule import BusinessHours

# The counters of a rollup row, in order (core.models makes one column of each).
STATUSES = ("new", "open", "pending", "solved")
SLA_TARGETS = ("first_response", "next_response", "resolution")
FIELDS = REPORT_COUNTERS
INDEX = {name: i for i, name in enumerate(FIELDS)}
WIDTH = len(FIELDS)

# The kinds a contribution reads (the rest carry nothing a report counts).
SLA_BREACHED = EventKind.SLA_BREACHED
CSAT_RATED = EventKind.CSAT_RATED
STATE_KINDS = frozenset({EventKind.TICKET_CREATED, EventKind.TICKET_ASSIGNED, EventKind.TICKET_UNASSIGNED,
                         EventKind.TICKET_QUEUED, EventKind.TICKET_OVERFLOWED, EventKind.TICKET_UPDATED,
                         EventKind.MESSAGE_CREATED})
KINDS = STATE_KINDS | {SLA_BREACHED, CSAT_RATED}

HANDLED = frozenset({"new", "open"})
ACTIVE = frozenset({"new", "open", "pending"})
ENDED = frozenset({"solved", "closed"})

# (local day, agent id or 0, group id or 0, channel)
Key = tuple[date, int, int, str]


@dataclass(frozen=True, slots=True)
class Ev:
    """What a contribution reads of an events row."""

    id: int
    kind: str
    at: datetime
    assignee_id: int | None
    payload: dict[str, Any]


@dataclass(slots=True)
class Contribution:
    tags: tuple[str, ...]
    facts: dict[Key, list[int]]

    def is_empty(self) -> bool:
        return not self.facts


EMPTY = Contribution((), {})


@dataclass(frozen=True, slots=True)
class Clock:
    """How a tenant's time is read: its reporting zone and, when it has them, business hours."""

    zone: ZoneInfo
    hours: BusinessHours | None

    @classmethod
    def of(cls, business_hours: dict[str, Any] | None) -> Clock:
        if not business_hours:
            return cls(ZoneInfo("UTC"), None)
        hours = BusinessHours.parse(business_hours)
        return cls(hours.zone, hours)

    def day(self, at: datetime) -> date:
        return at.astimezone(self.zone).date()

    def business_ms(self, start: datetime, end: datetime) -> int:
        if self.hours is None:
            return _ms(start, end)
        return round(self.hours.business_seconds(start, end) * 1000)


def _ms(start: datetime, end: datetime) -> int:
    return max(0, round((end - start).total_seconds() * 1000))


@dataclass(slots=True)
class _Segment:
    start: datetime
    end: datetime
    status: str
    agent: int | None
    group: int | None


class _Facts:
    def __init__(self, clock: Clock, channel: str) -> None:
        self.clock = clock
        self.channel = channel
        self.facts: dict[Key, list[int]] = {}

    def add(self, at: datetime | date, agent: int | None, group: int | None, values: Iterable[tuple[str, int]]) -> None:
        day = at if not isinstance(at, datetime) else self.clock.day(at)
        key = (day, agent or 0, group or 0, self.channel)
        row = self.facts.get(key)
        if row is None:
            row = self.facts[key] = [0] * WIDTH
        for name, value in values:
            row[INDEX[name]] += value


def contribution(events: Sequence[Ev], clock: Clock) -> Contribution:
    """What one ticket's events (in id order) add to the rollups; docs/reports.md says why each."""
    status: str | None = None
    agent: int | None = None
    group: int | None = None
    channel = ""
    tags: tuple[str, ...] = ()
    merged = False
    created: datetime | None = None
    created_group: int | None = None
    first_agent: int | None = None
    first_inbound: datetime | None = None
    replied = False
    waiting: datetime | None = None
    last_change: datetime | None = None
    last_solve: tuple[datetime, int | None, int | None] | None = None
    segments: list[_Segment] = []
    seg_start: datetime | None = None
    # (kind of time, start, end, agent, group), counted once the channel is known
    waits: list[tuple[str, datetime, datetime, int | None, int | None]] = []
    marks: list[tuple[datetime, int | None, int | None, str, int]] = []

    for ev in events:
        payload = ev.payload or {}
        if ev.kind == CSAT_RATED:
            rating = payload.get("rating")
            if isinstance(rating, int) and 1 <= rating <= 5:
                marks.append((ev.at, payload.get("agent_id"), payload.get("group_id"), f"csat_{rating}", 1))
            continue
        if ev.kind == SLA_BREACHED:
            target = payload.get("target")
            if target in SLA_TARGETS:
                marks.append((ev.at, payload.get("agent_id"), payload.get("group_id"), f"sla_{target}", 1))
            continue
        if ev.kind not in STATE_KINDS:
            continue
        ticket = payload.get("ticket")
        new_status, new_group = status, group
        if isinstance(ticket, dict):
            channel = str(ticket.get("channel") or channel)
            tags = tuple(str(t) for t in ticket.get("tags") or ())
            new_status = str(ticket.get("status") or status)
            new_group = ticket.get("group_id")
            if ticket.get("merged_into_id") is not None:
                merged = True
        new_agent = ev.assignee_id
        if ev.kind == EventKind.TICKET_CREATED and created is None:
            created, created_group = ev.at, new_group
        # Assignments: to an agent (counted for them), and away from one (a transfer, theirs).
        if new_agent is not None and new_agent != agent and ev.kind == EventKind.TICKET_ASSIGNED:
            marks.append((ev.at, new_agent, new_group, "assigned", 1))
            if first_agent is None:
                first_agent = new_agent
            if agent is not None:
                marks.append((ev.at, agent, group, "transferred", 1))
        elif (ev.kind == EventKind.TICKET_UNASSIGNED and agent is not None
              and (payload.get("reason") or {}).get("strategy") == "transfer"):
            marks.append((ev.at, agent, group, "transferred", 1))
        if status is not None and new_status != status:
            last_change = ev.at
            if new_status == "solved":
                last_solve = (ev.at, agent if agent is not None else new_agent, group)
            if status in ENDED and new_status in ACTIVE:
                solver = last_solve[1] if last_solve else agent
                marks.append((ev.at, solver, group, "reopened", 1))
        if ev.kind == EventKind.MESSAGE_CREATED:
            message = payload.get("message") or {}
            direction = message.get("direction")
            author = message.get("author") or {}
            if direction == "inbound":
                if first_inbound is None:
                    first_inbound = ev.at
                if replied and waiting is None:
                    waiting = ev.at
            elif direction == "outbound" and author.get("type") == "agent":
                replier = author.get("id")
                if not replied:
                    replied = True
                    if first_inbound is not None:
                        waits.append(("first_response", first_inbound, ev.at, replier, new_group))
                elif waiting is not None:
                    waits.append(("next_response", waiting, ev.at, replier, new_group))
                waiting = None
        # The state's segments: a new one wherever status, assignee or group changes.
        if new_status is not None and (new_status, new_agent, new_group) != (status, agent, group):
            if seg_start is not None and status is not None:
                segments.append(_Segment(seg_start, ev.at, status, agent, group))
            seg_start = ev.at
        status, agent, group = new_status, new_agent, new_group

    if merged or created is None:
        return EMPTY
    out = _Facts(clock, channel)
    local = created.astimezone(clock.zone)
    out.add(created, first_agent, created_group, (("received", 1), (f"h{local.hour:02d}", 1)))
    for at, who, where, name, value in marks:
        out.add(at, who, where, ((name, value),))
    for name, start, end, who, where in waits:
        out.add(end, who, where, ((f"{name}_count", 1), (f"{name}_ms", _ms(start, end)),
                                  (f"{name}_bms", clock.business_ms(start, end))))
    if status in ENDED and last_solve is not None:
        at, who, where = last_solve
        out.add(at, who, where, (("solved", 1), ("resolution_count", 1), ("resolution_ms", _ms(created, at)),
                                 ("resolution_bms", clock.business_ms(created, at))))
    created_day = clock.day(created)
    handled: dict[int, tuple[int, datetime, int | None]] = {}
    for seg in segments:
        if last_change is not None and seg.start < last_change and seg.status in STATUSES:
            out.add(created_day, seg.agent, seg.group,
                    ((f"{seg.status}_ms", _ms(seg.start, min(seg.end, last_change))),))
        if seg.agent is not None and seg.status in HANDLED:
            total, _, _ = handled.get(seg.agent, (0, seg.end, None))
            handled[seg.agent] = (total + _ms(seg.start, seg.end), seg.end, seg.group)
    for who, (total, end, where) in handled.items():
        out.add(end, who, where, (("handle_count", 1), ("handle_ms", total)))
    return Contribution(tags, out.facts)


def rows(c: Contribution) -> dict[tuple[date, int, int, str, str], list[int]]:
    """The contribution as rollup rows: each key under the tag "" (every ticket) and each tag."""
    out: dict[tuple[date, int, int, str, str], list[int]] = {}
    for (day, agent, group, channel), values in c.facts.items():
        for tag in ("", *dict.fromkeys(c.tags)):
            out[(day, agent, group, channel, tag)] = values
    return out
