"""Replies through the customer-service message API, via the outbox, against the loopback stand-in:
one shared token fetched once, refreshed once when refused, the 48-hour window and 5-reply quota
reported to the agent, and network trouble retried until delivered."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from admin_api.client import AgentClient
from core.channels import InboundMessage
from core.ingest import ingest
from core.models import utcnow
from tests.conftest import Server, TenantInfo
from tests.wechat.conftest import OaAccount
from tests.wechat.platform import StandIn, new_openid
from web.http import HUB


async def _conversation(account: OaAccount, text: str = "hello") -> tuple[AgentClient, str, int]:
    """An online agent, and a customer who just wrote (so the window is open)."""
    agent = await account.tenant.add_agent()
    client = await account.tenant.signed_in(agent)
    openid = new_openid()
    assert await account.deliver(account.pusher.message("text", openid, content=text)) == (200, "success")
    created = await client.wait_event(lambda e: e["kind"] == "message.created")
    return client, openid, int(created["ticket"]["id"])


async def _delivery(client: AgentClient, message_id: int) -> dict[str, Any]:
    return await client.wait_event(
        lambda e: e["kind"] == "message.delivery" and e["message_id"] == message_id, timeout=30)


async def _reply(client: AgentClient, ticket_id: int, text: str) -> int:
    result = await client.reply(ticket_id, text)
    return int(result["id"])


def _texts(wechat_api: StandIn, openid: str) -> list[str]:
    return [m["text"]["content"] for m in wechat_api.sent if m["touser"] == openid]


async def test_replies_share_one_token(plain_account: OaAccount, wechat_api: StandIn) -> None:
    client, openid, ticket_id = await _conversation(plain_account)
    for n in range(3):
        mid = await _reply(client, ticket_id, f"answer {n}")
        assert (await _delivery(client, mid))["delivery_state"] == "sent"
    assert _texts(wechat_api, openid) == ["answer 0", "answer 1", "answer 2"]
    assert wechat_api.token_requests.count(plain_account.app_id) == 1


async def test_a_refused_token_is_refreshed_once(plain_account: OaAccount, wechat_api: StandIn) -> None:
    client, openid, ticket_id = await _conversation(plain_account)
    mid = await _reply(client, ticket_id, "first")
    assert (await _delivery(client, mid))["delivery_state"] == "sent"
    wechat_api.expire_tokens(plain_account.app_id)  # the platform answers 40001 from now on
    mid = await _reply(client, ticket_id, "after expiry")
    assert (await _delivery(client, mid))["delivery_state"] == "sent"
    assert _texts(wechat_api, openid) == ["first", "after expiry"]
    assert wechat_api.token_requests.count(plain_account.app_id) == 2


async def test_platform_window_and_quota_errors_reach_the_agent(plain_account: OaAccount, wechat_api: StandIn) -> None:
    client, openid, ticket_id = await _conversation(plain_account)
    wechat_api.script[openid] = [45015, 45047]
    mid = await _reply(client, ticket_id, "too late")
    failed = await _delivery(client, mid)
    assert failed["delivery_state"] == "failed"
    assert failed["error"]["code"] == "reply_window_closed"
    mid = await _reply(client, ticket_id, "too many")
    failed = await _delivery(client, mid)
    assert (failed["delivery_state"], failed["error"]["code"]) == ("failed", "reply_quota_exceeded")
    # Neither is retried: a permanent refusal is reported, not hammered.
    assert [a["outcome"] for a in wechat_api.attempts if a["touser"] == openid] == [45015, 45047]
    detail = await client.api("GET", f"/api/v1/tickets/{ticket_id}")
    assert [m["delivery_state"] for m in detail["messages"] if m["direction"] == "outbound"] == ["failed"] * 2


async def test_reply_after_48_hours_fails_without_calling_wechat(
    server: Server, plain_account: OaAccount, wechat_api: StandIn, tenant: TenantInfo,
) -> None:
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    openid = new_openid()
    # The customer's last message, two days and an hour ago.
    result = await ingest(server.app[HUB], InboundMessage(
        tenant_id=tenant.id, channel="wechat", external_id=f"oa:{plain_account.app_id}:{openid}", text="old",
        channel_message_id=f"oa:{plain_account.app_id}:old-{openid}", received_at=utcnow() - timedelta(hours=49)))
    mid = await _reply(client, int(result.ticket["id"]), "sorry for the delay")
    failed = await _delivery(client, mid)
    assert (failed["delivery_state"], failed["error"]["code"]) == ("failed", "reply_window_closed")
    assert "48 hours" in failed["error"]["message"]
    assert [a for a in wechat_api.attempts if a["touser"] == openid] == []


async def test_five_replies_per_customer_message(plain_account: OaAccount, wechat_api: StandIn) -> None:
    client, openid, ticket_id = await _conversation(plain_account)
    for n in range(5):
        mid = await _reply(client, ticket_id, f"r{n}")
        assert (await _delivery(client, mid))["delivery_state"] == "sent"
    mid = await _reply(client, ticket_id, "sixth")
    failed = await _delivery(client, mid)
    assert (failed["delivery_state"], failed["error"]["code"]) == ("failed", "reply_quota_exceeded")
    assert len(_texts(wechat_api, openid)) == 5
    # The customer writes again: a new window, and replies flow again.
    assert await plain_account.deliver(plain_account.pusher.message("text", openid)) == (200, "success")
    mid = await _reply(client, ticket_id, "seventh")
    assert (await _delivery(client, mid))["delivery_state"] == "sent"
    assert _texts(wechat_api, openid)[-1] == "seventh"


async def test_network_failures_and_busy_platform_are_retried(plain_account: OaAccount, wechat_api: StandIn) -> None:
    client, openid, ticket_id = await _conversation(plain_account)
    wechat_api.script[openid] = ["drop", "http500", -1]
    mid = await _reply(client, ticket_id, "eventually")
    assert (await _delivery(client, mid))["delivery_state"] == "sent"
    assert [a["outcome"] for a in wechat_api.attempts if a["touser"] == openid] == ["drop", "http500", -1, "ok"]
    assert _texts(wechat_api, openid) == ["eventually"]
