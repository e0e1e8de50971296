# ruff: noqa: RUF001  (Chinese punctuation and full-width letters are the point here)
"""Full-text search (GET /api/v1/search): Chinese and English, subjects, messages (notes too) and
customers; only the caller's tenant and only the tickets the caller may see; what a customer wrote
is found as soon as it is stored; pages go on without showing a ticket twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from tests.conftest import PASSWORD, Server, TenantInfo
from tests.support import Http, Reply, assert_error


@pytest.fixture
async def http(server: Server) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession() as session:
        yield Http(server.url, session)


async def _token(http: Http, t: TenantInfo, email: str) -> str:
    reply = await http("POST", "/api/v1/auth/login", host=t.domain, json_body={"email": email, "password": PASSWORD})
    assert reply.status == 200, reply
    return str(reply.body["token"])


async def _customer_writes(http: Http, t: TenantInfo, text: str, *, name: str | None = None,
                           email: str | None = None, visitor_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"client_id": uuid.uuid4().hex, "text": text}
    for key, value in (("name", name), ("email", email), ("visitor_id", visitor_id)):
        if value is not None:
            body[key] = value
    reply = await http("POST", "/webchat/messages", host=t.domain, json_body=body)
    assert reply.status == 201, reply
    return dict(reply.body)


async def _search(http: Http, t: TenantInfo, token: str, q: str, **params: Any) -> Reply:
    return await http("GET", "/api/v1/search?" + urlencode({"q": q, **params}), host=t.domain, token=token)


async def _found(http: Http, t: TenantInfo, token: str, q: str, **params: Any) -> list[dict[str, Any]]:
    reply = await _search(http, t, token, q, **params)
    assert reply.status == 200, reply
    return list(reply.body["results"])


def _marked(result: dict[str, Any]) -> list[str]:
    """The highlighted parts of a result's snippet (offsets in UTF-16 code units; these texts are BMP)."""
    text = result["snippet"]["text"]
    return [text[s:e] for s, e in result["snippet"]["highlights"]]


async def _ticket_of(http: Http, t: TenantInfo, token: str, text: str) -> int:
    results = await _found(http, t, token, text)
    assert results, text
    return int(results[0]["ticket_id"])


