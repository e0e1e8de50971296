"""``ingest``: the one way a message comes in, from every channel.

In one transaction it finds or creates the customer and their joinable ticket, stores the message,
applies the routing rules to a new ticket, and records the events; after commit the events are
published and the router is told about tickets that wait. It is idempotent on (tenant, channel,
channel message id): a retried web-hook, a re-fetched e-mail or a reconnecting client returns the
message stored the first time.

It works on batches: :func:`ingest_in` takes any number of messages of one tenant and does the
same few statements for a hundred as for one (duplicates, identities, tickets, messages and events
are each read or written once per batch). A single message (:func:`ingest`) is a batch of one, so
there is one code path; the inbox (core.inbox) drains web-hook channels in batches of a hundred.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from core import transitions
from core.capacity import move_load
from core.channels import InboundMessage
from core.errors import InvalidInput, TooLarge
from core.events import EventKind, EventLog
from core.models import (
    JOINABLE_STATUSES,
    PRIORITY_RANK,
    Customer,
    CustomerIdentity,
    Direction,
    Message,
    Priority,
    Ticket,
    TicketParticipant,
    table_of,
)
from core.probes import probe_topic
from core.serialize import (
    CUSTOMER_ROW_FIELDS,
    TICKET_ROW_FIELDS,
    CustomerRow,
    MessageRow,
    TicketRow,
    iso,
    message_dict,
    ticket_dict,
)
from core.textsearch import Docs

if TYPE_CHECKING:
    from core.hub import Hub

logger = logging.getLogger(__name__)

# What the identity and message-id columns hold.
MAX_ID_LENGTH = 255
# Messages a message answers, tickets it names and participants it adds, at the most each (an
# e-mail's References are cut to their newest before this).
MAX_THREAD_IDS = 50


@dataclass(frozen=True)
class IngestResult:
    message: dict[str, Any]
    ticket: dict[str, Any]
    duplicate: bool
    created_ticket: bool
    # The ticket waits for the router (new, or reopened without its agent).
    needs_routing: bool = False
    # A probe's message (core.probes): the topic it is echoed on after commit; nothing was stored.
    echo: str | None = None


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


def check_message(msg: InboundMessage, limit: int) -> None:
    """What any channel's message must be before it is stored (or put in the inbox)."""
    check_text(msg.text, limit)
    if not msg.external_id or not msg.channel_message_id:
        raise InvalidInput("a message needs the sender's identity and the channel's message id")
    if len(msg.external_id) > MAX_ID_LENGTH or len(msg.channel_message_id) > MAX_ID_LENGTH:
        raise InvalidInput(f"the sender's identity and the message id are at most {MAX_ID_LENGTH} characters",
                           code="invalid_id")
    if len(msg.answers) > MAX_THREAD_IDS or len(msg.ticket_refs) > MAX_THREAD_IDS or \
            len(msg.participants) > MAX_THREAD_IDS:
        raise InvalidInput(f"a message names at most {MAX_THREAD_IDS} messages, tickets and participants each",
                           code="invalid_thread")
    if any(not a or len(a) > MAX_ID_LENGTH for a in (*msg.answers, *msg.participants)):
        raise InvalidInput(f"thread ids and participants are 1 to {MAX_ID_LENGTH} characters", code="invalid_thread")


def _subject(msg: InboundMessage) -> str:
    if msg.subject:
        return msg.subject[:500]
    first_line = msg.text.strip().splitlines()[0] if msg.text.strip() else "(no text)"
    return first_line[:80]


