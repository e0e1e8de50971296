"""Web chat's bodies and frames (protocol: connectors/webchat/README.md). A customer's message is the
same fields over the socket (:class:`MessageFrame`) and the HTTP fallback (:class:`PostMessageBody`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from connectors.webchat.connector import VISITOR_ID, check_visitor
from core.models import MAX_BIG_ID
from web.schemas import CLIENT_ID_PATTERN, Frame, Out, Strict


def clean(value: Any, limit: int = 200) -> str | None:
    """A visitor's name, e-mail or language, best effort: trimmed and cut, None when there is none."""
    if isinstance(value, str) and value.strip():
        return value.strip()[:limit]
    return None


class ChatMessage(Strict):
    """A customer's message. The format of client_id (what keys the message) is checked as the
    connector's check_client_id does."""

    # The formats are checked by the connector (its own error codes); the schema states them.
    client_id: str = Field(json_schema_extra={"pattern": CLIENT_ID_PATTERN})
    text: str


class PostMessageBody(ChatMessage):
    """The widget's HTTP fallback: a message plus who is writing. Validated like every API body
    (unknown fields and wrong types are a validation_error naming the field); the formats of
    visitor_id and client_id are checked as on the socket."""

    visitor_id: str | None = Field(default=None, json_schema_extra={"pattern": VISITOR_ID.pattern})
    name: str | None = None
    email: str | None = None
    language: str | None = None


class MessageFrame(ChatMessage, Frame):
    codes: ClassVar[Mapping[str, str]] = {"client_id": "invalid_client_id", "text": "empty_text"}


class TypingFrame(Frame):
    """The customer typing (composing) or stopped (paused): passed to the agents, never stored."""

    codes: ClassVar[Mapping[str, str]] = {"state": "invalid_state"}
    state: Literal["composing", "paused"]


class ChatHello(Frame):
    """The socket's first frame. As lenient as the widget has always relied on: a visitor_id or since
    that is empty, zero or false means none (a new visitor; everything), and a name, e-mail or
    language that is not text is ignored."""

    codes: ClassVar[Mapping[str, str]] = {"visitor_id": "invalid_visitor", "since": "invalid_since"}

    visitor_id: str | None = None
    since: int | None = Field(default=None, ge=0, le=MAX_BIG_ID)
    name: str | None = None
    email: str | None = None
    language: str | None = None

    @field_validator("visitor_id", "since", mode="before")
    @classmethod
    def _falsy_is_none(cls, value: Any) -> Any:
        return value or None

    @field_validator("visitor_id")
    @classmethod
    def _visitor_format(cls, value: str | None) -> str | None:
        # check_visitor refuses with its own code and message (invalid_visitor), as on HTTP.
        return None if value is None else check_visitor(value)

    @field_validator("name", "email", "language", mode="before")
    @classmethod
    def _best_effort(cls, value: Any, info: ValidationInfo) -> str | None:
        return clean(value, 35 if info.field_name == "language" else 200)


# --- answers (described in OpenAPI, see web.api): what a customer may see of a message ---------
class PublicAttachment(Out):
    name: str
    content_type: str
    url: str | None = Field(description="The customer's own signed link for a file an agent uploaded")
    size: int | None


class PublicAuthor(Out):
    name: str | None


class PublicMessage(Out):
    """A message as a visitor sees it (core.serialize.public_message): no agent ids, no delivery state."""

    id: int
    direction: Literal["inbound", "outbound"]
    text: str
    attachments: list[PublicAttachment]
    created_at: datetime
    author: PublicAuthor | None = Field(description="The agent's name on a reply; null on the visitor's own")


class PostedMessage(Out):
    visitor_id: str = Field(description="The visitor's id: the one sent, or a new one to keep")
    message: PublicMessage


class History(Out):
    messages: list[PublicMessage]


class HistoryQuery(Strict):
    visitor_id: str = Field(pattern=VISITOR_ID.pattern)
    since: int = Field(default=0, ge=0, le=MAX_BIG_ID, description="The last message id the visitor has")
