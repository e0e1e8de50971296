"""Sign-in (every attempt logged), tokens bound to their tenant, and presence kept by heartbeats."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select

from admin_api.client import AgentClient, HubError
from core.db import Database
from core.models import LoginLog
from tests.conftest import PASSWORD, Server, TenantInfo, make_tenant, start_server


async def test_every_sign_in_is_logged(tenant: TenantInfo, settings: Any) -> None:
    agent = await tenant.add_agent()
    client = tenant.agent_client()
    with pytest.raises(HubError) as err:
        await client.login(agent.email, "not it")
    assert err.value.status == 401 and err.value.code == "bad_credentials"
    with pytest.raises(HubError):
        await client.login("nobody@nowhere.example", "whatever")
    await client.login(agent.email.upper(), PASSWORD)  # e-mail is case-insensitive
    me = await client.api("GET", "/api/v1/me")
    assert me["agent"]["id"] == agent.id

    db = Database(settings.database_url)
    try:
        async with db.read(tenant.id) as session:
            rows = (await session.execute(select(LoginLog).order_by(LoginLog.id))).scalars().all()
    finally:
        await db.dispose()
    assert [r.outcome for r in rows] == ["bad_password", "unknown_user", "success"]
    assert all(r.ip == "127.0.0.1" and r.user_agent for r in rows)
    assert rows[0].agent_id == agent.id and rows[1].agent_id is None


async def test_logout_revokes_the_token(tenant: TenantInfo) -> None:
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent, connect=False)
    await client.api("POST", "/api/v1/auth/logout")
    with pytest.raises(HubError) as err:
        await client.api("GET", "/api/v1/me")
    assert err.value.status == 401


@pytest.fixture
async def quick_server(settings: Any) -> AsyncIterator[Server]:
    srv = await start_server(replace(settings, heartbeat_timeout=1.0))
    yield srv
    await srv.runner.cleanup()


async def test_missed_heartbeats_take_an_agent_offline(settings: Any, quick_server: Server) -> None:
    tenant = await make_tenant(settings, quick_server)
    try:
        sup = await tenant.signed_in(await tenant.add_agent(role="supervisor", capacity=0))
        quiet = await tenant.add_agent()
        chatty = await tenant.add_agent()
        c_quiet = await tenant.signed_in(quiet)
        c_chatty = await tenant.signed_in(chatty)

        async def keep_pinging() -> None:
            while True:
                await c_chatty.send_frame({"type": "ping"})
                await asyncio.sleep(0.2)

        pinger = asyncio.create_task(keep_pinging())
        try:
            gone = await sup.wait_event(lambda e: e["kind"] == "agent.presence" and e["agent_id"] == quiet.id
                                        and e["status"] == "offline", timeout=10)
            assert gone["previous"] == "online"
            await asyncio.sleep(1.5)
            agents = {a["id"]: a["status"] for a in (await sup.api("GET", "/api/v1/agents"))["agents"]}
            assert agents[chatty.id] == "online" and agents[quiet.id] == "offline"
        finally:
            pinger.cancel()
        assert c_quiet.ws is not None
    finally:
        await tenant.close()


async def test_presence_can_be_set_over_the_socket_and_http(tenant: TenantInfo) -> None:
    agent = await tenant.add_agent()
    client: AgentClient = await tenant.signed_in(agent)
    assert (await client.action("presence", status="away"))["status"] == "away"
    assert (await client.api("GET", "/api/v1/me"))["agent"]["status"] == "away"
    await client.api("PUT", "/api/v1/me/presence", {"status": "online"})
    assert (await client.api("GET", "/api/v1/me"))["agent"]["status"] == "online"
    with pytest.raises(HubError) as err:
        await client.action("presence", status="sleeping")
    assert err.value.code == "invalid_presence"
