"""Interim assignment (issue #2): the least busy online agent with room, else the ticket waits and
is assigned the moment capacity frees up — highest priority first, then oldest."""

from __future__ import annotations

from typing import Any

from admin_api.client import AgentClient, VisitorClient
from tests.conftest import TenantInfo


async def _customer_writes(tenant: TenantInfo, text: str) -> VisitorClient:
    visitor = tenant.visitor()
    await visitor.connect()
    cid = await visitor.send(text)
    await visitor.wait_frame(lambda f: f.get("type") == "ack" and f["client_id"] == cid)
    return visitor


async def _ticket_of(supervisor: AgentClient, text: str) -> dict[str, Any]:
    """The ticket the customer's message opened, once the router has assigned or queued it."""
    event = await supervisor.wait_event(lambda e: e["kind"] == "message.created" and e["message"]["text"] == text)
    routed = await supervisor.wait_event(
        lambda e: e["ticket_id"] == event["ticket_id"] and e["kind"] in ("ticket.assigned", "ticket.queued"))
    return dict(routed["ticket"])


async def test_least_busy_then_queue_then_served_when_capacity_frees(tenant: TenantInfo) -> None:
    sup = await tenant.signed_in(await tenant.add_agent(role="supervisor", capacity=0))
    a = await tenant.add_agent(capacity=2)
    b = await tenant.add_agent(capacity=1)
    ca = await tenant.signed_in(a)
    cb = await tenant.signed_in(b)

    await _customer_writes(tenant, "one")
    t1 = await _ticket_of(sup, "one")
    await _customer_writes(tenant, "two")
    t2 = await _ticket_of(sup, "two")
    # Both empty: the tie goes to the one who waited longest for work (never assigned); then
    # least busy picks the other.
    assert {t1["assignee_id"], t2["assignee_id"]} == {a.id, b.id}
    await _customer_writes(tenant, "three")
    t3 = await _ticket_of(sup, "three")
    assert t3["assignee_id"] == a.id  # b is full (1/1), a has room (1/2)
    await _customer_writes(tenant, "four")
    t4 = await _ticket_of(sup, "four")
    assert t4["assignee_id"] is None  # everyone full: it waits
    await _customer_writes(tenant, "five")
    t5 = await _ticket_of(sup, "five")
    assert t5["assignee_id"] is None

    # The later one becomes urgent: it is served first when room appears.
    await sup.api("PATCH", f"/api/v1/tickets/{t5['id']}", {"priority": "urgent"})
    b_ticket = t1 if t1["assignee_id"] == b.id else t2
    start = len(cb.events)
    await cb.set_status(b_ticket["id"], "solved")
    got = await cb.wait_event(lambda e: e["kind"] == "ticket.assigned" and e["ticket"]["assignee_id"] == b.id,
                              start=start)
    assert got["ticket_id"] == t5["id"]
    assert got["reason"]["from_queue"] is True

    a_ticket = t1 if t1["assignee_id"] == a.id else t2
    await ca.set_status(a_ticket["id"], "solved")
    got = await ca.wait_event(lambda e: e["kind"] == "ticket.assigned" and e["ticket_id"] == t4["id"])
    assert got["ticket"]["assignee_id"] == a.id


async def test_offline_agents_get_nothing_and_coming_online_serves_the_queue(tenant: TenantInfo) -> None:
    sup = await tenant.signed_in(await tenant.add_agent(role="supervisor", capacity=0))
    agent = await tenant.add_agent(capacity=3)
    away_agent = await tenant.add_agent(capacity=3)
    away = tenant.agent_client()
    await away.login(away_agent.email, "correct horse battery")
    await away.connect(status="away")

    await _customer_writes(tenant, "anyone there?")
    waiting = await _ticket_of(sup, "anyone there?")
    assert waiting["assignee_id"] is None  # nobody online: away and offline agents get no work

    client = await tenant.signed_in(agent)  # comes online
    got = await client.wait_event(lambda e: e["kind"] == "ticket.assigned" and e["ticket_id"] == waiting["id"])
    assert got["ticket"]["assignee_id"] == agent.id
    # Everything the agent needs to answer is one request away.
    detail = await client.api("GET", f"/api/v1/tickets/{waiting['id']}")
    assert detail["messages"][0]["text"] == "anyone there?"


async def test_group_transfer_routes_within_the_group(tenant: TenantInfo) -> None:
    billing = await tenant.add_group("billing")
    sup = await tenant.signed_in(await tenant.add_agent(role="supervisor", capacity=0))
    first = await tenant.add_agent(capacity=5)
    specialist = await tenant.add_agent(capacity=5, group_ids=[billing])
    c1 = await tenant.signed_in(first)
    c2 = await tenant.signed_in(specialist)
    await _customer_writes(tenant, "refund please")
    ticket = await _ticket_of(sup, "refund please")
    owner = c1 if ticket["assignee_id"] == first.id else c2
    moved = await owner.transfer(ticket["id"], group_id=billing)
    assert moved["group_id"] == billing and moved["assignee_id"] is None  # the router takes it from here
    got = await c2.wait_event(lambda e: e["kind"] == "ticket.assigned" and e["ticket_id"] == ticket["id"]
                              and e["ticket"]["assignee_id"] == specialist.id)
    assert got["ticket"]["group_id"] == billing
