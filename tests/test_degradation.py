"""Graceful degradation (#15, core.breakers): billing fails for real (its ledger table is taken
away) and messaging goes on end to end while billing's breaker opens and its routes answer 503;
then the table comes back, the trial closes the breaker, and the renewal that fell due meanwhile is
charged exactly once. The operator switches billing off and on (state, history, audit, /healthz);
the breaker's rules (counting, cooldown doubling, one trial); the state shared by two hubs on one
database (over Redis when it is configured).

These tests run on a database of their own: they break billing's tables and change the shared
state of subsystems, which the other tests' server must never see. Time that decides (renewals,
cooldowns) is handed in; nothing sleeps for it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from core import billing, operators, tenants
from core.breakers import Actor, SubsystemOffline
from core.config import Settings
from core.db import Database, create_pg_database, drop_pg_database, migrate
from core.errors import InvalidInput
from core.hub import Hub
from core.models import AuditLog, LedgerEntry
from tests.conftest import OPERATOR_HOST, PASSWORD, PG_URL, Server, TenantInfo, eventually, make_tenant, start_server
from tests.support import Http, assert_error
from web.http import HUB

PRICE = 36_500
OPERATOR_PASSWORD = "operator degrade passphrase"
OPERATOR = billing.Actor("operator", None)


@dataclass
class Site:
    """A server on a database of its own, raw HTTP to it, and an operator of each role."""

    settings: Settings
    server: Server
    db: Database
    http: Http
    tokens: dict[str, str]
    operator_ids: dict[str, int]

    @property
    def hub(self) -> Hub:
        return self.server.app[HUB]


async def own_settings(base: Settings, tmp: Any) -> Settings:
    if PG_URL:
        url = await create_pg_database(PG_URL, f"{make_url(PG_URL).database or 'channelhub'}_dg{os.getpid()}")
    else:
        url = f"sqlite+aiosqlite:///{tmp / 'degrade.db'}"
    db = Database(url)
    await migrate(db)
    await db.dispose()
    # No periodic billing round (billing_interval 0): the tests run the rounds, with their clock.
    return replace(base, database_url=url, queue_namespace=f"chdegrade{os.getpid()}", billing_interval=0.0,
                   breaker_failures=3,
                   breaker_cooldown=60.0, breaker_cooldown_max=240.0, breaker_refresh=5.0)


@pytest.fixture(scope="module")
async def site(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    own = await own_settings(settings, tmp_path_factory.mktemp("degrade"))
    server = await start_server(own)
    db = Database(own.database_url)
    async with aiohttp.ClientSession() as session:
        http = Http(server.url, session)
        tokens, ids = {}, {}
        for role in ("owner", "support", "billing"):
            email = f"{role}-{uuid.uuid4().hex[:6]}@operator.example"
            async with db.session() as s:
                account = await operators.create_account(s, email=email, name=role.title(),
                                                         password=OPERATOR_PASSWORD, role=role, actor=OPERATOR)
                await s.flush()
                ids[role] = account.id
            reply = await http("POST", "/operator/v1/auth/login", host=OPERATOR_HOST,
                               json_body={"email": email, "password": OPERATOR_PASSWORD})
            assert reply.status == 200, reply
            tokens[role] = reply.body["token"]
        yield Site(own, server, db, http, tokens, ids)
    await server.runner.cleanup()
    await db.dispose()
    if PG_URL:
        await drop_pg_database(own.database_url)


def at(day: date, hour: int = 1) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


async def billed_tenant(site: Site, *, ends_in_days: int = 5) -> tuple[TenantInfo, date]:
    """A tenant billed from nearly a year ago (its term ends in a few days), paid up for two more
    terms, with an admin and an agent (two seats, charged): its term's last day after tomorrow."""
    tenant = await make_tenant(site.settings, site.server)
    today = datetime.now(UTC).date()
    start = today - timedelta(days=365 - ends_in_days)
    async with site.db.session() as s:
        contract = await billing.open_contract(s, tenant.id, price_per_seat_year=PRICE, currency="CNY",
                                               term_start=start, now=at(start), actor=OPERATOR)
        await billing.top_up(s, tenant.id, 5 * 2 * PRICE, now=at(start), actor=OPERATOR, reference="bank")
        term_end = contract.term_end
    await tenant.add_agent(role="admin")
    await tenant.add_agent()
    assert term_end > today
    return tenant, term_end


