"""The XMPP channel end to end on a real prosody: a customer's slixmpp client writes to the tenant's
account, the agent answers over the agent gateway, the customer receives the answer; the same across
a prosody restart, and with an external component (XEP-0114)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from datetime import timedelta

import pytest
import sqlalchemy as sa

from connectors.xmpp.models import XmppAccount
from core.db import Database
from core.models import table_of, utcnow
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


async def test_prosody_restart_in_the_middle_loses_nothing_and_doubles_nothing(xmpp_server: Server,
                                                                              prosody: Prosody) -> None:
    desk = await make_desk(xmpp_server, prosody)
    customer = await Customer(prosody, "customer2").connect()
    support = prosody.jid("support")
    try:
        await desk.connected()
        customer.send(support, "First question", stanza_id="q-1")
        ticket_id = (await desk.ticket_with("First question"))["ticket"]["id"]
        await desk.admin.reply(ticket_id, "First answer")
        await customer.wait_for(lambda m: m["body"] == "First answer")
        await customer.close()

        # The server goes away; the agent answers meanwhile: the outbox keeps the reply and retries.
        await prosody.stop()
        await desk.admin.reply(ticket_id, "Answer written while the server was down")
        await prosody.start()

        # The hub reconnects by itself; the customer comes back and gets the answer once (from the
        # server's offline storage or live).
        await desk.connected(timeout=30)
        customer = await Customer(prosody, "customer2").connect()
        await customer.wait_for(lambda m: m["body"] == "Answer written while the server was down", timeout=40)
        # The customer's client re-sends its first message (as after a lost ack), and writes anew.
        customer.send(support, "First question", stanza_id="q-1")
        customer.send(support, "Second question", stanza_id="q-2")
        await desk.ticket_with("Second question")
        await desk.admin.reply(ticket_id, "Second answer")
        await customer.wait_for(lambda m: m["body"] == "Second answer")

        messages = [m["text"] for m in (await desk.ticket(ticket_id))["messages"]]
        assert messages == ["First question", "First answer", "Answer written while the server was down",
                            "Second question", "Second answer"]
        assert customer.bodies().count("Answer written while the server was down") == 1
        assert len(await desk.tickets()) == 1
        deliveries = [e for e in desk.admin.events if e["kind"] == "message.delivery"]
        assert all(e["delivery_state"] == "sent" for e in deliveries), deliveries
    finally:
        await customer.close()
        await desk.deactivate()
        await desk.tenant.close()


async def test_component_mode(xmpp_server: Server, prosody: Prosody) -> None:
    desk = await make_desk(xmpp_server, prosody, component=True)
    customer = await Customer(prosody, "customer3").connect()
    address = f"help@{prosody.component}"
    try:
        await desk.connected()
        customer.send(address, "Writing to the component", stanza_id="k-1")
        ticket_id = (await desk.ticket_with("Writing to the component"))["ticket"]["id"]
        await desk.admin.reply(ticket_id, "Answer from the component")
        got = await customer.wait_for(lambda m: m["body"] == "Answer from the component")
        # The answer comes from the address the customer wrote to.
        assert str(got["from"]).split("/")[0] == address
        event = await desk.admin.wait_event(lambda e: e["kind"] == "message.delivery", timeout=15)
        assert event["delivery_state"] == "sent"

    finally:
        await customer.close()
        await desk.deactivate()
        await desk.tenant.close()


async def test_a_customer_on_go_sendxmpp_gets_a_ticket(xmpp_server: Server, prosody: Prosody) -> None:
    """A real command-line client (Debian's go-sendxmpp, over direct TLS: it will not authenticate in
    plaintext) writes to the tenant's account."""
    if shutil.which("go-sendxmpp") is None:
        pytest.skip("needs go-sendxmpp (Debian's go-sendxmpp)")
    desk = await make_desk(xmpp_server, prosody)
    try:
        await desk.connected()
        proc = await asyncio.create_subprocess_exec(
            "go-sendxmpp", "-u", prosody.jid("customer4"), "-p", "pw", "-j", f"{prosody.host}:{prosody.tls_port}",
            "-t", "-n", prosody.jid("support"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate("My printer is on fire 🔥\n".encode()), 30)
        assert proc.returncode == 0, out
        found = await desk.ticket_with("My printer is on fire")
        assert found["ticket"]["customer"]["name"] in (None, prosody.jid("customer4")) or found["ticket"]["customer"]
        assert found["messages"][0]["text"].strip() == "My printer is on fire 🔥"
    finally:
        await desk.deactivate()
        await desk.tenant.close()


async def test_error_from_the_server_fails_the_reply_with_the_reason(xmpp_server: Server, prosody: Prosody) -> None:
    desk = await make_desk(xmpp_server, prosody)
    customer = await Customer(prosody, "customer5").connect()
    try:
        await desk.connected()
        customer.send(prosody.jid("support"), "Please delete my account", stanza_id="d-1")
        ticket_id = (await desk.ticket_with("Please delete my account"))["ticket"]["id"]
        await customer.close()
        # The account is gone from the server: prosody answers the reply with an error stanza.
        await asyncio.to_thread(subprocess.run, ["prosodyctl", "--config", str(prosody.config), "deluser",
                                                 prosody.jid("customer5")], check=True, capture_output=True)
        await desk.admin.reply(ticket_id, "Done, goodbye")
        event = await desk.admin.wait_event(lambda e: e["kind"] == "message.delivery", timeout=20)
        assert event["delivery_state"] == "failed", event
        assert event["error"]["code"] == "xmpp_error"
        assert "service-unavailable" in event["error"]["message"] or "not" in event["error"]["message"], event
    finally:
        await customer.close()
        await desk.deactivate()
        await desk.tenant.close()


async def test_typing_both_ways_and_presence(xmpp_server: Server, prosody: Prosody) -> None:
    desk = await make_desk(xmpp_server, prosody)
    customer = await Customer(prosody, "customer1").connect()
    support = prosody.jid("support")
    watcher = None
    try:
        await desk.connected()
        customer.send(support, "Are you there?", stanza_id="t-1")
        ticket_id = (await desk.ticket_with("Are you there?"))["ticket"]["id"]
        # The customer types: the agent's client hears of it live.
        customer.chat_state(support, "composing")
        frame = await desk.admin.wait_typing(lambda f: f["ticket_id"] == ticket_id and f["state"] == "composing")
        assert frame["by"] == {"type": "customer"} and frame["channel"] == "xmpp"
        # The agent types: the customer's client sees <composing/>.
        await desk.admin.typing(ticket_id, "composing")
        await customer.wait_state("composing")

        # Presence: available while an agent is online, away when none is.
        watcher = await Customer(prosody, "customer2").connect()
        await _subscribe(watcher, support)
        assert await _presence_of(watcher, support) in ("available", None)
        await desk.admin.action("presence", status="away")
        assert await eventually(lambda: _show_is(watcher, support, "away"), timeout=15)
        await desk.admin.action("presence", status="online")
        assert await eventually(lambda: _show_is(watcher, support, "available"), timeout=15)
    finally:
        await customer.close()
        if watcher is not None:
            await watcher.close()
        await desk.deactivate()
        await desk.tenant.close()


async def _subscribe(customer: Customer, jid: str) -> None:
    customer.xmpp.send_presence_subscription(pto=jid)
    await asyncio.sleep(0.5)


async def _presence_of(customer: Customer, jid: str) -> str | None:
    roster = customer.xmpp.client_roster.presence(jid)
    for pres in roster.values():
        return str(pres.get("show") or "available")
    return None


async def _show_is(customer: Customer, jid: str, show: str) -> bool:
    return await _presence_of(customer, jid) == show


async def test_one_failing_account_holds_up_nothing_and_a_dead_holders_lease_is_taken_over(
        xmpp_server: Server, prosody: Prosody) -> None:
    """Two tenants in one process: one account with a wrong password keeps failing (its error shown to
    its admin) while the other connects; an account whose lease a dead process still holds is
    connected once that lease runs out."""
    good = await make_desk(xmpp_server, prosody)
    bad_tenant_desk = await make_desk(xmpp_server, prosody, component=True)
    try:
        # The component's secret is wrong: it keeps failing with back-off, and says why.
        await bad_tenant_desk.admin.api("PATCH", f"/api/v1/xmpp/accounts/{bad_tenant_desk.account['id']}",
                                        {"secret": "wrong"})

        async def failing() -> dict[str, object] | None:
            acc = (await bad_tenant_desk.admin.api(
                "GET", f"/api/v1/xmpp/accounts/{bad_tenant_desk.account['id']}"))["account"]
            return acc if acc["status"]["error"] and not acc["status"]["connected"] else None

        failed = await eventually(failing, timeout=20)
        assert "wrong" not in str(failed)
        await good.connected()

        # A dead process's lease on the good account: nobody connects it until the lease runs out.
        await good.deactivate()
        db = Database(xmpp_server.settings.database_url)
        try:
            async with db.connection() as conn:
                await conn.execute(sa.update(table_of(XmppAccount)).where(XmppAccount.id == good.account["id"])
                                   .values(lease_owner="dead-host:1:x", connected=False,
                                           lease_until=utcnow() + timedelta(seconds=3)))
            await good.admin.api("PATCH", f"/api/v1/xmpp/accounts/{good.account['id']}", {"active": True})
            started = asyncio.get_running_loop().time()
            await good.connected(timeout=30)
            assert asyncio.get_running_loop().time() - started > 1.5
            async with db.read() as session:
                owner = (await session.execute(sa.select(XmppAccount.lease_owner)
                                               .where(XmppAccount.id == good.account["id"]))).scalar_one()
            assert owner != "dead-host:1:x"
        finally:
            await db.dispose()
    finally:
        await good.deactivate()
        await bad_tenant_desk.deactivate()
        await good.tenant.close()
        await bad_tenant_desk.tenant.close()