async def test_chinese_english_subjects_and_customers(http: Http, tenant: TenantInfo) -> None:
    boss = await tenant.add_agent(role="supervisor")
    token = await _token(http, tenant, boss.email)
    await _customer_writes(http, tenant, "你好，我的退款申请还没有处理，订单号 12345", name="王小明")
    await _customer_writes(http, tenant, "My REFUND request for the Blue Kettle, please", name="Alice Johnson")
    await _customer_writes(http, tenant, "退货流程是什么？", name="李雷")
    made = await http("POST", "/api/v1/tickets", host=tenant.domain, token=token, json_body={
        "customer": {"name": "Chen Jie", "email": "chen.jie@example.org"}, "subject": "Phone call: broken kettle lid",
        "text": "Customer called about the lid."})
    assert made.status == 201, made
    manual = made.body["ticket"]["id"]

    hits = await _found(http, tenant, token, "退款")
    assert len(hits) == 1 and hits[0]["matched"] == "message" and hits[0]["message_id"]
    assert _marked(hits[0]) == ["退款"]
    assert hits[0]["customer"]["name"] == "王小明" and hits[0]["status"] in ("new", "open")
    refund_ticket = hits[0]["ticket_id"]
    # Consecutive characters: the phrase of their bigrams, in this order only.
    assert [r["ticket_id"] for r in await _found(http, tenant, token, "退款申请")] == [refund_ticket]
    assert _marked((await _found(http, tenant, token, "退款申请"))[0]) == ["退款申请"]
    assert await _found(http, tenant, token, "申请退款") == []
    # One character: wherever it stands (退款, 退货), also last in a run (处理 → 理).
    assert len(await _found(http, tenant, token, "退")) == 2
    assert [r["ticket_id"] for r in await _found(http, tenant, token, "理")] == [refund_ticket]
    assert [r["ticket_id"] for r in await _found(http, tenant, token, "12345")] == [refund_ticket]

    # English: any case, full-width letters too; words, not stems.
    for q in ("refund", "Refund", "REFUND", "ｒｅｆｕｎｄ", "blue kettle"):
        hits = await _found(http, tenant, token, q)
        assert [h["customer"]["name"] for h in hits] == ["Alice Johnson"], q
    assert _marked((await _found(http, tenant, token, "refund"))[0]) == ["REFUND"]
    assert await _found(http, tenant, token, "refunds") == []
    # Words in one document, in any order: both are in the message.
    assert len(await _found(http, tenant, token, "kettle refund")) == 1

    # Subjects, and customers by name and e-mail.
    kettles = await _found(http, tenant, token, "kettle")
    assert {h["ticket_id"] for h in kettles} == {manual, kettles[-1]["ticket_id"]} and len(kettles) == 2
    lid = await _found(http, tenant, token, "lid")
    assert lid[0]["ticket_id"] == manual
    subject = next(h for h in await _found(http, tenant, token, "broken") if h["ticket_id"] == manual)
    assert subject["matched"] == "subject" and _marked(subject) == ["broken"]
    for q, field in (("王小明", "name"), ("小明", "name"), ("alice johnson", "name"),
                     ("chen.jie@example.org", "email"), ("chen jie", "name")):
        hits = await _found(http, tenant, token, q)
        assert hits and hits[0]["matched"] == "customer" and hits[0]["field"] == field, (q, hits)
        assert hits[0]["message_id"] is None
    assert (await _found(http, tenant, token, "chen.jie@example.org"))[0]["ticket_id"] == manual


async def test_notes_changes_and_renames_are_found(http: Http, tenant: TenantInfo) -> None:
    boss = await tenant.add_agent(role="supervisor")
    token = await _token(http, tenant, boss.email)
    written = await _customer_writes(http, tenant, "Where is parcel zebra?", name="Old Name")
    ticket_id = await _ticket_of(http, tenant, token, "zebra")
    note = await http("POST", f"/api/v1/tickets/{ticket_id}/messages", host=tenant.domain, token=token,
                      json_body={"kind": "note", "text": "内部备注：仓库已经发货"})
    assert note.status == 201, note
    hits = await _found(http, tenant, token, "仓库")
    assert hits[0]["ticket_id"] == ticket_id and hits[0]["message_id"] == note.body["message"]["id"]
    changed = await http("PATCH", f"/api/v1/tickets/{ticket_id}", host=tenant.domain, token=token,
                         json_body={"subject": "Lost parcel giraffe"})
    assert changed.status == 200, changed
    assert [h["matched"] for h in await _found(http, tenant, token, "giraffe")] == ["subject"]
    # The old subject (the first line of the message) is found no more as a subject.
    assert [h["matched"] for h in await _found(http, tenant, token, "zebra")] == ["message"]

    customer_id = (await http("GET", f"/api/v1/tickets/{ticket_id}", host=tenant.domain,
                              token=token)).body["ticket"]["customer_id"]
    renamed = await http("PATCH", f"/api/v1/customers/{customer_id}", host=tenant.domain, token=token,
                         json_body={"name": "张伟", "email": "zhang.wei@example.com"})
    assert renamed.status == 200, renamed
    assert (await _found(http, tenant, token, "张伟"))[0]["field"] == "name"
    assert (await _found(http, tenant, token, "zhang.wei@example.com"))[0]["field"] == "email"
    assert await _found(http, tenant, token, "old name") == []
    # The customer's identity (their web chat visitor id) is found too.
    hits = await _found(http, tenant, token, written["visitor_id"])
    assert hits[0]["ticket_id"] == ticket_id and hits[0]["field"] == "external_id"
    # A name the widget sends changes the customer (core.ingest): found by the new one.
    await _customer_writes(http, tenant, "and another thing", name="Wang Fang", visitor_id=written["visitor_id"])
    assert (await _found(http, tenant, token, "wang fang"))[0]["ticket_id"] == ticket_id


