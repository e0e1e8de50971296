# ruff: noqa: RUF001 - Chinese is written with full-width punctuation; these are its texts.
"""The WeChat connector: Official Account webhooks, WeCom kf callbacks, and replies.

Inbound (``/wechat/oa/{key}`` and ``/wechat/kf/{key}`` on the tenant's domain, in routes.py):
check the signature, decrypt in safe mode, parse, land it in the inbox (:meth:`store`; core.inbox:
a group commit of a few milliseconds, idempotent on the channel message id made from MsgId, or
sender + CreateTime + event), answer ``success``; the inbox makes the ticket right after. The
platform retries a push it got no answer to within 5 s, so nothing slow happens before the answer:
media are fetched after it, in the background (and on first read if that failed).

Outbound: ``send`` goes through the customer-service message API (Official Account) or kf
send_msg (WeCom), after counting the reply against the customer's 48-hour window. Files agents
attached are uploaded as temporary media first (once per account and file, reused for the 3 days
the platform keeps them); what the account cannot show as media goes as a signed link.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from connectors.wechat import store as wechat_store
from connectors.wechat.api import ApiError, PlatformUnavailable, WeChatApi
from connectors.wechat.inbound import Parsed, parse_kf
from connectors.wechat.outbound import (
    INVALID_MEDIA_ID,
    MEDIA_LIMITS,
    Payload,
    media_payload,
    media_type,
    size_mb,
    unreachable,
)
from connectors.wechat.settings import WeChatSettings
from connectors.wechat.store import AccountConfig
from core import attachments, csat
from core.channels import Attachment, Connector, InboundMessage, OutboundMessage, SurveyInvite
from core.errors import DeliveryError, DomainError, NotFound
from core.hub import Hub
from core.ingest import check_message
from core.models import utcnow

logger = logging.getLogger(__name__)

SUCCESS = "success"
# What the platform's errcodes mean for a reply.
WINDOW_CLOSED = 45015
QUOTA_EXCEEDED = 45047
SYSTEM_BUSY = -1
UNREACHABLE = {40003: "not a follower of this account", 43004: "the customer unfollowed the account",
               43019: "the customer blocked the account"}


# The survey's words (core.csat): one message in both languages, since the hub does not know which
# the customer reads.
SURVEY_TEXT = ("请为本次服务评分：回复数字 1（很差）到 5（很好），或打开链接评分并留言：\n{url}\n"
               "How did we do? Reply with a number from 1 (poor) to 5 (great), or rate us here: {url}")


class WeChatConnector(Connector):
    kind = "wechat"
    surveys = True

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self.settings = hub.settings.channel(self.kind, WeChatSettings)
        self.api = WeChatApi(hub, self.settings)
        self._tasks: set[asyncio.Task[Any]] = set()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.api.close()

    def background(self, coro: Coroutine[Any, Any, object]) -> None:
        """Work that follows an answer (media prefetch, a kf pull): cancelled when the hub stops."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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

    async def store(self, account: AccountConfig, parsed: list[Parsed]) -> None:
        """Into the inbox (durable when this returns); tickets are made of it right after. A reply of
        a bare rating (1-5, core.csat.reply_rating) while the customer's survey is open answers the
        survey instead, and is no message."""
        parsed = [p for p in parsed if not await self._rating(account, p)]
        new = await self.hub.inbox.accept([self._inbound(account, p) for p in parsed])
        if self.settings.prefetch_media:
            for p, is_new in zip(parsed, new, strict=True):
                if is_new:
                    for _kind, media_id in p.media:
                        self.background(self._prefetch(account, media_id))

    async def _rating(self, account: AccountConfig, parsed: Parsed) -> bool:
        if parsed.media or csat.reply_rating(parsed.text) is None:
            return False  # the common case: no query at all
        return await csat.answer_reply(self.hub, account.tenant_id, self.kind, account.external_id(parsed.user_id),
                                       parsed.text, parsed.channel_message_id)

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
                    await self.store(account, kept)
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
                        "msgid": f"{message.context.get('msgid', f'ch{message.message_id}')}x{n}", **payload})
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

    async def send_survey(self, survey: SurveyInvite) -> None:
        """The survey as a text message (within the same 48-hour window and quota as replies)."""
        await self.send(OutboundMessage(
            tenant_id=survey.tenant_id, channel=self.kind, external_id=survey.external_id,
            text=SURVEY_TEXT.format(url=survey.url), message_id=0, ticket_id=survey.ticket_id,
            # Its own key for WeCom's de-duplication (never a reply's).
            context={"msgid": f"csat{survey.survey_id}"}))

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
