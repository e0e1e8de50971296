"""The operational endpoints (#15): liveness, readiness and Prometheus metrics.

- ``GET /healthz`` (channelhub.app): liveness. 200 while the process answers at all, draining or
  not; it reads nothing, so a database or Redis outage never makes an orchestrator restart
  healthy processes.
- ``GET /readyz``: readiness. The database (``SELECT 1`` through the hub's own pool), Redis (PING,
  when configured) and the bus (with Redis: a PING through the listener's own subscribed
  connection, heard back by the listener) are checked at once, each within
  :data:`READY_TIMEOUT`. 200 when all pass; 503 with the failing checks' errors otherwise, and 503
  ``draining`` once the process began shutting down, so a load balancer stops sending it work
  while it finishes what it has.
- ``GET /metrics``: Prometheus text format from a registry of this application's own (tests make
  many applications in one process; the library's global registry would mix them). Per-request
  counters and latencies are kept by :func:`metrics_middleware`; everything else is read when
  scraped (:class:`HubCollector`), the database parts bounded by :data:`SCRAPE_TIMEOUT`; a part
  that fails or times out is left out of that scrape and counted in
  ``channelhub_scrape_errors_total``. Only loopback clients may scrape, or, when
  ``CHANNELHUB_METRICS_TOKEN`` is set, clients with that bearer token (and then only they).

All three are served on any Host (web.http.TENANTLESS), a suspended tenant's and the operator's
included. Each process serves its own metrics: Prometheus scrapes every process.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from core import health
from core.bus import RedisBus
from core.models import utcnow
from web.http import HUB, bearer_token, error_response
from web.sockets import SOCKET_KINDS

logger = logging.getLogger(__name__)

READY_TIMEOUT = 2.0
SCRAPE_TIMEOUT = 2.0
# Request latency buckets, seconds: most answers take milliseconds; the tail reaches the
# database's and the clients' timeouts.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The method label takes these; anything else a client sends is "other" (bounded cardinality).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SOCKET_KIND_NAMES = ("agent", "visitor")


class HubCollector:
    """What the hub knows, read at scrape time: open sockets and this process's group-commit
    queues from memory; the inbox, outbox and routing backlog and the latest probe results from
    the database (:meth:`refresh`, awaited by the handler before the registry is collected, since
    ``collect`` itself cannot wait)."""

    def __init__(self, app: web.Application, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.app = app
        self.clock = clock
        self.errors: Counter[str] = Counter()
        self._backlog: health.Backlog | None = None
        self._probes: list[health.ProbeState] | None = None
        self._took = 0.0

    async def _bounded(self, part: str, read: Awaitable[Any]) -> Any:
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT):
                return await read
        except Exception as exc:
            self.errors[part] += 1
            logger.warning("metrics: reading %s failed (%s); left out of this scrape", part,
                           health.describe_error(exc))
            return None

    async def refresh(self) -> None:
        hub = self.app[HUB]
        started = time.perf_counter()
        now = self.clock()
        self._backlog, self._probes = await asyncio.gather(
            self._bounded("backlog", health.backlog(hub.db, now, timeout=SCRAPE_TIMEOUT)),
            self._bounded("probes", health.latest_probes(hub.db, now, timeout=SCRAPE_TIMEOUT)))
        self._took = time.perf_counter() - started

    def collect(self) -> Iterable[Metric]:
        hub = self.app[HUB]
        sockets = GaugeMetricFamily("channelhub_websockets_open", "Websockets open in this process, by client kind",
                                    labels=["kind"])
        kinds = self.app.get(SOCKET_KINDS) or Counter()
        for kind in sorted({*SOCKET_KIND_NAMES, *kinds}):
            sockets.add_metric([kind], kinds.get(kind, 0))
        yield sockets
        waiting = GaugeMetricFamily(
            "channelhub_group_commit_waiting",
            "Items waiting in this process for their group commit (inbox landing, live ingest)",
            labels=["commit"])
        waiting.add_metric(["inbox_landing"], hub.inbox.lander.waiting + hub.inbox.lander.in_flight)
        waiting.add_metric(["live_ingest"], hub.inbox.live.waiting + hub.inbox.live.in_flight)
        yield waiting
        backlog = self._backlog
        if backlog is not None:
            inbox = GaugeMetricFamily("channelhub_inbox_rows",
                                      "Inbox rows (all processes) by state: pending (not yet a ticket), failed "
                                      "(set aside)", labels=["state"])
            for state, n in sorted(backlog.inbox.items()):
                inbox.add_metric([state], n)
            yield inbox
            yield GaugeMetricFamily("channelhub_inbox_oldest_pending_seconds",
                                    "Age of the oldest pending inbox row (0: none)", value=backlog.inbox_oldest_seconds)
            outbox = GaugeMetricFamily("channelhub_outbox_rows", "Undelivered outbox rows (all processes) by state",
                                       labels=["state"])
            for state, n in sorted(backlog.outbox.items()):
                outbox.add_metric([state], n)
            yield outbox
            yield GaugeMetricFamily("channelhub_outbox_lag_seconds",
                                    "Age of the oldest reply not yet delivered (pending or sending; 0: none)",
                                    value=backlog.outbox_lag_seconds)
            router = GaugeMetricFamily("channelhub_router_tickets",
                                       "Tickets waiting for an agent (all processes) by routing state: pending "
                                       "(not routed yet), queued (nobody free)", labels=["state"])
            for state, n in sorted(backlog.router.items()):
                router.add_metric([state], n)
            yield router
        if self._probes is not None:
            up = GaugeMetricFamily("channelhub_probe_up",
                                   "The latest probe of the tenant's service (last 15 min): 1 up, 0 down",
                                   labels=["tenant"])
            latency = GaugeMetricFamily("channelhub_probe_latency_seconds", "How long the latest probe took",
                                        labels=["tenant"])
            at = GaugeMetricFamily("channelhub_probe_timestamp_seconds", "When the latest probe began (Unix time)",
                                   labels=["tenant"])
            for probe in self._probes:
                tenant = str(probe.tenant_id)
                up.add_metric([tenant], 1 if probe.up else 0)
                latency.add_metric([tenant], probe.latency_ms / 1000)
                at.add_metric([tenant], probe.at.timestamp())
            yield from (up, latency, at)
        errors = CounterMetricFamily("channelhub_scrape_errors",
                                     "Scrapes in which reading a part failed or timed out (it was left out)",
                                     labels=["part"])
        for part in ("backlog", "probes"):
            errors.add_metric([part], self.errors.get(part, 0))
        yield errors
        yield GaugeMetricFamily("channelhub_scrape_duration_seconds", "How long the last scrape's database reads took",
                                value=self._took)


class Ops:
    """One application's metrics registry and instruments, and whether it is shutting down."""

    def __init__(self, app: web.Application) -> None:
        self.draining = False
        self.registry = CollectorRegistry()
        self.requests = PromCounter("channelhub_http_requests", "HTTP requests answered, by route template",
                                    ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("channelhub_http_request_duration_seconds",
                                 "Time to answer an HTTP request (websockets not included), by route template",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.collector = HubCollector(app)
        self.registry.register(self.collector)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        # The labelled children, looked up once: labels() validates and locks on every call.
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        counter = self._counted.get(key)
        if counter is None:
            counter = self._counted[key] = self.requests.labels(method, route, str(status))
        counter.inc()
        if status == 101:  # a websocket: its "latency" is how long it stayed open
            return
        timer = self._timed.get(key[:2])
        if timer is None:
            timer = self._timed[key[:2]] = self.latency.labels(method, route)
        timer.observe(seconds)


OPS = web.AppKey("ops", Ops)


def route_of(request: web.Request) -> str:
    """The route template that matched (``/api/v1/tickets/{ticket_id}``), never the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                             ) -> web.StreamResponse:
    """Count and time every request (outermost, so it sees the answer the client got)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        status = 499  # the client went away before its answer (nginx's convention)
        raise
    finally:
        method = request.method if request.method in METHODS else "other"
        request.app[OPS].observe(method, route_of(request), status, time.perf_counter() - started)


async def _check(check: Callable[[], Awaitable[object]]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await check()
    except TimeoutError as exc:
        error = health.describe_error(exc) if str(exc) else f"TimeoutError: no answer within {READY_TIMEOUT}s"
        return {"ok": False, "ms": _ms(started), "error": error}
    except Exception as exc:
        return {"ok": False, "ms": _ms(started), "error": health.describe_error(exc)}
    return {"ok": True, "ms": _ms(started)}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


async def readyz(request: web.Request) -> web.Response:
    """Readiness: whether this process can serve requests now (see the module's doc)."""
    hub = request.app[HUB]
    checks: dict[str, Callable[[], Awaitable[object]]] = {"database": lambda: health.ping(hub.db)}
    bus = hub.bus
    if hub.settings.redis_url and isinstance(bus, RedisBus):
        checks["redis"] = bus.ping
    checks["bus"] = lambda: bus.check(READY_TIMEOUT)
    results = await asyncio.gather(*(_check(c) for c in checks.values()))
    body: dict[str, Any] = {"ready": all(r["ok"] for r in results), "checks": dict(zip(checks, results, strict=True))}
    if request.app[OPS].draining:
        body["ready"] = False
        body["draining"] = True
    return web.json_response(body, status=200 if body["ready"] else 503)


def _loopback(request: web.Request) -> bool:
    try:
        return request.remote is not None and ipaddress.ip_address(request.remote).is_loopback
    except ValueError:  # a Unix socket has no address
        return False


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format; see the module's doc for who may scrape."""
    token = request.app[HUB].settings.metrics_token
    if token is not None:
        given = bearer_token(request)
        if given is None or not hmac.compare_digest(given.encode(), token.encode()):
            response = error_response(401, "unauthorized", "metrics need the bearer token (CHANNELHUB_METRICS_TOKEN)")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
    elif not _loopback(request):
        return error_response(403, "forbidden", "metrics are served to loopback clients only unless "
                                                "CHANNELHUB_METRICS_TOKEN is set")
    ops = request.app[OPS]
    await ops.collector.refresh()
    return web.Response(body=generate_latest(ops.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    """/readyz and /metrics, and the registry behind them (the middleware is the caller's to place;
    /healthz is the composition root's)."""
    app[OPS] = Ops(app)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
