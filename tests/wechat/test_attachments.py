"""Agents' files on WeChat, against the stand-in: uploaded once as temporary media and sent by
media_id (a retry or another reply reuses it while the platform keeps it), failures of the upload
retried like sends, what the platform cannot take refused clearly, and files an Official Account
cannot show sent as a signed link."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

import aiohttp
from sqlalchemy import update

from admin_api.client import AgentClient
from connectors.wechat.models import WeChatUpload
from core.db import Database
from core.models import utcnow
from tests.conftest import TenantInfo
from tests.wechat.conftest import OaAccount, make_kf_account
from tests.wechat.platform import StandIn
from tests.wechat.test_kf import kf_item
from tests.wechat.test_oa_outbound import _conversation, _delivery

PNG = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(2000)
PDF = b"%PDF-1.4\n" + secrets.token_bytes(3000)


def _sent(wechat_api: StandIn, openid: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.items() if k != "touser"} for m in wechat_api.sent if m["touser"] == openid]


def _uploads(wechat_api: StandIn, name: str) -> list[dict[str, Any]]:
    return [u for u in wechat_api.uploads if u["filename"] == name]


async def _reply(client: AgentClient, ticket_id: int, text: str, *files: dict[str, Any]) -> dict[str, Any]:
    """Reply and wait for the outcome of its delivery."""
    message = await client.reply(ticket_id, text, attachments=[f["id"] for f in files])
    return await _delivery(client, int(message["id"]))


async def test_an_image_is_uploaded_once_and_sent_by_media_id(
    plain_account: OaAccount, wechat_api: StandIn, settings: Any,
) -> None:
    client, openid, ticket_id = await _conversation(plain_account)
    name = f"photo-{secrets.token_hex(4)}.png"
    photo = await client.upload(name, PNG, "image/png")

    assert (await _reply(client, ticket_id, "Here is the photo", photo))["delivery_state"] == "sent"
    [upload] = _uploads(wechat_api, name)
    assert (upload["base"], upload["type"], upload["content_type"]) == ("oa", "image", "image/png")
    assert (upload["size"], upload["sha256"]) == (len(PNG), hashlib.sha256(PNG).hexdigest())
    media_id = upload["media_id"]
    assert _sent(wechat_api, openid) == [{"msgtype": "text", "text": {"content": "Here is the photo"}},
                                         {"msgtype": "image", "image": {"media_id": media_id}}]

    # A redelivery (the platform was busy) and another reply send the same media_id, uploading nothing.
    wechat_api.script[openid] = [-1]
    assert (await _reply(client, ticket_id, "", photo))["delivery_state"] == "sent"
    assert [a["outcome"] for a in wechat_api.attempts if a["touser"] == openid][-2:] == [-1, "ok"]
    assert (await _reply(client, ticket_id, "", photo))["delivery_state"] == "sent"
    assert len(_uploads(wechat_api, name)) == 1
    assert _sent(wechat_api, openid)[2:] == [{"msgtype": "image", "image": {"media_id": media_id}}] * 2

    # Past what the platform keeps, the file is uploaded again.
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            await session.execute(update(WeChatUpload).where(WeChatUpload.media_id == media_id)
                                  .values(uploaded_at=utcnow() - timedelta(days=3)))
    finally:
        await db.dispose()
    assert await plain_account.deliver(plain_account.pusher.message("text", openid)) == (200, "success")
    assert (await _reply(client, ticket_id, "", photo))["delivery_state"] == "sent"
    _, second = _uploads(wechat_api, name)
    assert second["media_id"] != media_id
    assert _sent(wechat_api, openid)[-1] == {"msgtype": "image", "image": {"media_id": second["media_id"]}}

    # The platform forgot an upload sooner than it said (40007): the retry uploads it again.
    wechat_api.script[openid] = [40007]
    assert (await _reply(client, ticket_id, "", photo))["delivery_state"] == "sent"
    third = _uploads(wechat_api, name)[2]
    assert _sent(wechat_api, openid)[-1] == {"msgtype": "image", "image": {"media_id": third["media_id"]}}


async def test_upload_failures_are_retried_and_a_refused_token_refreshed_once(
    plain_account: OaAccount, wechat_api: StandIn,
) -> None:
    client, openid, ticket_id = await _conversation(plain_account)
    name = f"scan-{secrets.token_hex(4)}.jpg"
    scan = await client.upload(name, PNG, "image/jpeg")
    tokens_before = wechat_api.token_requests.count(plain_account.app_id)
    wechat_api.expire_tokens(plain_account.app_id)  # the upload is the first call to see 40001
    wechat_api.upload_script[name] = ["http500", "drop", -1]
    assert (await _reply(client, ticket_id, "", scan))["delivery_state"] == "sent"
    assert [a["outcome"] for a in wechat_api.upload_attempts if a["filename"] == name] == ["http500", "drop", -1, "ok"]
    assert wechat_api.token_requests.count(plain_account.app_id) == tokens_before + 1
    [upload] = _uploads(wechat_api, name)
    assert _sent(wechat_api, openid) == [{"msgtype": "image", "image": {"media_id": upload["media_id"]}}]

    # A refusal of the file itself is final, and nothing of the reply goes out.
    bad = await client.upload(f"bad-{name}", PNG, "image/jpeg")
    wechat_api.upload_script[bad["name"]] = [40005]
    failed = await _reply(client, ticket_id, "with a bad file", bad)
    assert (failed["delivery_state"], failed["error"]["code"]) == ("failed", "wechat_error_40005")
    assert len(_sent(wechat_api, openid)) == 1


async def test_too_large_for_the_platform_is_a_clear_final_error(
    plain_account: OaAccount, wechat_api: StandIn,
) -> None:
    client, openid, ticket_id = await _conversation(plain_account)
    voice = await client.upload("message.amr", b"#!AMR\n" + b"\0" * (2 * 2**20), "audio/amr")  # WeChat: 2 MB
    failed = await _reply(client, ticket_id, "listen", voice)
    assert (failed["delivery_state"], failed["error"]["code"]) == ("failed", "media_too_large")
    assert "message.amr" in failed["error"]["message"] and "2.0 MB" in failed["error"]["message"]
    assert not _uploads(wechat_api, "message.amr") and not _sent(wechat_api, openid)
    # The refusal used none of the customer's 5 replies.
    for n in range(5):
        assert (await _reply(client, ticket_id, f"r{n}"))["delivery_state"] == "sent"


async def test_an_official_account_sends_other_files_as_links(
    plain_account: OaAccount, wechat_api: StandIn,
) -> None:
    client, openid, ticket_id = await _conversation(plain_account)
    report = await client.upload("report.pdf", PDF, "application/pdf")
    webp = await client.upload("photo.webp", PNG, "image/webp")  # an image WeChat does not take
    assert (await _reply(client, ticket_id, "See attached", report, webp))["delivery_state"] == "sent"
    [sent] = _sent(wechat_api, openid)
    assert sent["msgtype"] == "text"
    text, report_line, webp_line = sent["text"]["content"].split("\n")
    assert text == "See attached"
    domain = plain_account.tenant.domain
    assert report_line.startswith(f"report.pdf: https://{domain}/files/{report['id']}/")
    assert webp_line.startswith(f"photo.webp: https://{domain}/files/{webp['id']}/")
    assert not _uploads(wechat_api, "report.pdf") and not _uploads(wechat_api, "photo.webp")

    # The customer opens the link without signing in (the hub is behind TLS at its domain).
    path = report_line.split(f"https://{domain}", 1)[1]
    async with aiohttp.ClientSession() as http, http.get(plain_account.tenant.server.url + path,
                                                         headers={"Host": domain}) as resp:
        assert (resp.status, await resp.read()) == (200, PDF)


async def test_kf_sends_files_images_and_unsupported_formats_as_media(tenant: TenantInfo, wechat_api: StandIn) -> None:
    kf = await make_kf_account(tenant, wechat_api)
    user = "wm" + secrets.token_hex(10)
    wechat_api.kf_messages[kf.open_kfid] = [kf_item(1, user, kf.open_kfid)]
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    assert await kf.callback("SYNC") == (200, "success")
    created = await client.wait_event(lambda e: e["kind"] == "message.created")
    ticket_id = int(created["ticket_id"])

    tag = secrets.token_hex(4)
    contract = await client.upload(f"contract-{tag}.pdf", PDF, "application/pdf")
    song = await client.upload(f"song-{tag}.mp3", b"ID3" + PNG, "audio/mpeg")  # WeCom voice is AMR only
    photo = await client.upload(f"photo-{tag}.png", PNG, "image/png")
    reply = await client.reply(ticket_id, "Your documents", attachments=[contract["id"], song["id"], photo["id"]])
    delivered = await _delivery(client, int(reply["id"]))
    assert delivered["delivery_state"] == "sent"

    uploads = {u["filename"]: u for u in wechat_api.uploads if tag in u["filename"]}
    assert {n: (u["base"], u["type"]) for n, u in uploads.items()} == {
        contract["name"]: ("qy", "file"), song["name"]: ("qy", "file"), photo["name"]: ("qy", "image")}
    sent = [m for m in wechat_api.kf_sent if m["touser"] == user]
    assert [(m["msgtype"], m["msgid"]) for m in sent] == [
        (kind, f"ch{reply['id']}x{n}") for n, kind in enumerate(["text", "file", "file", "image"])]
    assert [m["file"]["media_id"] for m in sent[1:3]] == [uploads[contract["name"]]["media_id"],
                                                        uploads[song["name"]]["media_id"]]
    assert sent[3]["image"]["media_id"] == uploads[photo["name"]]["media_id"]
