"""The reports' rollups (table ``report_rollups``): kept from the events, incrementally, and
rebuildable from them exactly (docs/reports.md).

A tenant's cursor (``report_cursors``) says up to which event id its rollups have read. A batch
takes the events after it (at most ``limit``), finds the tickets they touch, and for each computes
its contribution (core.metrics) from its events up to the old cursor and from all its events up to
the batch's end; the difference is added to the rollups (additive upserts) and the cursor moves on.
The arithmetic is exact (integer counters and milliseconds), so however the history is cut into
batches the rollups are the sum of every ticket's contribution, which is what a rebuild makes.

Reading and computing happen in a read transaction; the write is short: the cursor row is locked,
checked to be where the batch started (another process may have taken the batch: then this one is
dropped), the deltas are upserted and the cursor is moved. Messaging's hot paths write nothing for
the reports: the events they write anyway are all this reads.

The rollups are kept at several grains (the ``grain`` column, :data:`GRAINS`): the finest row per
(tag, channel, group, agent, local day), and every coarser combination of those four, per day and
per month, each the finest rows summed (:func:`grains`). The same function turns a batch's
differences and a rebuild's sums into the rows of every grain, so they all stay exact; a report
reads the coarsest grain that answers its question (core.reports).

The tenant's clock (reporting time zone and business hours, core.metrics.Clock) is remembered with
the cursor. When it changes, every past contribution changes too: the rollups are emptied and the
cursor set back to the start, and the batches rebuild them (:func:`rebuild` does the same at once).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.metrics import FIELDS, KINDS, WIDTH, Clock, Contribution, Ev, contribution
from core.models import Event, ReportCursor, Tenant, report_rollups, utcnow

if TYPE_CHECKING:
    from core.db import Database

# Events read per batch: the background job's.
# PostgreSQL: how old an event must be before the rollups read it (see step).
SETTLE = 5.0
BATCH = 5000
# Tickets whose histories are read per query.
_TICKETS_PER_READ = 500
# A rebuild: tickets per query, rows per insert.
_REBUILD_TICKETS = 4000
_WRITE_ROWS = 5000
RowKey = tuple[date, int, int, str, str]

# The grains: which of the dimensions a row keeps (a bit each; the others hold their neutral value),
# and MONTHLY added when ``day`` is the first day of a month that the row sums.
DIMS = ("tag", "channel", "group_id", "agent_id")
NEUTRAL: tuple[Any, ...] = ("", "", 0, 0)
BIT = {name: 1 << i for i, name in enumerate(DIMS)}
FINEST = 15
MONTHLY = 16
# Each coarser grain is summed from a finer one with one dimension more (the one with the fewest
# values first, so the finer one is small): (grain, parent, the dimension's position).
_CASCADE: list[tuple[int, int, int]] = []
for _mask in sorted(range(FINEST), key=lambda m: -bin(m).count("1")):
    _pos = next(i for i in (1, 2, 0, 3) if not _mask & (1 << i))
    _CASCADE.append((_mask, _mask | (1 << _pos), _pos))
GRAINS = (*range(FINEST + 1), *range(MONTHLY, MONTHLY + FINEST + 1))
# A row of a grain: (grain, tag, channel, group, agent, day), then the counters.
GrainKey = tuple[int, str, str, int, int, date]


def clock_key(business_hours: dict[str, Any] | None) -> str:
    """What the rollups remember of the clock they were made with."""
    raw = json.dumps(business_hours or None, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


async def tenant_clock(session: AsyncSession, tenant_id: int) -> tuple[Clock, str]:
    routing = (await session.execute(select(Tenant.routing).where(Tenant.id == tenant_id))).scalar_one_or_none()
    spec = (routing or {}).get("business_hours") or None
    return Clock.of(spec), clock_key(spec)


@dataclass
class _Cursor:
    last_event_id: int
    clock: str


async def _cursor(session: AsyncSession, tenant_id: int) -> _Cursor:
    row = (await session.execute(select(ReportCursor.last_event_id, ReportCursor.clock)
                                 .where(ReportCursor.tenant_id == tenant_id))).first()
    return _Cursor(row[0], row[1]) if row is not None else _Cursor(0, "")


def _by_ticket(tenant_id: int, upto: int) -> list[Any]:
    """The conditions of a read of tickets' histories besides the tickets: written so that no
    index can serve them (``+ 0``), which leaves the database the index on events (ticket_id, id).
    Otherwise SQLite, without statistics, takes the one on (tenant_id, id) and reads every event
    of the tenant for each chunk of tickets."""
    return [(Event.tenant_id + 0) == tenant_id, (Event.id + 0) <= upto, Event.kind.in_(sorted(KINDS))]


async def histories(session: AsyncSession, tenant_id: int, ticket_ids: Iterable[int], upto: int
                    ) -> dict[int, list[Ev]]:
    """The tickets' events that reports read, up to event ``upto``, in order."""
    out: dict[int, list[Ev]] = defaultdict(list)
    wanted = sorted(set(ticket_ids))
    conn = await session.connection()
    for i in range(0, len(wanted), _TICKETS_PER_READ):
        chunk = wanted[i:i + _TICKETS_PER_READ]
        result = await conn.execute(
            select(Event.ticket_id, Event.id, Event.kind, Event.created_at, Event.assignee_id, Event.payload)
            .where(Event.ticket_id.in_(chunk), *_by_ticket(tenant_id, upto))
            .order_by(Event.ticket_id, Event.id))
        for ticket_id, *ev in result:
            out[ticket_id].append(Ev(*ev))
    return out


