"""Batched ingest and the inbox that web-hook channels land their messages in.

- ``ingest_many`` stores a batch in one transaction with the same outcome as one message at a
  time: a sender's first message opens their ticket and the rest join it, in order; repeats
  inside the batch and messages stored before are recognised; a solved ticket reopens.
- The inbox: messages landed by another process (one that crashed before draining) are made into
  tickets by the running hub; a row that cannot be ingested is retried and then set aside as
  failed with its error, without holding up the rows behind it; the operator's CLI shows and
  retries failed rows.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from sqlalchemy import insert, select

from channelhub.app import build_hub
from core import inbox
from core.channels import Attachment, InboundMessage
from core.db import Database
from core.ingest import ingest_many
from core.models import InboxItem, InboxState, Message, Ticket, utcnow
from tests.conftest import Server, TenantInfo, eventually
from tests.test_cli import run
from web.http import HUB


def _msg(tenant: TenantInfo, sender: str, text: str, cmid: str | None = None, **extra: Any) -> InboundMessage:
    return InboundMessage(tenant_id=tenant.id, channel="batchtest", external_id=sender, text=text,
                          channel_message_id=cmid or uuid.uuid4().hex, **extra)


async def _tickets(settings: Any, tenant_id: int) -> dict[int, list[str]]:
    """Each ticket of the tenant with its inbound messages' texts, in order."""
    db = Database(settings.database_url)
    try:
        async with db.read(tenant_id) as session:
            rows = (await session.execute(
                select(Ticket.id, Message.body).join(Message, Message.ticket_id == Ticket.id)
                .where(Message.direction == "inbound").order_by(Message.id))).all()
    finally:
        await db.dispose()
    out: dict[int, list[str]] = {}
    for ticket_id, body in rows:
        out.setdefault(ticket_id, []).append(body)
    return out


async def test_a_batch_opens_one_ticket_per_sender_and_keeps_their_order(
    server: Server, tenant: TenantInfo, settings: Any,
) -> None:
    admin = await tenant.signed_in(await tenant.add_agent(role="admin"))
    hub = server.app[HUB]
    before = await ingest_many(hub, [_msg(tenant, "carol", "an earlier question", "c-0")])
    batch = [
        _msg(tenant, "alice", "hello", "a-1", customer_name="Alice"),
        _msg(tenant, "bob", "my order is late", "b-1"),
        _msg(tenant, "alice", "are you there?", "a-2",
             attachments=(Attachment("photo.jpg", "image/jpeg", "https://example.com/p.jpg", 12),)),
        _msg(tenant, "alice", "hello", "a-1"),  # a retry inside the batch
        _msg(tenant, "carol", "an earlier question", "c-0"),  # stored before
        _msg(tenant, "carol", "one more thing", "c-1"),
        _msg(tenant, "alice", "order 1234", "a-3"),
    ]
    results = await ingest_many(hub, batch)

    assert [(r.duplicate, r.created_ticket) for r in results] == [
        (False, True), (False, True), (False, False), (True, False), (True, False), (False, False), (False, False)]
    alice, bob, carol = results[0].ticket["id"], results[1].ticket["id"], before[0].ticket["id"]
    assert len({alice, bob, carol}) == 3
    assert results[3].message["id"] == results[0].message["id"]
    assert results[4].message["id"] == before[0].message["id"]
    assert results[2].message["attachments"] == [
        {"name": "photo.jpg", "content_type": "image/jpeg", "url": "https://example.com/p.jpg", "size": 12}]
    assert results[0].ticket["customer"]["name"] == "Alice"
    assert await _tickets(settings, tenant.id) == {
        carol: ["an earlier question", "one more thing"],
        alice: ["hello", "are you there?", "order 1234"],
        bob: ["my order is late"],
    }
    # Live, as one message at a time would be: two new tickets, five new messages, in order.
    created = await admin.wait_event(lambda e: e["kind"] == "message.created" and e["message"]["text"] == "order 1234")
    kinds = [(e["kind"], e.get("message", {}).get("text")) for e in admin.events
             if e["kind"] in ("ticket.created", "message.created") and e["id"] <= created["id"]]
    assert kinds[-7:] == [("ticket.created", None), ("message.created", "hello"), ("ticket.created", None),
                          ("message.created", "my order is late"), ("message.created", "are you there?"),
                          ("message.created", "one more thing"), ("message.created", "order 1234")]


