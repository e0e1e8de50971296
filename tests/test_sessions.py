"""Sessions that end (issue #9, defect 2) and throttled sign-in (defect 3), through HTTP and the gateway.

A socket opened before sign-out, sign out everywhere, deactivation or a role change is closed with
4001 within a second, on this process (the bus) and on another (the bus with Redis, the socket's
own re-check without it). Sign-in failures lock the account and the address out with 429 and
Retry-After, with a lockout that backs off, on every process sharing the database (and Redis).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from admin_api.client import AgentClient, HubError
from core.db import Database
from core.models import LoginLog, utcnow
from tests.conftest import PASSWORD, AgentInfo, Server, TenantInfo, eventually, make_tenant, start_server
from web.http import HUB


async def closed_for_session(client: AgentClient, timeout: float = 1.0) -> None:
    """The client's socket is closed by the hub with 4001 within ``timeout`` seconds."""
    async def closed() -> bool:
        return client.ws is not None and client.ws.closed
    await eventually(closed, timeout=timeout, interval=0.02)
    assert client.ws is not None and client.ws.close_code == 4001


async def still_open(client: AgentClient) -> None:
    assert client.ws is not None and not client.ws.closed
    with pytest.raises(HubError) as err:  # answered: the session still acts (on no ticket of its own)
        await client.action("get_ticket", ticket_id=2**31 - 1)
    assert err.value.code == "ticket_not_found"


@pytest.fixture
async def second_server(settings: Any) -> AsyncIterator[Server]:
    """Another process's server on the same database (and Redis, when configured); it re-checks
    sockets' tokens often, so a bus it does not share still ends its sessions quickly."""
    srv = await start_server(replace(settings, session_check_seconds=0.3))
    yield srv
    await srv.runner.cleanup()


async def test_a_socket_opened_before_sign_out_is_closed(tenant: TenantInfo) -> None:
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    other = await tenant.signed_in(agent)  # another sign-in of the same agent, which stays
    await client.api("POST", "/api/v1/auth/logout")
    await closed_for_session(client)
    await still_open(other)
    with pytest.raises(HubError) as err:
        await client.connect()
    assert err.value.code == "invalid_token"


async def test_sign_out_everywhere_closes_every_socket_on_every_process(
    tenant: TenantInfo, second_server: Server
) -> None:
    agent = await tenant.add_agent()
    here = await tenant.signed_in(agent)
    there = await tenant.signed_in(agent, server=second_server)
    bystander = await tenant.signed_in(await tenant.add_agent())
    await here.api("POST", "/api/v1/auth/logout-all")
    await closed_for_session(here)
    await closed_for_session(there)
    await still_open(bystander)
    for client in (here, there):
        with pytest.raises(HubError) as err:
            await client.api("GET", "/api/v1/me")
        assert err.value.status == 401


@pytest.mark.parametrize("change", [{"active": False}, {"role": "supervisor"}], ids=["deactivated", "role"])
async def test_a_seat_change_closes_the_agents_sockets(tenant: TenantInfo, second_server: Server,
                                                        change: dict[str, Any]) -> None:
    admin = await tenant.signed_in(await tenant.add_agent(role="admin"), connect=False)
    agent = await tenant.add_agent()
    here = await tenant.signed_in(agent)
    there = await tenant.signed_in(agent, server=second_server)
    await admin.api("PATCH", f"/api/v1/agents/{agent.id}", change)
    await closed_for_session(here)
    await closed_for_session(there)
    with pytest.raises(HubError) as err:
        await here.api("GET", "/api/v1/me")
    assert err.value.status == 401
    # A change that ends nothing (the capacity) leaves a new session alone.
    if "role" in change:
        again = await tenant.signed_in(agent)
        await admin.api("PATCH", f"/api/v1/agents/{agent.id}", {"capacity": 2})
        await still_open(again)


async def test_a_password_change_ends_every_other_session(tenant: TenantInfo, second_server: Server) -> None:
    agent = await tenant.add_agent()
    here = await tenant.signed_in(agent)
    there = await tenant.signed_in(agent, server=second_server)
    with pytest.raises(HubError) as err:  # the current password is checked first; nothing changes
        await here.api("PUT", "/api/v1/me/password", {"current_password": "not it", "new_password": "n3w password"})
    assert (err.value.status, err.value.code) == (403, "wrong_password")
    await still_open(there)
    new = await here.api("PUT", "/api/v1/me/password", {"current_password": PASSWORD, "new_password": "n3w password"})
    await closed_for_session(here)
    await closed_for_session(there)
    with pytest.raises(HubError) as err:
        await there.api("GET", "/api/v1/me")
    assert err.value.status == 401
    here.token = new["token"]  # this client carries on with the token it was given
    assert (await here.api("GET", "/api/v1/me"))["agent"]["id"] == agent.id
    with pytest.raises(HubError):
        await tenant.agent_client().login(agent.email, PASSWORD)
    await tenant.agent_client().login(agent.email, "n3w password")


