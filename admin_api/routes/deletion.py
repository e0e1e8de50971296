"""Deletion (#16): the owner deletes all of the tenant's data; an admin erases one customer.

Both are POSTs with a typed confirmation in the body (a DELETE with a body is dropped or refused
by some proxies and clients): the tenant's primary domain, the customer's id. A wrong one is 422
``confirmation_mismatch``.
"""

from __future__ import annotations

from aiohttp import web

from admin_api.responses import Erased, PurgeEnvelope
from admin_api.schemas import ConfirmBody
from core import erasure, purge
from core.billing import Actor
from core.models import utcnow
from web.api import RouteTable
from web.http import HUB, body, int_param, principal_of

ROUTES = RouteTable("deletion")


@ROUTES.route("POST", "/api/v1/tenant/delete", summary="Delete all of the tenant's data (owner): confirm with the "
              "tenant's primary domain; 202 with the purge, which runs in the background (every route of the "
              "tenant answers 403 tenant_purged from now on; a running contract ends today, its unused days refunded)",
              body=ConfirmBody, response=PurgeEnvelope, status=202)
async def delete_tenant(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, owner=True)
    data = await body(request, ConfirmBody)
    async with hub.db.session() as session:
        started = await purge.request(session, principal.tenant_id, confirm=data.confirm,
                                      actor=Actor("agent", principal.agent_id), reason="owner", now=utcnow(),
                                      ip=request.remote)
        out = purge.purge_dict(started)
    await purge.announced(hub, principal.tenant_id)
    return web.json_response({"purge": out}, status=202)


@ROUTES.route("POST", "/api/v1/customers/{customer_id}/erase", summary="Erase one customer's personal data "
              "(admin): the customer, identities, tickets with their messages and files, and what channels keep "
              "about them; confirm with the customer's id", body=ConfirmBody, response=Erased)
async def erase_customer(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    customer_id = int_param(request, "customer_id")
    data = await body(request, ConfirmBody)
    deleted = await erasure.erase(hub, principal, customer_id, confirm=data.confirm, ip=request.remote)
    return web.json_response({"customer_id": customer_id, "deleted": deleted})
