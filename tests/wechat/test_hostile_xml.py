"""Hostile WeChat pushes, built, signed and (in safe mode) encrypted as the platform does it, against
the running hub: elements nested thousands deep, a document type declaration in an encoding a
byte scan does not see, fields that are elements instead of text, and signatures replayed outside
the timestamp window. Each is refused with a 4xx and stores nothing; the webhook keeps working."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from connectors.wechat.settings import WeChatSettings
from tests.conftest import Server, TenantInfo, eventually, start_server
from tests.wechat.conftest import OaAccount, make_kf_account, make_oa_account
from tests.wechat.platform import Push, StandIn, new_openid
from tests.wechat.test_oa_inbound import messages_of

DAY = 24 * 3600


async def refused(account: OaAccount, push: Push, status: int, code: str) -> None:
    got, body = await account.deliver(push)
    assert (got, code in body) == (status, True), (code, got, body)


async def still_works(account: OaAccount, settings: Any) -> None:
    """Nothing refused was stored, and a good push after them is."""
    assert await messages_of(settings, account.tenant.id) == []
    openid = new_openid()
    assert await account.deliver(account.pusher.message("text", openid)) == (200, "success")
    assert [m.body for m, _ in await messages_of(settings, account.tenant.id)] == ["hello"]


def nested(depth: int, field: str = "Content") -> str:
    """A text push whose ``field`` holds ``depth`` nested elements."""
    return (f"<xml><ToUserName>gh_0123456789ab</ToUserName><FromUserName>oUser</FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType>text</MsgType>"
            f"<{field}>" + "<a>" * depth + "deep" + "</a>" * depth + f"</{field}><MsgId>1</MsgId></xml>")


@pytest.mark.parametrize("depth", [1500, 9000])
async def test_deeply_nested_push_is_400_not_a_recursion_error(
    plain_account: OaAccount, settings: Any, depth: int,
) -> None:
    openid = new_openid()
    push = plain_account.pusher.push(nested(depth), openid)
    assert len(push.body) <= 64 * 1024  # within the size limit: it is the depth that is refused
    await refused(plain_account, push, 400, "invalid_xml")
    await still_works(plain_account, settings)


async def test_deeply_nested_encrypted_push_is_400(safe_account: OaAccount, settings: Any) -> None:
    await refused(safe_account, safe_account.pusher.push(nested(1500), new_openid()), 400, "invalid_xml")
    await still_works(safe_account, settings)


ENTITY_PUSH = ('<?xml version="1.0" encoding="UTF-16"?>'
               '<!DOCTYPE xml [<!ENTITY big "EXPANDED EXPANDED EXPANDED EXPANDED">]>'
               "<xml><ToUserName>gh_0123456789ab</ToUserName><FromUserName>oUser</FromUserName>"
               "<CreateTime>1700000000</CreateTime><MsgType>text</MsgType><Content>&big;</Content>"
               "<MsgId>2</MsgId></xml>")


@pytest.mark.parametrize(("codec", "declared"), [("utf-16", "UTF-16"), ("utf-16-be", "UTF-16BE"),
                                                  ("utf-16-le", "UTF-16LE"), ("utf-16-be", "UTF-16-BE"),
                                                  ("utf-8", "UTF-8")])
async def test_dtd_is_refused_whatever_the_encoding(
    plain_account: OaAccount, settings: Any, codec: str, declared: str,
) -> None:
    openid = new_openid()
    signed = plain_account.pusher.push("", openid)
    xml = ENTITY_PUSH.replace('"UTF-16"', f'"{declared}"')
    await refused(plain_account, Push(signed.query, xml.encode(codec)), 400, "invalid_xml")
    await still_works(plain_account, settings)


async def test_dtd_inside_an_encrypted_push_is_refused(safe_account: OaAccount, settings: Any) -> None:
    await refused(safe_account, safe_account.pusher.push(ENTITY_PUSH, new_openid()), 400, "invalid_xml")
    await still_works(safe_account, settings)


@pytest.mark.parametrize("field", ["FromUserName", "Content", "MsgType"])
async def test_nested_field_is_refused_not_stored_as_repr(
    oa_account: OaAccount, settings: Any, field: str,
) -> None:
    openid = new_openid()
    xml = oa_account.pusher.xml("text", openid)
    start, end = xml.index(f"<{field}>") + len(f"<{field}>"), xml.index(f"</{field}>")
    inner = f"<a>{xml[start:end]}</a><b>x</b>"
    await refused(oa_account, oa_account.pusher.push(xml[:start] + inner + xml[end:], openid), 400, "invalid_xml")
    # Repeated, the field is a list: refused as well.
    twice = xml[:end] + f"</{field}><{field}>again" + xml[end:]
    await refused(oa_account, oa_account.pusher.push(twice, openid), 400, "invalid_xml")
    await still_works(oa_account, settings)


async def test_old_or_future_timestamps_are_refused(oa_account: OaAccount, settings: Any) -> None:
    openid = new_openid()
    xml = oa_account.pusher.xml("text", openid)
    now = int(time.time())
    # Well outside the 300 s window: the checks below may take seconds on a busy machine, and a
    # future stamp 301 s ahead would come inside the window after one of them.
    for stamp in (now - 30 * DAY, now - 400, now + 400, 0):
        await refused(oa_account, oa_account.pusher.push(xml, openid, timestamp=str(stamp)), 403, "stale_timestamp")
    # A 30-day-old plain signature over another body: the signature never covered the body, the
    # window is what refuses it.
    old = oa_account.pusher.push(xml, openid, timestamp=str(now - 30 * DAY))
    other = oa_account.pusher.xml("text", openid, content="send the refund to another account")
    await refused(oa_account, Push(old.query, other.encode() if oa_account.pusher.mode == "plain" else old.body),
                  403, "stale_timestamp")
    assert await messages_of(settings, oa_account.tenant.id) == []
    # Within the window (clock skew either way) a push is accepted.
    assert await oa_account.deliver(oa_account.pusher.push(xml, openid, timestamp=str(now - 120))) == (200, "success")
    assert await oa_account.deliver(oa_account.pusher.push(
        oa_account.pusher.xml("text", openid), openid, timestamp=str(now + 60))) == (200, "success")
    assert len(await messages_of(settings, oa_account.tenant.id)) == 2


async def test_the_window_is_a_setting(
    settings: Any, tenant: TenantInfo, wechat_api: StandIn,
) -> None:
    assert WeChatSettings.from_env({"CHANNELHUB_WECHAT_TIMESTAMP_WINDOW": "60"}).timestamp_window == 60
    assert WeChatSettings().timestamp_window == 300
    account = await make_oa_account(tenant, wechat_api, mode="plain")
    wide = replace(settings.channels["wechat"], timestamp_window=2 * 3600)
    other: Server = await start_server(replace(settings, channels={**settings.channels, "wechat": wide}))
    try:
        openid = new_openid()
        hour_old = account.pusher.push(account.pusher.xml("text", openid), openid,
                                       timestamp=str(int(time.time()) - 3600))
        await refused(account, hour_old, 403, "stale_timestamp")  # the default window: 5 minutes
        assert await account.deliver(hour_old, server=other) == (200, "success")
        assert len(await messages_of(settings, tenant.id)) == 1
    finally:
        await other.runner.cleanup()


async def test_kf_callback_outside_the_window_is_refused(tenant: TenantInfo, wechat_api: StandIn) -> None:
    kf = await make_kf_account(tenant, wechat_api)
    wechat_api.kf_messages[kf.open_kfid] = []
    status, body = await kf.callback("STALE_TOKEN", timestamp=str(int(time.time()) - 30 * DAY))
    assert (status, "stale_timestamp" in body) == (403, True), body
    assert await kf.callback("FRESH_TOKEN") == (200, "success")

    async def calls() -> list[str]:
        return [c.get("token", "") for c in wechat_api.sync_calls if c.get("open_kfid") == kf.open_kfid]

    await eventually(calls)
    assert await calls() == ["FRESH_TOKEN"]
