"""Static files the hub serves from its own origin: the vendored UI library (web/static/vendor,
refreshed from npm by refresh.sh there) that the agent console and the web chat widget load, and
the one-file routes the console and the widget are made of.

Only the files named by the code are served, never a path taken from the request, so nothing else of
the tree can be read through these routes. They are static routes, not API operations (not in
OpenAPI, not in the registry-driven test matrices).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

VENDOR = Path(__file__).parent / "static" / "vendor"
# The files carry no version in their URL: cached for a short while, then revalidated (ETag).
CACHE = "public, max-age=300"
SCRIPT = "text/javascript; charset=utf-8"

FileHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def file_handler(path: Path, content_type: str, *, cache: str = CACHE,
                 headers: dict[str, str] | None = None) -> FileHandler:
    """A GET handler that sends one file with its type, its caching and ``headers``."""
    fixed = {"Content-Type": content_type, "Cache-Control": cache, "X-Content-Type-Options": "nosniff",
             **(headers or {})}

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(path, headers=fixed)

    return handler


def vendor_routes() -> list[web.RouteDef]:
    """/vendor/preact.mjs, /vendor/hooks.mjs, /vendor/htm.mjs."""
    return [web.get(f"/vendor/{name}", file_handler(VENDOR / name, SCRIPT))
            for name in ("preact.mjs", "hooks.mjs", "htm.mjs")]
