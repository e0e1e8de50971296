"""The ticket flow: reply, note, create by hand, transfer, status / priority / tags, solve, reopen.

Each operation is one short transaction that writes the change and its events; the events are
published after commit, replies are handed to the outbox, and the router is told when a ticket
waits or capacity was freed. Locks are taken ticket first, then agents in id order (as the router
does), so concurrent operations cannot deadlock.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import ColumnElement, cast, func, select, true, tuple_
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core import csat, sla, transitions
from core.auth import Principal
from core.capacity import Pending, lock_agents, move_load
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.events import EventKind, EventLog
from core.ingest import check_text
from core.models import (
    ACTIVE_STATUSES,
    Agent,
    AgentGroup,
    AssignmentRecord,
    Customer,
    Direction,
    Group,
    Mention,
    Message,
    Priority,
    Ticket,
    TicketStatus,
    utcnow,
)
from core.serialize import TicketRow, iso, message_dict, ticket_dict
from core.transitions import RoutingState, Transition

if TYPE_CHECKING:
    from core.hub import Hub

logger = logging.getLogger(__name__)

T = TypeVar("T")
Replay = Callable[["First"], dict[str, Any]]

MAX_TAGS = 50
MAX_TAG_LENGTH = 64


@dataclass
class _Outcome:
    """What a committed operation leaves to do: publish, deliver, serve the queue."""

    events: list[dict[str, Any]] = field(default_factory=list)
    outbox_ids: list[int] = field(default_factory=list)
    # A ticket now waits for routing, or capacity was freed: the router should run.
    route: bool = False


async def _finish(hub: Hub, tenant_id: int, outcome: _Outcome) -> None:
    await hub.publish(tenant_id, outcome.events)
    if outcome.outbox_ids:
        await hub.enqueue_delivery(outcome.outbox_ids)
    if outcome.route:
        hub.router.signal(tenant_id)


def sees(principal: Principal, ticket: Ticket | TicketRow, groups: Collection[int]) -> bool:
    """Admins and supervisors see every ticket of their tenant; an agent sees tickets assigned to
    them, and waiting ones in their groups' (``groups``) queues or in the tenant-wide queue (no group)."""
    if principal.sees_all or ticket.assignee_id == principal.agent_id:
        return True
    if ticket.assignee_id is not None:
        return False
    return ticket.group_id is None or ticket.group_id in groups


async def can_see(session: AsyncSession, principal: Principal, ticket: Ticket) -> bool:
    """:func:`sees`, reading the agent's groups only when they decide it."""
    if principal.sees_all or ticket.assignee_id is not None or ticket.group_id is None:
        return sees(principal, ticket, ())
    return sees(principal, ticket, await agent_group_ids(session, principal.agent_id))


def record(session: AsyncSession, ticket: Ticket | TicketRow, outcome: str, *, agent_id: int | None,
           by: int | None = None, strategy: str | None = None, **detail: Any) -> None:
    """Keep why a ticket went where it went (read back by GET /api/v1/tickets/{id}/routing)."""
    session.add(AssignmentRecord(tenant_id=ticket.tenant_id, ticket_id=ticket.id, outcome=outcome, agent_id=agent_id,
                                 group_id=ticket.group_id, rule=ticket.routing_rule, strategy=strategy,
                                 candidates=[], detail={"by": by, **detail} if by else detail))


async def _make(session: AsyncSession, ticket: Ticket, change: Transition) -> None:
    """Make a transition: its capacity change, then its fields (core.transitions says why in that
    order); where its slot is refused, its ``if_refused`` fields."""
    change.apply(ticket, granted=await move_load(session, change, ticket.channel))


async def give(session: AsyncSession, ticket: Ticket | TicketRow, agent_id: int,
               pending: Pending | None = None) -> None:
    """Make ``agent_id`` the assignee, moving the load from the previous one; 409 when they have no
    room (``pending``: core.capacity.move_load)."""
    change = transitions.assign(ticket, agent_id, utcnow())
    if not await move_load(session, change, ticket.channel, pending=pending):
        raise Conflict(f"agent {agent_id} has no room for another ticket", code="agent_at_capacity")
    change.apply(ticket)


