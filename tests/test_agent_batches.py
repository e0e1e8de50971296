"""Agents' actions in group commits (issue #10, parts 2-4): many agents acting at once share
batches; a bad item fails alone with its own error; past saturation the answer is 503 busy.

The batches are made to form the way load forms them, without timing: the test holds a lock the
writer needs (the tickets' rows on PostgreSQL, the database's write lock on SQLite) while the
actions queue behind the first, then lets go and the writer takes what queued as one batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from admin_api.client import AgentClient, HubError
from core.batching import GroupCommit
from core.config import Settings
from core.db import Database
from core.models import Agent, DeliveryState, Message, OutboxItem, Ticket
from tests.conftest import Server, TenantInfo, eventually, make_tenant, start_server
from web.http import HUB


@pytest.fixture
async def patient_server(settings: Settings) -> AsyncIterator[Server]:
    """A server whose writers never shed load: what queues while the test holds them up is written."""
    srv = await start_server(replace(settings, busy_after=600))
    yield srv
    await srv.runner.cleanup()


@pytest.fixture
async def patient(settings: Settings, patient_server: Server) -> AsyncIterator[TenantInfo]:
    t = await make_tenant(settings, patient_server)
    yield t
    await t.close()


@asynccontextmanager
async def writes_held(settings: Settings, tenant_id: int, ticket_ids: list[int],
                      agent_ids: list[int] | None = None) -> AsyncIterator[None]:
    """Hold what the writer must take first: the tickets' rows, the agents' (and on SQLite the
    one write lock)."""
    db = Database(settings.database_url)
    try:
        async with db.session(tenant_id) as session:
            await session.execute(select(Ticket.id).where(Ticket.id.in_(ticket_ids)).with_for_update())
            if agent_ids:
                await session.execute(select(Agent.id).where(Agent.id.in_(agent_ids)).with_for_update())
            yield
    finally:
        await db.dispose()


def _writer(srv: Server, kind: str, tenant_id: int) -> GroupCommit[Any, Any] | None:
    return srv.app[HUB].ticket_writes._writers.get((kind, tenant_id))


async def _queued(srv: Server, kind: str, tenant_id: int, n: int) -> None:
    """Wait until a batch is being written (held up) and ``n`` actions wait behind it."""
    async def enough() -> bool:
        writer = _writer(srv, kind, tenant_id)
        return writer is not None and writer.in_flight > 0 and writer.waiting >= n

    await eventually(enough)


async def _outcome(call: Awaitable[Any]) -> Any:
    try:
        return await call
    except HubError as exc:
        return exc


async def _chats(tenant: TenantInfo, n: int) -> list[tuple[AgentClient, Any, int]]:
    """``n`` agents (one ticket of room each), ``n`` web chat customers: each agent gets one ticket."""
    agents = [await tenant.add_agent(capacity=1) for _ in range(n)]
    clients = [await tenant.signed_in(a) for a in agents]
    visitors = []
    for i in range(n):
        visitor = tenant.visitor()
        await visitor.connect()
        await visitor.send(f"question {i}")
        visitors.append(visitor)
    out = []
    for agent, client in zip(agents, clients, strict=True):
        assigned = await client.wait_event(lambda e, a=agent: e["kind"] == "ticket.assigned"  # type: ignore[misc]
                                           and e["ticket"]["assignee_id"] == a.id)
        subject = assigned["ticket"]["subject"]
        visitor = visitors[int(subject.split()[-1])]
        out.append((client, visitor, assigned["ticket_id"]))
    return out


async def _stored(settings: Settings, tenant_id: int, ticket_ids: list[int]) -> list[Message]:
    db = Database(settings.database_url)
    try:
        async with db.read(tenant_id) as session:
            return list((await session.execute(select(Message).where(Message.ticket_id.in_(ticket_ids),
                                                                     Message.direction != "inbound")
                                               .order_by(Message.id))).scalars())
    finally:
        await db.dispose()


async def test_many_agents_replying_at_once_share_a_batch(patient: TenantInfo, patient_server: Server,
                                                          settings: Settings) -> None:
    srv, n = patient_server, 5
    chats = await _chats(patient, n)
    ticket_ids = [t for _, _, t in chats]
    before = srv.app[HUB].ticket_writes.counters("replies")
    async with writes_held(settings, patient.id, ticket_ids):
        # Over HTTP and over the socket alike; the first is taken (and held up), the rest queue.
        calls = []
        for i, (client, _, ticket_id) in enumerate(chats):
            if i % 2:
                calls.append(asyncio.ensure_future(_outcome(client.reply(ticket_id, f"answer {i}"))))
            else:
                calls.append(asyncio.ensure_future(_outcome(client.api(
                    "POST", f"/api/v1/tickets/{ticket_id}/messages", {"text": f"answer {i}"}))))
            if i == 0:
                await _queued(srv, "replies", patient.id, 0)
        await _queued(srv, "replies", patient.id, n - 1)
        # A note and a bad item join the same batch.
        note = asyncio.ensure_future(_outcome(chats[0][0].note(ticket_ids[0], "internal")))
        missing = asyncio.ensure_future(_outcome(chats[0][0].api(
            "POST", "/api/v1/tickets/999999999/messages", {"text": "to nowhere"})))
        not_mine = asyncio.ensure_future(_outcome(chats[0][0].api(
            "POST", f"/api/v1/tickets/{ticket_ids[1]}/messages", {"text": "someone else's"})))
        await _queued(srv, "replies", patient.id, n + 2)
    results = await asyncio.gather(*calls)
    after = srv.app[HUB].ticket_writes.counters("replies")
    # The first alone, everything that queued meanwhile in one more batch.
    assert after["items"] - before["items"] == n + 3
    assert after["batches"] - before["batches"] == 2

    messages = [r["message"] if "message" in r else r for r in results]
    for i, message in enumerate(messages):
        assert message["text"] == f"answer {i}" and message["ticket_id"] == ticket_ids[i]
        assert message["direction"] == "outbound" and message["author"]["type"] == "agent"
        # Web chat is delivered on commit: no outbox hop.
        assert message["delivery_state"] == "sent"
    assert (await note)["direction"] == "note"
    for refused in (await missing, await not_mine):
        assert isinstance(refused, HubError) and refused.status == 404 and refused.code == "ticket_not_found"

    stored = await _stored(settings, patient.id, ticket_ids)
    assert sorted((m.ticket_id, m.body) for m in stored) == sorted(
        [(t, f"answer {i}") for i, t in enumerate(ticket_ids)] + [(ticket_ids[0], "internal")])
    db = Database(settings.database_url)
    try:
        async with db.read(patient.id) as session:
            rows = list((await session.execute(select(OutboxItem).where(
                OutboxItem.message_id.in_([m["id"] for m in messages])))).scalars())
    finally:
        await db.dispose()
    # The delivery recorded as made with the reply (the sweeper can take it up again after a crash).
    assert len(rows) == n and all(r.state == DeliveryState.SENT and r.attempts == 1 for r in rows)

    # The events reach each agent live, and each customer gets their answer.
    for i, (client, visitor, ticket_id) in enumerate(chats):
        created = await client.wait_event(lambda e, t=ticket_id: e["kind"] == "message.created"  # type: ignore[misc]
                                          and e["ticket_id"] == t and e["message"]["direction"] == "outbound")
        assert created["message"]["id"] == messages[i]["id"]
        assert created["ticket"]["status"] == "open" and created["ticket"]["first_response_at"] is not None
        await client.wait_event(lambda e, m=messages[i]["id"]: e["kind"] == "message.delivery"  # type: ignore[misc]
                                and e["message_id"] == m)
        got = await visitor.wait_message(lambda m, i=i: m["direction"] == "outbound")  # type: ignore[misc]
        assert got["text"] == f"answer {i}" and got["id"] == messages[i]["id"]
        detail = await client.api("GET", f"/api/v1/tickets/{ticket_id}")
        assert [m["text"] for m in detail["messages"] if m["direction"] == "outbound"] == [f"answer {i}"]


async def _three_agents(tenant: TenantInfo) -> tuple[list[Any], list[AgentClient], list[dict[str, Any]]]:
    """Three agents (two tickets of room each) with a ticket each, made by hand."""
    agents = [await tenant.add_agent(capacity=2) for _ in range(3)]
    clients = [await tenant.signed_in(a, connect=False) for a in agents]
    made = [(await c.api("POST", "/api/v1/tickets", {"text": f"call {i}", "customer": {"name": f"Caller {i}"},
                                                     "assignee_id": a.id}))["ticket"]
            for i, (a, c) in enumerate(zip(agents, clients, strict=True))]
    assert [t["assignee_id"] for t in made] == [a.id for a in agents]
    return agents, clients, made


async def _loads(client: AgentClient, agents: list[Any]) -> list[int]:
    loads = {a["id"]: a["load"] for a in (await client.api("GET", "/api/v1/agents"))["agents"]}
    return [loads[a.id] for a in agents]


async def test_ticket_changes_share_batches(patient: TenantInfo, patient_server: Server, settings: Settings) -> None:
    srv = patient_server
    agents, clients, made = await _three_agents(patient)
    ticket_ids = [t["id"] for t in made]

    before = srv.app[HUB].ticket_writes.counters("changes")
    async with writes_held(settings, patient.id, ticket_ids):
        first = asyncio.ensure_future(_outcome(clients[0].api("POST", f"/api/v1/tickets/{ticket_ids[0]}/solve")))
        await _queued(srv, "changes", patient.id, 0)
        rest = [
            asyncio.ensure_future(_outcome(clients[1].api("PATCH", f"/api/v1/tickets/{ticket_ids[1]}",
                                                          {"priority": "high", "add_tags": ["vip"]}))),
            asyncio.ensure_future(_outcome(clients[2].api("PATCH", f"/api/v1/tickets/{ticket_ids[2]}",
                                                          {"subject": "renamed"}))),
            # Bad: a solved ticket cannot wait on the customer, and agent 1 may not see agent 0's.
            asyncio.ensure_future(_outcome(clients[0].api("PATCH", f"/api/v1/tickets/{ticket_ids[0]}",
                                                          {"status": "pending"}))),
            asyncio.ensure_future(_outcome(clients[1].api("POST", f"/api/v1/tickets/{ticket_ids[0]}/reopen"))),
        ]
        await _queued(srv, "changes", patient.id, len(rest))
    solved, *others = [await first, *[await r for r in rest]]
    after = srv.app[HUB].ticket_writes.counters("changes")
    assert after["items"] - before["items"] == 5 and after["batches"] - before["batches"] == 2
    assert solved["ticket"]["status"] == "solved"
    assert others[0]["ticket"]["priority"] == "high" and others[0]["ticket"]["tags"] == ["vip"]
    assert others[1]["ticket"]["subject"] == "renamed"
    assert isinstance(others[2], HubError) and (others[2].status, others[2].code) == (409, "invalid_transition")
    assert isinstance(others[3], HubError) and (others[3].status, others[3].code) == (404, "ticket_not_found")
    # The solve freed a slot: the agents' loads are exact.
    assert await _loads(clients[0], agents) == [0, 1, 1]


async def test_tickets_made_at_once_share_a_batch(patient: TenantInfo, patient_server: Server,
                                                  settings: Settings) -> None:
    """Several agents POST /api/v1/tickets at once: one batch, a bad one failing alone."""
    srv = patient_server
    agents, clients, made = await _three_agents(patient)
    ticket_ids = [t["id"] for t in made]
    before = srv.app[HUB].ticket_writes.counters("tickets")
    async with writes_held(settings, patient.id, ticket_ids, [agents[0].id]):
        posts: list[asyncio.Future[Any]] = []

        def post(client: AgentClient, body: dict[str, Any]) -> None:
            posts.append(asyncio.ensure_future(_outcome(client.api("POST", "/api/v1/tickets", body))))

        post(clients[0], {"text": "walk-in 0", "customer": {"name": "Walk In"}, "assignee_id": agents[0].id})
        await _queued(srv, "tickets", patient.id, 0)
        post(clients[1], {"text": "walk-in 1", "customer": {"name": "Walk In 1", "email": "w1@example.com"}})
        post(clients[2], {"text": "walk-in 2", "customer_id": made[0]["customer_id"], "assignee_id": agents[2].id})
        post(clients[2], {"text": "nobody", "customer_id": 999999999})
        post(clients[0], {"text": "on a channel", "customer_id": made[0]["customer_id"], "channel": "webchat"})
        await _queued(srv, "tickets", patient.id, 4)
    answers = [await p for p in posts]
    after = srv.app[HUB].ticket_writes.counters("tickets")
    assert after["items"] - before["items"] == 5 and after["batches"] - before["batches"] == 2
    assert [a["ticket"]["subject"] for a in answers[:3]] == ["walk-in 0", "walk-in 1", "walk-in 2"]
    assert answers[1]["ticket"]["customer"]["email"] == "w1@example.com"
    assert answers[2]["ticket"]["assignee_id"] == agents[2].id
    assert answers[2]["ticket"]["customer_id"] == made[0]["customer_id"]
    assert isinstance(answers[3], HubError) and (answers[3].status, answers[3].code) == (404, "customer_not_found")
    assert isinstance(answers[4], HubError) and (answers[4].status, answers[4].code) == (409,
                                                                                          "no_identity_on_channel")
    assert answers[0]["ticket"]["assignee_id"] == agents[0].id
    assert await _loads(clients[0], agents) == [2, 1, 2]
    for i, client in enumerate(clients):
        detail = await client.api("GET", f"/api/v1/tickets/{answers[i]['ticket']['id']}")
        assert [(m["direction"], m["text"]) for m in detail["messages"]] == [("note", f"walk-in {i}")]


@pytest.fixture
async def shedding_server(settings: Settings) -> AsyncIterator[Server]:
    """A server whose writers refuse new work as soon as anything waits (busy_after 0)."""
    srv = await start_server(replace(settings, busy_after=0))
    yield srv
    await srv.runner.cleanup()


async def test_a_saturated_reply_writer_answers_busy(settings: Settings, shedding_server: Server) -> None:
    srv = shedding_server
    tenant = await make_tenant(settings, srv)
    try:
        agent = await tenant.signed_in(await tenant.add_agent(), connect=False)
        ticket = (await agent.api("POST", "/api/v1/tickets", {"text": "a call", "customer": {"name": "C"}}))["ticket"]
        path = f"/api/v1/tickets/{ticket['id']}/messages"
        burst = 10
        async with aiohttp.ClientSession(headers={"Host": tenant.domain,
                                                  "Authorization": f"Bearer {agent.token}"}) as http:
            async def post(i: int) -> tuple[int, str | None, dict[str, Any]]:
                async with http.post(srv.url + path, json={"kind": "note", "text": f"note {i}"}) as resp:
                    return resp.status, resp.headers.get("Retry-After"), await resp.json()

            async with writes_held(settings, tenant.id, [ticket["id"]]):
                tasks = [asyncio.ensure_future(post(i)) for i in range(burst)]
                # At most one is in flight and one waits: every other one is answered at once.
                await eventually(_done_at_least(tasks, burst - 2))
            answers = await asyncio.gather(*tasks)
        busy = [a for a in answers if a[0] == 503]
        written = [a for a in answers if a[0] == 201]
        assert len(busy) + len(written) == burst and len(busy) >= burst - 2
        for _status, retry_after, body in busy:
            assert retry_after == "1" and body["error"]["code"] == "busy"
        assert srv.app[HUB].ticket_writes.counters("replies")["refused"] == len(busy)
        # What was refused was not stored; what was accepted was.
        stored = await _stored(settings, tenant.id, [ticket["id"]])
        assert sorted(m.body for m in stored) == sorted(["a call", *(b["message"]["text"] for _, _, b in written)])
    finally:
        await tenant.close()


def _done_at_least(tasks: list[asyncio.Future[Any]], n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return sum(t.done() for t in tasks) >= n

    return check


async def test_a_ticket_made_on_web_chat_reaches_the_visitor_on_commit(tenant: TenantInfo) -> None:
    """A ticket made by hand on the customer's web chat: its first message goes out as a reply,
    published right after commit (no outbox hop), and the agent who wrote it takes the ticket."""
    agent = await tenant.add_agent(capacity=3)
    client = await tenant.signed_in(agent)
    visitor = tenant.visitor()
    await visitor.connect()
    await visitor.send("my order is late")
    created = await client.wait_event(lambda e: e["kind"] == "ticket.created")
    customer_id = created["ticket"]["customer_id"]
    made = (await client.api("POST", "/api/v1/tickets", {"text": "We looked into your order", "subject": "Follow-up",
                                                         "customer_id": customer_id, "channel": "webchat"}))["ticket"]
    assert made["assignee_id"] == agent.id and made["channel"] == "webchat" and made["status"] == "open"
    got = await visitor.wait_message(lambda m: m["direction"] == "outbound")
    assert got["text"] == "We looked into your order"
    await client.wait_event(lambda e: e["kind"] == "ticket.assigned" and e["ticket_id"] == made["id"])
    detail = await client.api("GET", f"/api/v1/tickets/{made['id']}")
    assert [(m["direction"], m["delivery_state"]) for m in detail["messages"]] == [("outbound", "sent")]


async def test_one_socket_sends_many_replies_without_waiting_and_they_keep_their_order(
    tenant: TenantInfo, settings: Settings,
) -> None:
    """An agent's socket handles replies and notes alongside each other (pipelined) and stores them
    in the order they were sent; a frame of another kind waits until those before it are done."""
    [(client, visitor, ticket_id)] = await _chats(tenant, 1)
    texts = [f"answer {n}" for n in range(30)]
    pending = [asyncio.ensure_future(client.action("note" if n % 3 == 2 else "reply", ticket_id=ticket_id,
                                                   text=text, client_id=f"pipe-{n}"))
               for n, text in enumerate(texts)]
    solved = asyncio.ensure_future(client.action("status", ticket_id=ticket_id, status="solved"))
    results = await asyncio.gather(*pending)
    assert [r["message"]["text"] for r in results] == texts
    ids = [r["message"]["id"] for r in results]
    assert ids == sorted(ids)  # stored in the order sent
    assert (await solved)["ticket"]["status"] == "solved"
    writer = _writer(tenant.server, "replies", tenant.id)
    assert writer is not None and writer.items == 30 and writer.batches < 30  # handled alongside each other
    stored = await _stored(settings, tenant.id, [ticket_id])
    assert [m.body for m in stored if m.body in texts] == texts
    # The customer got the replies (not the notes), in order.
    replies = [t for n, t in enumerate(texts) if n % 3 != 2]
    await visitor.wait_message(lambda m: m["text"] == replies[-1])
    got = [m["text"] for m in sorted(visitor.messages.values(), key=lambda m: m["id"]) if m["text"] in replies]
    assert got == replies
