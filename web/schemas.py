"""Strict request models: unknown fields are refused, so a typo is an error and not a silent no-op.

Types are strict: JSON's own types only, no coercion. Lax parsing turned ``true`` into the id 1
and ``"7"`` into 7, so a client bug could transfer a ticket to agent 1 instead of being told.
Ids are bounded by what their columns hold (see :data:`core.models.MAX_ID`). The admin API's
bodies, the channels' bodies and the websocket frames all build on these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from core.models import MAX_BIG_ID, MAX_ID

# Agents, groups and routing rules have INTEGER keys; customers, tickets and attachments BigId ones.
AgentId = Annotated[int, Field(gt=0, le=MAX_ID)]
GroupId = Annotated[int, Field(gt=0, le=MAX_ID)]
RuleId = Annotated[int, Field(gt=0, le=MAX_ID)]
CustomerId = Annotated[int, Field(gt=0, le=MAX_BIG_ID)]
TicketId = Annotated[int, Field(gt=0, le=MAX_BIG_ID)]
AttachmentId = Annotated[int, Field(gt=0, le=MAX_BIG_ID)]
EventId = Annotated[int, Field(ge=0, le=MAX_BIG_ID)]
# A client's key for what it sends, so a retry stores nothing twice: web chat's customer messages
# and agents' replies, notes and hand-made tickets.
CLIENT_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"
ClientId = Annotated[str, Field(pattern=CLIENT_ID_PATTERN)]
# A textual id in a path (a webhook key, a platform's media id): web.http.word_param reads it, and
# the OpenAPI document (web.api.WordId) states it.
WORD_ID_PATTERN = r"[A-Za-z0-9_.=+-]+"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=False)


def _refuse_null_in_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """What :class:`Patch` refuses, said in its JSON schema: no null but for the ``nullable`` fields."""
    nullable: frozenset[str] = getattr(model, "nullable", frozenset())
    for name, prop in schema.get("properties", {}).items():
        options = prop.get("anyOf")
        if name in nullable or not options:
            continue
        rest = [o for o in options if o.get("type") != "null"]
        del prop["anyOf"]
        if len(rest) == 1:
            prop.update(rest[0])
        else:
            prop["anyOf"] = rest
        if "default" in prop and prop["default"] is None:
            del prop["default"]


class Patch(Strict):
    """A partial change (PATCH): a field left out is left as it is; one given is set. ``null`` is
    refused (422 validation_error naming the field) except for the fields in ``nullable``, where it
    clears the value: a column that cannot be empty never reaches the database as NULL (that was
    a 500 on every PATCH route)."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=False,
                              json_schema_extra=_refuse_null_in_schema)
    nullable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.nullable:
            raise ValueError("may not be null (leave the field out to keep its value)")
        return value


class Out(BaseModel):
    """A response object, for the OpenAPI document (web.api): every key listed, no other
    (``additionalProperties: false``), so a key a handler adds and the model lacks is caught by the
    conformance checks (tests/test_openapi.py, make apicheck). Response models only describe: the
    handlers write their dicts as they always have."""

    model_config = ConfigDict(extra="forbid")


class Deleted(Out):
    """The answer of a DELETE: the id of what is gone (admin API and channels alike)."""

    deleted: int


class Frame(BaseModel):
    """A client's websocket frame (web.sockets parses it with :func:`web.sockets.parse_frame`).

    Strict like the bodies, but unknown fields are ignored, as the sockets always have: clients add
    their own keys (the widget's hello carries the page it runs on) and a refusal would cut them off.
    ``codes`` names the error code a socket's protocol gives a refused field ("" is the frame as a
    whole, a model validator's refusal); any other refusal is a ``validation_error`` with details.
    """

    model_config = ConfigDict(strict=True, extra="ignore", str_strip_whitespace=False)
    codes: ClassVar[Mapping[str, str]] = {}

    type: str


class ProbeMark(Strict):
    """A prober's mark on a hello frame (core.probes): ``at``, Unix seconds when it was made, and
    ``signature``, the HMAC-SHA256 (hex) of the tenant's id and ``at`` keyed with the hub's
    ``CHANNELHUB_PROBE_SECRET``. A socket whose hello carries one is a probe's, not a customer's or
    an agent's, once the signature is checked."""

    at: int = Field(ge=0, le=2**40)
    signature: str = Field(min_length=1, max_length=128)
