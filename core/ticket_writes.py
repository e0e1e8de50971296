"""Agents' writes in group commits: replies and notes, ticket changes, tickets made by hand.

Many agents acting at the same moment share transactions (:class:`core.batching.GroupCommit`, one
writer per kind and tenant): under light load a batch is one action, under heavy load it is
whatever queued while the previous batch was in flight, written with a fixed number of Core
statements on plain rows (core.serialize), as core.ingest does for what comes in:

- replies and notes: the batch's client ids looked up (a retry is answered with what its first
  try stored), its tickets (with their customers) locked in one ``SELECT ... FOR UPDATE``, its
  agents' names and groups read in one query (who may see which ticket is decided in Python), one
  multi-row INSERT of the messages, one executemany UPDATE of the tickets, one INSERT of the
  outbox rows, one of the events;
- ticket changes (status, priority, tags, subject): the tickets locked, the agents read, one
  UPDATE (executemany), one INSERT of the events;
- tickets made by hand (POST /api/v1/tickets): the customers, identities, agents and groups named
  read once each, new customers in one INSERT, tickets in one, then their first messages as above.

What is rare stays per item: capacity moves (an agent answering an unassigned ticket takes it, a
reopen takes the agent's slot back, a solve frees it), attachments, routing records. Their agents
are locked in id order first, after the tickets (the order every path keeps). An item's own error
(a ticket not found or closed, no reply channel, no room) fails that item alone, raised before
anything of it is written; an error of the batch as a whole (a unique key: two tries of one client
id in one batch) makes the writer try each item on its own, where the replay applies.

After commit the batch's events are published in one go, outbox rows are enqueued, and replies of
channels that deliver on commit (:attr:`core.channels.Connector.delivers_on_commit`: web chat) are
handed to the connector directly on this loop. Such a reply is stored as sent, with an outbox row
that records the delivery as made (attempts 1, sent): a crash between commit and publication
leaves the reply in history, which the widget reads on reconnect, and the sweeper takes the row up
again only if something puts it back in play.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import attachments, csat, mentions, transitions
from core.auth import Principal
from core.batching import GroupCommit
from core.capacity import Pending, lock_agents, move_load
from core.channels import Attachment, OutboundMessage
from core.errors import Conflict, DomainError, InvalidInput, NotFound
from core.events import EventKind, EventLog
from core.models import (
    PRIORITY_RANK,
    Agent,
    AgentGroup,
    Customer,
    CustomerIdentity,
    DeliveryState,
    Direction,
    Group,
    Message,
    OutboxItem,
    Priority,
    Ticket,
    TicketStatus,
    table_of,
    utcnow,
)
from core.serialize import CUSTOMER_ROW_FIELDS, AgentRow, CustomerRow, MessageRow, TicketRow, message_dict, ticket_dict
from core.textsearch import Docs
from core.tickets import Change, First, NewTicket, Reply, clean_tags, firsts, give, record, sees
from core.transitions import Reopener, RoutingState

if TYPE_CHECKING:
    from datetime import datetime

    from core.hub import Hub

logger = logging.getLogger(__name__)

_TICKET_FIELDS = tuple(f.name for f in fields(TicketRow))
_TICKET_COLUMNS = tuple(getattr(Ticket, name) for name in _TICKET_FIELDS)
_CUSTOMER_COLUMNS = tuple(getattr(Customer, name) for name in CUSTOMER_ROW_FIELDS)
# What an agent's action can change on a ticket, written back for the batch's tickets at once.
_WRITE_BACK = ("subject", "status", "priority", "priority_rank", "tags", "routing_state", "assignee_id",
               "assigned_at", "queued_at", "overflow_at", "first_response_at", "last_message_at", "solved_at",
               "closed_at", "reopen_count", "updated_at")


# --- what a batch leaves to do after commit ---------------------------------------------------------
@dataclass
class _Done:
    results: list[Any]
    events: list[dict[str, Any]]
    outbox_ids: list[int]
    sends: list[OutboundMessage]
    route: bool = False
    # Whether capacity may have been freed too (the router then reads the agents afresh); new
    # tickets waiting only add work, as ingest's do.
    capacity: bool = True
    # Satisfaction surveys offered by solves of the batch (core.csat), sent after commit.
    surveys: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Locked:
    ticket: TicketRow
    customer: CustomerRow
    external_id: str | None  # the identity replies go to


@dataclass(slots=True)
class _Planned:
    """A message decided and not yet written: its ticket as the message leaves it."""

    principal: Principal
    ticket: TicketRow
    view: TicketRow  # the ticket as of this message (a later one of the batch may change it further)
    customer: CustomerRow
    external_id: str | None
    direction: str
    text: str
    files: list[dict[str, Any]]
    client_id: str | None
    previous: int | None
    direct: bool  # delivered on commit (web chat), no outbox hop


class TicketWrites:
    """One per hub: the group-commit writers of agents' actions, one per kind and tenant (a batch
    is one tenant's transaction). Started and stopped with the hub's inbox (channelhub.app)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._writers: dict[tuple[str, int], GroupCommit[Any, Any]] = {}
        self._serving = False

    def start(self) -> None:
        self._serving = True
        for writer in self._writers.values():
            writer.start()

    async def stop(self) -> None:
        """Write what was accepted (its agents are waiting for the answer), then stop."""
        self._serving = False
        await asyncio.gather(*(w.stop() for w in self._writers.values()))

    def counters(self, kind: str | None = None) -> dict[str, int]:
        """Batches, items and refusals so far (of ``kind``, or all): for tests and benchmarks."""
        chosen = [w for (k, _), w in self._writers.items() if kind is None or k == kind]
        return {"batches": sum(w.batches for w in chosen), "items": sum(w.items for w in chosen),
                "refused": sum(w.refused for w in chosen)}

    def _writer(self, kind: str, tenant_id: int,
                run: Callable[[int, list[Any]], Awaitable[list[Any]]]) -> GroupCommit[Any, Any]:
        writer = self._writers.get((kind, tenant_id))
        if writer is None:
            writer = GroupCommit(f"{kind} of tenant {tenant_id}", partial(run, tenant_id),
                                 busy_after=self.hub.settings.busy_after, loop_lag=self.hub.loop_lag)
            self._writers[(kind, tenant_id)] = writer
            if self._serving:
                writer.start()
        return writer

    async def reply(self, item: Reply) -> dict[str, Any]:
        result: dict[str, Any] = await self._writer("replies", item.principal.tenant_id, self._replies).submit(item)
        return result

    async def change(self, item: Change) -> dict[str, Any]:
        result: dict[str, Any] = await self._writer("changes", item.principal.tenant_id, self._changes).submit(item)
        return result

    async def create(self, item: NewTicket) -> dict[str, Any]:
        result: dict[str, Any] = await self._writer("tickets", item.principal.tenant_id, self._creates).submit(item)
        return result

    # --- the batches ------------------------------------------------------------------------------
    async def _replies(self, tenant_id: int, items: list[Reply]) -> list[Any]:
        async with self.hub.db.session(tenant_id) as session:
            done = await _write_replies(session, self.hub, tenant_id, items)
        await self._after_commit(tenant_id, done)
        return done.results

    async def _changes(self, tenant_id: int, items: list[Change]) -> list[Any]:
        async with self.hub.db.session(tenant_id) as session:
            done = await _write_changes(session, self.hub, tenant_id, items)
        await self._after_commit(tenant_id, done)
        return done.results

    async def _creates(self, tenant_id: int, items: list[NewTicket]) -> list[Any]:
        async with self.hub.db.session(tenant_id) as session:
            done = await _write_tickets(session, self.hub, tenant_id, items)
        await self._after_commit(tenant_id, done)
        return done.results

    async def after_commit(self, tenant_id: int, done: _Done) -> None:
        """What a committed write leaves to do (see :meth:`_after_commit`), for writes made in a
        transaction of the caller's (:func:`write_together`)."""
        await self._after_commit(tenant_id, done)

    async def _after_commit(self, tenant_id: int, done: _Done) -> None:
        # The batch is committed: nothing here may fail it, or the writer would write its items
        # again one by one. Each step logs and makes good its own failures (the bus's subscribers
        # catch up from the events table, the sweeper takes outbox rows, history has the replies).
        try:
            await self.hub.publish(tenant_id, done.events)
            if done.outbox_ids:
                await self.hub.enqueue_delivery(done.outbox_ids)
            if done.surveys:
                self.hub.csat.enqueue(done.surveys)
            if done.sends:
                await asyncio.gather(*(self._send(m) for m in done.sends))
            if done.route:
                self.hub.router.signal(tenant_id, capacity=done.capacity)
        except Exception:
            logger.exception("after a committed batch of tenant %s", tenant_id)

    async def _send(self, message: OutboundMessage) -> None:
        try:
            await self.hub.connectors[message.channel].send(message)
        except Exception as exc:
            # Stored, and stored as sent: the customer's widget reads it from history when it
            # (re)connects, as it does for anything published while it was away.
            logger.warning("publishing reply %s on %s failed (%r); it stays in history",
                           message.message_id, message.channel, exc)