async def _ticket_for_change(session: AsyncSession, principal: Principal, ticket_id: int) -> tuple[Ticket, Customer]:
    # The session is scoped to the principal's tenant: another tenant's id finds nothing.
    row = (
        await session.execute(
            select(Ticket, Customer)
            .join(Customer, Customer.id == Ticket.customer_id)
            .where(Ticket.id == ticket_id)
            .with_for_update(of=Ticket)
        )
    ).one_or_none()
    if row is None or not await can_see(session, principal, row[0]):
        raise NotFound(f"ticket {ticket_id} not found", code="ticket_not_found")
    return row[0], row[1]



async def get_ticket(hub: Hub, principal: Principal, ticket_id: int, *, limit: int = 500) -> dict[str, Any]:
    async with hub.db.read(principal.tenant_id) as session:
        row = (
            await session.execute(
                select(Ticket, Customer).join(Customer, Customer.id == Ticket.customer_id).where(Ticket.id == ticket_id)
            )
        ).one_or_none()
        if row is None or not (await can_see(session, principal, row[0])
                               or await was_mentioned(session, principal, ticket_id)):
            raise NotFound(f"ticket {ticket_id} not found", code="ticket_not_found")
        ticket, customer = row
        messages = (
            await session.execute(
                select(Message, Agent)
                .outerjoin(Agent, Agent.id == Message.author_agent_id)
                .where(Message.ticket_id == ticket.id)
                .order_by(Message.id)
                .limit(limit)
            )
        ).all()
        due = await sla.deadlines(session, principal.tenant_id, [ticket.id])
        return {
            # merged_into_id: the ticket this one was merged into (core.merges), in its detail only;
            # sla: its open deadlines (core.sla), soonest first.
            "ticket": {**ticket_dict(ticket, customer), "merged_into_id": ticket.merged_into_id,
                       "sla": due.get(ticket.id, [])},
            "messages": [message_dict(m, agent=a, customer=customer) for m, a in messages],
            # Its satisfaction survey (core.csat), rated or not; null when none was sent.
            "csat": await csat.of_ticket(session, ticket.id),
        }


async def was_mentioned(session: AsyncSession, principal: Principal, ticket_id: int) -> bool:
    """Whether the agent was mentioned in a note of the ticket: a mention lets them open it
    (read it and add notes; core.mentions), whoever it is assigned to."""
    found = await session.execute(select(Mention.id).where(Mention.agent_id == principal.agent_id,
                                                           Mention.ticket_id == ticket_id).limit(1))
    return found.first() is not None


def visible(principal: Principal) -> ColumnElement[bool]:
    """:func:`sees` as SQL: every ticket for supervisors and up; an agent's own, and the waiting
    ones in their groups' queues or in the tenant-wide queue."""
    if principal.sees_all:
        return true()
    mine = select(AgentGroup.group_id).where(AgentGroup.agent_id == principal.agent_id)
    return (Ticket.assignee_id == principal.agent_id) | (
        Ticket.assignee_id.is_(None) & (Ticket.group_id.is_(None) | Ticket.group_id.in_(mine)))


# The views of the agent workspace, each within what the caller may see. Closed tickets are in
# none (list them with ?status=closed, or find them with search).
VIEWS = ("mine", "unassigned", "all", "pending", "solved")
UNSOLVED = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING)
_WAITING = (RoutingState.PENDING, RoutingState.QUEUED)


def view_clause(view: str, principal: Principal) -> ColumnElement[bool]:
    if view == "mine":  # assigned to me, not solved yet
        return (Ticket.assignee_id == principal.agent_id) & Ticket.status.in_(UNSOLVED)
    if view == "unassigned":  # waiting for routing or for an agent in a queue
        return Ticket.assignee_id.is_(None) & Ticket.status.in_(UNSOLVED) & Ticket.routing_state.in_(_WAITING)
    if view == "all":  # every unsolved ticket (supervisors and up)
        if not principal.sees_all:
            raise Forbidden("the view 'all' is for supervisors, admins and owners", code="supervisor_only")
        return Ticket.status.in_(UNSOLVED)
    if view == "pending":
        return Ticket.status == TicketStatus.PENDING
    if view == "solved":
        return Ticket.status == TicketStatus.SOLVED
    raise InvalidInput(f"unknown view {view!r}; one of {', '.join(VIEWS)}", code="invalid_query")


