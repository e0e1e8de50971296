"""Threading, end to end: a customer's mail becomes a ticket over the hub's SMTP receiver, an agent
answers over the agent socket, the reply reaches the relay (a loopback sink) threaded, and what
the customer (or someone else) sends next lands where it belongs.

The mails are the templates in tests/fixtures/email/threading/, one per case and named for it;
the test fills in the addresses and the Message-IDs of the conversation ({{...}})."""

# ruff: noqa: RUF001, RUF003 - Chinese mail is written with full-width punctuation; these are its texts.
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from email.message import Message
from typing import Any

import pytest

from admin_api.client import AgentClient, HubError
from tests.conftest import Server, TenantInfo, eventually, make_tenant
from tests.email.conftest import Mailbox, make_mailbox
from tests.email.support import FIXTURES, Sink

pytestmark = pytest.mark.asyncio


def template(name: str, **values: str) -> bytes:
    raw = (FIXTURES / "threading" / f"{name}.eml").read_bytes()
    for key, value in values.items():
        raw = raw.replace(f"{{{{{key}}}}}".encode(), value.encode())
    assert b"{{" not in raw, f"{name}: a placeholder was left unfilled"
    return raw


def msgid() -> str:
    return f"{uuid.uuid4().hex}@mail.customers.example.org"


@dataclass
class Conversation:
    """A customer's first mail (with a colleague on Cc), its ticket, and the agent's threaded reply."""

    mb: Mailbox
    agent: AgentClient
    customer: str
    colleague: str
    first_id: str
    ticket_id: int
    reply: Message  # as the relay got it

    @property
    def our_id(self) -> str:
        return str(self.reply["Message-ID"]).strip("<>")

    def values(self, **extra: str) -> dict[str, str]:
        return {"CUSTOMER": self.customer, "SUPPORT": self.mb.address, "CC": self.colleague,
                "TICKET": str(self.ticket_id), "MSGID": msgid(), "IN_REPLY_TO": self.our_id,
                "REFERENCES": f"<{self.first_id}> <{self.our_id}>", **extra}

    async def deliver(self, name: str, **extra: str) -> dict[str, str]:
        values = self.values(**extra)
        code, answer = await self.mb.deliver(template(name, **values), mail_from=self.customer)
        assert code == 250, (code, answer)
        return values

    async def messages(self, ticket_id: int | None = None) -> list[dict[str, Any]]:
        return list((await self.mb.ticket(ticket_id or self.ticket_id))["messages"])


async def start_conversation(mb: Mailbox, sink: Sink) -> Conversation:
    customer, colleague = f"wang.fang.{uuid.uuid4().hex[:6]}@customers.example.org", "colleague@customers.example.org"
    first_id = msgid()
    code, _ = await mb.deliver(template("new_mail", CUSTOMER=customer, SUPPORT=mb.address, CC=colleague,
                                        MSGID=first_id), mail_from=customer)
    assert code == 250
    ticket = await mb.ticket_with("never arrived. Can you check?")
    agent = await mb.tenant.signed_in(next(a for a in mb.tenant.agents if a.role == "admin"))
    await agent.reply(ticket["ticket"]["id"], "We are looking into it.")
    [reply] = await sink.wait_for(1)
    return Conversation(mb, agent, customer, colleague, first_id, ticket["ticket"]["id"], reply)


@pytest.fixture
async def conversation(mailbox: Mailbox, sink: Sink) -> Conversation:
    return await start_conversation(mailbox, sink)


async def test_mail_becomes_a_ticket_and_the_reply_is_threaded(conversation: Conversation) -> None:
    c = conversation
    detail = await c.mb.ticket(c.ticket_id)
    assert detail["ticket"]["channel"] == "email"
    assert detail["ticket"]["subject"] == "Order 2026-1201 never arrived"
    assert detail["ticket"]["customer"]["email"] == c.customer and detail["ticket"]["customer"]["name"] == "Wang Fang"
    reply = c.reply
    assert reply["From"].addresses[0].addr_spec == c.mb.address
    assert [a.addr_spec for a in reply["To"].addresses] == [c.customer]
    assert [a.addr_spec for a in reply["Cc"].addresses] == [c.colleague]  # the customer's Cc stays on
    assert reply["Subject"] == f"Re: Order 2026-1201 never arrived [#{c.ticket_id}]"
    assert reply["In-Reply-To"] == f"<{c.first_id}>" and reply["References"] == f"<{c.first_id}>"
    assert re.fullmatch(rf"<m\d+\.t{c.ticket_id}\.[a-z2-7]{{16}}@{re.escape(c.mb.tenant.domain)}>", reply["Message-ID"])
    assert reply.get_content_type() == "multipart/alternative"
    assert reply.get_body(("plain",)).get_content().strip() == "We are looking into it."
    assert "<p>We are looking into it.</p>" in reply.get_body(("html",)).get_content()
    # Delivered: the relay took it, and the message says so with the Message-ID it carried.
    sent = await eventually(lambda: _sent(c))
    assert sent["delivery_state"] == "sent"

    # The customer answers the reply: it joins the ticket, shown without the quoted history.
    values = await c.deliver("reply_in_reply_to")
    messages = await eventually(lambda: _grown(c, 3))
    assert messages[-1]["text"] == "Thanks, the tracking number works now."
    original = await c.mb.admin.api("GET", f"/api/v1/email/messages/{messages[-1]['id']}/original")
    assert "> We are looking into it." in original["original"]["text"]  # kept in full
    assert original["original"]["headers"]["message_id"] == f"<{values['MSGID']}>"
    assert len(await c.mb.tickets()) == 1


