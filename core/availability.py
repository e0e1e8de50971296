"""The availability promise (#15): what the probers saw, per tenant, made into outages, monthly
reports and compensation.

The agreement: 99.9 % availability per calendar month (UTC), a month counted as 30 x 24 x 60 =
43,200 minutes whatever its real length (February and 31-day months alike), so 43.2 minutes of
downtime are allowed. ``channelhub probe`` processes (several may run, for redundancy) probe every
active tenant's service and store each outcome with :func:`record`. Everything else here reads
those rows; nothing reads the clock (every function takes ``now``).

**Rounds (merging probers).** Time is cut into rounds of the probe interval
(``CHANNELHUB_PROBE_INTERVAL``, 30 s), aligned on the Unix epoch. A round is *up* when any
prober's probe in it succeeded, *down* when it had probes and all of them failed, *unknown* when it
had none. One prober failing while another succeeds is therefore not an outage: the service
answered someone.

**Coverage and unknown time.** Probers' clocks and schedules jitter, so one empty round between two
probed ones is tolerated: each probed round covers itself and the round after it. Time that no
probed round covers (two or more rounds in a row without any probe, i.e. no probe for more than
two intervals) is *unknown*: it is reported as such, never counted as up or as down. Reports
are made as of ``now`` minus one interval (``settled``), since the last round's probes may still
be on their way.

**Outages.** An outage is a maximal run of down rounds (one empty round inside it tolerated, as
above). It starts at its first failed probe and ends at the first successful probe after it, so
its length is measured by the probes' own times (4:59 and 5:00 apart are told apart exactly). Its
``cause`` is the first failing probe's; ``causes`` keeps every distinct one, in order. An outage
interrupted by unknown time ends where the unknown time begins (the end of the round tolerated
after its last down round): what came after is unknown, not down; if the service is still down
after the gap, that is a new outage. One still going on at the report's time is *open* and ends "now" for the figures.

**What counts.** An outage counts toward downtime only when it lasts 5 minutes or more, measured
over the whole outage as the probes saw it (across month boundaries and maintenance windows). Of
a counting outage, the part inside an announced maintenance window (the operator's, for this
tenant or for all) is excluded; the rest counts, however short. So a 6-minute outage of which 5:30
fell in a window counts 30 s: the overrun of announced maintenance is real downtime of a real
outage, not a blip, and judging the threshold on the remainder would let a window swallow it.
An outage spanning a month boundary counts in each month for its own part (and likewise per day).

**The monthly report** (:func:`month_report`): availability = (43,200 - counted downtime
minutes) / 43,200, as a percentage to three decimals, rounded *down* (so 99.900 is shown only
when the promise was kept; never below 0). While any elapsed part of the month is unknown,
``availability`` is None (never 100 %): ``measured_availability`` gives the figure over the
covered part and ``unknown_minutes`` how much is missing. ``meets_target`` is False as soon as the
counted downtime exceeds 43.2 minutes (unknown time can only add to it), None while unknown time
could still decide it, True otherwise. Days (UTC) give the same per day over the day's real
length, for a chart. A month not yet begun is refused (422 ``month_in_future``).

**Closing and compensation** (:func:`close_month`, :func:`close_due`): once a month is over (plus
:data:`CLOSE_GRACE` for late probe rows; the grace is longer than the 5-minute threshold, so an
outage running over the boundary is decided by then), its figures are recorded in
``availability_months``. When its counted downtime exceeds the allowance, the tenant is
compensated once (core.billing.compensate: the downtime rounded up to whole minutes). Once is
made by the database: the row keyed (tenant, month) is inserted in the transaction that appends
the ledger entry, after taking the contract row's lock; a second closer waits for the lock, finds
the row and does nothing (without a contract, the key alone refuses the second insert). A tenant
without a contract has its month recorded but is not compensated.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core import billing
from core.errors import InvalidInput, NotFound
from core.models import (
    AvailabilityMonth,
    BillingContract,
    MaintenanceWindow,
    ProbeResult,
    Tenant,
    table_of,
)
from core.tenants import operator_audit

if TYPE_CHECKING:
    from core.db import Database
    from core.hub import Hub

logger = logging.getLogger(__name__)

MAX_CAUSE = 500
MAX_REASON = 500

# The agreement's month, whatever the calendar says, and what it promises of it.
MONTH_MINUTES = 30 * 24 * 60
BASIS = timedelta(minutes=MONTH_MINUTES)
TARGET_MILLI = 99_900  # 99.9 %, in thousandths of a percent
ALLOWANCE = BASIS / 1000  # 43.2 minutes
MIN_OUTAGE = timedelta(minutes=5)
# A month is closed this long after it ended: probe rows may come late, and an outage running
# over the boundary is known to reach MIN_OUTAGE (or not) by then.
CLOSE_GRACE = timedelta(minutes=10)
# How far back the start of an outage running into a period is looked for.
LOOKBACK = timedelta(days=35)
# Most incidents and unknown stretches a report lists (its figures always count all of them).
MAX_LISTED = 500
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MONTH = re.compile(r"^([0-9]{4})-([0-9]{2})$")

Span = tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class Probe:
    """One prober's probe of one tenant."""

    tenant_id: int
    prober: str
    at: datetime
    ok: bool
    cause: str | None = None
    latency_ms: int = 0