# The batch's statements, built once (building a statement costs about as much as running it):
# Core statements on the tables, run on the session's connection, skipping the ORM's execution
# layer; the tenant is in each WHERE clause, so no loader criteria are needed.
_M, _T, _C, _I = (table_of(m) for m in (Message, Ticket, Customer, CustomerIdentity))
MESSAGE_ROW_FIELDS = tuple(f.name for f in fields(MessageRow))
_EXISTING = (
    select(_M.c.channel_message_id, *(_M.c[name] for name in MESSAGE_ROW_FIELDS),
           *(_T.c[name] for name in TICKET_ROW_FIELDS), *(_C.c[name] for name in CUSTOMER_ROW_FIELDS))
    .join(_T, _T.c.id == _M.c.ticket_id)
    .join(_C, _C.c.id == _T.c.customer_id)
    .where(_M.c.tenant_id == bindparam("tenant_id"), _M.c.channel == bindparam("channel"),
           _M.c.direction == Direction.INBOUND, _M.c.channel_message_id.in_(bindparam("ids", expanding=True)))
)
_IDENTITIES = (
    select(_I.c.id, _I.c.external_id, *(_C.c[name] for name in CUSTOMER_ROW_FIELDS))
    .join(_C, _C.c.id == _I.c.customer_id)
    .where(_I.c.tenant_id == bindparam("tenant_id"), _I.c.channel == bindparam("channel"),
           _I.c.external_id.in_(bindparam("ids", expanding=True)))
    # Locked in id order, as the tickets below are, so two batches sharing senders on
    # PostgreSQL wait for each other instead of deadlocking.
    .order_by(_I.c.id)
    .with_for_update(of=_I)
)
# The tickets a batch may join, locked in id order in one statement (two batches sharing tickets
# on PostgreSQL wait for each other instead of deadlocking): the senders' open tickets and, for a
# batch whose messages thread (e-mail), the tickets they thread to, whatever their state (a closed
# one is not joined, but seen). A batch that does not thread (chat) keeps the plain statement, one
# index range per sender.
_JOINABLE = (
    select(*(_T.c[name] for name in TICKET_ROW_FIELDS))
    .where(_T.c.identity_id.in_(bindparam("ids", expanding=True)), _T.c.status.in_(JOINABLE_STATUSES))
    .order_by(_T.c.id).with_for_update()
)
_JOINABLE_OR_THREADED = (
    select(*(_T.c[name] for name in TICKET_ROW_FIELDS))
    .where(_T.c.tenant_id == bindparam("tenant_id"),
           (_T.c.identity_id.in_(bindparam("ids", expanding=True)) & _T.c.status.in_(JOINABLE_STATUSES))
           | _T.c.id.in_(bindparam("thread", expanding=True)))
    .order_by(_T.c.id).with_for_update()
)
# The tickets of the channel messages a batch answers, received or sent.
_ANSWERED = (
    select(_M.c.channel_message_id, _M.c.ticket_id)
    # Direction named, so the lookup is served by the unique key's index (tenant, channel,
    # direction, channel message id) rather than a scan of the tenant's messages on the channel.
    .where(_M.c.tenant_id == bindparam("tenant_id"), _M.c.channel == bindparam("channel"),
           _M.c.direction.in_([Direction.INBOUND, Direction.OUTBOUND]),
           _M.c.channel_message_id.in_(bindparam("ids", expanding=True)))
)
_P = table_of(TicketParticipant)
_PARTICIPANTS = (
    select(_P.c.ticket_id, _P.c.external_id)
    .where(_P.c.tenant_id == bindparam("tenant_id"), _P.c.channel == bindparam("channel"),
           _P.c.ticket_id.in_(bindparam("tickets", expanding=True)))
)
_N_MESSAGE, _N_TICKET = len(MESSAGE_ROW_FIELDS), len(TICKET_ROW_FIELDS)
_CUSTOMER_CHANGED = (update(_C).where(_C.c.id == bindparam("_id"))
                     .values(name=bindparam("name"), email=bindparam("email")))
# Multi-row INSERTs; both databases number the rows in the order of the VALUES list.
_NEW_CUSTOMERS = insert(_C).returning(_C.c.id)
_NEW_IDENTITIES = insert(_I).returning(_I.c.id, _I.c.channel, _I.c.external_id)
_NEW_TICKETS = insert(_T).returning(_T.c.id)
_NEW_MESSAGES = insert(_M).returning(_M.c.id)


