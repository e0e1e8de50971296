"""The aiohttp application factory and its lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from admin_api.gateway import agent_ws
from admin_api.http import HUB, RESOLVER, SOCKETS, api, close_sockets, errors_middleware, tenancy_middleware
from admin_api.routes import attachments, auth, routing, seats, tickets, wechat  # noqa: F401  (registers the routes)
from core import outbox, presence
from core.config import Settings
from core.hub import Hub
from core.tenancy import TenantResolver

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
TASKS = web.AppKey("tasks", list)
OWNS_WORKER = web.AppKey("owns_worker", bool)
GC_THRESHOLD = 25_000


async def _every(seconds: float, job: Callable[[], Awaitable[object]], name: str) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("periodic job %s failed", name)


async def _on_startup(app: web.Application) -> None:
    hub = app[HUB]
    await hub.start()
    hub.router.start()
    hub.inbox.start()
    outbox.setup(hub.settings)
    if hub.settings.embedded_worker:
        app[OWNS_WORKER] = outbox.start_worker(hub.settings)
    s = hub.settings
    app[TASKS] = [
        asyncio.create_task(_every(s.sweeper_interval, lambda: outbox.sweep(hub), "outbox sweeper")),
        asyncio.create_task(_every(max(s.heartbeat_timeout / 4, 0.5), lambda: presence.reap(hub), "presence reaper")),
    ]
    # What start-up made (modules, the models' metadata, compiled statements) lives as long as the
    # process: keep it out of the collector's full passes, which otherwise walk all of it and
    # pause every request in flight for tens of milliseconds under load.
    gc.freeze()
    # A request makes a few thousand short-lived objects; at the default threshold (700) the
    # youngest generation is collected several times per request, for nothing that lives on.
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


async def _on_shutdown(app: web.Application) -> None:
    await close_sockets(app)


async def _on_cleanup(app: web.Application) -> None:
    for task in app.get(TASKS, []):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    # Accepted messages are landed before anything stops; what waits in the inbox stays for later.
    await app[HUB].inbox.stop()
    await app[HUB].router.stop()
    if app.get(OWNS_WORKER):
        await asyncio.to_thread(outbox.stop_worker)
    await app[HUB].close()


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(api.openapi())


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def console(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "console.html", headers={"Content-Type": "text/html; charset=utf-8"})


async def console_js(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "console.js",
                            headers={"Content-Type": "application/javascript; charset=utf-8"})


def create_app(settings: Settings | None = None) -> web.Application:
    settings = settings or Settings.from_env()
    app = web.Application(
        middlewares=[errors_middleware, tenancy_middleware], client_max_size=settings.max_request_bytes
    )
    hub = Hub(settings)
    app[HUB] = hub
    app[RESOLVER] = TenantResolver(hub.db)
    app[SOCKETS] = set()
    api.add_to(app)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/agent/ws", agent_ws)
    app.router.add_get("/console", console)
    app.router.add_get("/console.js", console_js)
    for connector in hub.connectors.values():
        app.router.add_routes(connector.routes())
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_on_cleanup)
    return app
