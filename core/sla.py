"""SLA policies and each ticket's live deadlines (docs/sla.md).

A tenant's policies are ordered; the first enabled one whose conditions (priorities, channels;
empty: any) hold for a ticket's current priority and channel applies to it. Its targets (seconds)
are first response (from the ticket's creation to the first public agent reply), next response
(from a customer message that starts a wait to the next agent reply) and resolution (from
creation to solved; a reopen resumes it). Clocks run while the ticket is new or open: pending on
the customer (and solved or closed) pauses them, and the time left carries over. A policy on
business hours counts the tenant's schedule only (``routing_settings["business_hours"]``; without
one, business time is wall time).

Nothing of this runs on the messaging paths. Every change of a ticket is already an event written
in the change's transaction (core.events); the SLA sweeper (:func:`sweep`, every few seconds in
``serve``, one process at a time by a ``periodic_jobs`` lease) reads the events after its cursor,
recomputes the deadlines of the tickets they touch from each ticket's whole history
(:func:`compute`: a pure function, so a ticket recomputed twice, by two processes or after an
event that committed late, comes out the same), and writes the ``ticket_sla`` rows that changed.
Then it fires what fell due: ``sla.breached`` at the deadline and ``sla.warning`` before it,
each once per deadline by a conditional UPDATE (``... WHERE warned_at IS NULL``) in the
transaction that writes the event, whichever and however many processes sweep.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import audit
from core.auth import Principal
from core.errors import Conflict, InvalidInput, NotFound
from core.events import EventKind, EventLog
from core.models import (
    PRIORITY_RANK,
    Agent,
    Customer,
    Event,
    Group,
    PeriodicJob,
    Priority,
    SlaCursor,
    SlaPolicy,
    SlaTarget,
    Tenant,
    Ticket,
    TicketSla,
    TicketStatus,
    table_of,
    utcnow,
)
from core.schedule import BusinessHours
from core.serialize import iso, ticket_dict

if TYPE_CHECKING:
    from core.db import Database
    from core.hub import Hub
    from core.reports import Filters

logger = logging.getLogger(__name__)

TARGETS = tuple(t.value for t in SlaTarget)
PRIORITIES = tuple(p.value for p in Priority)
# A target is at most a year; a warning at most as early as its target.
MAX_TARGET = 366 * 86400
# Without ``warn_before``, the warning fires when this share of the target has run.
WARN_SHARE = 0.8
# Clocks run in these statuses only.
RUNNING = frozenset({TicketStatus.NEW.value, TicketStatus.OPEN.value})
# Events commit in id order only roughly: a gap in the ids younger than this may still fill.
GAP_GRACE = timedelta(seconds=10)
EVENTS_PER_ROUND = 2000
# A sweep reads batches until it has caught up with the events, for this long at most (the rest
# waits for the next sweep): a backlog never holds the warnings and breaches of what is due.
SWEEP_READ_SECONDS = 2.0
FIRE_PER_ROUND = 500
LEASE_SECONDS = 60.0
JOB = "sla"


# --- policies -------------------------------------------------------------------------------------

def policy_dict(p: SlaPolicy) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "position": p.position, "enabled": p.enabled,
            "priorities": list(p.priorities or []), "channels": list(p.channels or []),
            "first_response": p.first_response, "next_response": p.next_response, "resolution": p.resolution,
            "business_hours": p.business_hours, "warn_before": p.warn_before,
            "escalate_priority": p.escalate_priority, "created_at": iso(p.created_at), "updated_at": iso(p.updated_at)}


def check_policy(values: dict[str, Any]) -> None:
    """Raises InvalidInput naming what is wrong with a policy's fields (all of them, merged)."""
    for key in ("first_response", "next_response", "resolution", "warn_before"):
        v = values.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= MAX_TARGET):
            raise InvalidInput(f"{key} is a number of seconds from 1 to {MAX_TARGET}", code="invalid_sla_policy")
    if all(values.get(t) is None for t in TARGETS):
        raise InvalidInput("a policy needs at least one target: first_response, next_response or resolution",
                           code="invalid_sla_policy")
    bad = [p for p in values.get("priorities") or [] if p not in PRIORITIES]
    if bad:
        raise InvalidInput(f"unknown priority {bad[0]!r} (one of {', '.join(PRIORITIES)})", code="invalid_sla_policy")
    channels = values.get("channels") or []
    if not all(isinstance(c, str) and 0 < len(c) <= 40 for c in channels):
        raise InvalidInput("channels are channel kinds such as 'webchat'", code="invalid_sla_policy")
    escalate = values.get("escalate_priority")
    if escalate is not None and escalate not in PRIORITIES:
        raise InvalidInput(f"unknown priority {escalate!r} (one of {', '.join(PRIORITIES)})",
                           code="invalid_sla_policy")