async def renewals(site: Site, tenant_id: int) -> list[LedgerEntry]:
    async with site.db.read(tenant_id) as s:
        entries = await billing.ledger(s, tenant_id)
    return [e for e in entries if e.kind == "charge" and e.detail.get("reason") == "renewal"]


async def balance_is_the_sum(site: Site, tenant_id: int) -> None:
    async with site.db.read(tenant_id) as s:
        entries = await billing.ledger(s, tenant_id)
        contract = await billing.contract_of(s, tenant_id)
    assert contract is not None and contract.balance == sum(e.amount for e in entries)


async def ddl(site: Site, statement: str) -> None:
    async with site.db.session() as s:
        await s.execute(text(statement))


async def sign_in(site: Site, tenant: TenantInfo, email: str) -> str:
    reply = await site.http("POST", "/api/v1/auth/login", host=tenant.domain,
                            json_body={"email": email, "password": PASSWORD})
    assert reply.status == 200, reply
    return str(reply.body["token"])


async def healthz(site: Site) -> dict[str, Any]:
    reply = await site.http("GET", "/healthz", host="anything.example")
    assert reply.status == 200 and reply.body["ok"] is True, reply
    return dict(reply.body["subsystems"])


def assert_offline(reply: Any, state: str) -> None:
    error = assert_error(reply, 503, "subsystem_offline")
    assert error["details"]["subsystem"] == "billing" and error["details"]["state"] == state, error
    assert int(reply.headers["Retry-After"]) >= 1, reply.headers


