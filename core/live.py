"""Live signals: what agents and customers are doing right now (typing), carried on the bus and
never stored. Channel-neutral: a channel publishes its customers' typing with
:func:`customer_typing` and listens on :func:`live_topic` for agents' typing on its tickets; the agent
gateway sends agents' ``typing`` frames here and pushes ``typing`` frames to the agents who see the
ticket (docs/agent-protocol.md, "Typing").

A lost signal costs nothing (the next one, or the message itself, follows), so there is no catch-up
and no event id: a reconnecting client simply starts from "nobody is typing".
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from core.errors import NotFound
from core.models import ACTIVE_STATUSES, CustomerIdentity, Ticket

if TYPE_CHECKING:
    from core.auth import Principal
    from core.hub import Hub

logger = logging.getLogger(__name__)

# composing: typing now; paused: stopped (or sent, or left).
STATES = ("composing", "paused")
# Agents on a ticket's page: viewing (sent again every VIEWING_EVERY seconds while they stay) or left.
VIEWING_STATES = ("viewing", "left")
VIEWING_EVERY = 20


def live_topic(tenant_id: int) -> str:
    return f"live:{tenant_id}"


def _signal(ticket: Ticket, state: str, by: dict[str, Any], external_id: str | None, *,
            kind: str = "typing") -> dict[str, Any]:
    return {"kind": kind, "ticket_id": ticket.id, "channel": ticket.channel, "assignee_id": ticket.assignee_id,
            "group_id": ticket.group_id, "state": state, "by": by, "external_id": external_id}


async def customer_typing(hub: Hub, tenant_id: int, channel: str, external_id: str, state: str) -> bool:
    """A customer typing (``composing``) or not (``paused``) on their open ticket of the channel;
    nothing happens (False) when they have none open."""
    async with hub.db.read(tenant_id) as session:
        ticket = (await session.execute(
            select(Ticket).join(CustomerIdentity, CustomerIdentity.id == Ticket.identity_id)
            .where(CustomerIdentity.channel == channel, CustomerIdentity.external_id == external_id,
                   Ticket.status.in_(ACTIVE_STATUSES))
            .order_by(Ticket.id.desc()).limit(1))).scalar_one_or_none()
    if ticket is None:
        return False
    await hub.bus.publish(live_topic(tenant_id), _signal(ticket, state, {"type": "customer"}, external_id))
    return True


async def agent_typing(hub: Hub, principal: Principal, ticket_id: int, state: str, *, kind: str = "typing") -> None:
    """An agent typing on a ticket they may see: the other agents who see it hear of it, and so does
    the ticket's channel, which tells the customer if it can. ``kind="viewing"``: the agent has the
    ticket open (or ``left`` it), so two agents do not answer at once; channels ignore it."""
    from core.tickets import can_see, was_mentioned

    async with hub.db.read(principal.tenant_id) as session:
        row = (await session.execute(
            select(Ticket, CustomerIdentity.external_id)
            .outerjoin(CustomerIdentity, CustomerIdentity.id == Ticket.identity_id)
            .where(Ticket.id == ticket_id))).one_or_none()
        # Those who may open it: who may see it, and a colleague mentioned on it (core.mentions).
        if row is None or not (await can_see(session, principal, row[0])
                               or await was_mentioned(session, principal, ticket_id)):
            raise NotFound(f"no ticket {ticket_id}", code="ticket_not_found")
    ticket, external_id = row
    by = {"type": "agent", "id": principal.agent_id, "name": principal.name}
    await hub.bus.publish(live_topic(principal.tenant_id), _signal(ticket, state, by, external_id, kind=kind))