# --- reads shared by the batches --------------------------------------------------------------------
async def _lock_tickets(session: AsyncSession, tenant_id: int, ids: Iterable[int]) -> dict[int, _Locked]:
    """The tickets with their customers and reply identities, locked in id order (as the router
    and ingest lock them)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    n, m = len(_TICKET_FIELDS), len(CUSTOMER_ROW_FIELDS)
    rows = await session.execute(
        select(*_TICKET_COLUMNS, *_CUSTOMER_COLUMNS, CustomerIdentity.external_id)
        .join(Customer, Customer.id == Ticket.customer_id)
        .outerjoin(CustomerIdentity, CustomerIdentity.id == Ticket.identity_id)
        .where(Ticket.tenant_id == tenant_id, Ticket.id.in_(wanted))
        .order_by(Ticket.id)
        .with_for_update(of=Ticket)
    )
    out: dict[int, _Locked] = {}
    for row in rows:
        ticket = TicketRow(*row[:n])
        out[ticket.id] = _Locked(ticket, CustomerRow(*row[n:n + m]), row[n + m])
    return out


@dataclass(slots=True)
class _Agent:
    name: str
    active: bool
    groups: set[int]


async def _agents(session: AsyncSession, tenant_id: int, ids: Iterable[int]) -> dict[int, _Agent]:
    """The agents' names, whether active, and groups, in one query."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = await session.execute(
        select(Agent.id, Agent.name, Agent.active, AgentGroup.group_id)
        .outerjoin(AgentGroup, AgentGroup.agent_id == Agent.id)
        .where(Agent.tenant_id == tenant_id, Agent.id.in_(wanted))
    )
    out: dict[int, _Agent] = {}
    for agent_id, name, active, group_id in rows:
        agent = out.setdefault(agent_id, _Agent(name, bool(active), set()))
        if group_id is not None:
            agent.groups.add(group_id)
    return out


