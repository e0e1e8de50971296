"""Agents (seats) and groups: the admins' side of the model (a tenant's life is core.tenants)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core import billing
from core.audit import audit
from core.auth import Principal, hash_password
from core.billing import Actor
from core.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from core.models import (
    Agent,
    AgentGroup,
    AuthToken,
    ContractState,
    Group,
    LedgerEntry,
    Presence,
    Role,
    utcnow,
)
from core.serialize import agent_dict

if TYPE_CHECKING:
    from core.hub import Hub

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def clean_domain(domain: str) -> str:
    """A domain as it is stored: lower case. A trailing dot (the DNS root) is refused rather than
    dropped, so what is stored is what was given."""
    domain = domain.strip().lower()
    if domain.endswith("."):
        raise InvalidInput(f"{domain!r}: write the domain without a trailing dot", code="invalid_domain")
    if not _DOMAIN.match(domain):
        raise InvalidInput(f"{domain!r} is not a valid domain name", code="invalid_domain")
    return domain


@dataclass(frozen=True)
class NewAgent:
    email: str
    name: str
    password: str
    role: str = Role.AGENT
    capacity: int = 5
    group_ids: tuple[int, ...] = ()


# Seats added or removed in one request, at most (PRODUCT.md §4).
MAX_BATCH = 100


def _checked(item: NewAgent) -> NewAgent:
    email = item.email.strip().lower()
    if "@" not in email:
        raise InvalidInput(f"{email!r} is not an e-mail address", code="invalid_email")
    if len(item.password) < 8:
        raise InvalidInput("a password has at least 8 characters", code="weak_password")
    if item.role not in {r.value for r in Role}:
        raise InvalidInput(f"unknown role {item.role!r}", code="invalid_role")
    return NewAgent(email, item.name.strip(), item.password, item.role, item.capacity,
                    tuple(dict.fromkeys(item.group_ids)))


async def add_agents(
    session: AsyncSession, tenant_id: int, items: list[NewAgent], *, actor: Actor, ip: str | None = None,
    now: datetime | None = None, hashes: list[str] | None = None, billing_offline: DomainError | None = None,
) -> tuple[list[dict[str, Any]], LedgerEntry | None]:
    """Add up to :data:`MAX_BATCH` agents at once, all or none. A billed tenant pays for the seats
    its paid ones lack, prorated, in this transaction (402 and nothing added when the balance is
    short); an unbilled one (no contract: a self-hosted install) is not metered. ``hashes``: the
    passwords' hashes, made beforehand (:func:`core.auth.hash_passwords`) so that the transaction
    does not wait on argon2. ``billing_offline``: billing's refusal when it is offline
    (core.breakers.Breakers.offline): a billed tenant's seats then do not change (503), an unbilled
    one's do."""
    if not items:
        raise InvalidInput("give at least one agent", code="empty_batch")
    if len(items) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} agents per request, got {len(items)}", code="batch_too_large",
                           details={"max": MAX_BATCH, "given": len(items)})
    items = [_checked(i) for i in items]
    emails = [i.email for i in items]
    twice = sorted({e for e in emails if emails.count(e) > 1})
    if twice:
        raise InvalidInput(f"given more than once: {', '.join(twice)}", code="duplicate_email",
                           details={"emails": twice})
    taken = sorted((await session.execute(select(Agent.email).where(Agent.tenant_id == tenant_id,
                                                                     Agent.email.in_(emails)))).scalars())
    if taken:
        raise Conflict(f"agents with these e-mails exist (a removed one is brought back with PATCH "
                       f"/api/v1/agents/{{id}} active=true): {', '.join(taken)}", code="agent_exists",
                       details={"emails": taken})
    wanted = sorted({g for i in items for g in i.group_ids})
    if wanted:
        found = set((await session.execute(select(Group.id).where(Group.tenant_id == tenant_id,
                                                                  Group.id.in_(wanted)))).scalars())
        missing = [g for g in wanted if g not in found]
        if missing:
            raise NotFound(f"groups not found: {missing}", code="group_not_found", details={"group_ids": missing})
    charge = None
    if await billing.contract_of(session, tenant_id) is not None:
        if billing_offline is not None:
            raise billing_offline
        charge = await billing.ensure_seats(session, tenant_id, len(items), now=now or utcnow(), actor=actor)
    if hashes is None:
        hashes = [hash_password(i.password) for i in items]
    agents = [Agent(tenant_id=tenant_id, email=i.email, name=i.name, password_hash=h, role=i.role,
                    capacity=i.capacity) for i, h in zip(items, hashes, strict=True)]
    session.add_all(agents)
    try:
        await session.flush()
    except IntegrityError:  # the same e-mail added by a request racing this one
        raise Conflict("an agent with one of these e-mails was just added", code="agent_exists") from None
    session.add_all([AgentGroup(tenant_id=tenant_id, agent_id=a.id, group_id=g)
                     for a, i in zip(agents, items, strict=True) for g in i.group_ids])
    for a in agents:
        audit(session, tenant_id=tenant_id, actor_type=actor.type, actor_id=actor.id, action="agent.create",
              target_type="agent", target_id=a.id, details={"email": a.email, "role": a.role, "capacity": a.capacity},
              ip=ip)
    await session.flush()
    return [{**agent_dict(a), "group_ids": list(i.group_ids)} for a, i in zip(agents, items, strict=True)], charge


