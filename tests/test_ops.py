"""The operational endpoints (#15, web/ops.py): /healthz, /readyz and /metrics on running servers.

Readiness is checked against what really fails: a hub whose database nothing listens for, and a
hub whose own redis-server is stopped under it (and started again). Metrics are parsed with
prometheus_client's own parser; what they count is made by real requests, sockets and probe rows.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core import availability
from core.availability import Probe
from core.config import Settings
from core.db import Database
from core.models import utcnow
from tests.conftest import OPERATOR_HOST, REDIS_URL, Server, TenantInfo, eventually, free_port, start_server
from tests.support import Http

TOKEN = "metrics-token-for-tests"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get(session: aiohttp.ClientSession, url: str, **headers: str) -> tuple[int, Any, str]:
    async with session.get(url, headers=headers) as resp:
        text = await resp.text()
        body = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, body, text


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(session: aiohttp.ClientSession, server: Server, **headers: str) -> Samples:
    async with session.get(server.url + "/metrics", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = await resp.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


# --- /healthz and /readyz ------------------------------------------------------------------------


async def test_healthz_and_readyz_answer_on_any_host(server: Server, tenant: TenantInfo,
                                                     http: aiohttp.ClientSession) -> None:
    status, body, _ = await get(http, server.url + "/healthz")
    # Liveness, with the state of the subsystems that can be taken offline (core.breakers).
    assert (status, body["ok"]) == (200, True)
    assert {name: s["state"] for name, s in body["subsystems"].items()} == {
        "billing": "closed", "statistics": "closed", "reports": "closed"}
    expected = {"database", "bus"} | ({"redis"} if REDIS_URL else set())
    for host in (tenant.domain, OPERATOR_HOST, "no-such-tenant.example", "127.0.0.1"):
        status, body, _ = await get(http, server.url + "/readyz", Host=host)
        assert status == 200, body
        assert body["ready"] is True
        assert set(body["checks"]) == expected
        for check in body["checks"].values():
            assert check["ok"] is True and isinstance(check["ms"], float) and "error" not in check


async def test_readyz_503_when_the_database_is_unreachable(settings: Settings, http: aiohttp.ClientSession) -> None:
    # Nothing listens on this port: every connection is refused at once. The password must not
    # appear in the answer.
    dead = f"postgresql+asyncpg://postgres:hunter2secret@127.0.0.1:{free_port()}/channelhub"
    srv = await start_server(replace(settings, database_url=dead))
    try:
        status, body, text = await get(http, srv.url + "/readyz")
        assert status == 503, body
        assert body["ready"] is False
        database = body["checks"]["database"]
        assert database["ok"] is False and database["error"]
        assert "hunter2secret" not in text
        assert body["checks"]["bus"]["ok"] is True
        # Liveness: the process is alive, only not ready (the subsystems' state is what it last knew).
        status, body, _ = await get(http, srv.url + "/healthz")
        assert (status, body["ok"]) == (200, True)
        # The metrics still answer; what could not be read is counted, not a failed scrape.
        samples = await scrape(http, srv)
        assert value(samples, "channelhub_scrape_errors_total", part="backlog") == 1
        assert value(samples, "channelhub_scrape_errors_total", part="probes") == 1
        assert value(samples, "channelhub_outbox_lag_seconds") is None
    finally:
        await srv.runner.cleanup()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_readyz_503_while_redis_is_down(settings: Settings, http: aiohttp.ClientSession) -> None:
    from tests.test_bus_outage import RedisServer

    redis = RedisServer()
    await redis.start()
    srv = await start_server(replace(settings, redis_url=redis.url, embedded_worker=False))
    try:
        status, body, _ = await get(http, srv.url + "/readyz")
        assert status == 200, body
        assert body["checks"]["redis"]["ok"] and body["checks"]["bus"]["ok"]

        await redis.stop()

        async def not_ready() -> dict[str, Any] | None:
            status, body, _ = await get(http, srv.url + "/readyz")
            return body if status == 503 and not body["checks"]["bus"]["ok"] else None

        body = await eventually(not_ready)
        assert body["ready"] is False
        assert body["checks"]["redis"]["ok"] is False and body["checks"]["redis"]["error"]
        assert body["checks"]["database"]["ok"] is True

        await redis.start()  # the same port: the listener reconnects and subscribes again

        async def ready() -> bool:
            status, _, _ = await get(http, srv.url + "/readyz")
            return status == 200

        await eventually(ready, timeout=20)
    finally:
        await srv.runner.cleanup()
        await redis.stop()


async def test_readyz_503_once_draining(settings: Settings, http: aiohttp.ClientSession) -> None:
    srv = await start_server(settings)
    try:
        assert (await get(http, srv.url + "/readyz"))[0] == 200
        # What runs when shutdown begins (aiohttp's on_shutdown, after the listener closed): a
        # request still arriving on an open connection learns the process is leaving.
        await srv.app.shutdown()
        status, body, _ = await get(http, srv.url + "/readyz")
        assert status == 503 and body["draining"] is True and body["ready"] is False
        assert (await get(http, srv.url + "/healthz"))[0] == 200
    finally:
        await srv.runner.cleanup()


# --- /metrics ------------------------------------------------------------------------------------


async def test_metrics_count_requests_by_route_template(server: Server, tenant: TenantInfo,
                                                        http: aiohttp.ClientSession) -> None:
    route = "/api/v1/tickets/{ticket_id}"
    before = await scrape(http, server)
    count = value(before, "channelhub_http_requests_total", method="GET", route=route, status="401") or 0
    unmatched = value(before, "channelhub_http_requests_total", method="GET", route="unmatched", status="404") or 0
    raw = Http(server.url, http)
    for ticket_id in (1, 2, 3):
        assert (await raw("GET", f"/api/v1/tickets/{ticket_id}", host=tenant.domain)).status == 401
    assert (await raw("GET", "/no/such/path", host=tenant.domain)).status == 404

    after = await scrape(http, server)
    assert value(after, "channelhub_http_requests_total", method="GET", route=route, status="401") == count + 3
    assert value(after, "channelhub_http_requests_total", method="GET", route="unmatched",
                 status="404") == unmatched + 1
    # The raw paths never become labels.
    assert not [k for k in after if ("route", "/api/v1/tickets/1") in k[1]]
    timed = value(after, "channelhub_http_request_duration_seconds_count", method="GET", route=route)
    assert timed is not None and timed >= 3
    assert value(after, "channelhub_http_request_duration_seconds_bucket", method="GET", route=route,
                 le="+Inf") == timed
    # The process collectors work with the application's own registry.
    assert value(after, "process_resident_memory_bytes") is not None
    assert any(name == "python_info" for name, _ in after)


async def test_metrics_websockets_backlog_and_probes(server: Server, settings: Settings, tenant: TenantInfo,
                                                     other_tenant: TenantInfo, http: aiohttp.ClientSession) -> None:
    start = await scrape(http, server)
    visitors = value(start, "channelhub_websockets_open", kind="visitor")
    agents = value(start, "channelhub_websockets_open", kind="agent")
    assert visitors is not None and agents is not None

    async def sockets(kind: str, n: float) -> bool:
        return value(await scrape(http, server), "channelhub_websockets_open", kind=kind) == n

    visitor = tenant.visitor()
    await visitor.connect()
    await eventually(lambda: sockets("visitor", visitors + 1))
    # Nobody is online to take it: the ticket waits in the queue.
    await visitor.send("is anyone there?")

    async def queued() -> bool:
        n = value(await scrape(http, server), "channelhub_router_tickets", state="queued")
        return n is not None and n >= 1

    await eventually(queued)
    await visitor.close()
    await eventually(lambda: sockets("visitor", visitors))

    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    await eventually(lambda: sockets("agent", agents + 1))
    await client.close()
    await eventually(lambda: sockets("agent", agents))

    # Probe rows, as a prober records them: the latest result per tenant counts.
    now = utcnow()
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            await availability.record(session, [
                Probe(tenant.id, "prober-a", now - timedelta(seconds=30), ok=False, cause="webchat: no echo",
                      latency_ms=10_000),
                Probe(tenant.id, "prober-a", now, ok=True, latency_ms=120),
                Probe(other_tenant.id, "prober-a", now - timedelta(seconds=30), ok=True, latency_ms=90),
                Probe(other_tenant.id, "prober-a", now, ok=False, cause="domain: connection refused",
                      latency_ms=2_000),
            ])
    finally:
        await db.dispose()

    samples = await scrape(http, server)
    assert value(samples, "channelhub_probe_up", tenant=str(tenant.id)) == 1
    assert value(samples, "channelhub_probe_latency_seconds", tenant=str(tenant.id)) == pytest.approx(0.12)
    assert value(samples, "channelhub_probe_up", tenant=str(other_tenant.id)) == 0
    assert value(samples, "channelhub_probe_timestamp_seconds", tenant=str(tenant.id)) == pytest.approx(
        now.timestamp(), abs=1e-3)
    for state in ("pending", "failed"):
        assert value(samples, "channelhub_inbox_rows", state=state) is not None
    for state in ("pending", "sending", "failed"):
        assert value(samples, "channelhub_outbox_rows", state=state) is not None
    for name in ("channelhub_outbox_lag_seconds", "channelhub_inbox_oldest_pending_seconds"):
        lag = value(samples, name)
        assert lag is not None and lag >= 0
    assert value(samples, "channelhub_group_commit_waiting", commit="inbox_landing") is not None
    assert value(samples, "channelhub_scrape_errors_total", part="backlog") == 0


def non_loopback_address() -> str | None:
    """An address of this machine other than loopback, to connect from (None: there is none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = str(s.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address


async def test_metrics_need_loopback_or_the_token(settings: Settings, http: aiohttp.ClientSession) -> None:
    srv = await start_server(replace(settings, metrics_token=TOKEN))
    try:
        status, body, _ = await get(http, srv.url + "/metrics")
        assert status == 401 and body["error"]["code"] == "unauthorized"
        status, body, _ = await get(http, srv.url + "/metrics", Authorization="Bearer not-the-token")
        assert status == 401
        samples = await scrape(http, srv, Authorization=f"Bearer {TOKEN}")
        assert value(samples, "channelhub_websockets_open", kind="agent") == 0
        # Health and readiness need no token.
        assert (await get(http, srv.url + "/healthz"))[0] == 200
        assert (await get(http, srv.url + "/readyz"))[0] == 200
    finally:
        await srv.runner.cleanup()


async def test_metrics_refused_to_a_remote_client_without_a_token(settings: Settings,
                                                                  http: aiohttp.ClientSession) -> None:
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no address but loopback")
    srv = await start_server(settings, bind="0.0.0.0")
    try:
        status, body, _ = await get(http, f"http://{address}:{srv.port}/metrics")
        assert status == 403 and body["error"]["code"] == "forbidden"
        await scrape(http, srv)  # from loopback: served
        assert (await get(http, f"http://{address}:{srv.port}/readyz"))[0] == 200
    finally:
        await srv.runner.cleanup()