def _group_readers(items: Iterable[Change], locked: dict[int, _Locked]) -> list[int]:
    """The agents whose groups decide whether they see their item's ticket (one in a group's queue):
    only theirs are read."""
    return [it.principal.agent_id for it in items if not it.principal.sees_all
            and (t := locked.get(it.ticket_id)) is not None and t.ticket.group_id is not None]


def _visible(principal: Principal, locked: _Locked | None, agents: dict[int, _Agent], ticket_id: int) -> _Locked:
    agent = agents.get(principal.agent_id)
    if locked is None or not sees(principal, locked.ticket, agent.groups if agent else set()):
        raise NotFound(f"ticket {ticket_id} not found", code="ticket_not_found")
    return locked


async def _insert(session: AsyncSession, model: type[Any], rows: list[dict[str, Any]]) -> list[int]:
    """One multi-row INSERT; the ids, sorted, line up with ``rows`` (both databases number the rows
    in the order of the VALUES list, as core.events relies on too)."""
    if not rows:
        return []
    table = table_of(model)
    return sorted((await session.execute(insert(table).returning(table.c.id), rows)).scalars())


async def _write_back(session: AsyncSession, tickets: Iterable[TicketRow]) -> None:
    """The batch's changed tickets in one UPDATE (executemany)."""
    rows = [{"_id": t.id, **{name: getattr(t, name) for name in _WRITE_BACK}} for t in tickets]
    if rows:
        table = table_of(Ticket)
        stmt = update(table).where(table.c.id == bindparam("_id")).values({n: bindparam(n) for n in _WRITE_BACK})
        await session.execute(stmt, rows)


# --- messages: planned per item, written per batch -----------------------------------------------------
async def _plan(session: AsyncSession, hub: Hub, principal: Principal, locked: _Locked, *, direction: str,
                text: str, files: list[dict[str, Any]], client_id: str | None, previous: int | None,
                now: datetime, pending: Pending) -> _Planned:
    """What an agent's message does to its ticket (the same for a reply and a ticket's first
    message); raises before changing anything when it cannot be written."""
    ticket = locked.ticket
    outbound = direction == Direction.OUTBOUND
    if outbound:
        # (A ticket made by hand on an e-mail channel has its identity made with it: its address.)
        if ticket.identity_id is None and locked.external_id is None:
            raise Conflict(
                "this ticket has no channel to reply on; add an internal note instead", code="no_reply_channel"
            )
        if ticket.status == TicketStatus.CLOSED:
            raise Conflict("the ticket is closed; the customer's next message opens a new one", code="ticket_closed")
        if ticket.assignee_id is None:
            # Answering an unassigned ticket takes it, within the agent's capacity (409 when they
            # have no room); a note does not.
            await give(session, ticket, principal.agent_id, pending)
            record(session, ticket, "claimed", agent_id=principal.agent_id, by=principal.agent_id, how="answered")
        if ticket.first_response_at is None:
            ticket.first_response_at = now
        answered = transitions.agent_replied(ticket, now)
        if answered is not None:
            answered.apply(ticket, granted=await move_load(session, answered, ticket.channel, pending=pending))
        ticket.last_message_at = now
    ticket.updated_at = now
    connector = hub.connectors.get(ticket.channel)
    return _Planned(principal, ticket, replace(ticket), locked.customer, locked.external_id, direction, text, files,
                    client_id, previous, outbound and connector is not None and connector.delivers_on_commit)


