"""Request bodies, and the agent gateway's frames (docs/agent-protocol.md), which share their fields.

Unknown fields of a body are refused, so a typo is an error and not a silent no-op (frames ignore
them, see :class:`web.schemas.Frame`).

Types are strict: JSON's own types only, no coercion. Lax parsing turned ``true`` into the id 1
and ``"7"`` into 7, so a client bug could transfer a ticket to agent 1 instead of being told.
Ids are bounded by what their columns hold (see :data:`core.models.MAX_ID`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, EmailStr, Field, ValidationInfo, field_validator, model_validator

from core.attachments import MAX_PER_MESSAGE as MAX_ATTACHMENTS
from core.models import MAX_BIG_ID
from web.schemas import (
    AgentId,
    AttachmentId,
    ClientId,
    CustomerId,
    Frame,
    GroupId,
    Patch,
    ProbeMark,
    RuleId,
    Strict,
    TicketId,
)

_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _iso_day(value: Any) -> Any:
    """A day as JSON has it: the string YYYY-MM-DD (no timestamps, no times)."""
    if not isinstance(value, str) or not _DAY.match(value):
        raise ValueError("a day is written YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value} is not a day of the calendar") from None


Day = Annotated[date, BeforeValidator(_iso_day), Field(json_schema_extra={"type": "string", "format": "date"})]
StatusName = Literal["new", "open", "pending", "solved", "closed"]
PriorityName = Literal["low", "normal", "high", "urgent"]
RoleName = Literal["owner", "admin", "supervisor", "agent"]
# A tenant's status (core.models.TenantStatus) and its contract's state (ContractState), as the
# tenant's and the operator's answers and the operator's filters name them.
TenantStatusName = Literal["active", "suspended", "ended", "purging", "purged"]
ContractStateName = Literal["active", "ending", "ended"]
Tag = str


class LoginBody(Strict):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class PasswordBody(Strict):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class MessageFields(Strict):
    """What an agent's message is, over HTTP (:class:`MessageBody`) and the gateway (:class:`MessageFrame`)."""

    # The client's key for this message: a retry with the same one returns the first message.
    client_id: ClientId | None = None
    # Declared before text, so text's check can see them: text may be empty only with attachments.
    attachments: list[AttachmentId] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)
    text: str = Field(default="", validate_default=True)

    @field_validator("text")
    @classmethod
    def _text_or_attachments(cls, value: str, info: ValidationInfo) -> str:
        if not value and not info.data.get("attachments"):
            raise ValueError("text is required (it may be empty only when attachments are given)")
        return value


class MessageBody(MessageFields):
    kind: Literal["reply", "note"] = "reply"


class NewCustomer(Strict):
    name: str | None = Field(default=None, max_length=200)
    email: EmailStr | None = None


class CreateTicketBody(Strict):
    text: str = Field(min_length=1)
    # Keys the ticket's first message: a retry with the same one returns the ticket made first.
    client_id: ClientId | None = None
    subject: str | None = Field(default=None, max_length=500)
    customer_id: CustomerId | None = None
    customer: NewCustomer | None = None
    channel: str | None = Field(default=None, max_length=40)
    assignee_id: AgentId | None = None
    group_id: GroupId | None = None
    priority: PriorityName = "normal"
    tags: list[Tag] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def one_customer(self) -> CreateTicketBody:
        if (self.customer_id is None) == (self.customer is None):
            raise ValueError("give exactly one of customer_id or customer")
        return self


class TransferBody(Strict):
    agent_id: AgentId | None = None
    group_id: GroupId | None = None

    @model_validator(mode="after")
    def one_target(self) -> TransferBody:
        if (self.agent_id is None) == (self.group_id is None):
            raise ValueError("give exactly one of agent_id or group_id")
        return self


