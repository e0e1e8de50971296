"""Web chat: an embeddable widget (one script tag), a customer websocket and an HTTP fallback.

A visitor is known by a random id the server hands out and the widget keeps in localStorage, so a
page reload is the same conversation. Protocol: docs/webchat-protocol.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import BaseModel, ConfigDict

from connectors.base import Connector, InboundMessage, OutboundMessage
from core.attachments import for_customer
from core.conversations import customer_history
from core.errors import DomainError, InvalidInput
from core.ingest import ingest
from core.models import MAX_BIG_ID
from core.serialize import iso

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
HELLO_TIMEOUT = 15.0
# Web chat endpoints carry no credentials (the visitor id is in the body), so any origin may call them.
CORS = {"Access-Control-Allow-Origin": "*"}


def visitor_topic(tenant_id: int, visitor_id: str) -> str:
    return f"visitor:{tenant_id}:{visitor_id}"


def new_visitor_id() -> str:
    return secrets.token_urlsafe(18)


def check_visitor(value: Any) -> str:
    if not isinstance(value, str) or not VISITOR_ID.match(value):
        raise InvalidInput("visitor_id is missing or malformed", code="invalid_visitor")
    return value


def check_client_id(value: Any) -> str:
    if not isinstance(value, str) or not CLIENT_ID.match(value):
        raise InvalidInput("client_id must be 1-100 characters of [A-Za-z0-9_.:-]", code="invalid_client_id")
    return value


def _tenant_id(request: web.Request) -> int:
    from admin_api.http import tenant_of

    return tenant_of(request).id


class WebchatConnector(Connector):
    kind = "webchat"
    realtime = True

    async def send(self, message: OutboundMessage) -> str:
        # Delivery is a publication to whichever hub process holds the visitor's socket; a visitor
        # who is away reads it from history when they come back.
        frame = {
            "type": "message",
            "message": {
                "id": message.message_id,
                "direction": "outbound",
                "text": message.text,
                # Our own files by a signed link: the visitor opens them without signing in.
                "attachments": for_customer(self.hub.settings, message.tenant_id,
                                            [a.to_dict() for a in message.attachments]),
                "created_at": iso(message.created_at),
                "author": {"name": message.author_name} if message.author_name else None,
            },
        }
        await self.hub.bus.publish(visitor_topic(message.tenant_id, message.external_id), frame)
        return f"webchat:{message.message_id}"

    async def receive(
        self, tenant_id: int, visitor_id: str, client_id: str, text: Any, *, name: str | None = None,
        email: str | None = None, language: str | None = None,
    ) -> dict[str, Any]:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput("text must be a non-empty string", code="empty_text")
        result = await ingest(self.hub, InboundMessage(
            tenant_id=tenant_id, channel=self.kind, external_id=visitor_id, text=text,
            # Scoped by visitor: one visitor can never collide with (or read) another's message.
            channel_message_id=f"{visitor_id}:{client_id}", customer_name=name, customer_email=email,
            # The browser's language (routing rules can use it); trusted attributes such as VIP are
            # set by agents and admins, never by the visitor.
            customer_attributes={"language": language.lower()} if language else {},
        ))
        public = {k: result.message[k] for k in ("id", "direction", "text", "attachments", "created_at")}
        public["author"] = None
        if not result.duplicate:
            # Other tabs of the same visitor show it too.
            await self.hub.bus.publish(visitor_topic(tenant_id, visitor_id), {"type": "message", "message": public})
        return public

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/webchat/widget.js", self.widget_js),
            web.get("/webchat/demo", self.demo_page),
            web.get("/webchat/ws", self.websocket),
            web.post("/webchat/messages", self.post_message),
            web.get("/webchat/history", self.history),
            # The widget runs on the customer's own site: its HTTP fallback is cross-origin.
            web.options("/webchat/messages", self.preflight),
            web.options("/webchat/history", self.preflight),
        ]

    # --- HTTP ---------------------------------------------------------------------------------
    async def widget_js(self, request: web.Request) -> web.StreamResponse:
        _tenant_id(request)
        return web.FileResponse(STATIC / "widget.js", headers={
            "Content-Type": "application/javascript; charset=utf-8", "Cache-Control": "public, max-age=300",
            **CORS,
        })

    async def demo_page(self, request: web.Request) -> web.StreamResponse:
        _tenant_id(request)
        return web.FileResponse(STATIC / "demo.html", headers={"Content-Type": "text/html; charset=utf-8"})

    async def preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers={
            **CORS, "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type", "Access-Control-Max-Age": "600",
        })

    async def post_message(self, request: web.Request) -> web.Response:
        from admin_api.http import read_json, validate

        tenant_id = _tenant_id(request)
        data = validate(PostMessageBody, await read_json(request))
        visitor_id = check_visitor(data.visitor_id or new_visitor_id())
        client_id = check_client_id(data.client_id)
        message = await self.receive(tenant_id, visitor_id, client_id, data.text,
                                     name=_clean(data.name), email=_clean(data.email),
                                     language=_clean(data.language, 35))
        return web.json_response({"visitor_id": visitor_id, "message": message}, status=201,
                                 headers=CORS)

    async def history(self, request: web.Request) -> web.Response:
        from admin_api.http import strict_int

        tenant_id = _tenant_id(request)
        visitor_id = check_visitor(request.query.get("visitor_id"))
        try:
            since = strict_int(request.query.get("since", "0"))
        except ValueError:
            raise InvalidInput("since must be an integer", code="invalid_query") from None
        if since > MAX_BIG_ID:
            raise InvalidInput("since is out of range", code="invalid_query")
        messages = await customer_history(self.hub, tenant_id, self.kind, visitor_id, since=max(since, 0))
        return web.json_response({"messages": messages}, headers=CORS)

    # --- websocket ----------------------------------------------------------------------------
    async def websocket(self, request: web.Request) -> web.StreamResponse:
        tenant_id = _tenant_id(request)
        ws = web.WebSocketResponse(max_msg_size=self.hub.settings.max_request_bytes, heartbeat=30.0)
        await ws.prepare(request)
        from admin_api.http import tracked

        async with tracked(request, ws):
            await self._serve_socket(ws, tenant_id)
        return ws

    async def _serve_socket(self, ws: web.WebSocketResponse, tenant_id: int) -> web.WebSocketResponse:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=500)
        subscription = None
        writer: asyncio.Task[None] | None = None

        def push(frame: dict[str, Any]) -> None:
            try:
                queue.put_nowait(frame)
            except asyncio.QueueFull:  # a stuck browser: it catches up from history on reconnect
                logger.info("webchat client queue full; dropping live frame")

        async def write() -> None:
            while True:
                frame = await queue.get()
                await ws.send_str(json.dumps(frame, default=str))

        try:
            try:
                first = await ws.receive(timeout=HELLO_TIMEOUT)
            except TimeoutError:
                await ws.send_json({"type": "error", "code": "hello_timeout", "message": "send hello first"})
                return ws
            if first.type == WSMsgType.BINARY:
                await ws.send_json({"type": "error", "code": "hello_required",
                                    "message": 'frames are JSON text; the first is {"type": "hello", ...}'})
                return ws
            if first.type != WSMsgType.TEXT:  # closing, or the client's protocol error
                return ws
            from admin_api.http import check_strings, parse_json

            try:
                hello = parse_json(first.data, "the hello frame")
                if not isinstance(hello, dict) or hello.get("type") != "hello":
                    raise InvalidInput('the first frame must be {"type": "hello", ...}', code="hello_required")
                check_strings(hello)
                visitor_id = hello.get("visitor_id") or new_visitor_id()
                check_visitor(visitor_id)
                since = hello.get("since") or 0
                if not isinstance(since, int) or isinstance(since, bool) or not 0 <= since <= MAX_BIG_ID:
                    raise InvalidInput("since must be a non-negative integer", code="invalid_since")
            except DomainError as exc:
                await ws.send_json({"type": "error", **exc.to_dict()})
                return ws
            name, email = _opt_str(hello, "name"), _opt_str(hello, "email")
            language = _opt_str(hello, "language", 35)
            subscription = self.hub.bus.subscribe(visitor_topic(tenant_id, visitor_id), push)
            history = await customer_history(self.hub, tenant_id, self.kind, visitor_id, since=since)
            await ws.send_str(json.dumps({"type": "welcome", "visitor_id": visitor_id, "messages": history}))
            writer = asyncio.create_task(write())
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    # Silence would leave the widget waiting for an ack that never comes.
                    push({"type": "error", "code": "invalid_frame", "message": "frames are JSON text"})
                    continue
                if msg.type != WSMsgType.TEXT:
                    continue
                client_id = None
                try:
                    data = parse_json(msg.data, "a frame")
                    if not isinstance(data, dict):
                        raise InvalidInput("a frame is a JSON object", code="invalid_frame")
                    kind = data.get("type")
                    if kind == "ping":
                        push({"type": "pong"})
                    elif kind == "message":
                        client_id = check_client_id(data.get("client_id"))
                        check_strings(data)  # after client_id, so the refusal names the message
                        message = await self.receive(tenant_id, visitor_id, client_id, data.get("text"),
                                                     name=name, email=email, language=language)
                        push({"type": "ack", "client_id": client_id, "message": message})
                    else:
                        raise InvalidInput(f"unknown frame type {kind!r}", code="unknown_type")
                except DomainError as exc:
                    frame = {"type": "error", **exc.to_dict()}
                    if client_id is not None:
                        frame["client_id"] = client_id
                    push(frame)
                except Exception:
                    logger.exception("webchat frame failed")
                    push({"type": "error", "code": "internal_error", "message": "please try again"})
        finally:
            if subscription is not None:
                subscription.close()
            if writer is not None:
                writer.cancel()
        return ws


def _clean(value: Any, limit: int = 200) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()[:limit]
    return None


def _opt_str(data: dict[str, Any], key: str, limit: int = 200) -> str | None:
    return _clean(data.get(key), limit)


class PostMessageBody(BaseModel):
    """The widget's HTTP fallback: the fields of a socket "message" frame plus who is writing.
    Validated like every API body (unknown fields and wrong types are a validation_error naming
    the field); the formats of visitor_id and client_id are checked as on the socket."""

    model_config = ConfigDict(extra="forbid", strict=True)

    visitor_id: str | None = None
    client_id: str
    text: str
    name: str | None = None
    email: str | None = None
    language: str | None = None
