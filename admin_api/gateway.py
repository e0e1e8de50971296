"""The agent gateway: one websocket per connected agent client. Protocol: docs/agent-protocol.md.

It authenticates the first frame, sends a snapshot and what the client missed, then pushes live
events from the bus (filtered to what the agent may see) and takes the agent's actions. Presence is
kept by heartbeats; a malformed frame gets an error frame and the socket stays open. A session
ends when its token does: a revocation announced on the bus (sign-out, sign out everywhere, the
seat deactivated, its role changed) makes the socket re-check its token at once, and it re-checks
every ``session_check_seconds`` anyway; a token no longer valid closes the socket with 4001. The session's
plumbing (hello, frame loop, bounded writer) is web.sockets.SocketSession; the frames' models are
admin_api.schemas', shared with the HTTP bodies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from aiohttp import web
from sqlalchemy import literal, select

from admin_api.schemas import (
    Hello,
    MessageFrame,
    PresenceFrame,
    PriorityFrame,
    StatusFrame,
    TagsFrame,
    TicketFrame,
    TransferFrame,
    TypingFrame,
    ViewingFrame,
)
from core import probes, tickets
from core.auth import Principal, WatchedSession, authenticate, sessions_topic, token_digest, token_valid
from core.bus import Subscription
from core.events import tenant_topic, visible_to
from core.feed import missed_events, snapshot
from core.hub import Hub
from core.live import agent_typing, live_topic
from core.models import Presence, utcnow
from core.presence import heartbeat, set_presence
from core.seats import profile
from web.api import RouteTable
from web.http import HUB, tenant_of
from web.schemas import ProbeMark
from web.sockets import RecentIds, SocketSession, parse_frame, serve

logger = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0
SEND_QUEUE = 2000
SESSION_ENDED = 4001  # the close code of a socket whose token was revoked or expired

F = TypeVar("F", bound=TicketFrame)


class AgentConnection(SocketSession[Hello]):
    name = "agent"
    kind = "agent"
    hello_model = Hello
    hello_example = '{"type": "hello", "token": ...}'
    hello_timeout = HELLO_TIMEOUT
    queue_size = SEND_QUEUE
    close_when_behind = True  # with 4008; it reconnects with since and loses nothing
    # Replies and notes go to one group commit per tenant, which writes them in the order they are
    # handed over: a client may send many without waiting for each result (docs/agent-protocol.md).
    pipelined = frozenset({"reply", "note"})
    internal_error_message = "the action failed on our side; it has been logged"

    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        super().__init__(ws)
        self.hub = request.app[HUB]
        self.tenant = tenant_of(request)
        self.principal: Principal | None = None
        self.seen = RecentIds()
        self.last_seen = 0  # the highest event id sent
        self.last_beat = 0.0
        self.token_hash = ""
        self.watched: WatchedSession | None = None
        self.sees_all = False  # read once: on_event runs for every event of the tenant
        self.revocations: Subscription | None = None
        self.live: Subscription | None = None  # typing (core.live): pushed as it comes, never stored
        self.watchdog: asyncio.Task[None] | None = None
        self.recheck = asyncio.Event()  # set by a revocation on the bus
        # The agent's groups: which waiting tickets' events they see (refreshed with heartbeats).
        self.groups: frozenset[int] = frozenset()
        self.handlers.update({"presence": self.presence, **dict.fromkeys(ACTIONS, self.act)})

    # --- events -----------------------------------------------------------------------------
    def _mark(self, event_id: int) -> bool:
        """True the first time this socket sends the event (and it is the newest, if it is)."""
        if not self.seen.mark(event_id):
            return False
        self.last_seen = max(self.last_seen, event_id)
        return True

    def on_event(self, event: dict[str, Any]) -> None:
        assert self.principal is not None
        if visible_to(event, self.principal.agent_id, self.sees_all, self.groups) and self._mark(event["id"]):
            self.push({"type": "event", "event": event})

    def on_live(self, signal: dict[str, Any]) -> None:
        """Someone typing on, or viewing, a ticket this agent sees (not the agent's own)."""
        assert self.principal is not None
        kind = signal.get("kind")
        if kind not in ("typing", "viewing"):
            return
        by = signal.get("by") or {}
        if by.get("type") == "agent" and by.get("id") == self.principal.agent_id:
            return
        assignee, group = signal.get("assignee_id"), signal.get("group_id")
        if self.sees_all or assignee == self.principal.agent_id or (
                assignee is None and (group is None or group in self.groups)):
            self.push({"type": kind, "ticket_id": signal["ticket_id"], "state": signal["state"], "by": by,
                       "channel": signal.get("channel")})

    async def catch_up(self, since: datetime) -> None:
        """The bus may have lost events since ``since``: send those of the table not sent yet."""
        assert self.principal is not None
        for event in await missed_events(self.hub, self.principal, self.last_seen, self.groups, after=since):
            self.on_event(event)

    # --- the session's hooks ----------------------------------------------------------------
    async def start(self, hello: Hello) -> None:
        if hello.probe is not None:
            return await self.probe(hello.probe)
        assert hello.token is not None  # the model requires one without a probe mark
        async with self.hub.db.read(self.tenant.id) as session:
            self.principal = principal = await authenticate(session, self.tenant.id, hello.token)
        self.token_hash = token_digest(hello.token)
        self.sees_all = principal.sees_all
        # Re-checked with every other socket of the process (core.auth.SessionWatch), and at once
        # when the bus announces a revocation.
        self.watched = WatchedSession(self.tenant.id, self.token_hash, principal.agent_id, principal.role,
                                      self.session_ended)
        self.hub.sessions.add(self.watched)
        self.revocations = self.hub.bus.subscribe(sessions_topic(self.tenant.id), self.on_revoked)
        self.watchdog = asyncio.create_task(self.watch(), name="agent-session-watchdog")
        await self.refresh_groups()
        # Subscribe before reading the backlog, so nothing falls between the two; ids de-duplicate.
        self.subscription = self.hub.bus.subscribe(tenant_topic(self.tenant.id), self.on_event,
                                                   catch_up=self.catch_up)
        self.live = self.hub.bus.subscribe(live_topic(self.tenant.id), self.on_live)
        status = hello.status if hello.status in (Presence.ONLINE, Presence.AWAY) else Presence.ONLINE
        await set_presence(self.hub, self.tenant.id, principal.agent_id, status)
        self.last_beat = time.monotonic()
        last_id, open_tickets = await snapshot(self.hub, principal)
        missed = await missed_events(self.hub, principal, hello.since, self.groups) if hello.since is not None else []
        missed = [e for e in missed if self._mark(e["id"])]
        self.last_seen = max(self.last_seen, last_id)
        await self.send({
            "type": "welcome", "agent": await profile(self.hub, principal), "last_event_id": last_id,
            "tickets": open_tickets, "events": missed,
        })

    async def probe(self, mark: ProbeMark) -> None:
        """A prober's hello (core.probes): the mark checked and the tenant's database read as an
        agent's hello reads it, then ``{"type": "probe", "ok": true}`` and the socket closes. No
        agent, no session, no presence, no subscription."""
        probes.verify(self.hub.settings.probe_secret, self.tenant.id, mark.at, mark.signature, now=utcnow())
        async with self.hub.db.read(self.tenant.id) as session:
            await session.execute(select(literal(1)))
        await self.send({"type": "probe", "ok": True})
        await self.ws.close()

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self.watched is not None:
                self.hub.sessions.remove(self.watched)
            if self.revocations is not None:
                self.revocations.close()
            if self.live is not None:
                self.live.close()
            if self.watchdog is not None:
                self.watchdog.cancel()

    # --- the session's end ------------------------------------------------------------------
    def on_revoked(self, message: dict[str, Any]) -> None:
        """A revocation on the bus: the agent's tokens, or one token. Re-check rather than trust it."""
        assert self.principal is not None
        agent_id, token = message.get("agent_id"), message.get("token")
        if agent_id in (None, self.principal.agent_id) and token in (None, self.token_hash):
            self.recheck.set()

    async def watch(self) -> None:
        """Re-check the token when the bus announces a revocation (the process's SessionWatch
        re-checks every socket periodically, so a missed bus message cannot keep it alive)."""
        while not self.ws.closed:
            await self.recheck.wait()
            self.recheck.clear()
            await self.check_session()

    async def check_session(self) -> bool:
        """Whether the token still stands; when it does not, the socket closes with 4001."""
        assert self.principal is not None
        try:
            async with self.hub.db.read(self.tenant.id) as session:
                valid = await token_valid(session, self.tenant.id, self.token_hash, self.principal.agent_id,
                                          self.principal.role)
        except Exception:
            logger.exception("agent session check failed; trying again later")
            return True
        if not valid:
            await self.session_ended()
        return valid

    async def session_ended(self) -> None:
        if not self.ws.closed:
            assert self.principal is not None
            logger.info("agent %s session ended; closing its socket", self.principal.agent_id)
            await self.ws.close(code=SESSION_ENDED, message=b"session ended")

    def reference(self, data: dict[str, Any]) -> Any:
        return data.get("ref")

    def error_frame(self, error: dict[str, Any], ref: Any) -> dict[str, Any]:
        # A frame with a ref gets its result, failed; the client is waiting on that ref.
        if ref is None:
            return {"type": "error", **error}
        return {"type": "result", "ref": ref, "ok": False, "error": error}

    async def heard(self) -> None:
        now = time.monotonic()
        # At most one database write per third of the timeout, however chatty the client is.
        if self.principal is not None and now - self.last_beat > self.hub.settings.heartbeat_timeout / 3:
            self.last_beat = now
            await heartbeat(self.hub, self.tenant.id, self.principal.agent_id)
            await self.refresh_groups()

    async def refresh_groups(self) -> None:
        assert self.principal is not None
        async with self.hub.db.read(self.tenant.id) as session:
            self.groups = frozenset(await tickets.agent_group_ids(session, self.principal.agent_id))

    # --- frames -----------------------------------------------------------------------------
    async def presence(self, data: dict[str, Any], ref: Any) -> dict[str, Any]:
        assert self.principal is not None
        frame = parse_frame(PresenceFrame, data)
        await set_presence(self.hub, self.tenant.id, self.principal.agent_id, frame.status)
        return {"type": "result", "ref": ref, "ok": True, "data": {"status": frame.status}}

    async def act(self, data: dict[str, Any], ref: Any) -> dict[str, Any]:
        assert self.principal is not None
        action = ACTIONS[data["type"]]
        result = await action.run(self.hub, self.principal, parse_frame(action.frame, data))
        return {"type": "result", "ref": ref, "ok": True, "data": result}


@dataclass(frozen=True)
class Action(Generic[F]):
    """A ticket action: the model of its frame, and what it does (its result's data)."""

    frame: type[F]
    run: Callable[[Hub, Principal, F], Awaitable[dict[str, Any]]]


async def _reply(hub: Hub, p: Principal, f: MessageFrame) -> dict[str, Any]:
    return {"message": await tickets.add_message(hub, p, f.ticket_id, f.text, note=False, attachment_ids=f.attachments,
                                                 client_id=f.client_id)}


async def _note(hub: Hub, p: Principal, f: MessageFrame) -> dict[str, Any]:
    return {"message": await tickets.add_message(hub, p, f.ticket_id, f.text, note=True, attachment_ids=f.attachments,
                                                 client_id=f.client_id)}


async def _typing(hub: Hub, p: Principal, f: TypingFrame) -> dict[str, Any]:
    await agent_typing(hub, p, f.ticket_id, f.state)
    return {"state": f.state}


async def _viewing(hub: Hub, p: Principal, f: ViewingFrame) -> dict[str, Any]:
    await agent_typing(hub, p, f.ticket_id, f.state, kind="viewing")
    return {"state": f.state}


async def _status(hub: Hub, p: Principal, f: StatusFrame) -> dict[str, Any]:
    return {"ticket": await tickets.update_ticket(hub, p, f.ticket_id, status=f.status)}


async def _priority(hub: Hub, p: Principal, f: PriorityFrame) -> dict[str, Any]:
    return {"ticket": await tickets.update_ticket(hub, p, f.ticket_id, priority=f.priority)}


async def _tags(hub: Hub, p: Principal, f: TagsFrame) -> dict[str, Any]:
    return {"ticket": await tickets.update_ticket(hub, p, f.ticket_id, tags=f.tags, add_tags=f.add,
                                                  remove_tags=f.remove)}


async def _transfer(hub: Hub, p: Principal, f: TransferFrame) -> dict[str, Any]:
    return {"ticket": await tickets.transfer(hub, p, f.ticket_id, agent_id=f.agent_id, group_id=f.group_id)}


async def _get(hub: Hub, p: Principal, f: TicketFrame) -> dict[str, Any]:
    return await tickets.get_ticket(hub, p, f.ticket_id)


async def _claim(hub: Hub, p: Principal, f: TicketFrame) -> dict[str, Any]:
    return {"ticket": await tickets.claim(hub, p, f.ticket_id)}


ACTIONS: dict[str, Action[Any]] = {
    "reply": Action(MessageFrame, _reply), "note": Action(MessageFrame, _note),
    "status": Action(StatusFrame, _status), "priority": Action(PriorityFrame, _priority),
    "tags": Action(TagsFrame, _tags), "transfer": Action(TransferFrame, _transfer),
    "get_ticket": Action(TicketFrame, _get), "claim": Action(TicketFrame, _claim),
    "typing": Action(TypingFrame, _typing),
    "viewing": Action(ViewingFrame, _viewing),
}


ROUTES = RouteTable("agents")


@ROUTES.websocket("/agent/ws", summary="The agent gateway (docs/agent-protocol.md)")
async def agent_ws(request: web.Request) -> web.StreamResponse:
    return await serve(request, lambda ws: AgentConnection(request, ws), heartbeat=None)