async def list_policies(session: AsyncSession) -> list[dict[str, Any]]:
    rows = (await session.execute(select(SlaPolicy).order_by(SlaPolicy.position, SlaPolicy.id))).scalars()
    return [policy_dict(p) for p in rows]


async def _policy(session: AsyncSession, policy_id: int) -> SlaPolicy:
    policy = (await session.execute(select(SlaPolicy).where(SlaPolicy.id == policy_id))).scalar_one_or_none()
    if policy is None:
        raise NotFound(f"SLA policy {policy_id} not found", code="sla_policy_not_found")
    return policy


async def get_policy(session: AsyncSession, policy_id: int) -> dict[str, Any]:
    return policy_dict(await _policy(session, policy_id))


async def _name_free(session: AsyncSession, name: str) -> None:
    if (await session.execute(select(SlaPolicy.id).where(SlaPolicy.name == name))).first():
        raise Conflict(f"an SLA policy named {name!r} exists", code="sla_policy_exists")


def _audit(session: AsyncSession, p: Principal, action: str, target_id: int | None, details: dict[str, Any],
           ip: str | None) -> None:
    audit(session, tenant_id=p.tenant_id, actor_type="agent", actor_id=p.agent_id, action=f"sla_policy.{action}",
          target_type="sla_policy", target_id=target_id, details=details, ip=ip)


async def create_policy(session: AsyncSession, p: Principal, values: dict[str, Any], ip: str | None) -> dict[str, Any]:
    check_policy(values)
    await _name_free(session, values["name"])
    if values.get("position") is None:
        last = (await session.execute(select(func.max(SlaPolicy.position)))).scalar()
        values = {**values, "position": 0 if last is None else int(last) + 1}
    policy = SlaPolicy(tenant_id=p.tenant_id, **values)
    session.add(policy)
    await session.flush()
    _audit(session, p, "create", policy.id, policy_dict(policy), ip)
    return policy_dict(policy)


async def update_policy(session: AsyncSession, p: Principal, policy_id: int, changes: dict[str, Any],
                        ip: str | None) -> dict[str, Any]:
    policy = await _policy(session, policy_id)
    before = policy_dict(policy)
    merged = {**before, **changes}
    check_policy(merged)
    if merged["name"] != policy.name:
        await _name_free(session, merged["name"])
    for key, value in changes.items():
        setattr(policy, key, value)
    policy.updated_at = utcnow()
    await session.flush()
    _audit(session, p, "update", policy.id, {"before": before, "after": policy_dict(policy)}, ip)
    return policy_dict(policy)


async def delete_policy(session: AsyncSession, p: Principal, policy_id: int, ip: str | None) -> None:
    policy = await _policy(session, policy_id)
    _audit(session, p, "delete", policy.id, policy_dict(policy), ip)
    await session.delete(policy)


def matches(policy: SlaPolicy, priority: str, channel: str) -> bool:
    return ((not policy.priorities or priority in policy.priorities)
            and (not policy.channels or channel in policy.channels))


def choose(policies: Iterable[SlaPolicy], priority: str, channel: str) -> SlaPolicy | None:
    """The first enabled policy (in order) whose conditions hold."""
    return next((p for p in policies if p.enabled and matches(p, priority, channel)), None)


# --- the deadlines of one ticket, from its events ---------------------------------------------------

@dataclass(frozen=True)
class HistoryEvent:
    at: datetime
    kind: str
    payload: dict[str, Any]


@dataclass
class Deadline:
    """One row of ``ticket_sla`` as the history makes it (the sweeper's own fields aside)."""

    target: str
    cycle: int
    started_at: datetime
    target_seconds: int
    due_at: datetime | None = None
    warn_at: datetime | None = None
    paused_at: datetime | None = None
    remaining: float | None = None
    met_at: datetime | None = None


