"""Seats (agents) and groups. Creating them is an admin action and goes to the audit log."""

from __future__ import annotations

from aiohttp import web

from admin_api.responses import GroupEnvelope, GroupsEnvelope, PresenceAnswer, SeatEnvelope, SeatsEnvelope
from admin_api.schemas import CreateAgentBody, CreateGroupBody, PresenceBody
from core import seats
from core.presence import set_presence
from web.api import RouteTable
from web.http import HUB, body, principal_of

ROUTES = RouteTable("seats")


@ROUTES.route("GET", "/api/v1/agents", summary="List the tenant's agents", response=SeatsEnvelope)
async def list_agents(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    async with hub.db.read(principal.tenant_id) as session:
        return web.json_response({"agents": await seats.list_agents(session)})


@ROUTES.route("POST", "/api/v1/agents", summary="Add an agent (admin)", body=CreateAgentBody,
              response=SeatEnvelope, status=201, errors=(409,))
async def create_agent(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    data = await body(request, CreateAgentBody)
    async with hub.db.session(principal.tenant_id) as session:
        agent = await seats.create_agent(
            session, principal.tenant_id, email=str(data.email), name=data.name, password=data.password,
            role=data.role, capacity=data.capacity, group_ids=data.group_ids, actor_type="agent",
            actor_id=principal.agent_id, ip=request.remote,
        )
    return web.json_response({"agent": agent}, status=201)


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
