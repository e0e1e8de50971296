"""The ticket flow over the HTTP API: create by hand, notes, transfer, status / priority / tags,
solve and reopen — each written, then published live to the agents who may see it."""

from __future__ import annotations

import pytest

from admin_api.client import HubError
from tests.conftest import TenantInfo


async def test_manual_ticket_with_note_then_transfer_between_agents(tenant: TenantInfo) -> None:
    li = await tenant.add_agent(name="Li")
    zhao = await tenant.add_agent(name="Zhao")
    cli = await tenant.signed_in(li)
    czhao = await tenant.signed_in(zhao)

    created = (await cli.api("POST", "/api/v1/tickets", {
        "customer": {"name": "Chen Jie", "email": "chen@example.org"}, "subject": "Phone call: broken kettle",
        "text": "Customer called, kettle leaks. Wants a replacement.", "assignee_id": li.id,
        "priority": "high", "tags": ["Phone", "hardware", "phone"],
    }))["ticket"]
    assert created["channel"] == "manual" and created["assignee_id"] == li.id
    assert created["priority"] == "high" and created["tags"] == ["phone", "hardware"]
    detail = await cli.api("GET", f"/api/v1/tickets/{created['id']}")
    assert [m["direction"] for m in detail["messages"]] == ["note"]
    # A manual ticket has no channel to reply on: a clear error, not a lost reply.
    with pytest.raises(HubError) as err:
        await cli.api("POST", f"/api/v1/tickets/{created['id']}/messages", {"text": "hi"})
    assert err.value.status == 409 and err.value.code == "no_reply_channel"

    moved = (await cli.api("POST", f"/api/v1/tickets/{created['id']}/transfer", {"agent_id": zhao.id}))["ticket"]
    assert moved["assignee_id"] == zhao.id
    seen_by_zhao = await czhao.wait_event(lambda e: e["kind"] == "ticket.assigned" and e["ticket_id"] == created["id"])
    assert seen_by_zhao["previous_assignee_id"] == li.id
    seen_by_li = await cli.wait_event(lambda e: e["kind"] == "ticket.assigned" and e["ticket_id"] == created["id"])
    assert seen_by_li["ticket"]["assignee_id"] == zhao.id  # Li learns it left them
    # ... and can no longer touch it.
    with pytest.raises(HubError) as err:
        await cli.api("GET", f"/api/v1/tickets/{created['id']}")
    assert err.value.status == 404


async def test_status_priority_tags_solve_reopen(tenant: TenantInfo) -> None:
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    visitor = tenant.visitor()
    await visitor.connect()
    await visitor.send("question")
    tid = (await client.wait_event(lambda e: e["kind"] == "message.created"))["ticket_id"]

    t = (await client.api("PATCH", f"/api/v1/tickets/{tid}", {"status": "pending", "priority": "urgent",
                                                                "add_tags": ["vip", "Billing"]}))["ticket"]
    assert (t["status"], t["priority"], t["tags"]) == ("pending", "urgent", ["vip", "billing"])
    update = await client.wait_event(lambda e: e["kind"] == "ticket.updated")
    assert update["changes"]["status"] == {"from": "new", "to": "pending"}
    t = (await client.api("PATCH", f"/api/v1/tickets/{tid}", {"remove_tags": ["vip"]}))["ticket"]
    assert t["tags"] == ["billing"]

    t = (await client.api("POST", f"/api/v1/tickets/{tid}/solve"))["ticket"]
    assert t["status"] == "solved" and t["solved_at"]
    t = (await client.api("POST", f"/api/v1/tickets/{tid}/reopen"))["ticket"]
    assert t["status"] == "open" and t["reopen_count"] == 1 and t["solved_at"] is None
    t = (await client.api("PATCH", f"/api/v1/tickets/{tid}", {"status": "closed"}))["ticket"]
    with pytest.raises(HubError) as err:
        await client.api("POST", f"/api/v1/tickets/{tid}/reopen")
    assert err.value.status == 409 and err.value.code == "invalid_transition"
    with pytest.raises(HubError) as err:
        await client.api("POST", f"/api/v1/tickets/{tid}/messages", {"text": "too late"})
    assert err.value.code == "ticket_closed"


async def test_listing_respects_roles(tenant: TenantInfo) -> None:
    admin = await tenant.signed_in(await tenant.add_agent(role="admin", capacity=0))
    a = await tenant.add_agent()
    b = await tenant.add_agent()
    ca = await tenant.signed_in(a, connect=False)
    for who in (a, b):
        await admin.api("POST", "/api/v1/tickets", {"customer": {"name": f"for {who.name}"}, "text": "x",
                                                    "assignee_id": who.id})
    mine = (await ca.api("GET", "/api/v1/tickets"))["tickets"]
    assert {t["assignee_id"] for t in mine} == {a.id}
    everything = (await admin.api("GET", "/api/v1/tickets?status=new,open"))["tickets"]
    assert {t["assignee_id"] for t in everything} == {a.id, b.id}
    with pytest.raises(HubError) as err:
        await ca.api("GET", "/api/v1/tickets?status=bogus")
    assert err.value.status == 422


async def test_openapi_document_lists_the_api(tenant: TenantInfo) -> None:
    client = tenant.agent_client()
    doc = await client.request("GET", "/api/v1/openapi.json")
    assert doc["openapi"].startswith("3.")
    assert "post" in doc["paths"]["/api/v1/tickets"]
    assert "CreateTicketBody" in doc["components"]["schemas"]