class UpdateTicketBody(Strict):
    status: StatusName | None = None
    priority: PriorityName | None = None
    subject: str | None = Field(default=None, min_length=1, max_length=500)
    tags: list[Tag] | None = Field(default=None, max_length=50)
    add_tags: list[Tag] | None = Field(default=None, max_length=50)
    remove_tags: list[Tag] | None = Field(default=None, max_length=50)


class CreateAgentBody(Strict):
    email: EmailStr
    name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=8, max_length=1024)
    role: RoleName = "agent"
    capacity: int = Field(default=5, ge=0, le=1000)
    group_ids: list[GroupId] = Field(default_factory=list, max_length=100)


class AgentBatchBody(Strict):
    """Seats added at once, all or none (at most 100: core.seats.MAX_BATCH)."""

    agents: list[CreateAgentBody] = Field(min_length=1, max_length=100)


class RemoveAgentsBody(Strict):
    """Seats removed at once, all or none (at most 100)."""

    agent_ids: list[AgentId] = Field(min_length=1, max_length=100)


class NoticeBody(Strict):
    """The day a contract ends (00:00 UTC): at least 30 days away, no later than the term's end."""

    ends_on: Day


class CreateGroupBody(Strict):
    name: str = Field(min_length=1, max_length=200)


class PresenceBody(Strict):
    status: Literal["online", "away", "offline"]


StrategyName = Literal["round_robin", "least_busy", "skills", "sticky", "manual"]


class RuleBody(Strict):
    name: str = Field(min_length=1, max_length=200)
    conditions: dict[str, Any] = Field(default_factory=dict)
    actions: dict[str, Any]
    enabled: bool = True
    position: int | None = Field(default=None, ge=0, le=100_000)


class RulePatch(Patch):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    conditions: dict[str, Any] | None = None
    actions: dict[str, Any] | None = None
    enabled: bool | None = None
    position: int | None = Field(default=None, ge=0, le=100_000)


class RuleOrderBody(Strict):
    ids: list[RuleId] = Field(min_length=1, max_length=1000)


class RoutingSettingsBody(Strict):
    default_group_id: GroupId | None = None
    business_hours: dict[str, Any] | None = None
    offline_policy: Literal["reroute", "keep"] = "reroute"
    default_overflow_seconds: int = Field(default=600, ge=10, le=7 * 24 * 3600)
    unlimited_wait: bool = False


class GroupPatch(Patch):
    # Both null (or clear_overflow): no overflow.
    nullable: ClassVar[frozenset[str]] = frozenset({"overflow_group_id", "overflow_after_seconds"})
    name: str | None = Field(default=None, min_length=1, max_length=200)
    strategy: StrategyName | None = None
    sticky_days: int | None = Field(default=None, ge=1, le=365)
    sticky_fallback: Literal["round_robin", "least_busy", "skills", "manual"] | None = None
    overflow_group_id: GroupId | None = None
    overflow_after_seconds: int | None = Field(default=None, ge=0, le=7 * 24 * 3600)
    clear_overflow: bool = False


class MembersBody(Strict):
    agent_ids: list[AgentId] = Field(max_length=1000)


class AgentPatch(Patch):
    # null group_ids has always meant "leave the groups alone".
    nullable: ClassVar[frozenset[str]] = frozenset({"group_ids"})
    name: str | None = Field(default=None, min_length=1, max_length=200)
    role: RoleName | None = None
    capacity: int | None = Field(default=None, ge=0, le=1000)
    channel_capacity: dict[str, int] | None = None
    skills: dict[str, int] | None = None
    group_ids: list[GroupId] | None = Field(default=None, max_length=100)
    active: bool | None = None


class CustomerPatch(Patch):
    nullable: ClassVar[frozenset[str]] = frozenset({"name", "email"})
    name: str | None = Field(default=None, max_length=200)
    email: EmailStr | None = None
    tags: list[str] | None = Field(default=None, max_length=50)
    attributes: dict[str, Any] | None = None