async def _store(session: AsyncSession, tenant_id: int, planned: list[_Planned], agents: dict[int, _Agent],
                 log: EventLog, now: datetime, docs: Docs
                 ) -> tuple[list[dict[str, Any]], list[int], list[OutboundMessage]]:
    """Write the planned messages (one INSERT), their outbox rows (one) and record their events;
    add them to ``docs`` (search: notes too, they are the team's own). Returns the messages as the
    API shows them, the outbox rows to deliver, the replies to publish."""
    rows = []
    states: list[str | None] = []
    for p in planned:
        outbound = p.direction == Direction.OUTBOUND
        state: str | None = (DeliveryState.SENT if p.direct else DeliveryState.PENDING) if outbound else None
        states.append(state)
        rows.append({"tenant_id": tenant_id, "ticket_id": p.ticket.id, "channel": p.ticket.channel,
                     "direction": p.direction, "author_agent_id": p.principal.agent_id, "body": p.text,
                     "attachments": p.files, "delivery_state": state, "client_id": p.client_id,
                     "sent_at": now if p.direct else None, "created_at": now})
    ids = await _insert(session, Message, rows)
    for p, message_id in zip(planned, ids, strict=True):
        docs.message(p.ticket.id, message_id, p.text)
    outbox = [{"tenant_id": tenant_id, "message_id": message_id, "channel": p.ticket.channel,
               "state": DeliveryState.SENT if p.direct else DeliveryState.PENDING, "attempts": 1 if p.direct else 0,
               "next_attempt_at": now, "sent_at": now if p.direct else None, "created_at": now}
              for p, message_id in zip(planned, ids, strict=True) if p.direction == Direction.OUTBOUND]
    outbox_ids = await _insert(session, OutboxItem, outbox)
    queued = [oid for oid, row in zip(outbox_ids, outbox, strict=True) if row["state"] == DeliveryState.PENDING]
    out: list[dict[str, Any]] = []
    sends: list[OutboundMessage] = []
    for p, state, message_id in zip(planned, states, ids, strict=True):
        # The author's name as stored now (a socket's principal is as of its hello).
        agent = agents.get(p.principal.agent_id)
        name = agent.name if agent is not None else p.principal.name
        message = MessageRow(message_id, p.ticket.id, p.ticket.channel, p.direction, p.text, p.files, now,
                             author_agent_id=p.principal.agent_id, delivery_state=state)
        tdict = ticket_dict(p.view, p.customer)
        mdict = message_dict(message, agent=AgentRow(p.principal.agent_id, name), customer=p.customer)
        if p.previous != p.view.assignee_id:
            log.add(EventKind.TICKET_ASSIGNED, tenant_id=tenant_id, ticket=p.view,
                    payload={"ticket": tdict, "reason": {"strategy": "claimed"}}, previous_assignee_id=p.previous)
        log.add(EventKind.MESSAGE_CREATED, tenant_id=tenant_id, ticket=p.view,
                payload={"ticket": tdict, "message": mdict})
        if p.direct:
            log.add(EventKind.MESSAGE_DELIVERY, tenant_id=tenant_id, ticket=p.view,
                    payload={"message_id": message_id, "delivery_state": DeliveryState.SENT.value,
                             "channel_message_id": None})
            if p.external_id is not None:
                sends.append(OutboundMessage(
                    tenant_id=tenant_id, channel=p.ticket.channel, external_id=p.external_id, text=p.text,
                    message_id=message_id, ticket_id=p.ticket.id,
                    attachments=tuple(Attachment(**a) for a in p.files), author_name=name, created_at=now))
        out.append(mdict)
    return out, queued, sends


def _client_keys(items: Sequence[Reply | NewTicket]) -> list[tuple[int, str]]:
    return [(it.principal.agent_id, it.client_id) for it in items if it.client_id is not None]


def _replayed(it: Reply | NewTicket, done_before: dict[tuple[int, str], First]) -> dict[str, Any] | None:
    """A retry's answer: what its first try wrote (None: this is the first)."""
    first = done_before.get((it.principal.agent_id, it.client_id)) if it.client_id else None
    return it.replay(first) if first is not None else None


