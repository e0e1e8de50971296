"""The production shape on one machine: two `channelhub serve` processes and one `channelhub worker`,
sharing the test run's PostgreSQL database and Redis. A customer talks to one process, the agent to
the other, and the reply is delivered by the worker process: everything between them crosses Redis
(the bus and the dramatiq queue) and PostgreSQL (presence, routing, history).

Runs only on PostgreSQL + Redis (``make test-pg``); SQLite is the single-process embedded mode.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.config import Settings
from tests.conftest import Server, TenantInfo, free_port
from tests.processes import HubProcess, child_env, spawn, stop, wait_healthy
from web.http import HUB


def _check_alive(hubs: list[HubProcess], when: str) -> None:
    for hub in hubs:
        assert hub.proc.returncode is None, f"{hub.name} exited with {hub.proc.returncode} {when}"


@asynccontextmanager
async def hub_cluster(settings: Settings, workdir: Path) -> AsyncIterator[tuple[HubProcess, HubProcess, HubProcess]]:
    """Two serve processes and a worker; always stopped, their output printed if anything failed."""
    # A namespace of their own (it names both the Redis bus channel and the dramatiq queues).
    # With the test run's settings.queue_namespace, the in-process `server` fixture of this session
    # (its embedded worker listens on that namespace's queue) could take the delivery job and
    # publish the reply itself, and the test would no longer show that `channelhub worker` delivers
    # and that its publication reaches the serve processes. The in-process server's outbox sweeper
    # still sees this database, but it only re-enqueues rows left undelivered for 30 s.
    namespace = f"{settings.queue_namespace}-mp{uuid.uuid4().hex[:8]}"
    hubs: list[HubProcess] = []
    try:
        for name in ("serve1", "serve2"):
            port = free_port()
            hub = await spawn(name, ["serve"], child_env(settings, namespace, port), workdir)
            hub.url = f"http://127.0.0.1:{port}"
            hubs.append(hub)
        hubs.append(await spawn("worker", ["worker", "--threads", "2"], child_env(settings, namespace, None),
                                 workdir))
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(wait_healthy(h, session) for h in hubs if h.url))
        # The worker has no health endpoint; jobs wait in Redis until it is up, but one that died
        # at start (by now it has had the serve processes' start-up time) should fail here.
        _check_alive(hubs, "at start")
        yield hubs[0], hubs[1], hubs[2]
        _check_alive(hubs, "during the test")
    except BaseException:
        for hub in hubs:
            print(f"\n----- output of {hub.name} (pid {hub.proc.pid}) -----\n{hub.output()}", file=sys.stderr)
        raise
    finally:
        await asyncio.gather(*(stop(h) for h in hubs), return_exceptions=True)


@pytest.fixture
async def multiprocess_settings(settings: Settings, server: Server) -> AsyncIterator[Settings]:
    if settings.is_sqlite or not settings.redis_url:
        pytest.skip("multi-process test: needs PostgreSQL and Redis "
                    "(CHANNELHUB_TEST_DATABASE_URL and CHANNELHUB_TEST_REDIS_URL; `make test-pg`)")
    # The test run's own server shares the database. Its router's sweep would route a ticket the
    # cluster made if it ran between that ticket's commit and the cluster's own routing, and
    # publish the assignment on the test run's bus namespace, where the cluster's agents never
    # hear it. Its router rests while a cluster runs.
    router = server.app[HUB].router
    await router.stop()
    try:
        yield settings
    finally:
        router.start()


async def test_customer_and_agent_on_different_processes(
    multiprocess_settings: Settings, tenant: TenantInfo, tmp_path: Path
) -> None:
    agent = await tenant.add_agent()
    async with hub_cluster(multiprocess_settings, tmp_path) as (serve1, serve2, _worker):
        # The agent on process 2: its presence is written to the shared database, where process 1's
        # router finds it.
        client = await tenant.signed_in(agent, server=serve2)
        visitor = tenant.visitor(server=serve1)
        await visitor.connect(name="Zhang Wei")

        # Customer -> agent, live: stored and routed by process 1, published on the Redis bus,
        # pushed by process 2.
        client_id = await visitor.send("My parcel never arrived.")
        await visitor.wait_frame(lambda f: f.get("type") == "ack" and f.get("client_id") == client_id)
        created = await client.wait_event(
            lambda e: e["kind"] == "message.created" and e["message"]["direction"] == "inbound")
        assert created["message"]["text"] == "My parcel never arrived."
        ticket_id = created["ticket_id"]
        # A router (on either process) assigns it to the only agent online.
        assigned = await client.wait_event(lambda e: e["kind"] == "ticket.assigned" and e["ticket_id"] == ticket_id)
        assert assigned["ticket"]["assignee_id"] == agent.id

        # Agent -> customer, live: stored by process 2, delivered by the worker process (the serve
        # processes run no worker with Redis configured), pushed to the customer by process 1.
        await client.reply(ticket_id, "Sorry! A new one leaves today.")
        answer = await visitor.wait_message(lambda m: m["direction"] == "outbound")
        assert answer["text"] == "Sorry! A new one leaves today."
        assert answer["author"] == {"name": agent.name}
        delivered = await client.wait_event(lambda e: e["kind"] == "message.delivery")
        assert delivered["delivery_state"] == "sent"

        # The customer comes back on the other process: the history is all there.
        visitor_id = visitor.visitor_id
        await visitor.close()
        again = tenant.visitor(visitor_id=visitor_id, server=serve2)
        welcome = await again.connect()
        assert [(m["direction"], m["text"]) for m in welcome["messages"]] == [
            ("inbound", "My parcel never arrived."),
            ("outbound", "Sorry! A new one leaves today."),
        ]

        # And the conversation goes on from there, now with both on process 2 and the worker.
        await again.send("Thanks, what is the tracking number?")
        follow_up = await client.wait_event(
            lambda e: e["kind"] == "message.created" and e["message"]["text"].startswith("Thanks"))
        assert follow_up["ticket_id"] == ticket_id
        await client.reply(ticket_id, "SF1234567890.")
        assert (await again.wait_message(lambda m: m["text"] == "SF1234567890."))["direction"] == "outbound"


async def test_wechat_pushes_to_two_processes_become_one_message_each(
    multiprocess_settings: Settings, tenant: TenantInfo, tmp_path: Path, wechat_api: Any,
) -> None:
    """Every push delivered to both processes at once (the platform's retries can land anywhere
    behind a load balancer): each lands once, the three drainers (two processes and this test
    run's own server) share the inbox, and every message is stored exactly once, none set aside."""
    from sqlalchemy import func, select

    from core.db import Database
    from core.models import CustomerIdentity, InboxItem, Message, Ticket
    from tests.conftest import eventually
    from tests.wechat.conftest import make_oa_account
    from tests.wechat.platform import new_openid

    account = await make_oa_account(tenant, wechat_api, mode="safe")
    customers = [new_openid() for _ in range(20)]
    pushes = [account.pusher.message("text", customers[n % len(customers)], content=f"message {n}")
              for n in range(200)]
    async with hub_cluster(multiprocess_settings, tmp_path) as (serve1, serve2, _worker):
        async with aiohttp.ClientSession(headers={"Host": tenant.domain, "Content-Type": "text/xml"}) as http:
            async def deliver(url: str, push: Any) -> tuple[int, str]:
                async with http.post(url + account.path, params=push.query, data=push.body) as resp:
                    return resp.status, await resp.text()

            answers = await asyncio.gather(*(deliver(url, push) for push in pushes for url in (serve1.url, serve2.url)))
        assert set(answers) == {(200, "success")}

        db = Database(multiprocess_settings.database_url)
        try:
            async def drained() -> bool:
                async with db.read(tenant.id) as session:
                    return (await session.execute(select(func.count()).select_from(InboxItem))).scalar_one() == 0

            await eventually(drained, timeout=60)
            async with db.read(tenant.id) as session:
                rows = (await session.execute(
                    select(Message.body, CustomerIdentity.external_id, Ticket.id)
                    .join(Ticket, Ticket.id == Message.ticket_id)
                    .join(CustomerIdentity, CustomerIdentity.id == Ticket.identity_id)
                    .where(Message.channel == "wechat"))).all()
        finally:
            await db.dispose()
    assert sorted(body for body, _, _ in rows) == sorted(f"message {n}" for n in range(200))
    tickets: dict[str, set[int]] = {}
    for _, external_id, ticket_id in rows:
        tickets.setdefault(external_id, set()).add(ticket_id)
    assert len(tickets) == len(customers) and all(len(ids) == 1 for ids in tickets.values())


async def test_a_suspension_on_one_process_stops_the_tenants_agents_on_the_other_at_once(
    multiprocess_settings: Settings, tenant: TenantInfo, tmp_path: Path
) -> None:
    """The operator suspends a tenant through process 1; process 2, which has just served the
    tenant (its domain cached), refuses its agents at once and closes their sockets: the change
    crosses the Redis bus, not the resolver cache's 30 seconds. Resuming crosses back as fast."""
    from core import operators
    from core.billing import Actor
    from core.db import Database
    from tests.conftest import OPERATOR_HOST, PASSWORD, eventually
    from tests.support import Http, assert_error
    from tests.test_sessions import closed_for_session

    agent = await tenant.add_agent()
    email = f"mp-{uuid.uuid4().hex[:8]}@operator.example"
    db = Database(multiprocess_settings.database_url)
    try:
        async with db.session() as session:
            await operators.create_account(session, email=email, name="MP", password="operator passphrase",
                                           role="support", actor=Actor("operator"))
    finally:
        await db.dispose()
    async with hub_cluster(multiprocess_settings, tmp_path) as (serve1, serve2, _worker), \
            aiohttp.ClientSession() as session:
        one, two = Http(serve1.url, session), Http(serve2.url, session)
        token = (await two("POST", "/api/v1/auth/login", host=tenant.domain,
                           json_body={"email": agent.email, "password": PASSWORD})).body["token"]
        client = await tenant.signed_in(agent, server=serve2)
        assert (await two("GET", "/api/v1/me", host=tenant.domain, token=token)).status == 200
        operator = (await one("POST", "/operator/v1/auth/login", host=OPERATOR_HOST,
                              json_body={"email": email, "password": "operator passphrase"})).body["token"]
        suspended = await one("POST", f"/operator/v1/tenants/{tenant.id}/suspend", host=OPERATOR_HOST,
                              token=operator, json_body={})
        assert suspended.status == 200, suspended

        async def refused() -> bool:
            reply = await two("GET", "/api/v1/me", host=tenant.domain, token=token)
            return reply.status == 403

        await eventually(refused, timeout=3)
        assert_error(await two("GET", "/api/v1/me", host=tenant.domain, token=token), 403, "tenant_suspended")
        await closed_for_session(client, timeout=5)
        resumed = await one("POST", f"/operator/v1/tenants/{tenant.id}/resume", host=OPERATOR_HOST,
                            token=operator)
        assert resumed.status == 200, resumed

        async def served() -> bool:
            return (await two("GET", "/api/v1/me", host=tenant.domain, token=token)).status == 200

        await eventually(served, timeout=3)
