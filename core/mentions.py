"""@mentions in internal notes (#13): who a note names, the ``mention`` event to each, and their list.

**Syntax** (only in notes; a reply to the customer mentions nobody):

- ``@[Display Name](agent:42)`` — the canonical form, which the console's picker inserts: the id
  decides, the name in brackets is only shown (it may be any text without ``]``, Chinese included).
- ``@someone@example.com`` — an agent's sign-in e-mail, matched without regard to case.
- ``@Name`` — an agent's name as written, matched without regard to case; the longest name that the
  text continues with wins (``@张伟明`` names 张伟明, not 张伟). A name ending in a Latin letter or
  digit must not run on into another one (``@Ann`` does not name Ann in ``@Annabel``); Chinese has
  no spaces, so a CJK name may be followed by anything (``@张伟请看`` names 张伟).

Only active agents of the tenant are mentioned, each once per note, the author never. A mention is
stored (``mentions``) in the transaction that stores the note and published to the agent mentioned
only (:data:`core.events.EventKind.MENTION`), with the ticket, the note and its author. **A mention
lets that agent open the ticket** — read it (GET /api/v1/tickets/{id}, ``get_ticket``) and add
notes to it — whoever it is assigned to: asking a colleague for help is the point of mentioning
them. It does not let them reply to the customer or change the ticket.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.auth import Principal
from core.events import EventKind, EventLog
from core.models import Agent, Customer, Mention, Message, Ticket, table_of, utcnow
from core.serialize import iso, ticket_dict

if TYPE_CHECKING:
    from core.hub import Hub

_CANONICAL = re.compile(r"@\[([^\]\n]{0,200})\]\(agent:([0-9]{1,10})\)")
_LATIN = re.compile(r"[0-9A-Za-z]")
_EMAIL_CHARS = re.compile(r"[A-Za-z0-9._%+\-@]")
MAX_MENTIONS = 50


@dataclass(frozen=True, slots=True)
class Person:
    id: int
    name: str
    email: str


def find(text: str, agents: Sequence[Person]) -> list[int]:
    """The ids of the agents a note's ``text`` mentions, in the order they first appear."""
    by_id = {a.id: a for a in agents}
    found: list[int] = []

    def add(agent_id: int) -> None:
        if agent_id in by_id and agent_id not in found:
            found.append(agent_id)

    spans: list[tuple[int, int]] = []
    for m in _CANONICAL.finditer(text):
        add(int(m.group(2)))
        spans.append(m.span())
    emails = {a.email.casefold(): a.id for a in agents}
    # Longest names first, so the longest one the text continues with wins.
    names = sorted(((a.name.casefold(), a.id) for a in agents if a.name.strip()), key=lambda n: -len(n[0]))
    folded = text.casefold()
    for i, ch in enumerate(text):
        if ch != "@" or any(a <= i < b for a, b in spans):
            continue
        if i > 0 and _EMAIL_CHARS.match(text[i - 1]) and text[i - 1] != " ":
            continue  # the @ of an address (someone@example.com), not a mention
        end = i + 1
        while end < len(text) and _EMAIL_CHARS.match(text[end]):
            end += 1
        word = folded[i + 1:end].rstrip(".")
        if "@" in word and word in emails:
            add(emails[word])
            continue
        rest = folded[i + 1:]
        for name, agent_id in names:
            if not rest.startswith(name):
                continue
            after = rest[len(name):len(name) + 1]
            if _LATIN.match(name[-1]) and after and _LATIN.match(after):
                continue
            add(agent_id)
            break
    return found[:MAX_MENTIONS]


async def _people(session: AsyncSession, tenant_id: int) -> list[Person]:
    rows = await session.execute(select(Agent.id, Agent.name, Agent.email)
                                 .where(Agent.tenant_id == tenant_id, Agent.active.is_(True)))
    return [Person(i, n, e) for i, n, e in rows]


@dataclass(frozen=True, slots=True)
class Note:
    """A note just written (core.ticket_writes): what a mention needs of it."""

    message_id: int
    ticket: Any  # TicketRow or Ticket
    customer: Any
    text: str
    author_id: int
    author_name: str
    created_at: datetime