async def _existing(conn: AsyncConnection, tenant_id: int, msgs: Sequence[InboundMessage]
                    ) -> dict[tuple[str, str], IngestResult]:
    """The messages of this batch stored before (a retry), by (channel, channel message id)."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for m in msgs:
        wanted[m.channel].add(m.channel_message_id)
    found: dict[tuple[str, str], IngestResult] = {}
    for channel, cmids in wanted.items():
        rows = await conn.execute(_EXISTING, {"tenant_id": tenant_id, "channel": channel, "ids": list(cmids)})
        for row in rows:
            message = MessageRow(*row[1:1 + _N_MESSAGE])
            ticket = TicketRow(*row[1 + _N_MESSAGE:1 + _N_MESSAGE + _N_TICKET])
            customer = CustomerRow(*row[1 + _N_MESSAGE + _N_TICKET:])
            found[(channel, row[0] or "")] = IngestResult(
                message_dict(message, customer=customer), ticket_dict(ticket, customer), True, False)
    return found


async def _identities(session: AsyncSession, conn: AsyncConnection, tenant_id: int, msgs: Sequence[InboundMessage]
                      ) -> tuple[dict[tuple[str, str], tuple[int, CustomerRow]], dict[int, CustomerRow]]:
    """Every sender's identity id and customer, created for first-time senders, and the customers
    whose name or e-mail these messages changed. The identities are locked, so one customer's
    messages are taken one batch at a time: two first messages arriving at once (a websocket and
    the HTTP fallback) cannot open two tickets."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for m in msgs:
        wanted[m.channel].add(m.external_id)
    found: dict[tuple[str, str], tuple[int, CustomerRow]] = {}
    for channel, external_ids in wanted.items():
        rows = await conn.execute(_IDENTITIES, {"tenant_id": tenant_id, "channel": channel,
                                                "ids": list(external_ids)})
        for row in rows:
            found[(channel, row[1])] = (row[0], CustomerRow(*row[2:]))
    changed: dict[int, CustomerRow] = {}
    new: dict[tuple[str, str], dict[str, Any]] = {}
    for m in msgs:
        key = (m.channel, m.external_id)
        if key in found:
            customer = found[key][1]
            if m.customer_name and customer.name != m.customer_name[:200]:
                customer.name = m.customer_name[:200]
                changed[customer.id] = customer
            if m.customer_email and not customer.email:
                customer.email = m.customer_email[:320]
                changed[customer.id] = customer
        elif key not in new:
            new[key] = {"tenant_id": tenant_id, "name": m.customer_name[:200] if m.customer_name else None,
                        "email": m.customer_email[:320] if m.customer_email else None,
                        "attributes": dict(m.customer_attributes), "tags": [], "created_at": m.received_at}
    if changed:
        await conn.execute(_CUSTOMER_CHANGED, [{"_id": c.id, "name": c.name, "email": c.email}
                                               for c in changed.values()])
    if new:
        # One multi-row INSERT each; the new customers' ids, sorted, follow the VALUES order.
        rows_ = list(new.values())
        customer_ids = sorted((await conn.execute(_NEW_CUSTOMERS, rows_)).scalars())
        customers = {key: CustomerRow(cid, row["name"], row["email"], [], row["attributes"])
                     for (key, row), cid in zip(new.items(), customer_ids, strict=True)}
        # A first message from the same sender stored by another process meanwhile makes this an
        # IntegrityError: the caller retries, and then finds that identity.
        made = await conn.execute(
            _NEW_IDENTITIES,
            [{"tenant_id": tenant_id, "customer_id": customers[key].id, "channel": key[0], "external_id": key[1],
              "created_at": new[key]["created_at"]} for key in new])
        for identity_id, channel, external_id in made:
            found[(channel, external_id)] = (identity_id, customers[(channel, external_id)])
    return found, changed


# What a customer's message can change on a ticket they already have: its state (the transition's
# fields) and its times.
_JOIN_CHANGES = (*transitions.CUSTOMER_WROTE_FIELDS, "last_message_at", "updated_at")


