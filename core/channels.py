"""What every channel speaks with core: normalized messages in, channel calls out.

A channel package (``connectors/<kind>/``) turns what arrives into an :class:`InboundMessage` for
``core.ingest`` (or the inbox) and an :class:`OutboundMessage` into the channel's call, returning
the channel's message id. Core is handed the channels it serves as :class:`ChannelInfo`
descriptions (the composition root passes ``connectors.registry.CHANNELS``); it never imports a
channel package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from core.errors import DeliveryError
from core.models import utcnow

if TYPE_CHECKING:
    from core.hub import Hub

__all__ = ["Attachment", "ChannelInfo", "Connector", "DeliveryError", "InboundMessage", "OutboundMessage",
           "SurveyInvite"]


@dataclass(frozen=True)
class Attachment:
    name: str
    content_type: str
    url: str | None = None
    size: int | None = None
    # Set for a file an agent uploaded (core.attachments): the connector fetches its bytes by id.
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "content_type": self.content_type, "url": self.url,
                               "size": self.size}
        if self.id is not None:
            out["id"] = self.id
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attachment:
        return cls(name=data["name"], content_type=data["content_type"], url=data.get("url"), size=data.get("size"),
                   id=data.get("id"))


@dataclass(frozen=True)
class InboundMessage:
    tenant_id: int
    channel: str
    # The customer's identity on this channel (visitor id, openid, e-mail address, JID).
    external_id: str
    text: str
    # The channel's own id for this message: the key that makes ingest idempotent.
    channel_message_id: str
    received_at: datetime = field(default_factory=utcnow)
    attachments: tuple[Attachment, ...] = ()
    customer_name: str | None = None
    customer_email: str | None = None
    subject: str | None = None
    customer_attributes: dict[str, Any] = field(default_factory=dict)
    # Threading, for channels whose messages say what they answer (e-mail). The message joins the
    # first ticket it can of: the tickets of the channel messages it answers (``answers``: channel
    # message ids, received or sent, the most specific first), then the tickets the channel's own
    # reference names (``ticket_refs``). It joins one only when its sender is that ticket's
    # customer or one of its participants, and the ticket is not closed (core.ingest).
    answers: tuple[str, ...] = ()
    ticket_refs: tuple[int, ...] = ()
    # What a message that threads to nothing does: join the sender's open ticket on the channel
    # (a chat), or open a ticket of its own (e-mail: a new mail is a new conversation).
    join_open: bool = True
    # Others the message was addressed to (an e-mail's Cc), by their identity on the channel: they
    # become participants of its ticket, whose replies join it.
    participants: tuple[str, ...] = ()
    # A prober's synthetic message (core.probes), checked by the channel before it is made:
    # core.ingest acknowledges and echoes it and stores nothing of it.
    probe: bool = False


@dataclass(frozen=True)
class OutboundMessage:
    tenant_id: int
    channel: str
    external_id: str
    text: str
    message_id: int
    ticket_id: int
    attachments: tuple[Attachment, ...] = ()
    author_name: str | None = None
    created_at: datetime | None = None
    # Channel-specific context (e.g. an e-mail thread's Message-ID) kept with the ticket.
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SurveyInvite:
    """A satisfaction survey to put to a customer (core.csat): the channel asks in its own way and
    points to the hosted rating page (``url``, whose token is the capability to answer)."""

    tenant_id: int
    channel: str
    external_id: str
    ticket_id: int
    survey_id: int
    token: str
    url: str
    subject: str | None = None


class Connector:
    """One per channel kind and hub. Subclasses set ``kind`` and implement :meth:`send`."""

    kind: ClassVar[str] = ""
    # Whether delivery is a publication on our own bus (web chat: the visitor's socket hears of it,
    # a reconnect reads history). Such a reply is stored as sent in its own transaction and
    # published right after commit, with no broker hop and no claim; channels that call an outside
    # API (WeChat, e-mail, XMPP) keep the outbox and its retries.
    delivers_on_commit: ClassVar[bool] = False
    # Whether the channel's customer identities are e-mail addresses: a ticket an agent starts on
    # it for a customer who has never written on it goes to the customer's e-mail address (the
    # identity is made with the ticket).
    identity_is_email: ClassVar[bool] = False
    # Whether the channel asks solved tickets' customers for a rating (:meth:`send_survey`); a
    # channel that does not gets no survey rows at all (core.csat.offer).
    surveys: ClassVar[bool] = False

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def start(self) -> None:
        """Open long-lived links (IMAP, XMPP) here; web-hook channels need nothing."""

    async def stop(self) -> None:
        """Close what :meth:`start` opened."""

    async def send(self, message: OutboundMessage) -> str:
        """Deliver ``message``; return the channel's message id or raise :class:`DeliveryError`."""
        raise NotImplementedError

    async def send_survey(self, survey: SurveyInvite) -> None:
        """Ask for a rating (channels with ``surveys``); raise :class:`DeliveryError` as :meth:`send`."""
        raise DeliveryError(f"the {self.kind} channel sends no surveys", retry=False, code="no_surveys")


class ChannelInfo(Protocol):
    """What core needs to know of a channel (``web.channels.ChannelSpec`` is the full description)."""

    @property
    def kind(self) -> str: ...

    # A live conversation (chat) rather than a mailbox: when its agent drops, the ticket goes back
    # to routing instead of waiting for them.
    @property
    def live_chat(self) -> bool: ...

    @property
    def connector(self) -> type[Connector]: ...
