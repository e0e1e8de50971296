# ruff: noqa: RUF001 - Chinese is written with full-width punctuation; these are its texts.
"""Satisfaction surveys over WeChat (core.csat): on solve the customer gets one text asking for a
reply of 1-5 with the hosted page's link (through the stand-in's customer-service API); a bare
rating while the survey is open answers it (a retried push of it too) and is no message; after
that a digit is an ordinary message again. Pushes signed, and encrypted in safe mode, as the
platform sends them."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import eventually
from tests.wechat.conftest import OaAccount
from tests.wechat.platform import StandIn, new_openid
from tests.wechat.test_oa_inbound import messages_of


def _texts(wechat_api: StandIn, openid: str) -> list[str]:
    return [m["text"]["content"] for m in wechat_api.sent if m["touser"] == openid]


@pytest.mark.parametrize("reply", ["4", "４", "★★★★"])
async def test_survey_by_text_answered_by_a_digit(oa_account: OaAccount, wechat_api: StandIn, settings: Any,
                                                  reply: str) -> None:
    tenant = oa_account.tenant
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    openid = new_openid()
    first = oa_account.pusher.message("text", openid, content="我的水壶漏水")
    assert await oa_account.deliver(first) == (200, "success")
    created = await client.wait_event(lambda e: e["kind"] == "message.created")
    tid = int(created["ticket_id"])
    await client.reply(tid, "已为您换新。")
    await client.api("POST", f"/api/v1/tickets/{tid}/solve")

    async def asked() -> list[str] | None:
        texts = [t for t in _texts(wechat_api, openid) if "/csat/" in t]
        return texts or None

    [survey] = await eventually(asked)
    assert "1" in survey and "5" in survey and "How did we do?" in survey
    token = re.search(r"/csat/([A-Za-z0-9_-]+)", survey).group(1)  # type: ignore[union-attr]
    assert f"https://{tenant.domain}/csat/{token}" in survey

    push = oa_account.pusher.message("text", openid, content=f" {reply} ")
    assert await oa_account.deliver(push) == (200, "success")
    rated = await client.wait_event(lambda e: e["kind"] == "csat.rated")
    assert (rated["ticket_id"], rated["rating"], rated["agent_id"]) == (tid, 4, agent.id)
    # The platform retries the same push: still the rating, not a message.
    assert await oa_account.deliver(push) == (200, "success")
    assert [m.body for m, _ in await messages_of(settings, tenant.id)] == ["我的水壶漏水"]
    detail = await client.api("GET", f"/api/v1/tickets/{tid}")
    assert detail["ticket"]["status"] == "solved" and detail["csat"]["rating"] == 4

    # Answered: a "5" now is a message like any other (and reopens the ticket).
    assert await oa_account.deliver(oa_account.pusher.message("text", openid, content="5")) == (200, "success")
    await client.wait_event(lambda e: e["kind"] == "message.created" and e["message"]["text"] == "5")
    assert len([t for t in _texts(wechat_api, openid) if "/csat/" in t]) == 1


async def test_a_digit_with_no_survey_open_is_a_message(plain_account: OaAccount, settings: Any) -> None:
    tenant = plain_account.tenant
    client = await tenant.signed_in(await tenant.add_agent())
    openid = new_openid()
    assert await plain_account.deliver(plain_account.pusher.message("text", openid, content="3")) == (200, "success")
    created = await client.wait_event(lambda e: e["kind"] == "message.created")
    assert created["message"]["text"] == "3"


async def test_a_wecom_customer_service_chat_is_asked_through_kf_send_msg(
        tenant: Any, wechat_api: StandIn) -> None:
    """WeCom customer service: the survey goes out through kf send_msg with a message id of its own
    (never a reply's, which WeCom would take for a repeat), and a pulled reply of a bare rating
    answers it."""
    import secrets

    from tests.wechat.conftest import make_kf_account
    from tests.wechat.test_kf import kf_item

    kf = await make_kf_account(tenant, wechat_api)
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    user = "wm" + secrets.token_hex(10)
    wechat_api.kf_messages[kf.open_kfid] = [kf_item(1, user, kf.open_kfid)]
    assert await kf.callback("SYNC_CSAT_1") == (200, "success")
    created = await client.wait_event(lambda e: e["kind"] == "message.created")
    tid = int(created["ticket_id"])
    reply = await client.reply(tid, "已处理。")
    await client.api("POST", f"/api/v1/tickets/{tid}/solve")

    async def asked() -> list[dict[str, Any]] | None:
        found = [m for m in wechat_api.kf_sent if m["touser"] == user and "/csat/" in m["text"]["content"]]
        return found or None

    [survey] = await eventually(asked, timeout=20)
    assert survey["open_kfid"] == kf.open_kfid and survey["msgtype"] == "text"
    assert survey["msgid"].startswith("csat") and survey["msgid"] != f"ch{reply['id']}x0"

    item = kf_item(2, user, kf.open_kfid)
    item["text"] = {"content": "5"}
    wechat_api.kf_messages[kf.open_kfid].append(item)
    assert await kf.callback("SYNC_CSAT_2") == (200, "success")
    rated = await client.wait_event(lambda e: e["kind"] == "csat.rated")
    assert (rated["ticket_id"], rated["rating"], rated["agent_id"]) == (tid, 5, agent.id)
    assert (await client.api("GET", f"/api/v1/tickets/{tid}"))["ticket"]["status"] == "solved"