async def _joinable(conn: AsyncConnection, tenant_id: int, identity_ids: list[int], thread_ids: list[int]
                    ) -> tuple[dict[int, TicketRow], dict[int, TicketRow]]:
    """Each identity's newest ticket a message can join, and the tickets messages thread to, by id
    (all locked; one row object per ticket, whichever way it was found)."""
    if not identity_ids and not thread_ids:  # new mail only: nothing to join
        return {}, {}
    if thread_ids:
        rows = await conn.execute(_JOINABLE_OR_THREADED, {"tenant_id": tenant_id, "ids": identity_ids,
                                                          "thread": thread_ids})
    else:
        rows = await conn.execute(_JOINABLE, {"ids": identity_ids})
    by_identity: dict[int, TicketRow] = {}
    by_id: dict[int, TicketRow] = {}
    wanted = set(identity_ids)
    for t in (TicketRow(*row) for row in rows):
        by_id[t.id] = t
        if t.identity_id in wanted and t.status in JOINABLE_STATUSES:
            by_identity[t.identity_id] = t  # in id order: the newest wins
    return by_identity, by_id


class _Threads:
    """Where a batch's threaded messages (``answers``, ``ticket_refs``) may go: the tickets of the
    messages they answer, stored before or earlier in this batch, and who may write on each."""

    def __init__(self) -> None:
        self.answered: dict[tuple[str, str], int] = {}
        self.in_batch: dict[tuple[str, str], TicketRow] = {}
        self.participants: set[tuple[int, str, str]] = set()

    @staticmethod
    def threaded(msgs: Sequence[InboundMessage]) -> bool:
        return any(m.answers or m.ticket_refs for m in msgs)

    async def load_answered(self, conn: AsyncConnection, tenant_id: int, msgs: Sequence[InboundMessage]) -> list[int]:
        """The tickets the batch's messages answer or name (to be locked with the others)."""
        wanted: dict[str, set[str]] = defaultdict(set)
        refs: set[int] = set()
        for m in msgs:
            wanted[m.channel].update(m.answers)
            refs.update(m.ticket_refs)
        for channel, ids in wanted.items():
            if ids:
                rows = await conn.execute(_ANSWERED, {"tenant_id": tenant_id, "channel": channel, "ids": sorted(ids)})
                for cmid, ticket_id in rows:
                    self.answered[(channel, cmid)] = ticket_id
        return sorted(refs | set(self.answered.values()))

    async def load_participants(self, conn: AsyncConnection, tenant_id: int, channels: set[str],
                                ticket_ids: list[int]) -> None:
        for channel in channels:
            rows = await conn.execute(_PARTICIPANTS, {"tenant_id": tenant_id, "channel": channel,
                                                      "tickets": ticket_ids})
            self.participants.update((ticket_id, channel, external_id) for ticket_id, external_id in rows)

    def ticket_for(self, m: InboundMessage, customer: CustomerRow, by_id: dict[int, TicketRow]) -> TicketRow | None:
        """The first ticket the message threads to that its sender may write on and that is not closed."""
        candidates: list[TicketRow | None] = []
        for cmid in m.answers:
            key = (m.channel, cmid)
            candidates.append(self.in_batch.get(key) or by_id.get(self.answered.get(key, 0)))
        candidates.extend(by_id.get(ref) for ref in m.ticket_refs)
        for t in candidates:
            if t is None or t.status not in JOINABLE_STATUSES:
                continue
            if t.customer_id == customer.id or (self._key(t), m.channel, m.external_id) in self.participants:
                return t
        return None

    def stored(self, m: InboundMessage, ticket: TicketRow) -> None:
        """A message of this batch on its ticket: later ones may answer it, and its Cc may write."""
        self.in_batch[(m.channel, m.channel_message_id)] = ticket
        for p in m.participants:
            self.participants.add((self._key(ticket), m.channel, p))

    @staticmethod
    def _key(t: TicketRow) -> int:
        # A ticket this batch opens has no id yet: it is known by its row object until written.
        return t.id or -id(t)


def _insert_ignoring_repeats(conn: AsyncConnection, table: Any) -> Any:
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table).on_conflict_do_nothing()


async def _add_participants(conn: AsyncConnection, tenant_id: int, plan: list[tuple[int, TicketRow, CustomerRow, bool]],
                            msgs: Sequence[InboundMessage], people: dict[tuple[str, str], tuple[int, CustomerRow]]
                            ) -> None:
    rows: dict[tuple[int, str, str], dict[str, Any]] = {}
    for i, ticket, _customer, _is_new in plan:
        m = msgs[i]
        for p in m.participants:
            if p != m.external_id:
                rows.setdefault((ticket.id, m.channel, p), {"tenant_id": tenant_id, "ticket_id": ticket.id,
                                                            "channel": m.channel, "external_id": p,
                                                            "created_at": m.received_at})
    if rows:
        await conn.execute(_insert_ignoring_repeats(conn, _P), list(rows.values()))