async def _write_replies(session: AsyncSession, hub: Hub, tenant_id: int, items: list[Reply]) -> _Done:
    now = utcnow()
    results: list[Any] = [None] * len(items)
    done_before = await firsts(session, _client_keys(items))
    locked = await _lock_tickets(session, tenant_id, (it.ticket_id for it in items))
    # The authors' names, and the groups of those whose visibility depends on them.
    agents = await _agents(session, tenant_id, (it.principal.agent_id for it in items))
    # Who may take an unassigned ticket by answering it: their rows locked in id order, after the
    # tickets, before any slot moves (as the router and transfers lock them).
    await lock_agents(session, [it.principal.agent_id for it in items if it.direction == Direction.OUTBOUND
                                and it.ticket_id in locked and locked[it.ticket_id].ticket.assignee_id is None])
    # Agents mentioned on a ticket they do not otherwise see may add notes to it (core.mentions).
    asked = {(it.principal.agent_id, it.ticket_id) for it in items if it.direction == Direction.NOTE
             and not it.principal.sees_all and (t := locked.get(it.ticket_id)) is not None
             and not sees(it.principal, t.ticket, a.groups if (a := agents.get(it.principal.agent_id)) else set())}
    mentioned = await mentions.granted(session, asked)
    pending: Pending = {}
    planned: list[tuple[int, _Planned]] = []
    for i, it in enumerate(items):
        try:
            if (replayed := _replayed(it, done_before)) is not None:
                results[i] = replayed
                continue
            entry = (locked[it.ticket_id] if (it.principal.agent_id, it.ticket_id) in mentioned
                     else _visible(it.principal, locked.get(it.ticket_id), agents, it.ticket_id))
            files = await attachments.for_message(session, it.attachment_ids)
            planned.append((i, await _plan(session, hub, it.principal, entry, direction=it.direction, text=it.text,
                                           files=files, client_id=it.client_id,
                                           previous=entry.ticket.assignee_id, now=now, pending=pending)))
        except DomainError as exc:
            results[i] = exc
    done = _Done(results, [], [], [])
    if planned:
        await _write_back(session, {p.ticket.id: p.ticket for _, p in planned}.values())
        log = EventLog(session)
        docs = await Docs.of(session, tenant_id)
        messages, done.outbox_ids, done.sends = await _store(session, tenant_id, [p for _, p in planned], agents,
                                                             log, now, docs)
        await docs.write(session)
        for (i, _), mdict in zip(planned, messages, strict=True):
            results[i] = mdict
        await mentions.record(session, tenant_id, [
            mentions.Note(m["id"], p.view, p.customer, p.text, p.principal.agent_id, m["author"]["name"], now)
            for (_, p), m in zip(planned, messages, strict=True) if p.direction == Direction.NOTE], log)
        done.events = await log.flush()
    return done


# --- ticket changes ---------------------------------------------------------------------------------
@dataclass(slots=True)
class _Decided:
    """What a change will do, checked before anything of it is made."""

    status: TicketStatus | None
    priority: str | None
    tags: list[str] | None
    subject: str | None


def _decide(ticket: TicketRow, it: Change) -> _Decided:
    status = None
    if it.status is not None and it.status != ticket.status:
        status = transitions.check_status(ticket.status, it.status)
    priority = None
    if it.priority is not None and it.priority != ticket.priority:
        try:
            Priority(it.priority)
        except ValueError:
            raise InvalidInput(f"unknown priority {it.priority!r}", code="invalid_priority") from None
        priority = it.priority
    new_tags = list(ticket.tags or [])
    if it.tags is not None:
        new_tags = clean_tags(it.tags)
    if it.add_tags:
        new_tags = clean_tags(new_tags + it.add_tags)
    if it.remove_tags:
        drop = set(clean_tags(it.remove_tags))
        new_tags = [t for t in new_tags if t not in drop]
    subject = None
    if it.subject is not None and it.subject != ticket.subject:
        if not it.subject.strip() or len(it.subject) > 500:
            raise InvalidInput("subject must be 1 to 500 characters", code="invalid_subject")
        subject = it.subject
    return _Decided(status, priority, new_tags if new_tags != list(ticket.tags or []) else None, subject)


async def _apply_change(session: AsyncSession, ticket: TicketRow, decided: _Decided, now: datetime,
                        pending: Pending) -> tuple[dict[str, Any], bool]:
    """Make a decided change; returns what changed and whether the router should run."""
    changes: dict[str, Any] = {}
    route = False
    if decided.status is not None:
        old, agent, new = ticket.status, ticket.assignee_id, decided.status
        changes["status"] = {"from": old, "to": new.value}
        if transitions.is_reopen(old, new):
            # The slot is taken while the ticket is still solved, so the agent's per-channel count
            # does not include this very ticket (transitions: capacity first, fields after).
            change = transitions.reopen(ticket, by=Reopener.AGENT)
            change.apply(ticket, granted=await move_load(session, change, ticket.channel, pending=pending))
            if ticket.assignee_id != agent:
                changes["assignee_id"] = {"from": agent, "to": None}
            # Back to routing (no agent, or theirs had no room): the router should run.
            route = ticket.routing_state == RoutingState.PENDING
        else:
            change = transitions.set_status(ticket, new, now)
            change.apply(ticket, granted=await move_load(session, change, ticket.channel, pending=pending))
            # Solved or closed: a slot was freed, or the ticket left the queue.
            route = transitions.is_active(old) and not transitions.is_active(new)
    if decided.priority is not None:
        changes["priority"] = {"from": ticket.priority, "to": decided.priority}
        ticket.priority = decided.priority
        ticket.priority_rank = PRIORITY_RANK[Priority(decided.priority)]
    if decided.tags is not None:
        changes["tags"] = {"from": list(ticket.tags or []), "to": decided.tags}
        ticket.tags = decided.tags
    if decided.subject is not None:
        changes["subject"] = {"from": ticket.subject, "to": decided.subject}
        ticket.subject = decided.subject
    if changes:
        ticket.updated_at = now
    return changes, route


