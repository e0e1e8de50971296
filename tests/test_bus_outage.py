"""Redis stops and starts again under web chat traffic: nothing acknowledged meanwhile is stranded.

The test runs its own redis-server on a spare loopback port (never the shared one) and hub servers
on it: the visitor talks to one, the agent stays connected to another (on PostgreSQL; on SQLite,
the embedded mode's single process, to the same one). While Redis is down every message gets its
201 or its ack (with its client id); once it is back, every one of them reaches the agent as a
``message.created`` event, and the visitor's socket gets the ones it sent over HTTP and the
agent's reply.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import redis.asyncio as aioredis

from admin_api.client import AgentClient, VisitorClient
from core.config import Settings
from tests.conftest import PG_URL, TenantInfo, eventually, free_port, make_tenant, start_server

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")

OUTAGE_SECONDS = 3.0


class RedisServer:
    """A throw-away redis-server on a loopback port, stopped and started by the test."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        client = aioredis.from_url(self.url)

        async def answers() -> bool:
            try:
                return bool(await client.ping())
            except Exception:
                return False

        try:
            await eventually(answers)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), timeout=10)
            self.proc = None


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    server = RedisServer()
    yield server
    await server.stop()


@dataclass
class People:
    tenant: TenantInfo
    agent: AgentClient  # signed in and connected, on the second hub
    visitor: VisitorClient  # on the first hub, not connected

    def agent_got(self) -> set[int]:
        """The ids of the messages the agent got a ``message.created`` event of."""
        return {e["message"]["id"] for e in self.agent.events if e["kind"] == "message.created"}


@pytest.fixture
async def people(settings: Settings, redis_server: RedisServer) -> AsyncIterator[People]:
    await redis_server.start()
    own = replace(settings, redis_url=redis_server.url, queue_namespace=f"outage{uuid.uuid4().hex[:8]}")
    first = await start_server(own)
    # Two hubs (as two processes would) where the database allows it; SQLite's embedded mode is one.
    second = await start_server(own) if PG_URL else first
    tenant = await make_tenant(settings, first)
    agent = await tenant.add_agent(role="admin")
    yield People(tenant, await tenant.signed_in(agent, server=second), tenant.visitor(server=first))
    await tenant.close()
    await first.runner.cleanup()
    if second is not first:
        await second.runner.cleanup()


async def test_messages_acknowledged_while_redis_is_down_reach_the_agent(
    people: People, redis_server: RedisServer
) -> None:
    client, visitor = people.agent, people.visitor
    await visitor.connect()
    assert visitor.visitor_id is not None
    before = await visitor.send("before the outage")
    await visitor.wait_frame(lambda f: f.get("type") == "ack" and f.get("client_id") == before)
    first = await client.wait_event(lambda e: e["kind"] == "message.created")

    await redis_server.stop()
    # The agent's reply is stored and answered ok (its publication and enqueue fail after commit).
    reply = await client.reply(first["ticket_id"], "the agent answers meanwhile")
    acked: dict[str, int] = {}  # client id -> stored message id
    mine: set[int] = set()  # those of the connected visitor
    statuses: list[int] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + OUTAGE_SECONDS
    n = 0
    while loop.time() < deadline:
        n += 1
        cid = await visitor.send(f"socket {n}")
        ack = await visitor.wait_frame(lambda f, cid=cid: f.get("client_id") == cid)
        assert ack["type"] == "ack", ack  # not an error frame: the message was stored
        acked[cid] = ack["message"]["id"]
        mine.add(acked[cid])
        for visitor_id in (visitor.visitor_id, None):  # the same visitor, and a new one
            cid = f"http-{n}-{uuid.uuid4().hex[:6]}"
            status, body = await _post(visitor, {"visitor_id": visitor_id, "client_id": cid, "text": f"http {n}"})
            statuses.append(status)
            assert status == 201, body
            acked[cid] = body["message"]["id"]
            if visitor_id is not None:
                mine.add(acked[cid])
        await asyncio.sleep(0.1)
    assert n >= 3
    await redis_server.start()

    async def all_reached_the_agent() -> bool:
        return set(acked.values()) <= people.agent_got() or False

    await eventually(all_reached_the_agent, timeout=20)

    # The visitor's own socket gets its messages sent over HTTP meanwhile, and the agent's reply
    # (from history: its delivery waits for the sweeper), too.
    mine.add(reply["id"])

    async def visitor_has_them() -> bool:
        return mine <= set(visitor.messages) or False

    await eventually(visitor_has_them, timeout=20)
    assert set(statuses) == {201}


async def _post(visitor: VisitorClient, body: dict[str, Any]) -> tuple[int, Any]:
    async with visitor.session.post(visitor.base_url + "/webchat/messages", json=body,
                                    headers=visitor._headers()) as resp:
        return resp.status, await resp.json()


async def test_a_short_blink_of_redis_is_noticed(people: People, redis_server: RedisServer) -> None:
    """Redis restarts at once, and messages come right after it: published fine, but perhaps
    before the listeners subscribed again. They reach the agent all the same (the listener sees
    every loss, and catches up once subscribed again)."""
    await redis_server.stop()
    await redis_server.start()
    stored = []
    for n in range(10):
        status, body = await _post(people.visitor, {"visitor_id": None, "client_id": f"blink-{n}",
                                                    "text": f"blink {n}"})
        assert status == 201, body
        stored.append(body["message"]["id"])

    async def all_reached_the_agent() -> bool:
        return set(stored) <= people.agent_got() or False

    await eventually(all_reached_the_agent, timeout=20)