@dataclass
class _Timeline:
    """Which statuses the ticket was in when, and the clocks' starts and ends."""

    created: datetime
    segments: list[tuple[datetime, bool]] = field(default_factory=list)  # (from, clocks running)
    priority: str = Priority.NORMAL.value
    channel: str = ""
    first_reply: datetime | None = None
    waits: list[list[datetime | None]] = field(default_factory=list)  # next response: [start, end]
    solved_at: datetime | None = None  # when it became solved or closed, if it is now


def _timeline(events: Sequence[HistoryEvent]) -> _Timeline | None:
    if not events:
        return None
    line = _Timeline(created=events[0].at)
    status: str | None = None
    last = events[0].at
    for e in events:
        at = max(e.at, last)  # ids order the events; a clock that stepped back must not reorder them
        last = at
        ticket = e.payload.get("ticket")
        message = e.payload.get("message") if e.kind == EventKind.MESSAGE_CREATED else None
        if message is not None:
            author = message.get("author") or {}
            if message.get("direction") == "outbound" and author.get("type") == "agent":
                if line.first_reply is None:
                    line.first_reply = at
                elif line.waits and line.waits[-1][1] is None:
                    line.waits[-1][1] = at
            elif message.get("direction") == "inbound" and line.first_reply is not None and (
                    not line.waits or line.waits[-1][1] is not None):
                line.waits.append([at, None])
        if isinstance(ticket, dict):
            line.priority = ticket.get("priority") or line.priority
            line.channel = ticket.get("channel") or line.channel
            new = ticket.get("status")
            if new and new != status:
                running = new in RUNNING
                if not line.segments or line.segments[-1][1] != running:
                    line.segments.append((at, running))
                if new in (TicketStatus.SOLVED.value, TicketStatus.CLOSED.value):
                    line.solved_at = line.solved_at if status in (TicketStatus.SOLVED, TicketStatus.CLOSED) else at
                else:
                    line.solved_at = None
                status = new
    if not line.segments:
        line.segments.append((line.created, True))
    return line


class _Measure:
    """Wall time, or the tenant's business time."""

    def __init__(self, hours: BusinessHours | None) -> None:
        self.hours = hours

    def seconds(self, a: datetime, b: datetime) -> float:
        return self.hours.business_seconds(a, b) if self.hours else max(0.0, (b - a).total_seconds())

    def add(self, a: datetime, seconds: float) -> datetime | None:
        return self.hours.add_business_seconds(a, seconds) if self.hours else a + timedelta(seconds=seconds)


def _runs(line: _Timeline, start: datetime, end: datetime | None) -> list[tuple[datetime, datetime | None]]:
    """The spans in [start, end) where the clocks ran (the last one open-ended while they run now)."""
    out: list[tuple[datetime, datetime | None]] = []
    for i, (a, running) in enumerate(line.segments):
        b = line.segments[i + 1][0] if i + 1 < len(line.segments) else None
        if not running:
            continue
        lo = max(a, start)
        hi = b if end is None else (end if b is None else min(b, end))
        if hi is None or hi > lo:
            out.append((lo, hi))
    return out


def _reached(runs: list[tuple[datetime, datetime | None]], amount: float, m: _Measure) -> tuple[datetime | None, float]:
    """When the running time reaches ``amount`` seconds (None: not within these spans), and how
    much ran in them in all (up to ``amount``)."""
    used = 0.0
    for a, b in runs:
        length = float("inf") if b is None else m.seconds(a, b)
        if used + length >= amount:
            return m.add(a, amount - used), amount
        used += length
    return None, used


def _deadline(target: str, cycle: int, seconds: int, start: datetime, met: datetime | None, line: _Timeline,
              m: _Measure, warn_before: int | None) -> Deadline:
    runs = _runs(line, start, met)
    d = Deadline(target, cycle, start, seconds, met_at=met)
    due, used = _reached(runs, seconds, m)
    d.due_at = due
    if met is not None:
        return d
    running_now = line.segments[-1][1]
    if not running_now:
        d.paused_at = max(line.segments[-1][0], start)
        d.remaining = max(0.0, seconds - used)
        return d
    lead = warn_before if warn_before is not None else seconds * (1 - WARN_SHARE)
    d.warn_at, _ = _reached(runs, max(0.0, seconds - lead), m)
    return d


