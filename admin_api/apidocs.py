"""The API's documentation page: Redoc, vendored (static/apidocs/, see refresh.sh there), browsing
the hub's own OpenAPI document. Served on every tenant domain, like the console, and never from a
CDN: the page loads only what the hub serves.

These are static routes, not API operations: they are not in the route registry (web.api.Api), so
they are neither in OpenAPI nor in the registry-driven cross-tenant and bad-input matrices.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

DOCS = Path(__file__).parent / "static" / "apidocs"

# What Redoc needs, checked in Chromium (tests/test_api_docs.py): its own script and the OpenAPI
# document from the hub, inline styles (styled-components writes <style> tags at run time), data:
# images (the patched attribution logo, the favicon) and a blob: worker (its search index). Nothing
# else: no inline script, no other host, no fonts (Redoc falls back to the system's).
PAGE_CSP = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "connect-src 'self'",
    "style-src 'unsafe-inline'",
    "img-src 'self' data:",
    "worker-src blob:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
))

# The bundle's URL carries no version, so it is cached for a day and then revalidated (FileResponse
# sends ETag and Last-Modified); a refreshed bundle reaches readers within a day at the latest.
BUNDLE_CACHE = "public, max-age=86400"


async def _page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(DOCS / "index.html", headers={
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": PAGE_CSP,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    })


async def _bundle(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(DOCS / "redoc.standalone.js", headers={
        "Content-Type": "application/javascript; charset=utf-8",
        "Cache-Control": BUNDLE_CACHE,
        "X-Content-Type-Options": "nosniff",
    })


def apidocs_routes() -> list[web.RouteDef]:
    return [web.get("/api/docs", _page), web.get("/api/docs/redoc.standalone.js", _bundle)]
