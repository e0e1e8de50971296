"""What the operational endpoints read from the database (#15): readiness and the backlog gauges.

``/readyz`` and ``/metrics`` (web/ops.py) call these; each is one or two small statements that the
caller bounds in time. They read through the hub's own engines (never a new one): a check that
opened its own connection would say nothing about the pool the requests use.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import Database
from core.models import DeliveryState, InboxItem, InboxState, OutboxItem, ProbeResult, Tenant, Ticket
from core.transitions import RoutingState

logger = logging.getLogger(__name__)

# Probe results older than this do not count as a tenant's current state: a prober that stopped
# must not leave a tenant "up" for ever. A few of the probers' intervals.
PROBE_WINDOW = timedelta(minutes=15)
# At most this many tenants' probe results per scrape.
MAX_PROBED_TENANTS = 10_000

_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]*@")


def describe_error(exc: BaseException) -> str:
    """An error as one short line for a health answer: its type and message, with any credentials
    of a URL in it removed (``postgresql://user:secret@host`` -> ``postgresql://***@host``)."""
    message = str(exc).splitlines()[0] if str(exc) else ""
    message = _CREDENTIALS.sub("***@", message)[:200]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


async def _limit_statement(session: AsyncSession, db: Database, timeout: float) -> None:
    """PostgreSQL stops the statement itself after ``timeout`` (the caller's asyncio timeout only
    stops waiting for it); SQLite's statements here are index reads of the local file."""
    if not db.is_sqlite:
        await session.execute(text(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}"))


async def ping(db: Database) -> None:
    """A round trip to the database through the pool the requests use (its read side)."""
    async with db.read() as session:
        await session.execute(text("SELECT 1"))


@dataclass(frozen=True, slots=True)
class Backlog:
    """What waits, as the database has it (all processes together)."""

    # Inbox rows by state (pending: landed, not yet a ticket; failed: set aside).
    inbox: dict[str, int]
    # Age of the oldest pending inbox row, seconds (0 when none).
    inbox_oldest_seconds: float
    # Undelivered outbox rows by state (pending, sending, failed; sent ones are not counted).
    outbox: dict[str, int]
    # Age of the oldest reply not delivered yet (pending or sending), seconds (0 when none).
    outbox_lag_seconds: float
    # Tickets waiting for routing by routing state (pending: not looked at yet; queued: nobody free).
    router: dict[str, int] = field(default_factory=dict)


def _age(now: datetime, oldest: datetime | None) -> float:
    if oldest is None:
        return 0.0
    if oldest.tzinfo is None:  # an aggregate's result, if a driver lost the column's type: UTC
        oldest = oldest.replace(tzinfo=UTC)
    return max(0.0, (now - oldest).total_seconds())


async def backlog(db: Database, now: datetime, *, timeout: float) -> Backlog:
    """The inbox's, the outbox's and the router's backlog: three grouped counts on indexed columns."""
    undelivered = (DeliveryState.PENDING, DeliveryState.SENDING, DeliveryState.FAILED)
    waiting = (RoutingState.PENDING, RoutingState.QUEUED)
    async with db.read() as session:
        await _limit_statement(session, db, timeout)
        inbox_rows = (await session.execute(
            select(InboxItem.state, func.count(), func.min(InboxItem.received_at))
            .where(InboxItem.state.in_((InboxState.PENDING, InboxState.FAILED))).group_by(InboxItem.state))).all()
        outbox_rows = (await session.execute(
            select(OutboxItem.state, func.count(), func.min(OutboxItem.created_at))
            .where(OutboxItem.state.in_(undelivered)).group_by(OutboxItem.state))).all()
        router_rows = (await session.execute(
            select(Ticket.routing_state, func.count())
            .where(Ticket.routing_state.in_(waiting)).group_by(Ticket.routing_state))).all()
    inbox = {str(s): 0 for s in (InboxState.PENDING, InboxState.FAILED)}
    inbox_oldest = None
    for state, n, oldest in inbox_rows:
        inbox[str(state)] = int(n)
        if state == InboxState.PENDING:
            inbox_oldest = oldest
    outbox = {str(s): 0 for s in undelivered}
    lag_from: datetime | None = None
    for state, n, oldest in outbox_rows:
        outbox[str(state)] = int(n)
        if state != DeliveryState.FAILED and oldest is not None:
            lag_from = oldest if lag_from is None else min(lag_from, oldest)
    router = {str(s): 0 for s in waiting}
    for state, n in router_rows:
        router[str(state)] = int(n)
    return Backlog(inbox, _age(now, inbox_oldest), outbox, _age(now, lag_from), router)


@dataclass(frozen=True, slots=True)
class ProbeState:
    """A tenant's latest probe within :data:`PROBE_WINDOW`."""

    tenant_id: int
    up: bool
    latency_ms: int
    at: datetime


async def latest_probes(db: Database, now: datetime, *, timeout: float) -> list[ProbeState]:
    """Each tenant's latest probe result of the last :data:`PROBE_WINDOW` (several probers that
    probed at the same moment: up only if all saw it up). Per tenant, the newest row is found by
    the (tenant_id, at) index, so the cost follows the number of tenants, not of stored results."""
    since = now - PROBE_WINDOW
    p = ProbeResult
    newest = (select(func.max(p.at)).where(p.tenant_id == Tenant.id, p.at >= since)
              .correlate(Tenant).scalar_subquery())
    latest = (select(Tenant.id.label("tenant_id"), newest.label("at")).order_by(Tenant.id)
              .limit(MAX_PROBED_TENANTS).subquery())
    async with db.read() as session:
        await _limit_statement(session, db, timeout)
        rows = (await session.execute(
            select(p.tenant_id, p.ok, p.latency_ms, p.at)
            .join(latest, and_(p.tenant_id == latest.c.tenant_id, p.at == latest.c.at)))).all()
    found: dict[int, ProbeState] = {}
    for tenant_id, ok, latency_ms, at in rows:
        seen = found.get(tenant_id)
        if seen is not None:
            ok = ok and seen.up
            latency_ms = max(latency_ms, seen.latency_ms)
        found[tenant_id] = ProbeState(int(tenant_id), bool(ok), int(latency_ms), at)
    return sorted(found.values(), key=lambda s: s.tenant_id)
