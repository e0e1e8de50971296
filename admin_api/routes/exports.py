"""Excel exports (#16), for admins and the owner: a tenant's customers, tickets and messages, or one
customer's data (a personal-data request), built in the background (core.exports) and fetched by a
signed link that expires."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from admin_api.responses import ExportEnvelope, ExportList
from admin_api.schemas import ExportBody, ExportFileQuery
from core import exports
from core.errors import InvalidInput, NotFound
from web.api import RouteTable
from web.http import HUB, body, int_param, principal_of, query_int, query_value, tenant_of

ROUTES = RouteTable("exports")


@ROUTES.route("POST", "/api/v1/exports", body=ExportBody, response=ExportEnvelope, status=202, errors=(409,),
              summary="Start an Excel export of the tenant's customers, tickets and (include_messages) messages, "
              "filtered by the tickets' creation days, statuses and channels; follow it with GET (admin)")
async def start_export(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    data = await body(request, ExportBody)
    if unknown := [c for c in data.channels if c not in hub.channels]:
        raise InvalidInput(f"no channel {unknown[0]!r} (one of: {', '.join(sorted(hub.channels))})",
                           code="unknown_channel")
    filters = exports.Filters(data.from_, data.to, tuple(dict.fromkeys(data.statuses)),
                              tuple(dict.fromkeys(data.channels)))
    found = await exports.request(hub, principal.tenant_id, principal.agent_id, filters, data.include_messages,
                                  now=datetime.now(UTC), ip=request.remote)
    return web.json_response({"export": found}, status=202)


@ROUTES.route("POST", "/api/v1/customers/{customer_id}/export", response=ExportEnvelope, status=202,
              errors=(409,), summary="Start an export of one customer's data (the customer and those merged into "
              "it, their identities, tickets and messages), for a personal-data request (admin)")
async def start_customer_export(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    filters = exports.Filters(customer_id=int_param(request, "customer_id"))
    found = await exports.request(hub, principal.tenant_id, principal.agent_id, filters, True,
                                  now=datetime.now(UTC), ip=request.remote)
    return web.json_response({"export": found}, status=202)


@ROUTES.route("GET", "/api/v1/exports", response=ExportList,
              summary="The tenant's last 50 exports, newest first, with their progress (admin)")
async def list_exports(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    return web.json_response({"exports": await exports.listing(hub, principal.tenant_id, now=datetime.now(UTC))})


@ROUTES.route("GET", "/api/v1/exports/{export_id}", response=ExportEnvelope,
              summary="An export: its state, progress and, once done, a signed download link that expires (admin)")
async def get_export(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    found = await exports.get(hub, principal.tenant_id, int_param(request, "export_id"), now=datetime.now(UTC))
    return web.json_response({"export": found})


@ROUTES.route("GET", "/exports/{export_id}/file", auth=False, query=ExportFileQuery, media_type=exports.CONTENT_TYPE,
              errors=(410,), summary="An export's .xlsx by its signed link (no sign-in; the link expires)")
async def download_export(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    export_id = int_param(request, "export_id")
    expires = query_int(request, "expires", None, lo=0, hi=2**40)
    signature = query_value(request, "signature") or ""
    if expires is None or not signature or len(signature) > 64:
        raise NotFound(f"export {export_id} not found", code="export_not_found")
    file = await exports.signed_file(hub, tenant_of(request).id, export_id, expires, signature, now=datetime.now(UTC))
    # The link is the credential: keep the file out of shared caches.
    return web.FileResponse(file.path, headers={
        "Content-Type": exports.CONTENT_TYPE, "Cache-Control": "private, no-store",
        "Content-Disposition": f'attachment; filename="{file.name}"'})