async def test_a_solved_ticket_reopens_and_a_closed_one_gives_way_to_a_new_ticket(
    server: Server, tenant: TenantInfo,
) -> None:
    admin = await tenant.signed_in(await tenant.add_agent(role="admin"), connect=False)
    hub = server.app[HUB]
    [solved, closed] = await ingest_many(hub, [_msg(tenant, "dan", "first"), _msg(tenant, "erin", "first")])
    await admin.api("PATCH", f"/api/v1/tickets/{solved.ticket['id']}", {"status": "solved"})
    await admin.api("PATCH", f"/api/v1/tickets/{closed.ticket['id']}", {"status": "closed"})

    again = await ingest_many(hub, [_msg(tenant, "dan", "it broke again"), _msg(tenant, "erin", "new problem")])
    assert again[0].ticket["id"] == solved.ticket["id"] and not again[0].created_ticket
    assert again[0].ticket["status"] == "open" and again[0].ticket["reopen_count"] == 1
    assert again[1].ticket["id"] != closed.ticket["id"] and again[1].created_ticket
    assert again[1].ticket["status"] == "new"


async def test_what_another_process_landed_is_drained_by_the_running_hub(
    server: Server, tenant: TenantInfo, settings: Any,
) -> None:
    # A hub that is not serving lands directly and never drains: a process that died right after
    # answering the web-hook.
    gone = build_hub(replace(settings, inbox_drain=False))
    try:
        landed = await gone.inbox.accept([_msg(tenant, "frank", "from a process that died", "f-1"),
                                          _msg(tenant, "frank", "from a process that died", "f-1")])
        assert landed == [True, False]
        # Sent again: refused while the row waits, or (when the running hub drained it meanwhile,
        # which a loaded machine makes likely) landed again and then stored once all the same.
        await gone.inbox.accept([_msg(tenant, "frank", "from a process that died", "f-1")])
    finally:
        await gone.close()

    async def stored() -> dict[int, list[str]]:
        return await _tickets(settings, tenant.id)

    assert list((await eventually(stored)).values()) == [["from a process that died"]]


async def test_a_row_that_cannot_be_ingested_is_set_aside_without_holding_up_the_rest(
    server: Server, tenant: TenantInfo, settings: Any,
) -> None:
    db = Database(settings.database_url)
    now = utcnow()
    try:
        async with db.session() as session:
            # A row whose payload lost its text (written by a broken release, say): it can never be
            # ingested. It is one attempt short of being set aside.
            await session.execute(insert(InboxItem).values(
                tenant_id=tenant.id, channel="batchtest", channel_message_id="broken-1", external_id="gina",
                payload={}, received_at=now, next_attempt_at=now,
                state=InboxState.PENDING, attempts=inbox.MAX_ATTEMPTS - 1))
        good = [_msg(tenant, "gina", f"fine {n}", f"g-{n}") for n in range(3)]
        await server.app[HUB].inbox.accept(good)

        async def set_aside() -> list[dict[str, Any]]:
            return [r for r in await inbox.failed(db) if r["channel_message_id"] == "broken-1"]

        [row] = await eventually(set_aside)
        assert row["attempts"] == inbox.MAX_ATTEMPTS
        assert "KeyError" in row["last_error"]

        async def drained() -> bool:
            return list((await _tickets(settings, tenant.id)).values()) == [["fine 0", "fine 1", "fine 2"]]

        await eventually(drained)

        # The operator sees it, and can put it back in line once the cause is mended.
        shown = run(settings, "inbox")
        assert shown.returncode == 0, shown.stderr
        assert "broken-1" in shown.stdout and "KeyError" in shown.stdout
        async with db.session() as session:
            item = (await session.execute(
                select(InboxItem).where(InboxItem.channel_message_id == "broken-1"))).scalar_one()
            item.payload = {**item.payload, "text": "mended"}
        retried = run(settings, "inbox", "--retry-failed")
        assert retried.returncode == 0, retried.stderr
        assert "put back in line" in retried.stdout

        async def mended() -> bool:
            return ["fine 0", "fine 1", "fine 2", "mended"] in (await _tickets(settings, tenant.id)).values()

        await eventually(mended)
    finally:
        await db.dispose()


async def test_bad_messages_are_refused_before_they_reach_the_inbox(server: Server, tenant: TenantInfo) -> None:
    from core.errors import InvalidInput, TooLarge

    accept = server.app[HUB].inbox.accept
    for bad, error in (
        (_msg(tenant, "hal", "x" * (server.settings.max_message_bytes + 1)), TooLarge),
        (_msg(tenant, "hal", "nul \x00 inside"), InvalidInput),
        (_msg(tenant, "", "no sender"), InvalidInput),
        (_msg(tenant, "h" * 300, "sender id too long"), InvalidInput),
    ):
        try:
            await accept([_msg(tenant, "hal", "fine"), bad])
        except error:
            pass
        else:
            raise AssertionError(f"{bad!r} was accepted")
    db = Database(server.settings.database_url)
    try:
        async with db.read(tenant.id) as session:
            assert (await session.execute(select(InboxItem.id))).first() is None
    finally:
        await db.dispose()
