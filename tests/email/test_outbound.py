"""Replies leaving through the tenant's relay (a loopback aiosmtpd sink): the agent's files go
along, a 4xx is retried, a 5xx fails the reply with the relay's words shown to the agent, a bounce
that comes back later marks the reply failed, and plus addressing threads through Reply-To."""

from __future__ import annotations

from typing import Any

from tests.conftest import eventually
from tests.email.conftest import Mailbox, make_mailbox
from tests.email.support import Sink, fixture, mail, new_message_id


async def _ticket(mb: Mailbox, text: str = "Please help") -> int:
    await mb.write("customer@customers.example.org", "Help", text)
    return int((await mb.ticket_with(text))["ticket"]["id"])


async def _outbound(mb: Mailbox, ticket_id: int) -> list[dict[str, Any]]:
    return [m for m in (await mb.ticket(ticket_id))["messages"] if m["direction"] == "outbound"]


async def _delivery(mb: Mailbox, ticket_id: int, state: str) -> dict[str, Any] | None:
    found = [m for m in await _outbound(mb, ticket_id) if m["delivery_state"] == state]
    return found[-1] if found else None


async def test_the_agents_files_go_with_the_reply(mailbox: Mailbox, sink: Sink) -> None:
    ticket_id = await _ticket(mailbox)
    agent = await mailbox.tenant.signed_in(next(a for a in mailbox.tenant.agents if a.role == "admin"))
    upload = await agent.upload("价目表.pdf", b"%PDF-1.4 prices", "application/pdf")
    await agent.reply(ticket_id, "Our prices are attached.", attachments=[upload["id"]])
    [sent] = await sink.wait_for(1)
    [part] = list(sent.iter_attachments())
    assert part.get_filename() == "价目表.pdf" and part.get_content() == b"%PDF-1.4 prices"
    assert part.get_content_type() == "application/pdf"
    envelope = sink.received[0][0]
    assert envelope.mail_from == mailbox.address  # bounces come back to the support address
    assert envelope.rcpt_tos == ["customer@customers.example.org"]


async def test_a_relays_4xx_is_retried_and_its_5xx_fails_the_reply_with_its_words(mailbox: Mailbox,
                                                                                  sink: Sink) -> None:
    ticket_id = await _ticket(mailbox)
    agent = await mailbox.tenant.signed_in(next(a for a in mailbox.tenant.agents if a.role == "admin"))
    sink.answers = ["451 4.3.0 Try again later"]
    await agent.reply(ticket_id, "First answer")
    await sink.wait_for(1)  # taken on the second try
    assert await eventually(lambda: _delivery(mailbox, ticket_id, "sent"))
    sink.answers = ["550 5.7.1 Relaying denied for this sender"]
    await agent.reply(ticket_id, "Second answer")
    failed = await eventually(lambda: _delivery(mailbox, ticket_id, "failed"))
    assert failed["text"] == "Second answer"
    event = await agent.wait_event(lambda e: e["kind"] == "message.delivery" and e.get("delivery_state") == "failed")
    assert event["error"]["code"] == "relay_refused"
    assert "550 5.7.1 Relaying denied for this sender" in event["error"]["message"]
    assert len(sink.received) == 1


async def test_a_bounce_marks_the_reply_failed_with_the_reason(mailbox: Mailbox, sink: Sink) -> None:
    ticket_id = await _ticket(mailbox)
    agent = await mailbox.tenant.signed_in(next(a for a in mailbox.tenant.agents if a.role == "admin"))
    await agent.reply(ticket_id, "This will bounce")
    [sent] = await sink.wait_for(1)
    await eventually(lambda: _delivery(mailbox, ticket_id, "sent"))
    dsn = fixture("bounce_dsn.eml").replace(b"<ch-reply-77@acme.example.com>", str(sent["Message-ID"]).encode())
    dsn = dsn.replace(b"support@acme.example.com", mailbox.address.encode())
    code, answer = await mailbox.deliver(dsn, mail_from="")
    assert code == 250 and "bounce" in answer
    failed = await eventually(lambda: _delivery(mailbox, ticket_id, "failed"))
    assert failed["text"] == "This will bounce"
    event = await agent.wait_event(lambda e: e["kind"] == "message.delivery" and e.get("delivery_state") == "failed")
    assert event["error"] == {"code": "bounced", "message": "the mail bounced: 550 5.1.1 user unknown"}
    assert len(await mailbox.tickets()) == 1  # a bounce is no ticket


