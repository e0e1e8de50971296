"""The agent gateway: one websocket per connected agent client. Protocol: docs/agent-protocol.md.

It authenticates the first frame, sends a snapshot and what the client missed, then pushes live
events from the bus (filtered to what the agent may see) and takes the agent's actions. Presence is
kept by heartbeats; a malformed frame gets an error frame and the socket stays open.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from typing import Any, TypeGuard

from aiohttp import WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field

from core import tickets
from core.attachments import MAX_PER_MESSAGE as MAX_ATTACHMENTS
from core.auth import Principal, authenticate
from core.bus import Subscription
from core.errors import DomainError, InvalidInput
from core.events import tenant_topic, visible_to
from core.feed import missed_events, snapshot
from core.models import MAX_BIG_ID, MAX_ID, Presence
from core.presence import heartbeat, set_presence
from core.seats import profile
from web.api import RouteTable
from web.http import HUB, check_strings, parse_json, tenant_of, validate
from web.sockets import tracked

logger = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0
SEND_QUEUE = 2000


class Hello(BaseModel):
    model_config = ConfigDict(strict=True)

    type: str
    token: str = Field(min_length=1, max_length=512)
    since: int | None = Field(default=None, ge=0, le=MAX_BIG_ID)
    status: str | None = None


def _positive_id(value: Any, limit: int) -> TypeGuard[int]:
    """A JSON integer (not a boolean) that a key column can hold."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= limit