# --- the agent workspace (#13): merges, canned replies, macros, mentions -----------------------
class CustomerMergeBody(Strict):
    """Merge the customer ``other_id`` into the one in the path."""

    other_id: CustomerId


class TicketMergeBody(Strict):
    """Merge the ticket ``other_ticket_id`` into the one in the path."""

    other_ticket_id: TicketId


class SplitBody(Strict):
    """Split a message into a new ticket; ``following``: the messages after it go too."""

    following: bool = False
    subject: str | None = Field(default=None, min_length=1, max_length=500)


CANNED_TEXT = 16 * 1024


class CannedBody(Strict):
    scope: Literal["personal", "tenant"] = "personal"
    shortcut: str = Field(min_length=1, max_length=65)
    title: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=CANNED_TEXT)


class CannedPatch(Strict):
    shortcut: str | None = Field(default=None, min_length=1, max_length=65)
    title: str | None = Field(default=None, min_length=1, max_length=200)
    text: str | None = Field(default=None, min_length=1, max_length=CANNED_TEXT)


class TextAction(Strict):
    type: Literal["reply", "note"]
    text: str = Field(min_length=1, max_length=CANNED_TEXT)


class TagsAction(Strict):
    type: Literal["add_tags", "remove_tags"]
    tags: list[Tag] = Field(min_length=1, max_length=50)


class StatusAction(Strict):
    type: Literal["status"]
    status: StatusName


class PriorityAction(Strict):
    type: Literal["priority"]
    priority: PriorityName


class GroupAction(Strict):
    type: Literal["group"]
    group_id: GroupId


MacroAction = Annotated[TextAction | TagsAction | StatusAction | PriorityAction | GroupAction,
                        Field(discriminator="type")]


class MacroBody(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)
    actions: list[MacroAction] = Field(min_length=1, max_length=20)


class MacroPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)
    actions: list[MacroAction] | None = Field(default=None, min_length=1, max_length=20)


MentionId = Annotated[int, Field(gt=0, le=MAX_BIG_ID)]


class MentionsReadBody(Strict):
    """Mark mentions read: these ``ids``, or all of the caller's (``all``: true)."""

    ids: list[MentionId] | None = Field(default=None, min_length=1, max_length=500)
    all: bool = False

    @model_validator(mode="after")
    def ids_or_all(self) -> MentionsReadBody:
        if (self.ids is None) == (not self.all):
            raise ValueError("give ids, or all: true")
        return self


# --- the agent gateway's frames (docs/agent-protocol.md) ---------------------------------------
# Each maps a refused field to the code the protocol has always given it (see web.schemas.Frame).
class Hello(Frame):
    codes: ClassVar[Mapping[str, str]] = {"probe": "invalid_probe"}
    # Required, but for a prober's hello (core.probes), which carries its mark instead.
    token: str | None = Field(default=None, min_length=1, max_length=512)
    since: int | None = Field(default=None, ge=0, le=MAX_BIG_ID)
    status: str | None = None  # online (anything else) or away
    probe: ProbeMark | None = None

    @model_validator(mode="after")
    def _token_or_probe(self) -> Hello:
        if self.token is None and self.probe is None:
            raise ValueError("token is required")
        return self


class ActionFrame(Frame):
    ref: Any = None  # the client's, echoed in the answer


class TicketFrame(ActionFrame):
    """A ticket action's envelope; get_ticket and claim are only this."""

    codes: ClassVar[Mapping[str, str]] = {"ticket_id": "invalid_ticket_id"}
    ticket_id: TicketId


# The envelope last: it comes first in the fields (checked first) and its config (extra ignored) wins.
class MessageFrame(MessageFields, TicketFrame):
    """reply and note."""

    codes: ClassVar[Mapping[str, str]] = {**TicketFrame.codes, "attachments": "invalid_attachments",
                                          "text": "empty_text", "client_id": "invalid_client_id"}


class StatusFrame(TicketFrame):
    codes: ClassVar[Mapping[str, str]] = {**TicketFrame.codes, "status": "invalid_status"}
    status: StatusName