async def test_with_billing_failing_messages_flow_and_after_recovery_the_ledger_is_complete(site: Site) -> None:
    hub = site.hub
    tenant, term_end = await billed_tenant(site)
    admin, agent = tenant.agents
    unbilled = await make_tenant(site.settings, site.server, name="Self-hosted")
    unbilled_admin = await unbilled.add_agent(role="admin")
    assert (await healthz(site))["billing"]["state"] == "closed"
    due = at(term_end)  # the renewal falls due while billing is failing

    # Billing fails for real: its ledger is gone. Every round fails; the third opens the breaker.
    await ddl(site, "ALTER TABLE billing_ledger RENAME TO billing_ledger_away")
    try:
        for minute in range(3):
            with pytest.raises(tenants.RoundFailed):
                await tenants.billing_round(hub, now=due + timedelta(minutes=minute))
            status = await hub.breakers.status("billing")
            assert status.state == ("open" if minute == 2 else "closed"), status
        assert status.failures == 3 and "billing_ledger" in (status.last_error or ""), status
        opened = due + timedelta(minutes=2)
        assert status.next_trial_at == opened + timedelta(seconds=60)
        # Open: the next rounds do not run at all until the cooldown is over.
        assert await tenants.billing_round(hub, now=opened + timedelta(seconds=30)) is None

        # Meanwhile messaging is untouched: a customer writes in web chat, it becomes a ticket, the
        # agent (signed in while billing is down) gets it live and answers, the customer gets it.
        client = await tenant.signed_in(agent)
        visitor = tenant.visitor()
        await visitor.connect(name="Li Lei")
        client_id = await visitor.send("My invoice page is broken, but can you help with my order?")
        await visitor.wait_frame(lambda f: f.get("type") == "ack" and f["client_id"] == client_id)
        created = await client.wait_event(lambda e: e["kind"] == "message.created")
        ticket_id = created["ticket_id"]
        await client.wait_event(lambda e: e["kind"] == "ticket.assigned" and e["ticket_id"] == ticket_id)
        await client.reply(ticket_id, "Of course: it ships today.")
        answer = await visitor.wait_message(lambda m: m["direction"] == "outbound")
        assert answer["text"] == "Of course: it ships today."
        await client.wait_event(lambda e: e["kind"] == "message.delivery" and e["delivery_state"] == "sent")

        # Billing's routes say so: 503 subsystem_offline with Retry-After, for admins and the operator.
        admin_token = await sign_in(site, tenant, admin.email)
        for path in ("/api/v1/billing", "/api/v1/billing/ledger", "/api/v1/billing/invoices",
                     "/api/v1/billing/statement"):
            assert_offline(await site.http("GET", path, host=tenant.domain, token=admin_token), "open")
        for method, path, body in (
            ("GET", f"/operator/v1/tenants/{tenant.id}/billing", None),
            ("GET", f"/operator/v1/tenants/{tenant.id}/billing/statement", None),
            ("POST", f"/operator/v1/tenants/{tenant.id}/top-ups", {"amount": 100}),
            ("POST", f"/operator/v1/tenants/{tenant.id}/compensations", {"minutes": 5}),
            ("PATCH", f"/operator/v1/tenants/{tenant.id}/contract", {"price_per_seat_year": 40_000}),
        ):
            kwargs: dict[str, Any] = {} if body is None else {"json_body": body}
            assert_offline(await site.http(method, path, host=OPERATOR_HOST, token=site.tokens["billing"],
                                           **kwargs), "open")
        # A billed tenant's seats wait for billing, and nothing changes; an unbilled one's do not.
        agents_before = (await site.http("GET", "/api/v1/agents", host=tenant.domain, token=admin_token)).body
        assert_offline(await site.http("POST", "/api/v1/agents", host=tenant.domain, token=admin_token, json_body={
            "email": f"new@{tenant.domain}", "name": "New", "password": PASSWORD}), "open")
        assert_offline(await site.http("POST", "/api/v1/agents/batch-remove", host=tenant.domain, token=admin_token,
                                       json_body={"agent_ids": [agent.id]}), "open")
        assert_offline(await site.http("PATCH", f"/api/v1/agents/{agent.id}", host=tenant.domain,
                                       token=admin_token, json_body={"active": False}), "open")
        assert (await site.http("GET", "/api/v1/agents", host=tenant.domain, token=admin_token)).body \
            == agents_before
        unbilled_token = await sign_in(site, unbilled, unbilled_admin.email)
        made = await site.http("POST", "/api/v1/agents", host=unbilled.domain, token=unbilled_token,
                               json_body={"email": f"new@{unbilled.domain}", "name": "New", "password": PASSWORD})
        assert made.status == 201 and made.body["charged"] is None, made
        # Other work of the admin is untouched (tickets, the agents' list).
        tickets = await site.http("GET", "/api/v1/tickets", host=tenant.domain, token=admin_token)
        assert tickets.status == 200, tickets

        # /healthz: alive, and says what is degraded and since when.
        health = (await healthz(site))["billing"]
        assert health["state"] == "open" and health["enabled"] is True, health
        assert "billing_ledger" in health["last_error"]
        assert health["history"][0]["from"] == "closed" and health["history"][0]["to"] == "open", health
        assert health["history"][0]["actor"] == "auto"
    finally:
        await ddl(site, "ALTER TABLE billing_ledger_away RENAME TO billing_ledger")

    # Back: the first round after the cooldown is the trial; it succeeds, closes the breaker and
    # catches up the renewal that fell due while billing was failing.
    assert await renewals(site, tenant.id) == []
    trial = opened + timedelta(seconds=61)
    outcome = await tenants.billing_round(hub, now=trial)
    assert outcome == {"renewed": 1}, outcome
    status = await hub.breakers.status("billing")
    assert status.state == "closed" and status.failures == 0, status
    assert [(c.from_state, c.to_state) for c in status.history[:3]] == [
        ("half_open", "closed"), ("open", "half_open"), ("closed", "open")]
    # Exactly one charge for the term, however often the round runs again.
    for later in (trial + timedelta(minutes=1), trial + timedelta(hours=1)):
        assert await tenants.billing_round(hub, now=later) == {}
    charged = await renewals(site, tenant.id)
    assert len(charged) == 1, charged
    assert charged[0].amount == -2 * PRICE and charged[0].detail["from"] == term_end.isoformat()
    await balance_is_the_sum(site, tenant.id)
    admin_token = await sign_in(site, tenant, admin.email)
    reply = await site.http("GET", "/api/v1/billing", host=tenant.domain, token=admin_token)
    assert reply.status == 200 and reply.body["contract"]["term_start"] == term_end.isoformat(), reply
    await tenant.close()
    await unbilled.close()