def compute(events: Sequence[HistoryEvent], policy: SlaPolicy | None, hours: BusinessHours | None) -> list[Deadline]:
    """A ticket's deadlines under ``policy`` from its history (in id order). Pure: the same history
    gives the same rows. A ticket's current priority and channel choose the policy (the caller's
    :func:`choose`); its targets then apply to the whole history, so a change of priority re-times
    the deadlines as if the new policy had applied from the start."""
    line = _timeline(events)
    if line is None or policy is None:
        return []
    m = _Measure(hours if policy.business_hours else None)
    out = []
    if policy.first_response is not None:
        out.append(_deadline(SlaTarget.FIRST_RESPONSE, 0, policy.first_response, line.created, line.first_reply,
                             line, m, policy.warn_before))
    if policy.next_response is not None:
        for i, (start, end) in enumerate(line.waits, start=1):
            assert start is not None
            out.append(_deadline(SlaTarget.NEXT_RESPONSE, i, policy.next_response, start, end, line, m,
                                 policy.warn_before))
    if policy.resolution is not None:
        out.append(_deadline(SlaTarget.RESOLUTION, 0, policy.resolution, line.created, line.solved_at, line, m,
                             policy.warn_before))
    return out


def timeline_of(events: Sequence[HistoryEvent]) -> tuple[str, str]:
    """The ticket's current priority and channel, as its history says."""
    line = _timeline(events)
    return (line.priority, line.channel) if line else (Priority.NORMAL.value, "")


# --- the sweeper ------------------------------------------------------------------------------------

_COMPUTED = ("policy_id", "policy_name", "business_hours", "target_seconds", "started_at", "due_at", "warn_at",
             "paused_at", "remaining", "met_at")


@dataclass
class _Tenant:
    policies: list[SlaPolicy]
    hours: BusinessHours | None


async def _tenant(session: AsyncSession, tenant_id: int) -> _Tenant:
    policies = list((await session.execute(select(SlaPolicy).where(SlaPolicy.tenant_id == tenant_id)
                                           .order_by(SlaPolicy.position, SlaPolicy.id))).scalars())
    raw = (await session.execute(select(Tenant.routing).where(Tenant.id == tenant_id))).scalar() or {}
    hours = None
    if raw.get("business_hours"):
        try:
            hours = BusinessHours.parse(raw["business_hours"])
        except InvalidInput:
            logger.warning("tenant %s: business hours unreadable; SLA clocks count wall time", tenant_id)
    return _Tenant(policies, hours)


async def recompute(session: AsyncSession, tenant_id: int, ticket_ids: Iterable[int]) -> int:
    """Bring the ``ticket_sla`` rows of these tickets in line with their events; returns how many
    rows were written or removed. Rows with a breach recorded stay, whatever the history now says."""
    ids = sorted(set(ticket_ids))
    if not ids:
        return 0
    ctx = await _tenant(session, tenant_id)
    table = table_of(TicketSla)
    if not any(p.enabled for p in ctx.policies):
        # No policy applies to anything (most tenants): no history to read, no deadline to keep
        # (breached rows stay, as ever).
        gone_now = await session.execute(delete(table).where(table.c.tenant_id == tenant_id,
                                                             table.c.ticket_id.in_(ids),
                                                             table.c.breached_at.is_(None)))
        return int(getattr(gone_now, "rowcount", 0) or 0)
    history: dict[int, list[HistoryEvent]] = defaultdict(list)
    rows = await session.execute(select(Event.ticket_id, Event.created_at, Event.kind, Event.payload)
                                 .where(Event.tenant_id == tenant_id, Event.ticket_id.in_(ids))
                                 .order_by(Event.ticket_id, Event.id))
    for ticket_id, at, kind, payload in rows:
        if not kind.startswith("sla."):
            history[ticket_id].append(HistoryEvent(at, kind, payload or {}))
    existing: dict[tuple[int, str, int], TicketSla] = {}
    for found in (await session.execute(select(TicketSla).where(TicketSla.tenant_id == tenant_id,
                                                                  TicketSla.ticket_id.in_(ids)))).scalars():
        existing[(found.ticket_id, found.target, found.cycle)] = found
    now = utcnow()
    written = 0
    new_rows: list[dict[str, Any]] = []
    seen: set[tuple[int, str, int]] = set()
    for ticket_id in ids:
        events = history.get(ticket_id, [])
        priority, channel = timeline_of(events)
        policy = choose(ctx.policies, priority, channel)
        for d in compute(events, policy, ctx.hours):
            assert policy is not None
            key = (ticket_id, d.target, d.cycle)
            seen.add(key)
            values = {"policy_id": policy.id, "policy_name": policy.name, "business_hours": policy.business_hours,
                      "target_seconds": d.target_seconds, "started_at": d.started_at, "due_at": d.due_at,
                      "warn_at": d.warn_at, "paused_at": d.paused_at, "remaining": d.remaining, "met_at": d.met_at}
            row = existing.get(key)
            if row is None:
                new_rows.append({"tenant_id": tenant_id, "ticket_id": ticket_id, "target": d.target,
                                 "cycle": d.cycle, "updated_at": now, **values})
            elif any(getattr(row, k) != v for k, v in values.items()):
                await session.execute(update(table).where(table.c.id == row.id).values(updated_at=now, **values))
                written += 1
    gone = [row.id for key, row in existing.items() if key not in seen and row.breached_at is None]
    if gone:
        await session.execute(delete(table).where(table.c.id.in_(gone)))
    if new_rows:
        await session.execute(insert(table), new_rows)
    return written + len(gone) + len(new_rows)


