"""Pure parsing: a WeChat push (or a WeCom kf message) into the fields of an InboundMessage.

Nothing here does I/O, so every message kind is easy to test and the webhook stays fast.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from connectors.wechat.store import AccountConfig
from connectors.wechat.xmlparse import text
from core.channels import Attachment

logger = logging.getLogger(__name__)

MEDIA_TYPES = {
    "image": ("image/jpeg", "jpg"),
    "voice": ("audio/amr", "amr"),
    "video": ("video/mp4", "mp4"),
    "shortvideo": ("video/mp4", "mp4"),
    "file": ("application/octet-stream", "bin"),
}


@dataclass(frozen=True)
class Parsed:
    user_id: str
    text: str
    channel_message_id: str
    # (kind, media id) to fetch through the media API once the message is stored.
    media: tuple[tuple[str, str], ...] = ()
    attachments: tuple[Attachment, ...] = ()
    unknown: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def media_url(account: AccountConfig, media_id: str) -> str:
    """Where agents read a customer's media (admin API, signed-in agents only)."""
    return f"/api/v1/wechat/media/{account.key}/{quote(media_id, safe='')}"


def _attachment(account: AccountConfig, kind: str, media_id: str, name_hint: str, fmt: str | None = None) -> Attachment:
    content_type, ext = MEDIA_TYPES.get(kind, MEDIA_TYPES["file"])
    if kind == "voice" and fmt:
        ext = fmt.lower()
        content_type = {"amr": "audio/amr", "speex": "audio/speex", "mp3": "audio/mpeg"}.get(ext, content_type)
    return Attachment(name=f"{kind}-{name_hint}.{ext}", content_type=content_type, url=media_url(account, media_id))


def _s(data: dict[str, Any], key: str) -> str:
    """A field the message is made of: text, never a nested element's repr (NotWeChatXml)."""
    return text(data, key).strip()


def _short_hash(value: str) -> str:
    return hashlib.sha1(value.encode()).hexdigest()[:10]


def parse_oa(account: AccountConfig, data: dict[str, Any]) -> Parsed:
    """One Official Account push: the fields of its XML (connectors.wechat.xmlparse); raises
    NotWeChatXml when a field it reads is not text."""
    msg_type = _s(data, "MsgType").lower()
    user = _s(data, "FromUserName")
    create_time = _s(data, "CreateTime")
    msg_id = _s(data, "MsgId") or _s(data, "MsgID")
    prefix = f"oa:{account.app_id}"
    if msg_type == "event":
        event = _s(data, "Event")
        key = _s(data, "EventKey")
        if event.lower() == "subscribe" and key.startswith("qrscene_"):
            # A follow through a QR code: named as wechatpy's parser names it, so the message id
            # made below stays what it was when pushes were parsed by wechatpy.
            event, key = "subscribe_scan", key[len("qrscene_"):]
        # Events carry no MsgId: sender + CreateTime + event (+ key) is what identifies a retry.
        cmid = f"{prefix}:ev:{user}:{create_time}:{event.lower()}"
        if key:
            cmid += f":{_short_hash(key)}"
        return _event(user, cmid, event, key, data)
    cmid = f"{prefix}:{msg_id}" if msg_id and msg_id != "0" else f"{prefix}:t:{user}:{create_time}:{msg_type}"
    if msg_type == "text":
        return Parsed(user, _s(data, "Content"), cmid)
    if msg_type in ("image", "voice", "video", "shortvideo"):
        media_id = _s(data, "MediaId")
        if not media_id:
            return Parsed(user, f"[{msg_type}] (no media id)", cmid, unknown=True)
        text = f"[{msg_type}]"
        if msg_type == "voice" and _s(data, "Recognition"):
            text = f"[voice] {_s(data, 'Recognition')}"
        att = _attachment(account, msg_type, media_id, msg_id or create_time, _s(data, "Format") or None)
        return Parsed(user, text, cmid, media=((msg_type, media_id),), attachments=(att,))
    if msg_type == "location":
        label = _s(data, "Label")
        text = f"[location] {_s(data, 'Location_X')},{_s(data, 'Location_Y')}" + (f" {label}" if label else "")
        return Parsed(user, text, cmid)
    if msg_type == "link":
        parts = [f"[link] {_s(data, 'Title')}", _s(data, "Description"), _s(data, "Url")]
        return Parsed(user, "\n".join(p for p in parts if p), cmid)
    logger.info("wechat account %s: unsupported message type %r kept as such", account.id, msg_type)
    return Parsed(user, f"[unsupported WeChat message: {msg_type or 'no type'}]", cmid, unknown=True)


