"""The WeChat web-hooks: Official Account pushes and WeCom kf callbacks, on the tenant's domain.

Each checks the signature, decrypts in safe mode, parses, lands the message in the inbox (through
:meth:`WeChatConnector.store`) and answers ``success``; nothing slow happens before the answer,
because the platform pushes again after 5 s without one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from aiohttp import web
from wechatpy.crypto import WeChatCrypto
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.utils import check_signature

from connectors.wechat import store
from connectors.wechat.connector import SUCCESS, WeChatConnector
from connectors.wechat.inbound import parse_oa
from connectors.wechat.schemas import KF_PUSH_QUERY, KF_VERIFY_QUERY, OA_PUSH_QUERY, OA_VERIFY_QUERY
from connectors.wechat.store import MAX_KEY, AccountConfig
from connectors.wechat.xmlparse import NotWeChatXml, parse_xml, text
from core.errors import DomainError, Forbidden, NotFound, TooLarge
from web.api import RouteTable, WordId
from web.http import HUB, tenant_of, word_param

logger = logging.getLogger(__name__)

ROUTES = RouteTable("wechat")
P = ParamSpec("P")
T = TypeVar("T")


def connector_of(request: web.Request) -> WeChatConnector:
    conn = request.app[HUB].connectors[WeChatConnector.kind]
    assert isinstance(conn, WeChatConnector)
    return conn


class BadPush(DomainError):
    """A push that is not well-formed WeChat XML (400, unlike a valid but unacceptable body's 422)."""

    status = 400
    code = "invalid_xml"


def _wechat_xml(what: str, read: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``read`` over a push's XML (parsing it, or reading fields that must be text): what is not
    WeChat XML (a declaration, too deep, a nested or repeated field) is a 400."""
    try:
        return read(*args, **kwargs)
    except NotWeChatXml as exc:
        raise BadPush(f"{what} is not WeChat XML: {exc}") from None


def _xml(raw: bytes | str, what: str = "the push") -> dict[str, Any]:
    return _wechat_xml(what, parse_xml, raw)


def _envelope(raw: bytes) -> dict[str, Any]:
    """The outer XML of an encrypted push: well-formed, with an Encrypt element (else 400)."""
    data = _xml(raw)
    if not isinstance(data.get("Encrypt"), str) or not data["Encrypt"]:
        raise BadPush("an encrypted push needs its Encrypt element")
    return data


# --- common edge checks -------------------------------------------------------------------
async def _account(conn: WeChatConnector, request: web.Request, kind: str) -> AccountConfig:
    key = word_param(request, "key", max_length=MAX_KEY)
    account = await store.account_by_key(conn.hub, tenant_of(request).id, key)
    if account is None or account.kind != kind:
        raise NotFound("no such WeChat account here", code="account_not_found")
    return account


async def _body(conn: WeChatConnector, request: web.Request) -> bytes:
    limit = conn.settings.max_push_bytes
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"a WeChat push is at most {limit} bytes", code="push_too_large")
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise TooLarge(f"a WeChat push is at most {limit} bytes", code="push_too_large")
    if not raw.strip():
        raise BadPush("empty push")
    return raw


def _query(request: web.Request, *names: str) -> list[str]:
    values = [request.query.get(n, "") for n in names]
    if not all(values):
        raise Forbidden("the push is not signed", code="invalid_signature")
    return values


def _signed_query(conn: WeChatConnector, request: web.Request, *names: str) -> list[str]:
    """A push's signature parameters (``timestamp`` among them), refused when the timestamp is
    outside the window: a signature seen once cannot be replayed later, with this body or another
    (the plain signature does not cover the body)."""
    values = _query(request, *names)
    stamp = request.query["timestamp"]
    window = conn.settings.timestamp_window
    if not (stamp.isascii() and stamp.isdigit() and abs(time.time() - int(stamp)) <= window):
        raise Forbidden(f"the push's timestamp is not within {window} s of now", code="stale_timestamp")
    return values


# --- Official Account ---------------------------------------------------------------------
@ROUTES.route("GET", "/wechat/oa/{key}", auth=False,
              summary="Official Account URL verification (the platform calls it): echoes echostr",
              query=OA_VERIFY_QUERY, media_type="text/plain", errors=(403,), path_params={"key": WordId(MAX_KEY)})
async def oa_verify(request: web.Request) -> web.Response:
    """URL verification: echo ``echostr`` when the signature is ours (the same in every mode)."""
    conn = connector_of(request)
    account = await _account(conn, request, "oa")
    signature, timestamp, nonce = _query(request, "signature", "timestamp", "nonce")
    try:
        check_signature(account.token, signature, timestamp, nonce)
    except InvalidSignatureException:
        logger.info("wechat account %s: URL verification with a bad signature", account.id)
        raise Forbidden("bad signature", code="invalid_signature") from None
    return web.Response(text=request.query.get("echostr", ""))


@ROUTES.route("POST", "/wechat/oa/{key}", auth=False, raw_body=True,
              summary="Official Account push: a message or event, plain or AES (the platform calls it)",
              query=OA_PUSH_QUERY, media_type="text/plain", errors=(400, 403), path_params={"key": WordId(MAX_KEY)})
async def oa_push(request: web.Request) -> web.Response:
    conn = connector_of(request)
    account = await _account(conn, request, "oa")
    raw = await _body(conn, request)
    signature, timestamp, nonce = _signed_query(conn, request, "signature", "timestamp", "nonce")
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
    parsed = _wechat_xml("the push", parse_oa, account, data)
    if not parsed.user_id:
        raise BadPush("the push has no FromUserName")
    await conn.store(account, [parsed])
    # Safe mode accepts a plain "success" as well: there is nothing to reply synchronously.
    return web.Response(text=SUCCESS)


# --- WeCom kf -----------------------------------------------------------------------------
def _wecom(account: AccountConfig) -> WeComCrypto:
    assert account.aes_key is not None
    return WeComCrypto(account.token, account.aes_key, account.app_id)


@ROUTES.route("GET", "/wechat/kf/{key}", auth=False,
              summary="WeCom kf URL verification (the platform calls it): the decrypted echostr",
              query=KF_VERIFY_QUERY, media_type="text/plain", errors=(403,), path_params={"key": WordId(MAX_KEY)})
async def kf_verify(request: web.Request) -> web.Response:
    """WeCom's URL check: the echostr is encrypted and signed with msg_signature."""
    conn = connector_of(request)
    account = await _account(conn, request, "kf")
    signature, timestamp, nonce, echostr = _query(request, "msg_signature", "timestamp", "nonce", "echostr")
    try:
        plain = _wecom(account).check_signature(signature, timestamp, nonce, echostr)
    except InvalidSignatureException:
        raise Forbidden("bad signature", code="invalid_signature") from None
    except Exception:
        raise Forbidden("the echostr cannot be decrypted for this account", code="invalid_encryption") from None
    return web.Response(text=plain if isinstance(plain, str) else plain.decode())


@ROUTES.route("POST", "/wechat/kf/{key}", auth=False, raw_body=True,
              summary="WeCom kf callback: new messages to pull (the platform calls it)",
              query=KF_PUSH_QUERY, media_type="text/plain", errors=(400, 403), path_params={"key": WordId(MAX_KEY)})
async def kf_callback(request: web.Request) -> web.Response:
    conn = connector_of(request)
    account = await _account(conn, request, "kf")
    raw = await _body(conn, request)
    signature, timestamp, nonce = _signed_query(conn, request, "msg_signature", "timestamp", "nonce")
    envelope = _envelope(raw)
    try:
        xml = _wecom(account).decrypt_message(envelope, signature, timestamp, nonce)
    except InvalidSignatureException:
        raise Forbidden("bad signature", code="invalid_signature") from None
    except Exception:
        raise Forbidden("the callback cannot be decrypted for this account", code="invalid_encryption") from None
    data = _xml(xml, "the callback")
    event = _wechat_xml("the callback", text, data, "Event")
    if event == "kf_msg_or_event":
        # The callback carries no message: pull them (after answering) with its short-lived token.
        conn.background(conn.kf_sync(account, _wechat_xml("the callback", text, data, "Token")))
    else:
        logger.info("wecom kf account %s: callback event %r acknowledged", account.id, event)
    return web.Response(text=SUCCESS)
