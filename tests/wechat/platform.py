"""The WeChat platform as seen from our side of the wire, for tests and the benchmark.

* :class:`Pusher` builds pushes exactly as the platform does: the recorded XML under
  tests/fixtures/wechat, signed (sha1 of the sorted token, timestamp and nonce) and, in compat
  and safe modes, encrypted with the account's EncodingAESKey by wechatpy's own crypto, with the
  query string the platform adds (signature, timestamp, nonce, openid, encrypt_type, msg_signature).
* :class:`StandIn` is a loopback stand-in for the WeChat and WeCom HTTP APIs: tokens, the
  customer-service message API, media (download and temporary upload), and WeCom kf sync_msg /
  send_msg. It records every call and can be scripted to fail.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import re
import secrets
import string
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from wechatpy.crypto import WeChatCrypto
from wechatpy.enterprise.crypto import PrpCrypto
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "wechat"


def new_aes_key() -> str:
    """A real EncodingAESKey: 43 characters, base64 of 32 random bytes without the '='."""
    return base64.b64encode(os.urandom(32)).decode()[:43]


def new_app_id() -> str:
    return "wx" + secrets.token_hex(8)


def new_openid() -> str:
    alphabet = string.ascii_letters + string.digits + "_-"
    return "o" + "".join(random.choice(alphabet) for _ in range(27))


def fixture(name: str, **values: Any) -> str:
    return string.Template((FIXTURES / f"{name}.xml").read_text(encoding="utf-8")).substitute(values)


def sign(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


@dataclass
class Push:
    query: dict[str, str]
    body: bytes


@dataclass
class Pusher:
    app_id: str
    token: str
    aes_key: str | None = None
    mode: str = "plain"
    original_id: str = "gh_0123456789ab"
    _msgid: int = field(default_factory=lambda: random.randint(10**16, 9 * 10**16))

    def next_msgid(self) -> int:
        self._msgid += 1
        return self._msgid

    def xml(self, kind: str, openid: str, **values: Any) -> str:
        values.setdefault("to", self.original_id)
        values.setdefault("time", int(time.time()))
        values.setdefault("msgid", self.next_msgid())
        values.setdefault("content", "hello")
        values.setdefault("media_id", "MEDIA_" + secrets.token_hex(6))
        return fixture(kind, openid=openid, **values)

    def push(self, xml: str, openid: str, *, timestamp: str | None = None, nonce: str | None = None) -> Push:
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or str(random.randint(10**8, 10**9))
        query = {"signature": sign(self.token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
                 "openid": openid}
        if self.mode == "plain":
            return Push(query, xml.encode())
        crypto = WeChatCrypto(self.token, self.aes_key, self.app_id)
        envelope = crypto.encrypt_message(xml, nonce, timestamp)
        encrypt = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>", envelope).group(1)  # type: ignore[union-attr]
        msg_signature = re.search(r"<MsgSignature><!\[CDATA\[(.*?)\]\]>", envelope).group(1)  # type: ignore[union-attr]
        query.update(encrypt_type="aes", msg_signature=msg_signature)
        if self.mode == "safe":
            body = (f"<xml>\n<ToUserName><![CDATA[{self.original_id}]]></ToUserName>\n"
                    f"<Encrypt><![CDATA[{encrypt}]]></Encrypt>\n</xml>")
        else:  # compat: the plaintext fields and the ciphertext side by side
            body = xml.replace("</xml>", f"<Encrypt><![CDATA[{encrypt}]]></Encrypt>\n</xml>")
        return Push(query, body.encode())

    def message(self, kind: str, openid: str, **values: Any) -> Push:
        return self.push(self.xml(kind, openid, **values), openid)


def wecom_callback(corp_id: str, token: str, aes_key: str, sync_token: str, open_kfid: str, *,
                   timestamp: str | None = None) -> Push:
    """WeCom's kf_msg_or_event callback: always encrypted, signed with msg_signature."""
    timestamp, nonce = timestamp or str(int(time.time())), str(random.randint(10**8, 10**9))
    xml = fixture("kf_msg_or_event", to=corp_id, time=timestamp, token=sync_token, open_kfid=open_kfid)
    envelope = WeComCrypto(token, aes_key, corp_id).encrypt_message(xml, nonce, timestamp)
    encrypt = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>", envelope).group(1)  # type: ignore[union-attr]
    msg_signature = re.search(r"<MsgSignature><!\[CDATA\[(.*?)\]\]>", envelope).group(1)  # type: ignore[union-attr]
    body = (f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt>"
            f"<AgentID><![CDATA[]]></AgentID></xml>")
    return Push({"msg_signature": msg_signature, "timestamp": timestamp, "nonce": nonce}, body.encode())