def _event(user: str, cmid: str, event: str, key: str, data: dict[str, Any]) -> Parsed:
    name = event.lower()
    if name in ("subscribe", "subscribe_scan"):
        scene = key if name == "subscribe_scan" else ""
        return Parsed(user, "[event] subscribe" + (f" (scene {scene})" if scene else ""), cmid)
    if name == "unsubscribe":
        return Parsed(user, "[event] unsubscribe", cmid)
    if name == "scan":
        return Parsed(user, f"[event] scan {key}".rstrip(), cmid)
    if name == "click":
        return Parsed(user, f"[event] menu click {key}".rstrip(), cmid)
    if name == "view":
        return Parsed(user, f"[event] menu view {key}".rstrip(), cmid)
    if name == "location":
        return Parsed(user, f"[event] location {_s(data, 'Latitude')},{_s(data, 'Longitude')}", cmid)
    logger.info("wechat: unsupported event %r kept as such", event)
    return Parsed(user, f"[unsupported WeChat event: {event or 'no event'}]", cmid, unknown=True)


# --- WeCom kf (sync_msg items) ----------------------------------------------------------------

ORIGIN_CUSTOMER = 3
ORIGIN_SYSTEM = 4


def parse_kf(account: AccountConfig, item: dict[str, Any]) -> Parsed | None:
    """One item of sync_msg's msg_list; None for what is not the customer's (our own replies)."""
    origin = item.get("origin")
    msg_type = str(item.get("msgtype") or "")
    msgid = str(item.get("msgid") or "")
    cmid = f"kf:{account.app_id}:{msgid}"
    if origin == ORIGIN_SYSTEM or msg_type == "event":
        event = item.get("event") or {}
        user = str(event.get("external_userid") or item.get("external_userid") or "")
        if not user:
            return None
        return Parsed(user, f"[event] {event.get('event_type') or 'unknown'}", cmid)
    if origin != ORIGIN_CUSTOMER:
        return None
    user = str(item.get("external_userid") or "")
    raw_body = item.get(msg_type)
    body: dict[str, Any] = raw_body if isinstance(raw_body, dict) else {}
    if msg_type == "text":
        return Parsed(user, str(body.get("content") or ""), cmid)
    if msg_type in ("image", "voice", "video", "file"):
        media_id = str(body.get("media_id") or "")
        att = _attachment(account, msg_type, media_id, msgid[:16])
        return Parsed(user, f"[{msg_type}]", cmid, media=((msg_type, media_id),), attachments=(att,))
    if msg_type == "location":
        name = str(body.get("name") or "")
        address = str(body.get("address") or "")
        place = " ".join(p for p in (name, address) if p)
        text = f"[location] {body.get('latitude')},{body.get('longitude')}" + (f" {place}" if place else "")
        return Parsed(user, text, cmid)
    if msg_type == "link":
        parts = [f"[link] {body.get('title') or ''}", str(body.get("desc") or ""), str(body.get("url") or "")]
        return Parsed(user, "\n".join(p for p in parts if p), cmid)
    logger.info("wecom kf account %s: unsupported message type %r kept as such", account.id, msg_type)
    return Parsed(user, f"[unsupported WeChat message: {msg_type or 'no type'}]", cmid, unknown=True)