async def _write_changes(session: AsyncSession, hub: Hub, tenant_id: int, items: list[Change]) -> _Done:
    now = utcnow()
    results: list[Any] = [None] * len(items)
    locked = await _lock_tickets(session, tenant_id, (it.ticket_id for it in items))
    agents = await _agents(session, tenant_id, _group_readers(items, locked))
    # A change of status moves the assignee's slot: their rows locked in id order first.
    await lock_agents(session, [t.ticket.assignee_id for it in items if it.status is not None
                                and (t := locked.get(it.ticket_id)) is not None and t.ticket.assignee_id is not None])
    pending: Pending = {}
    done = _Done(results, [], [], [])
    touched: dict[int, TicketRow] = {}
    solved: list[csat.Solved] = []
    log = EventLog(session)
    docs = await Docs.of(session, tenant_id)
    for i, it in enumerate(items):
        try:
            entry = _visible(it.principal, locked.get(it.ticket_id), agents, it.ticket_id)
            decided = _decide(entry.ticket, it)
        except DomainError as exc:
            results[i] = exc
            continue
        ticket = entry.ticket
        changes, route = await _apply_change(session, ticket, decided, now, pending)
        done.route = done.route or route
        tdict = ticket_dict(ticket, entry.customer)
        if changes:
            touched[ticket.id] = ticket
            if "subject" in changes:
                docs.subject_changed(ticket.id, ticket.subject)
            log.add(EventKind.TICKET_UPDATED, tenant_id=tenant_id, ticket=ticket,
                    payload={"ticket": tdict, "changes": changes, "by": it.principal.agent_id})
            if changes.get("status", {}).get("to") == TicketStatus.SOLVED:
                solved.append(csat.Solved(ticket, entry.external_id))
        results[i] = tdict
    await _write_back(session, touched.values())
    # As the batch leaves them (a later item may have tagged one spam, or reopened it).
    done.surveys = await csat.offer(session, hub, tenant_id,
                                    (s for s in solved if s.ticket.status == TicketStatus.SOLVED), now)
    await docs.write(session)
    done.events = await log.flush()
    return done


# --- tickets made by hand ---------------------------------------------------------------------------
async def _customers(session: AsyncSession, tenant_id: int, ids: set[int]) -> dict[int, CustomerRow]:
    if not ids:
        return {}
    # A customer merged into another (core.merges) takes no new tickets: it is not found.
    rows = await session.execute(select(*_CUSTOMER_COLUMNS).where(Customer.tenant_id == tenant_id,
                                                                  Customer.id.in_(sorted(ids)),
                                                                  Customer.merged_into_id.is_(None)))
    return {row[0]: CustomerRow(*row) for row in rows}


async def _identities(session: AsyncSession, tenant_id: int, pairs: set[tuple[int, str]]
                      ) -> dict[tuple[int, str], tuple[int, str]]:
    """Each (customer, channel)'s identity, its id and external id (the first one, where a
    customer has several on a channel)."""
    if not pairs:
        return {}
    rows = await session.execute(
        select(CustomerIdentity.customer_id, CustomerIdentity.channel, CustomerIdentity.id,
               CustomerIdentity.external_id)
        .where(CustomerIdentity.tenant_id == tenant_id,
               CustomerIdentity.customer_id.in_(sorted({c for c, _ in pairs})),
               CustomerIdentity.channel.in_(sorted({ch for _, ch in pairs})))
        .order_by(CustomerIdentity.id)
    )
    out: dict[tuple[int, str], tuple[int, str]] = {}
    for customer_id, channel, identity_id, external_id in rows:
        out.setdefault((customer_id, channel), (identity_id, external_id))
    return out


async def _groups(session: AsyncSession, tenant_id: int, ids: set[int]) -> set[int]:
    if not ids:
        return set()
    return set((await session.execute(select(Group.id).where(Group.tenant_id == tenant_id,
                                                             Group.id.in_(sorted(ids))))).scalars())


@dataclass(slots=True)
class _Made:
    index: int
    item: NewTicket
    ticket: TicketRow
    customer: CustomerRow
    created: TicketRow  # as it was made, before its first message (the ticket.created event)
    planned: _Planned  # its first message
    new_customer: dict[str, Any] | None
    assigned: bool  # to the assignee asked for (recorded as made by hand)
    claimed: bool  # by the agent whose first message goes out on a channel
    new_identity: str | None  # an e-mail address the ticket's identity is made of (Connector.identity_is_email)


