"""Static files the hub serves from its own origin: the vendored UI library (web/static/vendor,
refreshed from npm by refresh.sh there) that the agent console and the web chat widget load, the
chart library the console's Reports page loads (not customer-facing), and
the one-file routes the console and the widget are made of.

Only the files named by the code are served, never a path taken from the request, so nothing else of
the tree can be read through these routes. They are static routes, not API operations (not in
OpenAPI, not in the registry-driven test matrices).

What a customer's page loads (the vendored UI library, a channel's :class:`Asset` files: the widget's
modules and catalogues) is *customer-facing*: it allows any origin (a module imported by a page of
another site needs CORS) and is served for a suspended tenant too, like the widget's routes
(web.http.tenancy_middleware), so a suspended tenant's customers can still write.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

VENDOR = Path(__file__).parent / "static" / "vendor"
# The files carry no version in their URL: cached for a short while, then revalidated (ETag).
CACHE = "public, max-age=300"
SCRIPT = "text/javascript; charset=utf-8"

FileHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


JSON = "application/json; charset=utf-8"
ANY_ORIGIN = {"Access-Control-Allow-Origin": "*"}
# Set on a handler that serves what customers' pages load (see the module's doc).
CUSTOMER_FACING = "customer_facing"


@dataclass(frozen=True)
class Asset:
    """A file a channel serves to customers' pages (``ChannelSpec.assets``): its URL path, the file
    and its Content-Type."""

    path: str
    file: Path
    content_type: str


def file_handler(path: Path, content_type: str, *, cache: str = CACHE, headers: dict[str, str] | None = None,
                 customer_facing: bool = False) -> FileHandler:
    """A GET handler that sends one file with its type, its caching and ``headers``; a
    ``customer_facing`` one allows any origin and is served for a suspended tenant too."""
    fixed = {"Content-Type": content_type, "Cache-Control": cache, "X-Content-Type-Options": "nosniff",
             **(ANY_ORIGIN if customer_facing else {}), **(headers or {})}

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(path, headers=fixed)

    setattr(handler, CUSTOMER_FACING, customer_facing)
    return handler


def is_customer_facing(handler: object) -> bool:
    return bool(getattr(handler, CUSTOMER_FACING, False))


# The UI library: the console imports it, and so does the widget from customers' pages on other sites.
CUSTOMER_VENDOR = ("preact.mjs", "hooks.mjs", "htm.mjs")
# Chart.js (its UMD build, which sets globalThis.Chart): only the console's Reports page loads it.
CONSOLE_VENDOR = ("chart.umd.js",)


def vendor_routes() -> list[web.RouteDef]:
    """/vendor/<file>: the UI library (customer-facing) and the console's chart library (not)."""
    return [web.get(f"/vendor/{name}", file_handler(VENDOR / name, SCRIPT, customer_facing=name in CUSTOMER_VENDOR))
            for name in (*CUSTOMER_VENDOR, *CONSOLE_VENDOR)]


def asset_routes(assets: Iterable[Asset]) -> list[web.RouteDef]:
    """The channels' customer-facing files (revalidated on every load: a new widget reaches the
    customers' pages at once)."""
    return [web.get(a.path, file_handler(a.file, a.content_type, cache="no-cache", customer_facing=True))
            for a in assets]