class PriorityFrame(TicketFrame):
    codes: ClassVar[Mapping[str, str]] = {**TicketFrame.codes, "priority": "invalid_priority"}
    priority: PriorityName


class TagsFrame(TicketFrame):
    # Not bounded here: core counts the tags once de-duplicated (too_many_tags), as it always has.
    codes: ClassVar[Mapping[str, str]] = {**TicketFrame.codes, "tags": "invalid_tag", "add": "invalid_tag",
                                          "remove": "invalid_tag"}
    tags: list[Tag] | None = None
    add: list[Tag] | None = None
    remove: list[Tag] | None = None


class TransferFrame(TransferBody, TicketFrame):
    codes: ClassVar[Mapping[str, str]] = {**TicketFrame.codes, "agent_id": "invalid_id", "group_id": "invalid_id",
                                          "": "transfer_target"}


class TypingFrame(TicketFrame):
    """The agent is typing on a ticket (``composing``) or stopped (``paused``): a live signal, never
    stored (core.live)."""

    codes: ClassVar[Mapping[str, str]] = {**TicketFrame.codes, "state": "invalid_typing_state"}
    state: Literal["composing", "paused"] = "composing"


class ViewingFrame(TicketFrame):
    """The agent has the ticket open (``viewing``, again every 20 s while it stays open) or closed it
    (``left``): the other agents who see it are told, never stored (core.live)."""

    codes: ClassVar[Mapping[str, str]] = {**TicketFrame.codes, "state": "invalid_viewing_state"}
    state: Literal["viewing", "left"] = "viewing"


class PresenceFrame(PresenceBody, ActionFrame):
    codes: ClassVar[Mapping[str, str]] = {"status": "invalid_presence"}


# --- query strings (described in OpenAPI; the handlers read request.query themselves) ----------
_STATUS = "(new|open|pending|solved|closed)"


class TicketQuery(Strict):
    view: Literal["mine", "unassigned", "all", "pending", "solved"] | None = Field(
        default=None, description="A view of the workspace (all: supervisors and up)")
    status: str | None = Field(default=None, pattern=f"^,*({_STATUS}(,+{_STATUS})*)?,*$",
                               description="Statuses to list, comma-separated (open,pending)")
    channel: str | None = Field(default=None, max_length=40)
    group_id: GroupId | None = None
    tag: str | None = Field(default=None, max_length=64)
    priority: PriorityName | None = None
    assignee_id: AgentId | None = None
    unassigned: Literal["1", "true", "0", "false"] | None = Field(
        default=None, description="1 or true: only tickets without an assignee")
    before_id: TicketId | None = Field(default=None, description="Tickets older than this one (the next page)")
    limit: int = Field(default=50, ge=1, le=500)


class SearchQuery(Strict):
    q: str = Field(min_length=1, max_length=200, description="What to find: words, or Chinese in any length")
    limit: int = Field(default=20, ge=1, le=50)
    before: int | None = Field(default=None, ge=1, le=MAX_BIG_ID, description="next_before of the previous page")


class PageQuery(Strict):
    after_id: int | None = Field(default=None, ge=1, le=MAX_BIG_ID, description="The entry after which to go on")
    limit: int = Field(default=100, ge=1, le=500)


class DocumentQuery(Strict):
    format: Literal["json", "pdf", "xlsx"] = "json"


class StatementQuery(DocumentQuery):
    from_: str | None = Field(default=None, alias="from", pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                              description="The first day (UTC), YYYY-MM-DD; default: the current term's")
    to: str | None = Field(default=None, pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                           description="The day after the last (UTC); default: the current term's end")


class QueueQuery(Strict):
    group_id: GroupId | None = None
    limit: int = Field(default=100, ge=1, le=1000)


class UploadQuery(Strict):
    name: str = Field(min_length=1, max_length=200, description="The file's name, as the customer will see it")


