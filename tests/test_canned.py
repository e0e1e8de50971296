"""Faster answers (#13): canned replies and their placeholders, macros applied all at once or not at
all, and @mentions in notes that reach the agent mentioned."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from admin_api.client import HubError
from core.canned import render
from core.mentions import Person, find
from tests.conftest import TenantInfo
from tests.desk import Desk, desk  # noqa: F401  (desk: the fixture)


async def _error(coro: Any) -> HubError:
    with pytest.raises(HubError) as err:
        await coro
    return err.value


# --- canned replies --------------------------------------------------------------------------------
def test_placeholders_fill_with_fallbacks() -> None:
    values = {"customer.name": None, "customer.email": "w@example.org", "agent.name": "李雷", "ticket.id": 7,
              "ticket.subject": ""}
    assert render("Hi {{customer.name|there}}, {{ agent.name }} here about #{{ticket.id}}{{ticket.subject}}.",
                  values) == "Hi there, 李雷 here about #7."
    assert render("{{customer.name}}|{{customer.email|x}}|{{ customer.email | x }}", values) == \
        "|w@example.org|w@example.org"
    assert render("a {{ lone brace", values) == "a {{ lone brace"


async def test_canned_replies_scopes_search_and_rendering(tenant: TenantInfo, desk: Desk) -> None:  # noqa: F811
    li, zhao = await tenant.add_agent(name="李雷"), await tenant.add_agent(name="Zhao")
    cli, czhao = await tenant.signed_in(li, connect=False), await tenant.signed_in(zhao, connect=False)
    admin = desk.client
    shop = (await admin.api("POST", "/api/v1/canned-replies", {
        "scope": "tenant", "shortcut": "/Refund", "title": "Refund policy",
        "text": "Hello {{customer.name|there}}, refunds take 7 days. — {{agent.name}}"}))["canned_reply"]
    assert (shop["scope"], shop["shortcut"], shop["agent_id"]) == ("tenant", "refund", None)
    mine = (await cli.api("POST", "/api/v1/canned-replies", {
        "shortcut": "退款", "title": "我的退款回复",
        "text": "您好 {{customer.name}}\uff0c工单 #{{ticket.id}} 已收到。"}))["canned_reply"]
    assert mine["scope"] == "personal" and mine["agent_id"] == li.id
    # A personal shortcut may repeat the tenant's; twice in one scope is refused.
    same = (await cli.api("POST", "/api/v1/canned-replies", {"shortcut": "refund", "title": "Mine",
                                                              "text": "My own refund words"}))["canned_reply"]
    err = await _error(cli.api("POST", "/api/v1/canned-replies", {"shortcut": "REFUND", "title": "x", "text": "y"}))
    assert (err.status, err.code) == (409, "shortcut_taken")
    err = await _error(admin.api("POST", "/api/v1/canned-replies", {"scope": "tenant", "shortcut": "refund",
                                                                     "title": "x", "text": "y"}))
    assert (err.status, err.code) == (409, "shortcut_taken")
    # Only admins add, change and remove the tenant's; unknown placeholders are named.
    err = await _error(cli.api("POST", "/api/v1/canned-replies", {"scope": "tenant", "shortcut": "x", "title": "x",
                                                                   "text": "y"}))
    assert (err.status, err.code) == (403, "admin_only")
    err = await _error(cli.api("POST", "/api/v1/canned-replies", {"shortcut": "bad", "title": "x",
                                                                   "text": "Hi {{customer.phone}} {{order.id|?}}"}))
    assert (err.status, err.code) == (422, "unknown_placeholder")
    assert "{{customer.phone}}" in err.message and "{{order.id}}" in err.message
    err = await _error(cli.api("POST", "/api/v1/canned-replies", {"shortcut": "has space", "title": "x", "text": "y"}))
    assert err.code == "invalid_shortcut"
    assert (await _error(cli.api("PATCH", f"/api/v1/canned-replies/{shop['id']}", {"title": "x"}))).code == "admin_only"
    assert (await _error(cli.api("DELETE", f"/api/v1/canned-replies/{shop['id']}"))).code == "admin_only"
    # Another agent's personal replies do not exist for anyone else.
    for client in (czhao, admin):
        err = await _error(client.api("PATCH", f"/api/v1/canned-replies/{mine['id']}", {"title": "x"}))
        assert (err.status, err.code) == (404, "canned_not_found")
    listed = (await czhao.api("GET", "/api/v1/canned-replies"))["canned_replies"]
    assert [c["id"] for c in listed] == [shop["id"]]
    everything = (await cli.api("GET", "/api/v1/canned-replies"))["canned_replies"]
    assert [c["id"] for c in everything] == [same["id"], mine["id"], shop["id"]]  # personal first, by shortcut
    for q, want in (("/ref", [same["id"], shop["id"]]), ("/退", [mine["id"]]), ("7 DAYS", [shop["id"]]),
                    ("工单", [mine["id"]]), ("policy", [shop["id"]]), ("100%", []), ("nothing", [])):
        found = (await cli.api("GET", "/api/v1/canned-replies?" + urlencode({"q": q})))["canned_replies"]
        assert [c["id"] for c in found] == want, q

    chat = await desk.writes("where is my money", name="王芳")
    nameless = await desk.writes("me too")
    for ticket_id, canned_id, want in (
            (chat.ticket_id, shop["id"], "Hello 王芳, refunds take 7 days. — 李雷"),
            (nameless.ticket_id, shop["id"], "Hello there, refunds take 7 days. — 李雷"),
            (nameless.ticket_id, mine["id"], f"您好 \uff0c工单 #{nameless.ticket_id} 已收到。")):
        rendered = await cli.api("POST", f"/api/v1/tickets/{ticket_id}/canned-replies/{canned_id}/render")
        assert rendered["text"] == want
    # Zhao cannot use Li's; nobody renders on a ticket they may not see.
    err = await _error(czhao.api("POST", f"/api/v1/tickets/{chat.ticket_id}/canned-replies/{mine['id']}/render"))
    assert err.code in ("ticket_not_found", "canned_not_found")
    changed = (await cli.api("PATCH", f"/api/v1/canned-replies/{mine['id']}",
                             {"shortcut": "tk", "text": "{{ticket.subject}}"}))["canned_reply"]
    assert (changed["shortcut"], changed["text"]) == ("tk", "{{ticket.subject}}")
    err = await _error(cli.api("PATCH", f"/api/v1/canned-replies/{mine['id']}", {"text": "{{nope}}"}))
    assert err.code == "unknown_placeholder"
    assert (await cli.api("DELETE", f"/api/v1/canned-replies/{mine['id']}"))["deleted"] == mine["id"]
    assert (await admin.api("DELETE", f"/api/v1/canned-replies/{shop['id']}"))["deleted"] == shop["id"]
    assert [c["id"] for c in (await cli.api("GET", "/api/v1/canned-replies"))["canned_replies"]] == [same["id"]]


# --- macros ------------------------------------------------------------------------------------------
async def test_macro_applies_every_action_at_once(tenant: TenantInfo, desk: Desk) -> None:  # noqa: F811
    li = await tenant.add_agent(name="Li", capacity=3)
    cli = await tenant.signed_in(li)
    billing = await tenant.add_group("Billing")
    visitor = tenant.visitor()
    chat = await desk.writes("I was charged twice", name="Wang Fang")
    visitor.visitor_id = chat.visitor_id
    await visitor.connect()
    assert (await desk.routed(chat.ticket_id))["assignee_id"] == li.id

    body = {"name": "Double charge", "description": "to billing", "actions": [
        {"type": "group", "group_id": billing},
        {"type": "reply", "text": "Sorry {{customer.name|there}}, billing will refund you. — {{agent.name}}"},
        {"type": "note", "text": "Double charge, ticket {{ticket.id}}"},
        {"type": "add_tags", "tags": ["Billing", "refund"]},
        {"type": "priority", "priority": "high"}, {"type": "status", "status": "pending"}]}
    err = await _error(cli.api("POST", "/api/v1/macros", body))
    assert (err.status, err.code) == (403, "admin_only")
    macro = (await desk.client.api("POST", "/api/v1/macros", body))["macro"]
    assert [a["type"] for a in macro["actions"]] == ["group", "reply", "note", "add_tags", "priority", "status"]
    assert macro["actions"][3]["tags"] == ["billing", "refund"]
    assert [m["id"] for m in (await cli.api("GET", "/api/v1/macros"))["macros"]] == [macro["id"]]
    for bad, code in (({**body, "actions": [{"type": "reply", "text": "{{customer.phone}}"}]}, "unknown_placeholder"),
                      ({**body, "name": "x", "actions": [{"type": "note", "text": "a"}, {"type": "note", "text": "b"}]},
                       "invalid_actions"),
                      ({**body, "name": "y", "actions": [{"type": "group", "group_id": 2**31 - 1}]},
                       "group_not_found"),
                      (body, "macro_exists")):
        assert (await _error(desk.client.api("POST", "/api/v1/macros", bad))).code == code

    start = len(cli.events)
    applied = await cli.api("POST", f"/api/v1/tickets/{chat.ticket_id}/macros/{macro['id']}")
    ticket = applied["ticket"]
    assert (ticket["status"], ticket["priority"], ticket["group_id"], ticket["assignee_id"]) == (
        "pending", "high", billing, None)
    assert set(ticket["tags"]) == {"billing", "refund"}
    reply, note = applied["messages"]
    assert reply["text"] == "Sorry Wang Fang, billing will refund you. — Li" and reply["direction"] == "outbound"
    assert note["text"] == f"Double charge, ticket {chat.ticket_id}" and note["direction"] == "note"
    await visitor.wait_message(lambda m: m["id"] == reply["id"])  # the reply went out like any reply
    assert await desk.outbox_rows(reply["id"]) == [("sent", 1)]
    await desk.assert_loads()
    await cli.wait_event(lambda e: e["kind"] == "ticket.unassigned" and e["ticket_id"] == chat.ticket_id,
                         start=start)
    kinds = [e["kind"] for e in cli.events[start:] if e["ticket_id"] == chat.ticket_id]
    assert kinds.count("message.created") == 2 and "ticket.updated" in kinds

    # All or nothing: a macro whose status the ticket cannot take changes nothing at all.
    closing = (await desk.client.api("POST", "/api/v1/macros", {"name": "Reopen and answer", "actions": [
        {"type": "note", "text": "Back to new"}, {"type": "add_tags", "tags": ["again"]},
        {"type": "status", "status": "new"}]}))["macro"]
    before = await desk.messages(chat.ticket_id)
    err = await _error(desk.client.api("POST", f"/api/v1/tickets/{chat.ticket_id}/macros/{closing['id']}"))
    assert (err.status, err.code) == (409, "invalid_transition")
    assert await desk.messages(chat.ticket_id) == before
    assert "again" not in (await desk.client.api("GET", f"/api/v1/tickets/{chat.ticket_id}"))["ticket"]["tags"]
    await desk.assert_loads()
    renamed = (await desk.client.api("PATCH", f"/api/v1/macros/{closing['id']}",
                                     {"name": "Tag only", "actions": [{"type": "add_tags", "tags": ["again"]}]}))
    assert renamed["macro"]["name"] == "Tag only"
    assert (await _error(cli.api("DELETE", f"/api/v1/macros/{closing['id']}"))).code == "admin_only"
    assert (await desk.client.api("DELETE", f"/api/v1/macros/{closing['id']}"))["deleted"] == closing["id"]
    err = await _error(desk.client.api("POST", f"/api/v1/tickets/{chat.ticket_id}/macros/{closing['id']}"))
    assert (err.status, err.code) == (404, "macro_not_found")
    # Li no longer sees the ticket (it went to Billing): not found, as a missing one.
    err = await _error(cli.api("POST", f"/api/v1/tickets/{chat.ticket_id}/macros/{macro['id']}"))
    assert (err.status, err.code) == (404, "ticket_not_found")


# --- mentions ----------------------------------------------------------------------------------------
def test_mention_syntax() -> None:
    people = [Person(1, "张伟", "zw@acme.example"), Person(2, "张伟明", "zwm@acme.example"),
              Person(3, "Ann Lee", "ann@acme.example"), Person(4, "Ann", "ann2@acme.example"),
              Person(5, "Bob", "bob@acme.example")]
    assert find("@张伟明 请看一下", people) == [2]
    assert find("请@张伟看看", people) == [1]
    assert find("@[Whoever](agent:5) and @ann lee, cc @ANN2@acme.example.", people) == [5, 3, 4]
    assert find("@Annabel and mail ann@acme.example", people) == []
    assert find("@[Nobody](agent:99) @Bobby", people) == []
    assert find("@ann, @Ann, @[Ann](agent:4)", people) == [4]


async def test_a_mention_reaches_the_agent_who_may_then_open_the_ticket(tenant: TenantInfo, desk: Desk) -> None:  # noqa: F811
    li = await tenant.add_agent(name="Li", capacity=3)
    zhang = await tenant.add_agent(name="张伟", capacity=0)
    bob = await tenant.add_agent(name="Bob", capacity=0)
    sup = await tenant.add_agent(role="supervisor", name="Sup", capacity=0)
    cli, czhang, cbob, csup = (await tenant.signed_in(li), await tenant.signed_in(zhang),
                               await tenant.signed_in(bob), await tenant.signed_in(sup))
    chat = await desk.writes("the invoice is wrong", name="Wang Fang")
    assert (await desk.routed(chat.ticket_id))["assignee_id"] == li.id
    assert (await _error(czhang.api("GET", f"/api/v1/tickets/{chat.ticket_id}"))).code == "ticket_not_found"

    note = (await cli.note(chat.ticket_id, f"@张伟请看一下 and @[Sup](agent:{sup.id}), not @Li"))
    event = await czhang.wait_event(lambda e: e["kind"] == "mention")
    assert (event["ticket_id"], event["note_id"], event["author"]["id"]) == (chat.ticket_id, note["id"], li.id)
    assert event["mentioned_agent_id"] == zhang.id and event["ticket"]["id"] == chat.ticket_id
    await csup.wait_event(lambda e: e["kind"] == "mention" and e["mentioned_agent_id"] == sup.id)
    # Nobody else gets someone's mention: not Bob, not the supervisor Zhang's, not the admin.
    await cli.note(chat.ticket_id, "@Bob fyi")
    await cbob.wait_event(lambda e: e["kind"] == "mention")
    assert [e["mentioned_agent_id"] for e in csup.events if e["kind"] == "mention"] == [sup.id]
    assert not [e for e in desk.client.events if e["kind"] == "mention"]
    assert [e["mentioned_agent_id"] for e in cbob.events if e["kind"] == "mention"] == [bob.id]

    # The mention lets Zhang open the ticket and add a note; not reply to the customer or change it.
    detail = await czhang.api("GET", f"/api/v1/tickets/{chat.ticket_id}")
    assert note["id"] in [m["id"] for m in detail["messages"]]
    answer = await czhang.note(chat.ticket_id, "@Li it was billed twice")
    assert answer["ticket_id"] == chat.ticket_id
    await cli.wait_event(lambda e: e["kind"] == "mention" and e["note_id"] == answer["id"])
    for coro in (czhang.api("POST", f"/api/v1/tickets/{chat.ticket_id}/messages", {"text": "hi"}),
                 czhang.api("PATCH", f"/api/v1/tickets/{chat.ticket_id}", {"priority": "low"})):
        assert (await _error(coro)).code == "ticket_not_found"

    # The list, unread first, and marking read.
    await cli.note(chat.ticket_id, "@张伟 one more")
    mine = await czhang.api("GET", "/api/v1/me/mentions")
    assert mine["unread"] == 2 and [m["note_id"] for m in mine["mentions"]][1] == note["id"]
    newest = mine["mentions"][0]
    assert newest["text"] == "@张伟 one more" and newest["author"]["name"] == "Li" and newest["read_at"] is None
    marked = await czhang.api("POST", "/api/v1/me/mentions/read", {"ids": [newest["id"]]})
    assert marked == {"marked": 1, "unread": 1}
    after = await czhang.api("GET", "/api/v1/me/mentions")
    assert [m["read_at"] is None for m in after["mentions"]] == [True, False]  # unread first
    assert [m["id"] for m in (await czhang.api("GET", "/api/v1/me/mentions?unread=1"))["mentions"]] == \
        [after["mentions"][0]["id"]]
    assert (await czhang.api("POST", "/api/v1/me/mentions/read", {"all": True})) == {"marked": 1, "unread": 0}
    # Another agent's mention ids are not theirs to mark.
    assert (await cbob.api("POST", "/api/v1/me/mentions/read", {"ids": [newest["id"]]}))["marked"] == 0
    err = await _error(czhang.api("POST", "/api/v1/me/mentions/read", {"ids": [1], "all": True}))
    assert err.code == "validation_error"
