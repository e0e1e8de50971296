"""What a customer may read back of their own conversation on a channel (never internal notes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from core.attachments import for_customer
from core.models import Agent, CustomerIdentity, Direction, Message, Ticket
from core.serialize import message_dict, public_message

if TYPE_CHECKING:
    from core.hub import Hub

MAX_HISTORY = 200


async def customer_history(
    hub: Hub, tenant_id: int, channel: str, external_id: str, *, since: int = 0, limit: int = MAX_HISTORY
) -> list[dict[str, Any]]:
    """Customer-visible messages after ``since``, oldest first: with no ``since``, the latest
    ``limit`` (a conversation opened afresh); after one, the first ``limit`` (a client catching up
    pages on with the last id it got, and skips nothing however far behind it was)."""
    async with hub.db.read(tenant_id) as session:
        rows = (
            await session.execute(
                select(Message, Agent)
                .join(Ticket, Ticket.id == Message.ticket_id)
                .join(CustomerIdentity, CustomerIdentity.id == Ticket.identity_id)
                .outerjoin(Agent, Agent.id == Message.author_agent_id)
                .where(
                    CustomerIdentity.tenant_id == tenant_id,
                    CustomerIdentity.channel == channel,
                    CustomerIdentity.external_id == external_id,
                    Message.id > since,
                    Message.direction.in_((Direction.INBOUND, Direction.OUTBOUND)),
                )
                .order_by(Message.id.asc() if since else Message.id.desc())
                .limit(limit)
            )
        ).all()
    ordered = rows if since else list(reversed(rows))
    return [{**public_message(message_dict(m, agent=a)),
             "attachments": for_customer(hub.settings, tenant_id, m.attachments or [])} for m, a in ordered]