async def record(session: AsyncSession, tenant_id: int, notes: Sequence[Note], log: EventLog) -> None:
    """Store the mentions of notes written in this transaction and add their events to ``log``."""
    notes = [n for n in notes if "@" in n.text]
    if not notes:
        return
    people = await _people(session, tenant_id)
    names = {p.id: p.name for p in people}
    rows: list[dict[str, Any]] = []
    events: list[tuple[Note, int]] = []
    for note in notes:
        for agent_id in find(note.text, people):
            if agent_id == note.author_id:
                continue
            rows.append({"tenant_id": tenant_id, "agent_id": agent_id, "ticket_id": note.ticket.id,
                         "message_id": note.message_id, "author_agent_id": note.author_id,
                         "created_at": note.created_at})
            events.append((note, agent_id))
    if not rows:
        return
    table = table_of(Mention)
    ids = sorted((await session.execute(insert(table).returning(table.c.id), rows)).scalars())
    for mention_id, (note, agent_id) in zip(ids, events, strict=True):
        log.add(EventKind.MENTION, tenant_id=tenant_id, ticket_id=note.ticket.id, assignee_id=agent_id, payload={
            "mention_id": mention_id, "mentioned_agent_id": agent_id, "agent_name": names.get(agent_id),
            "note_id": note.message_id, "text": note.text,
            "author": {"type": "agent", "id": note.author_id, "name": note.author_name},
            "ticket": ticket_dict(note.ticket, note.customer)})


async def granted(session: AsyncSession, pairs: Collection[tuple[int, int]]) -> set[tuple[int, int]]:
    """Which (agent, ticket) of ``pairs`` were mentioned there: they may open the ticket and add notes."""
    if not pairs:
        return set()
    rows = await session.execute(select(Mention.agent_id, Mention.ticket_id).where(
        Mention.agent_id.in_(sorted({a for a, _ in pairs})), Mention.ticket_id.in_(sorted({t for _, t in pairs}))))
    return {(a, t) for a, t in rows} & set(pairs)


def _view(m: Mention, message: Message, ticket: Ticket, customer: Customer, author: str | None) -> dict[str, Any]:
    return {"id": m.id, "ticket_id": m.ticket_id, "note_id": m.message_id, "text": message.body,
            "author": {"type": "agent", "id": m.author_agent_id, "name": author},
            "ticket": ticket_dict(ticket, customer), "created_at": iso(m.created_at), "read_at": iso(m.read_at)}


async def my_mentions(hub: Hub, principal: Principal, *, unread_only: bool = False, before_id: int | None = None,
                      limit: int = 50) -> dict[str, Any]:
    """The caller's mentions: unread first, then read ones, newest first in each; ``before_id``
    pages on within what ``unread_only`` selects (ids only go down)."""
    author = Agent.__table__.alias("author")
    stmt = (select(Mention, Message, Ticket, Customer, author.c.name)
            .join(Message, Message.id == Mention.message_id).join(Ticket, Ticket.id == Mention.ticket_id)
            .join(Customer, Customer.id == Ticket.customer_id)
            .outerjoin(author, author.c.id == Mention.author_agent_id)
            .where(Mention.agent_id == principal.agent_id))
    if unread_only:
        stmt = stmt.where(Mention.read_at.is_(None))
    if before_id is not None:
        stmt = stmt.where(Mention.id < before_id)
    stmt = stmt.order_by(Mention.read_at.is_not(None), Mention.id.desc()).limit(limit)
    async with hub.db.read(principal.tenant_id) as session:
        rows = (await session.execute(stmt)).all()
        unread = (await session.execute(select(func.count(Mention.id)).where(
            Mention.agent_id == principal.agent_id, Mention.read_at.is_(None)))).scalar_one()
    return {"mentions": [_view(*row) for row in rows], "unread": unread}


async def mark_read(hub: Hub, principal: Principal, ids: Iterable[int] | None) -> dict[str, Any]:
    """Mark the caller's mentions read: those ``ids`` (others' and unknown ids are ignored), or all
    when ``ids`` is None. Returns how many were newly marked and how many stay unread."""
    stmt = update(Mention).where(Mention.agent_id == principal.agent_id, Mention.read_at.is_(None))
    if ids is not None:
        stmt = stmt.where(Mention.id.in_(sorted(set(ids))))
    async with hub.db.session(principal.tenant_id) as session:
        result = await session.execute(stmt.values(read_at=utcnow()).execution_options(synchronize_session=False))
        unread = (await session.execute(select(func.count(Mention.id)).where(
            Mention.agent_id == principal.agent_id, Mention.read_at.is_(None)))).scalar_one()
    return {"marked": int(getattr(result, "rowcount", 0) or 0), "unread": unread}
