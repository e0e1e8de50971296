"""Official Account pushes, built and signed (and in compat/safe mode encrypted) as the platform
does it, against the running hub: every message kind, URL verification, exactly-once under
concurrent retries, and refusals that store nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from connectors.wechat.models import WeChatMedia
from core.db import Database
from core.models import CustomerIdentity, InboxItem, Message, Ticket
from tests.conftest import Server, TenantInfo, eventually
from tests.wechat.conftest import OaAccount, admin_of, make_oa_account
from tests.wechat.platform import Pusher, StandIn, new_openid, sign

# kind (fixture name) -> the text the agent sees
EXPECTED = {
    "text": "hello",
    "image": "[image]",
    "voice": "[voice]",
    "voice_recognition": "[voice] 我的订单什么时候到",
    "video": "[video]",
    "shortvideo": "[shortvideo]",
    "location": "[location] 39.9,116.3 Beijing",
    "link": "[link] Order 1234\nMy order page\nhttps://shop.example.com/orders/1234",
    "event_subscribe": "[event] subscribe",
    "event_subscribe_qrscene": "[event] subscribe (scene 123123)",
    "event_unsubscribe": "[event] unsubscribe",
    "event_scan": "[event] scan 123123",
    "event_click": "[event] menu click CONTACT_SUPPORT",
    "event_view": "[event] menu view https://shop.example.com/help",
    "unknown_miniprogrampage": "[unsupported WeChat message: weapp_card]",
    "unknown_event": "[unsupported WeChat event: poi_check_notify]",
}
MEDIA = {"image": "image/jpeg", "voice": "audio/amr", "voice_recognition": "audio/amr", "video": "video/mp4",
         "shortvideo": "video/mp4"}


async def messages_of(settings: Any, tenant_id: int) -> list[tuple[Message, str]]:
    """The tenant's inbound WeChat messages, once nothing of the tenant's waits in the inbox (a
    push answered "success" is in the inbox; it becomes a message moments later)."""
    db = Database(settings.database_url)
    try:
        async def drained() -> bool:
            async with db.read(tenant_id) as session:
                return (await session.execute(select(InboxItem.id).limit(1))).first() is None

        await eventually(drained)
        async with db.read(tenant_id) as session:
            rows = (await session.execute(
                select(Message, CustomerIdentity.external_id)
                .join(Ticket, Ticket.id == Message.ticket_id)
                .join(CustomerIdentity, CustomerIdentity.id == Ticket.identity_id)
                .where(Message.channel == "wechat", Message.direction == "inbound").order_by(Message.id)
            )).all()
        return [(m, ext) for m, ext in rows]
    finally:
        await db.dispose()


async def test_every_message_kind_becomes_one_inbound_message(
    oa_account: OaAccount, settings: Any, wechat_api: StandIn,
) -> None:
    openid = new_openid()
    for kind in EXPECTED:
        status, text = await oa_account.deliver(oa_account.pusher.message(kind, openid))
        assert (status, text) == (200, "success"), (kind, status, text)
    stored = await messages_of(settings, oa_account.tenant.id)
    assert [m.body for m, _ in stored] == list(EXPECTED.values())
    assert {ext for _, ext in stored} == {f"oa:{oa_account.app_id}:{openid}"}
    for (message, _), kind in zip(stored, EXPECTED, strict=True):
        if kind in MEDIA:
            [att] = message.attachments
            assert att["content_type"] == MEDIA[kind]
            assert att["url"].startswith(f"/api/v1/wechat/media/{oa_account.key}/MEDIA_")
        else:
            assert message.attachments == []


async def test_url_verification_echoes_only_for_our_signature(plain_account: OaAccount) -> None:
    ts, nonce = "1700000000", "42"
    query = {"signature": sign(plain_account.pusher.token, ts, nonce), "timestamp": ts, "nonce": nonce,
             "echostr": "8217731232123"}
    url = plain_account.tenant.server.url + plain_account.path
    async with aiohttp.ClientSession() as http:
        async with http.get(url, params=query, headers={"Host": plain_account.tenant.domain}) as resp:
            assert (resp.status, await resp.text()) == (200, "8217731232123")
        bad = {**query, "signature": sign("not-the-token", ts, nonce)}
        async with http.get(url, params=bad, headers={"Host": plain_account.tenant.domain}) as resp:
            assert resp.status == 403
            assert (await resp.json())["error"]["code"] == "invalid_signature"


async def test_media_is_fetched_after_storing_and_served_to_agents(
    safe_account: OaAccount, wechat_api: StandIn,
) -> None:
    media_id = "MEDIA_photo_" + new_openid()[1:9]
    wechat_api.media[media_id] = ("image/jpeg", b"\xff\xd8\xff\xe0 a tiny jpeg")
    status, _ = await safe_account.deliver(safe_account.pusher.message("image", new_openid(), media_id=media_id))
    assert status == 200
    client = await admin_of(safe_account.tenant)
    url = f"/api/v1/wechat/media/{safe_account.key}/{media_id}"

    async def prefetched() -> bool:
        # Nobody has asked for it yet: the hub fetched it on its own after storing the message.
        db = Database(safe_account.tenant.settings.database_url)
        try:
            async with db.read(safe_account.tenant.id) as session:
                return (await session.execute(
                    select(WeChatMedia.id).where(WeChatMedia.media_id == media_id))).first() is not None
        finally:
            await db.dispose()

    await eventually(prefetched)
    # Once fetched it is ours: the platform forgetting it (after 3 days) changes nothing.
    del wechat_api.media[media_id]
    async with client.session.get(client.base_url + url, headers={
            **client._headers(), "Authorization": f"Bearer {client.token}"}) as resp:
        assert resp.status == 200
        assert resp.content_type == "image/jpeg"
        assert await resp.read() == b"\xff\xd8\xff\xe0 a tiny jpeg"
    # Agents only: no bearer token, no media.
    async with aiohttp.ClientSession() as http, http.get(
            safe_account.tenant.server.url + url, headers={"Host": safe_account.tenant.domain}) as resp:
        assert resp.status == 401


@pytest.mark.parametrize("kind", ["text", "event_click"])
async def test_four_concurrent_deliveries_of_one_push_store_one_message(
    oa_account: OaAccount, settings: Any, kind: str,
) -> None:
    openid = new_openid()
    push = oa_account.pusher.message(kind, openid)
    answers = await asyncio.gather(*(oa_account.deliver(push) for _ in range(4)))
    assert answers == [(200, "success")] * 4
    # A late retry (the platform's third try) too.
    assert await oa_account.deliver(push) == (200, "success")
    stored = await messages_of(settings, oa_account.tenant.id)
    assert len(stored) == 1


async def test_events_of_one_sender_in_one_second_are_told_apart_by_event(
    plain_account: OaAccount, settings: Any,
) -> None:
    openid = new_openid()
    for kind in ("event_subscribe", "event_click", "event_view"):
        xml = plain_account.pusher.xml(kind, openid, time=1700000000)
        assert await plain_account.deliver(plain_account.pusher.push(xml, openid)) == (200, "success")
    assert len(await messages_of(settings, plain_account.tenant.id)) == 3


async def test_bad_pushes_are_refused_and_store_nothing(
    server: Server, tenant: TenantInfo, other_tenant: TenantInfo, settings: Any, wechat_api: StandIn,
) -> None:
    ours = await make_oa_account(tenant, wechat_api, mode="compat")
    theirs = await make_oa_account(other_tenant, wechat_api, mode="compat")
    openid = new_openid()
    xml = ours.pusher.xml("text", openid)
    good = ours.pusher.push(xml, openid)

    async def refused(push: Any, status: int, code: str, *, account: OaAccount = ours, host: str | None = None) -> None:
        got_status, body = await account.deliver(push, host=host)
        assert got_status == status, (code, got_status, body)
        assert code in body

    # A signature that does not match (tampered query).
    await refused(type(good)({**good.query, "signature": "0" * 40}, good.body), 403, "invalid_signature")
    # A push signed with another tenant's token, replayed at our URL.
    replay = Pusher(ours.app_id, theirs.pusher.token, theirs.pusher.aes_key, "compat").push(xml, openid)
    await refused(replay, 403, "invalid_signature")
    # Another tenant's account key is not found on our domain.
    await refused(theirs.pusher.push(theirs.pusher.xml("text", openid), openid), 404, "account_not_found",
                  account=theirs, host=tenant.domain)
    # Ciphertext that does not match the msg_signature.
    await refused(type(good)(good.query, good.body.replace(b"<Encrypt><![CDATA[", b"<Encrypt><![CDATA[A")),
                  403, "invalid_signature")
    # Malformed XML, plaintext and encrypted.
    plain = Pusher(ours.app_id, ours.pusher.token, mode="plain")
    await refused(plain.push("<xml><MsgType>text</MsgType><Content>unclosed", openid), 400, "invalid_xml")
    await refused(plain.push("not xml at all", openid), 400, "invalid_xml")
    await refused(ours.pusher.push("<xml><Content>no type</Content></xml>", openid), 400, "invalid_xml")
    await refused(ours.pusher.push("<xml><Content>unclosed", openid), 400, "invalid_xml")
    await refused(type(good)(good.query, b"<xml><Encrypt>cut short"), 400, "invalid_xml")
    # Entities are refused, not expanded.
    bomb = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]><xml><MsgType>&a;</MsgType></xml>'
    await refused(plain.push(bomb, openid), 400, "invalid_xml")
    # Oversize.
    huge = ours.pusher.xml("text", openid, content="x" * (70 * 1024))
    await refused(plain.push(huge, openid), 413, "push_too_large")

    assert await messages_of(settings, tenant.id) == []
    # And the webhook still works.
    assert await ours.deliver(good) == (200, "success")
    assert len(await messages_of(settings, tenant.id)) == 1


async def test_safe_mode_refuses_plaintext_pushes(safe_account: OaAccount, settings: Any) -> None:
    openid = new_openid()
    plain = Pusher(safe_account.app_id, safe_account.pusher.token, mode="plain")
    status, body = await safe_account.deliver(plain.message("text", openid))
    assert status == 403 and "encryption_required" in body
    assert await messages_of(settings, safe_account.tenant.id) == []
