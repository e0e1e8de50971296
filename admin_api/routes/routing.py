"""Routing over HTTP: rules and settings (admin), groups' strategies and overflow, agents' capacity
and skills, customers' tags, the queue, claiming, and why a ticket went where it went."""

from __future__ import annotations

from aiohttp import web

from admin_api.responses import (
    CustomerEnvelope,
    GroupSettingsEnvelope,
    MembersEnvelope,
    QueueEnvelope,
    RoutingHistory,
    RoutingSettingsEnvelope,
    RuleEnvelope,
    RulesEnvelope,
    SeatEnvelope,
    TicketEnvelope,
)
from admin_api.routes.seats import end_seats
from admin_api.schemas import (
    AgentPatch,
    CustomerPatch,
    GroupPatch,
    MembersBody,
    QueueQuery,
    RoutingSettingsBody,
    RuleBody,
    RuleOrderBody,
    RulePatch,
)
from core import auth, customers, tickets
from core.models import MAX_ID
from routing import config
from web.api import IntId, RouteTable
from web.http import HUB, body, int_param, principal_of, query_int
from web.schemas import Deleted

ROUTES = RouteTable("routing")


@ROUTES.route("GET", "/api/v1/routing/rules", summary="The routing rules in order", response=RulesEnvelope)
async def list_rules(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request)
    async with hub.db.read(p.tenant_id) as session:
        return web.json_response({"rules": await config.list_rules(session)})


@ROUTES.route("POST", "/api/v1/routing/rules", summary="Add a rule (admin); last unless a position is given",
           body=RuleBody, response=RuleEnvelope, status=201, errors=(409,))
async def create_rule(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request, admin=True)
    data = await body(request, RuleBody)
    async with hub.db.session(p.tenant_id) as session:
        rule = await config.create_rule(session, p, name=data.name, conditions=data.conditions, actions=data.actions,
                                        enabled=data.enabled, position=data.position, ip=request.remote)
    await config.announce(hub, p.tenant_id)
    return web.json_response({"rule": rule}, status=201)


@ROUTES.route("GET", "/api/v1/routing/rules/{rule_id}", summary="One rule", response=RuleEnvelope,
           path_params={"rule_id": IntId(MAX_ID)})
async def get_rule(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request)
    rule_id = int_param(request, "rule_id", limit=MAX_ID)
    async with hub.db.read(p.tenant_id) as session:
        return web.json_response({"rule": await config.get_rule(session, rule_id)})


@ROUTES.route("PATCH", "/api/v1/routing/rules/{rule_id}", summary="Change a rule (admin)", body=RulePatch,
           response=RuleEnvelope, errors=(409,), path_params={"rule_id": IntId(MAX_ID)})
async def update_rule(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request, admin=True)
    rule_id = int_param(request, "rule_id", limit=MAX_ID)
    data = await body(request, RulePatch)
    async with hub.db.session(p.tenant_id) as session:
        rule = await config.update_rule(session, p, rule_id, data.model_dump(exclude_unset=True), request.remote)
    await config.announce(hub, p.tenant_id)
    return web.json_response({"rule": rule})


@ROUTES.route("DELETE", "/api/v1/routing/rules/{rule_id}", summary="Delete a rule (admin)", response=Deleted,
           path_params={"rule_id": IntId(MAX_ID)})
async def delete_rule(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request, admin=True)
    rule_id = int_param(request, "rule_id", limit=MAX_ID)
    async with hub.db.session(p.tenant_id) as session:
        await config.delete_rule(session, p, rule_id, request.remote)
    await config.announce(hub, p.tenant_id)
    return web.json_response({"deleted": rule_id})


@ROUTES.route("PUT", "/api/v1/routing/rules/order", summary="Put the rules in this order (admin)",
           body=RuleOrderBody, response=RulesEnvelope)
async def reorder_rules(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request, admin=True)
    data = await body(request, RuleOrderBody)
    async with hub.db.session(p.tenant_id) as session:
        rules = await config.reorder_rules(session, p, data.ids, request.remote)
    await config.announce(hub, p.tenant_id)
    return web.json_response({"rules": rules})


@ROUTES.route("GET", "/api/v1/routing/settings", summary="Default group, business hours, offline and overflow policy",
           response=RoutingSettingsEnvelope)
async def get_settings(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request)
    async with hub.db.read(p.tenant_id) as session:
        return web.json_response({"settings": await config.get_settings(session, p.tenant_id)})


@ROUTES.route("PUT", "/api/v1/routing/settings", summary="Replace the routing settings (admin)",
           body=RoutingSettingsBody, response=RoutingSettingsEnvelope)
async def put_settings(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request, admin=True)
    data = await body(request, RoutingSettingsBody)
    async with hub.db.session(p.tenant_id) as session:
        settings = await config.put_settings(session, p, data.model_dump(), request.remote)
    await config.announce(hub, p.tenant_id)
    return web.json_response({"settings": settings})


