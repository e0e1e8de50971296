"""The agent workspace's answers (#13) against the OpenAPI document, with what tests/test_openapi.py's
one plain call per route leaves empty: a mention, a macro with every kind of action applied (its
reply and note), a merged customer and its undo, a merged ticket's detail, a split."""

from __future__ import annotations

from typing import Any

from tests import test_bad_input as bad_input
from tests.support import undocumented
from tests.test_bad_input import Shop

shop = bad_input.shop


async def check(shop: Shop, method: str, template: str, path: str, body: Any = None, token: str | None = None,
                status: int = 200) -> dict[str, Any]:
    reply = await shop.call(method, path, body=body, token=token)
    assert reply.status == status, reply
    problems = undocumented(method, template, reply.status, reply.body)
    assert not problems, (template, problems, reply.body)
    return dict(reply.body)


async def test_workspace_answers_match_the_document(shop: Shop) -> None:
    t = shop.ticket_id
    me = shop.admin
    # A note of the owner's that mentions the admin.
    note = await shop.call("POST", f"/api/v1/tickets/{t}/messages",
                           body={"text": f"@[{me.name}](agent:{me.id}) please look", "kind": "note"})
    assert note.status == 201, note
    await check(shop, "GET", "/api/v1/me/mentions", "/api/v1/me/mentions?unread=1&limit=5", token=shop.admin_token)
    await check(shop, "GET", "/api/v1/me/mentions", "/api/v1/me/mentions", token=shop.admin_token)
    await check(shop, "POST", "/api/v1/me/mentions/read", "/api/v1/me/mentions/read", body={"all": True},
                token=shop.admin_token)
    await check(shop, "GET", "/api/v1/me/mentions", "/api/v1/me/mentions", token=shop.admin_token)
    macro = await check(shop, "POST", "/api/v1/macros", "/api/v1/macros", status=201, body={
        "name": "Everything", "description": "all of it", "actions": [
            {"type": "reply", "text": "Hi {{customer.name|there}}"}, {"type": "note", "text": "noted"},
            {"type": "add_tags", "tags": ["a", "b"]}, {"type": "remove_tags", "tags": ["c"]},
            {"type": "status", "status": "pending"}, {"type": "priority", "priority": "low"},
            {"type": "group", "group_id": shop.group_id}]})
    await check(shop, "GET", "/api/v1/macros", "/api/v1/macros")
    await check(shop, "POST", "/api/v1/tickets/{ticket_id}/macros/{macro_id}",
                f"/api/v1/tickets/{t}/macros/{macro['macro']['id']}")
    await check(shop, "GET", "/api/v1/canned-replies", "/api/v1/canned-replies?q=own", token=shop.agent_token)
    await check(shop, "GET", "/api/v1/customers/{customer_id}/tickets",
                f"/api/v1/customers/{shop.customer_id}/tickets?limit=1", token=shop.agent_token)
    await check(shop, "GET", "/api/v1/customers/{customer_id}/merges",
                f"/api/v1/customers/{shop.customer_id}/merges")
    merged = await check(shop, "POST", "/api/v1/customers/{customer_id}/merge",
                         f"/api/v1/customers/{shop.customer_id}/merge",
                         body={"other_id": shop.workspace["spare_customer"]}, status=201)
    await check(shop, "GET", "/api/v1/customers/{customer_id}",
                f"/api/v1/customers/{shop.workspace['spare_customer']}")
    await check(shop, "GET", "/api/v1/customers/{customer_id}/tickets",
                f"/api/v1/customers/{shop.workspace['spare_customer']}/tickets")
    await check(shop, "POST", "/api/v1/customers/merges/{merge_id}/undo",
                f"/api/v1/customers/merges/{merged['merge']['id']}/undo")
    await check(shop, "GET", "/api/v1/customers/{customer_id}/merges",
                f"/api/v1/customers/{shop.customer_id}/merges")
    out = await check(shop, "POST", "/api/v1/tickets/{ticket_id}/merge", f"/api/v1/tickets/{t}/merge",
                      body={"other_ticket_id": shop.workspace["second_ticket"]})
    await check(shop, "GET", "/api/v1/tickets/{ticket_id}", f"/api/v1/tickets/{out['other']['id']}")
    await check(shop, "POST", "/api/v1/tickets/{ticket_id}/messages/{message_id}/split",
                f"/api/v1/tickets/{t}/messages/{shop.message_id}/split", body={"following": False, "subject": "x"},
                status=201)
