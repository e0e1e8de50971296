"""Recording changes: each is written as an Event row in the transaction that makes it, then
published on the bus after commit (see :meth:`core.hub.Hub.publish`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Event, Ticket
from core.serialize import event_dict


class EventKind:
    TICKET_CREATED = "ticket.created"
    TICKET_ASSIGNED = "ticket.assigned"
    TICKET_UNASSIGNED = "ticket.unassigned"
    TICKET_QUEUED = "ticket.queued"
    TICKET_OVERFLOWED = "ticket.overflowed"
    TICKET_UPDATED = "ticket.updated"
    MESSAGE_CREATED = "message.created"
    MESSAGE_DELIVERY = "message.delivery"
    AGENT_PRESENCE = "agent.presence"
    AGENT_UPDATED = "agent.updated"


def tenant_topic(tenant_id: int) -> str:
    return f"tenant:{tenant_id}"


class EventLog:
    """Events of one transaction, in order; flushed with it, published after it commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.rows: list[Event] = []

    def add(
        self,
        kind: str,
        *,
        tenant_id: int,
        ticket: Ticket | None = None,
        payload: dict[str, Any] | None = None,
        assignee_id: int | None = None,
        previous_assignee_id: int | None = None,
    ) -> Event:
        row = Event(
            tenant_id=tenant_id,
            ticket_id=ticket.id if ticket is not None else None,
            kind=kind,
            assignee_id=ticket.assignee_id if ticket is not None else assignee_id,
            previous_assignee_id=previous_assignee_id,
            payload=payload or {},
        )
        self.session.add(row)
        self.rows.append(row)
        return row

    def published(self) -> list[dict[str, Any]]:
        """The events as the bus carries them (ids are set once the transaction flushed)."""
        return [event_dict(row) for row in self.rows]


def visible_to(event: dict[str, Any], agent_id: int, sees_all: bool, groups: frozenset[int] = frozenset()) -> bool:
    """Admins and supervisors see everything of their tenant. An agent sees events of tickets
    assigned to them (before or after the change), and of waiting tickets in their groups' queues
    (or in the tenant-wide queue, for tickets without a group)."""
    if sees_all:
        return True
    if event.get("assignee_id") == agent_id or event.get("previous_assignee_id") == agent_id:
        return True
    ticket = event.get("ticket")
    if event.get("assignee_id") is None and ticket is not None and event.get("ticket_id") is not None:
        group_id = ticket.get("group_id")
        return group_id is None or group_id in groups
    return False
