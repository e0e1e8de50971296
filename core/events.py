"""Recording changes: each is written as an Event row in the transaction that makes it, then
published on the bus after commit (see :meth:`core.hub.Hub.publish`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Event, Ticket, table_of, utcnow
from core.serialize import TicketRow, event_view


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
    # The agent workspace (#13): customers merged and unmerged (every agent of the tenant gets them:
    # any agent may read any customer), and an agent mentioned in a note (that agent only).
    CUSTOMER_MERGED = "customer.merged"
    CUSTOMER_UNMERGED = "customer.unmerged"
    MENTION = "mention"
    # Satisfaction (#17, core.csat): a customer rated a solved ticket. Payload: survey_id, rating
    # (1-5), comment (or null), agent_id and group_id (of the ticket when it was solved).
    CSAT_RATED = "csat.rated"
    # SLA policies (#17, core.sla): a deadline near (to the assignee and supervisors and above),
    # and one passed (recorded once, with the assignee and group of that moment).
    SLA_WARNING = "sla.warning"
    SLA_BREACHED = "sla.breached"


# Events about customers, not tickets: every agent of the tenant sees them.
CUSTOMER_KINDS = frozenset({EventKind.CUSTOMER_MERGED, EventKind.CUSTOMER_UNMERGED})


def tenant_topic(tenant_id: int) -> str:
    return f"tenant:{tenant_id}"


# Built once: SQLAlchemy then finds its compiled form without making a cache key each time.
_EVENTS = table_of(Event)
_INSERT = insert(_EVENTS).returning(_EVENTS.c.id)


class EventLog:
    """Events of one transaction, in order; inserted together (one statement) before it commits,
    published after it commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        kind: str,
        *,
        tenant_id: int,
        ticket: Ticket | TicketRow | None = None,
        payload: dict[str, Any] | None = None,
        assignee_id: int | None = None,
        previous_assignee_id: int | None = None,
        ticket_id: int | None = None,
    ) -> None:
        """``ticket_id`` without ``ticket``: an event about a ticket whose visibility is not its
        assignee's (a mention: ``assignee_id`` is the agent mentioned)."""
        self.rows.append({
            "tenant_id": tenant_id,
            "ticket_id": ticket.id if ticket is not None else ticket_id,
            "kind": kind,
            "assignee_id": ticket.assignee_id if ticket is not None else assignee_id,
            "previous_assignee_id": previous_assignee_id,
            "payload": payload or {},
            "created_at": utcnow(),
        })

    async def flush(self) -> list[dict[str, Any]]:
        """Write the events; returns them as the bus carries them (with their ids)."""
        if not self.rows:
            return []
        # One multi-row INSERT: both databases number the rows in the order of the VALUES list, so
        # the returned ids, sorted, line up with self.rows (asking SQLAlchemy to guarantee the order
        # instead makes it insert row by row on SQLite).
        # The table, not the mapped class: a Core INSERT skips the ORM's per-row bulk machinery.
        ids = sorted((await self.session.execute(_INSERT, self.rows)).scalars())
        out = [event_view(event_id, row) for event_id, row in zip(ids, self.rows, strict=True)]
        self.rows = []
        return out


def visible_to(event: dict[str, Any], agent_id: int, sees_all: bool, groups: frozenset[int] = frozenset()) -> bool:
    """Admins and supervisors see everything of their tenant. An agent sees events of tickets
    assigned to them (before or after the change), and of waiting tickets in their groups' queues
    (or in the tenant-wide queue, for tickets without a group). Everyone sees the events about
    customers; a mention reaches the agent mentioned only, whatever their role."""
    kind = event.get("kind")
    if kind == EventKind.MENTION:
        return event.get("mentioned_agent_id") == agent_id
    if kind in CUSTOMER_KINDS:
        return True
    if sees_all:
        return True
    if event.get("assignee_id") == agent_id or event.get("previous_assignee_id") == agent_id:
        return True
    ticket = event.get("ticket")
    if event.get("assignee_id") is None and ticket is not None and event.get("ticket_id") is not None:
        group_id = ticket.get("group_id")
        return group_id is None or group_id in groups
    return False