def _address(it: NewTicket, customers: dict[int, CustomerRow], email_channels: frozenset[str]) -> str | None:
    """The e-mail address a ticket started on an e-mail channel goes to, if its identity may be
    made of it."""
    if it.channel is None or it.channel not in email_channels:
        return None
    if it.customer_id is None:
        email = it.customer_email
    else:
        customer = customers.get(it.customer_id)
        email = customer.email if customer is not None else None
    return email.strip().lower() if email else None


async def _addresses_taken(session: AsyncSession, tenant_id: int, wanted: set[tuple[str, str]]
                           ) -> dict[tuple[str, str], int]:
    """Which (channel, address) identities exist already, and whose they are."""
    if not wanted:
        return {}
    rows = await session.execute(
        select(CustomerIdentity.channel, CustomerIdentity.external_id, CustomerIdentity.customer_id)
        .where(CustomerIdentity.tenant_id == tenant_id,
               CustomerIdentity.channel.in_(sorted({c for c, _ in wanted})),
               CustomerIdentity.external_id.in_(sorted({a for _, a in wanted}))))
    return {(channel, external_id): customer_id for channel, external_id, customer_id in rows}


def _check_new(it: NewTicket, customers: dict[int, CustomerRow], identities: dict[tuple[int, str], tuple[int, str]],
               agents: dict[int, _Agent], groups: set[int], tenant_id: int, now: datetime,
               address: str | None = None, taken: dict[tuple[str, str], int] | None = None,
               ) -> tuple[TicketRow, CustomerRow, dict[str, Any] | None, str | None, str | None]:
    """The ticket an item asks for, checked (in the order the single-ticket path checked)."""
    new_customer: dict[str, Any] | None = None
    if it.customer_id is not None:
        customer = customers.get(it.customer_id)
        if customer is None:
            raise NotFound(f"customer {it.customer_id} not found", code="customer_not_found")
    else:
        if not (it.customer_name or it.customer_email):
            raise InvalidInput("give customer_id, or a customer name or e-mail", code="customer_required")
        new_customer = {"tenant_id": tenant_id, "name": it.customer_name, "email": it.customer_email,
                        "attributes": {}, "tags": [], "created_at": now}
        customer = CustomerRow(0, it.customer_name, it.customer_email, [], {})
    identity_id = external_id = new_identity = None
    if it.channel is not None:
        identity = identities.get((customer.id, it.channel)) if new_customer is None else None
        if identity is None and address is not None:
            if (taken or {}).get((it.channel, address)) is not None:
                raise Conflict(f"{address} is already another customer's address on channel {it.channel!r}: "
                               "give that customer's customer_id", code="identity_taken")
            new_identity = external_id = address
        elif identity is None:
            raise Conflict(f"the customer has no identity on channel {it.channel!r}", code="no_identity_on_channel")
        else:
            identity_id, external_id = identity
    if it.assignee_id is not None:
        agent = agents.get(it.assignee_id)
        if agent is None or not agent.active:
            raise NotFound(f"agent {it.assignee_id} not found", code="agent_not_found")
    if it.group_id is not None and it.group_id not in groups:
        raise NotFound(f"group {it.group_id} not found", code="group_not_found")
    ticket = TicketRow(
        id=0, tenant_id=tenant_id, customer_id=customer.id, identity_id=identity_id, channel=it.channel or "manual",
        subject=(it.subject or it.text.strip().splitlines()[0])[:500], priority=it.priority,
        priority_rank=PRIORITY_RANK[Priority(it.priority)], tags=list(it.tags), required_skills={},
        routing_rule=None, group_id=it.group_id, created_at=now, updated_at=now, last_message_at=None,
        first_response_at=None, **transitions.new_ticket())
    return ticket, customer, new_customer, external_id, new_identity