async def test_a_bounce_naming_another_tenants_reply_changes_nothing(mailbox: Mailbox, sink: Sink,
                                                                     other_tenant: Any) -> None:
    ticket_id = await _ticket(mailbox)
    agent = await mailbox.tenant.signed_in(next(a for a in mailbox.tenant.agents if a.role == "admin"))
    await agent.reply(ticket_id, "Delivered fine")
    [sent] = await sink.wait_for(1)
    await eventually(lambda: _delivery(mailbox, ticket_id, "sent"))
    theirs = await make_mailbox(other_tenant, sink)
    dsn = fixture("bounce_dsn.eml").replace(b"<ch-reply-77@acme.example.com>", str(sent["Message-ID"]).encode())
    code, _ = await theirs.deliver(dsn.replace(b"support@acme.example.com", theirs.address.encode()), mail_from="")
    assert code == 250
    assert (await _outbound(mailbox, ticket_id))[0]["delivery_state"] == "sent"


async def test_plus_addressing_threads_through_reply_to(mailbox: Mailbox, sink: Sink) -> None:
    await mailbox.admin.api("PATCH", f"/api/v1/email/mailboxes/{mailbox.info['id']}", {"plus_addressing": True})
    ticket_id = await _ticket(mailbox)
    agent = await mailbox.tenant.signed_in(next(a for a in mailbox.tenant.agents if a.role == "admin"))
    await agent.reply(ticket_id, "Reply to this address")
    [sent] = await sink.wait_for(1)
    reply_to = sent["Reply-To"].addresses[0].addr_spec
    local, _, domain = mailbox.address.partition("@")
    assert reply_to.startswith(f"{local}+t{ticket_id}.") and reply_to.endswith(f"@{domain}")
    # A client that drops every header but the address (no References, a new subject) still threads.
    raw = mail(sender="customer@customers.example.org", to=reply_to, subject="something else",
               text="Replying by address only", message_id=new_message_id())
    code, _ = await mailbox.deliver(raw, mail_from="customer@customers.example.org", rcpt=[reply_to])
    assert code == 250
    await eventually(lambda: _has(mailbox, ticket_id, "Replying by address only"))
    assert len(await mailbox.tickets()) == 1
    # A forged tag names nothing: a ticket of its own.
    forged = reply_to.replace(reply_to.split(".")[1].split("@")[0], "a" * 16)
    raw = mail(sender="customer@customers.example.org", to=forged, subject="forged", text="Forged tag")
    await mailbox.deliver(raw, mail_from="customer@customers.example.org", rcpt=[forged])
    assert (await mailbox.ticket_with("Forged tag"))["ticket"]["id"] != ticket_id


async def _has(mb: Mailbox, ticket_id: int, text: str) -> bool:
    return any(m["text"] == text for m in (await mb.ticket(ticket_id))["messages"])


async def test_a_mailbox_without_a_relay_fails_the_reply_clearly(mailbox: Mailbox) -> None:
    await mailbox.admin.api("PATCH", f"/api/v1/email/mailboxes/{mailbox.info['id']}", {"smtp": {"host": None}})
    ticket_id = await _ticket(mailbox)
    agent = await mailbox.tenant.signed_in(next(a for a in mailbox.tenant.agents if a.role == "admin"))
    await agent.reply(ticket_id, "Nowhere to send")
    event = await agent.wait_event(lambda e: e["kind"] == "message.delivery" and e.get("delivery_state") == "failed")
    assert event["error"]["code"] == "no_relay" and mailbox.address in event["error"]["message"]
