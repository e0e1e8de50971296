"""Web chat's routes: the widget, its demo page, the customer websocket and the HTTP fallback.

Protocol: connectors/webchat/README.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from connectors.webchat.connector import (
    WebchatConnector,
    check_client_id,
    check_visitor,
    new_visitor_id,
    visitor_topic,
)
from core.conversations import customer_history
from core.errors import DomainError, InvalidInput
from core.models import MAX_BIG_ID
from web.api import RouteTable
from web.http import HUB, check_strings, parse_json, read_json, strict_int, tenant_of, validate
from web.schemas import Strict
from web.sockets import tracked

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
HELLO_TIMEOUT = 15.0
# Web chat endpoints carry no credentials (the visitor id is in the body), so any origin may call them.
CORS = {"Access-Control-Allow-Origin": "*"}

class PostMessageBody(Strict):
    """The widget's HTTP fallback: the fields of a socket "message" frame plus who is writing.
    Validated like every API body (unknown fields and wrong types are a validation_error naming
    the field); the formats of visitor_id and client_id are checked as on the socket."""

    visitor_id: str | None = None
    client_id: str
    text: str
    name: str | None = None
    email: str | None = None
    language: str | None = None


ROUTES = RouteTable("webchat", cors=True)


def connector_of(request: web.Request) -> WebchatConnector:
    conn = request.app[HUB].connectors[WebchatConnector.kind]
    assert isinstance(conn, WebchatConnector)
    return conn


# --- HTTP ---------------------------------------------------------------------------------
@ROUTES.route("GET", "/webchat/widget.js", auth=False,
              summary="The widget script (one script tag on the customer's site)")
async def widget_js(request: web.Request) -> web.StreamResponse:
    tenant_of(request)  # an unknown domain has no widget
    return web.FileResponse(STATIC / "widget.js", headers={
        "Content-Type": "application/javascript; charset=utf-8", "Cache-Control": "public, max-age=300",
        **CORS,
    })


@ROUTES.route("GET", "/webchat/demo", auth=False, summary="A demo page with the widget on it")
async def demo_page(request: web.Request) -> web.StreamResponse:
    tenant_of(request)  # an unknown domain has no widget
    return web.FileResponse(STATIC / "demo.html", headers={"Content-Type": "text/html; charset=utf-8"})


@ROUTES.route("OPTIONS", "/webchat/messages", auth=False, summary="CORS preflight for the widget's HTTP fallback")
@ROUTES.route("OPTIONS", "/webchat/history", auth=False, summary="CORS preflight for the widget's history")
async def preflight(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={
        **CORS, "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type", "Access-Control-Max-Age": "600",
    })


@ROUTES.route("POST", "/webchat/messages", auth=False, body=PostMessageBody,
              summary="A customer's message over HTTP (the widget's fallback when the socket is down)")

async def post_message(request: web.Request) -> web.Response:
    tenant_id = tenant_of(request).id
    data = validate(PostMessageBody, await read_json(request))
    visitor_id = check_visitor(data.visitor_id or new_visitor_id())
    client_id = check_client_id(data.client_id)
    message = await connector_of(request).receive(tenant_id, visitor_id, client_id, data.text,
                                                  name=_clean(data.name), email=_clean(data.email),
                                                  language=_clean(data.language, 35))
    return web.json_response({"visitor_id": visitor_id, "message": message}, status=201,
                             headers=CORS)


@ROUTES.route("GET", "/webchat/history", auth=False, summary="A visitor's conversation, after ?since= (a message id)")
async def history(request: web.Request) -> web.Response:
    tenant_id = tenant_of(request).id
    visitor_id = check_visitor(request.query.get("visitor_id"))
    try:
        since = strict_int(request.query.get("since", "0"))
    except ValueError:
        raise InvalidInput("since must be an integer", code="invalid_query") from None
    if since > MAX_BIG_ID:
        raise InvalidInput("since is out of range", code="invalid_query")
    messages = await customer_history(request.app[HUB], tenant_id, WebchatConnector.kind, visitor_id,
                                      since=max(since, 0))
    return web.json_response({"messages": messages}, headers=CORS)


# --- websocket ----------------------------------------------------------------------------
@ROUTES.websocket("/webchat/ws", summary="The customer's websocket (docs: connectors/webchat/README.md)")
async def websocket(request: web.Request) -> web.StreamResponse:
    tenant_id = tenant_of(request).id
    ws = web.WebSocketResponse(max_msg_size=request.app[HUB].settings.max_request_bytes, heartbeat=30.0)
    await ws.prepare(request)
    async with tracked(request, ws):
        await _serve_socket(connector_of(request), ws, tenant_id)
    return ws


async def _serve_socket(conn: WebchatConnector, ws: web.WebSocketResponse, tenant_id: int
                        ) -> web.WebSocketResponse:
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
        subscription = conn.hub.bus.subscribe(visitor_topic(tenant_id, visitor_id), push)
        history = await customer_history(conn.hub, tenant_id, conn.kind, visitor_id, since=since)
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
                    message = await conn.receive(tenant_id, visitor_id, client_id, data.get("text"),
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