async def catch_up(db: Database, *, limit: int = EVENTS_PER_ROUND) -> int:
    """Read the events after the cursor and recompute the tickets they touch; returns how many
    events were read. The cursor moves over ids that are seen, or missing for longer than
    GAP_GRACE (a rolled-back transaction's); the ids after a young gap are read again next time."""
    cursor_table = table_of(SlaCursor)
    async with db.read() as session:
        cursor = (await session.execute(select(SlaCursor.last_event_id).where(SlaCursor.name == "events"))).scalar()
        if cursor is None:
            cursor = 0
        rows = (await session.execute(select(Event.id, Event.tenant_id, Event.ticket_id, Event.kind, Event.created_at)
                                      .where(Event.id > cursor).order_by(Event.id).limit(limit))).all()
    if not rows:
        return 0
    old = utcnow() - GAP_GRACE
    moved, contiguous = cursor, True
    touched: dict[int, set[int]] = defaultdict(set)
    for event_id, tenant_id, ticket_id, kind, created_at in rows:
        if contiguous and (event_id == moved + 1 or created_at < old):
            moved = event_id
        else:
            contiguous = False
        if ticket_id is not None and not kind.startswith("sla."):
            touched[tenant_id].add(ticket_id)
    for tenant_id, ticket_ids in touched.items():
        async with db.session(tenant_id) as session:
            await recompute(session, tenant_id, ticket_ids)
    if moved > cursor:
        async with db.connection() as conn:
            await conn.execute(update(cursor_table).where(cursor_table.c.name == "events",
                                                          cursor_table.c.last_event_id < moved)
                               .values(last_event_id=moved))
    return len(rows)


def _event_payload(row: Any) -> dict[str, Any]:
    return {"target": row.target, "due_at": iso(row.due_at), "policy_id": row.policy_id, "policy": row.policy_name}


async def _escalate(session: AsyncSession, log: EventLog, ticket: Ticket, row: Any, *, to: str | None,
                    tags: Iterable[str] = (), rule: str | None = None) -> bool:
    """At a warning: raise the ticket's priority to ``to`` if that is higher (its policy's
    ``escalate_priority``, or a routing rule's), and add ``tags`` (a routing rule's); one event."""
    changes: dict[str, Any] = {}
    if to is not None and PRIORITY_RANK[Priority(to)] > PRIORITY_RANK.get(Priority(ticket.priority), 0):
        changes["priority"] = {"from": ticket.priority, "to": to}
        ticket.priority = to
        ticket.priority_rank = PRIORITY_RANK[Priority(to)]
    added = [t for t in dict.fromkeys(tags) if t not in (ticket.tags or [])]
    if added:
        changes["tags"] = {"from": list(ticket.tags or []), "to": [*(ticket.tags or []), *added]}
        ticket.tags = changes["tags"]["to"]
    if not changes:
        return False
    from core.tickets import record  # core.tickets is heavier; only this rare path needs it

    ticket.updated_at = utcnow()
    record(session, ticket, "escalated", agent_id=ticket.assignee_id, sla=row.target, policy=row.policy_name,
           rule=rule, **changes)
    customer = await session.get(Customer, ticket.customer_id)
    log.add(EventKind.TICKET_UPDATED, tenant_id=ticket.tenant_id, ticket=ticket,
            payload={"ticket": ticket_dict(ticket, customer), "changes": changes, "by": None,
                     "sla": {"target": row.target, "policy": row.policy_name, "rule": rule}})
    return True


@dataclass
class Fired:
    warnings: int = 0
    breaches: int = 0
    escalations: int = 0