async def record(session: AsyncSession, probes: Sequence[Probe]) -> None:
    """Store a round of probes (one statement)."""
    if not probes:
        return
    await session.execute(insert(table_of(ProbeResult)), [
        {"tenant_id": p.tenant_id, "prober": p.prober[:100], "at": p.at, "ok": p.ok,
         "cause": None if p.ok else (p.cause or "failed")[:MAX_CAUSE], "latency_ms": max(0, p.latency_ms)}
        for p in probes
    ])


# -- Spans of time (half-open [start, end)) ------------------------------------------------------------


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Sorted, overlapping and touching spans joined; empty ones dropped."""
    out: list[Span] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def clip(spans: Iterable[Span], lo: datetime, hi: datetime) -> list[Span]:
    return [(max(s, lo), min(e, hi)) for s, e in spans if min(e, hi) > max(s, lo)]


def subtract(spans: Iterable[Span], cuts: Sequence[Span]) -> list[Span]:
    """``spans`` without what ``cuts`` (merged) cover."""
    out: list[Span] = []
    for start, end in spans:
        pieces = [(start, end)]
        for c0, c1 in cuts:
            pieces = [p for s, e in pieces for p in ((s, min(e, c0)), (max(s, c1), e)) if p[1] > p[0]]
        out.extend(pieces)
    return out


def total(spans: Iterable[Span]) -> timedelta:
    return sum((e - s for s, e in spans), timedelta())


# -- Rounds and outages (pure) ---------------------------------------------------------------------


@dataclass(slots=True)
class Round:
    """The probes of one interval, merged over probers."""

    index: int
    first_at: datetime
    last_at: datetime
    up: bool
    first_ok_at: datetime | None
    causes: list[str]


@dataclass(slots=True)
class Outage:
    start: datetime
    end: datetime
    cause: str
    causes: list[str]
    # How it ended: "up" (a successful probe), "unknown" (no probes after it), "open" (still on).
    ended_by: str = "up"

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    @property
    def counts(self) -> bool:
        return self.length >= MIN_OUTAGE


def round_start(index: int, interval: timedelta) -> datetime:
    return EPOCH + timedelta(microseconds=index * _us(interval))


def merge_rounds(probes: Iterable[Probe], interval: timedelta) -> list[Round]:
    """Every probed round, in order: up if any probe in it succeeded, else down."""
    step = _us(interval)
    by_index: dict[int, Round] = {}
    # Integer microseconds: exact at the rounds' edges, and far cheaper than dividing timedeltas
    # (a month of two probers' results is some 180,000 rows).
    for p in sorted(probes, key=lambda p: p.at):
        since = p.at - EPOCH
        index = ((since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds) // step
        r = by_index.get(index)
        if r is None:
            r = by_index[index] = Round(index, p.at, p.at, False, None, [])
        r.last_at = p.at
        if p.ok:
            if not r.up:
                r.up, r.first_ok_at = True, p.at
        else:
            cause = p.cause or "failed"
            if cause not in r.causes:
                r.causes.append(cause)
    return [by_index[i] for i in sorted(by_index)]


def coverage(rounds: Sequence[Round], interval: timedelta) -> list[Span]:
    """The time the probes speak for: each probed round and the round after it."""
    runs: list[list[int]] = []
    for r in rounds:  # in order of index
        if runs and r.index <= runs[-1][1]:
            runs[-1][1] = r.index + 2
        else:
            runs.append([r.index, r.index + 2])
    return [(round_start(a, interval), round_start(b, interval)) for a, b in runs]


def find_outages(rounds: Sequence[Round], interval: timedelta, now: datetime) -> list[Outage]:
    """Maximal runs of down rounds, measured by probe times (see the module's docstring)."""
    outages: list[Outage] = []
    current: Outage | None = None
    previous: Round | None = None
    for r in rounds:
        if current is not None and previous is not None and r.index - previous.index > 2:
            # Unknown time follows: the outage ends where its last round stops speaking for the
            # service (the tolerated round after it), which is where the unknown time begins.
            current.end, current.ended_by = round_start(previous.index + 2, interval), "unknown"
            outages.append(current)
            current = None
        if r.up:
            if current is not None:
                assert r.first_ok_at is not None
                current.end = r.first_ok_at
                outages.append(current)
                current = None
        elif current is None:
            current = Outage(r.first_at, r.last_at, r.causes[0] if r.causes else "failed", list(r.causes))
        else:
            current.causes.extend(c for c in r.causes if c not in current.causes)
        previous = r
    if current is not None and previous is not None:
        if now < round_start(previous.index + 2, interval):
            current.end, current.ended_by = max(now, current.start), "open"
        else:
            current.end, current.ended_by = round_start(previous.index + 2, interval), "unknown"
        outages.append(current)
    return outages


# -- Months ------------------------------------------------------------------------------------------


def parse_month(raw: str | None, now: datetime) -> date:
    """``YYYY-MM`` (absent: the current month) as the month's first day; 422 for anything else,
    and for a month that has not begun."""
    if raw is None:
        return date(now.year, now.month, 1)
    found = _MONTH.match(raw)
    if found is None or not 1 <= int(found[2]) <= 12 or not 2000 <= int(found[1]) <= 9998:
        raise InvalidInput(f"month must be written YYYY-MM (2000-01 to 9998-12), not {raw[:40]!r}",
                           code="invalid_query")
    month = date(int(found[1]), int(found[2]), 1)
    if month > date(now.year, now.month, 1):
        raise InvalidInput(f"{raw} has not begun: there is nothing to report yet", code="month_in_future")
    return month


def month_bounds(month: date) -> Span:
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    days = calendar.monthrange(month.year, month.month)[1]
    return start, start + timedelta(days=days)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def milli(up: timedelta, whole: timedelta) -> int:
    """``up / whole`` in thousandths of a percent, rounded down, never below 0."""
    us_up, us_whole = _us(up), _us(whole)
    return max(0, (100_000 * us_up) // us_whole)


def _us(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


def minutes(delta: timedelta) -> float:
    return round(_us(delta) / 60_000_000, 3)


def percent(value: int | None) -> float | None:
    return None if value is None else value / 1000


@dataclass(frozen=True, slots=True)
class Window:
    id: int
    start: datetime
    end: datetime
    reason: str
    tenant_id: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "start": self.start.isoformat(), "end": self.end.isoformat(),
                "reason": self.reason, "tenant_id": self.tenant_id}


@dataclass
class MonthFigures:
    """What a month's report says (see :func:`analyse`)."""

    month: date
    start: datetime
    end: datetime
    as_of: datetime
    downtime: timedelta
    unknown: timedelta
    measured: timedelta
    availability_milli: int | None
    measured_milli: int | None
    outages: list[Outage]
    incidents: list[dict[str, Any]]
    unknown_spans: list[Span]
    days: list[dict[str, Any]]
    windows: list[Window] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.as_of >= self.end

    @property
    def compensation_due(self) -> bool:
        return self.downtime > ALLOWANCE

    @property
    def compensation_minutes(self) -> int:
        """The counted downtime in whole minutes, rounded up."""
        return -(-_us(self.downtime) // 60_000_000)

    @property
    def meets_target(self) -> bool | None:
        if self.downtime > ALLOWANCE:
            return False
        return None if self.unknown or self.as_of <= self.start else True

    def summary(self) -> dict[str, Any]:
        """The month's figures (without the days and lists): what a closed month keeps."""
        return {
            "month": self.month.strftime("%Y-%m"), "start": self.start.isoformat(), "end": self.end.isoformat(),
            "as_of": self.as_of.isoformat(), "complete": self.complete, "basis_minutes": MONTH_MINUTES,
            "target": TARGET_MILLI / 1000, "availability": percent(self.availability_milli),
            "measured_availability": percent(self.measured_milli), "meets_target": self.meets_target,
            "downtime_minutes": minutes(self.downtime), "unknown_minutes": minutes(self.unknown),
            "measured_minutes": minutes(self.measured), "incidents_total": len(self.outages),
            "incidents_counted": sum(1 for o in self.outages if o.counts),
        }

    def as_dict(self) -> dict[str, Any]:
        return {**self.summary(), "incidents": self.incidents[:MAX_LISTED],
                "unknown": [{"start": s.isoformat(), "end": e.isoformat(), "minutes": minutes(e - s)}
                            for s, e in self.unknown_spans[:MAX_LISTED]],
                "maintenance": [w.as_dict() for w in self.windows], "days": self.days}


def analyse(probes: Iterable[Probe], windows: Sequence[Window], month: date, *, now: datetime,
            interval: timedelta) -> MonthFigures:
    """A month's figures from the probes around it and the maintenance windows, as of ``now``
    (the caller passes the settled time; see :func:`settled`)."""
    start, end = month_bounds(month)
    as_of = min(max(now, start), end)
    rounds = merge_rounds((p for p in probes if p.at <= now), interval)
    outages = [o for o in find_outages(rounds, interval, now) if o.end > start and o.start < as_of]
    maintenance = merge_spans((w.start, w.end) for w in windows)
    covered = clip(coverage(rounds, interval), start, as_of)
    unknown_spans = subtract([(start, as_of)], covered) if as_of > start else []
    counted: list[Span] = []
    incidents = []
    for o in outages:
        part = clip([(o.start, o.end)], start, as_of)
        outside = subtract(part, maintenance)
        if o.counts:
            counted.extend(outside)
        incidents.append({
            "start": o.start.isoformat(), "end": o.end.isoformat(), "ended_by": o.ended_by,
            "minutes": minutes(o.length), "cause": o.cause, "causes": o.causes[:20], "counted": o.counts,
            "minutes_in_month": minutes(total(part)),
            "maintenance_minutes": minutes(total(part) - total(outside)),
            "counted_minutes": minutes(total(outside)) if o.counts else 0.0,
        })
    counted = merge_spans(counted)
    downtime, unknown = total(counted), total(unknown_spans)
    elapsed = as_of - start
    measured = elapsed - unknown
    days = []
    day = start
    while day < end:
        day_end = day + timedelta(days=1)
        day_as_of = min(max(as_of, day), day_end)
        d_down = total(clip(counted, day, day_as_of))
        d_unknown = total(clip(unknown_spans, day, day_as_of))
        d_elapsed = day_as_of - day
        days.append({
            "date": day.date().isoformat(), "downtime_minutes": minutes(d_down), "unknown_minutes": minutes(d_unknown),
            "measured_minutes": minutes(d_elapsed - d_unknown),
            "availability": percent(milli(d_elapsed - d_down, d_elapsed))
            if d_elapsed and not d_unknown else None,
        })
        day = day_end
    return MonthFigures(
        month=month, start=start, end=end, as_of=as_of, downtime=downtime, unknown=unknown, measured=measured,
        availability_milli=milli(BASIS - downtime, BASIS) if elapsed and not unknown else None,
        measured_milli=milli(measured - downtime, measured) if measured > timedelta() else None,
        outages=outages, incidents=incidents, unknown_spans=unknown_spans, days=days, windows=list(windows),
    )


def settled(now: datetime, interval: timedelta) -> datetime:
    """The time a report is made as of: the last interval's probes may not be stored yet."""
    return now - interval


# -- Reading -------------------------------------------------------------------------------------------


async def load_probes(session: AsyncSession, tenant_id: int, start: datetime, end: datetime, *,
                      now: datetime, interval: timedelta) -> list[Probe]:
    """The tenant's probes that decide ``[start, end)``: from its last successful probe before
    ``start`` (so an outage running into the period is measured whole; at most LOOKBACK back) to
    its first successful one from ``end`` on (one running out of it), none after ``now``."""
    pr = ProbeResult
    last_ok = (await session.execute(select(func.max(pr.at)).where(
        pr.tenant_id == tenant_id, pr.ok.is_(True), pr.at < start, pr.at >= start - LOOKBACK))).scalar_one()
    lo = min(last_ok or start - LOOKBACK, start - 2 * interval)
    first_ok = (await session.execute(select(func.min(pr.at)).where(
        pr.tenant_id == tenant_id, pr.ok.is_(True), pr.at >= end, pr.at <= min(now, end + LOOKBACK)))).scalar_one()
    hi = min(first_ok or end + LOOKBACK, now)
    rows = await session.execute(
        select(pr.prober, pr.at, pr.ok, pr.cause).where(pr.tenant_id == tenant_id, pr.at >= lo, pr.at <= hi)
        .order_by(pr.at, pr.id))
    return [Probe(tenant_id, r.prober, _aware(r.at), r.ok, r.cause) for r in rows]


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


async def windows_for(session: AsyncSession, tenant_id: int | None, start: datetime, end: datetime) -> list[Window]:
    """Maintenance windows overlapping ``[start, end)``: the tenant's and those for all tenants
    (``tenant_id`` None: every window)."""
    mw = MaintenanceWindow
    stmt = select(mw).where(mw.starts_at < end, mw.ends_at > start)
    if tenant_id is not None:
        stmt = stmt.where(or_(mw.tenant_id.is_(None), mw.tenant_id == tenant_id))
    rows = (await session.execute(stmt.order_by(mw.starts_at, mw.id))).scalars()
    return [Window(w.id, w.starts_at, w.ends_at, w.reason, w.tenant_id) for w in rows]


async def month_figures(session: AsyncSession, tenant_id: int, month: date, *, now: datetime,
                        interval: timedelta) -> MonthFigures:
    start, end = month_bounds(month)
    as_of = settled(now, interval)
    probes = await load_probes(session, tenant_id, start, end, now=as_of, interval=interval)
    windows = await windows_for(session, tenant_id, start, end)
    # A month of two probers' results is some 180,000 probes, most of a second of pure Python:
    # in a thread, so the event loop (sockets, other requests) keeps its turns meanwhile.
    return await asyncio.to_thread(analyse, probes, windows, month, now=as_of, interval=interval)


def closed_dict(row: AvailabilityMonth) -> dict[str, Any]:
    return {"closed_at": row.closed_at.isoformat(), "availability": percent(row.availability_milli),
            "measured_availability": percent(row.measured_availability_milli),
            "downtime_minutes": round(row.downtime_seconds / 60, 3),
            "unknown_minutes": round(row.unknown_seconds / 60, 3),
            "compensated_minutes": row.compensated_minutes, "ledger_entry_id": row.ledger_entry_id,
            "compensation": row.summary.get("compensation", "none")}


async def month_report(session: AsyncSession, tenant_id: int, month: date, *, now: datetime,
                       interval: timedelta) -> dict[str, Any]:
    """The tenant's report for ``month`` as of ``now``: see the module's docstring."""
    if (await session.execute(select(Tenant.id).where(Tenant.id == tenant_id))).first() is None:
        raise NotFound(f"tenant {tenant_id} not found", code="tenant_not_found")
    figures = await month_figures(session, tenant_id, month, now=now, interval=interval)
    closed = await _closed(session, tenant_id, month)
    return {"tenant_id": tenant_id, **figures.as_dict(), "closed": closed_dict(closed) if closed else None}


async def _closed(session: AsyncSession, tenant_id: int, month: date) -> AvailabilityMonth | None:
    stmt = select(AvailabilityMonth).where(AvailabilityMonth.tenant_id == tenant_id, AvailabilityMonth.month == month)
    return (await session.execute(stmt.execution_options(populate_existing=True))).scalar_one_or_none()


# -- Maintenance windows -----------------------------------------------------------------------------


async def add_window(session: AsyncSession, *, start: datetime, end: datetime, reason: str,
                     tenant_id: int | None, actor: billing.Actor, now: datetime, ip: str | None = None) -> Window:
    """Announce a maintenance window (for one tenant, or all with ``tenant_id`` None). It must
    begin at ``now`` or later: a window is *announced*, so one cannot excuse an outage after the
    fact (withdrawing one, which only adds downtime back, is allowed at any time)."""
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidInput(f"{name} needs a time zone (Z or +08:00)", code="invalid_window")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if not start < end:
        raise InvalidInput("a maintenance window's start must be before its end", code="invalid_window")
    if start < now:
        raise InvalidInput("a maintenance window is announced before it begins: its start is in the past",
                           code="window_in_past")
    reason = reason.strip()
    if not reason:
        raise InvalidInput("a maintenance window needs a reason", code="invalid_window")
    if tenant_id is not None and not (await session.execute(select(Tenant.id).where(Tenant.id == tenant_id))).first():
        raise NotFound(f"tenant {tenant_id} not found", code="tenant_not_found")
    row = MaintenanceWindow(tenant_id=tenant_id, starts_at=start, ends_at=end, reason=reason[:MAX_REASON],
                            created_by=actor.id)
    session.add(row)
    await session.flush()
    window = Window(row.id, start, end, row.reason, tenant_id)
    operator_audit(session, actor, "maintenance.create", tenant_id, {"window": window.as_dict()}, ip)
    return window


async def remove_window(session: AsyncSession, window_id: int, *, actor: billing.Actor, ip: str | None = None) -> None:
    row = (await session.execute(select(MaintenanceWindow).where(MaintenanceWindow.id == window_id)
                                 .with_for_update())).scalar_one_or_none()
    if row is None:
        raise NotFound(f"maintenance window {window_id} not found", code="window_not_found")
    window = Window(row.id, row.starts_at, row.ends_at, row.reason, row.tenant_id)
    await session.delete(row)
    operator_audit(session, actor, "maintenance.delete", row.tenant_id, {"window": window.as_dict()}, ip)


async def list_windows(session: AsyncSession, *, start: datetime | None, end: datetime | None,
                       tenant_id: int | None = None) -> list[Window]:
    """Windows overlapping ``[start, end)`` (either open-ended when None), by start."""
    lo = start or datetime(1970, 1, 1, tzinfo=UTC)
    hi = end or datetime(9999, 1, 1, tzinfo=UTC)
    return await windows_for(session, tenant_id, lo, hi)


# -- Closing months ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Closing:
    """What :func:`close_month` found or did: ``closed_now`` False when it was closed before."""

    row: AvailabilityMonth
    closed_now: bool


async def close_month(db: Database, tenant_id: int, month: date, *, now: datetime, interval: timedelta,
                      actor: billing.Actor = billing.SYSTEM) -> Closing:
    """Close the tenant's ``month`` (over for CLOSE_GRACE at ``now``): record its figures and,
    below 99.9 %, compensate the tenant once. Safe to call from any number of processes at once:
    see the module's docstring for why exactly one of them compensates."""
    end = month_bounds(month)[1]
    if now < end + CLOSE_GRACE:
        raise InvalidInput(f"{month:%Y-%m} can be closed from {(end + CLOSE_GRACE).isoformat()} on",
                           code="month_not_over")
    async with db.read() as session:
        found = await _closed(session, tenant_id, month)
        if found is not None:
            return Closing(found, False)
        figures = await month_figures(session, tenant_id, month, now=now, interval=interval)
    summary = figures.summary()
    try:
        async with db.session() as session:
            # The contract's lock first: every closer of this tenant's month queues here, and the
            # one after the first finds its row below (PostgreSQL; SQLite's writers are serial).
            contract = (await session.execute(
                select(BillingContract).where(BillingContract.tenant_id == tenant_id).with_for_update()
            )).scalar_one_or_none()
            found = await _closed(session, tenant_id, month)
            if found is not None:
                return Closing(found, False)
            due = figures.compensation_due
            summary["compensation"] = ("paid" if contract is not None else "no_contract") if due else "none"
            row = AvailabilityMonth(
                tenant_id=tenant_id, month=month, closed_at=now, availability_milli=figures.availability_milli,
                measured_availability_milli=figures.measured_milli,
                downtime_seconds=round(figures.downtime.total_seconds()),
                unknown_seconds=round(figures.unknown.total_seconds()),
                compensated_minutes=figures.compensation_minutes if due and contract is not None else 0,
                summary={**summary, "incidents": figures.incidents[:50]},
            )
            session.add(row)
            # Without a contract there is no lock to queue on: the key refuses the second closer.
            await session.flush()
            if due and contract is not None:
                entry = await billing.compensate(
                    session, tenant_id, minutes=figures.compensation_minutes, now=now, actor=actor,
                    month=f"{month:%Y-%m}",
                    note=f"availability {summary['availability'] if summary['availability'] is not None else 'unknown'}"
                         f" % in {month:%Y-%m}, {summary['downtime_minutes']} min of downtime")
                await session.flush()
                row.ledger_entry_id = entry.id
    except IntegrityError:
        async with db.read() as session:
            found = await _closed(session, tenant_id, month)
        if found is None:
            raise
        return Closing(found, False)
    logger.info("availability: tenant %s closed %s at %s (downtime %s min, %s)", tenant_id, f"{month:%Y-%m}",
                summary["availability"], summary["downtime_minutes"], summary["compensation"])
    return Closing(row, True)


async def months_due(session: AsyncSession, tenant_id: int, now: datetime) -> list[date]:
    """The tenant's months over (for CLOSE_GRACE) and not closed: from the month after the last
    closed one, or the month of its first probe when none is."""
    last = (await session.execute(select(func.max(AvailabilityMonth.month))
                                  .where(AvailabilityMonth.tenant_id == tenant_id))).scalar_one()
    if last is not None:
        month = next_month(last)
    else:
        first = (await session.execute(select(func.min(ProbeResult.at))
                                       .where(ProbeResult.tenant_id == tenant_id))).scalar_one()
        if first is None:
            return []
        month = date(first.year, first.month, 1)
    due = []
    while month_bounds(month)[1] + CLOSE_GRACE <= now:
        due.append(month)
        month = next_month(month)
    return due


async def close_due(hub: Hub, *, now: datetime | None = None,
                    tenant_ids: Sequence[int] | None = None) -> dict[str, int]:
    """The availability round: close every tenant's (or those of ``tenant_ids``) months that are
    over (:func:`close_month`), each in transactions of its own. Safe in several processes at once."""
    return await close_all(hub.db, interval=timedelta(seconds=hub.settings.probe_interval),
                           now=now or datetime.now(UTC), tenant_ids=tenant_ids)


async def close_all(db: Database, *, interval: timedelta, now: datetime,
                    tenant_ids: Sequence[int] | None = None) -> dict[str, int]:
    """:func:`close_due` on a database alone (``channelhub availability close``): how many months
    were ``closed``, ``compensated``, ``already_closed`` (by another process meanwhile), ``failed``."""
    if tenant_ids is None:
        async with db.read() as session:
            tenant_ids = list((await session.execute(select(Tenant.id).order_by(Tenant.id))).scalars())
    outcomes: dict[str, int] = {}
    for tenant_id in tenant_ids:
        try:
            async with db.read() as session:
                due = await months_due(session, tenant_id, now)
            for month in due:
                closing = await close_month(db, tenant_id, month, now=now, interval=interval)
                outcome = "closed" if closing.closed_now else "already_closed"
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                if closing.closed_now and closing.row.ledger_entry_id is not None:
                    outcomes["compensated"] = outcomes.get("compensated", 0) + 1
        except Exception:
            logger.exception("availability: closing tenant %s's months failed; the next round tries again", tenant_id)
            outcomes["failed"] = outcomes.get("failed", 0) + 1
    if outcomes:
        logger.info("availability round: %s", outcomes)
    return outcomes