# Counter vectors are summed packed into one integer, sum(v[i] * 2**(64 i)), so adding two vectors
# is one addition (a rebuild sums millions of them). While each counter is within a signed 64-bit
# field the packing is one to one: adding 2**63 to every field makes the fields plain unsigned
# digits, read (and written) through struct with the top bit of each flipped.
_PACKED = struct.Struct(f"<{WIDTH}q")
_BIAS = sum(1 << (64 * i + 63) for i in range(WIDTH))


def pack(values: Sequence[int]) -> int:
    return (int.from_bytes(_PACKED.pack(*values), "little") ^ _BIAS) - _BIAS


def unpack(packed: int) -> tuple[int, ...]:
    return _PACKED.unpack(((packed + _BIAS) ^ _BIAS).to_bytes(_PACKED.size, "little"))


def _add(into: dict[RowKey, int], c: Contribution, sign: int) -> None:
    tags = ("", *dict.fromkeys(c.tags))
    for (day, agent, group, channel), values in c.facts.items():
        packed = pack(values) if sign > 0 else -pack(values)
        for tag in tags:
            key = (day, agent, group, channel, tag)
            into[key] = into.get(key, 0) + packed


def deltas(histories: dict[int, list[Ev]], since: int, clock: Clock) -> dict[RowKey, int]:
    """What the events after ``since`` change in the rollups (packed finest rows): each ticket's
    contribution now less its contribution as of ``since``."""
    out: dict[RowKey, int] = {}
    for events in histories.values():
        _add(out, contribution(events, clock), 1)
        before = [e for e in events if e.id <= since]
        if before:
            _add(out, contribution(before, clock), -1)
    return out


def grains(finest: dict[RowKey, int]) -> dict[GrainKey, tuple[int, ...]]:
    """The rows of every grain made from packed finest rows (sums, or differences: it is linear),
    the non-zero ones. A grain without the tag sums the every-ticket rows (tag "") only."""
    by: dict[int, dict[tuple[Any, ...], int]] = {
        FINEST: {(tag, channel, group, agent, day): values
                 for (day, agent, group, channel, tag), values in finest.items()}}
    for mask, parent, pos in _CASCADE:
        out: dict[tuple[Any, ...], int] = {}
        if pos == 0:
            out = {key: values for key, values in by[parent].items() if key[0] == ""}
        else:
            for key, values in by[parent].items():
                coarse = (*key[:pos], NEUTRAL[pos], *key[pos + 1:])
                out[coarse] = out.get(coarse, 0) + values
        by[mask] = out
    result: dict[GrainKey, tuple[int, ...]] = {}
    for mask, found in by.items():
        months: dict[tuple[Any, ...], int] = {}
        for key, values in found.items():
            if values:
                result[(mask, *key)] = unpack(values)
            month = (*key[:4], key[4].replace(day=1))
            months[month] = months.get(month, 0) + values
        for key, values in months.items():
            if values:
                result[(mask + MONTHLY, *key)] = unpack(values)
    return result


