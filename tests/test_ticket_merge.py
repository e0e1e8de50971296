"""Ticket merge and split (#13): messages move and keep their order, the merged ticket is closed and
points where it went, capacity stays right, deliveries are neither repeated nor lost, races resolve."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from admin_api.client import HubError
from tests.conftest import TenantInfo
from tests.desk import Desk, desk  # noqa: F401  (desk: the fixture)


async def _error(coro: Any) -> HubError:
    with pytest.raises(HubError) as err:
        await coro
    return err.value


async def test_merge_moves_the_messages_closes_the_other_and_frees_its_slot(tenant: TenantInfo, desk: Desk) -> None:  # noqa: F811
    li = await tenant.add_agent(name="Li", capacity=3)
    zhao = await tenant.add_agent(name="Zhao", capacity=3)
    cli, czhao = await tenant.signed_in(li), await tenant.signed_in(zhao)
    # One customer, two tickets (the first was made by hand for Zhao while the chat went to Li).
    chat = await desk.writes("my parcel is lost", name="Wang Fang")
    chat_ticket = await desk.routed(chat.ticket_id)
    made = (await desk.client.api("POST", "/api/v1/tickets", {
        "customer_id": chat.customer_id, "channel": "webchat", "text": "We called you about the parcel",
        "assignee_id": zhao.id if chat_ticket["assignee_id"] == li.id else li.id, "tags": ["phone"]}))["ticket"]
    await desk.writes("here is the tracking number", visitor_id=chat.visitor_id)
    await desk.assert_loads()
    kept, other = chat.ticket_id, made["id"]
    before = sorted(await desk.messages(kept) + await desk.messages(other))
    other_agent = made["assignee_id"]

    merged = await desk.client.api("POST", f"/api/v1/tickets/{kept}/merge", {"other_ticket_id": other})
    assert merged["moved_message_ids"] == sorted(merged["moved_message_ids"])
    after = await desk.messages(kept)
    assert set(before) <= set(after) and len(after) == len(before) + 1  # + the note saying so
    detail = await desk.client.api("GET", f"/api/v1/tickets/{kept}")
    times = [m["created_at"] for m in detail["messages"]]
    assert times == sorted(times)  # in the order they were written
    assert "phone" in detail["ticket"]["tags"]
    gone = await desk.client.api("GET", f"/api/v1/tickets/{other}")
    assert gone["ticket"]["status"] == "closed" and gone["ticket"]["merged_into_id"] == kept
    assert [m["text"] for m in gone["messages"]] == [f"Merged into ticket #{kept}."]
    await desk.assert_loads()
    # The other ticket's agent hears it closed; the kept ticket's agent hears what came in.
    watcher = czhao if other_agent == zhao.id else cli
    closed = await watcher.wait_event(lambda e: e["kind"] == "ticket.updated" and e["ticket_id"] == other)
    assert closed["changes"]["merged_into_id"] == {"from": None, "to": kept}
    got = await desk.client.wait_event(lambda e: e["kind"] == "ticket.updated" and e["ticket_id"] == kept
                                       and "merged_from" in e["changes"])
    assert got["changes"]["merged_from"]["ticket_id"] == other
    # The customer's next message joins the kept ticket, and a reply there reaches the widget once.
    more = await desk.writes("any news?", visitor_id=chat.visitor_id)
    assert more.ticket_id == kept
    for coro, code in ((desk.client.api("POST", f"/api/v1/tickets/{kept}/merge", {"other_ticket_id": other}),
                        "ticket_merged"),
                       (desk.client.api("POST", f"/api/v1/tickets/{other}/merge", {"other_ticket_id": kept}),
                        "ticket_merged"),
                       (desk.client.api("POST", f"/api/v1/tickets/{kept}/merge", {"other_ticket_id": kept}),
                        "same_ticket")):
        assert (await _error(coro)).code == code


async def test_merge_refusals(tenant: TenantInfo, desk: Desk) -> None:  # noqa: F811
    li = await tenant.add_agent(name="Li")
    cli = await tenant.signed_in(li)
    a = await desk.writes("customer one")
    b = await desk.writes("customer two")
    await desk.routed(a.ticket_id)
    await desk.routed(b.ticket_id)
    err = await _error(desk.client.api("POST", f"/api/v1/tickets/{a.ticket_id}/merge",
                                       {"other_ticket_id": b.ticket_id}))
    assert (err.status, err.code) == (409, "different_customers")
    # An agent merges only tickets they may see: another's is not found, as a missing one is.
    mine = (await desk.client.api("POST", "/api/v1/tickets", {"customer_id": a.customer_id, "text": "note",
                                                              "assignee_id": li.id}))["ticket"]
    zhao = await tenant.add_agent(name="Zhao")
    theirs = (await desk.client.api("POST", "/api/v1/tickets", {"customer_id": a.customer_id, "text": "note",
                                                                "assignee_id": zhao.id}))["ticket"]
    err = await _error(cli.api("POST", f"/api/v1/tickets/{mine['id']}/merge", {"other_ticket_id": theirs["id"]}))
    assert (err.status, err.code) == (404, "ticket_not_found")
    closed = (await desk.client.api("POST", "/api/v1/tickets", {"customer_id": a.customer_id, "text": "x"}))["ticket"]
    await desk.client.api("PATCH", f"/api/v1/tickets/{closed['id']}", {"status": "closed"})
    err = await _error(desk.client.api("POST", f"/api/v1/tickets/{mine['id']}/merge",
                                       {"other_ticket_id": closed["id"]}))
    assert (err.status, err.code) == (409, "ticket_closed")


async def test_racing_merges_leave_every_message_in_exactly_one_open_ticket(tenant: TenantInfo, desk: Desk) -> None:  # noqa: F811
    agents = [await tenant.add_agent(capacity=10) for _ in range(2)]
    for a in agents:
        await tenant.signed_in(a)
    first = await desk.writes("ticket zero", name="Racer")
    ids = [first.ticket_id]
    for i in range(3):
        t = (await desk.client.api("POST", "/api/v1/tickets", {
            "customer_id": first.customer_id, "channel": "webchat", "text": f"ticket {i + 1}",
            "assignee_id": agents[i % 2].id}))["ticket"]
        ids.append(t["id"])
    await desk.routed(first.ticket_id)
    messages = set()
    for t in ids:
        messages |= set(await desk.messages(t))
    # Every pair both ways at once: whatever wins, the rest are refused or apply to what is left.
    calls = [desk.client.api("POST", f"/api/v1/tickets/{x}/merge", {"other_ticket_id": y})
             for x in ids for y in ids if x != y]
    results = await asyncio.gather(*calls, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(e, HubError) and e.code in ("ticket_merged", "ticket_closed") for e in errors), errors
    assert len(results) - len(errors) == len(ids) - 1  # one ticket is left; each other was merged once
    open_ = [t for t in ids if (await desk.client.api("GET", f"/api/v1/tickets/{t}"))["ticket"]["merged_into_id"]
             is None]
    assert len(open_) == 1
    assert messages <= set(await desk.messages(open_[0]))
    await desk.assert_loads()


async def test_split_moves_a_message_into_a_new_routed_ticket(tenant: TenantInfo, desk: Desk) -> None:  # noqa: F811
    li = await tenant.add_agent(name="Li", capacity=5)
    cli = await tenant.signed_in(li)
    visitor = tenant.visitor()
    first = await desk.writes("my parcel is lost", name="Wang Fang")
    visitor.visitor_id = first.visitor_id
    await visitor.connect()
    assert (await desk.routed(first.ticket_id))["assignee_id"] == li.id
    reply = (await cli.api("POST", f"/api/v1/tickets/{first.ticket_id}/messages", {"text": "Looking into it"}))
    second = await desk.writes("also, I want to change my address", visitor_id=first.visitor_id)
    third = await desk.writes("to Beijing please", visitor_id=first.visitor_id)
    assert second.ticket_id == third.ticket_id == first.ticket_id
    await visitor.wait_message(lambda m: m["id"] == reply["message"]["id"])
    await desk.assert_loads()

    split = await cli.api("POST", f"/api/v1/tickets/{first.ticket_id}/messages/{second.message_id}/split",
                          {"following": True})
    new = split["ticket"]
    assert split["moved_message_ids"] == [second.message_id, third.message_id]
    assert new["customer_id"] == first.customer_id and new["channel"] == "webchat"
    assert new["subject"] == "also, I want to change my address"
    routed = await desk.routed(new["id"])
    assert routed["assignee_id"] == li.id  # routed as any new ticket (Li is the only one online)
    await desk.assert_loads()
    left = await desk.messages(first.ticket_id)
    assert first.message_id in left and reply["message"]["id"] in left and second.message_id not in left
    assert set(await desk.messages(new["id"])) >= {second.message_id, third.message_id}
    created = await cli.wait_event(lambda e: e["kind"] == "ticket.created" and e["ticket_id"] == new["id"])
    assert created["split_from"]["ticket_id"] == first.ticket_id
    # The reply sent before the split was delivered once and stays so; one on the new ticket arrives.
    assert await desk.outbox_rows(reply["message"]["id"]) == [("sent", 1)]
    answer = await cli.api("POST", f"/api/v1/tickets/{new['id']}/messages", {"text": "Address changed"})
    await visitor.wait_message(lambda m: m["id"] == answer["message"]["id"])
    assert sum(1 for f in visitor.frames if f.get("message", {}).get("id") == reply["message"]["id"]) <= 1
    # The customer writes on: the newest open ticket on their identity takes it.
    more = await desk.writes("thanks", visitor_id=first.visitor_id)
    assert more.ticket_id in (first.ticket_id, new["id"])

    # Refusals: the whole ticket, a message of another ticket, a message that does not exist.
    only = await desk.messages(new["id"])
    err = await _error(cli.api("POST", f"/api/v1/tickets/{new['id']}/messages/{only[0]}/split", {"following": True}))
    assert (err.status, err.code) == (409, "nothing_left")
    err = await _error(cli.api("POST", f"/api/v1/tickets/{new['id']}/messages/{first.message_id}/split", {}))
    assert (err.status, err.code) == (404, "message_not_found")
    one = await cli.api("POST", f"/api/v1/tickets/{new['id']}/messages/{third.message_id}/split",
                        {"subject": "Beijing"})
    assert one["moved_message_ids"] == [third.message_id] and one["ticket"]["subject"] == "Beijing"
    await desk.routed(one["ticket"]["id"])
    await desk.assert_loads()
