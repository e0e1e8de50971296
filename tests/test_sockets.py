"""What the socket sessions (web.sockets) promise both protocols beyond the refusals that
test_bad_input checks: every frame with a ref is answered by its result, frames may carry fields
of their own, and the widget's hello is taken as leniently as it always was."""

from __future__ import annotations

from typing import Any

import pytest

from admin_api.client import HubError
from tests.conftest import TenantInfo


async def test_agent_frames_with_a_ref_get_their_result(tenant: TenantInfo) -> None:
    client = await tenant.signed_in(await tenant.add_agent(role="admin"))
    made = await client.api("POST", "/api/v1/tickets", {"text": "by phone", "customer": {"name": "Li Lei"}})
    ticket_id = made["ticket"]["id"]
    # Refused before any action runs (an unknown type), or by core (too many tags once cleaned):
    # either way the client's wait on its ref ends with the error, not a timeout.
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("explode", {}, "unknown_type"),
        ("tags", {"ticket_id": ticket_id, "add": [f"t{i}" for i in range(51)]}, "too_many_tags"),
        ("transfer", {"ticket_id": ticket_id, "agent_id": 1, "group_id": 1}, "transfer_target"),
    ]
    for kind, fields, code in cases:
        with pytest.raises(HubError) as err:
            await client.action(kind, timeout=5, **fields)
        assert err.value.code == code, (kind, err.value)
    # A field the protocol does not know is left alone, as it always was.
    data = await client.action("priority", ticket_id=ticket_id, priority="high", client="cli 1.2")
    assert data["ticket"]["priority"] == "high"
    assert client.errors == []


async def test_webchat_hello_as_widgets_send_it(tenant: TenantInfo) -> None:
    # Empty or zero for "none", the page it runs on, a name that is not text (ignored).
    visitor = tenant.visitor()
    welcome = await visitor.connect(visitor_id="", since=False, page="https://shop.example/cart",
                                    name=42, language="  zh-CN  ")
    assert welcome["visitor_id"] and welcome["messages"] == []
    client_id = await visitor.send("is this on?")
    ack = await visitor.wait_frame(lambda f: f.get("type") == "ack" and f["client_id"] == client_id)
    assert ack["message"]["text"] == "is this on?"
    # The same visitor again, from where it was.
    again = tenant.visitor(welcome["visitor_id"])
    assert [m["text"] for m in (await again.connect(since=0))["messages"]] == ["is this on?"]