async def fire(hub: Hub, now: datetime) -> Fired:
    """Record the breaches whose deadline passed and send the warnings that fell due, each once."""
    table = table_of(TicketSla)
    fired = Fired()
    breach_due = (select(table).where(table.c.due_at <= now, table.c.breached_at.is_(None))
                  .order_by(table.c.due_at).limit(FIRE_PER_ROUND))
    warn_due = (select(table).where(table.c.warn_at <= now, table.c.warned_at.is_(None), table.c.breached_at.is_(None),
                                    table.c.met_at.is_(None), table.c.paused_at.is_(None), table.c.due_at > now)
                .order_by(table.c.warn_at).limit(FIRE_PER_ROUND))
    for kind, query in ((EventKind.SLA_BREACHED, breach_due), (EventKind.SLA_WARNING, warn_due)):
        async with hub.db.read() as session:
            rows = (await session.execute(query)).all()
        by_tenant: dict[int, list[Any]] = defaultdict(list)
        for row in rows:
            by_tenant[row.tenant_id].append(row)
        for tenant_id, chosen in by_tenant.items():
            escalated = False
            async with hub.db.session(tenant_id) as session:
                log = EventLog(session)
                for row in chosen:
                    ticket = (await session.execute(select(Ticket).where(Ticket.id == row.ticket_id)
                                                    .with_for_update())).scalar_one_or_none()
                    if ticket is None:
                        continue
                    if kind == EventKind.SLA_BREACHED:
                        done = await session.execute(
                            update(table).where(table.c.id == row.id, table.c.breached_at.is_(None))
                            .values(breached_at=row.due_at, breach_agent_id=ticket.assignee_id,
                                    breach_group_id=ticket.group_id))
                        payload = {**_event_payload(row), "agent_id": ticket.assignee_id, "group_id": ticket.group_id}
                    else:
                        done = await session.execute(update(table).where(table.c.id == row.id,
                                                                         table.c.warned_at.is_(None))
                                                     .values(warned_at=now))
                        payload = _event_payload(row)
                    if getattr(done, "rowcount", 0) != 1:
                        continue  # another sweeper was first
                    log.add(kind, tenant_id=tenant_id, ticket_id=ticket.id, assignee_id=ticket.assignee_id,
                            payload=payload)
                    if kind == EventKind.SLA_BREACHED:
                        fired.breaches += 1
                        continue
                    fired.warnings += 1
                    policy = await session.get(SlaPolicy, row.policy_id) if row.policy_id is not None else None
                    if policy is not None and policy.escalate_priority and await _escalate(
                            session, log, ticket, row, to=policy.escalate_priority):
                        fired.escalations += 1
                        escalated = True
                    # The tenant's routing rules on SLA warnings (routing.rules: the "sla" condition).
                    customer = await session.get(Customer, ticket.customer_id)
                    match = None if customer is None else await hub.router.rules_at_warning(
                        session, ticket, customer, row.target)
                    if match is not None and await _escalate(session, log, ticket, row, to=match.actions.priority,
                                                             tags=match.actions.add_tags, rule=match.rule):
                        fired.escalations += 1
                        escalated = True
                events = await log.flush()
            await hub.publish(tenant_id, events)
            if escalated:
                hub.router.signal(tenant_id, capacity=False)
    return fired


async def sweep(hub: Hub, *, now: datetime | None = None, read_seconds: float | None = SWEEP_READ_SECONDS) -> Fired:
    """One round: catch up with the events (for ``read_seconds`` at most; None: until caught up),
    then fire what fell due at ``now`` (the injected clock)."""
    loop = asyncio.get_running_loop()
    stop = None if read_seconds is None else loop.time() + read_seconds
    while await catch_up(hub.db) >= EVENTS_PER_ROUND and (stop is None or loop.time() < stop):
        pass
    return await fire(hub, now or utcnow())


class Sweeper:
    """The sweeper of one ``serve`` process: it sweeps while it holds the ``periodic_jobs`` lease
    "sla" (renewed each round; another process takes over when it runs out)."""

    def __init__(self, hub: Hub, *, clock: Callable[[], datetime] = utcnow, owner: str | None = None) -> None:
        from core.leases import RowLease

        table = table_of(PeriodicJob)
        self.hub = hub
        self.clock = clock
        self.lease = RowLease(hub.db, table, lambda: table.c.name == JOB, owner_column="holder",
                              until_column="held_until", owner=owner or f"{socket.gethostname()}:{os.getpid()}",
                              seconds=max(LEASE_SECONDS, 3 * hub.settings.sla_interval), clock=clock, label="sla")

    async def round(self) -> Fired | None:
        if not await self.lease.take():
            return None
        return await sweep(self.hub, now=self.clock())