async def create_agent(
    session: AsyncSession,
    tenant_id: int,
    *,
    email: str,
    name: str,
    password: str,
    role: str = Role.AGENT,
    capacity: int = 5,
    group_ids: list[int] | None = None,
    actor_type: str = "operator",
    actor_id: int | None = None,
    ip: str | None = None,
) -> dict[str, Any]:
    """One agent (:func:`add_agents`)."""
    made, _ = await add_agents(session, tenant_id, [NewAgent(email, name, password, role, capacity,
                                                             tuple(group_ids or ()))],
                               actor=Actor(actor_type, actor_id), ip=ip)
    return made[0]


@dataclass(frozen=True)
class Removal:
    removed: list[int]
    # Named in the request but removed before: nothing changed for them.
    already: list[int]
    credit: LedgerEntry | None


async def remove_agents(
    session: AsyncSession, tenant_id: int, ids: list[int], *, actor: Actor, caller: Principal | None,
    ip: str | None = None, now: datetime | None = None, billing_offline: DomainError | None = None,
) -> Removal:
    """Remove up to :data:`MAX_BATCH` seats at once, all or none: the agents are deactivated (their
    tickets and history keep their names), their tokens revoked, and a billed tenant is credited
    the unused days of the seats freed (refused with ``billing_offline`` while billing is offline).
    The caller, after commit, closes their sockets (:func:`core.auth.announce_revoked`) and sends
    their open tickets back to routing."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise InvalidInput("give at least one agent id", code="empty_batch")
    if len(ids) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} agents per request, got {len(ids)}", code="batch_too_large",
                           details={"max": MAX_BATCH, "given": len(ids)})
    if caller is not None and caller.agent_id in ids:
        raise Conflict("you cannot remove your own seat", code="cannot_remove_self")
    agents = list((await session.execute(select(Agent).where(Agent.tenant_id == tenant_id, Agent.id.in_(ids))
                                         .order_by(Agent.id).with_for_update())).scalars())
    missing = sorted(set(ids) - {a.id for a in agents})
    if missing:
        raise NotFound(f"agents not found: {missing}", code="agent_not_found", details={"agent_ids": missing})
    going = [a for a in agents if a.active]
    if any(a.role == Role.OWNER for a in going):
        if caller is not None and not caller.is_owner:
            raise Forbidden("removing an owner needs the owner role", code="owner_only")
        owners_left = (await session.execute(select(func.count()).select_from(Agent).where(
            Agent.tenant_id == tenant_id, Agent.role == Role.OWNER, Agent.active.is_(True),
            Agent.id.not_in([a.id for a in going])))).scalar_one()
        if not owners_left:
            raise Conflict("a tenant keeps at least one owner", code="last_owner")
    for a in going:
        a.active = False
        a.status = Presence.OFFLINE
    gone = [a.id for a in going]
    credit = None
    if gone:
        await session.execute(update(AuthToken).where(AuthToken.tenant_id == tenant_id, AuthToken.agent_id.in_(gone),
                                                      AuthToken.revoked_at.is_(None)).values(revoked_at=utcnow())
                              .execution_options(synchronize_session=False))
        for a in going:
            audit(session, tenant_id=tenant_id, actor_type=actor.type, actor_id=actor.id, action="agent.remove",
                  target_type="agent", target_id=a.id, details={"email": a.email, "role": a.role}, ip=ip)
        await session.flush()
        credit = await release_unused_seats(session, tenant_id, now=now or utcnow(), actor=actor,
                                            billing_offline=billing_offline)
    return Removal(gone, [a.id for a in agents if a.id not in gone], credit)


async def release_unused_seats(session: AsyncSession, tenant_id: int, *, now: datetime, actor: Actor,
                               billing_offline: DomainError | None = None) -> LedgerEntry | None:
    """Give up the paid seats no active agent uses (after a removal or deactivation), crediting
    their unused days; None for an unbilled tenant or when none are unused. While billing is
    offline (``billing_offline``, its refusal) a billed tenant's seats do not change: it is raised,
    and the caller's transaction with the removal rolls back."""
    contract = await billing.contract_of(session, tenant_id)
    if contract is None or contract.state == ContractState.ENDED:
        return None
    if billing_offline is not None:
        raise billing_offline
    unused = contract.seats - await billing.seats_in_use(session, tenant_id)
    if unused <= 0:
        return None
    return await billing.credit_for_seats(session, tenant_id, unused, now=now, actor=actor)


