"""Agents' actions can be retried safely (issue #9, defect 6), and a web chat reply reaches the
visitor once however often delivery publishes it (defect 7).

A reply, note or hand-made ticket carries the agent client's id: a retry with the same one, over
the socket or HTTP, on a new socket or another process, returns the first result and stores
nothing twice."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from admin_api.client import AgentClient, HubError, VisitorClient
from core.db import Database
from core.models import DeliveryState, Message, OutboxItem, utcnow
from tests.conftest import TenantInfo, eventually, start_server


async def _conversation(tenant: TenantInfo, text: str) -> tuple[AgentClient, VisitorClient, int]:
    """A customer writes on web chat; the (only) agent gets the ticket."""
    agent = await tenant.signed_in(await tenant.add_agent())
    visitor = tenant.visitor()
    await visitor.connect()
    cid = await visitor.send(text)
    await visitor.wait_frame(lambda f: f.get("type") == "ack" and f["client_id"] == cid)
    event = await agent.wait_event(lambda e: e["kind"] == "ticket.assigned" and e["ticket"]["subject"] == text)
    return agent, visitor, event["ticket_id"]


async def _messages(agent: AgentClient, ticket_id: int, text: str) -> list[dict[str, Any]]:
    ticket = await agent.api("GET", f"/api/v1/tickets/{ticket_id}")
    return [m for m in ticket["messages"] if m["text"] == text]


def _stable(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k not in ("delivery_state", "sent_at", "channel_message_id")}


def _frames_of(visitor: VisitorClient, message_id: int) -> list[dict[str, Any]]:
    return [f for f in visitor.frames if f.get("type") == "message" and f["message"]["id"] == message_id]


async def test_a_retried_reply_on_the_socket_is_stored_once(tenant: TenantInfo) -> None:
    agent, visitor, ticket_id = await _conversation(tenant, "Where is my parcel?")
    cid = f"reply-{uuid.uuid4().hex[:8]}"
    first = await agent.reply(ticket_id, "It left the warehouse today", client_id=cid)
    # The same reply again, as a client that never saw the result would send it.
    again = await agent.action("reply", ticket_id=ticket_id, text="It left the warehouse today", client_id=cid)
    assert again["message"]["id"] == first["id"]
    # And on a new socket, as after the first one died.
    await agent.reconnect()
    after = await agent.reply(ticket_id, "It left the warehouse today", client_id=cid)
    assert after["id"] == first["id"]
    assert [m["id"] for m in await _messages(agent, ticket_id, "It left the warehouse today")] == [first["id"]]

    # A note works the same way; a client id used for a reply cannot be reused for a note.
    note = await agent.note(ticket_id, "customer is worried", client_id=f"{cid}-note")
    assert (await agent.note(ticket_id, "customer is worried", client_id=f"{cid}-note"))["id"] == note["id"]
    assert len(await _messages(agent, ticket_id, "customer is worried")) == 1
    with pytest.raises(HubError) as refused:
        await agent.note(ticket_id, "something else", client_id=cid)
    assert refused.value.code == "client_id_reused"

    # One message, so one delivery: the visitor gets it once.
    await visitor.wait_message(lambda m: m["id"] == first["id"])
    marker = await agent.reply(ticket_id, "marker")
    await visitor.wait_message(lambda m: m["id"] == marker["id"])
    assert len(_frames_of(visitor, first["id"])) == 1


async def test_a_reply_sent_on_a_socket_that_died_is_stored_once(tenant: TenantInfo) -> None:
    agent, _visitor, ticket_id = await _conversation(tenant, "Hello?")
    cid = f"lost-{uuid.uuid4().hex[:8]}"
    # The reply goes out and the socket dies before its result can come back.
    await agent.send_frame({"type": "reply", "ref": "lost", "ticket_id": ticket_id, "text": "Hi there",
                            "client_id": cid})
    await agent.disconnect()
    # The client cannot tell whether it was stored: it retries on a new socket.
    retried = await agent.reply(ticket_id, "Hi there", client_id=cid, retries=2)

    async def stored() -> list[dict[str, Any]]:
        return await _messages(agent, ticket_id, "Hi there")

    assert [m["id"] for m in await eventually(stored)] == [retried["id"]]
    # Once more for good measure, over HTTP: the first result, still one message.
    again = await agent.api("POST", f"/api/v1/tickets/{ticket_id}/messages", {"text": "Hi there", "client_id": cid})
    assert again["message"]["id"] == retried["id"]
    assert len(await stored()) == 1


async def test_retried_http_messages_and_tickets_are_stored_once(tenant: TenantInfo, settings: Any) -> None:
    agent, _visitor, ticket_id = await _conversation(tenant, "Can I return it?")
    cid = f"http-{uuid.uuid4().hex[:8]}"
    path = f"/api/v1/tickets/{ticket_id}/messages"
    first = await agent.api("POST", path, {"text": "Yes, within 30 days", "client_id": cid})
    again = await agent.api("POST", path, {"text": "Yes, within 30 days", "client_id": cid})
    # The first message, as it is now (its delivery may have moved on since).
    assert _stable(again["message"]) == _stable(first["message"])
    note = await agent.api("POST", path, {"kind": "note", "text": "checked policy", "client_id": f"{cid}-n"})
    assert (await agent.api("POST", path, {"kind": "note", "text": "checked policy",
                                           "client_id": f"{cid}-n"}))["message"]["id"] == note["message"]["id"]
    assert len(await _messages(agent, ticket_id, "Yes, within 30 days")) == 1
    assert len(await _messages(agent, ticket_id, "checked policy")) == 1
    # The same id over the socket answers with what HTTP stored.
    by_socket = await agent.reply(ticket_id, "Yes, within 30 days", client_id=cid)
    assert by_socket["id"] == first["message"]["id"]

    # Retries racing each other (a client that gave up too soon): still one message.
    racing = {"text": "Racing retries", "client_id": f"{cid}-race"}
    answers = await asyncio.gather(*(agent.api("POST", path, racing) for _ in range(5)))
    assert len({a["message"]["id"] for a in answers}) == 1
    assert len(await _messages(agent, ticket_id, "Racing retries")) == 1

    # A ticket made by hand, retried: the first ticket, and only one.
    body = {"text": "Called about an invoice", "customer": {"name": "Wu Fang"}, "client_id": f"{cid}-t"}
    made = await agent.api("POST", "/api/v1/tickets", body)
    assert (await agent.api("POST", "/api/v1/tickets", body))["ticket"]["id"] == made["ticket"]["id"]
    mine = await agent.api("GET", "/api/v1/tickets")
    assert [t["id"] for t in mine["tickets"] if t["subject"] == "Called about an invoice"] == [made["ticket"]["id"]]

    # Another process (a second server on the same database) gives the same first result.
    other = await start_server(settings)
    try:
        remote = tenant.agent_client(other)
        remote.token = agent.token
        replayed = await remote.api("POST", path, {"text": "Yes, within 30 days", "client_id": cid})
        assert replayed["message"]["id"] == first["message"]["id"]
        await remote.connect()
        assert (await remote.reply(ticket_id, "Yes, within 30 days", client_id=cid))["id"] == first["message"]["id"]
        await remote.disconnect()
    finally:
        await other.runner.cleanup()
    assert len(await _messages(agent, ticket_id, "Yes, within 30 days")) == 1


async def test_bad_client_ids_are_refused(tenant: TenantInfo) -> None:
    agent, _visitor, ticket_id = await _conversation(tenant, "bad ids")
    for bad in ("has space", "x" * 101, "", 5):
        with pytest.raises(HubError) as refused:
            await agent.action("reply", ticket_id=ticket_id, text="hi", client_id=bad)
        assert refused.value.code == "invalid_client_id", bad
        with pytest.raises(HubError) as refused:
            await agent.api("POST", f"/api/v1/tickets/{ticket_id}/messages", {"text": "hi", "client_id": bad})
        assert refused.value.status == 422 and refused.value.code == "validation_error", bad
    assert await _messages(agent, ticket_id, "hi") == []


async def crash_after_publishing(settings: Any, tenant_id: int, message_id: int) -> None:
    """What a deliverer killed between publishing a reply and recording it leaves behind: the row
    still claimed, the claim run out (the sweeper delivers it again)."""
    db = Database(settings.database_url)
    try:
        async with db.session(tenant_id) as session:
            await session.execute(
                update(OutboxItem).where(OutboxItem.message_id == message_id).values(
                    state=DeliveryState.SENDING, locked_until=utcnow() - timedelta(seconds=5)))
    finally:
        await db.dispose()


async def redelivered(settings: Any, tenant_id: int, message_id: int) -> bool:
    db = Database(settings.database_url)
    try:
        async with db.read(tenant_id) as session:
            row = (await session.execute(select(OutboxItem).where(OutboxItem.message_id == message_id))).scalar_one()
            message = (await session.execute(select(Message).where(Message.id == message_id))).scalar_one()
            return row.state == DeliveryState.SENT and row.attempts == 2 and message.delivery_state == "sent"
    finally:
        await db.dispose()


async def test_a_reply_delivered_again_after_a_crash_reaches_the_socket_once(tenant: TenantInfo,
                                                                             settings: Any) -> None:
    agent, visitor, ticket_id = await _conversation(tenant, "Is it shipped?")
    reply = await agent.reply(ticket_id, "Yes, this morning")
    await agent.wait_event(lambda e: e["kind"] == "message.delivery" and e["message_id"] == reply["id"])
    await visitor.wait_message(lambda m: m["id"] == reply["id"])

    await crash_after_publishing(settings, tenant.id, reply["id"])

    async def again() -> bool:
        return await redelivered(settings, tenant.id, reply["id"])

    await eventually(again, timeout=20)
    # Frames on one socket keep their order: once the next reply is there, a second copy of the
    # first would have come before it.
    marker = await agent.reply(ticket_id, "marker")
    await visitor.wait_message(lambda m: m["id"] == marker["id"])
    assert len(_frames_of(visitor, reply["id"])) == 1, visitor.frames
