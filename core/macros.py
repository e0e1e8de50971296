"""Macros (#13): several actions applied to a ticket at once, managed by the tenant's admins.

A macro is a name, an optional description and 1-20 actions, each type at most once:

- ``{"type": "reply", "text"}`` — a reply to the customer (placeholders as in core.canned), stored
  and delivered like any reply (the outbox; web chat at once);
- ``{"type": "note", "text"}`` — an internal note (its @mentions notify, core.mentions);
- ``{"type": "add_tags", "tags": [...]}``, ``{"type": "remove_tags", "tags": [...]}``;
- ``{"type": "status", "status"}``, ``{"type": "priority", "priority"}``;
- ``{"type": "group", "group_id"}`` — transfer to a group (the router then picks an agent there).

Applying one (POST /api/v1/tickets/{id}/macros/{macro_id}) is all or nothing, in one transaction,
in this order whatever the order saved: the reply, the note, tags / priority / status, the
transfer. Every check of every action runs before anything is kept (a status the ticket cannot
take, a closed ticket for a reply, a group removed since, no room for the agent a reply makes
the ticket's); the first that fails refuses the whole macro with its own error. Its events are
published together once it committed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core import canned, transitions
from core.audit import audit
from core.auth import Principal
from core.capacity import lock_agents, move_load
from core.errors import Conflict, InvalidInput, NotFound
from core.events import EventKind, EventLog
from core.ingest import check_text as check_size
from core.models import Customer, Direction, Group, Macro, Priority, Ticket, TicketStatus, utcnow
from core.serialize import iso, ticket_dict
from core.ticket_writes import write_together
from core.tickets import Change, Reply, can_see, clean_tags, record

if TYPE_CHECKING:
    from core.hub import Hub

ACTION_TYPES = ("reply", "note", "add_tags", "remove_tags", "status", "priority", "group")
MAX_ACTIONS = 20


def view(m: Macro) -> dict[str, Any]:
    return {"id": m.id, "name": m.name, "description": m.description, "actions": list(m.actions or []),
            "created_by": m.created_by, "created_at": iso(m.created_at), "updated_at": iso(m.updated_at)}


async def check_actions(session: AsyncSession, actions: list[dict[str, Any]], max_text: int) -> list[dict[str, Any]]:
    """The actions as stored, checked: each type once, known placeholders, clean tags, the group."""
    if not 1 <= len(actions) <= MAX_ACTIONS:
        raise InvalidInput(f"actions: 1 to {MAX_ACTIONS}", code="invalid_actions")
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for i, action in enumerate(actions):
        kind = action.get("type")
        if kind not in ACTION_TYPES:
            raise InvalidInput(f"actions.{i}: unknown type {kind!r}", code="invalid_actions")
        if kind in seen:
            raise InvalidInput(f"actions.{i}: a macro has at most one {kind} action", code="invalid_actions")
        seen.add(kind)
        if kind in ("reply", "note"):
            text = check_size(str(action["text"]), max_text)
            if not text.strip():
                raise InvalidInput(f"actions.{i}.text: must not be empty", code="empty_text")
            canned.check_text(text, what=f"actions.{i}.text")
            out.append({"type": kind, "text": text})
        elif kind in ("add_tags", "remove_tags"):
            out.append({"type": kind, "tags": clean_tags(list(action["tags"]))})
        elif kind == "status":
            out.append({"type": kind, "status": TicketStatus(action["status"]).value})
        elif kind == "priority":
            out.append({"type": kind, "priority": Priority(action["priority"]).value})
        else:
            group_id = int(action["group_id"])
            if (await session.execute(select(Group.id).where(Group.id == group_id))).first() is None:
                raise NotFound(f"group {group_id} not found", code="group_not_found")
            out.append({"type": kind, "group_id": group_id})
    return out


def _missing(macro_id: int) -> NotFound:
    return NotFound(f"macro {macro_id} not found", code="macro_not_found")


def _name_taken(name: str) -> Conflict:
    return Conflict(f"a macro named {name!r} exists already", code="macro_exists")


async def list_macros(hub: Hub, principal: Principal) -> list[dict[str, Any]]:
    async with hub.db.read(principal.tenant_id) as session:
        return [view(m) for m in (await session.execute(select(Macro).order_by(Macro.name, Macro.id))).scalars()]


async def create(hub: Hub, principal: Principal, *, name: str, description: str | None, actions: list[dict[str, Any]],
                 ip: str | None = None) -> dict[str, Any]:
    now = utcnow()
    try:
        async with hub.db.session(principal.tenant_id) as session:
            checked = await check_actions(session, actions, hub.settings.max_message_bytes)
            if (await session.execute(select(Macro.id).where(Macro.name == name))).first() is not None:
                raise _name_taken(name)
            macro = Macro(tenant_id=principal.tenant_id, name=name, description=description, actions=checked,
                          created_by=principal.agent_id, created_at=now, updated_at=now)
            session.add(macro)
            await session.flush()
            audit(session, tenant_id=principal.tenant_id, actor_type="agent", actor_id=principal.agent_id,
                  action="macro.create", target_type="macro", target_id=macro.id, details={"name": name}, ip=ip)
            return view(macro)
    except IntegrityError:
        raise _name_taken(name) from None


async def update(hub: Hub, principal: Principal, macro_id: int, changes: dict[str, Any],
                 ip: str | None = None) -> dict[str, Any]:
    try:
        async with hub.db.session(principal.tenant_id) as session:
            macro = (await session.execute(select(Macro).where(Macro.id == macro_id).with_for_update())
                     ).scalar_one_or_none()
            if macro is None:
                raise _missing(macro_id)
            if changes.get("actions") is not None:
                macro.actions = await check_actions(session, changes["actions"], hub.settings.max_message_bytes)
            if changes.get("name") is not None and changes["name"] != macro.name:
                if (await session.execute(select(Macro.id).where(Macro.name == changes["name"]))).first():
                    raise _name_taken(changes["name"])
                macro.name = changes["name"]
            if "description" in changes:
                macro.description = changes["description"]
            macro.updated_at = utcnow()
            await session.flush()
            audit(session, tenant_id=principal.tenant_id, actor_type="agent", actor_id=principal.agent_id,
                  action="macro.update", target_type="macro", target_id=macro_id, details={"changes": sorted(changes)},
                  ip=ip)
            return view(macro)
    except IntegrityError:
        raise _name_taken(str(changes.get("name"))) from None


async def delete(hub: Hub, principal: Principal, macro_id: int, ip: str | None = None) -> None:
    async with hub.db.session(principal.tenant_id) as session:
        macro = (await session.execute(select(Macro).where(Macro.id == macro_id))).scalar_one_or_none()
        if macro is None:
            raise _missing(macro_id)
        await session.delete(macro)
        audit(session, tenant_id=principal.tenant_id, actor_type="agent", actor_id=principal.agent_id,
              action="macro.delete", target_type="macro", target_id=macro_id, details={"name": macro.name}, ip=ip)


def _never(_first: Any) -> dict[str, Any]:  # macros' messages carry no client id: nothing to replay
    raise AssertionError("a macro's message has no client id")


async def apply(hub: Hub, principal: Principal, ticket_id: int, macro_id: int) -> dict[str, Any]:
    """Apply a macro to a ticket (see the module's docstring). Returns the ticket as it is after,
    the messages the macro wrote and the actions applied."""
    tid = principal.tenant_id
    async with hub.db.read(tid) as session:
        ticket = (await session.execute(select(Ticket).where(Ticket.id == ticket_id))).scalar_one_or_none()
        if ticket is None or not await can_see(session, principal, ticket):
            raise NotFound(f"ticket {ticket_id} not found", code="ticket_not_found")
        macro = (await session.execute(select(Macro).where(Macro.id == macro_id))).scalar_one_or_none()
        if macro is None:
            raise _missing(macro_id)
        values = await canned.values_for(session, ticket, principal)
    actions = {a["type"]: a for a in macro.actions or []}
    replies = [Reply(principal, ticket_id, canned.render(actions[kind]["text"], values),
                     Direction.OUTBOUND if kind == "reply" else Direction.NOTE, (), None, _never)
               for kind in ("reply", "note") if kind in actions]
    for r in replies:
        check_size(r.text, hub.settings.max_message_bytes)
    change = Change(principal, ticket_id, status=actions.get("status", {}).get("status"),
                    priority=actions.get("priority", {}).get("priority"),
                    add_tags=actions.get("add_tags", {}).get("tags"),
                    remove_tags=actions.get("remove_tags", {}).get("tags"))
    changed = any(v is not None for v in (change.status, change.priority, change.add_tags, change.remove_tags))
    group_id = actions.get("group", {}).get("group_id")
    async with hub.db.session(tid) as session:
        done = await write_together(session, hub, tid, replies, [change] if changed else [])
        log = EventLog(session)
        if group_id is not None:
            await _to_group(session, principal, ticket_id, int(group_id), log)
            done.route = True
        audit(session, tenant_id=tid, actor_type="agent", actor_id=principal.agent_id, action="macro.apply",
              target_type="ticket", target_id=ticket_id, details={"macro_id": macro_id})
        await session.flush()
        done.events += await log.flush()
        row = (await session.execute(select(Ticket, Customer).join(Customer, Customer.id == Ticket.customer_id)
                                     .where(Ticket.id == ticket_id).execution_options(populate_existing=True))).one()
        result = {"ticket": ticket_dict(row[0], row[1]), "macro_id": macro_id,
                  "messages": [r for r in done.results[:len(replies)]],
                  "applied": [a["type"] for a in macro.actions or []]}
    await hub.ticket_writes.after_commit(tid, done)
    return result


async def _to_group(session: AsyncSession, principal: Principal, ticket_id: int, group_id: int, log: EventLog) -> None:
    """Transfer to a group inside the macro's transaction (as core.tickets.transfer does)."""
    ticket, customer = (await session.execute(
        select(Ticket, Customer).join(Customer, Customer.id == Ticket.customer_id).where(Ticket.id == ticket_id)
        .with_for_update(of=Ticket).execution_options(populate_existing=True))).one()
    if ticket.status == TicketStatus.CLOSED:
        raise Conflict("a closed ticket cannot be transferred", code="ticket_closed")
    if (await session.execute(select(Group.id).where(Group.id == group_id))).first() is None:
        raise NotFound(f"group {group_id} not found", code="group_not_found")
    previous = ticket.assignee_id
    change = transitions.release(ticket)
    if change.release is not None:
        await lock_agents(session, [change.release])
    change.apply(ticket, granted=await move_load(session, change, ticket.channel))
    ticket.group_id = group_id
    ticket.updated_at = utcnow()
    record(session, ticket, "transferred", agent_id=None, by=principal.agent_id, from_agent_id=previous,
           to_group_id=group_id)
    await session.flush()
    log.add(EventKind.TICKET_UNASSIGNED, tenant_id=principal.tenant_id, ticket=ticket, previous_assignee_id=previous,
            payload={"ticket": ticket_dict(ticket, customer),
                     "reason": {"strategy": "transfer", "group_id": group_id, "by": principal.agent_id}})