class CustomerTicketsQuery(Strict):
    before_id: TicketId | None = Field(default=None, description="Tickets older than this one (the next page)")
    limit: int = Field(default=50, ge=1, le=200)


class CannedQuery(Strict):
    q: str | None = Field(default=None, max_length=200,
                          description="Keep those whose shortcut, title or text contain it; /ref: the shortcuts "
                          "that start with ref")
    limit: int = Field(default=50, ge=1, le=200)


class MentionsQuery(Strict):
    unread: Literal["1", "true", "0", "false"] | None = Field(default=None, description="1 or true: only unread ones")
    before_id: MentionId | None = Field(default=None, description="Mentions older than this one (the next page)")
    limit: int = Field(default=50, ge=1, le=200)


class AvailabilityQuery(Strict):
    month: str | None = Field(default=None, pattern=r"^[0-9]{4}-[0-9]{2}$",
                              description="The calendar month (UTC), YYYY-MM; default: the current month so far")


class ConfirmBody(Strict):
    """A typed confirmation of a deletion: the tenant's primary domain (a tenant's purge), the
    customer's id (a customer's erasure)."""

    confirm: str = Field(min_length=1, max_length=255)


# --- the audit and login logs (#16) ------------------------------------------------------------------
_TIME = "A time, ISO 8601 (2026-12-01 or 2026-12-01T08:00:00+08:00; without an offset: UTC)"


class LogQuery(Strict):
    from_: str | None = Field(default=None, alias="from", max_length=40, description=_TIME + "; from it on")
    to: str | None = Field(default=None, max_length=40, description=_TIME + "; before it")


class AuditFilterQuery(LogQuery):
    actor_type: Literal["agent", "operator", "system", "anonymous"] | None = None
    actor_id: int | None = Field(default=None, ge=1, le=2**31 - 1, description="The agent (or account) who acted")
    action: str | None = Field(default=None, max_length=80, description="An action, or its beginning: agent. "
                               "finds agent.create, agent.update...")
    target_type: str | None = Field(default=None, max_length=40)
    target_id: str | None = Field(default=None, max_length=80)


class AuditQuery(AuditFilterQuery):
    before_id: int | None = Field(default=None, ge=1, le=MAX_BIG_ID, description="The page's rows are older "
                                  "than this one (next_before_id of the page before)")
    limit: int = Field(default=100, ge=1, le=500)


class AuditExportQuery(AuditFilterQuery):
    format: Literal["csv", "xlsx"] = "csv"


class LoginFilterQuery(LogQuery):
    agent_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    email: str | None = Field(default=None, max_length=320)
    outcome: Literal["success", "bad_password", "unknown_user", "disabled", "locked", "throttled"] | None = None
    ip: str | None = Field(default=None, max_length=64)


class LoginQuery(LoginFilterQuery):
    before_id: int | None = Field(default=None, ge=1, le=MAX_BIG_ID, description="The page's rows are older "
                                  "than this one (next_before_id of the page before)")
    limit: int = Field(default=100, ge=1, le=500)


class LoginExportQuery(LoginFilterQuery):
    format: Literal["csv", "xlsx"] = "csv"

class ExportBody(Strict):
    """An export of the tenant's customers and tickets (core.exports.Filters): tickets created from
    ``from`` to ``to`` (whole UTC days, both included), of these statuses and channels (left out or
    empty: all), and with ``include_messages`` a sheet of every message of those tickets."""

    from_: Day | None = Field(default=None, alias="from", description="The first day (UTC), YYYY-MM-DD")
    to: Day | None = Field(default=None, description="The last day (UTC), YYYY-MM-DD, included")
    statuses: list[StatusName] = Field(default_factory=list, max_length=5)
    channels: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]] = Field(default_factory=list,
                                                                                      max_length=20)
    include_messages: bool = False

    @model_validator(mode="after")
    def _period(self) -> ExportBody:
        if self.from_ is not None and self.to is not None and self.from_ > self.to:
            raise ValueError("from is after to")
        return self


