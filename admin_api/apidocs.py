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


PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def _page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(DOCS / "index.html", headers={"Content-Type": "text/html; charset=utf-8", **PAGE_HEADERS})


def _operator_page() -> bytes:
    """The same page for the operator's document, on the operator host (which serves /operator/ only)."""
    page = (DOCS / "index.html").read_text(encoding="utf-8")
    page = page.replace('spec-url="/api/v1/openapi.json"', 'spec-url="/operator/v1/openapi.json"')
    page = page.replace('src="/api/docs/redoc.standalone.js"', 'src="/operator/docs/redoc.standalone.js"')
    return page.replace("<title>channelhub API</title>", "<title>channelhub operator API</title>").encode()


OPERATOR_PAGE = _operator_page()


async def _operator(request: web.Request) -> web.StreamResponse:
    return web.Response(body=OPERATOR_PAGE, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)


async def _bundle(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(DOCS / "redoc.standalone.js", headers={
        "Content-Type": "application/javascript; charset=utf-8",
        "Cache-Control": BUNDLE_CACHE,
        "X-Content-Type-Options": "nosniff",
    })


def apidocs_routes() -> list[web.RouteDef]:
    """/api/docs on tenants' domains; /operator/docs on the operator host (web.http decides which
    host serves which)."""
    return [web.get("/api/docs", _page), web.get("/api/docs/redoc.standalone.js", _bundle),
            web.get("/operator/docs", _operator), web.get("/operator/docs/redoc.standalone.js", _bundle)]