async def switch(site: Site, enabled: bool, reason: str, *, role: str = "support") -> Any:
    return await site.http("PUT", "/operator/v1/subsystems/billing", host=OPERATOR_HOST, token=site.tokens[role],
                           json_body={"enabled": enabled, "reason": reason})


async def test_the_operator_switches_billing_off_and_on(site: Site) -> None:
    hub = site.hub
    tenant, term_end = await billed_tenant(site, ends_in_days=3)
    admin = tenant.agents[0]
    due = at(term_end, 2)

    off = await switch(site, False, "ledger maintenance")
    assert off.status == 200, off
    assert off.body["subsystem"]["state"] == "off" and off.body["subsystem"]["enabled"] is False
    assert off.body["subsystem"]["switch"]["by"] == site.operator_ids["support"]
    # Everywhere: the operator's list, the history, /healthz (alive all the same).
    listed = await site.http("GET", "/operator/v1/subsystems", host=OPERATOR_HOST, token=site.tokens["billing"])
    assert listed.status == 200, listed
    by_name = {s["name"]: s for s in listed.body["subsystems"]}
    assert set(by_name) == {"billing", "statistics", "reports"}
    assert by_name["billing"]["state"] == "off" and by_name["statistics"]["state"] == "closed"
    change = by_name["billing"]["history"][0]
    assert (change["from"], change["to"], change["reason"], change["actor"], change["operator_id"]) == (
        "closed", "off", "ledger maintenance", "operator", site.operator_ids["support"])
    assert (await healthz(site))["billing"]["state"] == "off"

    # Switched off, the round does not run at all: the renewal due waits, uncharged.
    assert await tenants.billing_round(hub, now=due) is None
    assert await renewals(site, tenant.id) == []
    token = await sign_in(site, tenant, admin.email)
    assert_offline(await site.http("GET", "/api/v1/billing", host=tenant.domain, token=token), "off")
    # Creating a billed tenant is billing's work too; an unbilled one is made as ever.
    body: dict[str, Any] = {"name": "N", "domains": [f"n{uuid.uuid4().hex[:8]}.example.com"]}
    assert_offline(await site.http("POST", "/operator/v1/tenants", host=OPERATOR_HOST, token=site.tokens["owner"],
                                   json_body={**body, "contract": {"price_per_seat_year": PRICE, "currency": "CNY",
                                                                   "term_start": date.today().isoformat()}}), "off")
    assert (await site.http("POST", "/operator/v1/tenants", host=OPERATOR_HOST, token=site.tokens["owner"],
                            json_body=body)).status == 201
    # Switching it off again changes nothing (no second history entry).
    again = await switch(site, False, "still maintenance")
    assert again.status == 200 and again.body["subsystem"]["history"][0]["reason"] == "ledger maintenance"

    on = await switch(site, True, "maintenance done", role="owner")
    assert on.status == 200 and on.body["subsystem"]["state"] == "closed", on
    # What was missed is caught up, once.
    assert await tenants.billing_round(hub, now=due + timedelta(minutes=1)) == {"renewed": 1}
    assert await tenants.billing_round(hub, now=due + timedelta(minutes=2)) == {}
    assert len(await renewals(site, tenant.id)) == 1
    await balance_is_the_sum(site, tenant.id)
    assert (await site.http("GET", "/api/v1/billing", host=tenant.domain, token=token)).status == 200

    history = await site.http("GET", "/operator/v1/subsystems/billing/history?limit=2", host=OPERATOR_HOST,
                              token=site.tokens["billing"])
    assert history.status == 200, history
    assert [(c["from"], c["to"], c["reason"]) for c in history.body["changes"]] == [
        ("off", "closed", "maintenance done"), ("closed", "off", "ledger maintenance")]
    older = await site.http("GET", f"/operator/v1/subsystems/billing/history?before_id="
                            f"{history.body['next_before_id']}", host=OPERATOR_HOST, token=site.tokens["billing"])
    assert older.status == 200 and all(c["id"] < history.body["next_before_id"] for c in older.body["changes"])

    # Audited in the operator's trail, with who and why.
    async with site.db.read() as s:
        rows = list((await s.execute(select(AuditLog).where(AuditLog.target_type == "subsystem")
                                     .order_by(AuditLog.id))).scalars())
    assert [(r.action, r.actor_id, r.details["reason"]) for r in rows][-2:] == [
        ("subsystem.switch_off", site.operator_ids["support"], "ledger maintenance"),
        ("subsystem.switch_on", site.operator_ids["owner"], "maintenance done")]
    trail = await site.http("GET", "/operator/v1/audit", host=OPERATOR_HOST, token=site.tokens["owner"])
    assert "subsystem.switch_off" in {e["action"] for e in trail.body["entries"]}

    # Who may, and what is refused.
    assert_error(await switch(site, False, "no", role="billing"), 403, "operator_role")
    for bad in ({"enabled": "no", "reason": "x"}, {"enabled": False}, {"enabled": False, "reason": ""},
                {"enabled": False, "reason": "x", "extra": 1}, [], None):
        reply = await site.http("PUT", "/operator/v1/subsystems/billing", host=OPERATOR_HOST,
                                token=site.tokens["owner"], json_body=bad)
        assert_error(reply, 422)
    assert_error(await site.http("PUT", "/operator/v1/subsystems/messaging", host=OPERATOR_HOST,
                                 token=site.tokens["owner"], json_body={"enabled": False, "reason": "x"}),
                 404, "subsystem_not_found")
    assert_error(await site.http("GET", "/operator/v1/subsystems/nope/history", host=OPERATOR_HOST,
                                 token=site.tokens["owner"]), 404, "subsystem_not_found")
    assert (await hub.breakers.status("billing")).state == "closed"
    await tenant.close()


