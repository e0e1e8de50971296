"""The tenant admin API, the agent gateway and the agent console.

``ROUTE_TABLES`` are its routes, gathered by the composition root (channelhub.app) with those of
the channels; ``console_routes`` serve the console's static files and the API's documentation page
(admin_api.apidocs).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from admin_api import gateway
from admin_api.apidocs import apidocs_routes
from admin_api.routes import attachments, auth, billing, routing, search, seats, tickets
from web.api import RouteTable

STATIC = Path(__file__).parent / "static"

ROUTE_TABLES: tuple[RouteTable, ...] = (
    auth.ROUTES, seats.ROUTES, tickets.ROUTES, routing.ROUTES, attachments.ROUTES, billing.ROUTES, search.ROUTES,
    gateway.ROUTES,
)


async def _console(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "console.html", headers={"Content-Type": "text/html; charset=utf-8"})


async def _console_js(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "console.js", headers={"Content-Type": "application/javascript; charset=utf-8"})


def console_routes() -> list[web.RouteDef]:
    return [web.get("/console", _console), web.get("/console.js", _console_js), *apidocs_routes()]