_COLUMNS = ("tenant_id", "grain", *DIMS, "day", *FIELDS)


def _insert_sql(session: AsyncSession, additive: bool) -> str:
    """The statement that writes rows through the driver (executemany: no per-row work in
    SQLAlchemy), adding to rows already there when ``additive``."""
    pg = session.get_bind().dialect.name == "postgresql"
    marks = ", ".join(f"${i}" for i in range(1, len(_COLUMNS) + 1)) if pg else ", ".join("?" * len(_COLUMNS))
    sql = f"INSERT INTO report_rollups ({', '.join(_COLUMNS)}) VALUES ({marks})"
    if additive:
        key = ", ".join(_COLUMNS[:7])
        sql += f" ON CONFLICT ({key}) DO UPDATE SET " + ", ".join(
            f"{n} = report_rollups.{n} + excluded.{n}" for n in FIELDS)
    return sql


async def write(session: AsyncSession, tenant_id: int, changes: dict[GrainKey, tuple[int, ...]], *,
                additive: bool = True) -> None:
    """Write rows of every grain: added to the rollups (``additive``), or inserted into empty ones."""
    if not changes:
        return
    pg = session.get_bind().dialect.name == "postgresql"
    sql = _insert_sql(session, additive)
    items = [(tenant_id, grain, tag, channel, group, agent, day if pg else day.isoformat(), *values)
             for (grain, tag, channel, group, agent, day), values in sorted(changes.items())]
    conn = await session.connection()
    for i in range(0, len(items), _WRITE_ROWS):
        await conn.exec_driver_sql(sql, items[i:i + _WRITE_ROWS])


async def apply(session: AsyncSession, tenant_id: int, changes: dict[RowKey, int]) -> None:
    """Add ``changes`` (packed finest rows, :func:`deltas`) to the tenant's rollups, at every grain."""
    await write(session, tenant_id, grains(changes))


async def _move_cursor(session: AsyncSession, tenant_id: int, start: _Cursor, to: int, clock: str) -> bool:
    """Lock the cursor; move it from ``start`` to ``to`` if nobody moved it meanwhile."""
    current = (await session.execute(select(ReportCursor.last_event_id, ReportCursor.clock)
                                     .where(ReportCursor.tenant_id == tenant_id).with_for_update())).first()
    if current is None:
        if start.last_event_id != 0:
            return False
        session.add(ReportCursor(tenant_id=tenant_id, last_event_id=to, clock=clock, updated_at=utcnow()))
        await session.flush()
        return True
    if (current[0], current[1]) != (start.last_event_id, start.clock):
        return False
    await session.execute(update(ReportCursor).where(ReportCursor.tenant_id == tenant_id)
                          .values(last_event_id=to, clock=clock, updated_at=utcnow()))
    return True


async def reset(db: Database, tenant_id: int, clock: str) -> None:
    """Empty the tenant's rollups and set its cursor back to the start (with ``clock``)."""
    async with db.session(tenant_id) as session:
        await session.execute(select(ReportCursor.tenant_id).where(ReportCursor.tenant_id == tenant_id)
                              .with_for_update())
        await session.execute(delete(report_rollups).where(report_rollups.c.tenant_id == tenant_id))
        await session.execute(delete(ReportCursor).where(ReportCursor.tenant_id == tenant_id))
        session.add(ReportCursor(tenant_id=tenant_id, last_event_id=0, clock=clock, updated_at=utcnow()))