async def _sent(c: Conversation) -> dict[str, Any] | None:
    for m in await c.messages():
        if m["direction"] == "outbound" and m["delivery_state"] == "sent":
            return m
    return None


async def _grown(c: Conversation, count: int, ticket_id: int | None = None) -> list[dict[str, Any]] | None:
    messages = await c.messages(ticket_id)
    return messages if len(messages) >= count else None


async def _new_ticket_with(c: Conversation, text: str) -> dict[str, Any]:
    found = await c.mb.ticket_with(text)
    assert found["ticket"]["id"] != c.ticket_id
    return found


@pytest.mark.parametrize(("case", "text"), [
    # Outlook replaces In-Reply-To with the id of its own copy: the subject token still names the ticket.
    ("outlook_rewrites_in_reply_to", "Outlook rewrote my In-Reply-To, but this still belongs to my order."),
    # No token, another subject: References name the conversation's mail.
    ("references_subject_changed", "Can the parcel be left with my neighbour instead?"),
    # The customer forwards our answer back (no References at all): the token, and it is the customer.
    ("fwd_by_customer", "Forwarding your answer back with the photo of the label I mentioned."),
    # A colleague the customer copied answers: a participant of the ticket.
    ("cc_participant_reply", "I ordered it for her; the address is our office."),
    # QQ Mail in GB2312 (GBK bytes), "回复：" and its "原始邮件" block.
    ("reply_qq_chinese", "好的，谢谢！包裹已经收到了。"),
])
async def test_replies_join_their_ticket(conversation: Conversation, case: str, text: str) -> None:
    c = conversation
    await c.deliver(case)
    messages = await eventually(lambda: _grown(c, 3))
    assert messages[-1]["text"] == text
    assert len(await c.mb.tickets()) == 1


async def test_a_strangers_follow_up_opens_a_ticket_of_its_own(conversation: Conversation) -> None:
    """A stranger quoting the ticket's token and our Message-ID does not land in it (Zammad #5064)."""
    c = conversation
    await c.deliver("stranger_followup")
    theirs = await _new_ticket_with(c, "I am not the customer")
    assert theirs["ticket"]["customer"]["email"] == "stranger@elsewhere.example.net"
    assert len(await c.messages()) == 2  # the customer's ticket is as it was


async def test_an_agent_forwarding_a_customers_mail_opens_the_customers_ticket(conversation: Conversation) -> None:
    c = conversation
    agent_address = next(a.email for a in c.mb.tenant.agents if a.role == "admin")
    await c.deliver("fwd_by_agent", AGENT=agent_address)
    made = await _new_ticket_with(c, "This came to my own address")
    customer = made["ticket"]["customer"]
    assert customer["email"] == "lilei@customers.example.cn" and customer["name"] == "Li Lei"
    assert made["ticket"]["subject"] == "Broken kettle"


async def test_a_reply_to_a_closed_ticket_opens_a_follow_up(conversation: Conversation) -> None:
    c = conversation
    await c.agent.set_status(c.ticket_id, "closed")
    await c.deliver("reply_in_reply_to")
    follow_up = await _new_ticket_with(c, "Thanks, the tracking number works now.")
    assert follow_up["ticket"]["customer"]["email"] == c.customer


async def test_a_reply_to_a_solved_ticket_reopens_it(conversation: Conversation) -> None:
    c = conversation
    await c.agent.set_status(c.ticket_id, "solved")
    await c.deliver("reply_in_reply_to")
    await eventually(lambda: _grown(c, 3))
    assert (await c.mb.ticket(c.ticket_id))["ticket"]["status"] == "open"


async def test_a_new_mail_from_the_same_customer_is_a_new_ticket(conversation: Conversation) -> None:
    c = conversation
    await c.mb.write(c.customer, "Also: an invoice question", "Please send the invoice again.")
    made = await _new_ticket_with(c, "Please send the invoice again.")
    assert made["ticket"]["customer"]["id"] == (await c.mb.ticket(c.ticket_id))["ticket"]["customer"]["id"]


