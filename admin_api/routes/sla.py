"""SLA policies over HTTP (admins change them; everyone signed in reads them), and the breach report
(supervisors and above). The deadlines themselves come with the tickets (core.sla)."""

from __future__ import annotations

from aiohttp import web

from admin_api.responses import SlaPoliciesEnvelope, SlaPolicyEnvelope, SlaReportEnvelope
from admin_api.routes.reports import report_ask
from admin_api.schemas import SlaPolicyBody, SlaPolicyPatch, SlaReportQuery
from core import sla
from core.models import MAX_ID
from web.api import IntId, RouteTable
from web.http import HUB, body, int_param, principal_of
from web.schemas import Deleted

ROUTES = RouteTable("sla")
_POLICY = {"policy_id": IntId(MAX_ID)}


@ROUTES.route("GET", "/api/v1/sla/policies", summary="The SLA policies in order (the first that matches a "
              "ticket's priority and channel applies)", response=SlaPoliciesEnvelope)
async def list_policies(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request)
    async with hub.db.read(p.tenant_id) as session:
        return web.json_response({"policies": await sla.list_policies(session)})


@ROUTES.route("POST", "/api/v1/sla/policies", summary="Add an SLA policy (admin); last unless a position is given",
              body=SlaPolicyBody, response=SlaPolicyEnvelope, status=201, errors=(409,))
async def create_policy(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request, admin=True)
    data = await body(request, SlaPolicyBody)
    async with hub.db.session(p.tenant_id) as session:
        policy = await sla.create_policy(session, p, data.model_dump(), request.remote)
    return web.json_response({"policy": policy}, status=201)


@ROUTES.route("GET", "/api/v1/sla/policies/{policy_id}", summary="One SLA policy", response=SlaPolicyEnvelope,
              path_params=_POLICY)
async def get_policy(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request)
    policy_id = int_param(request, "policy_id", limit=MAX_ID)
    async with hub.db.read(p.tenant_id) as session:
        return web.json_response({"policy": await sla.get_policy(session, policy_id)})


@ROUTES.route("PATCH", "/api/v1/sla/policies/{policy_id}", summary="Change an SLA policy (admin); tickets follow "
              "it from their next change", body=SlaPolicyPatch, response=SlaPolicyEnvelope, errors=(409,),
              path_params=_POLICY)
async def update_policy(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request, admin=True)
    policy_id = int_param(request, "policy_id", limit=MAX_ID)
    data = await body(request, SlaPolicyPatch)
    async with hub.db.session(p.tenant_id) as session:
        policy = await sla.update_policy(session, p, policy_id, data.model_dump(exclude_unset=True), request.remote)
    return web.json_response({"policy": policy})


@ROUTES.route("DELETE", "/api/v1/sla/policies/{policy_id}", summary="Delete an SLA policy (admin); recorded "
              "breaches stay", response=Deleted, path_params=_POLICY)
async def delete_policy(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request, admin=True)
    policy_id = int_param(request, "policy_id", limit=MAX_ID)
    async with hub.db.session(p.tenant_id) as session:
        await sla.delete_policy(session, p, policy_id, request.remote)
    return web.json_response({"deleted": policy_id})


@ROUTES.route("GET", "/api/v1/reports/sla", summary="SLA breaches in a period per target, per agent and per group "
              "(those of the moment of the breach) (supervisor)", response=SlaReportEnvelope, query=SlaReportQuery)
async def breach_report(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    ask = await report_ask(request, formats=("json",))
    async with hub.breakers.run("reports"), hub.db.read(ask.principal.tenant_id) as session:
        filters, clock = await ask.filters(session)
        report = await sla.breach_report(session, ask.principal.tenant_id, filters, clock.zone)
    return web.json_response({"report": report})
