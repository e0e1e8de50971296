"""The customer panel's history, customer merges (with undo), ticket merges and splits (#13).

**Customers.** Merging ``other`` into ``customer`` moves the other's identities (every channel) and
tickets to the customer kept, fills the kept customer's blanks from the other's fields (name,
e-mail; tags and attributes are joined, the kept customer's values win), and marks the other as
merged (``customers.merged_into_id``): it is kept, not deleted, so the merge can be undone with the
same ids. A :class:`core.models.CustomerMerge` row keeps what moved and both customers' fields.
Identity keys (tenant, channel, external id) do not name the customer, so moving identities never
collides with another identity; a customer may hold several identities on one channel.

Undoing puts back exactly what moved (and the tickets opened since on the identities that go back,
which follow their identity), and restores the kept customer's fields that the merge changed and
nobody changed since. It is refused (409 ``undo_conflict``) when that can no longer be done
faithfully: the kept customer was itself merged into another since (undo that first), a moved
identity or ticket no longer belongs to the kept customer, a moved ticket was merged into another
ticket since, or another ticket was merged into a moved one.

**Tickets.** Merging ticket ``other`` into ``ticket`` (the same customer's: merge the customers
first) moves all its messages (ids, so their order in time, and outbox rows are kept: nothing is
sent twice or lost), its mentions and its e-mail participants, then closes the other through
core.transitions (its agent's slot is freed) and points it at the ticket it went into. Replies
still being delivered on another identity refuse the merge (409 ``delivery_pending``): a delivery
reads the ticket's identity when it runs. Splitting moves one message (or it and every later one)
into a new ticket of the same customer, identity and channel, routed like any new ticket.

Locks are taken as ingest takes them: identities, then customers, then tickets (in id order), then
agents; every check that decides is made on the locked rows, so two merges racing serialise and
the second sees what the first did.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import transitions
from core.audit import audit
from core.auth import Principal
from core.capacity import lock_agents, move_load
from core.customers import MAX_ATTRIBUTES, get_customer
from core.errors import Conflict, InvalidInput, NotFound
from core.events import EventKind, EventLog
from core.models import (
    PRIORITY_RANK,
    AgentGroup,
    Customer,
    CustomerIdentity,
    CustomerMerge,
    DeliveryState,
    Direction,
    Mention,
    Message,
    Priority,
    SearchDoc,
    Ticket,
    TicketParticipant,
    TicketStatus,
    table_of,
    utcnow,
)
from core.serialize import iso, message_dict, ticket_dict
from core.textsearch import MESSAGE, Docs
from core.tickets import MAX_TAGS, can_see, sees

if TYPE_CHECKING:
    from core.hub import Hub

logger = logging.getLogger(__name__)

_FIELDS = ("name", "email", "tags", "attributes")


@dataclass
class _After:
    events: list[dict[str, Any]] = field(default_factory=list)
    route: bool = False


async def _finish(hub: Hub, tenant_id: int, after: _After) -> None:
    await hub.publish(tenant_id, after.events)
    if after.route:
        hub.router.signal(tenant_id)


def _missing_customer(customer_id: int) -> NotFound:
    return NotFound(f"customer {customer_id} not found", code="customer_not_found")


def _missing_ticket(ticket_id: int) -> NotFound:
    return NotFound(f"ticket {ticket_id} not found", code="ticket_not_found")


def _fields(c: Customer) -> dict[str, Any]:
    return {"name": c.name, "email": c.email, "tags": list(c.tags or []), "attributes": dict(c.attributes or {})}


# --- the customer's tickets -------------------------------------------------------------------------
async def customer_tickets(hub: Hub, principal: Principal, customer_id: int, *, before_id: int | None = None,
                           limit: int = 50) -> dict[str, Any]:
    """Every ticket of the customer, on every channel, newest first (``before_id`` pages on).

    Everyone signed in sees the whole list (a help desk shows an agent the customer's history):
    each entry is the ticket's summary, with ``can_open`` saying whether the caller may open it
    (GET /api/v1/tickets/{id}: supervisors and admins always; agents their own, the waiting ones
    of their groups, and those they were mentioned on). A merged customer's id lists nothing and
    says where it went."""
    async with hub.db.read(principal.tenant_id) as session:
        customer = (await session.execute(select(Customer).where(Customer.id == customer_id))).scalar_one_or_none()
        if customer is None:
            raise _missing_customer(customer_id)
        stmt = select(Ticket).where(Ticket.customer_id == customer_id).order_by(Ticket.id.desc()).limit(limit + 1)
        if before_id is not None:
            stmt = stmt.where(Ticket.id < before_id)
        rows = list((await session.execute(stmt)).scalars())
        more = len(rows) > limit
        rows = rows[:limit]
        groups: set[int] = set()
        mentioned: set[int] = set()
        if not principal.sees_all and rows:
            groups = set((await session.execute(
                select(AgentGroup.group_id).where(AgentGroup.agent_id == principal.agent_id))).scalars())
            mentioned = set((await session.execute(
                select(Mention.ticket_id).where(Mention.agent_id == principal.agent_id,
                                                Mention.ticket_id.in_([t.id for t in rows])))).scalars())
    tickets = [{**ticket_dict(t, customer), "merged_into_id": t.merged_into_id,
                "can_open": sees(principal, t, groups) or t.id in mentioned} for t in rows]
    return {"customer_id": customer_id, "merged_into_id": customer.merged_into_id, "tickets": tickets,
            "next_before_id": rows[-1].id if more and rows else None}


# --- customer merges ----------------------------------------------------------------------------------
async def _lock_customers(session: AsyncSession, ids: Sequence[int]) -> tuple[dict[int, Customer], set[int]]:
    """Their identities, then the customers themselves, locked in id order (ingest's order: it
    locks a sender's identity before it touches the customer). Returns the customers and the
    identities locked."""
    locked = set((await session.execute(
        select(CustomerIdentity.id).where(CustomerIdentity.customer_id.in_(sorted(ids)))
        .order_by(CustomerIdentity.id).with_for_update())).scalars())
    rows = (await session.execute(select(Customer).where(Customer.id.in_(sorted(ids))).order_by(Customer.id)
                                  .with_for_update().execution_options(populate_existing=True))).scalars()
    return {c.id: c for c in rows}, locked


def _changed_meanwhile() -> Conflict:
    # Another merge moved identities to one of these customers between our two locks: taking theirs
    # now could deadlock with a third merge waiting on them, so this one gives way.
    return Conflict("the customers changed while this merge was being made; try again", code="customer_changed")


async def _lock_tickets(session: AsyncSession, where: Any) -> list[Ticket]:
    return list((await session.execute(select(Ticket).where(where).order_by(Ticket.id).with_for_update()
                                       .execution_options(populate_existing=True))).scalars())


def merge_view(m: CustomerMerge) -> dict[str, Any]:
    return {"id": m.id, "customer_id": m.customer_id, "other_id": m.other_id, "identity_ids": list(m.identity_ids),
            "ticket_ids": list(m.ticket_ids), "other": dict(m.other_fields),
            "before": dict((m.before or {}).get("before", {})), "merged_by": m.merged_by,
            "created_at": iso(m.created_at), "undone_at": iso(m.undone_at), "undone_by": m.undone_by}


def _customer_event(log: EventLog, tenant_id: int, kind: str, payload: dict[str, Any]) -> None:
    log.add(kind, tenant_id=tenant_id, payload=payload)


def _moved_ticket_events(log: EventLog, tenant_id: int, tickets: Sequence[Ticket], customer: Customer,
                         from_id: int, by: int) -> None:
    for t in tickets:
        log.add(EventKind.TICKET_UPDATED, tenant_id=tenant_id, ticket=t,
                payload={"ticket": ticket_dict(t, customer), "by": by,
                         "changes": {"customer_id": {"from": from_id, "to": customer.id}}})


async def merge_customers(hub: Hub, principal: Principal, customer_id: int, other_id: int,
                          ip: str | None = None) -> dict[str, Any]:
    """Merge ``other_id`` into ``customer_id`` (see the module's docstring). Returns the merge
    record and the kept customer as GET /api/v1/customers/{id} shows it."""
    if customer_id == other_id:
        raise InvalidInput("a customer cannot be merged into itself", code="same_customer")
    tid = principal.tenant_id
    log_events: list[dict[str, Any]]
    async with hub.db.session(tid) as session:
        locked, locked_identities = await _lock_customers(session, [customer_id, other_id])
        for cid in (customer_id, other_id):
            if cid not in locked:
                raise _missing_customer(cid)
        kept, other = locked[customer_id], locked[other_id]
        for c in (kept, other):
            if c.merged_into_id is not None:
                raise Conflict(f"customer {c.id} was merged into customer {c.merged_into_id}",
                               code="customer_merged")
        identities = list((await session.execute(
            select(CustomerIdentity.id).where(CustomerIdentity.customer_id == other_id)
            .order_by(CustomerIdentity.id))).scalars())
        if not set(identities) <= locked_identities:
            raise _changed_meanwhile()
        tickets = await _lock_tickets(session, Ticket.customer_id == other_id)
        now = utcnow()
        before, other_fields = _fields(kept), _fields(other)
        if identities:
            await session.execute(update(CustomerIdentity).where(CustomerIdentity.id.in_(identities))
                                  .values(customer_id=customer_id).execution_options(synchronize_session=False))
        for t in tickets:
            t.customer_id = customer_id
        kept.name = kept.name or other.name
        kept.email = kept.email or other.email
        kept.tags = list(dict.fromkeys([*(kept.tags or []), *(other.tags or [])]))[:MAX_TAGS]
        joined = {**(other.attributes or {}), **(kept.attributes or {})}
        kept.attributes = dict(list(joined.items())[:MAX_ATTRIBUTES])
        other.merged_into_id = customer_id
        record = CustomerMerge(tenant_id=tid, customer_id=customer_id, other_id=other_id, identity_ids=identities,
                               ticket_ids=[t.id for t in tickets],
                               before={"before": before, "after": _fields(kept)}, other_fields=other_fields,
                               merged_by=principal.agent_id, created_at=now)
        session.add(record)
        await session.flush()
        # The moved tickets' customer documents (search) now name the kept customer.
        docs = await Docs.of(session, tid)
        await docs.customers_changed(session, {kept.id: (kept.name, kept.email)})
        await docs.write(session)
        audit(session, tenant_id=tid, actor_type="agent", actor_id=principal.agent_id, action="customer.merge",
              target_type="customer", target_id=customer_id,
              details={"merge_id": record.id, "other_id": other_id, "identity_ids": identities,
                       "ticket_ids": [t.id for t in tickets]}, ip=ip)
        log = EventLog(session)
        view = merge_view(record)
        _customer_event(log, tid, EventKind.CUSTOMER_MERGED, {"merge": view, "customer_id": customer_id,
                                                              "other_id": other_id, "by": principal.agent_id})
        _moved_ticket_events(log, tid, tickets, kept, other_id, principal.agent_id)
        await session.flush()
        log_events = await log.flush()
        customer = await get_customer(session, customer_id)
    await hub.publish(tid, log_events)
    return {"merge": view, "customer": customer}


async def undo_customer_merge(hub: Hub, principal: Principal, merge_id: int, ip: str | None = None) -> dict[str, Any]:
    """Put back what a customer merge moved (see the module's docstring)."""
    tid = principal.tenant_id
    async with hub.db.session(tid) as session:
        record = (await session.execute(select(CustomerMerge).where(CustomerMerge.id == merge_id)
                                        .with_for_update())).scalar_one_or_none()
        if record is None:
            raise NotFound(f"merge {merge_id} not found", code="merge_not_found")
        if record.undone_at is not None:
            raise Conflict(f"merge {merge_id} was already undone", code="already_undone")
        kept_id, other_id = record.customer_id, record.other_id
        locked, locked_identities = await _lock_customers(session, [kept_id, other_id])
        kept, other = locked.get(kept_id), locked.get(other_id)

        def conflict(why: str) -> Conflict:
            return Conflict(f"merge {merge_id} cannot be undone: {why}", code="undo_conflict")

        if kept is None or other is None or other.merged_into_id != kept_id:
            raise conflict("the customers have changed since")
        if kept.merged_into_id is not None:
            raise conflict(f"customer {kept_id} was merged into customer {kept.merged_into_id} since; undo that first")
        identity_ids = [int(i) for i in record.identity_ids]
        ticket_ids = [int(i) for i in record.ticket_ids]
        owners = dict((await session.execute(
            select(CustomerIdentity.id, CustomerIdentity.customer_id)
            .where(CustomerIdentity.id.in_(identity_ids)))).all()) if identity_ids else {}
        if any(owners.get(i) != kept_id for i in identity_ids):
            raise conflict("one of the identities it moved belongs to another customer now")
        if not set(identity_ids) <= locked_identities:
            raise _changed_meanwhile()
        # The moved tickets, and those opened since on the identities that go back (they follow them).
        following = Ticket.identity_id.in_(identity_ids) & (Ticket.customer_id == kept_id) & (
            Ticket.created_at >= record.created_at) if identity_ids else Ticket.id.in_([])
        tickets = await _lock_tickets(session, Ticket.id.in_(ticket_ids) | following)
        found = {t.id for t in tickets}
        if set(ticket_ids) - found or any(t.customer_id != kept_id for t in tickets):
            raise conflict("one of the tickets it moved belongs to another customer now")
        if any(t.merged_into_id is not None and t.merged_into_id not in found for t in tickets):
            raise conflict("one of the tickets it moved was merged into another ticket since")
        merged_in = (await session.execute(select(Ticket.id).where(
            Ticket.merged_into_id.in_(found), Ticket.id.not_in(found)))).first() if found else None
        if merged_in is not None:
            raise conflict(f"ticket {merged_in[0]} was merged into one of the tickets it moved since")
        if identity_ids:
            await session.execute(update(CustomerIdentity).where(CustomerIdentity.id.in_(identity_ids))
                                  .values(customer_id=other_id).execution_options(synchronize_session=False))
        for t in tickets:
            t.customer_id = other_id
        # The kept customer's fields the merge changed go back, unless someone changed them since.
        before, after = (record.before or {}).get("before", {}), (record.before or {}).get("after", {})
        now_fields = _fields(kept)
        for name in _FIELDS:
            if name in before and now_fields.get(name) == after.get(name):
                setattr(kept, name, before[name])
        other.merged_into_id = None
        record.undone_at = utcnow()
        record.undone_by = principal.agent_id
        await session.flush()
        docs = await Docs.of(session, tid)
        await docs.customers_changed(session, {kept.id: (kept.name, kept.email), other.id: (other.name, other.email)})
        await docs.write(session)
        audit(session, tenant_id=tid, actor_type="agent", actor_id=principal.agent_id, action="customer.merge_undo",
              target_type="customer", target_id=kept_id,
              details={"merge_id": merge_id, "other_id": other_id, "identity_ids": identity_ids,
                       "ticket_ids": sorted(found)}, ip=ip)
        log = EventLog(session)
        view = merge_view(record)
        _customer_event(log, tid, EventKind.CUSTOMER_UNMERGED, {"merge": view, "customer_id": kept_id,
                                                                "other_id": other_id, "by": principal.agent_id})
        _moved_ticket_events(log, tid, tickets, other, kept_id, principal.agent_id)
        await session.flush()
        events = await log.flush()
        result = {"merge": view, "customer": await get_customer(session, kept_id),
                  "other": await get_customer(session, other_id), "ticket_ids": sorted(found)}
    await hub.publish(tid, events)
    return result


async def list_merges(hub: Hub, principal: Principal, customer_id: int) -> list[dict[str, Any]]:
    """The merges into a customer (and of it into another), newest first."""
    async with hub.db.read(principal.tenant_id) as session:
        exists = (await session.execute(select(Customer.id).where(Customer.id == customer_id))).first()
        if exists is None:
            raise _missing_customer(customer_id)
        rows = (await session.execute(
            select(CustomerMerge)
            .where((CustomerMerge.customer_id == customer_id) | (CustomerMerge.other_id == customer_id))
            .order_by(CustomerMerge.id.desc()).limit(100))).scalars()
        return [merge_view(m) for m in rows]


# --- ticket merges and splits ---------------------------------------------------------------------------
async def _note(session: AsyncSession, principal: Principal, ticket: Ticket, text: str, now: datetime) -> Message:
    note = Message(tenant_id=ticket.tenant_id, ticket_id=ticket.id, channel=ticket.channel, direction=Direction.NOTE,
                   author_agent_id=principal.agent_id, body=text, attachments=[], created_at=now)
    session.add(note)
    return note


async def _copy_participants(session: AsyncSession, tenant_id: int, source: int, target: int) -> None:
    rows = (await session.execute(select(TicketParticipant.channel, TicketParticipant.external_id)
                                  .where(TicketParticipant.ticket_id == source))).all()
    if not rows:
        return
    have = set((await session.execute(select(TicketParticipant.channel, TicketParticipant.external_id)
                                       .where(TicketParticipant.ticket_id == target))).all())
    new = [{"tenant_id": tenant_id, "ticket_id": target, "channel": c, "external_id": e, "created_at": utcnow()}
           for c, e in rows if (c, e) not in have]
    if new:
        await session.execute(insert(table_of(TicketParticipant)), new)


async def _locked_pair(session: AsyncSession, principal: Principal, ids: Sequence[int]
                       ) -> tuple[dict[int, Ticket], dict[int, Customer]]:
    rows = (await session.execute(
        select(Ticket, Customer).join(Customer, Customer.id == Ticket.customer_id).where(Ticket.id.in_(sorted(ids)))
        .order_by(Ticket.id).with_for_update(of=Ticket).execution_options(populate_existing=True))).all()
    tickets = {t.id: t for t, _ in rows}
    customers = {c.id: c for _, c in rows}
    for ticket_id in ids:  # in the order asked: the first missing one is named
        ticket = tickets.get(ticket_id)
        if ticket is None or not await can_see(session, principal, ticket):
            raise _missing_ticket(ticket_id)
    return tickets, customers


def _message_events(log: EventLog, tenant_id: int, ticket: Ticket, customer: Customer, notes: Sequence[Message],
                    principal: Principal) -> None:
    from core.serialize import AgentRow

    tdict = ticket_dict(ticket, customer)
    for note in notes:
        log.add(EventKind.MESSAGE_CREATED, tenant_id=tenant_id, ticket=ticket,
                payload={"ticket": tdict, "message": message_dict(
                    note, agent=AgentRow(principal.agent_id, principal.name), customer=customer)})


async def merge_tickets(hub: Hub, principal: Principal, ticket_id: int, other_id: int,
                        ip: str | None = None) -> dict[str, Any]:
    """Merge ticket ``other_id`` into ``ticket_id`` (see the module's docstring)."""
    if ticket_id == other_id:
        raise InvalidInput("a ticket cannot be merged into itself", code="same_ticket")
    tid = principal.tenant_id
    after = _After()
    async with hub.db.session(tid) as session:
        tickets, customers = await _locked_pair(session, principal, [ticket_id, other_id])
        ticket, other = tickets[ticket_id], tickets[other_id]
        for t in (other, ticket):
            if t.merged_into_id is not None:
                raise Conflict(f"ticket {t.id} was merged into ticket {t.merged_into_id}", code="ticket_merged")
            if t.status == TicketStatus.CLOSED:
                raise Conflict(f"ticket {t.id} is closed; closed tickets are not merged", code="ticket_closed")
        if ticket.customer_id != other.customer_id:
            raise Conflict("the tickets are of different customers: merge the customers first",
                           code="different_customers")
        if ticket.identity_id != other.identity_id:
            undelivered = (await session.execute(select(Message.id).where(
                Message.ticket_id == other_id, Message.direction == Direction.OUTBOUND,
                Message.delivery_state.in_((DeliveryState.PENDING, DeliveryState.SENDING))).limit(1))).first()
            if undelivered is not None:
                raise Conflict(f"a reply of ticket {other_id} is still being delivered; try again once it is "
                               "sent or failed", code="delivery_pending")
        customer = customers[ticket.customer_id]
        now = utcnow()
        moved = list((await session.execute(select(Message.id).where(Message.ticket_id == other_id)
                                             .order_by(Message.id))).scalars())
        old_status = other.status
        change = transitions.set_status(other, TicketStatus.CLOSED, now)
        if change.release is not None:
            await lock_agents(session, [change.release])
        granted = await move_load(session, change, other.channel)
        change.apply(other, granted=granted)
        after.route = change.release is not None
        await session.execute(update(Message).where(Message.ticket_id == other_id).values(ticket_id=ticket_id)
                              .execution_options(synchronize_session=False))
        # The messages' search documents move with them (the other ticket keeps its subject's).
        await session.execute(update(SearchDoc).where(SearchDoc.ticket_id == other_id, SearchDoc.kind == MESSAGE)
                              .values(ticket_id=ticket_id).execution_options(synchronize_session=False))
        await session.execute(update(Mention).where(Mention.ticket_id == other_id).values(ticket_id=ticket_id)
                              .execution_options(synchronize_session=False))
        await _copy_participants(session, tid, other_id, ticket_id)
        other.merged_into_id = ticket_id
        other.updated_at = now
        last = [x for x in (ticket.last_message_at, other.last_message_at) if x is not None]
        ticket.last_message_at = max(last) if last else None
        tags = list(dict.fromkeys([*(ticket.tags or []), *(other.tags or [])]))[:MAX_TAGS]
        tag_change = tags != list(ticket.tags or [])
        ticket.tags = tags
        ticket.updated_at = now
        notes = [await _note(session, principal, ticket, f"Ticket #{other_id} was merged into this ticket "
                             f"({len(moved)} messages).", now),
                 await _note(session, principal, other, f"Merged into ticket #{ticket_id}.", now)]
        await session.flush()
        audit(session, tenant_id=tid, actor_type="agent", actor_id=principal.agent_id, action="ticket.merge",
              target_type="ticket", target_id=ticket_id, details={"other_id": other_id, "message_ids": moved}, ip=ip)
        log = EventLog(session)
        log.add(EventKind.TICKET_UPDATED, tenant_id=tid, ticket=other,
                payload={"ticket": {**ticket_dict(other, customer), "merged_into_id": ticket_id},
                         "by": principal.agent_id,
                         "changes": {"status": {"from": old_status, "to": TicketStatus.CLOSED.value},
                                     "merged_into_id": {"from": None, "to": ticket_id}}})
        changes: dict[str, Any] = {"merged_from": {"ticket_id": other_id, "message_ids": moved}}
        if tag_change:
            changes["tags"] = {"to": tags}
        log.add(EventKind.TICKET_UPDATED, tenant_id=tid, ticket=ticket,
                payload={"ticket": ticket_dict(ticket, customer), "by": principal.agent_id, "changes": changes})
        _message_events(log, tid, ticket, customer, notes[:1], principal)
        _message_events(log, tid, other, customer, notes[1:], principal)
        await session.flush()
        after.events = await log.flush()
        result = {"ticket": ticket_dict(ticket, customer),
                  "other": {**ticket_dict(other, customer), "merged_into_id": ticket_id}, "moved_message_ids": moved}
    await _finish(hub, tid, after)
    return result


async def split_ticket(hub: Hub, principal: Principal, ticket_id: int, message_id: int, *, following: bool = False,
                       subject: str | None = None, ip: str | None = None) -> dict[str, Any]:
    """Move message ``message_id`` (and with ``following`` every later one) of ticket ``ticket_id``
    into a new ticket of the same customer, on the same identity and channel, routed as any new
    ticket is."""
    tid = principal.tenant_id
    after = _After(route=True)
    async with hub.db.session(tid) as session:
        tickets, customers = await _locked_pair(session, principal, [ticket_id])
        source = tickets[ticket_id]
        customer = customers[source.customer_id]
        message = (await session.execute(select(Message).where(Message.id == message_id,
                                                               Message.ticket_id == ticket_id))).scalar_one_or_none()
        if message is None:
            raise NotFound(f"message {message_id} not found on ticket {ticket_id}", code="message_not_found")
        if source.merged_into_id is not None:
            raise Conflict(f"ticket {ticket_id} was merged into ticket {source.merged_into_id}", code="ticket_merged")
        stmt = select(Message).where(Message.ticket_id == ticket_id)
        stmt = stmt.where(Message.id >= message_id) if following else stmt.where(Message.id == message_id)
        moving = list((await session.execute(stmt.order_by(Message.id))).scalars())
        total = (await session.execute(select(func.count(Message.id))
                                       .where(Message.ticket_id == ticket_id))).scalar_one()
        if len(moving) >= total:
            raise Conflict("that would move every message of the ticket; nothing would be left to split from",
                           code="nothing_left")
        now = utcnow()
        first_line = (message.body or "").strip().splitlines()[0][:500] if (message.body or "").strip() else None
        new = Ticket(tenant_id=tid, customer_id=source.customer_id, identity_id=source.identity_id,
                     channel=source.channel, subject=(subject or first_line or source.subject or "")[:500] or None,
                     priority=source.priority, priority_rank=PRIORITY_RANK[Priority(source.priority)], tags=[],
                     required_skills={}, routing_rule=None, group_id=None, created_at=now, updated_at=now,
                     last_message_at=max(m.created_at for m in moving),
                     first_response_at=min((m.created_at for m in moving if m.direction == Direction.OUTBOUND),
                                           default=None),
                     created_by_agent_id=principal.agent_id, **transitions.new_ticket())
        await hub.router.apply_rules(session, new, customer, message.body or "")
        session.add(new)
        await session.flush()
        moved = [m.id for m in moving]
        # Search: the new ticket's subject and customer, and the moved messages' documents follow them.
        external = (await session.execute(select(CustomerIdentity.external_id).where(
            CustomerIdentity.id == source.identity_id))).scalar_one_or_none() if source.identity_id else None
        docs = await Docs.of(session, tid)
        docs.ticket(new.id, new.subject, customer.name, customer.email, external)
        await docs.write(session)
        await session.execute(update(SearchDoc).where(SearchDoc.message_id.in_(moved), SearchDoc.kind == MESSAGE)
                              .values(ticket_id=new.id).execution_options(synchronize_session=False))
        await session.execute(update(Message).where(Message.id.in_(moved)).values(ticket_id=new.id)
                              .execution_options(synchronize_session=False))
        await session.execute(update(Mention).where(Mention.message_id.in_(moved)).values(ticket_id=new.id)
                              .execution_options(synchronize_session=False))
        await _copy_participants(session, tid, ticket_id, new.id)
        source.last_message_at = (await session.execute(
            select(func.max(Message.created_at)).where(Message.ticket_id == ticket_id,
                                                       Message.direction != Direction.NOTE))).scalar_one()
        source.updated_at = now
        notes = [await _note(session, principal, source, f"{len(moved)} message(s) split into ticket #{new.id}.", now),
                 await _note(session, principal, new, f"Split from ticket #{ticket_id}.", now)]
        await session.flush()
        audit(session, tenant_id=tid, actor_type="agent", actor_id=principal.agent_id, action="ticket.split",
              target_type="ticket", target_id=ticket_id, details={"new_ticket_id": new.id, "message_ids": moved}, ip=ip)
        log = EventLog(session)
        log.add(EventKind.TICKET_CREATED, tenant_id=tid, ticket=new,
                payload={"ticket": ticket_dict(new, customer), "split_from": {"ticket_id": ticket_id,
                                                                               "message_ids": moved}})
        log.add(EventKind.TICKET_UPDATED, tenant_id=tid, ticket=source,
                payload={"ticket": ticket_dict(source, customer), "by": principal.agent_id,
                         "changes": {"split": {"ticket_id": new.id, "message_ids": moved}}})
        _message_events(log, tid, source, customer, notes[:1], principal)
        _message_events(log, tid, new, customer, notes[1:], principal)
        await session.flush()
        after.events = await log.flush()
        result = {"ticket": ticket_dict(new, customer), "source": ticket_dict(source, customer),
                  "moved_message_ids": moved}
    await _finish(hub, tid, after)
    return result
