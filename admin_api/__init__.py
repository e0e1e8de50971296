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
from admin_api.routes import (
    attachments,
    audit,
    auth,
    availability,
    billing,
    csat,
    deletion,
    exports,
    reports,
    routing,
    search,
    seats,
    sla,
    tickets,
    workspace,
)
from web.api import RouteTable
from web.assets import SCRIPT, file_handler, vendor_routes

STATIC = Path(__file__).parent / "static"

ROUTE_TABLES: tuple[RouteTable, ...] = (
    auth.ROUTES, seats.ROUTES, tickets.ROUTES, routing.ROUTES, attachments.ROUTES, billing.ROUTES, search.ROUTES,
    workspace.ROUTES, availability.ROUTES, deletion.ROUTES, audit.ROUTES, exports.ROUTES, gateway.ROUTES,
    reports.ROUTES, csat.ROUTES, sla.ROUTES,
)


CONSOLE = STATIC / "console"
HTML = "text/html; charset=utf-8"
# The console loads only what the hub serves: its own modules and styles, the vendored UI library,
# its catalogues, and files fetched with the agent's token (blob: URLs); the socket is same-origin.
CONSOLE_CSP = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' blob: data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
))
PAGE = {"Content-Security-Policy": CONSOLE_CSP, "Referrer-Policy": "no-referrer"}


def console_routes() -> list[web.RouteDef]:
    """The agent console (/console and its modules), the landing page of a tenant's domain, the
    favicon, the vendored UI library (web.assets) and the API's documentation page."""
    files = [
        ("/console", CONSOLE / "index.html", HTML, PAGE),
        ("/console/app.js", CONSOLE / "app.js", SCRIPT, None),
        ("/console/live.js", CONSOLE / "live.js", SCRIPT, None),
        ("/console/i18n.js", CONSOLE / "i18n.js", SCRIPT, None),
        ("/console/admin.js", CONSOLE / "admin.js", SCRIPT, None),
        ("/console/reports.js", CONSOLE / "reports.js", SCRIPT, None),
        ("/console/console.css", CONSOLE / "console.css", "text/css; charset=utf-8", None),
        ("/console/locales/en.json", CONSOLE / "locales" / "en.json", "application/json; charset=utf-8", None),
        ("/console/locales/zh-CN.json", CONSOLE / "locales" / "zh-CN.json", "application/json; charset=utf-8", None),
        ("/", STATIC / "landing.html", HTML, PAGE),
        ("/landing.css", STATIC / "landing.css", "text/css; charset=utf-8", None),
        # The hosted rating page's script and styles (admin_api.routes.csat).
        ("/csat.js", STATIC / "csat.js", SCRIPT, None),
        ("/csat.css", STATIC / "csat.css", "text/css; charset=utf-8", None),
        ("/favicon.svg", STATIC / "favicon.svg", "image/svg+xml", None),
        ("/favicon.ico", STATIC / "favicon.svg", "image/svg+xml", None),
    ]
    return [web.get(path, file_handler(file, kind, cache="no-cache", headers=extra))
            for path, file, kind, extra in files] + vendor_routes() + apidocs_routes()
