"""Web chat: an embeddable widget (one script tag), a customer websocket and an HTTP fallback.

A visitor is known by a random id the server hands out and the widget keeps in localStorage, so a
page reload is the same conversation. Protocol: connectors/webchat/README.md.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connectors.webchat import store
from connectors.webchat.settings import WebchatSettings
from core.attachments import for_customer
from core.channels import Attachment, Connector, InboundMessage, OutboundMessage, SurveyInvite
from core.errors import InvalidInput
from core.events import EventKind, tenant_topic
from core.live import live_topic
from core.models import Presence, utcnow
from core.serialize import iso
from web.schemas import CLIENT_ID_PATTERN

if TYPE_CHECKING:
    from core.hub import Hub

logger = logging.getLogger(__name__)

VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
CLIENT_ID = re.compile(CLIENT_ID_PATTERN)


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


def survey_frame(token: str) -> dict[str, Any]:
    return {"type": "csat", "survey": {"token": token}}


class TypingWatch:
    """Agents' typing for this process's visitor sockets: one subscription per tenant on the live
    topic (core.live), whatever the number of sockets, and each signal pushed to the sockets of the
    visitor it is for (their ``typing`` method)."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self._sockets: dict[tuple[int, str], set[Any]] = {}
        self._subs: dict[int, Any] = {}

    def add(self, tenant_id: int, visitor_id: str, socket: Any) -> None:
        self._sockets.setdefault((tenant_id, visitor_id), set()).add(socket)
        if tenant_id not in self._subs:
            self._subs[tenant_id] = self.hub.bus.subscribe(live_topic(tenant_id),
                                                           lambda signal: self._heard(tenant_id, signal))

    def remove(self, tenant_id: int, visitor_id: str, socket: Any) -> None:
        sockets = self._sockets.get((tenant_id, visitor_id))
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self._sockets[(tenant_id, visitor_id)]

    def _heard(self, tenant_id: int, signal: dict[str, Any]) -> None:
        by = signal.get("by") or {}
        if signal.get("kind") != "typing" or signal.get("channel") != "webchat" or by.get("type") != "agent":
            return
        for socket in list(self._sockets.get((tenant_id, str(signal.get("external_id"))), ())):
            # The agent's name only: what the customer may know of who answers.
            socket.push({"type": "typing", "state": signal.get("state"), "by": {"name": by.get("name")}})


