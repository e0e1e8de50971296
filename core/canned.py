"""Canned replies (#13): prepared answers an agent inserts with ``/shortcut``, and their placeholders.

Two scopes: the tenant's (``agent_id`` null; admins add, change and remove them, everyone uses them)
and each agent's personal ones (only their author sees, uses, changes and removes them; to anyone
else they do not exist, 404). A shortcut names one reply per scope, so a personal ``/refund`` may
stand beside the tenant's; lists give personal ones first.

**Placeholders** (also in macros' replies and notes): ``{{customer.name}}``, ``{{customer.email}}``,
``{{agent.name}}`` (the agent using it), ``{{ticket.id}}``, ``{{ticket.subject}}``; spaces inside
the braces are allowed. A value that is missing (or empty) becomes the empty string, or the fallback
written after a bar: ``{{customer.name|there}}`` gives "there" for a customer without a name. Any
other name in double braces is refused when the text is saved (422 ``unknown_placeholder``, naming
them); a lone ``{{`` with no closing braces is plain text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import audit
from core.auth import Principal
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.models import Agent, CannedReply, Customer, Ticket, utcnow
from core.serialize import iso

if TYPE_CHECKING:
    from core.hub import Hub

PLACEHOLDERS = ("customer.name", "customer.email", "agent.name", "ticket.id", "ticket.subject")
_PLACEHOLDER = re.compile(r"\{\{([^{}]*)\}\}")
_SHORTCUT = re.compile(r"^[\w-]{1,64}$")
MAX_TEXT = 16 * 1024


def placeholders_in(text: str) -> list[tuple[str, str | None]]:
    """Each placeholder of ``text``: its name and its fallback (None without a bar)."""
    out = []
    for m in _PLACEHOLDER.finditer(text):
        name, bar, fallback = m.group(1).partition("|")
        out.append((name.strip(), fallback if bar else None))
    return out


def check_text(text: str, *, what: str = "text") -> None:
    """Refuse a text with placeholders we do not know (422 ``unknown_placeholder``, naming them)."""
    unknown = sorted({name for name, _ in placeholders_in(text) if name not in PLACEHOLDERS})
    if unknown:
        raise InvalidInput(f"{what}: unknown placeholder(s) {', '.join('{{' + u + '}}' for u in unknown)}; "
                           f"known: {', '.join('{{' + p + '}}' for p in PLACEHOLDERS)}",
                           code="unknown_placeholder", details={"unknown": unknown})


def render(text: str, values: Mapping[str, Any]) -> str:
    """``text`` with its placeholders filled from ``values`` (see the module's docstring)."""
    def fill(m: re.Match[str]) -> str:
        name, bar, fallback = m.group(1).partition("|")
        value = values.get(name.strip())
        if value is None or value == "":
            return fallback if bar else ""
        return str(value)

    return _PLACEHOLDER.sub(fill, text)


async def values_for(session: AsyncSession, ticket: Ticket, principal: Principal) -> dict[str, Any]:
    """The placeholders' values for ``ticket`` as ``principal`` writes on it."""
    customer = (await session.execute(select(Customer).where(Customer.id == ticket.customer_id))).scalar_one()
    name = (await session.execute(select(Agent.name).where(Agent.id == principal.agent_id))).scalar_one_or_none()
    return {"customer.name": customer.name, "customer.email": customer.email,
            "agent.name": name or principal.name, "ticket.id": ticket.id, "ticket.subject": ticket.subject}


def view(c: CannedReply) -> dict[str, Any]:
    return {"id": c.id, "scope": "personal" if c.agent_id is not None else "tenant", "agent_id": c.agent_id,
            "shortcut": c.shortcut, "title": c.title, "text": c.body, "created_by": c.created_by,
            "created_at": iso(c.created_at), "updated_at": iso(c.updated_at)}


def _usable(principal: Principal) -> Any:
    return or_(CannedReply.agent_id.is_(None), CannedReply.agent_id == principal.agent_id)


def _shortcut(value: str) -> str:
    value = value.strip().lstrip("/").casefold()
    if not _SHORTCUT.match(value):
        raise InvalidInput("shortcut: 1-64 letters, digits, _ or - (any script), without spaces",
                           code="invalid_shortcut")
    return value


async def list_canned(hub: Hub, principal: Principal, *, q: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The replies the caller may use (the tenant's and their own), personal first, then by
    shortcut; ``q`` keeps those whose shortcut, title or text contain it (a leading ``/`` is the
    shortcut's: ``/ref`` finds the shortcuts that start with "ref")."""
    stmt = select(CannedReply).where(_usable(principal))
    if q:
        needle = q.strip()
        if needle.startswith("/"):
            stmt = stmt.where(CannedReply.shortcut.startswith(needle[1:].casefold(), autoescape=True))
        elif needle:
            low = needle.lower()
            stmt = stmt.where(or_(CannedReply.shortcut.contains(needle.casefold(), autoescape=True),
                                  func.lower(CannedReply.title).contains(low, autoescape=True),
                                  func.lower(CannedReply.body).contains(low, autoescape=True)))
    stmt = stmt.order_by(CannedReply.agent_id.is_(None), CannedReply.shortcut, CannedReply.id).limit(limit)
    async with hub.db.read(principal.tenant_id) as session:
        return [view(c) for c in (await session.execute(stmt)).scalars()]


async def _get(session: AsyncSession, principal: Principal, canned_id: int, *, lock: bool = False) -> CannedReply:
    stmt = select(CannedReply).where(CannedReply.id == canned_id, _usable(principal))
    if lock:
        stmt = stmt.with_for_update()
    found = (await session.execute(stmt)).scalar_one_or_none()
    if found is None:
        raise NotFound(f"canned reply {canned_id} not found", code="canned_not_found")
    return found


def _may_change(principal: Principal, c: CannedReply) -> None:
    if c.agent_id is None and not principal.is_admin:
        raise Forbidden("the tenant's canned replies are managed by admins", code="admin_only")


def _taken(shortcut: str) -> Conflict:
    return Conflict(f"the shortcut /{shortcut} is taken in that scope", code="shortcut_taken")


async def create(hub: Hub, principal: Principal, *, scope: str, shortcut: str, title: str, text: str) -> dict[str, Any]:
    if scope == "tenant" and not principal.is_admin:
        raise Forbidden("the tenant's canned replies are managed by admins", code="admin_only")
    shortcut = _shortcut(shortcut)
    check_text(text)
    now = utcnow()
    reply = CannedReply(tenant_id=principal.tenant_id, agent_id=principal.agent_id if scope == "personal" else None,
                        shortcut=shortcut, title=title, body=text, created_by=principal.agent_id, created_at=now,
                        updated_at=now)
    try:
        async with hub.db.session(principal.tenant_id) as session:
            await _check_free(session, reply.agent_id, shortcut, None)
            session.add(reply)
            await session.flush()
            _audit(session, principal, "canned_reply.create", reply, {"scope": scope, "shortcut": shortcut,
                                                                       "title": title})
            return view(reply)
    except IntegrityError:
        raise _taken(shortcut) from None


def _audit(session: AsyncSession, principal: Principal, action: str, reply: CannedReply,
           details: dict[str, Any]) -> None:
    # The reply's text is content, like a message's: the audit names the fields that changed, not it.
    audit(session, tenant_id=principal.tenant_id, actor_type="agent", actor_id=principal.agent_id, action=action,
          target_type="canned_reply", target_id=reply.id, details=details)


async def _check_free(session: AsyncSession, agent_id: int | None, shortcut: str, own_id: int | None) -> None:
    scope = CannedReply.agent_id.is_(None) if agent_id is None else CannedReply.agent_id == agent_id
    stmt = select(CannedReply.id).where(scope, CannedReply.shortcut == shortcut)
    if own_id is not None:
        stmt = stmt.where(CannedReply.id != own_id)
    if (await session.execute(stmt)).first() is not None:
        raise _taken(shortcut)


async def update(hub: Hub, principal: Principal, canned_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    try:
        async with hub.db.session(principal.tenant_id) as session:
            reply = await _get(session, principal, canned_id, lock=True)
            _may_change(principal, reply)
            before = {"shortcut": reply.shortcut, "title": reply.title}
            if changes.get("shortcut") is not None:
                reply.shortcut = _shortcut(changes["shortcut"])
                await _check_free(session, reply.agent_id, reply.shortcut, reply.id)
            if changes.get("title") is not None:
                reply.title = changes["title"]
            if changes.get("text") is not None:
                check_text(changes["text"])
                reply.body = changes["text"]
            reply.updated_at = utcnow()
            await session.flush()
            after = {"shortcut": reply.shortcut, "title": reply.title}
            _audit(session, principal, "canned_reply.update", reply, {
                "before": {k: v for k, v in before.items() if after[k] != v},
                "after": {k: v for k, v in after.items() if before[k] != v},
                "text_changed": changes.get("text") is not None})
            return view(reply)
    except IntegrityError:
        raise _taken(str(changes.get("shortcut"))) from None


async def delete(hub: Hub, principal: Principal, canned_id: int) -> None:
    async with hub.db.session(principal.tenant_id) as session:
        reply = await _get(session, principal, canned_id, lock=True)
        _may_change(principal, reply)
        _audit(session, principal, "canned_reply.delete", reply, {"shortcut": reply.shortcut, "title": reply.title,
                                                                   "scope": "personal" if reply.agent_id else "tenant"})
        await session.delete(reply)


async def render_for_ticket(hub: Hub, principal: Principal, ticket_id: int, canned_id: int) -> dict[str, Any]:
    """A canned reply's text filled in for a ticket the caller may see."""
    from core.tickets import can_see, was_mentioned

    async with hub.db.read(principal.tenant_id) as session:
        ticket = (await session.execute(select(Ticket).where(Ticket.id == ticket_id))).scalar_one_or_none()
        if ticket is None or not (await can_see(session, principal, ticket)
                                  or await was_mentioned(session, principal, ticket_id)):
            raise NotFound(f"ticket {ticket_id} not found", code="ticket_not_found")
        reply = await _get(session, principal, canned_id)
        values = await values_for(session, ticket, principal)
    return {"canned_reply_id": reply.id, "ticket_id": ticket_id, "shortcut": reply.shortcut,
            "text": render(reply.body, values)}
