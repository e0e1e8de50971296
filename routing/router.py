"""Assignment: which online agent with free capacity takes a ticket, and serving the waiting queue.

The interface (:class:`Router`) is what core calls; the interim implementation is "least busy".
Selection is a pure function (routing.strategies); committing it re-checks capacity under a row
lock on the agent (``FOR UPDATE`` on PostgreSQL; SQLite writers are serialised by
``BEGIN IMMEDIATE``), so concurrent processes never push an agent over capacity or assign a ticket
twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import ACTIVE_STATUSES, Agent, AgentGroup, Presence, Ticket, utcnow
from routing.strategies import Candidate, least_busy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Assignment:
    ticket_id: int
    agent_id: int
    strategy: str
    candidates: int


class Router(Protocol):
    async def route(self, session: AsyncSession, ticket: Ticket) -> Assignment | None:
        """Assign ``ticket`` (already flushed, unassigned) within the caller's transaction, or leave it waiting."""

    async def drain(self, session: AsyncSession, tenant_id: int, limit: int = 100) -> list[Assignment]:
        """Hand waiting tickets to agents with room: highest priority first, then oldest."""



PRIORITY_ORDER = case(
    {"urgent": 3, "high": 2, "normal": 1, "low": 0}, value=Ticket.priority, else_=1
)


class LeastBusyRouter:
    strategy = "least_busy"

    async def candidates(self, session: AsyncSession, tenant_id: int, group_id: int | None) -> list[Candidate]:
        load = func.count(Ticket.id)
        stmt = (
            select(Agent.id, Agent.capacity, Agent.last_assigned_at, load)
            .outerjoin(Ticket, and_(Ticket.assignee_id == Agent.id, Ticket.status.in_(ACTIVE_STATUSES)))
            .where(Agent.tenant_id == tenant_id, Agent.active.is_(True), Agent.status == Presence.ONLINE)
            .group_by(Agent.id, Agent.capacity, Agent.last_assigned_at)
            .having(load < Agent.capacity)
        )
        if group_id is not None:
            stmt = stmt.where(
                Agent.id.in_(select(AgentGroup.agent_id).where(AgentGroup.group_id == group_id))
            )
        rows = (await session.execute(stmt)).all()
        return [Candidate(r[0], r[1], r[3], r[2]) for r in rows]

    async def _lock_if_room(self, session: AsyncSession, agent_id: int) -> bool:
        """Lock the agent row and re-count under the lock: the capacity check that counts."""
        locked = (
            await session.execute(
                select(Agent.capacity, Agent.status, Agent.active).where(Agent.id == agent_id).with_for_update()
            )
        ).one_or_none()
        if locked is None or not locked.active or locked.status != Presence.ONLINE:
            return False
        load = (
            await session.execute(
                select(func.count(Ticket.id)).where(
                    Ticket.assignee_id == agent_id, Ticket.status.in_(ACTIVE_STATUSES)
                )
            )
        ).scalar_one()
        return int(load) < locked.capacity

    async def route(self, session: AsyncSession, ticket: Ticket) -> Assignment | None:
        candidates = await self.candidates(session, ticket.tenant_id, ticket.group_id)
        for choice in least_busy(candidates):
            if await self._lock_if_room(session, choice.agent_id):
                now = utcnow()
                ticket.assignee_id = choice.agent_id
                ticket.assigned_at = now
                ticket.updated_at = now
                agent = await session.get(Agent, choice.agent_id)
                if agent is not None:
                    agent.last_assigned_at = now
                await session.flush()
                return Assignment(ticket.id, choice.agent_id, self.strategy, len(candidates))
        return None

    async def drain(self, session: AsyncSession, tenant_id: int, limit: int = 100) -> list[Assignment]:
        done: list[Assignment] = []
        if not await self.candidates(session, tenant_id, None):
            return done
        waiting = (
            await session.execute(
                select(Ticket)
                .where(
                    Ticket.tenant_id == tenant_id,
                    Ticket.assignee_id.is_(None),
                    Ticket.status.in_(ACTIVE_STATUSES),
                )
                .order_by(PRIORITY_ORDER.desc(), Ticket.created_at, Ticket.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).scalars().all()
        for ticket in waiting:
            assignment = await self.route(session, ticket)
            if assignment is not None:
                done.append(assignment)
        return done