async def test_a_reply_to_a_ticket_the_agent_started_joins_it(conversation: Conversation) -> None:
    """Tickets started by hand thread too (Chatwoot #10791): by our Message-ID alone (no token)."""
    c = conversation
    customer_id = (await c.mb.ticket(c.ticket_id))["ticket"]["customer"]["id"]
    made = await c.mb.admin.api("POST", "/api/v1/tickets", {"customer_id": customer_id, "channel": "email",
                                                            "subject": "Your refund",
                                                            "text": "Shall we refund the order?"})
    started = made["ticket"]["id"]
    mails = await c.mb.sink.wait_for(2)
    ours = mails[-1]
    assert ours["Subject"] == f"Re: Your refund [#{started}]" and ours["In-Reply-To"] is None
    await c.deliver("reply_to_agent_started", IN_REPLY_TO=str(ours["Message-ID"]).strip("<>"))
    messages = await eventually(lambda: _grown(c, 2, started))
    assert messages[-1]["text"] == "Yes please, refund it to my card."
    assert len(await c.messages()) == 2


async def test_threading_never_crosses_tenants(server: Server, sink: Sink, conversation: Conversation) -> None:
    """A mail to another tenant naming this conversation's ticket, token and Message-IDs, from its
    own customer: a ticket of the other tenant, and nothing changes here."""
    other: TenantInfo = await make_tenant(conversation.mb.tenant.settings, server, name="Globex")
    try:
        theirs = await make_mailbox(other, sink)
        c = conversation
        raw = template("reply_in_reply_to", **{**c.values(), "SUPPORT": theirs.address})
        code, _ = await theirs.deliver(raw, mail_from=c.customer)
        assert code == 250
        made = await theirs.ticket_with("Thanks, the tracking number works now.")
        assert made["ticket"]["id"] != c.ticket_id
        assert len(await c.messages()) == 2
    finally:
        await other.close()


async def test_an_agent_writes_first_to_a_new_address_and_the_answer_threads(mailbox: Mailbox, sink: Sink) -> None:
    """New outbound mail: the customer and their address are made with the ticket."""
    made = await mailbox.admin.api("POST", "/api/v1/tickets", {
        "customer": {"name": "Zhao Lei", "email": "Zhao.Lei@New-Customer.example.org"}, "channel": "email",
        "subject": "Your warranty", "text": "Your warranty runs out next month."})
    ticket_id = made["ticket"]["id"]
    [ours] = await sink.wait_for(1)
    assert [a.addr_spec for a in ours["To"].addresses] == ["zhao.lei@new-customer.example.org"]
    assert ours["Subject"] == f"Re: Your warranty [#{ticket_id}]"
    raw = template("reply_to_agent_started", CUSTOMER="zhao.lei@new-customer.example.org", SUPPORT=mailbox.address,
                   MSGID=msgid(), IN_REPLY_TO=str(ours["Message-ID"]).strip("<>"))
    assert (await mailbox.deliver(raw, mail_from="zhao.lei@new-customer.example.org"))[0] == 250

    async def answered() -> list[dict[str, Any]] | None:
        messages = (await mailbox.ticket(ticket_id))["messages"]
        return messages if len(messages) == 2 else None

    messages = await eventually(answered)
    assert messages[-1]["text"] == "Yes please, refund it to my card."
    assert len(await mailbox.tickets()) == 1
    # The address is that customer's now: a new customer with it is refused, pointing at them.
    with pytest.raises(HubError) as refused:
        await mailbox.admin.api("POST", "/api/v1/tickets", {
            "customer": {"email": "zhao.lei@new-customer.example.org"}, "channel": "email", "text": "Hello again"})
    assert (refused.value.status, refused.value.code) == (409, "identity_taken")
    assert str(made["ticket"]["customer"]["id"]) not in refused.value.message  # nothing of the customer leaks


async def test_only_agents_who_may_see_the_ticket_read_the_original(conversation: Conversation) -> None:
    c = conversation  # the admin's reply took the ticket: another agent does not see it
    inbound = (await c.messages())[0]["id"]
    other = await c.mb.tenant.signed_in(await c.mb.tenant.add_agent(role="agent"), connect=False)
    with pytest.raises(HubError) as refused:
        await other.api("GET", f"/api/v1/email/messages/{inbound}/original")
    assert (refused.value.status, refused.value.code) == (404, "original_not_found")
    with pytest.raises(HubError):
        await other.api("GET", f"/api/v1/tickets/{c.ticket_id}")  # as the ticket itself
    mine = await c.agent.api("GET", f"/api/v1/email/messages/{inbound}/original")
    assert "my order 2026-1201 never arrived" in mine["original"]["text"]
