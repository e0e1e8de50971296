"""SLA policies (#17, core.sla): deadlines computed from a ticket's history on wall clock and on
business hours, the pending pause, warnings and breaches once each with two sweepers at once, the
priority raised near breach, the API's bad input and the breach report. Time is injected: the
sweeper is called with ``now=`` moved ahead, never slept for."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from admin_api.client import HubError
from core import sla
from core.events import EventKind
from core.models import Event, SlaPolicy, TicketSla
from core.schedule import BusinessHours
from tests.conftest import Server, TenantInfo, eventually
from web.http import HUB

T0 = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)  # a Friday, 16:00 UTC


def _policy(**targets: Any) -> SlaPolicy:
    return SlaPolicy(id=1, name="p", enabled=True, priorities=[], channels=[], business_hours=False,
                     warn_before=None, escalate_priority=None,
                     **{"first_response": None, "next_response": None, "resolution": None, **targets})


def _ev(minutes: float, kind: str, status: str, message: dict[str, Any] | None = None) -> sla.HistoryEvent:
    payload: dict[str, Any] = {"ticket": {"status": status, "priority": "normal", "channel": "webchat"}}
    if message is not None:
        payload["message"] = message
    return sla.HistoryEvent(T0 + timedelta(minutes=minutes), kind, payload)


CUSTOMER = {"direction": "inbound", "author": {"type": "customer", "id": 1}}
AGENT = {"direction": "outbound", "author": {"type": "agent", "id": 2}}
NOTE = {"direction": "note", "author": {"type": "agent", "id": 2}}


def by_target(rows: list[sla.Deadline]) -> dict[tuple[str, int], sla.Deadline]:
    return {(d.target, d.cycle): d for d in rows}


def test_wall_clock_deadlines_and_the_pending_pause_carry_the_time_left() -> None:
    history = [
        _ev(0, EventKind.TICKET_CREATED, "new"),
        _ev(0, EventKind.MESSAGE_CREATED, "new", CUSTOMER),
        _ev(10, EventKind.MESSAGE_CREATED, "new", NOTE),  # a note is no response
        _ev(20, EventKind.MESSAGE_CREATED, "open", AGENT),  # first response at 20 min
        _ev(30, EventKind.TICKET_UPDATED, "pending"),  # waits on the customer for 2 hours
        _ev(150, EventKind.MESSAGE_CREATED, "open", CUSTOMER),  # a wait starts; the clocks run again
    ]
    rows = by_target(sla.compute(history, _policy(first_response=3600, next_response=1800, resolution=4 * 3600),
                                 None))
    first = rows[("first_response", 0)]
    assert first.met_at == T0 + timedelta(minutes=20) and first.due_at is None and first.warn_at is None
    nxt = rows[("next_response", 1)]
    assert nxt.started_at == T0 + timedelta(minutes=150)
    assert nxt.due_at == T0 + timedelta(minutes=180) and nxt.warn_at == T0 + timedelta(minutes=174)  # 80 %
    # Resolution ran 30 min, stood 2 hours while pending, and runs again from 150 min: 210 min left.
    res = rows[("resolution", 0)]
    assert res.due_at == T0 + timedelta(minutes=150 + 210) and res.paused_at is None

    # Pending again at 160 min: the clocks stand with what is left, and no warning is due.
    paused = by_target(sla.compute([*history, _ev(160, EventKind.TICKET_UPDATED, "pending")],
                                   _policy(next_response=1800, resolution=4 * 3600), None))
    assert paused[("next_response", 1)].paused_at == T0 + timedelta(minutes=160)
    assert paused[("next_response", 1)].remaining == 20 * 60 and paused[("next_response", 1)].due_at is None
    assert paused[("resolution", 0)].remaining == (240 - 40) * 60 and paused[("resolution", 0)].warn_at is None
    # Solved: resolution met; a reopen resumes it where it stood.
    solved = [*history, _ev(170, EventKind.MESSAGE_CREATED, "open", AGENT),
              _ev(175, EventKind.TICKET_UPDATED, "solved")]
    done = by_target(sla.compute(solved, _policy(resolution=4 * 3600), None))
    assert done[("resolution", 0)].met_at == T0 + timedelta(minutes=175)
    reopened = by_target(sla.compute([*solved, _ev(600, EventKind.MESSAGE_CREATED, "open", CUSTOMER)],
                                     _policy(resolution=4 * 3600), None))[("resolution", 0)]
    assert reopened.met_at is None and reopened.due_at == T0 + timedelta(minutes=600 + 240 - 55)


def test_business_hours_across_a_weekend() -> None:
    hours = BusinessHours.parse({"timezone": "UTC", "weekly": {d: ["09:00-17:00"] for d in
                                                               ("mon", "tue", "wed", "thu", "fri")}})
    history = [_ev(0, EventKind.TICKET_CREATED, "new"), _ev(0, EventKind.MESSAGE_CREATED, "new", CUSTOMER)]
    policy = _policy(first_response=4 * 3600, resolution=3 * 86400)
    policy.business_hours = True
    rows = by_target(sla.compute(history, policy, hours))
    # Friday 16:00 + 4 business hours: 1 hour on Friday, 3 on Monday from 09:00.
    assert rows[("first_response", 0)].due_at == datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    # 80 % (3h12m): Monday 11:12.
    assert rows[("first_response", 0)].warn_at == datetime(2026, 12, 7, 11, 12, tzinfo=UTC)
    # 72 business hours = 9 working days: Friday's hour, then Monday..Thursday next week, + 7 hours.
    assert rows[("resolution", 0)].due_at == datetime(2026, 12, 17, 16, 0, tzinfo=UTC)
    # The same policy on wall clock: Friday 20:00.
    policy.business_hours = False
    assert by_target(sla.compute(history, policy, hours))[("first_response", 0)].due_at == T0 + timedelta(hours=4)
    # Pending from Friday 16:30 to Monday 10:00: 30 business minutes ran, 3h30 are left, due Monday 13:30.
    policy.business_hours = True
    waited = [*history, _ev(30, EventKind.TICKET_UPDATED, "pending"),
              sla.HistoryEvent(datetime(2026, 12, 7, 10, 0, tzinfo=UTC), EventKind.MESSAGE_CREATED,
                               {"ticket": {"status": "open", "priority": "normal", "channel": "webchat"},
                                "message": CUSTOMER})]
    assert by_target(sla.compute(waited, policy, hours))[("first_response", 0)].due_at == datetime(
        2026, 12, 7, 13, 30, tzinfo=UTC)


def test_the_first_matching_policy_applies() -> None:
    urgent = _policy(first_response=600)
    urgent.priorities = ["urgent"]
    chat = _policy(first_response=1800)
    chat.channels = ["webchat"]
    off = _policy(first_response=60)
    off.enabled = False
    policies = [off, urgent, chat]
    assert sla.choose(policies, "urgent", "email") is urgent
    assert sla.choose(policies, "normal", "webchat") is chat
    assert sla.choose(policies, "normal", "email") is None


async def refused(call: Any, status: int, code: str | None = None) -> HubError:
    with pytest.raises(HubError) as caught:
        await call
    assert caught.value.status == status, caught.value
    if code is not None:
        assert caught.value.code == code, caught.value
    return caught.value


# --- through the hub ---------------------------------------------------------------------------------

async def _admin(tenant: TenantInfo) -> Any:
    return await tenant.signed_in(await tenant.add_agent(role="admin", capacity=0, name="Admin"))


async def _ticket(tenant: TenantInfo, text: str) -> int:
    visitor = tenant.visitor()
    await visitor.connect()
    cid = await visitor.send(text)
    await visitor.wait_frame(lambda f: f.get("type") == "ack" and f["client_id"] == cid)
    db = tenant.server.app[HUB].db
    for _ in range(200):
        async with db.read() as session:
            found = (await session.execute(select(Event.ticket_id).where(
                Event.tenant_id == tenant.id, Event.kind == "message.created",
                Event.payload["message"]["text"].as_string() == text))).scalar()
        if found:
            return int(found)
        await asyncio.sleep(0.05)
    raise AssertionError("no ticket")


async def _rows(server: Server, ticket_id: int) -> dict[str, TicketSla]:
    async with server.app[HUB].db.read() as session:
        rows = (await session.execute(select(TicketSla).where(TicketSla.ticket_id == ticket_id))).scalars().all()
    return {r.target: r for r in rows}


async def _count(server: Server, ticket_id: int, kind: str) -> int:
    async with server.app[HUB].db.read() as session:
        return int((await session.execute(select(func.count()).select_from(Event).where(
            Event.ticket_id == ticket_id, Event.kind == kind))).scalar_one())


async def test_warning_escalation_and_breach_once_each_with_two_sweepers(server: Server, tenant: TenantInfo) -> None:
    hub = server.app[HUB]
    admin = await _admin(tenant)
    group = await tenant.add_group("support")
    agent = await tenant.add_agent(capacity=5, group_ids=[group])
    sup = await tenant.signed_in(await tenant.add_agent(role="supervisor", capacity=0, name="Sue"))
    me = await tenant.signed_in(agent)
    await me.api("PUT", "/api/v1/me/presence", {"status": "online"})
    await admin.api("PUT", "/api/v1/routing/settings", {"default_group_id": group})
    policy = (await admin.api("POST", "/api/v1/sla/policies", {
        "name": "Chat", "channels": ["webchat"], "first_response": 3600, "resolution": 86400,
        "warn_before": 600, "escalate_priority": "high"}))["policy"]
    ticket_id = await _ticket(tenant, "my order is late")
    await sla.sweep(hub, read_seconds=None)
    rows = await _rows(server, ticket_id)
    first = rows["first_response"]
    assert first.policy_id == policy["id"] and first.due_at is not None
    assert first.due_at - first.started_at == timedelta(seconds=3600)
    assert first.warn_at == first.due_at - timedelta(seconds=600)
    # The deadlines come with the ticket.
    detail = (await sup.api("GET", f"/api/v1/tickets/{ticket_id}"))["ticket"]
    assert [d["target"] for d in detail["sla"]] == ["first_response", "resolution"]
    assert datetime.fromisoformat(detail["sla"][0]["due_at"]) == first.due_at
    listed = (await sup.api("GET", "/api/v1/tickets"))["tickets"]
    assert next(t for t in listed if t["id"] == ticket_id)["sla"][0]["target"] == "first_response"

    # Before the warning: nothing fires.
    # (Sweeps are of every tenant: other tests' deadlines may fire at these moments; count this one's.)
    await sla.sweep(hub, read_seconds=None, now=first.warn_at - timedelta(seconds=1))
    assert await _count(server, ticket_id, EventKind.SLA_WARNING) == 0
    # Two sweepers at the warning: one warning, one escalation.
    at_warning = first.warn_at + timedelta(seconds=1)
    await asyncio.gather(*(sla.sweep(hub, read_seconds=None, now=at_warning) for _ in range(2)))
    assert await _count(server, ticket_id, EventKind.SLA_WARNING) == 1
    warning = await sup.wait_event(lambda e: e["kind"] == "sla.warning" and e["ticket_id"] == ticket_id)
    assert warning["target"] == "first_response" and warning["policy"] == "Chat"
    assert warning["policy_id"] == policy["id"] and datetime.fromisoformat(warning["due_at"]) == first.due_at
    raised = await sup.wait_event(lambda e: e["kind"] == "ticket.updated" and e["ticket_id"] == ticket_id
                                  and "priority" in e.get("changes", {}))
    assert raised["ticket"]["priority"] == "high" and raised["changes"]["priority"] == {"from": "normal", "to": "high"}
    history = await sup.api("GET", f"/api/v1/tickets/{ticket_id}/routing")
    assert any(r["outcome"] == "escalated" for r in history["decisions"]), history
    # The assignee sees the warning too.
    assigned = (await sup.api("GET", f"/api/v1/tickets/{ticket_id}"))["ticket"]["assignee_id"]
    if assigned == agent.id:
        await me.wait_event(lambda e: e["kind"] == "sla.warning" and e["ticket_id"] == ticket_id)

    # The deadline passes: one breach, with the assignee and group of that moment, even with two sweepers.
    at_due = first.due_at + timedelta(seconds=5)
    await asyncio.gather(*(sla.sweep(hub, read_seconds=None, now=at_due) for _ in range(2)))
    await sla.sweep(hub, read_seconds=None, now=first.due_at + timedelta(minutes=5))
    assert await _count(server, ticket_id, EventKind.SLA_BREACHED) == 1
    assert await _count(server, ticket_id, EventKind.SLA_WARNING) == 1
    breached = await sup.wait_event(lambda e: e["kind"] == "sla.breached" and e["ticket_id"] == ticket_id)
    assert breached["target"] == "first_response" and breached["group_id"] == group
    assert breached["agent_id"] == assigned
    row = (await _rows(server, ticket_id))["first_response"]
    assert row.breached_at == first.due_at and row.breach_agent_id == assigned

    # The breach report counts it, for the agent and the group; filters narrow it.
    # (The injected clock put the breach an hour ahead: the period names its day.)
    day = f"from={row.breached_at.date().isoformat()}&to={row.breached_at.date().isoformat()}"
    report = (await sup.api("GET", f"/api/v1/reports/sla?{day}"))["report"]
    assert report["totals"] == {"first_response": 1, "next_response": 0, "resolution": 0}
    assert [(g["group_id"], g["breaches"]["first_response"]) for g in report["groups"]] == [(group, 1)]
    assert [(a["agent_id"], a["breaches"]["first_response"]) for a in report["agents"]] == [(assigned, 1)]
    assert report["period"]["timezone"] == "UTC"
    none = (await sup.api("GET", f"/api/v1/reports/sla?{day}&channel=email"))["report"]
    assert none["totals"]["first_response"] == 0 and none["agents"] == []
    narrowed = (await sup.api("GET", f"/api/v1/reports/sla?{day}&group_id={group}"))["report"]
    assert narrowed["totals"]["first_response"] == 1
    # Agents may not read it.
    await refused(me.api("GET", "/api/v1/reports/sla"), 403)


async def test_the_api_refuses_bad_policies(tenant: TenantInfo) -> None:
    admin = await _admin(tenant)
    for body, code in (
        ({"name": "neg", "first_response": -5}, "validation_error"),
        ({"name": "zero", "resolution": 0}, "validation_error"),
        ({"name": "prio", "first_response": 60, "priorities": ["critical"]}, "validation_error"),
        ({"name": "none"}, "invalid_sla_policy"),
        ({"name": "esc", "first_response": 60, "escalate_priority": "asap"}, "validation_error"),
    ):
        await refused(admin.api("POST", "/api/v1/sla/policies", body), 422, code)
    made = (await admin.api("POST", "/api/v1/sla/policies", {"name": "ok", "first_response": 60}))["policy"]
    await refused(admin.api("POST", "/api/v1/sla/policies", {"name": "ok", "resolution": 60}), 409)
    # Clearing the only target leaves none.
    await refused(admin.api("PATCH", f"/api/v1/sla/policies/{made['id']}", {"first_response": None}),
                  422, "invalid_sla_policy")
    changed = (await admin.api("PATCH", f"/api/v1/sla/policies/{made['id']}", {"priorities": ["urgent"]}))["policy"]
    assert changed["priorities"] == ["urgent"]
    agent = await tenant.signed_in(await tenant.add_agent(), connect=False)
    await refused(agent.api("POST", "/api/v1/sla/policies", {"name": "x", "resolution": 60}), 403)
    assert (await agent.api("GET", "/api/v1/sla/policies"))["policies"][0]["name"] == "ok"
    await refused(admin.api("GET", "/api/v1/reports/sla?from=2026-13-01"), 422)
    await refused(admin.api("GET", "/api/v1/reports/sla?from=2026-12-05&to=2026-12-01"), 422)


@pytest.mark.parametrize("n", [1])
async def test_a_priority_change_reevaluates_the_policy(server: Server, tenant: TenantInfo, n: int) -> None:
    hub = server.app[HUB]
    admin = await _admin(tenant)
    await admin.api("POST", "/api/v1/sla/policies", {"name": "Urgent", "priorities": ["urgent"], "first_response": 300})
    await admin.api("POST", "/api/v1/sla/policies", {"name": "Any", "first_response": 7200})
    ticket_id = await _ticket(tenant, "hello there")
    await sla.sweep(hub, read_seconds=None)
    first = (await _rows(server, ticket_id))["first_response"]
    assert first.policy_name == "Any" and first.due_at - first.started_at == timedelta(seconds=7200)
    await admin.api("PATCH", f"/api/v1/tickets/{ticket_id}", {"priority": "urgent"})
    await sla.sweep(hub, read_seconds=None)
    first = (await _rows(server, ticket_id))["first_response"]
    assert first.policy_name == "Urgent" and first.due_at - first.started_at == timedelta(seconds=300)


async def test_a_routing_rule_on_the_warning_raises_the_priority_and_tags_the_ticket(
        server: Server, tenant: TenantInfo) -> None:
    """Near breach, the tenant's routing rules with the ``sla`` condition are tried (never at the
    door): the first that matches raises the priority and adds its tags, once."""
    hub = server.app[HUB]
    admin = await _admin(tenant)
    await admin.api("POST", "/api/v1/sla/policies", {"name": "Chat", "first_response": 3600, "warn_before": 900})
    # Not for this ticket's channel; then one that is, on first-response warnings.
    await admin.api("POST", "/api/v1/routing/rules", {
        "name": "mail near breach", "conditions": {"sla": "warning", "channel": ["email"]},
        "actions": {"priority": "high"}})
    await admin.api("POST", "/api/v1/routing/rules", {
        "name": "chat near breach", "conditions": {"sla": ["first_response"], "channel": ["webchat"]},
        "actions": {"priority": "urgent", "add_tags": ["sla-risk"]}})
    ticket_id = await _ticket(tenant, "where is my parcel")
    # At the door no rule on warnings applies.
    detail = (await admin.api("GET", f"/api/v1/tickets/{ticket_id}"))["ticket"]
    assert detail["priority"] == "normal" and "sla-risk" not in detail["tags"]
    await sla.sweep(hub, read_seconds=None)
    first = (await _rows(server, ticket_id))["first_response"]
    assert first.warn_at is not None
    at_warning = first.warn_at + timedelta(seconds=1)
    await asyncio.gather(*(sla.sweep(hub, read_seconds=None, now=at_warning) for _ in range(2)))
    detail = (await admin.api("GET", f"/api/v1/tickets/{ticket_id}"))["ticket"]
    assert detail["priority"] == "urgent" and "sla-risk" in detail["tags"]

    async def escalations() -> list[dict[str, Any]]:
        history = (await admin.api("GET", f"/api/v1/tickets/{ticket_id}/routing"))["decisions"]
        return [r for r in history if r["outcome"] == "escalated"]

    escalated = await escalations()
    assert len(escalated) == 1 and escalated[0]["rule"] == "chat near breach", escalated
    # A later sweep changes nothing more.
    await sla.sweep(hub, read_seconds=None, now=at_warning + timedelta(minutes=1))
    assert len(await escalations()) == 1


async def test_a_rule_on_warnings_may_only_raise_the_priority_and_add_tags(tenant: TenantInfo) -> None:
    admin = await _admin(tenant)
    for conditions, actions in (({"sla": "warning"}, {"group_id": 1}),
                                ({"sla": ["first_reply"]}, {"priority": "high"}),
                                ({"sla": "soon"}, {"priority": "high"})):
        with pytest.raises(HubError) as refused:
            await admin.api("POST", "/api/v1/routing/rules", {"name": "bad", "conditions": conditions,
                                                             "actions": actions})
        assert refused.value.status == 422 and refused.value.code == "invalid_rule", refused.value


async def test_serve_sweeps_by_itself(settings: Any, fresh: Any) -> None:
    """A hub with CHANNELHUB_SLA_INTERVAL set sweeps on its own (the shared test server does not):
    a two-second first-response target is breached in real time, once (warned about once at most)."""
    from dataclasses import replace

    from tests.conftest import make_tenant, start_server

    own = replace(settings, database_url=await fresh("slaserve", migrated=True), sla_interval=0.2)
    srv = await start_server(own)
    try:
        tenant = await make_tenant(own, srv)
        admin = await _admin(tenant)
        await admin.api("POST", "/api/v1/sla/policies", {"name": "Quick", "first_response": 2, "warn_before": 1})
        ticket_id = await _ticket(tenant, "anyone?")

        async def breached() -> bool:
            return await _count(srv, ticket_id, EventKind.SLA_BREACHED) == 1

        await eventually(breached, timeout=30, interval=0.2)
        # The warning's second comes first, unless the machine was too slow to sweep within it.
        assert await _count(srv, ticket_id, EventKind.SLA_WARNING) <= 1
        row = (await _rows(srv, ticket_id))["first_response"]
        assert row.breached_at == row.due_at and row.due_at - row.started_at == timedelta(seconds=2)
    finally:
        await srv.runner.cleanup()