@ROUTES.route("PATCH", "/api/v1/groups/{group_id}", summary="Change a group's name, strategy, stickiness or overflow "
           "(admin)", body=GroupPatch, response=GroupSettingsEnvelope, errors=(409,),
           path_params={"group_id": IntId(MAX_ID)})
async def update_group(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request, admin=True)
    group_id = int_param(request, "group_id", limit=MAX_ID)
    data = await body(request, GroupPatch)
    async with hub.db.session(p.tenant_id) as session:
        group = await config.update_group(session, p, group_id, data.model_dump(exclude_unset=True), request.remote)
    await config.announce(hub, p.tenant_id)
    return web.json_response({"group": group})


@ROUTES.route("PUT", "/api/v1/groups/{group_id}/members", summary="Set a group's agents (admin)", body=MembersBody,
           response=MembersEnvelope, path_params={"group_id": IntId(MAX_ID)})
async def set_members(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request, admin=True)
    group_id = int_param(request, "group_id", limit=MAX_ID)
    data = await body(request, MembersBody)
    async with hub.db.session(p.tenant_id) as session:
        ids = await config.set_members(session, p, group_id, data.agent_ids, request.remote)
    await config.announce(hub, p.tenant_id)
    return web.json_response({"group_id": group_id, "agent_ids": ids})


@ROUTES.route("PATCH", "/api/v1/agents/{agent_id}", summary="Change an agent's role, capacity, per-channel capacity, "
           "skills, groups or whether the seat is active (admin)", body=AgentPatch, tag="seats",
           response=SeatEnvelope, path_params={"agent_id": IntId(MAX_ID)})
async def update_agent(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request, admin=True)
    agent_id = int_param(request, "agent_id", limit=MAX_ID)
    data = await body(request, AgentPatch)
    # A billed tenant's seat changing (active) is billing's work: refused while it is offline.
    offline = await hub.breakers.offline("billing") if data.active is not None else None
    async with hub.db.session(p.tenant_id) as session:
        agent = await config.update_agent(session, p, agent_id, data.model_dump(exclude_unset=True), request.remote,
                                          billing_offline=offline)
    if data.active is False:
        # The seat is gone: its sockets close, its open tickets go back to routing, and the routing
        # configuration is announced (end_seats does all three).
        await end_seats(hub, p.tenant_id, [agent_id])
    else:
        if data.active is not None or data.role is not None:
            # Its sockets re-check their token at once, on every process (a new role revoked the
            # agent's tokens).
            await auth.announce_revoked(hub, p.tenant_id, agent_id)
        await config.announce(hub, p.tenant_id)  # more room may serve the queue at once
    return web.json_response({"agent": agent})


@ROUTES.route("GET", "/api/v1/customers/{customer_id}", summary="A customer with tags, attributes and identities",
           tag="customers", response=CustomerEnvelope)
async def get_customer(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request)
    async with hub.db.read(p.tenant_id) as session:
        return web.json_response({"customer": await customers.get_customer(session, int_param(request, "customer_id"))})


@ROUTES.route("PATCH", "/api/v1/customers/{customer_id}", summary="Change a customer's name, e-mail, tags or "
           "attributes (VIP, language, region...)", body=CustomerPatch, tag="customers",
           response=CustomerEnvelope, errors=(409,))
async def update_customer(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request)
    customer_id = int_param(request, "customer_id")
    data = await body(request, CustomerPatch)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("email") is not None:
        changes["email"] = str(changes["email"])
    async with hub.db.session(p.tenant_id) as session:
        customer = await customers.update_customer(session, p, customer_id, changes, request.remote)
    return web.json_response({"customer": customer})


@ROUTES.route("GET", "/api/v1/queue", summary="Waiting tickets in the order they will be served (?group_id=&limit=)",
           query=QueueQuery, response=QueueEnvelope)
async def get_queue(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request)
    rows = await tickets.queue(hub, p, group_id=query_int(request, "group_id", None, lo=1, hi=MAX_ID),
                               limit=query_int(request, "limit", 100, lo=1, hi=1000) or 100)
    return web.json_response({"queue": rows})


@ROUTES.route("POST", "/api/v1/tickets/{ticket_id}/claim", summary="Take a waiting ticket from the queue",
           response=TicketEnvelope, errors=(409,))
async def claim(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request)
    return web.json_response({"ticket": await tickets.claim(hub, p, int_param(request, "ticket_id"))})


@ROUTES.route("GET", "/api/v1/tickets/{ticket_id}/routing", summary="Why the ticket went where it went: rule, "
           "strategy and candidates of every decision", response=RoutingHistory)
async def routing_history(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request)
    return web.json_response(await tickets.routing_history(hub, p, int_param(request, "ticket_id")))
