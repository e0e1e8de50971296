"""Load shedding (issue #10): past saturation a process refuses new work at once, 503 ``busy`` with
Retry-After over HTTP and a ``busy`` frame on the socket (which stays open), instead of queueing it
until answers take seconds; and every message it acknowledged is stored, once.

Saturation is made the way it happens: the database stops keeping up. Here every connection of
the server's pool is held, so the first group commit waits for one; the messages behind it wait
in its queue, and once the oldest has waited ``busy_after`` new ones are refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from core.config import Settings
from tests.conftest import Server, TenantInfo, eventually, start_server
from tests.support import assert_error_frame
from web.http import HUB

BUSY_AFTER = 1.0


async def until(check: Callable[[], bool]) -> None:
    async def met() -> bool:
        return check()

    await eventually(met)


@pytest.fixture
async def shedding_server(settings: Settings) -> AsyncIterator[Server]:
    srv = await start_server(replace(settings, db_pool_size=1, db_pool_timeout=30, busy_after=BUSY_AFTER))
    yield srv
    await srv.runner.cleanup()


async def test_past_saturation_messages_are_refused_busy_and_every_acknowledged_one_is_stored_once(
    tenant: TenantInfo, shedding_server: Server,
) -> None:
    srv = shedding_server
    live = srv.app[HUB].inbox.live
    visitors = [tenant.visitor(server=srv) for _ in range(8)]
    for v in visitors:
        await v.connect()  # the hello reads history: before the pool is held
    url = f"{srv.url}/webchat/messages"
    async with aiohttp.ClientSession(headers={"Host": tenant.domain}) as http, AsyncExitStack() as held:
        db = srv.app[HUB].db
        for engine in {id(e): e for e in (db.engine, db.read_engine)}.values():
            for _ in range(2):  # pool_size + max_overflow
                await held.enter_async_context(engine.connect())

        # Accepted: the first is in a batch waiting for a connection, the second waits behind it.
        first = await visitors[0].send("accepted while the database is stuck", client_id="accepted-0")
        await until(lambda: live.in_flight == 1)  # taken, and stuck
        second = await visitors[1].send("accepted behind it", client_id="accepted-1")
        await until(lambda: live.waiting == 1)
        await asyncio.sleep(BUSY_AFTER * 2)  # the queue's oldest has now waited past busy_after

        # A burst past saturation: refused at once, on every other socket and over HTTP (a
        # socket takes its customer's messages in order: the first two wait for their acks).
        burst = {}
        for i, v in enumerate(visitors[2:], start=2):
            for n in range(3):
                burst[await v.send(f"burst {i}.{n}", client_id=f"burst-{i}-{n}")] = v
        for client_id, v in burst.items():
            frame = await v.wait_frame(lambda f, c=client_id: f.get("client_id") == c)
            assert_error_frame(frame, "busy")

        async def post(i: int) -> tuple[int, str | None, dict[str, Any]]:
            async with http.post(url, json={"visitor_id": visitors[i].visitor_id, "client_id": f"http-{i}",
                                            "text": f"over http {i}"}) as resp:
                return resp.status, resp.headers.get("Retry-After"), await resp.json()

        for status, retry_after, body in await asyncio.gather(*(post(i) for i in range(len(visitors)))):
            assert status == 503, body
            assert retry_after is not None and float(retry_after) > 0
            assert body["error"]["code"] == "busy"
        assert live.refused >= len(burst) + len(visitors)
        # Nothing refused was stored, and the accepted two are not acknowledged yet.
        assert not [f for v in visitors for f in v.frames if f.get("type") == "ack"]

    # The database is back: what was accepted is acknowledged and stored.
    ack0 = await visitors[0].wait_frame(lambda f: f.get("type") == "ack" and f["client_id"] == first)
    ack1 = await visitors[1].wait_frame(lambda f: f.get("type") == "ack" and f["client_id"] == second)
    # The sockets stayed open: the widget sends a refused message again, and now it is stored.
    for client_id, v in burst.items():
        await v.send(f"again {client_id}", client_id=client_id)
    for client_id, v in burst.items():
        await v.wait_frame(lambda f, c=client_id: f.get("type") == "ack" and f["client_id"] == c)
    async with aiohttp.ClientSession(headers={"Host": tenant.domain}) as http:
        async with http.post(url, json={"visitor_id": visitors[0].visitor_id, "client_id": "http-0",
                                        "text": "over http 0"}) as resp:
            assert resp.status == 201, await resp.text()

    expected = {v.visitor_id: [] for v in visitors}
    expected[visitors[0].visitor_id] += [ack0["message"]["text"], "over http 0"]
    expected[visitors[1].visitor_id] += [ack1["message"]["text"]]
    for client_id, v in burst.items():
        expected[v.visitor_id].append(f"again {client_id}")
    for v in visitors:
        fresh = tenant.visitor(visitor_id=v.visitor_id, server=srv)
        texts = [m["text"] for m in (await fresh.connect())["messages"]]
        assert sorted(texts) == sorted(expected[v.visitor_id]), texts  # each once, no refused one
