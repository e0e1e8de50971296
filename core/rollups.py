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

The tenant's clock (reporting time zone and business hours, core.metrics.Clock) is remembered with
the cursor. When it changes, every past contribution changes too: the rollups are emptied and the
cursor set back to the start, and the batches rebuild them (:func:`rebuild` does the same at once).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.metrics import FIELDS, KINDS, WIDTH, Clock, Contribution, Ev, contribution, rows
from core.models import Event, ReportCursor, Tenant, report_rollups, utcnow

if TYPE_CHECKING:
    from core.db import Database

# Events read per batch: the background job's, and a rebuild's.
# PostgreSQL: how old an event must be before the rollups read it (see step).
SETTLE = 5.0
BATCH = 5000
REBUILD_BATCH = 50000
# Tickets whose histories are read per query.
_TICKETS_PER_READ = 500
_KEY = ("tenant_id", "tag", "day", "agent_id", "group_id", "channel")
RowKey = tuple[date, int, int, str, str]


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


async def histories(session: AsyncSession, tenant_id: int, ticket_ids: Iterable[int], upto: int
                    ) -> dict[int, list[Ev]]:
    """The tickets' events that reports read, up to event ``upto``, in order."""
    out: dict[int, list[Ev]] = defaultdict(list)
    wanted = sorted(set(ticket_ids))
    for i in range(0, len(wanted), _TICKETS_PER_READ):
        chunk = wanted[i:i + _TICKETS_PER_READ]
        result = await session.execute(
            select(Event.ticket_id, Event.id, Event.kind, Event.created_at, Event.assignee_id, Event.payload)
            .where(Event.tenant_id == tenant_id, Event.ticket_id.in_(chunk), Event.id <= upto,
                   Event.kind.in_(sorted(KINDS)))
            .order_by(Event.ticket_id, Event.id))
        for ticket_id, *ev in result:
            out[ticket_id].append(Ev(*ev))
    return out


def _add(into: dict[RowKey, list[int]], c: Contribution, sign: int) -> None:
    for key, values in rows(c).items():
        row = into.get(key)
        if row is None:
            row = into[key] = [0] * WIDTH
        for i, v in enumerate(values):
            if v:
                row[i] += sign * v


def deltas(histories: dict[int, list[Ev]], since: int, clock: Clock) -> dict[RowKey, list[int]]:
    """What the events after ``since`` change in the rollups: each ticket's contribution now less
    its contribution as of ``since``."""
    out: dict[RowKey, list[int]] = {}
    for events in histories.values():
        _add(out, contribution(events, clock), 1)
        before = [e for e in events if e.id <= since]
        if before:
            _add(out, contribution(before, clock), -1)
    return {k: v for k, v in out.items() if any(v)}


def _upsert(session: AsyncSession) -> Any:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(report_rollups)
    return stmt.on_conflict_do_update(
        index_elements=list(_KEY), set_={n: report_rollups.c[n] + stmt.excluded[n] for n in FIELDS})


async def apply(session: AsyncSession, tenant_id: int, changes: dict[RowKey, list[int]]) -> None:
    """Add ``changes`` to the tenant's rollups."""
    if not changes:
        return
    items = [{"tenant_id": tenant_id, "day": day, "agent_id": agent, "group_id": group, "channel": channel,
              "tag": tag, **dict(zip(FIELDS, values, strict=True))}
             for (day, agent, group, channel, tag), values in changes.items()]
    stmt = _upsert(session)
    for i in range(0, len(items), 2000):
        await session.execute(stmt, items[i:i + 2000])


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


async def rebuild(db: Database, tenant_id: int, *, limit: int = REBUILD_BATCH, settle: float | None = None) -> int:
    """The tenant's rollups made again from all its events; returns the events read (``settle``:
    as :func:`step`; the newest events are then read by the next round)."""
    async with db.read(tenant_id) as session:
        _, key = await tenant_clock(session, tenant_id)
    await reset(db, tenant_id, key)
    return await catch_up(db, tenant_id, limit=limit, settle=settle)


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
    """Rollup rows read back (tests, the rebuild check): the non-zero ones by key."""
    return {(r.day, r.agent_id, r.group_id, r.channel, r.tag): tuple(getattr(r, n) for n in FIELDS)
            for r in found if any(getattr(r, n) for n in FIELDS)}


async def read_rows(db: Database, tenant_id: int) -> dict[RowKey, tuple[int, ...]]:
    async with db.read(tenant_id) as session:
        found = (await session.execute(select(report_rollups).where(report_rollups.c.tenant_id == tenant_id))).all()
    return table_rows(found)
