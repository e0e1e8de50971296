"""Full-text search over tickets' subjects, their messages (internal notes included: they are the
team's own) and their customers, for the signed-in agent: only the tickets they may see
(core.tickets.visible), only their tenant's (every statement names the tenant, and the session is
scoped to it as well).

Results are tickets, newest match first: the documents matching the query are read newest first
(a document's id: a message's arrival, a ticket's creation for its subject and customer) with their
tickets' visibility in the same statement, and each ticket is shown once, with its newest match.
The database stops at the first rows it needs (FTS5 walks its index by rowid, descending;
PostgreSQL either walks ix_search_docs_tenant_id_id backwards testing each row, or takes the GIN
index's matches and keeps the newest, whichever its estimate says is cheaper). Pages go on from
``next_before``; a ticket already shown on an earlier page (a newer match) is not shown again.
See core.textsearch for the tokens and docs/architecture.md, "Search", for the choice of indexes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import column, func, select, table, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.auth import Principal
from core.models import Customer, CustomerIdentity, Message, SearchDoc, Ticket
from core.serialize import iso
from core.textsearch import CUSTOMER, MESSAGE, Phrase, fts5_query, parse_query, snippet, tsquery
from core.tickets import visible

if TYPE_CHECKING:
    from core.hub import Hub

# Documents read per round, per result wanted; rounds at most (an agent who sees few of the
# matching tickets gets a shorter page and a cursor rather than a long scan).
_PER_RESULT = 5
_ROUNDS = 4

_FTS = table("search_fts", column("rowid"))
# PostgreSQL: the newest documents are walked first, in windows of these many ids (see _matches).
_WINDOWS = (10_000,)


def _matches(phrases: list[Phrase], principal: Principal, *, postgres: bool, before: int | None,
             after: int | None = None, tickets: Sequence[int] = (), limit: int | None = None,
             walk: bool = False) -> Any:
    """The matching documents of tickets the caller may see, newest first: (doc id, ticket id,
    kind, message id). ``before``/``after``: doc ids below / at or above; ``tickets``: only these.

    ``walk`` (PostgreSQL): read the tenant's documents in [after, before) newest first and test
    each, instead of asking the GIN index. PostgreSQL estimates a phrase's matches as if its
    bigrams were independent (for 退款申请, 219 rows where there are 55,000), then takes every
    match from the GIN index and sorts them: 450 ms where walking finds the newest hundred in 2.
    The subquery with OFFSET 0 keeps the planner from pushing the match into it; the window
    bounds the walk when matches are rare, where the GIN index is the better way."""
    d = SearchDoc
    doc_id: Any
    if postgres:
        # Both ways in a subquery with OFFSET 0, which the planner neither flattens nor pushes
        # conditions into: walking, the match is tested above it, on rows read newest first (and
        # the LIMIT stops the reading); otherwise the match is inside, where the GIN index serves
        # it whatever the estimate (ordered by id and limited outside, a rare term's estimate
        # made the planner walk all the documents backwards instead: a second).
        match = text("terms @@ CAST(:tsq AS tsquery)").bindparams(tsq=tsquery(phrases))
        rows = select(d).where(d.tenant_id == principal.tenant_id)
        if after is not None:
            rows = rows.where(d.id >= after)
        if before is not None:
            rows = rows.where(d.id < before)
        if tickets:
            rows = rows.where(d.ticket_id.in_(sorted(tickets)))
        rows = rows.order_by(d.id.desc()) if walk else rows.where(match)
        found = rows.offset(0).subquery("found")
        stmt = (select(found.c.id, found.c.ticket_id, found.c.kind, found.c.message_id)
                .join(Ticket, Ticket.id == found.c.ticket_id)
                .where(Ticket.tenant_id == principal.tenant_id, visible(principal))
                .order_by(found.c.id.desc()))
        if walk:
            stmt = stmt.where(text("found.terms @@ CAST(:tsq AS tsquery)").bindparams(tsq=tsquery(phrases)))
        return stmt.limit(limit) if limit is not None else stmt
    # SQLite: FTS5 drives; it walks its index newest first (ORDER BY its rowid) and stops at LIMIT.
    doc_id = _FTS.c.rowid
    stmt = select(d.id, d.ticket_id, d.kind, d.message_id).select_from(_FTS).join(d, d.id == _FTS.c.rowid).where(
        text("search_fts MATCH :fts").bindparams(fts=fts5_query(phrases)))
    stmt = stmt.join(Ticket, Ticket.id == d.ticket_id).where(
        d.tenant_id == principal.tenant_id, Ticket.tenant_id == principal.tenant_id, visible(principal))
    if before is not None:
        stmt = stmt.where(doc_id < before)
    if after is not None:
        stmt = stmt.where(doc_id >= after)
    if tickets:
        stmt = stmt.where(d.ticket_id.in_(sorted(tickets)))
    stmt = stmt.order_by(doc_id.desc())
    return stmt.limit(limit) if limit is not None else stmt


async def search(hub: Hub, principal: Principal, q: str, *, limit: int = 20, before: int | None = None
                 ) -> dict[str, Any]:
    phrases = parse_query(q)
    postgres = not hub.db.is_sqlite
    chunk = limit * _PER_RESULT
    picked: dict[int, tuple[int, str, int | None]] = {}  # ticket id → its newest match (doc, kind, message)
    cursor = before
    exhausted = False
    async with hub.db.read(principal.tenant_id) as session:
        windows: list[int] = []
        if postgres:
            top = cursor if cursor is not None else 1 + ((await session.execute(
                select(func.max(SearchDoc.id)).where(SearchDoc.tenant_id == principal.tenant_id))).scalar() or 0)
            cursor, windows = top, [max(1, top - w) for w in _WINDOWS]
        rounds = _ROUNDS + len(windows)
        while rounds:
            rounds -= 1
            floor = windows[0] if windows else None
            rows = (await session.execute(_matches(phrases, principal, postgres=postgres, before=cursor,
                                                   after=floor, limit=chunk, walk=floor is not None))).all()
            for doc_id, ticket_id, kind, message_id in rows:
                cursor = doc_id
                if ticket_id not in picked:
                    picked[ticket_id] = (doc_id, kind, message_id)
                    if len(picked) == limit:
                        break
            if len(picked) == limit:
                break
            if len(rows) < chunk:
                if floor is None:
                    exhausted = True
                    break
                cursor = floor  # this window is read: on to the next, then the index
                windows.pop(0)
        if before is not None and picked:
            # Shown on an earlier page: they have a newer match (their documents, read by ticket).
            shown = (await session.execute(_matches(phrases, principal, postgres=postgres, before=None,
                                                    after=before, tickets=list(picked),
                                                    walk=postgres))).all()
            for row in shown:
                picked.pop(row[1], None)
        results = await _results(session, phrases, picked)
    return {"results": results, "next_before": None if exhausted else cursor}


async def _results(session: AsyncSession, phrases: list[Phrase], picked: dict[int, tuple[int, str, int | None]]
                   ) -> list[dict[str, Any]]:
    if not picked:
        return []
    tickets = {t.id: (t, c) for t, c in (await session.execute(
        select(Ticket, Customer).join(Customer, Customer.id == Ticket.customer_id)
        .where(Ticket.id.in_(sorted(picked))))).all()}
    message_ids = sorted(m for _, kind, m in picked.values() if kind == MESSAGE and m is not None)
    bodies = dict((await session.execute(select(Message.id, Message.body).where(Message.id.in_(message_ids)))).all()) \
        if message_ids else {}
    identity_ids = sorted({t.identity_id for ticket_id, (_, kind, _) in picked.items() if kind == CUSTOMER
                           and (t := tickets.get(ticket_id, (None, None))[0]) is not None
                           and t.identity_id is not None})
    external = dict((await session.execute(select(CustomerIdentity.id, CustomerIdentity.external_id)
                                           .where(CustomerIdentity.id.in_(identity_ids)))).all()) \
        if identity_ids else {}
    out: list[dict[str, Any]] = []
    for ticket_id, (doc_id, kind, message_id) in picked.items():
        found = tickets.get(ticket_id)
        if found is None:
            continue
        ticket, customer = found
        field = kind
        if kind == MESSAGE:
            cut, _ = snippet(bodies.get(message_id or 0, ""), phrases)
        elif kind == CUSTOMER:
            fields = (("name", customer.name), ("email", customer.email),
                      ("external_id", external.get(ticket.identity_id or 0)))
            cut, field = {"text": "", "highlights": []}, "name"
            for name, value in fields:
                if value:
                    candidate, hit = snippet(value, phrases)
                    if hit or not cut["text"]:
                        cut, field = candidate, name
                    if hit:
                        break
        else:
            cut, _ = snippet(ticket.subject or "", phrases)
        out.append({
            "ticket_id": ticket.id, "subject": ticket.subject, "status": ticket.status, "priority": ticket.priority,
            "channel": ticket.channel, "assignee_id": ticket.assignee_id, "updated_at": iso(ticket.updated_at),
            "customer": {"id": customer.id, "name": customer.name},
            "matched": kind, "field": field if kind == CUSTOMER else None,
            "message_id": message_id if kind == MESSAGE else None, "snippet": cut, "doc_id": doc_id,
        })
    return out