# --- throttled sign-in ----------------------------------------------------------------------------
class Clock:
    """The hubs' clock for lockouts, moved by the test instead of sleeping."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset


@dataclass
class Throttled:
    """A tenant on two processes' servers sharing the database (and Redis), with an agent and a
    client on each server; 3 failures per account, 6 per address; one clock for both."""

    settings: Any
    tenant: TenantInfo
    agent: AgentInfo
    a: AgentClient
    b: AgentClient
    clock: Clock


@pytest.fixture
async def throttled(settings: Any) -> AsyncIterator[Throttled]:
    strict = replace(settings, login_account_failures=3, login_address_failures=6, login_lockout_seconds=60,
                     login_lockout_max_seconds=600)
    one, two = await start_server(strict), await start_server(strict)
    clock = Clock()
    for srv in (one, two):
        srv.app[HUB].logins.clock = clock
    tenant = await make_tenant(settings, one)
    agent = await tenant.add_agent()
    yield Throttled(settings, tenant, agent, tenant.agent_client(one), tenant.agent_client(two), clock)
    await tenant.close()
    for srv in (one, two):
        await srv.runner.cleanup()


async def attempt(client: AgentClient, email: str, password: str) -> tuple[int, str, str | None]:
    async with client.session.post(client.base_url + "/api/v1/auth/login", json={"email": email, "password": password},
                                   headers=client._headers()) as resp:
        body = await resp.json()
        return resp.status, (body.get("error") or {}).get("code", "ok"), resp.headers.get("Retry-After")


async def outcomes(settings: Any, tenant_id: int) -> list[str]:
    db = Database(settings.database_url)
    try:
        async with db.read(tenant_id) as session:
            return list((await session.execute(
                select(LoginLog.outcome).where(LoginLog.tenant_id == tenant_id).order_by(LoginLog.id))).scalars())
    finally:
        await db.dispose()


async def test_sign_in_locks_out_with_backoff_on_every_process(throttled: Throttled) -> None:
    t, email = throttled, throttled.agent.email
    # Failures on either process count together; the third starts the lockout.
    assert (await attempt(t.a, email, "wrong 1"))[:2] == (401, "bad_credentials")
    assert (await attempt(t.b, email, "wrong 2"))[:2] == (401, "bad_credentials")
    assert (await attempt(t.a, email, "wrong 3"))[:2] == (401, "bad_credentials")
    for client in (t.a, t.b):  # the right password too is refused, unchecked, on both processes
        status, code, retry = await attempt(client, email, PASSWORD)
        assert (status, code) == (429, "too_many_attempts") and retry is not None and 50 <= int(retry) <= 60
    assert await outcomes(t.settings, t.tenant.id) == ["bad_password"] * 3 + ["locked", "throttled", "throttled"]

    # After the lockout, one more failure locks it again for twice as long.
    t.clock.offset += timedelta(seconds=61)
    assert (await attempt(t.b, email, "wrong 4"))[:2] == (401, "bad_credentials")
    status, code, retry = await attempt(t.a, email, PASSWORD)
    assert (status, code) == (429, "too_many_attempts") and retry is not None and 110 <= int(retry) <= 120

    # Once it is over, the right password signs in, and the count starts again.
    t.clock.offset += timedelta(seconds=121)
    assert (await attempt(t.a, email, PASSWORD))[:2] == (200, "ok")
    assert (await attempt(t.b, email, "wrong 5"))[:2] == (401, "bad_credentials")
    assert (await attempt(t.b, email, PASSWORD))[:2] == (200, "ok")


async def test_unknown_accounts_and_addresses_are_throttled_alike(throttled: Throttled) -> None:
    t, domain = throttled, throttled.tenant.domain
    # An e-mail nobody has is answered exactly as an agent's: 401s, then 429 (nothing to enumerate).
    answers = [(await attempt(t.a, "nobody@" + domain, "guess"))[:2] for _ in range(4)]
    assert answers == [(401, "bad_credentials")] * 3 + [(429, "too_many_attempts")]
    # The address: 6 failures over several accounts lock this address out of every account.
    for n in range(3):
        assert (await attempt(t.b, f"other{n}@{domain}", "guess"))[:2] == (401, "bad_credentials")
    status, code, retry = await attempt(t.b, t.agent.email, PASSWORD)
    assert (status, code) == (429, "too_many_attempts") and retry is not None
    assert "locked" in await outcomes(t.settings, t.tenant.id)


async def test_a_flood_of_sign_ins_is_checked_only_up_to_the_limit(throttled: Throttled) -> None:
    """40 wrong passwords at once, over two processes: the limit (3) is overshot by at most the
    hashing slots (2 per process), every other attempt is refused unhashed with 429."""
    t = throttled
    answers = await asyncio.gather(*(attempt(t.a if n % 2 else t.b, t.agent.email, f"guess {n}") for n in range(40)))
    checked = [a for a in answers if a[:2] == (401, "bad_credentials")]
    refused = [a for a in answers if a[:2] == (429, "too_many_attempts")]
    assert 3 <= len(checked) <= 3 + 2 * 2 and len(checked) + len(refused) == 40, answers
    assert (await outcomes(t.settings, t.tenant.id)).count("bad_password") == len(checked)
