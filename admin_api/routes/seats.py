"""Seats (agents) and groups: adding and removing seats (one or up to 100 at once, billed per seat)
and groups are admin actions and go to the audit log. While billing is offline (core.breakers) a
billed tenant's seats do not change (503 ``subsystem_offline``); an unbilled tenant's do."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from admin_api.responses import (
    GroupEnvelope,
    GroupsEnvelope,
    PresenceAnswer,
    SeatAdded,
    SeatsAdded,
    SeatsEnvelope,
    SeatsRemoved,
)
from admin_api.schemas import AgentBatchBody, CreateAgentBody, CreateGroupBody, PresenceBody, RemoveAgentsBody
from core import seats
from core.auth import announce_revoked, hash_passwords
from core.billing import Actor
from core.errors import Forbidden
from core.hub import Hub
from core.models import LedgerEntry, Role
from core.presence import set_presence
from routing import config as routing_config
from web.api import RouteTable
from web.http import HUB, body, principal_of

ROUTES = RouteTable("seats")


@ROUTES.route("GET", "/api/v1/agents", summary="List the tenant's agents", response=SeatsEnvelope)
async def list_agents(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    async with hub.db.read(principal.tenant_id) as session:
        return web.json_response({"agents": await seats.list_agents(session)})


def _new(data: CreateAgentBody) -> seats.NewAgent:
    return seats.NewAgent(str(data.email), data.name, data.password, data.role, data.capacity, tuple(data.group_ids))


async def _add(request: web.Request, items: list[CreateAgentBody]) -> tuple[list[dict[str, Any]], Any]:
    """Add the agents, all or none; a billed tenant pays for the seats it lacks (402 when short)."""
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    if any(i.role == Role.OWNER for i in items) and not principal.is_owner:
        raise Forbidden("adding an owner needs the owner role", code="owner_only")
    hashes = await hash_passwords([i.password for i in items])
    # Known before the transaction (nothing is read inside it): a billed tenant's seats wait for billing.
    offline = await hub.breakers.offline("billing")
    async with hub.db.session(principal.tenant_id) as session:
        agents, charge = await seats.add_agents(session, principal.tenant_id, [_new(i) for i in items],
                                                actor=Actor("agent", principal.agent_id), ip=request.remote,
                                                hashes=hashes, billing_offline=offline)
        await session.flush()  # the charge's ledger id
        charged = money(charge) if charge is not None else None
    await routing_config.announce(hub, principal.tenant_id)  # new room may serve the queue at once
    return agents, charged


def money(entry: LedgerEntry) -> dict[str, Any]:
    return {"amount": abs(entry.amount), "currency": entry.currency, "seats": entry.seats, "days": entry.days,
            "ledger_entry_id": entry.id}


@ROUTES.route("POST", "/api/v1/agents", summary="Add an agent (admin); a billed tenant pays for a seat it lacks",
              body=CreateAgentBody, response=SeatAdded, status=201, errors=(402, 409))
async def create_agent(request: web.Request) -> web.Response:
    data = await body(request, CreateAgentBody)
    agents, charged = await _add(request, [data])
    return web.json_response({"agent": agents[0], "charged": charged}, status=201)


@ROUTES.route("POST", "/api/v1/agents/batch", summary="Add up to 100 agents at once, all or none (admin); a "
              "billed tenant pays for the seats it lacks, prorated (402 and nothing added when short)",
              body=AgentBatchBody, response=SeatsAdded, status=201, errors=(402, 409))
async def create_agents(request: web.Request) -> web.Response:
    data = await body(request, AgentBatchBody)
    agents, charged = await _add(request, data.agents)
    return web.json_response({"agents": agents, "charged": charged}, status=201)


@ROUTES.route("POST", "/api/v1/agents/batch-remove", summary="Remove up to 100 seats at once, all or none "
              "(admin): their sessions end, their open tickets go back to routing, unused days are credited",
              body=RemoveAgentsBody, response=SeatsRemoved, errors=(409,))
async def remove_agents(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    data = await body(request, RemoveAgentsBody)
    offline = await hub.breakers.offline("billing")
    async with hub.db.session(principal.tenant_id) as session:
        removal = await seats.remove_agents(session, principal.tenant_id, data.agent_ids,
                                            actor=Actor("agent", principal.agent_id), caller=principal,
                                            ip=request.remote, billing_offline=offline)
        await session.flush()  # the credit's ledger id
        credited = money(removal.credit) if removal.credit is not None else None
    await end_seats(hub, principal.tenant_id, removal.removed)
    return web.json_response({"removed": removal.removed, "already_removed": removal.already,
                              "credited": credited})


async def end_seats(hub: Hub, tenant_id: int, agent_ids: list[int]) -> None:
    """After removed seats committed: close their sockets on every process and send their open
    tickets back to routing (their tokens were revoked in the same transaction)."""
    for agent_id in agent_ids:
        await announce_revoked(hub, tenant_id, agent_id)
    for agent_id in agent_ids:
        await hub.router.release_agent(tenant_id, agent_id, removed=True)
    await routing_config.announce(hub, tenant_id)


@ROUTES.route("GET", "/api/v1/groups", summary="List the tenant's groups", response=GroupsEnvelope)
async def list_groups(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    async with hub.db.read(principal.tenant_id) as session:
        return web.json_response({"groups": await seats.list_groups(session)})


@ROUTES.route("POST", "/api/v1/groups", summary="Add a group (admin)", body=CreateGroupBody,
              response=GroupEnvelope, status=201, errors=(409,))
async def create_group(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    data = await body(request, CreateGroupBody)
    async with hub.db.session(principal.tenant_id) as session:
        group = await seats.create_group(session, principal.tenant_id, name=data.name, actor_type="agent",
                                         actor_id=principal.agent_id, ip=request.remote)
    return web.json_response({"group": group}, status=201)


@ROUTES.route("PUT", "/api/v1/me/presence", summary="Set the caller's presence (online, away, offline)",
           body=PresenceBody, tag="auth", response=PresenceAnswer)
async def put_presence(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    data = await body(request, PresenceBody)
    await set_presence(hub, principal.tenant_id, principal.agent_id, data.status)
    return web.json_response({"status": data.status})
