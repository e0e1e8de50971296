"""A tenant's routing configuration: rules, settings, groups' strategies, agents' capacity and skills.

Every change is validated (rules compile, referenced groups exist), written with its audit row,
and announced so every hub process drops its cached copy (:func:`announce`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core import billing, seats
from core.audit import audit
from core.auth import Principal, revoke_agent
from core.billing import Actor
from core.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from core.models import Agent, AgentGroup, Group, Role, RoutingRule, Tenant, utcnow
from core.serialize import agent_dict, iso
from routing.router import CONFIG_TOPIC, Router, parse_settings
from routing.rules import compile_rule
from routing.strategies import STRATEGIES

if TYPE_CHECKING:
    from core.hub import Hub

async def announce(hub: Hub, tenant_id: int) -> None:
    """Drop cached configuration here and, over the bus, in every other process; then route."""
    if isinstance(hub.router, Router):  # the bus brings the same news a moment later
        hub.router.forget(tenant_id)
    await hub.bus.publish(CONFIG_TOPIC, {"tenant_id": tenant_id})
    hub.router.signal(tenant_id)


def rule_dict(rule: RoutingRule) -> dict[str, Any]:
    return {"id": rule.id, "name": rule.name, "position": rule.position, "enabled": rule.enabled,
            "conditions": rule.conditions, "actions": rule.actions, "created_at": iso(rule.created_at),
            "updated_at": iso(rule.updated_at)}


def group_dict(group: Group) -> dict[str, Any]:
    return {"id": group.id, "name": group.name, "strategy": group.strategy, "sticky_days": group.sticky_days,
            "sticky_fallback": group.sticky_fallback, "overflow_group_id": group.overflow_group_id,
            "overflow_after_seconds": group.overflow_after_seconds}


async def _groups_exist(session: AsyncSession, ids: list[int]) -> None:
    ids = sorted(set(ids))
    if not ids:
        return
    found = set((await session.execute(select(Group.id).where(Group.id.in_(ids)))).scalars())
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFound(f"group {missing[0]} not found", code="group_not_found")


async def _check_rule(session: AsyncSession, name: str, conditions: dict[str, Any], actions: dict[str, Any]) -> None:
    compile_rule(0, name, conditions, actions)  # raises InvalidInput naming the problem
    if actions.get("group_id") is not None:
        await _groups_exist(session, [actions["group_id"]])


async def list_rules(session: AsyncSession) -> list[dict[str, Any]]:
    rows = (await session.execute(select(RoutingRule).order_by(RoutingRule.position, RoutingRule.id))).scalars()
    return [rule_dict(r) for r in rows]


async def create_rule(session: AsyncSession, p: Principal, *, name: str, conditions: dict[str, Any],
                      actions: dict[str, Any], enabled: bool, position: int | None, ip: str | None) -> dict[str, Any]:
    await _check_rule(session, name, conditions, actions)
    if (await session.execute(select(RoutingRule.id).where(RoutingRule.name == name))).first():
        raise Conflict(f"a rule named {name!r} exists", code="rule_exists")
    if position is None:
        last = (await session.execute(select(func.max(RoutingRule.position)))).scalar()
        position = 0 if last is None else int(last) + 1
    rule = RoutingRule(tenant_id=p.tenant_id, name=name, position=position, enabled=enabled,
                       conditions=conditions, actions=actions)
    session.add(rule)
    await session.flush()
    audit(session, tenant_id=p.tenant_id, actor_type="agent", actor_id=p.agent_id, action="routing_rule.create",
          target_type="routing_rule", target_id=rule.id, details=rule_dict(rule), ip=ip)
    return rule_dict(rule)


async def _rule(session: AsyncSession, rule_id: int) -> RoutingRule:
    rule = (await session.execute(select(RoutingRule).where(RoutingRule.id == rule_id))).scalar_one_or_none()
    if rule is None:
        raise NotFound(f"routing rule {rule_id} not found", code="rule_not_found")
    return rule


async def get_rule(session: AsyncSession, rule_id: int) -> dict[str, Any]:
    return rule_dict(await _rule(session, rule_id))


async def update_rule(session: AsyncSession, p: Principal, rule_id: int, changes: dict[str, Any],
                      ip: str | None) -> dict[str, Any]:
    rule = await _rule(session, rule_id)
    name = changes.get("name", rule.name)
    conditions = changes.get("conditions", rule.conditions)
    actions = changes.get("actions", rule.actions)
    await _check_rule(session, name, conditions, actions)
    if name != rule.name and (await session.execute(select(RoutingRule.id).where(RoutingRule.name == name))).first():
        raise Conflict(f"a rule named {name!r} exists", code="rule_exists")
    before = rule_dict(rule)
    for key, value in changes.items():
        setattr(rule, key, value)
    rule.updated_at = utcnow()
    await session.flush()
    audit(session, tenant_id=p.tenant_id, actor_type="agent", actor_id=p.agent_id, action="routing_rule.update",
          target_type="routing_rule", target_id=rule.id, details={"before": before, "after": rule_dict(rule)}, ip=ip)
    return rule_dict(rule)


async def delete_rule(session: AsyncSession, p: Principal, rule_id: int, ip: str | None) -> None:
    rule = await _rule(session, rule_id)
    audit(session, tenant_id=p.tenant_id, actor_type="agent", actor_id=p.agent_id, action="routing_rule.delete",
          target_type="routing_rule", target_id=rule.id, details=rule_dict(rule), ip=ip)
    await session.delete(rule)


async def reorder_rules(session: AsyncSession, p: Principal, ids: list[int], ip: str | None) -> list[dict[str, Any]]:
    rules = {r.id: r for r in (await session.execute(select(RoutingRule))).scalars()}
    if sorted(ids) != sorted(rules) or len(set(ids)) != len(ids):
        raise InvalidInput("ids must list every rule of the tenant exactly once", code="invalid_order")
    for position, rule_id in enumerate(ids):
        rules[rule_id].position = position
    audit(session, tenant_id=p.tenant_id, actor_type="agent", actor_id=p.agent_id, action="routing_rule.reorder",
          target_type="routing_rule", details={"ids": ids}, ip=ip)
    await session.flush()
    return await list_rules(session)


async def get_settings(session: AsyncSession, tenant_id: int) -> dict[str, Any]:
    raw = (await session.execute(select(Tenant.routing).where(Tenant.id == tenant_id))).scalar_one() or {}
    return {"default_group_id": raw.get("default_group_id"), "business_hours": raw.get("business_hours"),
            "offline_policy": raw.get("offline_policy", "reroute"),
            "default_overflow_seconds": raw.get("default_overflow_seconds", 600),
            "unlimited_wait": bool(raw.get("unlimited_wait", False))}


async def put_settings(session: AsyncSession, p: Principal, settings: dict[str, Any], ip: str | None) -> dict[str, Any]:
    parse_settings(settings)  # business hours and the rest must parse
    if settings.get("default_group_id") is not None:
        await _groups_exist(session, [settings["default_group_id"]])
    tenant = (await session.execute(select(Tenant).where(Tenant.id == p.tenant_id))).scalar_one()
    before = dict(tenant.routing or {})
    tenant.routing = settings
    audit(session, tenant_id=p.tenant_id, actor_type="agent", actor_id=p.agent_id, action="routing.settings",
          target_type="tenant", target_id=p.tenant_id, details={"before": before, "after": settings}, ip=ip)
    await session.flush()
    return await get_settings(session, p.tenant_id)


async def update_group(session: AsyncSession, p: Principal, group_id: int, changes: dict[str, Any],
                       ip: str | None) -> dict[str, Any]:
    group = (await session.execute(select(Group).where(Group.id == group_id))).scalar_one_or_none()
    if group is None:
        raise NotFound(f"group {group_id} not found", code="group_not_found")
    if changes.pop("clear_overflow", False):
        changes["overflow_group_id"] = None
        changes["overflow_after_seconds"] = None
    target = changes.get("overflow_group_id")
    if target is not None:
        if target == group_id:
            raise InvalidInput("a group cannot overflow to itself", code="invalid_overflow")
        await _groups_exist(session, [target])
    if changes.get("strategy") is not None and changes["strategy"] not in STRATEGIES:
        raise InvalidInput(f"unknown strategy {changes['strategy']!r}", code="invalid_strategy")
    name = changes.get("name")
    if name is not None and name != group.name and (
            await session.execute(select(Group.id).where(Group.name == name))).first():
        # Group names are unique per tenant: a rename onto another group's name was a 500.
        raise Conflict(f"a group named {name!r} exists", code="group_exists")
    before = group_dict(group)
    for key, value in changes.items():
        setattr(group, key, value)
    if (group.overflow_group_id is None) != (group.overflow_after_seconds is None):
        raise InvalidInput("overflow needs both overflow_group_id and overflow_after_seconds",
                           code="invalid_overflow")
    audit(session, tenant_id=p.tenant_id, actor_type="agent", actor_id=p.agent_id, action="group.update",
          target_type="group", target_id=group.id, details={"before": before, "after": group_dict(group)}, ip=ip)
    try:
        await session.flush()
    except IntegrityError:  # renamed concurrently onto the same name
        raise Conflict(f"a group named {name!r} exists", code="group_exists") from None
    return group_dict(group)


async def set_members(session: AsyncSession, p: Principal, group_id: int, agent_ids: list[int],
                      ip: str | None) -> list[int]:
    if not (await session.execute(select(Group.id).where(Group.id == group_id))).first():
        raise NotFound(f"group {group_id} not found", code="group_not_found")
    ids = sorted(set(agent_ids))
    found = set((await session.execute(select(Agent.id).where(Agent.id.in_(ids)))).scalars()) if ids else set()
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFound(f"agent {missing[0]} not found", code="agent_not_found")
    await session.execute(delete(AgentGroup).where(AgentGroup.group_id == group_id)
                          .execution_options(synchronize_session=False))
    session.add_all([AgentGroup(tenant_id=p.tenant_id, agent_id=a, group_id=group_id) for a in ids])
    audit(session, tenant_id=p.tenant_id, actor_type="agent", actor_id=p.agent_id, action="group.members",
          target_type="group", target_id=group_id, details={"agent_ids": ids}, ip=ip)
    await session.flush()
    return ids


def _levels(value: dict[str, int], what: str, hi: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for raw, level in value.items():
        key = raw.strip().lower()
        if not key or len(key) > 64 or not 0 <= level <= hi:
            raise InvalidInput(f"{what}: {raw!r} must be a name mapped to 0-{hi}", code=f"invalid_{what}")
        out[key] = level
    return out


async def update_agent(session: AsyncSession, p: Principal, agent_id: int, changes: dict[str, Any],
                       ip: str | None, *, billing_offline: DomainError | None = None) -> dict[str, Any]:
    """Change an agent. Deactivating or reactivating a billed tenant's agent credits or charges a
    seat, refused with ``billing_offline`` (its refusal, core.breakers) while billing is offline."""
    agent = (await session.execute(select(Agent).where(Agent.id == agent_id).with_for_update())).scalar_one_or_none()
    if agent is None:
        raise NotFound(f"agent {agent_id} not found", code="agent_not_found")
    before = agent_dict(agent)
    group_ids = changes.pop("group_ids", None)
    if "skills" in changes and changes["skills"] is not None:
        changes["skills"] = _levels(changes["skills"], "skills", 10)
    if "channel_capacity" in changes and changes["channel_capacity"] is not None:
        changes["channel_capacity"] = _levels(changes["channel_capacity"], "channel_capacity", 1000)
    if Role.OWNER in (before["role"], changes.get("role")) and changes.get("role", before["role"]) != before["role"] \
            and not p.is_owner:
        raise Forbidden("making or unmaking an owner needs the owner role", code="owner_only")
    if before["role"] == Role.OWNER and not p.is_owner and changes.get("active") is False:
        raise Forbidden("removing an owner needs the owner role", code="owner_only")
    for key, value in changes.items():
        setattr(agent, key, value)
    if agent.role != before["role"] or (before["active"] and not agent.active):
        # A deactivated seat or a new role must not keep old sessions (the route announces it).
        await revoke_agent(session, p.tenant_id, agent_id)
    if before["role"] == Role.OWNER and (agent.role != Role.OWNER or not agent.active):
        await session.flush()
        owners = (await session.execute(select(func.count()).select_from(Agent).where(
            Agent.role == Role.OWNER, Agent.active.is_(True)))).scalar_one()
        if not owners:
            raise Conflict("a tenant keeps at least one owner", code="last_owner")
    actor = Actor("agent", p.agent_id)
    if before["active"] and not agent.active:
        await session.flush()
        await seats.release_unused_seats(session, p.tenant_id, now=utcnow(), actor=actor,
                                         billing_offline=billing_offline)
    elif agent.active and not before["active"] and await billing.contract_of(session, p.tenant_id) is not None:
        if billing_offline is not None:
            raise billing_offline
        await session.flush()
        await billing.ensure_seats(session, p.tenant_id, 0, now=utcnow(), actor=actor)
    if group_ids is not None:
        await _groups_exist(session, group_ids)
        await session.execute(delete(AgentGroup).where(AgentGroup.agent_id == agent_id)
                              .execution_options(synchronize_session=False))
        session.add_all([AgentGroup(tenant_id=p.tenant_id, agent_id=agent_id, group_id=g)
                         for g in dict.fromkeys(group_ids)])
    audit(session, tenant_id=p.tenant_id, actor_type="agent", actor_id=p.agent_id, action="agent.update",
          target_type="agent", target_id=agent_id, details={"before": before, "after": agent_dict(agent),
                                                            "group_ids": group_ids}, ip=ip)
    await session.flush()
    groups = list((await session.execute(select(AgentGroup.group_id).where(AgentGroup.agent_id == agent_id))).scalars())
    return {**agent_dict(agent), "group_ids": groups}
