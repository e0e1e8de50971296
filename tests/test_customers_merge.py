"""The customer panel (#13): a customer's tickets on every channel, customer merges and their undo."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from admin_api.client import HubError
from core.models import AuditLog
from tests.conftest import TenantInfo
from tests.desk import Desk, desk  # noqa: F401  (desk: the fixture)


async def _error(coro: Any) -> HubError:
    with pytest.raises(HubError) as err:
        await coro
    return err.value


async def test_history_lists_every_ticket_newest_first_and_says_what_the_caller_may_open(
        tenant: TenantInfo, desk: Desk) -> None:  # noqa: F811
    li = await tenant.add_agent(name="Li")
    cli = await tenant.signed_in(li)
    first = await desk.writes("my order is late", name="Wang Fang")
    assert (await desk.routed(first.ticket_id))["assignee_id"] == li.id
    await cli.api("POST", f"/api/v1/tickets/{first.ticket_id}/solve")
    await cli.api("PATCH", f"/api/v1/tickets/{first.ticket_id}", {"status": "closed"})
    second = await desk.writes("and now it is broken", visitor_id=first.visitor_id)
    assert second.ticket_id != first.ticket_id and second.customer_id == first.customer_id
    await desk.routed(second.ticket_id)
    # A third ticket of the customer, made by hand for someone else: Li sees it listed, cannot open it.
    zhao = await tenant.add_agent(name="Zhao")
    third = (await desk.client.api("POST", "/api/v1/tickets", {
        "customer_id": first.customer_id, "text": "called about the refund", "assignee_id": zhao.id}))["ticket"]

    page = await cli.api("GET", f"/api/v1/customers/{first.customer_id}/tickets")
    assert [t["id"] for t in page["tickets"]] == [third["id"], second.ticket_id, first.ticket_id]
    assert [t["can_open"] for t in page["tickets"]] == [False, True, True]
    assert page["next_before_id"] is None and page["merged_into_id"] is None
    one = await cli.api("GET", f"/api/v1/customers/{first.customer_id}/tickets?limit=1")
    assert [t["id"] for t in one["tickets"]] == [third["id"]] and one["next_before_id"] == third["id"]
    rest = await cli.api("GET", f"/api/v1/customers/{first.customer_id}/tickets?limit=5&before_id={third['id']}")
    assert [t["id"] for t in rest["tickets"]] == [second.ticket_id, first.ticket_id]
    everything = await desk.client.api("GET", f"/api/v1/customers/{first.customer_id}/tickets")
    assert all(t["can_open"] for t in everything["tickets"])
    assert (await _error(cli.api("GET", "/api/v1/customers/999999999/tickets"))).code == "customer_not_found"
    assert (await _error(cli.api("GET", f"/api/v1/customers/{first.customer_id}/tickets?limit=0"))).code == \
        "invalid_query"


async def test_merge_moves_identities_and_tickets_and_undo_puts_them_back(tenant: TenantInfo, desk: Desk) -> None:  # noqa: F811
    agent = await tenant.add_agent(name="Li")
    cli = await tenant.signed_in(agent)
    web = await desk.writes("hello from the web", name="Chen Jie")
    other = await desk.writes("hello from my phone")  # the same person on another visitor id, no name
    await desk.client.api("PATCH", f"/api/v1/customers/{web.customer_id}", {"tags": ["vip"],
                                                                            "attributes": {"language": "zh"}})
    await desk.client.api("PATCH", f"/api/v1/customers/{other.customer_id}", {
        "email": "chen@example.org", "tags": ["mobile", "vip"], "attributes": {"language": "en", "region": "sh"}})
    kept_ids, other_ids = await desk.identities(web.customer_id), await desk.identities(other.customer_id)

    merged = await cli.api("POST", f"/api/v1/customers/{web.customer_id}/merge", {"other_id": other.customer_id})
    merge, customer = merged["merge"], merged["customer"]
    assert merge["customer_id"] == web.customer_id and merge["other_id"] == other.customer_id
    assert set(merge["identity_ids"]) == other_ids and merge["ticket_ids"] == [other.ticket_id]
    assert customer["name"] == "Chen Jie" and customer["email"] == "chen@example.org"
    assert customer["tags"] == ["vip", "mobile"]
    assert customer["attributes"] == {"language": "zh", "region": "sh"}  # the kept customer's values win
    assert {i["external_id"] for i in customer["identities"]} == {web.visitor_id, other.visitor_id}
    assert await desk.identities(web.customer_id) == kept_ids | other_ids
    assert await desk.tickets_of(web.customer_id) == {web.ticket_id, other.ticket_id}
    gone = (await cli.api("GET", f"/api/v1/customers/{other.customer_id}"))["customer"]
    assert gone["merged_into_id"] == web.customer_id and gone["identities"] == []
    # Consoles hear of it, plain agents included; the moved ticket's view updates too.
    event = await cli.wait_event(lambda e: e["kind"] == "customer.merged")
    assert event["merge"]["id"] == merge["id"] and event["other_id"] == other.customer_id
    moved = await desk.client.wait_event(lambda e: e["kind"] == "ticket.updated" and e["ticket_id"] == other.ticket_id)
    assert moved["changes"]["customer_id"] == {"from": other.customer_id, "to": web.customer_id}
    async with desk.db.read() as session:
        audited = (await session.execute(select(AuditLog).where(AuditLog.tenant_id == tenant.id,
                                                                AuditLog.action == "customer.merge"))).scalar_one()
    assert audited.actor_id == agent.id and audited.details["merge_id"] == merge["id"]
    # A merged customer takes nothing new: no second merge, no changes, no tickets made by hand.
    for coro, code in ((cli.api("POST", f"/api/v1/customers/{other.customer_id}/merge",
                                {"other_id": web.customer_id}), "customer_merged"),
                       (cli.api("PATCH", f"/api/v1/customers/{other.customer_id}", {"name": "x"}), "customer_merged"),
                       (cli.api("POST", "/api/v1/tickets", {"customer_id": other.customer_id, "text": "x"}),
                        "customer_not_found")):
        assert (await _error(coro)).code == code
    # The phone writes again: its ticket is the kept customer's, whose fields someone then edits.
    again = await desk.writes("still there?", visitor_id=other.visitor_id)
    assert again.customer_id == web.customer_id
    await cli.api("PATCH", f"/api/v1/customers/{web.customer_id}", {"tags": ["vip", "mobile", "angry"]})
    listed = await cli.api("GET", f"/api/v1/customers/{web.customer_id}/merges")
    assert [m["id"] for m in listed["merges"]] == [merge["id"]]

    undone = await cli.api("POST", f"/api/v1/customers/merges/{merge['id']}/undo")
    assert undone["merge"]["undone_at"] is not None
    assert await desk.identities(web.customer_id) == kept_ids
    assert await desk.identities(other.customer_id) == other_ids
    assert await desk.tickets_of(other.customer_id) == {other.ticket_id, again.ticket_id}
    assert await desk.tickets_of(web.customer_id) == {web.ticket_id}
    kept = undone["customer"]
    # The fields the merge filled in go back; the tags someone changed since stay as they made them.
    assert (kept["email"], kept["attributes"], kept["tags"]) == (None, {"language": "zh"}, ["vip", "mobile", "angry"])
    assert undone["other"]["merged_into_id"] is None and undone["other"]["email"] == "chen@example.org"
    await cli.wait_event(lambda e: e["kind"] == "customer.unmerged" and e["merge"]["id"] == merge["id"])
    assert (await _error(cli.api("POST", f"/api/v1/customers/merges/{merge['id']}/undo"))).code == "already_undone"
    # And the customer writes on: the phone's messages are the other customer's again.
    later = await desk.writes("hello?", visitor_id=other.visitor_id)
    assert later.customer_id == other.customer_id
    await desk.assert_loads()


async def test_refusals(tenant: TenantInfo, desk: Desk) -> None:  # noqa: F811
    a = await desk.writes("a")
    cli = desk.client
    assert (await _error(cli.api("POST", f"/api/v1/customers/{a.customer_id}/merge",
                                 {"other_id": a.customer_id}))).code == "same_customer"
    for path, body in ((f"/api/v1/customers/{a.customer_id}/merge", {"other_id": 10**12}),
                       ("/api/v1/customers/1000000000000/merge", {"other_id": a.customer_id})):
        err = await _error(cli.api("POST", path, body))
        assert (err.status, err.code) == (404, "customer_not_found")
    err = await _error(cli.api("POST", "/api/v1/customers/merges/1000000000000/undo"))
    assert (err.status, err.code) == (404, "merge_not_found")


async def test_undo_is_refused_when_it_can_no_longer_be_exact(tenant: TenantInfo, desk: Desk) -> None:  # noqa: F811
    cli = desk.client
    a = await desk.writes("first person")
    b = await desk.writes("second visitor id of the same person")
    c = await desk.writes("someone else entirely")
    merge = (await cli.api("POST", f"/api/v1/customers/{a.customer_id}/merge", {"other_id": b.customer_id}))["merge"]
    # A moved ticket merged into the kept customer's own: undoing would split that history.
    await cli.api("POST", f"/api/v1/tickets/{a.ticket_id}/merge", {"other_ticket_id": b.ticket_id})
    err = await _error(cli.api("POST", f"/api/v1/customers/merges/{merge['id']}/undo"))
    assert (err.status, err.code) == (409, "undo_conflict")

    # The kept customer merged into a third since: that merge is undone first.
    d = await desk.writes("fourth")
    e = await desk.writes("fifth")
    first = (await cli.api("POST", f"/api/v1/customers/{d.customer_id}/merge", {"other_id": e.customer_id}))["merge"]
    second = (await cli.api("POST", f"/api/v1/customers/{c.customer_id}/merge", {"other_id": d.customer_id}))["merge"]
    err = await _error(cli.api("POST", f"/api/v1/customers/merges/{first['id']}/undo"))
    assert (err.status, err.code) == (409, "undo_conflict")
    await cli.api("POST", f"/api/v1/customers/merges/{second['id']}/undo")
    await cli.api("POST", f"/api/v1/customers/merges/{first['id']}/undo")
    for w in (c, d, e):
        assert await desk.tickets_of(w.customer_id) == {w.ticket_id}


async def test_merges_racing_each_other_leave_one_consistent_outcome(tenant: TenantInfo, desk: Desk) -> None:  # noqa: F811
    cli = desk.client
    for _ in range(3):
        a, b = await desk.writes("racer a"), await desk.writes("racer b")
        c = await desk.writes("racer c")
        tickets = {a.ticket_id, b.ticket_id, c.ticket_id}
        results = await asyncio.gather(
            cli.api("POST", f"/api/v1/customers/{a.customer_id}/merge", {"other_id": b.customer_id}),
            cli.api("POST", f"/api/v1/customers/{b.customer_id}/merge", {"other_id": a.customer_id}),
            cli.api("POST", f"/api/v1/customers/{c.customer_id}/merge", {"other_id": b.customer_id}),
            return_exceptions=True)
        won = [r for r in results if not isinstance(r, BaseException)]
        lost = [r for r in results if isinstance(r, BaseException)]
        # Refused because another merge got there first (or, rarely on PostgreSQL, moved identities
        # under this one: "try again").
        assert all(isinstance(r, HubError) and r.code in ("customer_merged", "customer_changed") for r in lost), lost
        # b was merged once at most, and no ticket or identity is lost or held twice.
        assert 1 <= len(won) <= 2
        owners = {}
        for w in (a, b, c):
            for t in await desk.tickets_of(w.customer_id):
                owners[t] = w.customer_id
        assert set(owners) == tickets
        live = {w.customer_id for w in (a, b, c)
                if (await cli.api("GET", f"/api/v1/customers/{w.customer_id}"))["customer"]["merged_into_id"] is None}
        assert set(owners.values()) <= live
        # Undone newest first (an older one waits until what was merged on top of it is undone).
        for r in sorted(won, key=lambda r: -r["merge"]["id"]):  # type: ignore[index]
            assert isinstance(r, dict)
            undone = await cli.api("POST", f"/api/v1/customers/merges/{r['merge']['id']}/undo")
            assert undone["merge"]["undone_at"]
    await desk.assert_loads()
