"""Tenants, agents (seats) and groups: the operator's and admins' side of the model."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import audit
from core.auth import Principal, hash_password
from core.errors import Conflict, InvalidInput, NotFound
from core.models import Agent, AgentGroup, Group, Role, Tenant
from core.serialize import agent_dict

if TYPE_CHECKING:
    from core.hub import Hub

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def clean_domain(domain: str) -> str:
    domain = domain.strip().lower().rstrip(".")
    if not _DOMAIN.match(domain):
        raise InvalidInput(f"{domain!r} is not a valid domain name", code="invalid_domain")
    return domain


async def create_tenant(session: AsyncSession, *, name: str, domain: str, actor: str = "operator") -> Tenant:
    domain = clean_domain(domain)
    if not name.strip():
        raise InvalidInput("a tenant needs a name", code="invalid_name")
    if (await session.execute(select(Tenant.id).where(Tenant.domain == domain))).first():
        raise Conflict(f"domain {domain} is taken", code="domain_taken")
    tenant = Tenant(name=name.strip(), domain=domain)
    session.add(tenant)
    await session.flush()
    audit(session, tenant_id=tenant.id, actor_type=actor, actor_id=None, action="tenant.create",
          target_type="tenant", target_id=tenant.id, details={"domain": domain})
    return tenant


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
    email = email.strip().lower()
    if "@" not in email:
        raise InvalidInput(f"{email!r} is not an e-mail address", code="invalid_email")
    if len(password) < 8:
        raise InvalidInput("a password has at least 8 characters", code="weak_password")
    if role not in {r.value for r in Role}:
        raise InvalidInput(f"unknown role {role!r}", code="invalid_role")
    if (await session.execute(select(Agent.id).where(Agent.tenant_id == tenant_id, Agent.email == email))).first():
        raise Conflict(f"an agent with e-mail {email} exists", code="agent_exists")
    groups = list(group_ids or [])
    if groups:
        stmt = select(Group.id).where(Group.tenant_id == tenant_id, Group.id.in_(groups))
        found = set((await session.execute(stmt)).scalars())
        missing = sorted(set(groups) - found)
        if missing:
            raise NotFound(f"groups not found: {missing}", code="group_not_found")
    agent = Agent(tenant_id=tenant_id, email=email, name=name.strip(), password_hash=hash_password(password),
                  role=role, capacity=capacity)
    session.add(agent)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"an agent with e-mail {email} exists", code="agent_exists") from None
    for gid in dict.fromkeys(groups):
        session.add(AgentGroup(tenant_id=tenant_id, agent_id=agent.id, group_id=gid))
    audit(session, tenant_id=tenant_id, actor_type=actor_type, actor_id=actor_id, action="agent.create",
          target_type="agent", target_id=agent.id, details={"email": email, "role": role, "capacity": capacity},
          ip=ip)
    await session.flush()
    return {**agent_dict(agent), "group_ids": groups}


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