async def _write_tickets(session: AsyncSession, hub: Hub, tenant_id: int, items: list[NewTicket]) -> _Done:
    now = utcnow()
    results: list[Any] = [None] * len(items)
    # Slots are only taken here (a guess of the router's that finds no room is dropped by it).
    done = _Done(results, [], [], [], capacity=False)
    done_before = await firsts(session, _client_keys(items))
    customers = await _customers(session, tenant_id, {it.customer_id for it in items if it.customer_id is not None})
    identities = await _identities(session, tenant_id, {(it.customer_id, it.channel) for it in items
                                                        if it.customer_id is not None and it.channel is not None})
    agents = await _agents(session, tenant_id, [it.principal.agent_id for it in items]
                           + [it.assignee_id for it in items if it.assignee_id is not None])
    groups = await _groups(session, tenant_id, {it.group_id for it in items if it.group_id is not None})
    email_channels = frozenset(kind for kind, c in hub.connectors.items() if c.identity_is_email)
    addresses = [_address(it, customers, email_channels) for it in items]
    taken = await _addresses_taken(session, tenant_id, {(str(it.channel), a) for it, a in zip(items, addresses,
                                                                                               strict=True) if a})
    # Whose slots this batch may take (the assignees asked for, or the agents whose first message
    # goes out and so takes the ticket): locked in id order before any is taken.
    await lock_agents(session, [it.assignee_id if it.assignee_id is not None else it.principal.agent_id
                                for it in items if it.assignee_id is not None or it.channel is not None])
    pending: Pending = {}
    made: list[_Made] = []
    for i, it in enumerate(items):
        try:
            if (replayed := _replayed(it, done_before)) is not None:
                results[i] = replayed
                continue
            ticket, customer, new_customer, external_id, new_identity = _check_new(
                it, customers, identities, agents, groups, tenant_id, now, addresses[i], taken)
            if it.assignee_id is None and it.group_id is None:
                await hub.router.apply_rules(session, ticket, customer, it.text)
            created = replace(ticket)
            # The slots are taken before anything of the ticket is written: one refused fails this
            # item alone.
            if it.assignee_id is not None:
                await give(session, ticket, it.assignee_id, pending)
                created = replace(ticket)
            elif it.channel is not None:
                await give(session, ticket, it.principal.agent_id, pending)
            # Its first message, planned before the ticket is written: the row goes in as the
            # message leaves it (first response, open).
            planned = await _plan(session, hub, it.principal, _Locked(ticket, customer, external_id),
                                  direction=Direction.OUTBOUND if it.channel else Direction.NOTE, text=it.text,
                                  files=[], client_id=it.client_id, previous=created.assignee_id, now=now,
                                  pending=pending)
        except DomainError as exc:
            results[i] = exc
            continue
        done.route = done.route or it.assignee_id is None
        made.append(_Made(i, it, ticket, customer, created, planned, new_customer,
                          it.assignee_id is not None, it.assignee_id is None and it.channel is not None, new_identity))
    if not made:
        return done
    fresh = [(m, m.new_customer) for m in made if m.new_customer is not None]
    for (m, _), customer_id in zip(fresh, await _insert(session, Customer, [row for _, row in fresh]), strict=True):
        m.customer.id = m.ticket.customer_id = m.created.customer_id = m.planned.view.customer_id = customer_id
    addressed = [m for m in made if m.new_identity is not None]
    identity_rows = [{"tenant_id": tenant_id, "customer_id": m.customer.id, "channel": m.item.channel,
                      "external_id": m.new_identity, "created_at": now} for m in addressed]
    for m, identity_id in zip(addressed, await _insert(session, CustomerIdentity, identity_rows), strict=True):
        m.ticket.identity_id = m.created.identity_id = m.planned.view.identity_id = identity_id
    ticket_rows = [{**{n: getattr(m.ticket, n) for n in _TICKET_FIELDS if n != "id"},
                    "created_by_agent_id": m.item.principal.agent_id} for m in made]
    log = EventLog(session)
    docs = await Docs.of(session, tenant_id)
    for m, ticket_id in zip(made, await _insert(session, Ticket, ticket_rows), strict=True):
        m.ticket.id = m.created.id = m.planned.view.id = ticket_id
        docs.ticket(ticket_id, m.ticket.subject, m.customer.name, m.customer.email, m.planned.external_id)
        it = m.item
        if m.assigned:
            record(session, m.ticket, "assigned", agent_id=it.assignee_id, by=it.principal.agent_id,
                   how="created by hand")
        if m.claimed:
            record(session, m.ticket, "claimed", agent_id=it.principal.agent_id, by=it.principal.agent_id,
                   how="answered")
        log.add(EventKind.TICKET_CREATED, tenant_id=tenant_id, ticket=m.created,
                payload={"ticket": ticket_dict(m.created, m.customer)})
    _, done.outbox_ids, done.sends = await _store(session, tenant_id, [m.planned for m in made], agents, log, now,
                                                  docs)
    await docs.write(session)
    for m in made:
        results[m.index] = ticket_dict(m.ticket, m.customer)
    done.events = await log.flush()
    return done


# --- several actions on one ticket in one transaction (a macro, core.macros) --------------------------
Done = _Done


async def write_together(session: AsyncSession, hub: Hub, tenant_id: int, replies: list[Reply],
                         changes: list[Change]) -> _Done:
    """Replies and notes, then changes, in the caller's transaction, all or nothing: the first
    item's error is raised (rolling the transaction back) instead of being returned."""
    done = _Done([], [], [], [], capacity=True)
    for batch in (await _write_replies(session, hub, tenant_id, replies) if replies else None,
                  await _write_changes(session, hub, tenant_id, changes) if changes else None):
        if batch is None:
            continue
        for result in batch.results:
            if isinstance(result, BaseException):
                raise result
        done.results += batch.results
        done.events += batch.events
        done.outbox_ids += batch.outbox_ids
        done.sends += batch.sends
        done.surveys += batch.surveys
        done.route = done.route or batch.route
    return done
