"""WeCom customer service (企业微信 微信客服): the encrypted callback, pulling with sync_msg from a
stored cursor (each message taken once), and replies through kf send_msg, against the stand-in."""

from __future__ import annotations

import asyncio
import base64
import secrets
from typing import Any

import aiohttp
from wechatpy.enterprise.crypto import PrpCrypto

from tests.conftest import TenantInfo, eventually
from tests.wechat.conftest import make_kf_account
from tests.wechat.platform import StandIn, sign
from tests.wechat.test_oa_inbound import messages_of


def kf_item(n: int, user: str, open_kfid: str, *, origin: int = 3, msgtype: str = "text") -> dict[str, Any]:
    item: dict[str, Any] = {"msgid": f"msg{n}_{secrets.token_hex(4)}", "open_kfid": open_kfid,
                            "external_userid": user, "send_time": 1700000000 + n, "origin": origin,
                            "msgtype": msgtype}
    if msgtype == "text":
        item["text"] = {"content": f"kf message {n}"}
    elif msgtype == "image":
        item["image"] = {"media_id": f"KFMEDIA{n}"}
    elif msgtype == "event":
        item["event"] = {"event_type": "enter_session", "open_kfid": open_kfid, "external_userid": user}
    return item


async def test_kf_callback_pull_and_reply(tenant: TenantInfo, settings: Any, wechat_api: StandIn) -> None:
    kf = await make_kf_account(tenant, wechat_api)
    account, corp_id, open_kfid, token, aes_key = kf.info, kf.corp_id, kf.open_kfid, kf.token, kf.aes_key
    assert account["mode"] == "safe"
    url = kf.url
    headers = {"Host": tenant.domain}

    # URL verification: WeCom sends an encrypted echostr signed with msg_signature.
    key = base64.b64decode(aes_key + "=")
    echostr = PrpCrypto(key).encrypt("echo-4711", corp_id).decode()
    ts, nonce = "1700000000", "12345"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers=headers, params={
                "msg_signature": sign(token, ts, nonce, echostr), "timestamp": ts, "nonce": nonce,
                "echostr": echostr}) as resp:
            assert (resp.status, await resp.text()) == (200, "echo-4711")

    user = "wm" + secrets.token_hex(10)
    wechat_api.kf_messages[open_kfid] = [
        kf_item(1, user, open_kfid, origin=4, msgtype="event"),
        kf_item(2, user, open_kfid),
        kf_item(3, user, open_kfid, msgtype="image"),
        kf_item(4, user, open_kfid, origin=5),  # a servicer's own message: not the customer's
        kf_item(5, user, open_kfid),
    ]

    async def callback(sync_token: str) -> None:
        assert await kf.callback(sync_token) == (200, "success")

    # Four callbacks at once (the platform retries too): each message is still taken once.
    await asyncio.gather(*(callback("SYNC_TOKEN_1") for _ in range(4)))

    async def stored(n: int) -> Any:
        found = await messages_of(settings, tenant.id)
        return found if len(found) >= n else None

    first = await eventually(lambda: stored(4))
    assert [m.body for m, _ in first] == ["[event] enter_session", "kf message 2", "[image]", "kf message 5"]
    assert {ext for _, ext in first} == {f"kf:{corp_id}:{open_kfid}:{user}"}
    # The stand-in serves the whole session: only this account's pulls are this test's.
    def pulls() -> list[dict[str, Any]]:
        return [c for c in wechat_api.sync_calls if c["open_kfid"] == open_kfid]

    assert pulls()[0]["token"] == "SYNC_TOKEN_1"
    assert "cursor" not in pulls()[0]

    # More messages: the next pull starts from the stored cursor.
    calls_before = len(pulls())
    wechat_api.kf_messages[open_kfid].append(kf_item(6, user, open_kfid))
    await callback("SYNC_TOKEN_2")
    after = await eventually(lambda: stored(5))
    assert [m.body for m, _ in after][-1] == "kf message 6"
    assert pulls()[calls_before]["cursor"] == "5"
    await asyncio.sleep(0)  # give a stray extra pull the chance to show up before we count
    assert len(await messages_of(settings, tenant.id)) == 5

    # The agent replies through kf send_msg.
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    ticket_id = int((await client.api("GET", "/api/v1/tickets"))["tickets"][0]["id"])
    reply = await client.reply(ticket_id, "你好, how can we help?")
    delivered = await client.wait_event(lambda e: e["kind"] == "message.delivery" and e["message_id"] == reply["id"],
                                        timeout=20)
    assert delivered["delivery_state"] == "sent"
    [sent] = [m for m in wechat_api.kf_sent if m["touser"] == user]
    assert sent["open_kfid"] == open_kfid and sent["msgtype"] == "text"
    assert sent["text"]["content"] == "你好, how can we help?"
    assert sent["msgid"] == f"ch{reply['id']}x0"
    assert wechat_api.token_requests.count(corp_id) == 1