class ExportFileQuery(Strict):
    expires: int = Field(description="When the link stops working (Unix time), as the export gave it")
    signature: str = Field(max_length=64, description="The link's signature, as the export gave it")


# --- reports (#17) ------------------------------------------------------------------------------------
_REPORT_DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


class ReportQuery(Strict):
    from_: str | None = Field(default=None, alias="from", pattern=_REPORT_DAY,
                              description="The first day, YYYY-MM-DD, in the tenant's reporting time zone "
                              "(default: 29 days before to)")
    to: str | None = Field(default=None, pattern=_REPORT_DAY, description="The last day, included (default: today)")
    channel: str | None = Field(default=None, max_length=40)
    group_id: GroupId | None = None
    agent_id: AgentId | None = None
    tag: str | None = Field(default=None, max_length=64)
    format: Literal["json", "xlsx"] = "json"


# --- satisfaction surveys (core.csat) ------------------------------------------------------------------
class CsatAnswerBody(Strict):
    """A customer's answer on the hosted rating page: a whole number 1-5 and an optional comment."""

    rating: int = Field(ge=1, le=5, description="1 (poor) to 5 (great)")
    comment: str | None = Field(default=None, max_length=2000)


class CsatPageQuery(Strict):
    rating: Literal["1", "2", "3", "4", "5"] | None = Field(
        default=None, description="The rating to show chosen (the e-mail's links); nothing is stored until the "
                                  "customer sends the page")
    lang: Literal["en", "zh-CN"] | None = Field(default=None, description="The page's language (default: the "
                                                "browser's Accept-Language)")


class CsatSettingsBody(Strict):
    enabled: bool = Field(description="Whether solved tickets' customers are asked to rate them (default on)")
# --- SLA policies and the breach report (#17, core.sla) ---------------------------------------------
SlaSeconds = Annotated[int, Field(ge=1, le=366 * 86400, description="Seconds (1 to a year)")]
ChannelKind = Annotated[str, Field(min_length=1, max_length=40)]


class SlaPolicyBody(Strict):
    name: str = Field(min_length=1, max_length=200)
    priorities: list[PriorityName] = Field(default_factory=list, max_length=4,
                                           description="The priorities it applies to; empty: any")
    channels: list[ChannelKind] = Field(default_factory=list, max_length=50,
                                        description="The channels it applies to; empty: any")
    first_response: SlaSeconds | None = None
    next_response: SlaSeconds | None = None
    resolution: SlaSeconds | None = None
    business_hours: bool = Field(default=False, description="Count the tenant's business hours only")
    warn_before: SlaSeconds | None = Field(default=None, description="Warn this long before a deadline; "
                                           "default: when 80 % of the target ran")
    escalate_priority: PriorityName | None = Field(default=None, description="Raise the ticket to this "
                                                   "priority when a warning fires")
    enabled: bool = True
    position: int | None = Field(default=None, ge=0, le=100_000)


class SlaPolicyPatch(Patch):
    nullable: ClassVar[frozenset[str]] = frozenset({"first_response", "next_response", "resolution", "warn_before",
                                                     "escalate_priority"})
    name: str | None = Field(default=None, min_length=1, max_length=200)
    priorities: list[PriorityName] | None = Field(default=None, max_length=4)
    channels: list[ChannelKind] | None = Field(default=None, max_length=50)
    first_response: SlaSeconds | None = None
    next_response: SlaSeconds | None = None
    resolution: SlaSeconds | None = None
    business_hours: bool | None = None
    warn_before: SlaSeconds | None = None
    escalate_priority: PriorityName | None = None
    enabled: bool | None = None
    position: int | None = Field(default=None, ge=0, le=100_000)


class SlaReportQuery(ReportQuery):
    """The reports' common query (ReportQuery); the breach report is JSON only."""

    format: Literal["json"] = "json"
