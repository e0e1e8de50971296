"""The composition root: one hub per process, built from settings and channels, served by aiohttp.

Everything is built here and passed down: the hub (core) gets its channels and its router; the
API registry gets the admin API's route tables and each channel's; the application gets the
registry's routes. Nothing below this module builds a layer above itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

import admin_api
import admin_api.operator
from connectors.registry import CHANNELS
from core import availability, backups, csat, outbox, presence, purge, rollups, sla, tenants
from core.breakers import SubsystemOffline
from core.config import Settings
from core.hub import Hub
from routing.router import Router
from web.api import Api, RouteTable
from web.assets import asset_routes
from web.channels import ChannelSpec
from web.http import API, HUB, OVERLOAD, RESOLVER, errors_middleware, tenancy_middleware
from web.ops import OPS, metrics_middleware
from web.ops import add_routes as add_ops_routes
from web.serving import Limits
from web.sockets import SOCKET_KINDS, SOCKETS, close_sockets

logger = logging.getLogger(__name__)

TASKS = web.AppKey("tasks", list)
OPERATOR_API = web.AppKey("operator_api", Api)
GC_THRESHOLD = 25_000


def build_hub(settings: Settings, channels: Sequence[ChannelSpec] = CHANNELS) -> Hub:
    """The hub of one process (serve, worker or a command), with its router."""
    return Hub(settings, channels, router=Router)


def route_tables(channels: Sequence[ChannelSpec] = CHANNELS) -> list[RouteTable]:
    tables = list(admin_api.ROUTE_TABLES)
    for channel in channels:
        tables.extend(channel.routes)
        tables.extend(channel.admin_routes)
    return tables


def build_api(channels: Sequence[ChannelSpec] = CHANNELS) -> Api:
    """Every route of an application serving ``channels``: what it serves and what OpenAPI lists."""
    return Api(route_tables(channels), customer_facing=[t for c in channels for t in c.routes])


def build_operator_api() -> Api:
    """The operator's routes, served on the operator host only (web.http.tenancy_middleware)."""
    return Api(admin_api.operator.ROUTE_TABLES)


async def _every(seconds: float, job: Callable[[], Awaitable[object]], name: str, *,
                 first: float | None = None) -> None:
    """Run ``job`` every ``seconds`` (the first time after ``first`` seconds, if given)."""
    wait = seconds if first is None else first
    while True:
        await asyncio.sleep(wait)
        wait = seconds
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except OVERLOAD as exc:
            # No database connection came free in time: the next round tries again.
            logger.warning("periodic job %s skipped: overloaded (%s)", name, type(exc).__name__)
        except Exception:
            logger.exception("periodic job %s failed", name)


async def _billing_rounds(hub: Hub, *, first: float = 5.0) -> None:
    """The billing round every ``billing_interval`` seconds, through billing's breaker
    (core.tenants.billing_round). While billing is open the round also runs when its trial is due,
    and when billing comes back (its trial succeeded elsewhere, or the operator switched it on) a
    round runs at once: what fell due while it was offline is caught up without waiting an hour."""
    wait = first
    back = hub.breakers.back("billing")
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await back.wait()
        back.clear()
        try:
            await tenants.billing_round(hub)
        except asyncio.CancelledError:
            raise
        except OVERLOAD as exc:
            logger.warning("billing round skipped: overloaded (%s)", type(exc).__name__)
        except Exception:
            logger.exception("billing round failed")
        wait = hub.settings.billing_interval
        status = hub.breakers.cached()["billing"]
        if status.enabled and status.next_trial_at is not None and status.state == "open":
            until_trial = (status.next_trial_at - hub.breakers.clock()).total_seconds()
            wait = min(wait, max(1.0, until_trial))


async def _availability_round(hub: Hub) -> None:
    """Close the months that are over (core.availability.close_due) and compensate those below the
    promise, once, by the database. It is statistics' work, so it runs through that breaker; and it
    writes the billing ledger, so it waits while billing is offline: a month stays open until both
    are back, and is closed (and compensated) then."""
    if (offline := await hub.breakers.offline("billing")) is not None:
        logger.info("availability round skipped: %s", offline.message)
        return
    try:
        await hub.breakers.call("statistics", lambda: availability.close_due(hub))
    except SubsystemOffline as exc:
        logger.info("availability round skipped: %s", exc.message)


async def _reports_round(hub: Hub) -> None:
    """Let every tenant's report rollups read their new events (core.rollups), through the
    statistics breaker: while statistics are degraded the cursors wait, and catch up after. The
    processes may all run it: a batch another process took first is dropped."""
    for tenant_id in await rollups.tenants_behind(hub.db):
        try:
            await hub.breakers.call("statistics", functools.partial(rollups.catch_up, hub.db, tenant_id))
        except SubsystemOffline as exc:
            logger.info("reports rollups wait: %s", exc.message)
            return