def oa_verification(token: str, echostr: str) -> Push:
    """The Official Account platform's URL check: a GET signed as a push is, echoed if ours."""
    timestamp, nonce = str(int(time.time())), str(random.randint(10**8, 10**9))
    return Push({"signature": sign(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
                 "echostr": echostr}, b"")


def wecom_verification(corp_id: str, token: str, aes_key: str, echo: str) -> Push:
    """WeCom's URL check: ``echo`` encrypted with the EncodingAESKey and signed with msg_signature;
    the answer is ``echo`` decrypted."""
    timestamp, nonce = str(int(time.time())), str(random.randint(10**8, 10**9))
    echostr = PrpCrypto(base64.b64decode(aes_key + "=")).encrypt(echo, corp_id).decode()
    return Push({"msg_signature": sign(token, timestamp, nonce, echostr), "timestamp": timestamp, "nonce": nonce,
                 "echostr": echostr}, b"")


class StandIn:
    """api.weixin.qq.com under /oa and qyapi.weixin.qq.com under /qy, on loopback."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}  # app id / corp id -> secret
        self.tokens: dict[str, str] = {}  # valid token -> app id
        self.token_requests: list[str] = []  # app ids, in order
        self.sent: list[dict[str, Any]] = []  # customer-service messages accepted
        self.attempts: list[dict[str, Any]] = []  # every send attempt with its outcome
        # touser -> what to do on the next sends: an errcode (int), "http500" or "drop" (cut the line).
        self.script: dict[str, list[Any]] = {}
        self.media: dict[str, tuple[str, bytes]] = {}
        self.kf_messages: dict[str, list[dict[str, Any]]] = {}  # open_kfid -> all messages, in order
        self.sync_calls: list[dict[str, Any]] = []
        self.kf_sent: list[dict[str, Any]] = []
        # Temporary media uploaded (media/upload): one entry per accepted upload, and every attempt.
        self.uploads: list[dict[str, Any]] = []
        self.upload_attempts: list[dict[str, Any]] = []
        # file name -> what to do on its next uploads (as ``script``).
        self.upload_script: dict[str, list[Any]] = {}
        self._n = 0

    def app(self) -> web.Application:
        app = web.Application()
        for prefix in ("/oa", "/qy"):
            app.router.add_get(f"{prefix}/cgi-bin/media/get", self.media_get)
            app.router.add_post(f"{prefix}/cgi-bin/media/upload", self.media_upload)
        app.router.add_get("/oa/cgi-bin/token", self.oa_token)
        app.router.add_post("/oa/cgi-bin/message/custom/send", self.custom_send)
        app.router.add_get("/qy/cgi-bin/gettoken", self.wecom_token)
        app.router.add_post("/qy/cgi-bin/kf/sync_msg", self.kf_sync)
        app.router.add_post("/qy/cgi-bin/kf/send_msg", self.kf_send)
        return app

    def expire_tokens(self, app_id: str) -> None:
        """What the platform does when a token is refreshed elsewhere or times out: it stops working."""
        for tok, owner in list(self.tokens.items()):
            if owner == app_id:
                del self.tokens[tok]

    def _issue(self, app_id: str, secret: str) -> dict[str, Any]:
        self.token_requests.append(app_id)
        if self.secrets.get(app_id) != secret:
            return {"errcode": 40125, "errmsg": "invalid appsecret"}
        self._n += 1
        tok = f"TOKEN{self._n}_{secrets.token_hex(8)}"
        self.tokens[tok] = app_id
        return {"access_token": tok, "expires_in": 7200}

    async def oa_token(self, request: web.Request) -> web.Response:
        q = request.query
        return web.json_response(self._issue(q.get("appid", ""), q.get("secret", "")))

    async def wecom_token(self, request: web.Request) -> web.Response:
        q = request.query
        return web.json_response(self._issue(q.get("corpid", ""), q.get("corpsecret", "")))

    def _token_ok(self, request: web.Request) -> bool:
        return request.query.get("access_token", "") in self.tokens

    async def _scripted(self, request: web.Request, touser: str, body: dict[str, Any], *,
                        script: dict[str, list[Any]] | None = None,
                        attempts: list[dict[str, Any]] | None = None) -> web.Response | None:
        steps = (self.script if script is None else script).get(touser) or []
        step = steps.pop(0) if steps else None
        outcome = step if step is not None else "ok"
        (self.attempts if attempts is None else attempts).append({**body, "outcome": outcome})
        if step == "drop":
            assert request.transport is not None
            request.transport.close()  # the connection dies mid-request: a network failure
            return web.Response(status=500)
        if step == "http500":
            return web.Response(status=500, text="upstream error")
        if isinstance(step, int):
            return web.json_response({"errcode": step, "errmsg": f"scripted {step}"})
        return None

    async def custom_send(self, request: web.Request) -> web.Response:
        if not self._token_ok(request):
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"})
        body = await request.json()
        failed = await self._scripted(request, body.get("touser", ""), body)
        if failed is not None:
            return failed
        self.sent.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def media_get(self, request: web.Request) -> web.Response:
        if not self._token_ok(request):
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        found = self.media.get(request.query.get("media_id", ""))
        if found is None:
            return web.json_response({"errcode": 40007, "errmsg": "invalid media_id"})
        return web.Response(body=found[1], content_type=found[0])

    async def media_upload(self, request: web.Request) -> web.Response:
        """Temporary media: multipart with the file in the ``media`` field, answered with its media_id."""
        if not self._token_ok(request):
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        form = await request.post()
        media = form.get("media")
        if not isinstance(media, web.FileField):
            return web.json_response({"errcode": 41005, "errmsg": "media data missing"})
        data = media.file.read()
        upload = {"base": request.path.split("/")[1], "type": request.query.get("type", ""),
                  "filename": media.filename, "content_type": media.content_type, "size": len(data),
                  "sha256": hashlib.sha256(data).hexdigest()}
        failed = await self._scripted(request, media.filename, upload, script=self.upload_script,
                                      attempts=self.upload_attempts)
        if failed is not None:
            return failed
        self._n += 1
        media_id = f"UPLOADED{self._n}_{secrets.token_hex(6)}"
        self.media[media_id] = (media.content_type, data)
        self.uploads.append({**upload, "media_id": media_id})
        return web.json_response({"errcode": 0, "errmsg": "ok", "type": upload["type"], "media_id": media_id,
                                  "created_at": int(time.time())})

    async def kf_sync(self, request: web.Request) -> web.Response:
        if not self._token_ok(request):
            return web.json_response({"errcode": 40014, "errmsg": "invalid access_token"})
        body = await request.json()
        self.sync_calls.append(body)
        messages = self.kf_messages.get(body.get("open_kfid", ""), [])
        start = int(body.get("cursor") or 0)
        limit = int(body.get("limit") or 1000)
        batch = messages[start:start + limit]
        end = start + len(batch)
        return web.json_response({"errcode": 0, "errmsg": "ok", "next_cursor": str(end),
                                  "has_more": 1 if end < len(messages) else 0, "msg_list": batch})

    async def kf_send(self, request: web.Request) -> web.Response:
        if not self._token_ok(request):
            return web.json_response({"errcode": 40014, "errmsg": "invalid access_token"})
        body = await request.json()
        failed = await self._scripted(request, body.get("touser", ""), body)
        if failed is not None:
            return failed
        self.kf_sent.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": body.get("msgid") or "m1"})