class PresenceWatch:
    """Whether any agent of a tenant is online, for this process's visitor sockets: one subscription
    per tenant on its event topic while it has sockets here, the online agents loaded with one
    query when its first socket comes (and again when the bus may have lost events), then kept by
    the presence events. When the answer changes, each socket of the tenant is sent
    ``{"type": "agents", "online": bool}``."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self._sockets: dict[int, set[Any]] = {}
        self._subs: dict[int, Any] = {}
        self._online: dict[int, set[int]] = {}
        self._loading: dict[int, asyncio.Task[None]] = {}
        # Presence events heard while the tenant's agents load, applied after.
        self._heard_meanwhile: dict[int, list[dict[str, Any]]] = {}

    async def add(self, tenant_id: int, socket: Any) -> bool:
        """Watch for ``socket``; whether an agent of the tenant is online now."""
        self._sockets.setdefault(tenant_id, set()).add(socket)
        if tenant_id not in self._subs:
            # Subscribed before the query, so no change falls between the two.
            self._subs[tenant_id] = self.hub.bus.subscribe(
                tenant_topic(tenant_id), lambda event: self._heard(tenant_id, event),
                catch_up=lambda since: self._reload(tenant_id, since))
        if tenant_id not in self._online:
            task = self._loading.get(tenant_id)
            if task is None:
                task = self._loading[tenant_id] = asyncio.ensure_future(self._load(tenant_id))
            await asyncio.shield(task)
        return bool(self._online.get(tenant_id))

    def remove(self, tenant_id: int, socket: Any) -> None:
        sockets = self._sockets.get(tenant_id)
        if sockets is None:
            return
        sockets.discard(socket)
        if not sockets:
            del self._sockets[tenant_id]
            sub = self._subs.pop(tenant_id, None)
            if sub is not None:
                sub.close()
            self._online.pop(tenant_id, None)

    async def _load(self, tenant_id: int) -> None:
        self._heard_meanwhile[tenant_id] = []
        try:
            async with self.hub.db.read(tenant_id) as session:
                online = await store.online_agents(session)
            if tenant_id in self._sockets:
                self._online[tenant_id] = online
                for event in self._heard_meanwhile.get(tenant_id, []):
                    self._apply(tenant_id, event)
        finally:
            self._heard_meanwhile.pop(tenant_id, None)
            self._loading.pop(tenant_id, None)

    async def _reload(self, tenant_id: int, since: datetime) -> None:
        before = bool(self._online.get(tenant_id))
        self._online.pop(tenant_id, None)
        await self._load(tenant_id)
        if tenant_id in self._online and bool(self._online[tenant_id]) != before:
            self._tell(tenant_id)

    def _heard(self, tenant_id: int, event: dict[str, Any]) -> None:
        if event.get("kind") != EventKind.AGENT_PRESENCE:
            return
        meanwhile = self._heard_meanwhile.get(tenant_id)
        if meanwhile is not None:
            meanwhile.append(event)
            return
        if tenant_id not in self._online:
            return
        before = bool(self._online[tenant_id])
        self._apply(tenant_id, event)
        if bool(self._online[tenant_id]) != before:
            self._tell(tenant_id)

    def _apply(self, tenant_id: int, event: dict[str, Any]) -> None:
        agent_id = event.get("agent_id")
        if not isinstance(agent_id, int):
            return
        if event.get("status") == Presence.ONLINE:
            self._online[tenant_id].add(agent_id)
        else:
            self._online[tenant_id].discard(agent_id)

    def _tell(self, tenant_id: int) -> None:
        frame = {"type": "agents", "online": bool(self._online.get(tenant_id))}
        for socket in list(self._sockets.get(tenant_id, ())):
            socket.push(frame)


class WebchatConnector(Connector):
    kind = "webchat"
    delivers_on_commit = True
    surveys = True

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self.settings = hub.settings.channel(self.kind, WebchatSettings)
        # Never more than agents may upload (CHANNELHUB_MAX_ATTACHMENT_BYTES).
        self.max_upload_bytes = min(self.settings.max_upload_bytes, hub.settings.max_attachment_bytes)
        self.presence = PresenceWatch(hub)
        # What the per-visitor upload limit counts by (tests move it).
        self.clock: Callable[[], datetime] = utcnow

    @property
    def typing(self) -> TypingWatch:
        watch = getattr(self, "_typing", None)
        if watch is None:
            watch = self._typing = TypingWatch(self.hub)
        return watch

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

    async def send_survey(self, survey: SurveyInvite) -> None:
        """A rating card in the widget: published to the visitor's sockets; one who is away gets it
        with the next welcome while it is unanswered (core.csat.open_survey)."""
        await self.hub.bus.publish(visitor_topic(survey.tenant_id, survey.external_id), survey_frame(survey.token))

    async def receive(
        self, tenant_id: int, visitor_id: str, client_id: str, text: Any, *, name: str | None = None,
        email: str | None = None, language: str | None = None, attachments: Sequence[int] = (),
        on_stored: Callable[[dict[str, Any]], object] | None = None, probe: bool = False,
    ) -> dict[str, Any]:
        """Store a visitor's message and show it on their other tabs. ``attachments``: ids of files
        this visitor uploaded (any other is not found). ``on_stored`` sees the stored message before
        that publication: the sending socket marks it as its own (it acks it), so the echo meant for
        the other tabs cannot reach it first. ``probe``: a prober's message, whose mark the socket
        checked (core.probes): it goes the same way, and core.ingest echoes it instead of storing it."""
        if not isinstance(text, str) or (not text.strip() and not attachments):
            raise InvalidInput("text must be a non-empty string", code="empty_text")
        if probe:
            return await self._probe(tenant_id, visitor_id, client_id, text, attachments)
        files = await store.visitor_files(self.hub, tenant_id, visitor_id, attachments)
        # Through the live group commit (core.inbox): acknowledged once the ticket message is committed.
        result = await self.hub.inbox.ingest(InboundMessage(
            tenant_id=tenant_id, channel=self.kind, external_id=visitor_id, text=text,
            attachments=tuple(Attachment.from_dict(f) for f in files),
            # Scoped by visitor: one visitor can never collide with (or read) another's message.
            channel_message_id=f"{visitor_id}:{client_id}", customer_name=name, customer_email=email,
            # The browser's language (routing rules can use it); trusted attributes such as VIP are
            # set by agents and admins, never by the visitor.
            customer_attributes={"language": language.lower()} if language else {},
        ))
        public = {k: result.message[k] for k in ("id", "direction", "text", "created_at")}
        # The visitor's own files by their signed links, as in the history (never the agents' URLs).
        public["attachments"] = for_customer(self.hub.settings, tenant_id, result.message["attachments"])
        public["author"] = None
        if on_stored is not None:
            on_stored(public)
        if not result.duplicate:
            # Other tabs of the same visitor show it too.
            await self.hub.bus.publish(visitor_topic(tenant_id, visitor_id), {"type": "message", "message": public})
        return public

    async def _probe(self, tenant_id: int, visitor_id: str, client_id: str, text: str, attachments: Sequence[int]
                     ) -> dict[str, Any]:
        if attachments:  # a probe uploads nothing (nothing of it may be kept)
            raise InvalidInput("a probe's message has no attachments", code="invalid_attachments")
        result = await self.hub.inbox.ingest(InboundMessage(
            tenant_id=tenant_id, channel=self.kind, external_id=visitor_id, text=text,
            channel_message_id=f"{visitor_id}:{client_id}", probe=True))
        return {**{k: result.message[k] for k in ("id", "direction", "text", "created_at")}, "attachments": [],
                "author": None}