def has_tag(tag: str, *, postgres: bool) -> ColumnElement[bool]:
    """The ticket's tags (a JSON list) hold ``tag``."""
    if postgres:
        return cast(Ticket.tags, JSONB).contains([tag])
    each = func.json_each(Ticket.tags).table_valued("value")
    return select(each.c.value).where(each.c.value == tag).exists()


async def list_tickets(
    hub: Hub,
    principal: Principal,
    *,
    view: str | None = None,
    status: list[str] | None = None,
    assignee_id: int | None = None,
    unassigned: bool = False,
    channel: str | None = None,
    group_id: int | None = None,
    tag: str | None = None,
    priority: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Tickets the caller may see, newest first: a view (:data:`VIEWS`) or all of them, narrowed by
    any of the filters."""
    stmt = select(Ticket, Customer).join(Customer, Customer.id == Ticket.customer_id).where(visible(principal))
    if view is not None:
        stmt = stmt.where(view_clause(view, principal))
    if status:
        stmt = stmt.where(Ticket.status.in_(status))
    if unassigned:
        stmt = stmt.where(Ticket.assignee_id.is_(None))
    elif assignee_id is not None:
        stmt = stmt.where(Ticket.assignee_id == assignee_id)
    if channel is not None:
        stmt = stmt.where(Ticket.channel == channel)
    if group_id is not None:
        stmt = stmt.where(Ticket.group_id == group_id)
    if priority is not None:
        stmt = stmt.where(Ticket.priority == priority)
    if tag is not None:
        stmt = stmt.where(has_tag(tag, postgres=not hub.db.is_sqlite))
    if before_id is not None:
        stmt = stmt.where(Ticket.id < before_id)
    stmt = stmt.order_by(Ticket.id.desc()).limit(limit)
    async with hub.db.read(principal.tenant_id) as session:
        rows = (await session.execute(stmt)).all()
        # The page's open SLA deadlines (core.sla), in one more query.
        due = await sla.deadlines(session, principal.tenant_id, [t.id for t, _ in rows])
    return [{**ticket_dict(t, c), "sla": due.get(t.id, [])} for t, c in rows]


async def view_counts(hub: Hub, principal: Principal) -> dict[str, int]:
    """How many tickets each view holds for the caller, in one query (conditional aggregates over
    the tickets not closed, read from the index ix_tickets_views). ``all`` only for those who may
    use it. Clients read it again when ticket events arrive: nothing is counted per event."""
    counted = [view for view in VIEWS if view != "all" or principal.sees_all]
    stmt = (select(*(func.count().filter(view_clause(view, principal)) for view in counted))
            .select_from(Ticket)
            .where(Ticket.tenant_id == principal.tenant_id, Ticket.status.in_((*UNSOLVED, TicketStatus.SOLVED)),
                   visible(principal)))
    async with hub.db.read(principal.tenant_id) as session:
        row = (await session.execute(stmt)).one()
    return {view: int(n or 0) for view, n in zip(counted, row, strict=True)}


@dataclass(frozen=True)
class First:
    """What an agent's earlier action with the same client id wrote: its message and ticket."""

    message: dict[str, Any]  # its ticket_id and direction tell a retry from a reuse
    ticket: dict[str, Any]
    created_by_agent_id: int | None


async def firsts(session: AsyncSession, keys: Collection[tuple[int, str]]) -> dict[tuple[int, str], First]:
    """The messages agents already wrote with these (agent id, client id)s, in one query
    (idempotency of retries: a reply whose result was lost with its socket is sent again with the
    same client id)."""
    wanted = set(keys)
    if not wanted:
        return {}
    # By the unique key (tenant, agent, client id) first: usually nothing is found, and the
    # planner does not turn two separate IN lists into lookups of that key (on PostgreSQL that
    # scanned the agents' messages, 100 ms a batch under load).
    ids = list((await session.execute(
        select(Message.id).where(tuple_(Message.author_agent_id, Message.client_id).in_(sorted(wanted)))
    )).scalars())
    if not ids:
        return {}
    rows = await session.execute(
        select(Message, Ticket, Customer, Agent)
        .join(Ticket, Ticket.id == Message.ticket_id)
        .join(Customer, Customer.id == Ticket.customer_id)
        .outerjoin(Agent, Agent.id == Message.author_agent_id)
        .where(Message.id.in_(ids))
    )
    found: dict[tuple[int, str], First] = {}
    for message, ticket, customer, agent in rows:
        key = (message.author_agent_id or 0, message.client_id or "")
        if key in wanted:
            found[key] = First(message=message_dict(message, agent=agent, customer=customer),
                               ticket=ticket_dict(ticket, customer), created_by_agent_id=ticket.created_by_agent_id)
    return found


async def _first(hub: Hub, principal: Principal, client_id: str) -> First | None:
    key = (principal.agent_id, client_id)
    async with hub.db.read(principal.tenant_id) as session:
        return (await firsts(session, {key})).get(key)


def _reused(client_id: str) -> Conflict:
    return Conflict(f"client_id {client_id!r} was already used for another action; use a new one for each "
                    "message and the same one only to retry it", code="client_id_reused")


async def _idempotent(
    hub: Hub, principal: Principal, client_id: str | None, write: Callable[[], Awaitable[T]],
    replay: Callable[[First], T],
) -> T:
    """Run ``write`` once per (agent, client id): a retry gets ``replay`` of what the first wrote.
    The batched writer looks the batch's client ids up itself (core.ticket_writes); here is what
    is left, the two racing on different processes, where the unique key refuses the second."""
    try:
        return await write()
    except IntegrityError:
        if client_id is None:
            raise
        first = await _first(hub, principal, client_id)
        if first is None:
            raise
        return replay(first)


# --- what the batched writer (core.ticket_writes) is handed -------------------------------------------
@dataclass(frozen=True, slots=True)
class Reply:
    principal: Principal
    ticket_id: int
    text: str
    direction: str  # outbound (a reply) or note
    attachment_ids: tuple[int, ...]
    client_id: str | None
    replay: Replay


@dataclass(frozen=True, slots=True)
class Change:
    principal: Principal
    ticket_id: int
    status: str | None = None
    priority: str | None = None
    tags: list[str] | None = None
    add_tags: list[str] | None = None
    remove_tags: list[str] | None = None
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class NewTicket:
    principal: Principal
    text: str
    subject: str | None
    customer_id: int | None
    customer_name: str | None
    customer_email: str | None
    channel: str | None
    assignee_id: int | None
    group_id: int | None
    priority: str
    tags: list[str]
    client_id: str | None
    replay: Replay



async def add_message(hub: Hub, principal: Principal, ticket_id: int, text: str, *, note: bool,
                      attachment_ids: Sequence[int] = (), client_id: str | None = None) -> dict[str, Any]:
    """An agent's reply to the customer (delivered through the outbox) or an internal note, with
    files uploaded before (core.attachments); the text may be empty when there is a file. With a
    ``client_id``, a retry returns the message the first try stored and stores nothing."""
    text = check_text(text, hub.settings.max_message_bytes)
    if not text.strip() and not attachment_ids:
        raise InvalidInput("text must not be empty (it may be only when the message has attachments)",
                           code="empty_text")
    direction = Direction.NOTE if note else Direction.OUTBOUND

    def replay(first: First) -> dict[str, Any]:
        if first.message["ticket_id"] != ticket_id or first.message["direction"] != direction:
            raise _reused(str(client_id))
        return first.message

    async def write() -> dict[str, Any]:
        return await hub.ticket_writes.reply(Reply(principal, ticket_id, text, direction, tuple(attachment_ids),
                                                   client_id, replay))

    return await _idempotent(hub, principal, client_id, write, replay)


async def _check_agent(session: AsyncSession, agent_id: int) -> Agent:
    agent = (await session.execute(select(Agent).where(Agent.id == agent_id))).scalar_one_or_none()
    if agent is None or not agent.active:
        raise NotFound(f"agent {agent_id} not found", code="agent_not_found")
    return agent


async def _check_group(session: AsyncSession, group_id: int) -> Group:
    group = (await session.execute(select(Group).where(Group.id == group_id))).scalar_one_or_none()
    if group is None:
        raise NotFound(f"group {group_id} not found", code="group_not_found")
    return group


def clean_tags(tags: list[str]) -> list[str]:
    cleaned: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise InvalidInput("tags must be non-empty strings", code="invalid_tag")
        tag = tag.strip().lower()
        if len(tag) > MAX_TAG_LENGTH:
            raise InvalidInput(f"a tag is at most {MAX_TAG_LENGTH} characters", code="invalid_tag")
        if tag not in cleaned:
            cleaned.append(tag)
    if len(cleaned) > MAX_TAGS:
        raise InvalidInput(f"at most {MAX_TAGS} tags", code="too_many_tags")
    return cleaned


async def create_ticket(
    hub: Hub,
    principal: Principal,
    *,
    text: str,
    subject: str | None = None,
    customer_id: int | None = None,
    customer_name: str | None = None,
    customer_email: str | None = None,
    channel: str | None = None,
    assignee_id: int | None = None,
    group_id: int | None = None,
    priority: str = Priority.NORMAL,
    tags: list[str] | None = None,
    client_id: str | None = None,
) -> dict[str, Any]:
    """A ticket made by hand (a phone call, a walk-in). With ``channel`` the text goes out to the
    customer on it; without, the ticket is a "manual" one and the text is its first internal note.
    With a ``client_id`` (it keys that first message), a retry returns the ticket made first."""
    text = check_text(text, hub.settings.max_message_bytes)
    if not text.strip():
        raise InvalidInput("text must not be empty", code="empty_text")
    clean_tags_ = clean_tags(tags or [])

    def replay(first: First) -> dict[str, Any]:
        if first.created_by_agent_id != principal.agent_id:
            raise _reused(str(client_id))
        return first.ticket

    async def write() -> dict[str, Any]:
        return await hub.ticket_writes.create(NewTicket(
            principal, text=text, subject=subject, customer_id=customer_id, customer_name=customer_name,
            customer_email=customer_email, channel=channel, assignee_id=assignee_id, group_id=group_id,
            priority=priority, tags=clean_tags_, client_id=client_id, replay=replay))

    return await _idempotent(hub, principal, client_id, write, replay)


async def transfer(
    hub: Hub, principal: Principal, ticket_id: int, *, agent_id: int | None = None, group_id: int | None = None
) -> dict[str, Any]:
    """Hand a ticket to another agent, or to a group (where the router picks an agent or it waits)."""
    if (agent_id is None) == (group_id is None):
        raise InvalidInput("transfer to exactly one of agent_id or group_id", code="transfer_target")
    outcome = _Outcome()
    async with hub.db.session(principal.tenant_id) as session:
        ticket, customer = await _ticket_for_change(session, principal, ticket_id)
        if ticket.status == TicketStatus.CLOSED:
            raise Conflict("a closed ticket cannot be transferred", code="ticket_closed")
        previous = ticket.assignee_id
        now = utcnow()
        log = EventLog(session)
        if agent_id is not None:
            await _check_agent(session, agent_id)
            if previous is not None:
                await lock_agents(session, [previous, agent_id])
            await give(session, ticket, agent_id)
            reason: dict[str, Any] = {"strategy": "transfer", "by": principal.agent_id}
            record(session, ticket, "transferred", agent_id=agent_id, by=principal.agent_id, from_agent_id=previous)
        else:
            assert group_id is not None
            await _check_group(session, group_id)
            await _make(session, ticket, transitions.release(ticket))
            ticket.group_id = group_id
            reason = {"strategy": "transfer", "group_id": group_id, "by": principal.agent_id}
            record(session, ticket, "transferred", agent_id=None, by=principal.agent_id, from_agent_id=previous,
                   to_group_id=group_id)
        ticket.updated_at = now
        await session.flush()
        kind = EventKind.TICKET_ASSIGNED if ticket.assignee_id is not None else EventKind.TICKET_UNASSIGNED
        log.add(kind, tenant_id=principal.tenant_id, ticket=ticket,
                payload={"ticket": ticket_dict(ticket, customer), "reason": reason}, previous_assignee_id=previous)
        await session.flush()
        outcome.events = await log.flush()
        outcome.route = previous is not None or ticket.assignee_id is None
        result = ticket_dict(ticket, customer)
    await _finish(hub, principal.tenant_id, outcome)
    return result


async def update_ticket(
    hub: Hub,
    principal: Principal,
    ticket_id: int,
    *,
    status: str | None = None,
    priority: str | None = None,
    tags: list[str] | None = None,
    add_tags: list[str] | None = None,
    remove_tags: list[str] | None = None,
    subject: str | None = None,
) -> dict[str, Any]:
    """Change status (solve = "solved", reopen = "open" from solved), priority, tags or subject."""
    return await hub.ticket_writes.change(Change(principal, ticket_id, status=status, priority=priority, tags=tags,
                                                 add_tags=add_tags, remove_tags=remove_tags, subject=subject))


async def agent_group_ids(session: AsyncSession, agent_id: int) -> list[int]:
    return list((await session.execute(select(AgentGroup.group_id).where(AgentGroup.agent_id == agent_id))).scalars())


async def claim(hub: Hub, principal: Principal, ticket_id: int) -> dict[str, Any]:
    """An agent takes a waiting ticket from their queue (how "manual" groups work), within capacity."""
    outcome = _Outcome()
    async with hub.db.session(principal.tenant_id) as session:
        ticket, customer = await _ticket_for_change(session, principal, ticket_id)
        if ticket.assignee_id == principal.agent_id:
            return ticket_dict(ticket, customer)
        if ticket.assignee_id is not None or ticket.status not in ACTIVE_STATUSES:
            raise Conflict("only a waiting ticket can be claimed", code="not_waiting")
        await give(session, ticket, principal.agent_id)
        ticket.updated_at = utcnow()
        record(session, ticket, "claimed", agent_id=principal.agent_id, by=principal.agent_id, how="claimed")
        await session.flush()
        log = EventLog(session)
        log.add(EventKind.TICKET_ASSIGNED, tenant_id=principal.tenant_id, ticket=ticket,
                payload={"ticket": ticket_dict(ticket, customer), "reason": {"strategy": "claimed"}})
        await session.flush()
        outcome.events = await log.flush()
        result = ticket_dict(ticket, customer)
    await _finish(hub, principal.tenant_id, outcome)
    return result


async def queue(
    hub: Hub, principal: Principal, *, group_id: int | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Waiting tickets in the order they will be served: priority, then oldest first."""
    stmt = (
        select(Ticket, Customer).join(Customer, Customer.id == Ticket.customer_id)
        .where(Ticket.assignee_id.is_(None), Ticket.status.in_(ACTIVE_STATUSES),
               Ticket.routing_state.in_((RoutingState.PENDING, RoutingState.QUEUED)))
        .order_by(Ticket.priority_rank.desc(), Ticket.created_at, Ticket.id)
        .limit(limit)
    )
    if group_id is not None:
        stmt = stmt.where(Ticket.group_id == group_id)
    if not principal.sees_all:
        mine = select(AgentGroup.group_id).where(AgentGroup.agent_id == principal.agent_id)
        stmt = stmt.where(Ticket.group_id.is_(None) | Ticket.group_id.in_(mine))
    async with hub.db.read(principal.tenant_id) as session:
        rows = (await session.execute(stmt)).all()
    return [{**ticket_dict(t, c), "routing_state": t.routing_state, "queued_at": iso(t.queued_at),
             "overflow_at": iso(t.overflow_at)} for t, c in rows]


async def routing_history(hub: Hub, principal: Principal, ticket_id: int) -> dict[str, Any]:
    """Why the ticket is where it is: every routing decision about it, oldest first."""
    async with hub.db.read(principal.tenant_id) as session:
        ticket = (await session.execute(select(Ticket).where(Ticket.id == ticket_id))).scalar_one_or_none()
        if ticket is None or not await can_see(session, principal, ticket):
            raise NotFound(f"ticket {ticket_id} not found", code="ticket_not_found")
        rows = (await session.execute(
            select(AssignmentRecord, Agent.name).outerjoin(Agent, Agent.id == AssignmentRecord.agent_id)
            .where(AssignmentRecord.ticket_id == ticket_id).order_by(AssignmentRecord.id)
        )).all()
    return {
        "ticket_id": ticket_id, "assignee_id": ticket.assignee_id, "group_id": ticket.group_id,
        "rule": ticket.routing_rule, "routing_state": ticket.routing_state,
        "decisions": [{"at": iso(r.created_at), "outcome": r.outcome, "agent_id": r.agent_id, "agent_name": name,
                       "group_id": r.group_id, "rule": r.rule, "strategy": r.strategy, "candidates": r.candidates,
                       **r.detail} for r, name in rows],
    }
