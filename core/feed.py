"""What a (re)connecting agent client is owed: its open tickets and the events it missed."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select

from core import sla
from core.auth import Principal
from core.events import visible_to
from core.models import Customer, Event, Ticket, TicketStatus, utcnow
from core.serialize import event_dict, ticket_dict

if TYPE_CHECKING:
    from core.hub import Hub

# Events commit in id order only roughly (concurrent transactions); replaying this much before
# ``since`` too lets a client that de-duplicates by id see one that committed late.
REPLAY_OVERLAP = timedelta(seconds=10)
MAX_REPLAY = 2000
MAX_SNAPSHOT = 500


async def snapshot(hub: Hub, principal: Principal) -> tuple[int, list[dict[str, Any]]]:
    """The last event id and the not-closed tickets the agent sees (newest first)."""
    async with hub.db.read(principal.tenant_id) as session:
        last = (
            await session.execute(select(Event.id).where(Event.tenant_id == principal.tenant_id)
                                  .order_by(Event.id.desc()).limit(1))
        ).scalar_one_or_none() or 0
        stmt = (
            select(Ticket, Customer)
            .join(Customer, Customer.id == Ticket.customer_id)
            .where(Ticket.status != TicketStatus.CLOSED)
            .order_by(Ticket.id.desc())
            .limit(MAX_SNAPSHOT)
        )
        if not principal.sees_all:
            stmt = stmt.where(Ticket.assignee_id == principal.agent_id)
        rows = (await session.execute(stmt)).all()
        # Their open SLA deadlines (core.sla), which the console counts down.
        due = await sla.deadlines(session, principal.tenant_id, [t.id for t, _ in rows])
    return last, [{**ticket_dict(t, c), "sla": due.get(t.id, [])} for t, c in rows]


async def missed_events(
    hub: Hub, principal: Principal, since: int, groups: frozenset[int] = frozenset(), *,
    after: datetime | None = None,
) -> list[dict[str, Any]]:
    """Events after the id ``since``, and those of the last few seconds (or since ``after``, when
    the bus says something may have been missed since then) whatever their id."""
    now = utcnow()
    recent = min(after, now) if after is not None else now
    async with hub.db.read(principal.tenant_id) as session:
        stmt = (
            select(Event)
            .where(Event.tenant_id == principal.tenant_id,
                   or_(Event.id > since, Event.created_at > recent - REPLAY_OVERLAP))
            .order_by(Event.id)
            .limit(MAX_REPLAY)
        )
        if not principal.sees_all:
            stmt = stmt.where(or_(Event.assignee_id == principal.agent_id, Event.assignee_id.is_(None),
                                  Event.previous_assignee_id == principal.agent_id))
        rows = (await session.execute(stmt)).scalars().all()
    events = [event_dict(e) for e in rows]
    return [e for e in events if visible_to(e, principal.agent_id, principal.sees_all, groups)]
