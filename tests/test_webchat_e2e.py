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
    assert created["ticket"]["customer"]["name"] == "Wang Fang"
    ticket_id = created["ticket_id"]
    assigned = await client.wait_event(lambda e: e["kind"] == "ticket.assigned" and e["ticket_id"] == ticket_id)
    assert assigned["ticket"]["assignee_id"] == agent.id

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


async def test_reconnecting_customer_gets_what_they_missed(tenant: TenantInfo) -> None:
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    visitor = tenant.visitor()
    await visitor.connect()
    cid = await visitor.send("hello?")
    await visitor.wait_frame(lambda f: f.get("type") == "ack" and f["client_id"] == cid)
    created = await client.wait_event(lambda e: e["kind"] == "message.created")
    seen = visitor.since

    await visitor.disconnect()
    await client.reply(created["ticket_id"], "missed answer 1")
    await client.note(created["ticket_id"], "internal: customers never see this")
    await client.reply(created["ticket_id"], "missed answer 2")
    await client.wait_event(lambda e: e["kind"] == "message.delivery" and e["delivery_state"] == "sent")

    welcome = await visitor.connect()  # same visitor id, since = highest id seen
    texts = [m["text"] for m in welcome["messages"]]
    assert texts == ["missed answer 1", "missed answer 2"]
    assert all(m["id"] > seen for m in welcome["messages"])

    # A page reload keeps the visitor id but forgets "since": the whole history, never the note.
    reloaded = tenant.visitor(visitor_id=visitor.visitor_id)
    full = await reloaded.connect()
    assert [m["text"] for m in full["messages"]] == ["hello?", "missed answer 1", "missed answer 2"]


async def test_reconnecting_agent_gets_missed_events(tenant: TenantInfo) -> None:
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    visitor = tenant.visitor()
    await visitor.connect()
    await visitor.send("first")
    first = await client.wait_event(lambda e: e["kind"] == "message.created")

    await client.disconnect()
    await visitor.send("second, while the agent was away")
    await visitor.send("third")
    await visitor.wait_frame(lambda f: f.get("type") == "ack" and f["message"]["text"] == "third")

    before = client.last_event_id
    assert before is not None
    welcome = await client.connect()  # sends since = last event id it processed
    # The server may replay a few seconds before "since" too (events can commit out of id order);
    # the client de-duplicates by id.
    missed = [e["message"]["text"] for e in welcome["events"] if e["kind"] == "message.created" and e["id"] > before]
    assert missed == ["second, while the agent was away", "third"]
    texts = [e["message"]["text"] for e in client.events if e["kind"] == "message.created"]
    assert texts == ["first", "second, while the agent was away", "third"]  # each exactly once
    assert [t["id"] for t in welcome["tickets"]] == [first["ticket_id"]]


async def test_http_fallback_and_history(tenant: TenantInfo) -> None:
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    visitor = tenant.visitor()
    posted = await visitor.request("POST", "/webchat/messages", {"client_id": "c-1", "text": "via http"})
    vid = posted["visitor_id"]
    again = await visitor.request("POST", "/webchat/messages",
                                  {"visitor_id": vid, "client_id": "c-1", "text": "via http"})
    assert again["message"]["id"] == posted["message"]["id"]  # a retried POST is one message

    created = await client.wait_event(lambda e: e["kind"] == "message.created")
    await client.reply(created["ticket_id"], "got it")
    await client.wait_event(lambda e: e["kind"] == "message.delivery")
    history = await visitor.request("GET", f"/webchat/history?visitor_id={vid}")
    assert [(m["direction"], m["text"]) for m in history["messages"]] == [
        ("inbound", "via http"), ("outbound", "got it")]
    newer = await visitor.request("GET", f"/webchat/history?visitor_id={vid}&since={posted['message']['id']}")
    assert [m["text"] for m in newer["messages"]] == ["got it"]


async def test_second_tab_sees_the_conversation_live(tenant: TenantInfo) -> None:
    await tenant.add_agent()
    tab1 = tenant.visitor()
    await tab1.connect()
    tab2 = tenant.visitor(visitor_id=tab1.visitor_id)
    await tab2.connect()
    await tab1.send("typed in tab one")
    seen = await tab2.wait_message(lambda m: m["text"] == "typed in tab one")
    assert seen["direction"] == "inbound"


async def test_new_message_after_solve_reopens_and_after_close_opens_new_ticket(tenant: TenantInfo) -> None:
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    visitor = tenant.visitor()
    await visitor.connect()
    await visitor.send("one")
    first = await client.wait_event(lambda e: e["kind"] == "message.created")
    tid = first["ticket_id"]
    await client.reply(tid, "answer")
    await client.set_status(tid, "solved")
    await visitor.send("actually, one more thing")
    again = await client.wait_event(
        lambda e: e["kind"] == "message.created" and e["message"]["text"].startswith("actually"))
    assert again["ticket_id"] == tid
    assert again["ticket"]["status"] == "open" and again["ticket"]["reopen_count"] == 1

    await client.set_status(tid, "closed")
    await visitor.send("a new question")
    newer = await client.wait_event(
        lambda e: e["kind"] == "message.created" and e["message"]["text"] == "a new question")
    assert newer["ticket_id"] != tid


async def test_simultaneous_first_messages_open_one_ticket(tenant: TenantInfo) -> None:
    import asyncio
    import secrets

    sup = await tenant.signed_in(await tenant.add_agent(role="supervisor", capacity=0))
    visitor = tenant.visitor()
    vid = secrets.token_urlsafe(18)
    # A known customer whose last ticket is closed: the next messages open exactly one new ticket.
    await visitor.request("POST", "/webchat/messages", {"visitor_id": vid, "client_id": "old", "text": "old"})
    old = (await sup.api("GET", "/api/v1/tickets"))["tickets"][0]
    await sup.api("PATCH", f"/api/v1/tickets/{old['id']}", {"status": "closed"})
    posts = [visitor.request("POST", "/webchat/messages", {"visitor_id": vid, "client_id": f"c{i}", "text": f"m{i}"})
             for i in range(8)]
    # The same message retried at the same moment is still one message.
    posts += [visitor.request("POST", "/webchat/messages", {"visitor_id": vid, "client_id": "c0", "text": "m0"})
              for _ in range(3)]
    results = await asyncio.gather(*posts)
    assert len({r["message"]["id"] for r in results}) == 8
    tickets = (await sup.api("GET", "/api/v1/tickets?status=new,open"))["tickets"]
    assert len(tickets) == 1
    detail = await sup.api("GET", f"/api/v1/tickets/{tickets[0]['id']}")
    assert sorted(m["text"] for m in detail["messages"]) == [f"m{i}" for i in range(8)]
