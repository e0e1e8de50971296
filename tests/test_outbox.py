"""Outbound delivery through the outbox: retries with backoff on network trouble, a clear failure
for what cannot be sent, and the sweeper picking up what a crash left behind.

The channel here is a tiny test channel whose "platform" is an HTTP stand-in on loopback: the edge
of the world we don't own, as a real channel's API would be."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select

from connectors.registry import CHANNELS
from core.channels import Connector, InboundMessage, OutboundMessage
from core.config import Settings
from core.db import Database
from core.errors import DeliveryError
from core.ingest import ingest
from core.models import DeliveryState, Direction, Message, OutboxItem, utcnow
from tests.conftest import Server, TenantInfo, eventually, free_port, make_tenant, start_server
from web.channels import ChannelSpec
from web.http import HUB


class StandIn:
    """The channel platform: answers each send with the next scripted status (then 200)."""

    def __init__(self) -> None:
        self.script: dict[str, list[int]] = {}
        self.received: list[dict[str, Any]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        statuses = self.script.get(body["to"], [])
        status = statuses.pop(0) if statuses else 200
        self.received.append({**body, "status": status})
        if status != 200:
            return web.json_response({"error": "scripted"}, status=status)
        return web.json_response({"id": f"ch-{len(self.received)}"})


STAND_IN = StandIn()


class RelayConnector(Connector):
    """A minimal channel: POST the reply to the platform, as an HTTP API channel would."""

    kind = "relaytest"

    async def send(self, message: OutboundMessage) -> str:
        try:
            async with aiohttp.ClientSession() as session, session.post(
                STAND_IN.url, json={"to": message.external_id, "text": message.text}
            ) as resp:
                body = await resp.json()
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"network: {exc}", retry=True) from exc
        if resp.status >= 500:
            raise DeliveryError(f"platform answered {resp.status}", retry=True, code="platform_unavailable")
        if resp.status >= 400:
            raise DeliveryError("the platform refused this message", retry=False, code="refused")
        return str(body["id"])


RELAY = ChannelSpec(kind=RelayConnector.kind, live_chat=False, connector=RelayConnector)


@pytest.fixture(scope="module")
async def server(settings: Settings) -> AsyncIterator[Server]:
    """A hub serving the relay channel beside the real ones: channels are handed to the hub, so the
    test builds one with its own. Its queue namespace is its own too, so the test run's main server
    (which has no relay connector) never takes its deliveries."""
    srv = await start_server(replace(settings, queue_namespace=f"{settings.queue_namespace}-relay"),
                             channels=(*CHANNELS, RELAY))
    yield srv
    await srv.runner.cleanup()


@pytest.fixture
async def tenant(settings: Settings, server: Server) -> AsyncIterator[TenantInfo]:
    t = await make_tenant(settings, server)
    yield t
    await t.close()


@pytest.fixture(scope="module")
async def stand_in() -> AsyncIterator[StandIn]:
    app = web.Application()
    app.router.add_post("/send", STAND_IN.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    STAND_IN.url = f"http://127.0.0.1:{port}/send"
    yield STAND_IN
    await runner.cleanup()


async def _ticket_on_relay(server: Server, tenant: TenantInfo, customer: str) -> int:
    result = await ingest(server.app[HUB], InboundMessage(
        tenant_id=tenant.id, channel="relaytest", external_id=customer, text="help please",
        channel_message_id=uuid.uuid4().hex))
    return int(result.ticket["id"])


async def test_network_trouble_is_retried_until_delivered(server: Server, tenant: TenantInfo,
                                                          stand_in: StandIn) -> None:
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    stand_in.script[customer] = [503, 502]
    ticket_id = await _ticket_on_relay(server, tenant, customer)
    await client.reply(ticket_id, "third time lucky")

    delivered = await client.wait_event(lambda e: e["kind"] == "message.delivery", timeout=20)
    assert delivered["delivery_state"] == "sent"
    attempts = [r["status"] for r in stand_in.received if r["to"] == customer]
    assert attempts == [503, 502, 200]
    detail = await client.api("GET", f"/api/v1/tickets/{ticket_id}")
    outbound = [m for m in detail["messages"] if m["direction"] == "outbound"]
    assert outbound[0]["delivery_state"] == "sent"


async def test_refused_message_fails_with_a_reason_for_the_agent(server: Server, tenant: TenantInfo,
                                                                 stand_in: StandIn) -> None:
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    stand_in.script[customer] = [400]
    ticket_id = await _ticket_on_relay(server, tenant, customer)
    await client.reply(ticket_id, "will be refused")
    failed = await client.wait_event(lambda e: e["kind"] == "message.delivery", timeout=10)
    assert failed["delivery_state"] == "failed"
    assert failed["error"]["code"] == "refused"
    assert [r["status"] for r in stand_in.received if r["to"] == customer] == [400]  # not retried


async def test_sweeper_sends_what_a_crash_left_behind(server: Server, tenant: TenantInfo, settings: Any,
                                                      stand_in: StandIn) -> None:
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    ticket_id = await _ticket_on_relay(server, tenant, customer)
    # What a worker that died mid-delivery leaves: a claimed row whose claim has run out, and no
    # queue message left to deliver it.
    db = Database(settings.database_url)
    try:
        async with db.session(tenant.id) as session:
            message = Message(tenant_id=tenant.id, ticket_id=ticket_id, channel="relaytest",
                              direction=Direction.OUTBOUND, author_agent_id=agent.id, body="after the crash",
                              attachments=[], delivery_state=DeliveryState.PENDING)
            session.add(message)
            await session.flush()
            session.add(OutboxItem(tenant_id=tenant.id, message_id=message.id, channel="relaytest",
                                   state=DeliveryState.SENDING, attempts=1,
                                   locked_until=utcnow() - timedelta(seconds=5)))
            message_id = message.id
    finally:
        await db.dispose()

    delivered = await client.wait_event(
        lambda e: e["kind"] == "message.delivery" and e["message_id"] == message_id, timeout=20)
    assert delivered["delivery_state"] == "sent"
    assert [r["text"] for r in stand_in.received if r["to"] == customer] == ["after the crash"]

    async def row_state() -> Any:
        db = Database(settings.database_url)
        try:
            async with db.read(tenant.id) as session:
                stmt = select(OutboxItem).where(OutboxItem.message_id == message_id)
                row = (await session.execute(stmt)).scalar_one()
                return row.state == DeliveryState.SENT and row.attempts == 2
        finally:
            await db.dispose()

    await eventually(row_state)