async def _join(session: AsyncSession, ticket: TicketRow, msg: InboundMessage) -> None:
    """A customer's message on their ticket: a solved one reopens, a pending one is open again."""
    now = msg.received_at
    change = transitions.customer_wrote(ticket, now)
    if change is not None:
        # The slot is taken first, against the ticket as stored (solved: not counted in the agent's
        # per-channel load); the row is written back with the batch.
        change.apply(ticket, granted=await move_load(session, change, ticket.channel))
    if ticket.last_message_at is None or ticket.last_message_at < now:
        ticket.last_message_at = now
    if ticket.updated_at < now:
        ticket.updated_at = now


def _new_ticket(tenant_id: int, identity_id: int, customer: CustomerRow, msg: InboundMessage) -> TicketRow:
    now = msg.received_at
    return TicketRow(id=0, tenant_id=tenant_id, customer_id=customer.id, identity_id=identity_id, channel=msg.channel,
                     subject=_subject(msg), priority=Priority.NORMAL, priority_rank=PRIORITY_RANK[Priority.NORMAL],
                     tags=[], required_skills={}, routing_rule=None, group_id=None, created_at=now, updated_at=now,
                     last_message_at=now, first_response_at=None, **transitions.new_ticket())


_JOIN_UPDATE = (update(_T).where(_T.c.id == bindparam("_id"))
                .values({name: bindparam(name) for name in _JOIN_CHANGES}))


async def _write_tickets(conn: AsyncConnection, created: list[TicketRow], joined: list[TicketRow]) -> None:
    """The batch's new tickets in one INSERT, the joined ones in one UPDATE (executemany)."""
    if created:
        values = [{name: getattr(t, name) for name in TICKET_ROW_FIELDS if name != "id"} for t in created]
        # One multi-row INSERT; both databases number the rows in the order of the VALUES list (one
        # sender may open several tickets in a batch: e-mail opens one per new mail).
        ids = sorted((await conn.execute(_NEW_TICKETS, values)).scalars())
        for t, ticket_id in zip(created, ids, strict=True):
            t.id = ticket_id
    if joined:
        await conn.execute(_JOIN_UPDATE, [{"_id": t.id, **{name: getattr(t, name) for name in _JOIN_CHANGES}}
                                          for t in joined])


async def ingest_in(session: AsyncSession, hub: Hub, msgs: Sequence[InboundMessage]
                    ) -> tuple[list[IngestResult], list[dict[str, Any]]]:
    """Store messages of one tenant in ``session``'s transaction (checked with :func:`check_message`
    beforehand). Returns a result per message, in order, and the events to publish after commit.
    A probe's message (``msg.probe``, core.probes) is answered and stores nothing."""
    if any(m.probe for m in msgs):  # a prober's batch: rare, set apart before the real work
        return await _with_probes(session, hub, msgs)
    return await _ingest_in(session, hub, msgs)


_DATABASE_ANSWERS = select(literal(1))


def _probe_message(msg: InboundMessage) -> dict[str, Any]:
    """What a probe is answered with: its text, as a stored message would be shown (id 0: none)."""
    return {"id": 0, "ticket_id": None, "channel": msg.channel, "direction": Direction.INBOUND.value,
            "text": msg.text, "attachments": [], "created_at": iso(msg.received_at), "author": None}


async def _with_probes(session: AsyncSession, hub: Hub, msgs: Sequence[InboundMessage]
                       ) -> tuple[list[IngestResult], list[dict[str, Any]]]:
    """A batch holding probes: the others ingested as always; each probe answered and echoed
    (:func:`after_commit`) once the batch's transaction has read from the database, so a probe
    proves the path a customer's message takes, its database included, and leaves nothing: no
    customer, ticket, message, event, search document or routing job."""
    await (await session.connection()).execute(_DATABASE_ANSWERS)
    real = [m for m in msgs if not m.probe]
    stored, events = await _ingest_in(session, hub, real)
    stored_in_order = iter(stored)
    results = [IngestResult(_probe_message(m), {}, False, False,
                            echo=probe_topic(m.tenant_id, m.channel, m.external_id)) if m.probe
               else next(stored_in_order) for m in msgs]
    return results, events


