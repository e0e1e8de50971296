"""The WeChat connector: Official Account webhooks, WeCom kf callbacks, and replies.

Inbound (``/wechat/oa/{key}`` and ``/wechat/kf/{key}`` on the tenant's domain): check the
signature, decrypt in safe mode, parse, land it in the inbox (core.inbox: a group commit of a
few milliseconds, idempotent on the channel message id made from MsgId, or sender + CreateTime +
event), answer ``success``; the inbox makes the ticket right after. The platform retries a push
it got no answer to within 5 s, so nothing slow happens before the answer: media are fetched
after it, in the background (and on first read if that failed).

Outbound: ``send`` goes through the customer-service message API (Official Account) or kf
send_msg (WeCom), after counting the reply against the customer's 48-hour window. Files agents
attached are uploaded as temporary media first (once per account and file, reused for the 3 days
the platform keeps them); what the account cannot show as media goes as a signed link.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from wechatpy.crypto import WeChatCrypto
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.utils import check_signature

from connectors.base import Attachment, Connector, InboundMessage, OutboundMessage
from connectors.wechat.api import ApiError, PlatformUnavailable, WeChatApi
from connectors.wechat.inbound import Parsed, parse_kf, parse_oa
from connectors.wechat.outbound import (
    INVALID_MEDIA_ID,
    MEDIA_LIMITS,
    Payload,
    media_payload,
    media_type,
    size_mb,
    unreachable,
)
from connectors.wechat.xmlparse import NotWeChatXml, parse_xml
from core import attachments, wechat_store
from core.errors import DeliveryError, DomainError, Forbidden, NotFound, TooLarge
from core.ingest import check_message
from core.models import utcnow
from core.wechat_store import AccountConfig

logger = logging.getLogger(__name__)

SUCCESS = "success"
# What the platform's errcodes mean for a reply.
WINDOW_CLOSED = 45015
QUOTA_EXCEEDED = 45047
SYSTEM_BUSY = -1
UNREACHABLE = {40003: "not a follower of this account", 43004: "the customer unfollowed the account",
               43019: "the customer blocked the account"}


class BadPush(DomainError):
    """A push that is not well-formed WeChat XML (400, unlike a valid but unacceptable body's 422)."""

    status = 400
    code = "invalid_xml"


def _xml(raw: bytes | str, what: str = "the push") -> dict[str, Any]:
    try:
        return parse_xml(raw)
    except NotWeChatXml:
        raise BadPush(f"{what} is not WeChat XML") from None


def _envelope(raw: bytes) -> dict[str, Any]:
    """The outer XML of an encrypted push: well-formed, with an Encrypt element (else 400)."""
    data = _xml(raw)
    if not isinstance(data.get("Encrypt"), str) or not data["Encrypt"]:
        raise BadPush("an encrypted push needs its Encrypt element")
    return data


def _tenant_id(request: web.Request) -> int:
    from admin_api.http import tenant_of

    return tenant_of(request).id


class WeChatConnector(Connector):
    kind = "wechat"

    def __init__(self, hub: Any) -> None:
        super().__init__(hub)
        self.api = WeChatApi(hub)
        self._tasks: set[asyncio.Task[Any]] = set()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.api.close()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/wechat/oa/{key}", self.oa_verify),
            web.post("/wechat/oa/{key}", self.oa_push),
            web.get("/wechat/kf/{key}", self.kf_verify),
            web.post("/wechat/kf/{key}", self.kf_callback),
        ]

    def _background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- common edge checks -------------------------------------------------------------------
    async def _account(self, request: web.Request, kind: str) -> AccountConfig:
        account = await wechat_store.account_by_key(self.hub, _tenant_id(request), request.match_info["key"])
        if account is None or account.kind != kind:
            raise NotFound("no such WeChat account here", code="account_not_found")
        return account

    async def _body(self, request: web.Request) -> bytes:
        limit = self.hub.settings.wechat_max_push_bytes
        if request.content_length is not None and request.content_length > limit:
            raise TooLarge(f"a WeChat push is at most {limit} bytes", code="push_too_large")
        raw = await request.content.read(limit + 1)
        if len(raw) > limit:
            raise TooLarge(f"a WeChat push is at most {limit} bytes", code="push_too_large")
        if not raw.strip():
            raise BadPush("empty push")
        return raw

    @staticmethod
    def _query(request: web.Request, *names: str) -> list[str]:
        values = [request.query.get(n, "") for n in names]
        if not all(values):
            raise Forbidden("the push is not signed", code="invalid_signature")
        return values

    # --- Official Account ---------------------------------------------------------------------
    async def oa_verify(self, request: web.Request) -> web.Response:
        """URL verification: echo ``echostr`` when the signature is ours (the same in every mode)."""
        account = await self._account(request, "oa")
        signature, timestamp, nonce = self._query(request, "signature", "timestamp", "nonce")
        try:
            check_signature(account.token, signature, timestamp, nonce)
        except InvalidSignatureException:
            logger.info("wechat account %s: URL verification with a bad signature", account.id)
            raise Forbidden("bad signature", code="invalid_signature") from None
        return web.Response(text=request.query.get("echostr", ""))

    async def oa_push(self, request: web.Request) -> web.Response:
        account = await self._account(request, "oa")
        raw = await self._body(request)
        signature, timestamp, nonce = self._query(request, "signature", "timestamp", "nonce")
        try:
            check_signature(account.token, signature, timestamp, nonce)
        except InvalidSignatureException:
            logger.info("wechat account %s: push with a bad signature refused", account.id)
            raise Forbidden("bad signature", code="invalid_signature") from None
        encrypted = request.query.get("encrypt_type", "raw").lower() == "aes"
        if account.mode == "safe" and not encrypted:
            # Safe mode means the platform encrypts every push; a plaintext one is not from it.
            raise Forbidden("this account is in safe mode: pushes must be encrypted", code="encryption_required")
        xml: str | bytes = raw
        if encrypted:
            if not account.aes_key:
                raise BadPush("encrypted push, but no EncodingAESKey is configured", code="aes_key_missing")
            msg_signature = request.query.get("msg_signature", "")
            envelope = _envelope(raw)
            try:
                xml = WeChatCrypto(account.token, account.aes_key, account.app_id).decrypt_message(
                    envelope, msg_signature, timestamp, nonce)
            except InvalidSignatureException:
                raise Forbidden("bad message signature", code="invalid_signature") from None
            except Exception as exc:  # bad XML, base64, padding, or another AppID
                logger.info("wechat account %s: undecryptable push (%s)", account.id, type(exc).__name__)
                raise Forbidden("the push cannot be decrypted for this account", code="invalid_encryption") from None
        data = _xml(xml)
        if not isinstance(data.get("MsgType"), str) or not data["MsgType"].strip():
            raise BadPush("the push has no MsgType")
        parsed = parse_oa(account, data)
        if not parsed.user_id:
            raise BadPush("the push has no FromUserName")
        await self._store(account, [parsed])
        # Safe mode accepts a plain "success" as well: there is nothing to reply synchronously.
        return web.Response(text=SUCCESS)

    def _inbound(self, account: AccountConfig, parsed: Parsed) -> InboundMessage:
        return InboundMessage(
            tenant_id=account.tenant_id, channel=self.kind, external_id=account.external_id(parsed.user_id),
            text=parsed.text, channel_message_id=parsed.channel_message_id, attachments=parsed.attachments,
            customer_attributes={"wechat_account": account.name},
        )

    def _storable(self, account: AccountConfig, parsed: Parsed) -> bool:
        """A pulled message the hub cannot store is skipped (and logged), so the cursor moves on."""
        try:
            check_message(self._inbound(account, parsed), self.hub.settings.max_message_bytes)
        except DomainError as exc:
            logger.warning("wecom kf account %s: message %s skipped: %s", account.id, parsed.channel_message_id, exc)
            return False
        return True

    async def _store(self, account: AccountConfig, parsed: list[Parsed]) -> None:
        """Into the inbox (durable when this returns); tickets are made of it right after."""
        new = await self.hub.inbox.accept([self._inbound(account, p) for p in parsed])
        if self.hub.settings.wechat_prefetch_media:
            for p, is_new in zip(parsed, new, strict=True):
                if is_new:
                    for _kind, media_id in p.media:
                        self._background(self._prefetch(account, media_id))

    async def _prefetch(self, account: AccountConfig, media_id: str) -> None:
        try:
            await self.media(account, media_id)
        except Exception as exc:
            # Not lost: the media URL fetches it on first read (the platform keeps it 3 days).
            logger.warning("wechat account %s: media prefetch failed (%s)", account.id, exc)

    async def media(self, account: AccountConfig, media_id: str) -> tuple[str, bytes]:
        """The stored media, fetched through the media API the first time."""
        found = await wechat_store.get_media(self.hub, account.tenant_id, account.id, media_id)
        if found is not None:
            return found
        content_type, data = await self.api.download(account, media_id)
        await wechat_store.put_media(self.hub, account, media_id, content_type, data)
        return content_type, data

    # --- WeCom kf -----------------------------------------------------------------------------
    def _wecom(self, account: AccountConfig) -> WeComCrypto:
        assert account.aes_key is not None
        return WeComCrypto(account.token, account.aes_key, account.app_id)

    async def kf_verify(self, request: web.Request) -> web.Response:
        """WeCom's URL check: the echostr is encrypted and signed with msg_signature."""
        account = await self._account(request, "kf")
        signature, timestamp, nonce, echostr = self._query(request, "msg_signature", "timestamp", "nonce", "echostr")
        try:
            plain = self._wecom(account).check_signature(signature, timestamp, nonce, echostr)
        except InvalidSignatureException:
            raise Forbidden("bad signature", code="invalid_signature") from None
        except Exception:
            raise Forbidden("the echostr cannot be decrypted for this account", code="invalid_encryption") from None
        return web.Response(text=plain if isinstance(plain, str) else plain.decode())

    async def kf_callback(self, request: web.Request) -> web.Response:
        account = await self._account(request, "kf")
        raw = await self._body(request)
        signature, timestamp, nonce = self._query(request, "msg_signature", "timestamp", "nonce")
        envelope = _envelope(raw)
        try:
            xml = self._wecom(account).decrypt_message(envelope, signature, timestamp, nonce)
        except InvalidSignatureException:
            raise Forbidden("bad signature", code="invalid_signature") from None
        except Exception:
            raise Forbidden("the callback cannot be decrypted for this account", code="invalid_encryption") from None
        data = _xml(xml, "the callback")
        event = str(data.get("Event") or "")
        if event == "kf_msg_or_event":
            # The callback carries no message: pull them (after answering) with its short-lived token.
            self._background(self.kf_sync(account, str(data.get("Token") or "")))
        else:
            logger.info("wecom kf account %s: callback event %r acknowledged", account.id, event)
        return web.Response(text=SUCCESS)

    async def kf_sync(self, account: AccountConfig, callback_token: str) -> int:
        """Pull new kf messages with sync_msg from the stored cursor; one puller at a time."""
        got, cursor = await wechat_store.kf_begin_sync(self.hub, account)
        if not got:
            return 0  # the holder was told to pull again
        taken = 0
        try:
            while True:
                while True:
                    body: dict[str, Any] = {"limit": 1000, "open_kfid": account.open_kfid}
                    if cursor:
                        body["cursor"] = cursor
                    if callback_token:
                        body["token"] = callback_token
                    data = await self.api.call(account, "POST", "/cgi-bin/kf/sync_msg", json_body=body)
                    page = [parse_kf(account, item) for item in data.get("msg_list") or [] if isinstance(item, dict)]
                    kept = [p for p in page if p is not None and p.user_id and self._storable(account, p)]
                    await self._store(account, kept)
                    taken += len(kept)
                    # The cursor moves only after the batch is stored: a crash re-reads, ingest dedups.
                    if data.get("next_cursor"):
                        cursor = str(data["next_cursor"])
                        await wechat_store.kf_save_cursor(self.hub, account, cursor)
                    if not data.get("has_more"):
                        break
                if not await wechat_store.kf_end_sync(self.hub, account):
                    return taken
        except BaseException:
            logger.exception("wecom kf account %s: sync_msg pull failed; the next callback resumes", account.id)
            await wechat_store.kf_release(self.hub, account)
            raise

    # --- replies ------------------------------------------------------------------------------
    async def send(self, message: OutboundMessage) -> str:
        try:
            kind, _app, _kfid, user_id = wechat_store.split_external_id(message.external_id)
        except ValueError:
            raise DeliveryError("this ticket's customer is not a WeChat user", retry=False,
                                code="not_a_wechat_customer") from None
        account = await wechat_store.account_for_identity(self.hub, message.tenant_id, message.external_id)
        if account is None:
            raise DeliveryError("the WeChat account this customer wrote to is no longer configured", retry=False,
                                code="wechat_account_missing")
        # Uploads first: a file the platform refuses fails the reply before any part of it is sent.
        payloads = await self._payloads(account, message)
        for n, (payload, uploaded) in enumerate(payloads):
            opened = await wechat_store.reserve_reply(self.hub, account, user_id, message.external_id)
            try:
                if kind == "kf":
                    await self.api.call(account, "POST", "/cgi-bin/kf/send_msg", json_body={
                        "touser": user_id, "open_kfid": account.open_kfid,
                        # WeCom de-duplicates on msgid: a redelivery after a crash is not sent twice.
                        "msgid": f"ch{message.message_id}x{n}", **payload})
                else:
                    await self.api.call(account, "POST", "/cgi-bin/message/custom/send",
                                        json_body={"touser": user_id, **payload})
            except ApiError as exc:
                if exc.errcode == QUOTA_EXCEEDED:
                    await wechat_store.exhaust_reply(self.hub, account, user_id, opened)
                elif exc.errcode != WINDOW_CLOSED:
                    await wechat_store.release_reply(self.hub, account, user_id, opened)
                if exc.errcode == INVALID_MEDIA_ID and uploaded is not None:
                    # Our upload expired on the platform sooner than it said: upload again on the retry.
                    await wechat_store.forget_uploads(self.hub, account, [uploaded])
                    raise DeliveryError("WeChat no longer had an uploaded file; uploading it again", retry=True,
                                        code="media_expired") from exc
                raise self._delivery_error(exc) from exc
            except PlatformUnavailable as exc:
                await wechat_store.release_reply(self.hub, account, user_id, opened)
                raise unreachable(exc) from exc
            except BaseException:
                await wechat_store.release_reply(self.hub, account, user_id, opened)
                raise
        return f"wechat:{message.message_id}"

    async def _payloads(self, account: AccountConfig, message: OutboundMessage) -> list[Payload]:
        """Text, plus media: our own files (uploaded, or the earlier upload reused) and media already on
        the platform (``wechat-media:<type>:<media_id>``). What WeChat cannot show as media on this
        kind of account goes out as a link in the text. Each payload comes with the id of the
        attachment whose upload it sends, if any."""
        text = message.text
        media: list[Payload] = []
        for att in message.attachments:
            url = att.url or ""
            if att.id is not None:
                mtype = media_type(account.kind, att.content_type)
                if mtype is not None:
                    media_id = await self._media_id(account, message.tenant_id, att, mtype)
                    media.append((media_payload(mtype, media_id), att.id))
                    continue
                # An Official Account has no file messages: the customer gets the signed link.
                url = await attachments.public_url(self.hub, message.tenant_id, att.id)
            elif url.startswith("wechat-media:"):
                _, mtype, media_id = url.split(":", 2)
                if mtype in MEDIA_LIMITS:
                    media.append((media_payload(mtype, media_id), None))
                    continue
            if url:
                text = f"{text}\n{att.name}: {url}" if text.strip() else f"{att.name}: {url}"
        out: list[Payload] = (
            [({"msgtype": "text", "text": {"content": text}}, None)] if text.strip() else [])
        return out + media

    async def _media_id(self, account: AccountConfig, tenant_id: int, att: Attachment, mtype: str) -> str:
        """The platform's media_id for one of our files: uploaded once, reused while the platform keeps it."""
        assert att.id is not None
        limit = MEDIA_LIMITS[mtype]
        if (att.size or 0) > limit:
            raise DeliveryError(f"{att.name} is {size_mb(att.size or 0)}; WeChat takes a {mtype} of at most"
                                f" {size_mb(limit)}", retry=False, code="media_too_large")
        found = await wechat_store.uploaded_media(self.hub, account, att.id, mtype)
        if found is not None:
            return found
        try:
            file = await attachments.load(self.hub, tenant_id, att.id)
        except NotFound:
            raise DeliveryError(f"the attached file {att.name} no longer exists", retry=False,
                                code="attachment_missing") from None
        started = utcnow()
        try:
            media_id = await self.api.upload(account, mtype, file.name, file.content_type, file.data)
        except ApiError as exc:
            raise self._delivery_error(exc) from exc
        except PlatformUnavailable as exc:
            raise unreachable(exc) from exc
        await wechat_store.remember_upload(self.hub, account, att.id, mtype, media_id, started)
        return media_id

    @staticmethod
    def _delivery_error(exc: ApiError) -> DeliveryError:
        code = exc.errcode
        if code == WINDOW_CLOSED:
            return DeliveryError("WeChat refused the reply: more than 48 hours since the customer's last message",
                                 retry=False, code="reply_window_closed")
        if code == QUOTA_EXCEEDED:
            return DeliveryError("WeChat refused the reply: the 5 replies allowed after the customer's last"
                                 " message are used up", retry=False, code="reply_quota_exceeded")
        if code == SYSTEM_BUSY:
            return DeliveryError("WeChat is busy (-1); retrying", retry=True, code="platform_busy")
        if code in (40001, 40014, 42001):
            return DeliveryError("WeChat refused the access token twice", retry=True, code="token_invalid")
        if code in UNREACHABLE:
            return DeliveryError(f"WeChat cannot deliver: {UNREACHABLE[code]}", retry=False,
                                 code="recipient_unreachable")
        return DeliveryError(f"WeChat refused the reply (errcode {code}: {exc.errmsg})", retry=False,
                             code=f"wechat_error_{code}")
