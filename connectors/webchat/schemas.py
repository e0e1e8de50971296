"""Web chat's bodies and frames (protocol: connectors/webchat/README.md). A customer's message is the
same fields over the socket (:class:`MessageFrame`) and the HTTP fallback (:class:`PostMessageBody`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from connectors.webchat.connector import VISITOR_ID, check_visitor
from core.attachments import MAX_PER_MESSAGE
from core.models import MAX_BIG_ID
from web.schemas import CLIENT_ID_PATTERN, AttachmentId, Frame, Out, Patch, ProbeMark, Strict


def clean(value: Any, limit: int = 200) -> str | None:
    """A visitor's name, e-mail or language, best effort: trimmed and cut, None when there is none."""
    if isinstance(value, str) and value.strip():
        return value.strip()[:limit]
    return None


class ChatMessage(Strict):
    """A customer's message. The format of client_id (what keys the message) is checked as the
    connector's check_client_id does. ``attachments`` are ids of files this visitor uploaded
    (``POST /webchat/attachments``); the text may be empty only when there are some."""

    # The formats are checked by the connector (its own error codes); the schema states them.
    client_id: str = Field(json_schema_extra={"pattern": CLIENT_ID_PATTERN})
    # Declared before text, so text's check can see them.
    attachments: list[AttachmentId] = Field(default_factory=list, max_length=MAX_PER_MESSAGE)
    text: str = Field(default="", validate_default=True)

    @field_validator("text")
    @classmethod
    def _text_or_attachments(cls, value: str, info: ValidationInfo) -> str:
        if not value and not info.data.get("attachments"):
            raise ValueError("text is required (it may be empty only when attachments are given)")
        return value


class PostMessageBody(ChatMessage):
    """The widget's HTTP fallback: a message plus who is writing. Validated like every API body
    (unknown fields and wrong types are a validation_error naming the field); the formats of
    visitor_id and client_id are checked as on the socket."""

    visitor_id: str | None = Field(default=None, json_schema_extra={"pattern": VISITOR_ID.pattern})
    name: str | None = None
    email: str | None = None
    language: str | None = None


class MessageFrame(ChatMessage, Frame):
    codes: ClassVar[Mapping[str, str]] = {"client_id": "invalid_client_id", "text": "empty_text",
                                          "attachments": "invalid_attachments"}


class TypingFrame(Frame):
    """The customer typing (composing) or stopped (paused): passed to the agents, never stored."""

    codes: ClassVar[Mapping[str, str]] = {"state": "invalid_state"}
    state: Literal["composing", "paused"]


class CsatFrame(Frame):
    """The visitor's answer to a satisfaction survey shown in the widget (core.csat): the survey's
    token (from the ``csat`` frame), a rating 1-5 and an optional comment."""

    codes: ClassVar[Mapping[str, str]] = {"token": "survey_not_found", "rating": "invalid_rating",
                                          "comment": "invalid_comment"}
    token: str = Field(min_length=1, max_length=64)
    rating: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=2000)


class ChatHello(Frame):
    """The socket's first frame. As lenient as the widget has always relied on: a visitor_id or since
    that is empty, zero or false means none (a new visitor; everything), and a name, e-mail or
    language that is not text is ignored."""

    codes: ClassVar[Mapping[str, str]] = {"visitor_id": "invalid_visitor", "since": "invalid_since",
                                          "probe": "invalid_probe"}

    visitor_id: str | None = None
    since: int | None = Field(default=None, ge=0, le=MAX_BIG_ID)
    name: str | None = None
    email: str | None = None
    language: str | None = None
    # A prober's (core.probes): checked by the socket before anything else; never a customer's.
    probe: ProbeMark | None = None

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


# --- uploads ------------------------------------------------------------------------------------
class UploadQuery(Strict):
    visitor_id: str = Field(pattern=VISITOR_ID.pattern, description="The visitor's id (from the socket's welcome)")
    name: str = Field(min_length=1, max_length=1000,
                      description="The file's name; folders and invisible characters are dropped, cut to 200")


class CustomerFile(Out):
    id: int = Field(description="Name it in the visitor's message: attachments: [id]")
    name: str
    content_type: str
    size: int
    url: str = Field(description="The visitor's own signed link to the file (relative to the hub's origin)")


class UploadedFile(Out):
    attachment: CustomerFile


# --- the tenant's words for the widget (admin) ---------------------------------------------------
LANGUAGE_TAG = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}$"
MAX_WORDS = 2000
LanguageTag = Annotated[str, Field(pattern=LANGUAGE_TAG, max_length=35)]
Words = Annotated[str, Field(min_length=1, max_length=MAX_WORDS)]
ByLanguage = Annotated[dict[LanguageTag, Words], Field(max_length=20)]


class WebchatSettingsBody(Patch):
    """The tenant's own words, each a whole object by language tag (``{"en": "...", "zh-CN": "..."}``;
    ``{}`` clears it and the widget's own text is shown). A field left out is kept."""

    offline_message: ByLanguage | None = Field(
        default=None, description="Shown in the widget while no agent of the tenant is online")
    welcome: ByLanguage | None = Field(default=None, description="A greeting shown above the conversation")


class WebchatSettings(Out):
    offline_message: dict[str, str]
    welcome: dict[str, str]