async def create_group(
    session: AsyncSession, tenant_id: int, *, name: str, actor_type: str = "operator", actor_id: int | None = None,
    ip: str | None = None,
) -> dict[str, Any]:
    if (await session.execute(select(Group.id).where(Group.tenant_id == tenant_id, Group.name == name))).first():
        raise Conflict(f"a group named {name!r} exists", code="group_exists")
    group = Group(tenant_id=tenant_id, name=name)
    session.add(group)
    await session.flush()
    audit(session, tenant_id=tenant_id, actor_type=actor_type, actor_id=actor_id, action="group.create",
          target_type="group", target_id=group.id, details={"name": name}, ip=ip)
    return {"id": group.id, "name": group.name}


async def list_agents(session: AsyncSession) -> list[dict[str, Any]]:
    rows = (await session.execute(select(Agent).order_by(Agent.id))).scalars().all()
    groups = (await session.execute(select(AgentGroup.agent_id, AgentGroup.group_id))).all()
    by_agent: dict[int, list[int]] = {}
    for agent_id, group_id in groups:
        by_agent.setdefault(agent_id, []).append(group_id)
    return [{**agent_dict(a), "group_ids": by_agent.get(a.id, [])} for a in rows]


async def list_groups(session: AsyncSession) -> list[dict[str, Any]]:
    rows = (await session.execute(select(Group).order_by(Group.id))).scalars().all()
    return [{"id": g.id, "name": g.name} for g in rows]


async def profile(hub: Hub, principal: Principal) -> dict[str, Any]:
    """The signed-in agent as they see themselves."""
    async with hub.db.read(principal.tenant_id) as session:
        agent = (await session.execute(select(Agent).where(Agent.id == principal.agent_id))).scalar_one()
    return agent_dict(agent)
