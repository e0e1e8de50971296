"""The rule-based router through the public API: each rule condition, each strategy with its ties
and fall-backs, per-channel capacity, queue order, overflow, re-routing when an agent drops, and
the record of why a ticket went where it went."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from admin_api.client import AgentClient, HubError, VisitorClient
from tests.conftest import PASSWORD, TenantInfo


async def write(tenant: TenantInfo, text: str, **hello: Any) -> VisitorClient:
    visitor = tenant.visitor()
    await visitor.connect(**hello)
    cid = await visitor.send(text)
    await visitor.wait_frame(lambda f: f.get("type") == "ack" and f["client_id"] == cid)
    return visitor


async def routed(sup: AgentClient, text: str) -> dict[str, Any]:
    """The routing outcome (assigned or queued) of the ticket the message ``text`` opened."""
    created = await sup.wait_event(lambda e: e["kind"] == "message.created" and e["message"]["text"] == text)
    event = await sup.wait_event(lambda e: e["ticket_id"] == created["ticket_id"]
                                 and e["kind"] in ("ticket.assigned", "ticket.queued"))
    return dict(event)


async def admin_of(tenant: TenantInfo) -> AgentClient:
    return await tenant.signed_in(await tenant.add_agent(role="admin", capacity=0, name="Admin"))


async def test_each_rule_condition_picks_its_group(tenant: TenantInfo) -> None:
    admin = await admin_of(tenant)
    groups = {name: await tenant.add_group(name) for name in
              ("support", "vip", "refunds", "chinese", "orders", "after-hours", "urgent")}
    await admin.api("PUT", "/api/v1/routing/settings", {"default_group_id": groups["support"]})
    rules = [
        ("vip first", {"vip": True}, {"group_id": groups["vip"], "priority": "high"}),
        ("refunds", {"text_contains": ["refund", "退款"], "channel": ["webchat"]},
         {"group_id": groups["refunds"], "add_tags": ["refund"]}),
        ("chinese speakers", {"customer_attributes": {"language": ["zh", "zh-cn"]}}, {"group_id": groups["chinese"]}),
        ("order numbers", {"text_matches": r"order\s*#?\d{4,}"}, {"group_id": groups["orders"]}),
        ("gold b2b", {"customer_tags_all": ["b2b", "gold"]}, {"group_id": groups["urgent"], "priority": "urgent"}),
    ]
    for name, conditions, actions in rules:
        await admin.api("POST", "/api/v1/routing/rules", {"name": name, "conditions": conditions,
                                                          "actions": actions})
    listed = (await admin.api("GET", "/api/v1/routing/rules"))["rules"]
    assert [r["name"] for r in listed] == [r[0] for r in rules]

    cases = [
        ("I want a REFUND now", {}, "refunds", "refunds"),
        ("你好", {"language": "zh-CN"}, "chinese", "chinese speakers"),
        ("where is order #12345", {}, "orders", "order numbers"),
        ("just saying hi", {}, "support", None),  # no rule: the tenant's default group
    ]
    for text, hello, group, rule in cases:
        await write(tenant, text, **hello)
        outcome = await routed(admin, text)
        assert outcome["ticket"]["group_id"] == groups[group], text
        why = await admin.api("GET", f"/api/v1/tickets/{outcome['ticket_id']}/routing")
        assert why["rule"] == rule, text
    refund = await routed(admin, "I want a REFUND now")
    assert refund["ticket"]["tags"] == ["refund"]

    # Customer tags and VIP come from agents, not from the visitor: tag a known customer, then
    # their next ticket follows the rule (the first matching rule wins: VIP before the rest).
    visitor = await write(tenant, "first contact")
    first = await routed(admin, "first contact")
    customer_id = first["ticket"]["customer_id"]
    await admin.api("PATCH", f"/api/v1/customers/{customer_id}", {"tags": ["B2B", "gold"]})
    await admin.api("PATCH", f"/api/v1/tickets/{first['ticket_id']}", {"status": "closed"})
    await visitor.send("second contact, about a refund")
    second = await routed(admin, "second contact, about a refund")
    assert second["ticket"]["group_id"] == groups["refunds"]  # "refunds" comes before "gold b2b"
    await admin.api("PATCH", f"/api/v1/tickets/{second['ticket_id']}", {"status": "closed"})
    await visitor.send("third contact")
    third = await routed(admin, "third contact")
    assert third["ticket"]["group_id"] == groups["urgent"] and third["ticket"]["priority"] == "urgent"
    await admin.api("PATCH", f"/api/v1/customers/{customer_id}", {"attributes": {"vip": True}})
    await admin.api("PATCH", f"/api/v1/tickets/{third['ticket_id']}", {"status": "closed"})
    await visitor.send("fourth contact, refund")
    fourth = await routed(admin, "fourth contact, refund")
    assert fourth["ticket"]["group_id"] == groups["vip"] and fourth["ticket"]["priority"] == "high"


async def test_business_hours_and_priority_conditions(tenant: TenantInfo) -> None:
    admin = await admin_of(tenant)
    night = await tenant.add_group("night")
    day = await tenant.add_group("day")
    today = datetime.now(UTC).date()
    closed_today = {"timezone": "Asia/Shanghai", "weekly": {d: ["00:00-24:00"] for d in
                                                            ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
                    "holidays": [str(today - timedelta(days=1)), str(today), str(today + timedelta(days=1))]}
    await admin.api("PUT", "/api/v1/routing/settings", {"default_group_id": day, "business_hours": closed_today})
    await admin.api("POST", "/api/v1/routing/rules", {"name": "after hours",
                                                      "conditions": {"business_hours": "outside"},
                                                      "actions": {"group_id": night}})
    await write(tenant, "are you open?")
    assert (await routed(admin, "are you open?"))["ticket"]["group_id"] == night

    open_always = {**closed_today, "holidays": []}
    await admin.api("PUT", "/api/v1/routing/settings", {"default_group_id": day, "business_hours": open_always})
    await write(tenant, "hello at any hour")
    assert (await routed(admin, "hello at any hour"))["ticket"]["group_id"] == day

    # A priority condition on a manual ticket's priority.
    await admin.api("POST", "/api/v1/routing/rules", {"name": "urgent to night",
                                                      "conditions": {"priority": ["urgent"]},
                                                      "actions": {"group_id": night}, "position": 0})
    made = (await admin.api("POST", "/api/v1/tickets", {"customer": {"name": "Zhou"}, "text": "fire!",
                                                        "priority": "urgent"}))["ticket"]
    why = await admin.api("GET", f"/api/v1/tickets/{made['id']}/routing")
    assert why["rule"] == "urgent to night" and why["group_id"] == night

    with pytest.raises(HubError) as err:
        await admin.api("PUT", "/api/v1/routing/settings", {"business_hours": {"timezone": "Mars/Olympus"}})
    assert err.value.status == 422 and err.value.code == "invalid_business_hours"
    for bad in ({"name": "x", "conditions": {"moon_phase": "full"}, "actions": {"group_id": night}},
                {"name": "y", "conditions": {"text_matches": "("}, "actions": {"group_id": night}},
                {"name": "z", "conditions": {}, "actions": {"group_id": 999999}}):
        with pytest.raises(HubError) as err:
            await admin.api("POST", "/api/v1/routing/rules", bad)
        assert err.value.status in (404, 422)


async def test_round_robin_cycles_and_skills_must_cover(tenant: TenantInfo) -> None:
    admin = await admin_of(tenant)
    rr = await tenant.add_group("round robin")
    await admin.api("PATCH", f"/api/v1/groups/{rr}", {"strategy": "round_robin"})
    await admin.api("PUT", "/api/v1/routing/settings", {"default_group_id": rr})
    agents = [await tenant.add_agent(capacity=10, group_ids=[rr]) for _ in range(3)]
    for a in agents:
        await tenant.signed_in(a)
    order = []
    for i in range(6):
        await write(tenant, f"rr {i}")
        order.append((await routed(admin, f"rr {i}"))["ticket"]["assignee_id"])
    assert order[:3] == order[3:] and sorted(order[:3]) == sorted(a.id for a in agents)

    skills = await tenant.add_group("skills")
    await admin.api("PATCH", f"/api/v1/groups/{skills}", {"strategy": "skills"})
    novice = await tenant.add_agent(capacity=10, group_ids=[skills])
    expert = await tenant.add_agent(capacity=10, group_ids=[skills])
    await admin.api("PATCH", f"/api/v1/agents/{novice.id}", {"skills": {"english": 1}})
    await admin.api("PATCH", f"/api/v1/agents/{expert.id}", {"skills": {"english": 3, "billing": 2}})
    await admin.api("POST", "/api/v1/routing/rules", {"name": "english billing", "position": 0,
                                                      "conditions": {"text_contains": ["invoice"]},
                                                      "actions": {"group_id": skills,
                                                                  "required_skills": {"english": 2, "billing": 1}}})
    await tenant.signed_in(novice)
    expert_client = await tenant.signed_in(expert, connect=False)
    await write(tenant, "my invoice is wrong")
    waiting = await routed(admin, "my invoice is wrong")
    assert waiting["kind"] == "ticket.queued"  # the novice is online and free, but not skilled enough
    await expert_client.connect()
    got = await expert_client.wait_event(lambda e: e["kind"] == "ticket.assigned"
                                         and e["ticket_id"] == waiting["ticket_id"])
    assert got["ticket"]["assignee_id"] == expert.id
    why = await admin.api("GET", f"/api/v1/tickets/{waiting['ticket_id']}/routing")
    assert [d["outcome"] for d in why["decisions"]] == ["queued", "assigned"]
    assert why["decisions"][1]["strategy"] == "skills" and why["decisions"][1]["agent_id"] == expert.id
    assert any(c.get("excluded") == "missing skills" and c["agent_id"] == novice.id
               for c in why["decisions"][1]["candidates"])


async def test_sticky_returns_to_the_last_agent_then_falls_back(tenant: TenantInfo) -> None:
    admin = await admin_of(tenant)
    sticky = await tenant.add_group("sticky")
    await admin.api("PATCH", f"/api/v1/groups/{sticky}", {"strategy": "sticky", "sticky_days": 3})
    await admin.api("PUT", "/api/v1/routing/settings", {"default_group_id": sticky})
    a = await tenant.add_agent(capacity=10, group_ids=[sticky])
    b = await tenant.add_agent(capacity=10, group_ids=[sticky])
    ca, cb = await tenant.signed_in(a), await tenant.signed_in(b)
    visitor = await write(tenant, "hello again")
    first = await routed(admin, "hello again")
    owner, other = (a, b) if first["ticket"]["assignee_id"] == a.id else (b, a)
    owner_client = ca if owner is a else cb
    # Give the other agent nothing and the owner more work: least busy would pick the other.
    await admin.api("POST", "/api/v1/tickets", {"customer": {"name": "x"}, "text": "busy work",
                                                "assignee_id": owner.id})
    await admin.api("PATCH", f"/api/v1/tickets/{first['ticket_id']}", {"status": "closed"})
    await visitor.send("me again")
    again = await routed(admin, "me again")
    assert again["ticket"]["assignee_id"] == owner.id and again["reason"]["strategy"] == "sticky"

    await admin.api("PATCH", f"/api/v1/tickets/{again['ticket_id']}", {"status": "closed"})
    await owner_client.api("POST", "/api/v1/auth/logout")  # the owner leaves
    await visitor.send("third time")
    third = await routed(admin, "third time")
    assert third["ticket"]["assignee_id"] == other.id and third["reason"]["strategy"] == "least_busy"


async def test_manual_group_queue_is_claimed(tenant: TenantInfo) -> None:
    admin = await admin_of(tenant)
    manual = await tenant.add_group("manual")
    await admin.api("PATCH", f"/api/v1/groups/{manual}", {"strategy": "manual"})
    await admin.api("PUT", "/api/v1/routing/settings", {"default_group_id": manual, "unlimited_wait": True})
    member = await tenant.add_agent(capacity=2, group_ids=[manual])
    outsider = await tenant.add_agent(capacity=2)
    cm = await tenant.signed_in(member)
    co = await tenant.signed_in(outsider)
    await write(tenant, "anyone?")
    queued = await routed(admin, "anyone?")
    assert queued["kind"] == "ticket.queued"
    seen = await cm.wait_event(lambda e: e["kind"] == "ticket.queued")  # group members see their queue live
    assert seen["ticket_id"] == queued["ticket_id"]
    assert [t["id"] for t in (await cm.api("GET", "/api/v1/queue"))["queue"]] == [queued["ticket_id"]]
    assert (await co.api("GET", "/api/v1/queue"))["queue"] == []
    with pytest.raises(HubError) as err:
        await co.api("POST", f"/api/v1/tickets/{queued['ticket_id']}/claim")
    assert err.value.status == 404
    claimed = await cm.action("claim", ticket_id=queued["ticket_id"])
    assert claimed["ticket"]["assignee_id"] == member.id
    why = await admin.api("GET", f"/api/v1/tickets/{queued['ticket_id']}/routing")
    assert [d["outcome"] for d in why["decisions"]] == ["queued", "claimed"]


async def test_per_channel_capacity_and_oldest_first(tenant: TenantInfo) -> None:
    admin = await admin_of(tenant)
    agent = await tenant.add_agent(capacity=5)
    await admin.api("PATCH", f"/api/v1/agents/{agent.id}", {"channel_capacity": {"webchat": 1}})
    client = await tenant.signed_in(agent)
    await write(tenant, "chat one")
    assert (await routed(admin, "chat one"))["ticket"]["assignee_id"] == agent.id
    for text in ("chat two", "chat three", "chat four"):
        await write(tenant, text)
        assert (await routed(admin, text))["kind"] == "ticket.queued"
    # The agent still takes work on other channels.
    manual = (await admin.api("POST", "/api/v1/tickets", {"customer": {"name": "m"}, "text": "phone",
                                                          "assignee_id": agent.id}))["ticket"]
    assert manual["assignee_id"] == agent.id
    served = []
    for _ in range(3):
        mine = (await client.api("GET", f"/api/v1/tickets?status=new,open&assignee_id={agent.id}"))["tickets"]
        chat = next(t for t in mine if t["channel"] == "webchat")
        start = len(client.events)
        await client.set_status(chat["id"], "solved")
        got = await client.wait_event(lambda e: e["kind"] == "ticket.assigned" and e["ticket"]["channel"] == "webchat",
                                      start=start)
        served.append(got["ticket"]["subject"])
    assert served == ["chat two", "chat three", "chat four"]  # oldest first
    me = (await client.api("GET", "/api/v1/me"))["agent"]
    assert me["load"] == 2  # the last chat and the phone ticket


async def test_an_agent_reopening_their_only_chat_keeps_it_under_a_channel_cap(tenant: TenantInfo) -> None:
    # The reopened ticket itself must not count against the agent's per-channel cap: with
    # {"webchat": 1} and no other chat, their reopen gives the ticket back to them.
    admin = await admin_of(tenant)
    agent = await tenant.add_agent(capacity=5)
    await admin.api("PATCH", f"/api/v1/agents/{agent.id}", {"channel_capacity": {"webchat": 1}})
    client = await tenant.signed_in(agent)
    await write(tenant, "my only chat")
    ticket = (await routed(admin, "my only chat"))["ticket"]
    assert ticket["assignee_id"] == agent.id
    await client.set_status(ticket["id"], "solved")
    reopened = await client.set_status(ticket["id"], "open")
    assert (reopened["status"], reopened["assignee_id"]) == ("open", agent.id)
    me = (await client.api("GET", "/api/v1/me"))["agent"]
    assert me["load"] == 1


async def test_overflow_after_the_wait(tenant: TenantInfo) -> None:
    admin = await admin_of(tenant)
    first_line = await tenant.add_group("first line")
    second_line = await tenant.add_group("second line")
    await admin.api("PATCH", f"/api/v1/groups/{first_line}", {"overflow_group_id": second_line,
                                                                "overflow_after_seconds": 1})
    await admin.api("PUT", "/api/v1/routing/settings", {"default_group_id": first_line})
    backup = await tenant.add_agent(capacity=3, group_ids=[second_line])
    cb = await tenant.signed_in(backup)
    await write(tenant, "nobody in first line")
    queued = await routed(admin, "nobody in first line")
    assert queued["kind"] == "ticket.queued" and queued["ticket"]["group_id"] == first_line
    moved = await admin.wait_event(lambda e: e["kind"] == "ticket.overflowed" and e["ticket_id"] == queued["ticket_id"])
    assert moved["from_group_id"] == first_line and moved["to_group_id"] == second_line
    got = await cb.wait_event(lambda e: e["kind"] == "ticket.assigned" and e["ticket_id"] == queued["ticket_id"])
    assert got["ticket"]["assignee_id"] == backup.id
    why = await admin.api("GET", f"/api/v1/tickets/{queued['ticket_id']}/routing")
    assert [d["outcome"] for d in why["decisions"]] == ["queued", "overflowed", "assigned"]


async def test_dropped_agent_tickets_are_rerouted_unless_kept(tenant: TenantInfo) -> None:
    admin = await admin_of(tenant)
    leaver = await tenant.add_agent(capacity=5)
    stayer = await tenant.add_agent(capacity=5)
    cl = await tenant.signed_in(leaver)
    for text in ("drop one", "drop two"):
        await write(tenant, text)
        assert (await routed(admin, text))["ticket"]["assignee_id"] == leaver.id
    cs = await tenant.signed_in(stayer)
    await cl.api("POST", "/api/v1/auth/logout")
    for _ in range(2):
        await cs.wait_event(lambda e: e["kind"] == "ticket.assigned" and e["ticket"]["assignee_id"] == stayer.id)
    moved = [e for e in cs.events if e["kind"] == "ticket.assigned"]
    assert len({e["ticket_id"] for e in moved}) == 2
    assert (await cs.api("GET", "/api/v1/me"))["agent"]["load"] == 2

    # With "keep", an agent who drops keeps their chats.
    await admin.api("PUT", "/api/v1/routing/settings", {"offline_policy": "keep"})
    keeper_client = cs
    await write(tenant, "kept chat")
    assert (await routed(admin, "kept chat"))["ticket"]["assignee_id"] == stayer.id
    await keeper_client.api("PUT", "/api/v1/me/presence", {"status": "offline"})
    mine = (await admin.api("GET", f"/api/v1/tickets?assignee_id={stayer.id}&status=new,open"))["tickets"]
    assert len(mine) == 3


async def test_routing_admin_needs_the_admin_role(tenant: TenantInfo) -> None:
    agent = await tenant.signed_in(await tenant.add_agent(), connect=False)
    with pytest.raises(HubError) as err:
        await agent.api("POST", "/api/v1/routing/rules", {"name": "r", "actions": {"priority": "high"}})
    assert err.value.status == 403
    with pytest.raises(HubError) as err:
        await agent.api("PUT", "/api/v1/routing/settings", {"offline_policy": "keep"})
    assert err.value.status == 403
    assert PASSWORD  # the fixture's password signs agents in
