"""Web chat's settings (admin): the tenant's own words for the widget, by language: the notice shown
while no agent is online, and a greeting. Every change is audited (which fields and languages,
never the words)."""

from __future__ import annotations

from aiohttp import web

from connectors.webchat import store
from connectors.webchat.schemas import WebchatSettings, WebchatSettingsBody
from web.api import RouteTable
from web.http import HUB, body, principal_of

ADMIN_ROUTES = RouteTable("webchat")


@ADMIN_ROUTES.route("GET", "/api/v1/webchat/settings", response=WebchatSettings,
                    summary="The widget's words: the offline notice and the greeting, by language (admin)")
async def get_settings(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    async with hub.db.read(principal.tenant_id) as session:
        return web.json_response(await store.get_settings(session))


@ADMIN_ROUTES.route("PUT", "/api/v1/webchat/settings", body=WebchatSettingsBody, response=WebchatSettings,
                    summary="Set the widget's words (each field a whole {language: text} object; one left out "
                            "is kept) (admin)")
async def put_settings(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    data = await body(request, WebchatSettingsBody)
    async with hub.db.session(principal.tenant_id) as session:
        words = await store.put_settings(session, principal.tenant_id, data.model_dump(exclude_unset=True),
                                         actor_id=principal.agent_id, ip=request.remote)
    return web.json_response(words)