async def _ingest_in(session: AsyncSession, hub: Hub, msgs: Sequence[InboundMessage]
                     ) -> tuple[list[IngestResult], list[dict[str, Any]]]:
    if not msgs:
        return [], []
    tenant_id = msgs[0].tenant_id
    if any(m.tenant_id != tenant_id for m in msgs):
        raise ValueError("ingest_in takes the messages of one tenant")
    results: list[IngestResult | None] = [None] * len(msgs)
    conn = await session.connection()
    existing = await _existing(conn, tenant_id, msgs)
    # The batch itself may hold one message twice (a retry that landed beside the first try).
    first: dict[tuple[str, str], int] = {}
    fresh: list[int] = []
    for i, m in enumerate(msgs):
        key = (m.channel, m.channel_message_id)
        if key in existing:
            results[i] = existing[key]
        elif key not in first:
            first[key] = i
            fresh.append(i)
    if not fresh:
        return _with_repeats(msgs, results, first), []

    batch = [msgs[i] for i in fresh]
    people, renamed = await _identities(session, conn, tenant_id, batch)
    threads = _Threads()
    thread_ids = await threads.load_answered(conn, tenant_id, batch) if threads.threaded(batch) else []
    tickets, by_id = await _joinable(
        conn, tenant_id, sorted({people[(m.channel, m.external_id)][0] for m in batch if m.join_open}), thread_ids)
    if thread_ids:
        await threads.load_participants(conn, tenant_id, {m.channel for m in batch if m.answers or m.ticket_refs},
                                        thread_ids)
    # Walk the batch in order: a message joins the ticket it threads to, or (a chat) its sender's
    # open ticket; otherwise it opens one, which the sender's next messages in a chat join.
    plan: list[tuple[int, TicketRow, CustomerRow, bool]] = []
    created: list[TicketRow] = []
    joined: dict[int, TicketRow] = {}
    for i in fresh:
        m = msgs[i]
        identity_id, customer = people[(m.channel, m.external_id)]
        ticket = threads.ticket_for(m, customer, by_id) if (m.answers or m.ticket_refs) else None
        if ticket is None and m.join_open:
            ticket = tickets.get(identity_id)
        is_new = ticket is None
        if ticket is None:
            ticket = _new_ticket(tenant_id, identity_id, customer, m)
            if m.join_open:
                tickets[identity_id] = ticket
            await hub.router.apply_rules(session, ticket, customer, m.text)
            created.append(ticket)
        else:
            await _join(session, ticket, m)
            if ticket.id:  # not one this batch opened
                joined[ticket.id] = ticket
        threads.stored(m, ticket)
        plan.append((i, ticket, customer, is_new))
    await _write_tickets(conn, created, list(joined.values()))
    if any(msgs[i].participants for i in fresh):
        await _add_participants(conn, tenant_id, plan, msgs, people)

    stored = [MessageRow(0, ticket.id, msgs[i].channel, Direction.INBOUND, msgs[i].text,
                         [a.to_dict() for a in msgs[i].attachments], msgs[i].received_at) for i, ticket, _, _ in plan]
    rows = [{"tenant_id": tenant_id, "ticket_id": m.ticket_id, "channel": m.channel, "direction": m.direction,
             "body": m.body, "attachments": m.attachments, "channel_message_id": msgs[i].channel_message_id,
             "created_at": m.created_at} for m, (i, _, _, _) in zip(stored, plan, strict=True)]
    # One multi-row INSERT; both databases number the rows in the order of the VALUES list.
    ids = sorted((await conn.execute(_NEW_MESSAGES, rows)).scalars())
    # What search finds, in this transaction: new tickets' subjects and customers, the messages.
    docs = Docs(tenant_id, conn.dialect.name == "postgresql")
    await docs.customers_changed(conn, {c.id: (c.name, c.email) for c in renamed.values()})
    for (i, ticket, customer, is_new), message_id in zip(plan, ids, strict=True):
        if is_new:
            docs.ticket(ticket.id, ticket.subject, customer.name, customer.email, msgs[i].external_id)
        docs.message(ticket.id, message_id, msgs[i].text)
    await docs.write(conn)
    log = EventLog(session)
    views: dict[int, dict[str, Any]] = {}
    for (i, ticket, customer, is_new), message, message_id in zip(plan, stored, ids, strict=True):
        message.id = message_id
        tdict = views.get(ticket.id)
        if tdict is None:
            tdict = views[ticket.id] = ticket_dict(ticket, customer)
        mdict = message_dict(message, customer=customer)
        if is_new:
            log.add(EventKind.TICKET_CREATED, tenant_id=tenant_id, ticket=ticket, payload={"ticket": tdict})
        log.add(EventKind.MESSAGE_CREATED, tenant_id=tenant_id, ticket=ticket,
                payload={"ticket": tdict, "message": mdict})
        results[i] = IngestResult(mdict, tdict, False, is_new, ticket.routing_state == transitions.RoutingState.PENDING)
    events = await log.flush()
    return _with_repeats(msgs, results, first), events


