"""The JSON shapes of tickets, messages and events, shared by the API, the gateway and the bus."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from core.models import Agent, Customer, Event, LedgerEntry, Message, Ticket


@dataclass(slots=True)
class CustomerRow:
    """A customer read as plain columns (the hot paths skip the ORM's per-object bookkeeping)."""

    id: int
    name: str | None
    email: str | None
    tags: list[Any]
    attributes: dict[str, Any]


@dataclass(slots=True)
class TicketRow:
    """A ticket read (or about to be written) as plain columns, changed in place and written back
    with one statement per batch by core.ingest. It has every field of a ticket's state, so each
    transition of core.transitions applies to it as to the ORM Ticket."""

    id: int
    tenant_id: int
    customer_id: int
    identity_id: int | None
    channel: str
    subject: str | None
    status: str
    priority: str
    priority_rank: int
    tags: list[Any]
    required_skills: dict[str, Any]
    routing_state: str
    routing_rule: str | None
    group_id: int | None
    assignee_id: int | None
    created_at: datetime
    updated_at: datetime
    last_message_at: datetime | None
    assigned_at: datetime | None
    first_response_at: datetime | None
    solved_at: datetime | None
    reopen_count: int
    # Never set by what ingest does (a new ticket; a customer's message on one: core.transitions.
    # new_ticket, customer_wrote), so ingest neither reads nor writes them (TICKET_ROW_FIELDS): three
    # timestamp columns less to convert on every ticket of the hot path.
    queued_at: datetime | None = None
    overflow_at: datetime | None = None
    closed_at: datetime | None = None


@dataclass(slots=True)
class MessageRow:
    """A message just written by a Core INSERT (core.ingest), for :func:`message_dict`."""

    id: int
    ticket_id: int
    channel: str
    direction: str
    body: str
    attachments: list[Any]
    created_at: datetime
    author_agent_id: int | None = None
    delivery_state: str | None = None


@dataclass(slots=True)
class AgentRow:
    """An agent's id and name, read as plain columns (what :func:`message_dict` shows of an author)."""

    id: int
    name: str


# The columns ingest reads and writes: every field but those a customer's message never sets.
TICKET_ROW_FIELDS = tuple(f.name for f in fields(TicketRow) if f.name not in ("queued_at", "overflow_at", "closed_at"))
CUSTOMER_ROW_FIELDS = tuple(f.name for f in fields(CustomerRow))


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def customer_dict(customer: Customer | CustomerRow | None) -> dict[str, Any] | None:
    if customer is None:
        return None
    return {"id": customer.id, "name": customer.name, "email": customer.email}


def ticket_dict(ticket: Ticket | TicketRow, customer: Customer | CustomerRow | None = None) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "channel": ticket.channel,
        "tags": list(ticket.tags or []),
        "group_id": ticket.group_id,
        "assignee_id": ticket.assignee_id,
        "customer_id": ticket.customer_id,
        "customer": customer_dict(customer),
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
        "last_message_at": iso(ticket.last_message_at),
        "assigned_at": iso(ticket.assigned_at),
        "first_response_at": iso(ticket.first_response_at),
        "solved_at": iso(ticket.solved_at),
        "reopen_count": ticket.reopen_count,
    }


def message_dict(
    message: Message | MessageRow, *, agent: Agent | AgentRow | None = None,
    customer: Customer | CustomerRow | None = None,
) -> dict[str, Any]:
    author: dict[str, Any] | None
    if message.direction == "inbound":
        author = {"type": "customer", "id": customer.id if customer else None,
                  "name": customer.name if customer else None}
    elif message.author_agent_id is not None:
        author = {"type": "agent", "id": message.author_agent_id, "name": agent.name if agent else None}
    else:
        author = None
    return {
        "id": message.id,
        "ticket_id": message.ticket_id,
        "direction": message.direction,
        "text": message.body,
        "attachments": list(message.attachments or []),
        "author": author,
        "channel": message.channel,
        "delivery_state": message.delivery_state,
        "created_at": iso(message.created_at),
    }


def public_message(message: dict[str, Any]) -> dict[str, Any]:
    """What a customer may see of a message: no internal ids of agents, no delivery internals."""
    author = message.get("author")
    return {
        "id": message["id"],
        "direction": message["direction"],
        "text": message["text"],
        "attachments": message["attachments"],
        "created_at": message["created_at"],
        "author": {"name": author.get("name")} if author and author.get("type") == "agent" else None,
    }


def event_dict(event: Event) -> dict[str, Any]:
    return event_view(event.id, {"kind": event.kind, "ticket_id": event.ticket_id, "assignee_id": event.assignee_id,
                                 "previous_assignee_id": event.previous_assignee_id,
                                 "created_at": event.created_at, "payload": event.payload})


def event_view(event_id: int, row: dict[str, Any]) -> dict[str, Any]:
    """An event as clients get it, live from the bus or replayed from the table: the same shape."""
    return {
        "id": event_id,
        "kind": row["kind"],
        "ticket_id": row["ticket_id"],
        "assignee_id": row["assignee_id"],
        "previous_assignee_id": row["previous_assignee_id"],
        "created_at": iso(row["created_at"]),
        **row["payload"],
    }


def agent_dict(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.id,
        "name": agent.name,
        "email": agent.email,
        "role": agent.role,
        "status": agent.status,
        "capacity": agent.capacity,
        "load": agent.load,
        "channel_capacity": dict(agent.channel_capacity or {}),
        "skills": dict(agent.skills or {}),
        "active": agent.active,
    }


def ledger_dict(entry: LedgerEntry) -> dict[str, Any]:
    """A billing ledger entry: signed integer minor units, the balance after it."""
    return {
        "id": entry.id, "kind": entry.kind, "amount": entry.amount, "currency": entry.currency,
        "seats": entry.seats, "days": entry.days, "balance_after": entry.balance_after,
        "actor_type": entry.actor_type, "actor_id": entry.actor_id, "detail": dict(entry.detail or {}),
        "created_at": entry.created_at.isoformat(),
    }