async def step(db: Database, tenant_id: int, *, limit: int = BATCH, settle: float | None = None) -> int:
    """One batch of at most ``limit`` events; returns how many were read (0: caught up). A batch
    another process moved the cursor under is dropped and taken again from where it is now.

    ``settle``: only events at least this many seconds old are read (default: none on SQLite,
    whose writers commit one at a time in id order; :data:`SETTLE` on PostgreSQL, where a
    transaction that took an id may commit after one that took a later id)."""
    if settle is None:
        settle = 0.0 if db.is_sqlite else SETTLE
    while True:
        async with db.read(tenant_id) as session:
            start = await _cursor(session, tenant_id)
            clock, key = await tenant_clock(session, tenant_id)
            if start.clock not in (key, "") or (start.clock == "" and start.last_event_id != 0):
                # The clock changed: every past contribution did too.
                changes = None
            else:
                found = (await session.execute(
                    select(Event.id, Event.ticket_id, Event.kind, Event.created_at)
                    .where(Event.tenant_id == tenant_id, Event.id > start.last_event_id)
                    .order_by(Event.id).limit(limit))).all()
                if settle > 0:
                    horizon = utcnow() - timedelta(seconds=settle)
                    settled = next((i for i, row in enumerate(found) if row[3] > horizon), len(found))
                    found = found[:settled]
                if not found:
                    return 0
                upto = found[-1][0]
                touched = {ticket_id for _, ticket_id, kind, _ in found if ticket_id is not None and kind in KINDS}
                changes = deltas(await histories(session, tenant_id, touched, upto), start.last_event_id, clock)
        if changes is None:
            await reset(db, tenant_id, key)
            continue
        async with db.session(tenant_id) as session:
            if not await _move_cursor(session, tenant_id, start, upto, key):
                continue
            await apply(session, tenant_id, changes)
        return len(found)


async def catch_up(db: Database, tenant_id: int, *, limit: int = BATCH, batches: int | None = None,
                   settle: float | None = None) -> int:
    """Batches until the cursor reaches the last event (or ``batches`` of them); returns the
    events read."""
    total = done = 0
    while batches is None or done < batches:
        n = await step(db, tenant_id, limit=limit, settle=settle)
        if n == 0:
            break
        total += n
        done += 1
    return total


async def _ticket_ranges(session: AsyncSession, tenant_id: int, upto: int) -> list[tuple[int, int]]:
    """The tenant's ticket ids that have events up to ``upto``, as ranges of a rebuild's chunk size
    (one pass over the tenant's events in id order)."""
    found = sorted(int(t) for t in (await session.execute(
        select(Event.ticket_id).where(Event.tenant_id == tenant_id, Event.id <= upto, Event.ticket_id.is_not(None))
        .distinct())).scalars() if t is not None)
    return [(found[i], found[min(i + _REBUILD_TICKETS, len(found)) - 1])
            for i in range(0, len(found), _REBUILD_TICKETS)]


async def _range_histories(session: AsyncSession, tenant_id: int, lo: int, hi: int, upto: int
                           ) -> Iterable[list[Ev]]:
    """The histories of the tickets lo..hi up to event ``upto``, one ticket after the other (read
    through the connection: no ORM work per row)."""
    result = await (await session.connection()).execute(
        select(Event.ticket_id, Event.id, Event.kind, Event.created_at, Event.assignee_id, Event.payload)
        .where(Event.ticket_id >= lo, Event.ticket_id <= hi, *_by_ticket(tenant_id, upto))
        .order_by(Event.ticket_id, Event.id))
    current: list[Ev] = []
    ticket = None
    out: list[list[Ev]] = []
    for ticket_id, *ev in result:
        if ticket_id != ticket:
            if current:
                out.append(current)
            current, ticket = [], ticket_id
        current.append(Ev(*ev))
    if current:
        out.append(current)
    return out