def _with_repeats(msgs: Sequence[InboundMessage], results: list[IngestResult | None],
                  first: dict[tuple[str, str], int]) -> list[IngestResult]:
    out: list[IngestResult] = []
    for m, result in zip(msgs, results, strict=True):
        if result is None:
            original = results[first[(m.channel, m.channel_message_id)]]
            assert original is not None
            result = IngestResult(original.message, original.ticket, True, False)
        out.append(result)
    return out


async def after_commit(hub: Hub, tenant_id: int, results: Sequence[IngestResult], events: list[dict[str, Any]]) -> None:
    """Publish what a committed batch recorded, wake the router for tickets that wait, and echo
    probes to their prober (core.probes)."""
    await hub.publish(tenant_id, events)
    for r in results:
        if r.echo is not None:
            await hub.bus.publish(r.echo, {"type": "echo", "message": r.message})
    if any(r.needs_routing for r in results):
        hub.router.signal(tenant_id, capacity=False)


async def ingest_scoped(session: AsyncSession, hub: Hub, tenant_id: int, msgs: Sequence[InboundMessage]
                        ) -> tuple[list[IngestResult], list[dict[str, Any]]]:
    """:func:`ingest_in` for one tenant's messages in a transaction that may hold several tenants'
    (a batch): the session is scoped to that tenant meanwhile, as a request's would be."""
    session.info["tenant_id"] = tenant_id
    try:
        return await ingest_in(session, hub, msgs)
    finally:
        session.info["tenant_id"] = None


async def ingest_many(hub: Hub, msgs: Sequence[InboundMessage]) -> list[IngestResult]:
    """Store messages (of any tenants) in one transaction; returns a result per message, in order.
    The live channels' group commit (core.inbox) hands it everything that arrived meanwhile."""
    for m in msgs:
        check_message(m, hub.settings.max_message_bytes)
    by_tenant: dict[int, list[int]] = defaultdict(list)
    for i, m in enumerate(msgs):
        by_tenant[m.tenant_id].append(i)
    for attempt in range(3):
        done: list[tuple[int, list[int], list[IngestResult], list[dict[str, Any]]]] = []
        try:
            async with hub.db.session() as session:
                for tenant_id, positions in by_tenant.items():
                    results, events = await ingest_scoped(session, hub, tenant_id, [msgs[i] for i in positions])
                    done.append((tenant_id, positions, results, events))
        except IntegrityError:
            # Two deliveries of one message (or two first messages of one new customer) raced
            # another process; the loser rolled back, and the retry finds what the winner stored.
            if attempt == 2:
                raise
            logger.debug("ingest race; retrying")
            continue
        break
    out: list[IngestResult | None] = [None] * len(msgs)
    for tenant_id, positions, results, events in done:
        await after_commit(hub, tenant_id, results, events)
        for i, result in zip(positions, results, strict=True):
            out[i] = result
    return [r for r in out if r is not None]


async def ingest(hub: Hub, msg: InboundMessage) -> IngestResult:
    return (await ingest_many(hub, [msg]))[0]
