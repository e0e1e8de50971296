"""Web chat's bodies and frames (protocol: connectors/webchat/README.md). A customer's message is the
same fields over the socket (:class:`MessageFrame`) and the HTTP fallback (:class:`PostMessageBody`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field, ValidationInfo, field_validator

from connectors.webchat.connector import check_visitor
from core.models import MAX_BIG_ID
from web.schemas import Frame, Strict


def clean(value: Any, limit: int = 200) -> str | None:
    """A visitor's name, e-mail or language, best effort: trimmed and cut, None when there is none."""
    if isinstance(value, str) and value.strip():
        return value.strip()[:limit]
    return None


class ChatMessage(Strict):
    """A customer's message. The format of client_id (what keys the message) is checked as the
    connector's check_client_id does."""

    client_id: str
    text: str


class PostMessageBody(ChatMessage):
    """The widget's HTTP fallback: a message plus who is writing. Validated like every API body
    (unknown fields and wrong types are a validation_error naming the field); the formats of
    visitor_id and client_id are checked as on the socket."""

    visitor_id: str | None = None
    name: str | None = None
    email: str | None = None
    language: str | None = None


class MessageFrame(ChatMessage, Frame):
    codes: ClassVar[Mapping[str, str]] = {"client_id": "invalid_client_id", "text": "empty_text"}


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