async def test_a_message_over_web_chat_is_found_once_stored(http: Http, tenant: TenantInfo) -> None:
    boss = await tenant.add_agent(role="admin")
    token = await _token(http, tenant, boss.email)
    visitor = tenant.visitor()
    await visitor.connect(name="Visitor")
    word = f"marker{uuid.uuid4().hex[:8]}"
    client_id = await visitor.send(f"我要退换 {word}")
    await visitor.wait_frame(lambda f: f.get("type") == "ack" and f.get("client_id") == client_id)
    # The ack follows the commit that stored the message and its search document: no waiting.
    hits = await _found(http, tenant, token, word)
    assert len(hits) == 1 and _marked(hits[0]) == [word]
    assert (await _found(http, tenant, token, "退换"))[0]["ticket_id"] == hits[0]["ticket_id"]


async def test_another_tenants_text_never_appears(http: Http, tenant: TenantInfo, other_tenant: TenantInfo) -> None:
    mine = await tenant.add_agent(role="owner")
    theirs = await other_tenant.add_agent(role="owner")
    my_token, their_token = await _token(http, tenant, mine.email), await _token(http, other_tenant, theirs.email)
    await _customer_writes(http, tenant, "共同的秘密词 sharedword from A", name="Shared Name")
    await _customer_writes(http, other_tenant, "共同的秘密词 sharedword from B", name="Shared Name")
    for q in ("sharedword", "秘密", "秘", "shared name", "from"):
        a = await _found(http, tenant, my_token, q)
        b = await _found(http, other_tenant, their_token, q)
        assert len(a) == 1 and len(b) == 1, q
        assert "from A" in a[0]["snippet"]["text"] or a[0]["matched"] == "customer"
        assert a[0]["ticket_id"] != b[0]["ticket_id"]
    assert (await _found(http, tenant, my_token, "sharedword"))[0]["snippet"]["text"].endswith("from A")
    # Another tenant's token on this domain gets nothing at all.
    assert_error(await _search(http, tenant, their_token, "sharedword"), 401, "invalid_token")


async def test_an_agent_finds_only_the_tickets_they_may_see(http: Http, tenant: TenantInfo) -> None:
    group = await tenant.add_group("Billing")
    other_group = await tenant.add_group("Sales")
    agent = await tenant.add_agent(group_ids=[group])
    colleague = await tenant.add_agent()
    boss = await tenant.add_agent(role="supervisor")
    agent_token, boss_token = await _token(http, tenant, agent.email), await _token(http, tenant, boss.email)

    async def ticket(**extra: Any) -> int:
        reply = await http("POST", "/api/v1/tickets", host=tenant.domain, token=boss_token, json_body={
            "customer": {"name": "Someone"}, "text": "keyword platypus here", **extra})
        assert reply.status == 201, reply
        return int(reply.body["ticket"]["id"])

    own = await ticket(assignee_id=agent.id)
    theirs = await ticket(assignee_id=colleague.id)
    in_my_queue = await ticket(group_id=group)
    in_other_queue = await ticket(group_id=other_group)
    seen = {h["ticket_id"] for h in await _found(http, tenant, agent_token, "platypus")}
    assert own in seen and in_my_queue in seen
    assert theirs not in seen and in_other_queue not in seen
    everything = {h["ticket_id"] for h in await _found(http, tenant, boss_token, "platypus")}
    assert {own, theirs, in_my_queue, in_other_queue} <= everything


