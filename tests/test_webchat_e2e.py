"""End to end over real sockets: a customer writes in the widget's protocol, the assigned agent's
client gets it live, the agent answers, and the customer gets the answer."""

from __future__ import annotations

from tests.conftest import TenantInfo


async def test_customer_message_reaches_agent_and_reply_reaches_customer(tenant: TenantInfo) -> None:
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    visitor = tenant.visitor()
    welcome = await visitor.connect(name="Wang Fang")
    assert welcome["messages"] == []

    client_id = await visitor.send("Where is my order #1234?")
    ack = await visitor.wait_frame(lambda f: f.get("type") == "ack" and f["client_id"] == client_id)
    assert ack["message"]["text"] == "Where is my order #1234?"

    created = await client.wait_event(lambda e: e["kind"] == "message.created")
    assert created["message"]["text"] == "Where is my order #1234?"
    assert created["ticket"]["assignee_id"] == agent.id
    assert created["ticket"]["customer"]["name"] == "Wang Fang"
    ticket_id = created["ticket_id"]

    await client.reply(ticket_id, "It ships today.")
    answer = await visitor.wait_message(lambda m: m["direction"] == "outbound")
    assert answer["text"] == "It ships today."
    assert answer["author"] == {"name": agent.name}

    delivered = await client.wait_event(lambda e: e["kind"] == "message.delivery")
    assert delivered["delivery_state"] == "sent"

    detail = await client.api("GET", f"/api/v1/tickets/{ticket_id}")
    assert [m["direction"] for m in detail["messages"]] == ["inbound", "outbound"]
    assert detail["ticket"]["status"] == "open"
    assert detail["ticket"]["first_response_at"] is not None
