"""Web chat's routes: the widget, its demo page, the customer websocket and the HTTP fallback.

Protocol: connectors/webchat/README.md.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from connectors.webchat import store
from connectors.webchat.connector import (
    WebchatConnector,
    check_client_id,
    check_visitor,
    new_visitor_id,
    survey_frame,
    visitor_topic,
)
from connectors.webchat.schemas import (
    ChatHello,
    CsatFrame,
    History,
    HistoryQuery,
    MessageFrame,
    PostedMessage,
    PostMessageBody,
    TypingFrame,
    UploadedFile,
    UploadQuery,
    clean,
)
from core import attachments, csat, probes
from core.conversations import customer_history
from core.errors import DomainError, Forbidden, InvalidInput, UnsupportedMediaType
from core.live import customer_typing
from core.models import GONE_STATUSES, MAX_BIG_ID, TenantStatus
from web.api import RouteTable
from web.http import HUB, read_file_body, read_json, strict_int, tenant_of, validate
from web.schemas import ProbeMark
from web.sockets import RecentIds, SocketSession, parse_frame, serve

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
HELLO_TIMEOUT = 15.0
# A customer's "still typing" is passed on at most this often (seconds).
TYPING_EVERY = 3.0
# Past this many, a catch-up may send a message again (the widget keeps messages by id).
# Web chat endpoints carry no credentials (the visitor id is in the body), so any origin may call them.
CORS = {"Access-Control-Allow-Origin": "*"}


ROUTES = RouteTable("webchat", cors=True)


def connector_of(request: web.Request) -> WebchatConnector:
    conn = request.app[HUB].connectors[WebchatConnector.kind]
    assert isinstance(conn, WebchatConnector)
    return conn


# --- HTTP ---------------------------------------------------------------------------------
@ROUTES.route("GET", "/webchat/widget.js", auth=False,
              summary="The widget script (one script tag on the customer's site)",
              media_type="application/javascript")
async def widget_js(request: web.Request) -> web.StreamResponse:
    tenant_of(request)  # an unknown domain has no widget
    return web.FileResponse(STATIC / "widget.js", headers={
        "Content-Type": "application/javascript; charset=utf-8", "Cache-Control": "public, max-age=300",
        **CORS,
    })


@ROUTES.route("GET", "/webchat/demo", auth=False, summary="A demo page with the widget on it",
              media_type="text/html")
async def demo_page(request: web.Request) -> web.StreamResponse:
    tenant_of(request)  # an unknown domain has no widget
    return web.FileResponse(STATIC / "demo.html", headers={"Content-Type": "text/html; charset=utf-8"})


@ROUTES.route("OPTIONS", "/webchat/attachments", auth=False, summary="CORS preflight for the widget's uploads",
              status=204)
@ROUTES.route("OPTIONS", "/webchat/messages", auth=False, summary="CORS preflight for the widget's HTTP fallback",
              status=204)
@ROUTES.route("OPTIONS", "/webchat/history", auth=False, summary="CORS preflight for the widget's history",
              status=204)
async def preflight(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={
        **CORS, "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type", "Access-Control-Max-Age": "600",
    })


@ROUTES.route("POST", "/webchat/messages", auth=False, body=PostMessageBody,
              summary="A customer's message over HTTP (the widget's fallback when the socket is down)",
              response=PostedMessage, status=201)
async def post_message(request: web.Request) -> web.Response:
    tenant_id = tenant_of(request).id
    data = validate(PostMessageBody, await read_json(request))
    visitor_id = check_visitor(data.visitor_id or new_visitor_id())
    client_id = check_client_id(data.client_id)
    message = await connector_of(request).receive(tenant_id, visitor_id, client_id, data.text,
                                                  name=clean(data.name), email=clean(data.email),
                                                  language=clean(data.language, 35), attachments=data.attachments)
    return web.json_response({"visitor_id": visitor_id, "message": message}, status=201,
                             headers=CORS)


@ROUTES.route("POST", "/webchat/attachments", auth=False, raw_body=True, query=UploadQuery, response=UploadedFile,
              status=201, errors=(400, 415, 429),
              summary="A visitor's file (the body; Content-Type its type, ?name= its name, ?visitor_id= whose): "
                      "pictures, PDF, office documents and text, within CHANNELHUB_WEBCHAT_MAX_UPLOAD_BYTES")
async def upload(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    tenant_id = tenant_of(request).id
    conn = connector_of(request)
    visitor_id = check_visitor(request.query.get("visitor_id"))
    name = attachments.sanitize_name(request.query.get("name"))
    content_type = attachments.check_content_type(request.headers.get("Content-Type"))
    limit = conn.max_upload_bytes
    data = await read_file_body(request, limit, code="attachment_too_large", what="the file")
    if not data:
        raise DomainError("the file is empty: send its bytes as the request body", code="empty_attachment")
    # After the size (a file too large is refused as such whatever its type): served from the
    # tenant's own domain, nothing a browser could run there is taken.
    if content_type not in conn.settings.upload_types:
        raise UnsupportedMediaType(f"files of type {content_type} cannot be sent here: pictures, PDF, office "
                                   "documents and text files can", code="unsupported_type")
    if not attachments.content_matches(content_type, data):
        raise UnsupportedMediaType(f"the file's content is not {content_type}: send it with its real type",
                                   code="content_mismatch")
    stored = await store.save_upload(hub, conn.settings, tenant_id, visitor_id, name, content_type, data,
                                     now=conn.clock())
    return web.json_response({"attachment": store.customer_file(hub, tenant_id, stored)}, status=201, headers=CORS)


@ROUTES.route("GET", "/webchat/history", auth=False, summary="A visitor's conversation, after ?since= (a message id)",
              query=HistoryQuery, response=History)
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
    return await serve(request, lambda ws: VisitorSession(connector_of(request), ws, tenant_id, request.host),
                       heartbeat=30.0)


class VisitorSession(SocketSession[ChatHello]):
    name = "webchat"
    kind = "visitor"
    hello_model = ChatHello
    hello_example = '{"type": "hello", ...}'
    hello_timeout = HELLO_TIMEOUT
    queue_size = 500
    # Cut off with 4008 "too slow" rather than dropping frames it would never know it missed (an
    # ack among them): the widget reconnects with `since` and reads what it missed from history.
    close_when_behind = True
    internal_error_message = "please try again"

    def __init__(self, conn: WebchatConnector, ws: web.WebSocketResponse, tenant_id: int, host: str | None) -> None:
        super().__init__(ws)
        self.conn, self.tenant_id, self.host = conn, tenant_id, host
        self.hello = ChatHello(type="hello")
        self.visitor_id = ""
        # The messages this socket has sent: delivery is at least once (the outbox sends again
        # after a crash between the publication and its record), and a reply is in the history as
        # soon as it is stored, so one message can be published twice or come both ways.
        self.sent = RecentIds()
        self.handlers["message"] = self.message
        self.handlers["typing"] = self.typing_frame
        self.handlers["csat"] = self.csat_frame
        self.last_typing = ("", 0.0)
        self.probe = False  # a prober's socket (core.probes), once its hello's mark is checked

    async def start(self, hello: ChatHello) -> None:
        if hello.probe is not None:
            return await self.start_probe(hello.probe)
        self.hello, self.visitor_id = hello, hello.visitor_id or new_visitor_id()
        self.subscription = self.conn.hub.bus.subscribe(visitor_topic(self.tenant_id, self.visitor_id), self.live,
                                                        catch_up=self.catch_up)
        self.conn.typing.add(self.tenant_id, self.visitor_id, self)
        agents_online = await self.conn.presence.add(self.tenant_id, self)
        async with self.conn.hub.db.read(self.tenant_id) as session:
            words = await store.get_settings(session)
        history = await customer_history(self.conn.hub, self.tenant_id, self.conn.kind, self.visitor_id,
                                         since=hello.since or 0)
        self.sent.mark_all(m["id"] for m in history)
        limits = self.conn.settings
        await self.send({"type": "welcome", "visitor_id": self.visitor_id, "messages": history,
                         "agents_online": agents_online, "offline_message": words["offline_message"],
                         "greeting": words["welcome"],
                         "uploads": {"max_bytes": self.conn.max_upload_bytes, "types": list(limits.upload_types)}})
        # A survey the visitor has not answered yet (they may have left before it came).
        survey = await csat.open_survey(self.conn.hub, self.tenant_id, self.conn.kind, self.visitor_id)
        if survey is not None:
            await self.send(survey_frame(survey["token"]))

    async def start_probe(self, mark: ProbeMark) -> None:
        """A prober's visitor (core.probes): a fresh visitor id, no history, no greeting; it is never
        counted among the tenant's visitors (no presence or typing watch), its typing goes nowhere,
        and its messages are echoed back from core.ingest instead of being stored."""
        probes.verify(self.conn.hub.settings.probe_secret, self.tenant_id, mark.at, mark.signature,
                      now=self.conn.clock())
        self.probe, self.visitor_id = True, new_visitor_id()
        del self.handlers["typing"]
        del self.handlers["csat"]
        self.subscription = self.conn.hub.bus.subscribe(
            probes.probe_topic(self.tenant_id, self.conn.kind, self.visitor_id), self.push)
        await self.send({"type": "welcome", "visitor_id": self.visitor_id, "probe": True, "messages": []})

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self.visitor_id and not self.probe:
                self.conn.typing.remove(self.tenant_id, self.visitor_id, self)
                self.conn.presence.remove(self.tenant_id, self)

    async def typing_frame(self, data: dict[str, Any], ref: Any) -> None:
        """The customer typing (``composing``) or stopped (``paused``): the agents who see their
        ticket are told (core.live). Never stored, never answered; a repeat of the same state within
        TYPING_EVERY seconds is not passed on."""
        frame = parse_frame(TypingFrame, data)
        last_state, last_at = self.last_typing
        now = time.monotonic()
        if frame.state == last_state and now - last_at < TYPING_EVERY:
            return None
        self.last_typing = (frame.state, now)
        await customer_typing(self.conn.hub, self.tenant_id, self.conn.kind, self.visitor_id, frame.state)
        return None

    async def csat_frame(self, data: dict[str, Any], ref: Any) -> dict[str, Any]:
        """The visitor's rating of a survey (core.csat); the visitor's other tabs close their card."""
        frame = parse_frame(CsatFrame, data)
        await csat.answer(self.conn.hub, self.tenant_id, frame.token, frame.rating, frame.comment)
        done = {"type": "csat_done", "token": frame.token}
        await self.conn.hub.bus.publish(visitor_topic(self.tenant_id, self.visitor_id), done)
        return done

    def live(self, frame: dict[str, Any]) -> None:
        """A publication on the visitor's topic: each message once per socket."""
        message = frame.get("message")
        if frame.get("type") == "message" and isinstance(message, dict) and not self.sent.mark(message["id"]):
            return
        self.push(frame)

    async def catch_up(self, since: datetime) -> None:
        """The bus may have lost frames: send the conversation's latest messages this socket has not
        sent (the client has everything up to its hello's ``since`` already)."""
        for m in await customer_history(self.conn.hub, self.tenant_id, self.conn.kind, self.visitor_id):
            if m["id"] > (self.hello.since or 0):
                self.live({"type": "message", "message": m})

    def reference(self, data: dict[str, Any]) -> Any:
        # Checked before the text, so a refusal of the text names the message.
        return check_client_id(data.get("client_id")) if data.get("type") == "message" else None

    def error_frame(self, error: dict[str, Any], client_id: Any) -> dict[str, Any]:
        frame = {"type": "error", **error}
        # Not after a failure of ours: a message named in an error is given up by the widget, and
        # unnamed it is sent again (same client_id, so stored once) when the socket reconnects.
        if client_id is not None and error["code"] != "internal_error":
            frame["client_id"] = client_id
        return frame

    async def message(self, data: dict[str, Any], client_id: Any) -> dict[str, Any]:
        frame = parse_frame(MessageFrame, data)
        # A socket opened before its tenant ended (or its data began to be deleted) takes nothing
        # more: the HTTP edge refuses such a tenant, and this is its socket's share (a cached
        # lookup, dropped in every process when the tenant changes).
        tenant = await self.conn.hub.tenants.resolve(self.host)
        if tenant.id != self.tenant_id or tenant.status in GONE_STATUSES:
            raise Forbidden("the service for this site has ended",
                            code="tenant_ended" if tenant.status == TenantStatus.ENDED else "tenant_purged")
        message = await self.conn.receive(self.tenant_id, self.visitor_id, frame.client_id, frame.text,
                                          name=self.hello.name, email=self.hello.email,
                                          language=self.hello.language, attachments=frame.attachments,
                                          on_stored=lambda m: self.sent.mark(m["id"]), probe=self.probe)
        return {"type": "ack", "client_id": frame.client_id, "message": message}