async def test_pages_newest_first_each_ticket_once(http: Http, tenant: TenantInfo) -> None:
    boss = await tenant.add_agent(role="supervisor")
    token = await _token(http, tenant, boss.email)
    visitors = []
    for i in range(5):
        visitors.append((await _customer_writes(http, tenant, f"pagination wombat {i}"))["visitor_id"])
    # The first ticket matches again, newest of all: it comes first, once.
    await _customer_writes(http, tenant, "wombat again", visitor_id=visitors[0])
    seen: list[int] = []
    pages = 0
    before: int | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if before is not None:
            params["before"] = before
        reply = await _search(http, tenant, token, "wombat", **params)
        assert reply.status == 200, reply
        seen.extend(r["ticket_id"] for r in reply.body["results"])
        pages += 1
        before = reply.body["next_before"]
        if before is None:
            break
        assert pages < 10
    assert len(seen) == len(set(seen)) == 5
    first = await _found(http, tenant, token, "wombat")
    assert first[0]["snippet"]["text"] == "wombat again"
    assert [r["ticket_id"] for r in first] == seen
    assert [r["doc_id"] for r in first] == sorted((r["doc_id"] for r in first), reverse=True)


async def test_bad_search_queries(http: Http, tenant: TenantInfo) -> None:
    agent = await tenant.add_agent()
    token = await _token(http, tenant, agent.email)
    for query in ("", "q=", "q=%20%20", "q=%E3%80%82%EF%BC%81", "q=!!!", "q=" + "a" * 201,
                  "q=" + "+".join(["word"] * 40), "q=a&q=b", "q=a&limit=0", "q=a&limit=51", "q=a&limit=x",
                  "q=a&before=0", "q=a&before=-1", f"q=a&before={2**63}", "q=a&before=1&before=2"):
        reply = await http("GET", f"/api/v1/search?{query}", host=tenant.domain, token=token)
        assert_error(reply, 422, "invalid_query")
    assert_error(await http("GET", "/api/v1/search?q=a", host=tenant.domain), 401, "unauthorized")


async def test_search_follows_merges_and_splits(http: Http, tenant: TenantInfo) -> None:
    """Merged and split tickets, and merged customers, are found where they are now."""
    admin = await tenant.add_agent(role="admin")
    token = await _token(http, tenant, admin.email)

    async def call(method: str, path: str, body: Any = None) -> dict[str, Any]:
        reply = await http(method, path, host=tenant.domain, token=token,
                           **({"json_body": body} if body is not None else {}))
        assert reply.status in (200, 201), reply
        return dict(reply.body)

    kept = (await call("POST", "/api/v1/tickets", {"customer": {"name": "Zhang Wei"}, "text": "first ticket",
                                                   "subject": "first"}))["ticket"]
    other = (await call("POST", "/api/v1/tickets", {"customer_id": kept["customer_id"], "subject": "second",
                                                    "text": "快递丢失 kiwi-parcel"}))["ticket"]
    await call("POST", f"/api/v1/tickets/{kept['id']}/merge", {"other_ticket_id": other["id"]})
    [hit] = await _found(http, tenant, token, "kiwi-parcel")
    assert (hit["ticket_id"], hit["matched"]) == (kept["id"], "message"), hit
    split = await call("POST", f"/api/v1/tickets/{kept['id']}/messages/{hit['message_id']}/split", {})
    [hit] = await _found(http, tenant, token, "快递丢失")
    assert hit["ticket_id"] == split["ticket"]["id"] != kept["id"], hit
    # Customers: Bob merged into Zhang Wei; Bob's ticket is found by Zhang Wei's name.
    bobs = (await call("POST", "/api/v1/tickets", {"customer": {"name": "Bob Li"}, "text": "hello"}))["ticket"]
    await call("POST", f"/api/v1/customers/{kept['customer_id']}/merge", {"other_id": bobs["customer_id"]})
    found = {r["ticket_id"] for r in await _found(http, tenant, token, "Zhang Wei")}
    assert bobs["id"] in found, found
