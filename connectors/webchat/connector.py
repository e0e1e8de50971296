"""Web chat: an embeddable widget (one script tag), a customer websocket and an HTTP fallback.

A visitor is known by a random id the server hands out and the widget keeps in localStorage, so a
page reload is the same conversation. Protocol: connectors/webchat/README.md.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from typing import Any

from core.attachments import for_customer
from core.channels import Connector, InboundMessage, OutboundMessage
from core.errors import InvalidInput
from core.live import live_topic
from core.serialize import iso
from web.schemas import CLIENT_ID_PATTERN

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


class WebchatConnector(Connector):
    kind = "webchat"
    delivers_on_commit = True

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

    async def receive(
        self, tenant_id: int, visitor_id: str, client_id: str, text: Any, *, name: str | None = None,
        email: str | None = None, language: str | None = None,
        on_stored: Callable[[dict[str, Any]], object] | None = None,
    ) -> dict[str, Any]:
        """Store a visitor's message and show it on their other tabs. ``on_stored`` sees the stored
        message before that publication: the sending socket marks it as its own (it acks it), so
        the echo meant for the other tabs cannot reach it first."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput("text must be a non-empty string", code="empty_text")
        # Through the live group commit (core.inbox): acknowledged once the ticket message is committed.
        result = await self.hub.inbox.ingest(InboundMessage(
            tenant_id=tenant_id, channel=self.kind, external_id=visitor_id, text=text,
            # Scoped by visitor: one visitor can never collide with (or read) another's message.
            channel_message_id=f"{visitor_id}:{client_id}", customer_name=name, customer_email=email,
            # The browser's language (routing rules can use it); trusted attributes such as VIP are
            # set by agents and admins, never by the visitor.
            customer_attributes={"language": language.lower()} if language else {},
        ))
        public = {k: result.message[k] for k in ("id", "direction", "text", "attachments", "created_at")}
        public["author"] = None
        if on_stored is not None:
            on_stored(public)
        if not result.duplicate:
            # Other tabs of the same visitor show it too.
            await self.hub.bus.publish(visitor_topic(tenant_id, visitor_id), {"type": "message", "message": public})
        return public