async def _on_startup(app: web.Application) -> None:
    hub = app[HUB]
    await hub.start()
    hub.router.start()
    hub.inbox.start()
    hub.ticket_writes.start()
    # Embedded: deliveries run on this loop. With Redis: worker threads here only when asked
    # (CHANNELHUB_EMBEDDED_WORKER=1); otherwise `channelhub worker` processes deliver.
    hub.outbox.start(worker=hub.settings.embedded_worker)
    s = hub.settings
    if s.export_worker:  # every serve process builds queued exports unless told not to (core.exports)
        hub.exports.start()
    app[TASKS] = [
        asyncio.create_task(_every(s.sweeper_interval, lambda: outbox.sweep(hub), "outbox sweeper")),
        # Surveys a crash or a failed try left unsent (claimed row by row: any process may look).
        asyncio.create_task(_every(s.sweeper_interval, lambda: csat.sweep(hub), "survey sweeper")),
        asyncio.create_task(_every(max(s.heartbeat_timeout / 4, 0.5), lambda: presence.reap(hub), "presence reaper")),
    ]
    if s.billing_interval > 0:  # 0: this process runs no billing round (another does, or none should)
        app[TASKS].append(asyncio.create_task(_billing_rounds(hub)))
        app[TASKS].append(asyncio.create_task(
            _every(s.billing_interval, lambda: _availability_round(hub), "availability", first=15.0)))
    if s.backup_interval > 0:  # 0: no backups from serve (cron runs `channelhub backup`, or none)
        owner = f"{socket.gethostname()}:{os.getpid()}"
        # Each process asks every minute (one UPDATE); the one that takes the lease while a backup
        # is due makes it, in a thread or a child process (core.backups.scheduled).
        app[TASKS].append(asyncio.create_task(_every(
            min(s.backup_interval, 60.0), lambda: backups.scheduled(hub.db, s, owner=owner), "backup",
            first=min(s.backup_interval, 5.0))))
    if s.purge_interval > 0:  # 0: this process runs no purge (another does)
        app[TASKS].append(asyncio.create_task(
            _every(s.purge_interval, lambda: purge.purge_round(hub), "purge", first=min(s.purge_interval, 10.0))))
    if s.reports_interval > 0:  # 0: this process keeps no rollups (another does)
        app[TASKS].append(asyncio.create_task(
            _every(s.reports_interval, lambda: _reports_round(hub), "reports rollups",
                   first=min(s.reports_interval, 5.0))))
    if s.sla_interval > 0:  # 0: this process runs no SLA sweeper (another does)
        # Every process asks each round (one UPDATE); the one holding the lease sweeps (core.sla).
        sweeper = sla.Sweeper(hub)
        app[TASKS].append(asyncio.create_task(_every(s.sla_interval, sweeper.round, "sla sweeper")))
    app[RESOLVER].watch(hub.bus)
    # What start-up made (modules, the models' metadata, compiled statements) lives as long as the
    # process: keep it out of the collector's full passes, which otherwise walk all of it and
    # pause every request in flight for tens of milliseconds under load.
    gc.freeze()
    # A request makes a few thousand short-lived objects; at the default threshold (700) the
    # youngest generation is collected several times per request, for nothing that lives on.
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


async def _on_shutdown(app: web.Application) -> None:
    # /readyz answers 503 from now on: a load balancer stops sending this process work while it
    # finishes what it has (/healthz stays 200: the process is alive, only leaving).
    app[OPS].draining = True
    await close_sockets(app)


async def _on_cleanup(app: web.Application) -> None:
    for task in app.get(TASKS, []):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    hub = app[HUB]
    # Accepted messages are landed before anything stops; what waits in the inbox stays for later.
    await hub.inbox.stop()
    # Agents' actions accepted are written (their agents wait for the answer) before the router stops.
    await hub.ticket_writes.stop()
    await hub.router.stop()
    await hub.outbox.stop()
    # An export being built goes back to the queue for the next process to look.
    await hub.exports.stop()
    app[RESOLVER].close()
    await hub.close()


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[API].openapi())


async def operator_openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPERATOR_API].openapi())


async def healthz(request: web.Request) -> web.Response:
    """Liveness: 200 while the process serves, whatever the database or a subsystem says (a
    subsystem offline is degraded, not dead). It adds each subsystem's state and recent changes,
    from this process's cache (read at most every few seconds; never fails for it)."""
    statuses = await request.app[HUB].breakers.for_health()
    return web.json_response({"ok": True, "subsystems": {
        name: {k: v for k, v in status.as_dict().items() if k in HEALTH_KEYS} for name, status in statuses.items()}})


HEALTH_KEYS = ("state", "enabled", "since", "failures", "next_trial_at", "last_error", "last_failure_at", "history")


def limits(settings: Settings) -> Limits:
    """What bounds slow and stuck clients, for the runner that serves the application."""
    return Limits(header_timeout=settings.header_timeout, keepalive_timeout=settings.keepalive_timeout,
                  max_connections_per_address=settings.max_connections_per_address)


def create_app(settings: Settings | None = None, channels: Sequence[ChannelSpec] = CHANNELS) -> web.Application:
    settings = settings or Settings.from_env()
    app = web.Application(
        # The metrics middleware is outermost: it counts the answer the client got, errors included.
        middlewares=[metrics_middleware, errors_middleware, tenancy_middleware],
        client_max_size=settings.max_request_bytes
    )
    hub = build_hub(settings, channels)
    api = build_api(channels)
    app[HUB] = hub
    app[API] = api
    app[RESOLVER] = hub.tenants
    app[SOCKETS] = set()
    app[SOCKET_KINDS] = Counter()
    app[OPERATOR_API] = build_operator_api()
    api.add_to(app)
    app[OPERATOR_API].add_to(app)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_get("/operator/v1/openapi.json", operator_openapi)
    app.router.add_get("/healthz", healthz)
    add_ops_routes(app)  # /readyz, /metrics (web/ops.py)
    app.router.add_routes(admin_api.console_routes())
    app.router.add_routes(asset_routes(a for c in channels for a in c.assets))
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_on_cleanup)
    return app
