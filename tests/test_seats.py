"""Seats added and removed in batches of up to 100, all or nothing, at once: a new seat signs in
immediately; a removed one's tokens and sockets end and its open tickets go back to routing; a
billed tenant pays for the seats it adds (prorated by the day, 402 and nothing changed when the
balance is short) and is credited the unused days of those it removes; its seats never exceed
what it paid for, whatever races."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from core import billing
from core.billing import Actor, days_from, prorate, term_days
from core.config import Settings
from core.db import Database
from core.models import Agent, LedgerEntry
from tests.conftest import PASSWORD, Server, TenantInfo, eventually, make_tenant
from tests.support import Http, Reply, assert_error, tenant_rows
from tests.test_sessions import closed_for_session

PRICE = 36_500
OPERATOR = Actor("operator", 1)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url)
    yield database
    await database.dispose()


@pytest.fixture
async def http(server: Server) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession() as session:
        yield Http(server.url, session)


async def login(http: Http, domain: str, email: str) -> Reply:
    return await http("POST", "/api/v1/auth/login", host=domain, json_body={"email": email, "password": PASSWORD})


async def admin_token(http: Http, t: TenantInfo, role: str = "admin") -> str:
    admin = await t.add_agent(role=role)
    reply = await login(http, t.domain, admin.email)
    assert reply.status == 200, reply
    return str(reply.body["token"])


def new_agents(t: TenantInfo, n: int, **extra: Any) -> list[dict[str, Any]]:
    tag = uuid.uuid4().hex[:6]
    return [{"email": f"seat{i}-{tag}@{t.domain}", "name": f"Seat {i}", "password": PASSWORD, **extra}
            for i in range(n)]


async def bill(db: Database, t: TenantInfo, balance: int) -> None:
    """Put the tenant on a contract from today, with ``balance`` to spend and its seats paid."""
    now = datetime.now(UTC)
    async with db.session() as s:
        await billing.open_contract(s, t.id, price_per_seat_year=PRICE, currency="CNY", term_start=now.date(),
                                    now=now, actor=OPERATOR)
        in_use = await billing.seats_in_use(s, t.id)
        cost = prorate(in_use, PRICE, 365, 365) if in_use else 0
        await billing.top_up(s, t.id, cost + balance, now=now, actor=OPERATOR)
        if in_use:
            await billing.charge_for_seats(s, t.id, in_use, now=now, actor=OPERATOR)


async def ledger_state(db: Database, t: TenantInfo) -> tuple[int, int, int, int]:
    """(balance, sum of the ledger, seats paid, active agents)."""
    async with db.read() as s:
        contract = await billing.contract_of(s, t.id)
        assert contract is not None
        total = await billing.balance(s, t.id)
        agents = (await s.execute(select(func.count()).select_from(Agent).where(
            Agent.tenant_id == t.id, Agent.active.is_(True)))).scalar_one()
        return contract.balance, total, contract.seats, int(agents)


async def test_a_hundred_seats_in_one_request_all_sign_in_at_once(tenant: TenantInfo, http: Http) -> None:
    token = await admin_token(http, tenant)
    batch = new_agents(tenant, 100, capacity=3)
    made = await http("POST", "/api/v1/agents/batch", host=tenant.domain, token=token, json_body={"agents": batch})
    assert made.status == 201, made
    assert [a["email"] for a in made.body["agents"]] == [b["email"] for b in batch]
    assert made.body["charged"] is None  # an unbilled tenant (no contract): seats are not metered
    replies = await asyncio.gather(*(login(http, tenant.domain, b["email"]) for b in batch))
    assert [r.status for r in replies] == [200] * 100, [r for r in replies if r.status != 200][:3]
    listed = await http("GET", "/api/v1/agents", host=tenant.domain, token=token)
    assert len(listed.body["agents"]) == 101


async def test_a_hundred_and_one_are_refused_whole(tenant: TenantInfo, http: Http, db: Database) -> None:
    token = await admin_token(http, tenant)
    before = await tenant_rows(db, tenant.id)
    error = assert_error(await http("POST", "/api/v1/agents/batch", host=tenant.domain, token=token,
                                    json_body={"agents": new_agents(tenant, 101)}), 422, "validation_error")
    assert error["message"].startswith("agents:") and "100" in error["message"], error
    removal = assert_error(await http("POST", "/api/v1/agents/batch-remove", host=tenant.domain, token=token,
                                      json_body={"agent_ids": list(range(1, 102))}), 422, "validation_error")
    assert removal["message"].startswith("agent_ids:"), removal
    # One bad entry refuses the whole batch too.
    batch = new_agents(tenant, 5)
    batch[3]["email"] = batch[1]["email"]
    assert_error(await http("POST", "/api/v1/agents/batch", host=tenant.domain, token=token,
                            json_body={"agents": batch}), 422, "duplicate_email")
    existing = new_agents(tenant, 3)
    existing[2]["email"] = tenant.agents[0].email
    conflict = assert_error(await http("POST", "/api/v1/agents/batch", host=tenant.domain, token=token,
                                       json_body={"agents": existing}), 409, "agent_exists")
    assert conflict["details"]["emails"] == [tenant.agents[0].email]
    assert await tenant_rows(db, tenant.id) == before


async def test_a_billed_tenant_pays_for_new_seats_by_the_day_or_nothing_changes(
        tenant: TenantInfo, http: Http, db: Database) -> None:
    token = await admin_token(http, tenant)
    await bill(db, tenant, balance=prorate(3, PRICE, 365, 365))
    async with db.read() as s:
        contract = await billing.contract_of(s, tenant.id)
        assert contract is not None
        days = days_from(contract, datetime.now(UTC).date())
        cost_of = lambda n: prorate(n, PRICE, days, term_days(contract))  # noqa: E731
    made = await http("POST", "/api/v1/agents/batch", host=tenant.domain, token=token,
                      json_body={"agents": new_agents(tenant, 2)})
    assert made.status == 201, made
    assert made.body["charged"]["amount"] == cost_of(2) and made.body["charged"]["seats"] == 2, made
    assert made.body["charged"]["days"] == days
    # Two more cannot be paid: refused with what it costs, and nothing changed.
    before = await tenant_rows(db, tenant.id)
    short = assert_error(await http("POST", "/api/v1/agents/batch", host=tenant.domain, token=token,
                                    json_body={"agents": new_agents(tenant, 2)}), 402, "insufficient_balance")
    assert short["details"]["required"] == cost_of(2)
    assert await tenant_rows(db, tenant.id) == before
    balance, total, paid, active = await ledger_state(db, tenant)
    assert balance == total >= 0 and paid == active == 3


async def test_seat_batches_racing_for_the_last_of_the_balance_never_overspend(
        tenant: TenantInfo, http: Http, db: Database) -> None:
    token = await admin_token(http, tenant)
    await bill(db, tenant, balance=prorate(3, PRICE, 365, 365))  # 3 seats' worth; each batch wants 2
    replies = await asyncio.gather(*(http("POST", "/api/v1/agents/batch", host=tenant.domain, token=token,
                                          json_body={"agents": new_agents(tenant, 2)}) for _ in range(4)))
    assert sorted(r.status for r in replies) == [201, 402, 402, 402], replies
    balance, total, paid, active = await ledger_state(db, tenant)
    assert balance == total >= 0 and paid == active == 3


async def test_a_removed_seat_is_signed_out_its_tickets_rerouted_and_its_days_credited(
        tenant: TenantInfo, http: Http, db: Database) -> None:
    token = await admin_token(http, tenant)
    leaving = await tenant.add_agent(capacity=5)
    staying = await tenant.add_agent(capacity=5)
    await bill(db, tenant, balance=0)
    gone = await tenant.signed_in(leaving)
    chat = await http("POST", "/webchat/messages", host=tenant.domain,
                      json_body={"client_id": "order", "text": "Where is my order?", "name": "Li"})
    assert chat.status == 201, chat

    async def assignee() -> int | None:
        listed = await http("GET", "/api/v1/tickets", host=tenant.domain, token=token)
        tickets = listed.body["tickets"]
        return tickets[0]["assignee_id"] if tickets and tickets[0]["assignee_id"] else None

    assert await eventually(assignee) == leaving.id
    stays = await tenant.signed_in(staying)
    removed = await http("POST", "/api/v1/agents/batch-remove", host=tenant.domain, token=token,
                         json_body={"agent_ids": [leaving.id]})
    assert removed.status == 200 and removed.body["removed"] == [leaving.id], removed
    credit = removed.body["credited"]
    assert credit["seats"] == 1 and credit["amount"] > 0, removed
    # The socket closes at once, the token is dead, and the ticket went to the agent still here.
    await closed_for_session(gone, timeout=5.0)
    assert_error(await http("GET", "/api/v1/me", host=tenant.domain, token=gone.token), 401, "invalid_token")
    assert_error(await login(http, tenant.domain, leaving.email), 401)

    async def moved() -> bool:
        return await assignee() == staying.id

    await eventually(moved)
    await stays.wait_event(lambda e: e.get("kind") == "ticket.assigned", timeout=10)
    balance, total, paid, active = await ledger_state(db, tenant)
    assert balance == total and paid == active == 2
    # Again: already removed, nothing changes and nothing is credited twice.
    again = await http("POST", "/api/v1/agents/batch-remove", host=tenant.domain, token=token,
                       json_body={"agent_ids": [leaving.id]})
    assert again.body == {"removed": [], "already_removed": [leaving.id], "credited": None}, again


async def test_a_seat_added_and_removed_the_same_day_costs_that_day(
        tenant: TenantInfo, http: Http, db: Database) -> None:
    token = await admin_token(http, tenant)
    await bill(db, tenant, balance=PRICE)
    start = (await ledger_state(db, tenant))[0]
    made = await http("POST", "/api/v1/agents/batch", host=tenant.domain, token=token,
                      json_body={"agents": new_agents(tenant, 1)})
    removed = await http("POST", "/api/v1/agents/batch-remove", host=tenant.domain, token=token,
                         json_body={"agent_ids": [made.body["agents"][0]["id"]]})
    assert removed.status == 200, removed
    async with db.read() as s:
        contract = await billing.contract_of(s, tenant.id)
        assert contract is not None
        day = prorate(1, PRICE, 1, term_days(contract))
        kinds = [e.kind for e in (await s.execute(select(LedgerEntry).where(LedgerEntry.tenant_id == tenant.id)
                                                  .order_by(LedgerEntry.id))).scalars()][-2:]
    assert kinds == ["charge", "credit"]
    assert start - (await ledger_state(db, tenant))[0] == day


async def test_owners_are_made_and_removed_by_owners_only(tenant: TenantInfo, http: Http) -> None:
    admin = await admin_token(http, tenant)
    owner_info = await tenant.add_agent(role="owner")
    owner = str((await login(http, tenant.domain, owner_info.email)).body["token"])
    owner_seat = [{**new_agents(tenant, 1)[0], "role": "owner"}]
    assert_error(await http("POST", "/api/v1/agents/batch", host=tenant.domain, token=admin,
                            json_body={"agents": owner_seat}), 403, "owner_only")
    assert_error(await http("POST", "/api/v1/agents/batch-remove", host=tenant.domain, token=admin,
                            json_body={"agent_ids": [owner_info.id]}), 403, "owner_only")
    assert_error(await http("PATCH", f"/api/v1/agents/{owner_info.id}", host=tenant.domain, token=admin,
                            json_body={"role": "agent"}), 403, "owner_only")
    assert_error(await http("POST", "/api/v1/agents/batch-remove", host=tenant.domain, token=owner,
                            json_body={"agent_ids": [owner_info.id]}), 409, "cannot_remove_self")
    assert_error(await http("PATCH", f"/api/v1/agents/{owner_info.id}", host=tenant.domain, token=owner,
                            json_body={"role": "admin"}), 409, "last_owner")
    second = await http("POST", "/api/v1/agents/batch", host=tenant.domain, token=owner,
                        json_body={"agents": owner_seat})
    assert second.status == 201 and second.body["agents"][0]["role"] == "owner", second
    ok = await http("PATCH", f"/api/v1/agents/{second.body['agents'][0]['id']}", host=tenant.domain, token=owner,
                    json_body={"active": False})
    assert ok.status == 200, ok
    me = await http("GET", "/api/v1/me", host=tenant.domain, token=owner)
    assert me.body["agent"]["role"] == "owner"


async def test_another_tenants_agents_are_not_removed(settings: Settings, server: Server, http: Http) -> None:
    a, b = await make_tenant(settings, server), await make_tenant(settings, server)
    token = await admin_token(http, a)
    victim = await b.add_agent()
    assert_error(await http("POST", "/api/v1/agents/batch-remove", host=a.domain, token=token,
                            json_body={"agent_ids": [victim.id]}), 404, "agent_not_found")
    assert (await login(http, b.domain, victim.email)).status == 200