class AgentConnection:
    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.request = request
        self.hub = request.app[HUB]
        self.ws = ws
        self.tenant = tenant_of(request)
        self.principal: Principal | None = None
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=SEND_QUEUE)
        self.seen: deque[int] = deque(maxlen=4096)
        self.seen_set: set[int] = set()
        self.last_beat = 0.0
        self.overflowed = False
        # The agent's groups: which waiting tickets' events they see (refreshed with heartbeats).
        self.groups: frozenset[int] = frozenset()
        self.subscription: Subscription | None = None

    # --- outgoing -------------------------------------------------------------------------
    def push(self, frame: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            # A client this far behind is cut off; it reconnects and catches up from the database.
            if not self.overflowed:
                self.overflowed = True
                logger.warning("agent client too slow; closing it")
                self.queue.get_nowait()
                self.queue.put_nowait(None)

    def _mark(self, event_id: int) -> bool:
        if event_id in self.seen_set:
            return False
        if len(self.seen) == self.seen.maxlen:
            self.seen_set.discard(self.seen[0])
        self.seen.append(event_id)
        self.seen_set.add(event_id)
        return True

    def on_event(self, event: dict[str, Any]) -> None:
        assert self.principal is not None
        if visible_to(event, self.principal.agent_id, self.principal.sees_all, self.groups) and self._mark(event["id"]):
            self.push({"type": "event", "event": event})

    async def writer(self) -> None:
        while True:
            frame = await self.queue.get()
            if frame is None or self.ws.closed:
                await self.ws.close(code=4008, message=b"too slow")
                return
            await self.ws.send_str(json.dumps(frame, default=str))

    def error(self, code: str, message: str, ref: Any = None) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if ref is not None:
            frame["ref"] = ref
        self.push(frame)

    # --- the session ----------------------------------------------------------------------
    async def hello(self) -> bool:
        try:
            msg = await self.ws.receive(timeout=HELLO_TIMEOUT)
        except TimeoutError:
            await self.ws.send_json({"type": "error", "code": "hello_timeout", "message": "send hello first"})
            return False
        if msg.type == WSMsgType.BINARY:
            await self.ws.send_json({"type": "error", "code": "hello_required",
                                     "message": 'frames are JSON text; the first is {"type": "hello", "token": ...}'})
            return False
        if msg.type != WSMsgType.TEXT:  # closing, or the client's protocol error
            return False
        try:
            data = parse_json(msg.data, "the hello frame")
            if not isinstance(data, dict) or data.get("type") != "hello":
                raise InvalidInput('the first frame must be {"type": "hello", "token": ...}', code="hello_required")
            check_strings(data)
            hello = validate(Hello, data)
            async with self.hub.db.read(self.tenant.id) as session:
                self.principal = await authenticate(session, self.tenant.id, hello.token)
        except DomainError as exc:
            await self.ws.send_json({"type": "error", **exc.to_dict()})
            return False
        principal = self.principal
        await self.refresh_groups()
        # Subscribe before reading the backlog, so nothing falls between the two; ids de-duplicate.
        self.subscription = self.hub.bus.subscribe(tenant_topic(self.tenant.id), self.on_event)
        status = hello.status if hello.status in (Presence.ONLINE, Presence.AWAY) else Presence.ONLINE
        await set_presence(self.hub, self.tenant.id, principal.agent_id, status)
        self.last_beat = time.monotonic()
        last_id, open_tickets = await snapshot(self.hub, principal)
        missed = await missed_events(self.hub, principal, hello.since, self.groups) if hello.since is not None else []
        missed = [e for e in missed if self._mark(e["id"])]
        await self.ws.send_str(json.dumps({
            "type": "welcome", "agent": await profile(self.hub, principal), "last_event_id": last_id,
            "tickets": open_tickets, "events": missed,
        }, default=str))
        return True

    async def refresh_groups(self) -> None:
        assert self.principal is not None
        async with self.hub.db.read(self.tenant.id) as session:
            self.groups = frozenset(await tickets.agent_group_ids(session, self.principal.agent_id))

    async def beat(self) -> None:
        # At most one database write per third of the timeout, however chatty the client is.
        now = time.monotonic()
        if self.principal is not None and now - self.last_beat > self.hub.settings.heartbeat_timeout / 3:
            self.last_beat = now
            await heartbeat(self.hub, self.tenant.id, self.principal.agent_id)
            await self.refresh_groups()

    async def handle(self, data: dict[str, Any]) -> None:
        assert self.principal is not None
        kind = data.get("type")
        ref = data.get("ref")
        if kind == "ping":
            self.push({"type": "pong"})
            return
        if kind == "presence":
            await set_presence(self.hub, self.tenant.id, self.principal.agent_id, str(data.get("status")))
            self.push({"type": "result", "ref": ref, "ok": True, "data": {"status": data.get("status")}})
            return
        action = ACTIONS.get(str(kind))
        if action is None:
            self.error("unknown_type", f"unknown frame type {kind!r}", ref)
            return
        ticket_id = data.get("ticket_id")
        if not _positive_id(ticket_id, MAX_BIG_ID):
            raise InvalidInput("ticket_id must be a positive integer", code="invalid_ticket_id")
        result = await action(self.hub, self.principal, ticket_id, data)
        self.push({"type": "result", "ref": ref, "ok": True, "data": result})

    async def run(self) -> None:
        writer: asyncio.Task[None] | None = None
        try:
            # Inside the try: a hello that fails after subscribing must not leave the subscription.
            if not await self.hello():
                await self.ws.close()
                return
            writer = asyncio.create_task(self.writer())
            async for msg in self.ws:
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.BINARY:
                        self.error("invalid_frame", "frames are JSON text")
                    continue
                await self.beat()
                ref = None
                try:
                    data = parse_json(msg.data, "a frame")
                    if not isinstance(data, dict):
                        raise InvalidInput("a frame is a JSON object", code="invalid_frame")
                    ref = data.get("ref")
                    check_strings(data)
                    await self.handle(data)
                except DomainError as exc:
                    self.push({"type": "result", "ref": ref, "ok": False, "error": exc.to_dict()}
                              if ref is not None else {"type": "error", **exc.to_dict()})
                except Exception:
                    logger.exception("agent action failed")
                    self.error("internal_error", "the action failed on our side; it has been logged", ref)
        finally:
            if self.subscription is not None:
                self.subscription.close()
            if writer is not None:
                writer.cancel()


async def _message(hub: Any, p: Principal, ticket_id: int, data: dict[str, Any], *, note: bool) -> Any:
    """A reply or note: text, and uploaded attachments by id (then the text may be empty)."""
    ids = data.get("attachments", [])
    if not isinstance(ids, list) or len(ids) > MAX_ATTACHMENTS or not all(_positive_id(i, MAX_BIG_ID) for i in ids):
        raise InvalidInput(f"attachments must be a list of at most {MAX_ATTACHMENTS} attachment ids",
                           code="invalid_attachments")
    text = data.get("text", "")
    if not isinstance(text, str) or (not text.strip() and not ids):
        raise InvalidInput("text must be a non-empty string (it may be empty when attachments are given)",
                           code="empty_text")
    return {"message": await tickets.add_message(hub, p, ticket_id, text, note=note, attachment_ids=ids)}


async def _reply(hub: Any, p: Principal, ticket_id: int, data: dict[str, Any]) -> Any:
    return await _message(hub, p, ticket_id, data, note=False)


async def _note(hub: Any, p: Principal, ticket_id: int, data: dict[str, Any]) -> Any:
    return await _message(hub, p, ticket_id, data, note=True)


async def _status(hub: Any, p: Principal, ticket_id: int, data: dict[str, Any]) -> Any:
    return {"ticket": await tickets.update_ticket(hub, p, ticket_id, status=str(data.get("status")))}


async def _priority(hub: Any, p: Principal, ticket_id: int, data: dict[str, Any]) -> Any:
    return {"ticket": await tickets.update_ticket(hub, p, ticket_id, priority=str(data.get("priority")))}


async def _tags(hub: Any, p: Principal, ticket_id: int, data: dict[str, Any]) -> Any:
    def tag_list(name: str) -> list[str] | None:
        value = data.get(name)
        if value is not None and not isinstance(value, list):
            raise InvalidInput(f"{name} must be a list of strings", code="invalid_tag")
        return value

    return {"ticket": await tickets.update_ticket(hub, p, ticket_id, tags=tag_list("tags"),
                                                  add_tags=tag_list("add"), remove_tags=tag_list("remove"))}


async def _transfer(hub: Any, p: Principal, ticket_id: int, data: dict[str, Any]) -> Any:
    def opt_id(name: str) -> int | None:
        value = data.get(name)
        if value is None:
            return None
        if not _positive_id(value, MAX_ID):
            raise InvalidInput(f"{name} must be a positive integer up to {MAX_ID}", code="invalid_id")
        return value

    return {"ticket": await tickets.transfer(hub, p, ticket_id, agent_id=opt_id("agent_id"),
                                             group_id=opt_id("group_id"))}


async def _get(hub: Any, p: Principal, ticket_id: int, data: dict[str, Any]) -> Any:
    return await tickets.get_ticket(hub, p, ticket_id)


async def _claim(hub: Any, p: Principal, ticket_id: int, data: dict[str, Any]) -> Any:
    return {"ticket": await tickets.claim(hub, p, ticket_id)}


ACTIONS = {
    "reply": _reply, "note": _note, "status": _status, "priority": _priority, "tags": _tags,
    "transfer": _transfer, "get_ticket": _get, "claim": _claim,
}


ROUTES = RouteTable("agents")


@ROUTES.websocket("/agent/ws", summary="The agent gateway (docs/agent-protocol.md)")
async def agent_ws(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    ws = web.WebSocketResponse(max_msg_size=hub.settings.max_request_bytes, heartbeat=None)
    await ws.prepare(request)
    async with tracked(request, ws):
        await AgentConnection(request, ws).run()
    return ws
