"""``ingest``: the one way a message comes in, from every channel.

In one transaction it finds or creates the customer and their joinable ticket, stores the message,
routes a ticket that has no agent, and records the events; after commit the events are published.
It is idempotent on (tenant, channel, channel message id): a retried web-hook, a re-fetched e-mail
or a reconnecting client returns the message stored the first time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from connectors.base import InboundMessage
from core.capacity import take_slot
from core.errors import InvalidInput, TooLarge
from core.events import EventKind, EventLog
from core.models import (
    JOINABLE_STATUSES,
    Customer,
    CustomerIdentity,
    Direction,
    Message,
    Ticket,
    TicketStatus,
)
from core.serialize import message_dict, ticket_dict
from routing.router import RoutingState

if TYPE_CHECKING:
    from core.hub import Hub

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    message: dict[str, Any]
    ticket: dict[str, Any]
    duplicate: bool
    created_ticket: bool
    # The ticket waits for the router (new, or reopened without its agent).
    needs_routing: bool = False


def check_text(text: str, limit: int) -> str:
    if not isinstance(text, str):
        raise InvalidInput("text must be a string", code="invalid_text")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # an unpaired surrogate, whatever channel it came through
        raise InvalidInput("text is not valid Unicode", code="invalid_text") from None
    if size > limit:
        raise TooLarge(f"message text is larger than {limit} bytes", code="message_too_large")
    if "\x00" in text:  # PostgreSQL cannot store it; no channel means it
        raise InvalidInput("text contains a NUL character", code="invalid_text")
    return text


async def _existing(session: AsyncSession, msg: InboundMessage) -> IngestResult | None:
    row = (
        await session.execute(
            select(Message, Ticket, Customer)
            .join(Ticket, Ticket.id == Message.ticket_id)
            .join(Customer, Customer.id == Ticket.customer_id)
            .where(
                Message.tenant_id == msg.tenant_id,
                Message.channel == msg.channel,
                Message.direction == Direction.INBOUND,
                Message.channel_message_id == msg.channel_message_id,
            )
        )
    ).one_or_none()
    if row is None:
        return None
    message, ticket, customer = row
    return IngestResult(message_dict(message, customer=customer), ticket_dict(ticket, customer), True, False)


async def _identity(session: AsyncSession, msg: InboundMessage) -> tuple[CustomerIdentity, Customer]:
    row = (
        await session.execute(
            select(CustomerIdentity, Customer)
            .join(Customer, Customer.id == CustomerIdentity.customer_id)
            .where(
                CustomerIdentity.tenant_id == msg.tenant_id,
                CustomerIdentity.channel == msg.channel,
                CustomerIdentity.external_id == msg.external_id,
            )
            # One customer's messages are taken one at a time, so two first messages arriving at
            # once (a websocket and the HTTP fallback) cannot open two tickets.
            .with_for_update(of=CustomerIdentity)
        )
    ).one_or_none()
    if row is not None:
        identity, customer = row
        changed = False
        if msg.customer_name and customer.name != msg.customer_name:
            customer.name, changed = msg.customer_name, True
        if msg.customer_email and not customer.email:
            customer.email, changed = msg.customer_email, True
        if changed:
            await session.flush()
        return identity, customer
    customer = Customer(
        tenant_id=msg.tenant_id,
        name=msg.customer_name,
        email=msg.customer_email,
        attributes=dict(msg.customer_attributes),
    )
    session.add(customer)
    await session.flush()
    identity = CustomerIdentity(
        tenant_id=msg.tenant_id, customer_id=customer.id, channel=msg.channel, external_id=msg.external_id
    )
    session.add(identity)
    await session.flush()
    return identity, customer


def _subject(msg: InboundMessage) -> str:
    if msg.subject:
        return msg.subject[:500]
    first_line = msg.text.strip().splitlines()[0] if msg.text.strip() else "(no text)"
    return first_line[:80]


async def _ingest_once(hub: Hub, msg: InboundMessage) -> tuple[IngestResult, list[dict[str, Any]]]:
    async with hub.db.session(msg.tenant_id) as session:
        existing = await _existing(session, msg)
        if existing is not None:
            return existing, []
        identity, customer = await _identity(session, msg)
        ticket = (
            await session.execute(
                select(Ticket)
                .where(Ticket.identity_id == identity.id, Ticket.status.in_(JOINABLE_STATUSES))
                .order_by(Ticket.id.desc())
                .limit(1)
                .with_for_update()
            )
        ).scalar_one_or_none()
        log = EventLog(session)
        now = msg.received_at
        created = ticket is None
        if ticket is None:
            ticket = Ticket(
                tenant_id=msg.tenant_id,
                customer_id=customer.id,
                identity_id=identity.id,
                channel=msg.channel,
                subject=_subject(msg),
                status=TicketStatus.NEW,
                created_at=now,
                updated_at=now,
                last_message_at=now,
            )
            session.add(ticket)
            await hub.router.apply_rules(session, ticket, customer, msg.text)
        else:
            if ticket.status == TicketStatus.SOLVED:
                ticket.reopen_count += 1
                ticket.solved_at = None
                ticket.status = TicketStatus.OPEN
                # Back to the agent who solved it if they are online with room, else to routing.
                if ticket.assignee_id is not None and await take_slot(
                    session, ticket.assignee_id, ticket.channel, require_online=True
                ):
                    ticket.routing_state = RoutingState.ASSIGNED
                else:
                    ticket.assignee_id = None
                    ticket.routing_state = RoutingState.PENDING
            elif ticket.status == TicketStatus.PENDING:
                ticket.status = TicketStatus.OPEN
            ticket.last_message_at = now
            ticket.updated_at = now
        await session.flush()
        message = Message(
            tenant_id=msg.tenant_id,
            ticket_id=ticket.id,
            channel=msg.channel,
            direction=Direction.INBOUND,
            body=msg.text,
            attachments=[a.to_dict() for a in msg.attachments],
            channel_message_id=msg.channel_message_id,
            created_at=now,
        )
        session.add(message)
        await session.flush()
        tdict = ticket_dict(ticket, customer)
        mdict = message_dict(message, customer=customer)
        if created:
            log.add(EventKind.TICKET_CREATED, tenant_id=msg.tenant_id, ticket=ticket, payload={"ticket": tdict})
        log.add(EventKind.MESSAGE_CREATED, tenant_id=msg.tenant_id, ticket=ticket,
                payload={"ticket": tdict, "message": mdict})
        await session.flush()
        events = await log.flush()
        waiting = ticket.routing_state == RoutingState.PENDING
    return IngestResult(mdict, tdict, False, created, waiting), events


async def ingest(hub: Hub, msg: InboundMessage) -> IngestResult:
    check_text(msg.text, hub.settings.max_message_bytes)
    if not msg.external_id or not msg.channel_message_id:
        raise InvalidInput("a message needs the sender's identity and the channel's message id")
    for attempt in range(3):
        try:
            result, events = await _ingest_once(hub, msg)
        except IntegrityError:
            # Two deliveries of one message (or two first messages of one new customer) raced;
            # the loser's transaction rolled back, and the retry finds what the winner stored.
            if attempt == 2:
                raise
            logger.debug("ingest race on %s/%s; retrying", msg.channel, msg.channel_message_id)
            continue
        await hub.publish(msg.tenant_id, events)
        if result.needs_routing:
            hub.router.signal(msg.tenant_id, capacity=False)
        return result
    raise AssertionError("unreachable")