# --- what the console and the API show --------------------------------------------------------------

def deadline_view(row: TicketSla) -> dict[str, Any]:
    return {"target": row.target, "cycle": row.cycle, "policy": row.policy_name, "due_at": iso(row.due_at),
            "paused": row.paused_at is not None, "remaining": row.remaining, "met_at": iso(row.met_at),
            "warned_at": iso(row.warned_at), "breached_at": iso(row.breached_at)}


async def deadlines(session: AsyncSession, tenant_id: int,
                    ticket_ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    """The open deadlines of these tickets (not met; a breached one stays until met), soonest first:
    one query for a page of tickets."""
    ids = sorted(set(ticket_ids))
    if not ids:
        return {}
    rows = (await session.execute(select(TicketSla).where(TicketSla.tenant_id == tenant_id,
                                                          TicketSla.ticket_id.in_(ids), TicketSla.met_at.is_(None))
                                  .order_by(TicketSla.ticket_id, TicketSla.target, TicketSla.cycle))).scalars()
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        out[row.ticket_id].append(deadline_view(row))
    for views in out.values():
        views.sort(key=lambda v: (v["paused"], v["due_at"] or "9999"))
    return dict(out)


# --- the breach report ------------------------------------------------------------------------------

def _counts() -> dict[str, int]:
    return dict.fromkeys(TARGETS, 0)


async def breach_report(session: AsyncSession, tenant_id: int, f: Filters, zone: ZoneInfo) -> dict[str, Any]:
    """Breaches recorded in the period (``f``: inclusive days of the tenant's reporting time zone
    ``zone``, core.reports.period), per target, per agent and per group (those of the moment of the
    breach)."""
    channel, group_id, agent_id, tag = f.channel, f.group_id, f.agent_id, f.tag
    lo = datetime.combine(f.start, time(0), zone)
    hi = datetime.combine(f.end + timedelta(days=1), time(0), zone)
    stmt = (select(TicketSla.target, TicketSla.breach_agent_id, TicketSla.breach_group_id, func.count())
            .join(Ticket, Ticket.id == TicketSla.ticket_id)
            .where(TicketSla.tenant_id == tenant_id, TicketSla.breached_at >= lo, TicketSla.breached_at < hi)
            .group_by(TicketSla.target, TicketSla.breach_agent_id, TicketSla.breach_group_id))
    if channel is not None:
        stmt = stmt.where(Ticket.channel == channel)
    if group_id is not None:
        stmt = stmt.where(TicketSla.breach_group_id == group_id)
    if agent_id is not None:
        stmt = stmt.where(TicketSla.breach_agent_id == agent_id)
    if tag is not None:
        from core.tickets import has_tag

        stmt = stmt.where(has_tag(tag, postgres=session.get_bind().dialect.name == "postgresql"))
    totals = _counts()
    agents: dict[int | None, dict[str, int]] = defaultdict(_counts)
    groups: dict[int | None, dict[str, int]] = defaultdict(_counts)
    for target, agent, group, n in await session.execute(stmt):
        totals[target] += n
        agents[agent][target] += n
        groups[group][target] += n
    names = {i: n for i, n in await session.execute(select(Agent.id, Agent.name).where(
        Agent.tenant_id == tenant_id, Agent.id.in_([a for a in agents if a is not None])))}
    group_names = {i: n for i, n in await session.execute(select(Group.id, Group.name).where(
        Group.tenant_id == tenant_id, Group.id.in_([g for g in groups if g is not None])))}
    order = lambda key: (key is None, key or 0)  # noqa: E731 - the unassigned row last
    return {
        "period": {"from": f.start.isoformat(), "to": f.end.isoformat(), "timezone": zone.key},
        "filters": f.as_dict(),
        "totals": totals,
        "agents": [{"agent_id": a, "agent_name": names.get(a) if a is not None else None, "breaches": agents[a]}
                   for a in sorted(agents, key=order)],
        "groups": [{"group_id": g, "group_name": group_names.get(g) if g is not None else None,
                    "breaches": groups[g]} for g in sorted(groups, key=order)],
    }