async def rebuild(db: Database, tenant_id: int, *, settle: float | None = None) -> int:
    """The tenant's rollups made again from all its events; returns the events read (``settle``:
    as :func:`step`; the newest events are then read by the next round).

    Every ticket's contribution is summed in memory (its events read a chunk of tickets at a time),
    then the rows of every grain replace the tenant's in one transaction that also moves the cursor:
    a batch another process computed meanwhile finds the cursor moved and is dropped."""
    if settle is None:
        settle = 0.0 if db.is_sqlite else SETTLE
    async with db.read(tenant_id) as session:
        clock, key = await tenant_clock(session, tenant_id)
        newest = select(func.max(Event.id)).where(Event.tenant_id == tenant_id)
        if settle > 0:
            newest = newest.where(Event.created_at <= utcnow() - timedelta(seconds=settle))
        upto = int((await session.execute(newest)).scalar() or 0)
        events = int((await session.execute(select(func.count()).select_from(Event).where(
            Event.tenant_id == tenant_id, Event.id <= upto))).scalar_one())
        sums: dict[RowKey, int] = {}
        for lo, hi in await _ticket_ranges(session, tenant_id, upto):
            for history in await _range_histories(session, tenant_id, lo, hi, upto):
                _add(sums, contribution(history, clock), 1)
    # The rows of a month's grains come from that month's finest rows alone: made and written a
    # month at a time, so only the finest sums are all in memory at once.
    by_month: dict[date, dict[RowKey, int]] = defaultdict(dict)
    for row_key, packed in sums.items():
        by_month[row_key[0].replace(day=1)][row_key] = packed
    del sums
    async with db.session(tenant_id) as session:
        await session.execute(select(ReportCursor.tenant_id).where(ReportCursor.tenant_id == tenant_id)
                              .with_for_update())
        await session.execute(delete(report_rollups).where(report_rollups.c.tenant_id == tenant_id))
        await session.execute(delete(ReportCursor).where(ReportCursor.tenant_id == tenant_id))
        session.add(ReportCursor(tenant_id=tenant_id, last_event_id=upto, clock=key, updated_at=utcnow()))
        await session.flush()
        for month in sorted(by_month):
            await write(session, tenant_id, grains(by_month.pop(month)), additive=False)
    return events


async def lag(session: AsyncSession, tenant_id: int) -> int:
    """How many events the tenant's rollups have yet to read."""
    cursor = await _cursor(session, tenant_id)
    return int((await session.execute(select(func.count()).select_from(Event).where(
        Event.tenant_id == tenant_id, Event.id > cursor.last_event_id))).scalar_one())


async def tenants_behind(db: Database) -> list[int]:
    """The tenants whose rollups have events to read."""
    async with db.read() as session:
        tenant_ids = list((await session.execute(select(Tenant.id).order_by(Tenant.id))).scalars())
        behind = []
        for tenant_id in tenant_ids:
            cursor = await _cursor(session, tenant_id)
            newest = (await session.execute(select(func.max(Event.id)).where(Event.tenant_id == tenant_id))).scalar()
            if newest is not None and newest > cursor.last_event_id:
                behind.append(tenant_id)
    return behind


def table_rows(found: Sequence[Any]) -> dict[RowKey, tuple[int, ...]]:
    """Finest rollup rows read back (tests, the rebuild check): the non-zero ones by key."""
    return {(r.day, r.agent_id, r.group_id, r.channel, r.tag): tuple(getattr(r, n) for n in FIELDS)
            for r in found if any(getattr(r, n) for n in FIELDS)}


async def read_rows(db: Database, tenant_id: int) -> dict[RowKey, tuple[int, ...]]:
    """The tenant's finest rows (grain 15)."""
    async with db.read(tenant_id) as session:
        found = (await session.execute(select(report_rollups).where(
            report_rollups.c.tenant_id == tenant_id, report_rollups.c.grain == FINEST))).all()
    return table_rows(found)


async def read_grains(db: Database, tenant_id: int) -> dict[GrainKey, tuple[int, ...]]:
    """Every row of the tenant's rollups, at every grain: the non-zero ones by key."""
    async with db.read(tenant_id) as session:
        found = (await session.execute(select(report_rollups).where(report_rollups.c.tenant_id == tenant_id))).all()
    return {(r.grain, r.tag, r.channel, r.group_id, r.agent_id, r.day): tuple(getattr(r, n) for n in FIELDS)
            for r in found if any(getattr(r, n) for n in FIELDS)}