async def test_the_breaker_counts_failures_in_a_row_doubles_its_cooldown_and_tries_once(site: Site) -> None:
    """The mechanism on a subsystem no route uses yet (reports), with jobs that fail as told."""
    breakers = site.hub.breakers
    t0 = datetime(2030, 1, 1, tzinfo=UTC)

    async def fails() -> None:
        raise RuntimeError("reports database unreachable")

    async def answers_no() -> None:
        raise InvalidInput("a bad period")  # an answer, not a failure of the subsystem

    async def works() -> str:
        return "ok"

    async def run(job: Callable[[], Awaitable[Any]], seconds: float) -> Any:
        return await breakers.call("reports", job, now=t0 + timedelta(seconds=seconds))

    # Failures not in a row never open it; answers (domain errors) are not failures.
    for second in (1, 2):
        with pytest.raises(RuntimeError):
            await run(fails, second)
    assert await run(works, 3) == "ok"
    assert (await breakers.status("reports")).failures == 0
    for second in (4, 5):
        with pytest.raises(RuntimeError):
            await run(fails, second)
        with pytest.raises(InvalidInput):
            await run(answers_no, second)
    assert (await breakers.status("reports")).state == "closed"
    with pytest.raises(RuntimeError):
        await run(fails, 6)
    assert (await breakers.status("reports")).state == "open"
    with pytest.raises(SubsystemOffline) as refused:
        await run(works, 36)
    assert refused.value.retry_after == 30 and refused.value.details["state"] == "open"

    # The trial fails: open again for twice as long (120 s), then 240 s (the cap), never more.
    with pytest.raises(RuntimeError):
        await run(fails, 66)
    status = await breakers.status("reports")
    assert status.state == "open" and status.cooldown == 120 and status.next_trial_at == t0 + timedelta(seconds=186)
    with pytest.raises(SubsystemOffline):
        await run(works, 185)
    with pytest.raises(RuntimeError):
        await run(fails, 186)
    with pytest.raises(RuntimeError):
        await run(fails, 186 + 240)
    assert (await breakers.status("reports")).cooldown == 240

    # One trial at a time: while it runs, the others are refused (half-open).
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> str:
        started.set()
        await release.wait()
        return "recovered"

    trial = asyncio.create_task(run(slow, 186 + 480 + 1))
    await started.wait()
    with pytest.raises(SubsystemOffline) as during:
        await run(works, 186 + 480 + 2)
    assert during.value.details["state"] == "half_open"
    release.set()
    assert await trial == "recovered"
    status = await breakers.status("reports")
    assert status.state == "closed" and status.failures == 0 and status.cooldown == 0, status
    assert [(c.from_state, c.to_state) for c in status.history[:2]] == [("half_open", "closed"),
                                                                        ("open", "half_open")]
    # The messaging subsystems are not subsystems here: nothing to switch.
    assert set(await breakers.statuses()) == {"billing", "statistics", "reports"}


async def test_two_hubs_on_one_database_share_the_breakers(site: Site) -> None:
    """Two more servers on the same database. With Redis the news travels on the bus (their cache
    is kept for an hour, so only the bus can explain what they see); without it, each reads the
    database at most every breaker_refresh seconds."""
    refresh = 3600.0 if site.settings.redis_url else 0.2
    shared = replace(site.settings, breaker_refresh=refresh)
    first, second = await start_server(shared), await start_server(shared)
    try:
        a, b = first.app[HUB].breakers, second.app[HUB].breakers
        await a.statuses()
        await b.statuses()  # both have read the state: what they learn later comes from the bus
        t0 = datetime(2031, 1, 1, tzinfo=UTC)

        async def fails() -> None:
            raise RuntimeError("statistics store down")

        for second_ in range(3):
            with pytest.raises(RuntimeError):
                await a.call("statistics", fails, now=t0 + timedelta(seconds=second_))

        async def b_sees(state: str) -> bool:
            return (await b.status("statistics")).state == state

        await eventually(lambda: b_sees("open"))
        with pytest.raises(SubsystemOffline):
            await b.call("statistics", fails, now=t0 + timedelta(seconds=10))

        # The trial runs in one hub and closes the breaker for both.
        async def works() -> str:
            return "ok"

        assert await b.call("statistics", works, now=t0 + timedelta(seconds=70)) == "ok"

        async def a_sees(state: str) -> bool:
            return (await a.status("statistics")).state == state

        await eventually(lambda: a_sees("closed"))
        # The operator's switch, made through one, holds in the other.
        await a.switch("statistics", enabled=False, reason="rebuilding", actor=Actor("operator", None))
        await eventually(lambda: _off(b))
        with pytest.raises(SubsystemOffline):
            await b.call("statistics", works, now=t0 + timedelta(seconds=80))
        await b.switch("statistics", enabled=True, reason="rebuilt", actor=Actor("operator", None))
        await eventually(lambda: _on(a))
    finally:
        for server in (first, second):
            await server.runner.cleanup()


async def _off(breakers: Any) -> bool:
    return (await breakers.status("statistics")).effective == "off"


async def _on(breakers: Any) -> bool:
    return (await breakers.status("statistics")).effective == "closed"
