"""Response models: the JSON the admin API's handlers answer, for the OpenAPI document.

They describe, they do not build: the handlers write the dicts of core.serialize, core.seats,
routing.config, core.customers and the agent workspace's (core.merges, core.canned, core.macros,
core.mentions) as before, and these models say what those dicts hold (every key, its type, whether
it may be null). ``tests/test_openapi.py`` checks real answers against them and ``make apicheck``
(schemathesis) checks every route's answers, so a key added to a dict and not here fails there.
One model per shape, reused wherever the shape is answered.

Objects refuse unknown keys (``additionalProperties: false``) so that the document lists every key
there is; the free-form ones (a rule's conditions, a customer's attributes) are plain objects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from admin_api.schemas import (
    ContractStateName,
    PriorityName,
    RoleName,
    StatusName,
    StrategyName,
    TenantStatusName,
)
from web.schemas import Out

Presence = Literal["online", "away", "offline"]
Direction = Literal["inbound", "outbound", "note"]
DeliveryState = Literal["pending", "sending", "sent", "failed"]


# --- agents and groups ------------------------------------------------------------------------
class Agent(Out):
    """An agent as core.serialize.agent_dict writes it."""

    id: int
    name: str
    email: str
    role: RoleName
    status: Presence
    capacity: int
    load: int
    channel_capacity: dict[str, int]
    skills: dict[str, int]
    active: bool


class Seat(Agent):
    """An agent with the groups they are in (core.seats, routing.config.update_agent)."""

    group_ids: list[int]


class Group(Out):
    id: int
    name: str


class GroupSettings(Group):
    """A group with its routing (routing.config.group_dict)."""

    strategy: StrategyName
    sticky_days: int
    sticky_fallback: str
    overflow_group_id: int | None
    overflow_after_seconds: int | None


class AgentEnvelope(Out):
    agent: Agent


class SeatEnvelope(Out):
    agent: Seat


class SeatsEnvelope(Out):
    agents: list[Seat]


class Charge(Out):
    """A seat change's ledger entry, as money: what was charged or credited (minor units)."""

    amount: int = Field(ge=0)
    currency: str
    seats: int
    days: int
    ledger_entry_id: int


class SeatAdded(Out):
    agent: Seat
    charged: Charge | None


class SeatsAdded(Out):
    agents: list[Seat]
    charged: Charge | None


class SeatsRemoved(Out):
    removed: list[int]
    already_removed: list[int]
    credited: Charge | None


class GroupEnvelope(Out):
    group: Group


class GroupsEnvelope(Out):
    groups: list[Group]


class GroupSettingsEnvelope(Out):
    group: GroupSettings


class MembersEnvelope(Out):
    group_id: int
    agent_ids: list[int]


# --- sign-in ----------------------------------------------------------------------------------
class LoginAnswer(Out):
    token: str
    agent: Agent


class TokenAnswer(Out):
    token: str


class Ok(Out):
    ok: Literal[True]


class PresenceAnswer(Out):
    status: Presence


# --- tickets and messages ---------------------------------------------------------------------
class CustomerRef(Out):
    id: int
    name: str | None
    email: str | None


class SlaDeadline(Out):
    """One open SLA deadline of a ticket (core.sla.deadline_view)."""

    target: Literal["first_response", "next_response", "resolution"]
    cycle: int = Field(description="Next response: which wait (1, 2, ...); 0 for the others")
    policy: str
    due_at: datetime | None = Field(description="When the clock runs out (null while paused with time left)")
    paused: bool = Field(description="The ticket is pending on the customer (or solved): the clock stands")
    remaining: float | None = Field(description="Seconds left while paused (business seconds on business hours)")
    met_at: datetime | None
    warned_at: datetime | None
    breached_at: datetime | None


class Ticket(Out):
    """A ticket as core.serialize.ticket_dict writes it (lists and the detail add its open SLA
    deadlines, ``sla``)."""

    id: int
    subject: str | None
    status: StatusName
    priority: PriorityName
    channel: str
    tags: list[str]
    group_id: int | None
    assignee_id: int | None
    customer_id: int
    customer: CustomerRef | None
    created_at: datetime
    updated_at: datetime
    last_message_at: datetime | None
    assigned_at: datetime | None
    first_response_at: datetime | None
    solved_at: datetime | None
    reopen_count: int
    sla: list[SlaDeadline] = Field(default_factory=list, description="Open SLA deadlines, soonest first "
                                   "(lists, the detail and the socket's snapshot; not in events)")


class QueuedTicket(Ticket):
    """A waiting ticket in the queue (core.tickets.queue)."""

    routing_state: str
    queued_at: datetime | None
    overflow_at: datetime | None


class MessageAttachment(Out):
    """A file on a message: an agent's upload (with its ``id``) or a channel's file (core.channels.Attachment)."""

    id: int | None = Field(default=None, description="Set for a file uploaded to the hub")
    name: str
    content_type: str
    url: str | None
    size: int | None


class Author(Out):
    type: Literal["customer", "agent"]
    id: int | None
    name: str | None


class Message(Out):
    """A message as core.serialize.message_dict writes it (``author`` is null for the system's)."""

    id: int
    ticket_id: int
    direction: Direction
    text: str
    attachments: list[MessageAttachment]
    author: Author | None
    channel: str
    delivery_state: DeliveryState | None
    created_at: datetime


class TicketDetail(Ticket):
    """A ticket as its detail shows it (core.tickets.get_ticket): with the ticket it was merged into."""

    merged_into_id: int | None = Field(description="The ticket this one was merged into (core.merges)")


class TicketEnvelope(Out):
    ticket: Ticket


class TicketsEnvelope(Out):
    tickets: list[Ticket]


class CsatSurvey(Out):
    """A ticket's satisfaction survey (core.csat): sent when the ticket was solved, rated by the customer."""

    id: int
    ticket_id: int
    channel: str
    state: Literal["pending", "sending", "sent", "failed"]
    agent_id: int | None = Field(description="Who had the ticket when it was solved (the rating counts for them)")
    group_id: int | None = Field(description="The ticket's group when it was solved")
    created_at: datetime
    sent_at: datetime | None
    rating: int | None = Field(description="1 (poor) to 5 (great); null until answered")
    comment: str | None
    answered_at: datetime | None


class TicketWithMessages(Out):
    ticket: TicketDetail
    messages: list[Message]
    csat: CsatSurvey | None = Field(description="The ticket's satisfaction survey; null when none was sent")


class CsatAnswered(Out):
    survey: CsatSurvey


class CsatSettings(Out):
    enabled: bool = Field(description="Whether solved tickets' customers are asked to rate them")


class CsatSettingsEnvelope(Out):
    settings: CsatSettings


class MessageEnvelope(Out):
    message: Message


class QueueEnvelope(Out):
    queue: list[QueuedTicket]


class RoutingDecision(BaseModel):
    """One routing decision about a ticket; its strategy may add keys of its own (``detail``)."""

    model_config = ConfigDict(extra="allow")
    at: datetime
    outcome: str
    agent_id: int | None
    agent_name: str | None
    group_id: int | None
    rule: str | None
    strategy: str | None
    candidates: list[Any]


class RoutingHistory(Out):
    ticket_id: int
    assignee_id: int | None
    group_id: int | None
    rule: str | None
    routing_state: str
    decisions: list[RoutingDecision]


# --- attachments ------------------------------------------------------------------------------
class Attachment(Out):
    """An uploaded file (core.attachments.attachment_dict)."""

    id: int
    name: str
    content_type: str
    size: int
    url: str


class AttachmentEnvelope(Out):
    attachment: Attachment


# --- routing configuration --------------------------------------------------------------------
class Rule(Out):
    """A routing rule (routing.config.rule_dict)."""

    id: int
    name: str
    position: int
    enabled: bool
    conditions: dict[str, Any]
    actions: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class RuleEnvelope(Out):
    rule: Rule


class RulesEnvelope(Out):
    rules: list[Rule]


class RoutingSettings(Out):
    default_group_id: int | None
    business_hours: dict[str, Any] | None
    offline_policy: Literal["reroute", "keep"]
    default_overflow_seconds: int
    unlimited_wait: bool


class RoutingSettingsEnvelope(Out):
    settings: RoutingSettings


# --- customers --------------------------------------------------------------------------------
class Identity(Out):
    channel: str
    external_id: str


class Customer(Out):
    """A customer (core.customers.customer_view)."""

    id: int
    name: str | None
    email: str | None
    tags: list[str]
    attributes: dict[str, Any]
    created_at: datetime
    identities: list[Identity]
    merged_into_id: int | None = Field(description="Set once merged into another customer (core.merges)")


class CustomerEnvelope(Out):
    customer: Customer


# --- billing (core.statements) ----------------------------------------------------------------
class Money(Out):
    """An amount: the exact integer of minor units, and the decimal string for people."""

    minor: int
    decimal: str


class Party(Out):
    name: str
    address: str
    domain: str
    tax_id: str


class ContractSummary(Out):
    state: ContractStateName
    tenant_status: TenantStatusName
    currency: str
    minor_unit_digits: int
    price_per_seat_year: Money
    term_start: str = Field(json_schema_extra={"format": "date"})
    term_end: str = Field(json_schema_extra={"format": "date"})
    term_days: int
    seats_paid: int
    seats_in_use: int
    balance: Money
    ends_on: str | None


class ContractEnvelope(Out):
    contract: ContractSummary


LedgerKindName = Literal["top_up", "charge", "credit", "refund", "compensation"]


class LedgerLine(Out):
    id: int
    at: datetime
    date: str = Field(json_schema_extra={"format": "date"})
    kind: LedgerKindName
    description: str
    seats: int
    days: int
    amount: Money
    balance_after: Money
    invoice: str | None


class LedgerPage(Out):
    currency: str
    minor_unit_digits: int
    entries: list[LedgerLine]
    next_after_id: int | None


class Period(Out):
    from_: str | None = Field(alias="from")
    to: str | None


class StatementBody(Out):
    tenant: Party
    contract: ContractSummary
    currency: str
    minor_unit_digits: int
    period: Period
    opening_balance: Money
    entries: list[LedgerLine]
    totals: dict[str, Money]
    closing_balance: Money
    generated_at: datetime


class StatementEnvelope(Out):
    statement: StatementBody


class InvoiceLine(Out):
    description: str
    seats: int
    days: int
    term_days: int
    price_per_seat_year: Money
    amount: Money


class InvoiceBody(Out):
    number: str
    entry_id: int
    issued_on: str = Field(json_schema_extra={"format": "date"})
    issued_at: datetime
    reason: str
    seller: Party
    buyer: Party
    currency: str
    minor_unit_digits: int
    service_period: Period
    lines: list[InvoiceLine]
    total: Money
    paid_from_balance: Money
    balance_before: Money
    balance_after: Money


class InvoiceEnvelope(Out):
    invoice: InvoiceBody


class InvoiceSummary(Out):
    number: str
    entry_id: int
    issued_on: str = Field(json_schema_extra={"format": "date"})
    reason: str
    description: str
    currency: str
    total: Money


class InvoicesPage(Out):
    invoices: list[InvoiceSummary]
    next_after_id: int | None


# --- views, counts and search (core.tickets.view_counts, core.search) ---------------------------
class Counts(Out):
    mine: int
    unassigned: int
    pending: int
    solved: int
    # Only for supervisors, admins and owners.
    all: int | None = None


class CountsEnvelope(Out):
    counts: Counts


class Snippet(Out):
    """Plain text and where the match is: [start, end) in UTF-16 code units (as JavaScript counts)."""

    text: str
    highlights: list[list[int]]
    truncated_before: bool
    truncated_after: bool


class SearchCustomer(Out):
    id: int
    name: str | None


class SearchResult(Out):
    ticket_id: int
    subject: str | None
    status: StatusName
    priority: PriorityName
    channel: str | None
    assignee_id: int | None
    updated_at: datetime
    customer: SearchCustomer
    matched: Literal["subject", "message", "customer"]
    field: Literal["name", "email", "external_id"] | None
    message_id: int | None
    snippet: Snippet
    doc_id: int


class SearchResults(Out):
    results: list[SearchResult]
    next_before: int | None


# --- the agent workspace (#13): core.merges, core.canned, core.macros, core.mentions ------------
class CustomerTicket(TicketDetail):
    """A ticket of the customer panel's history (core.merges.customer_tickets)."""

    can_open: bool = Field(description="Whether the caller may open it (GET /api/v1/tickets/{id})")


class CustomerTickets(Out):
    customer_id: int
    merged_into_id: int | None
    tickets: list[CustomerTicket]
    next_before_id: int | None = Field(description="Pass as before_id for the next page; null: the last page")


class CustomerFields(Out):
    """A customer's fields as a merge keeps them (core.merges._fields)."""

    name: str | None
    email: str | None
    tags: list[str]
    attributes: dict[str, Any]


class CustomerMerge(Out):
    """A customer merge (core.merges.merge_view)."""

    id: int
    customer_id: int = Field(description="The customer kept")
    other_id: int = Field(description="The customer merged into it")
    identity_ids: list[int]
    ticket_ids: list[int]
    other: CustomerFields = Field(description="The other customer's fields when merged")
    before: CustomerFields = Field(description="The kept customer's fields before the merge")
    merged_by: int | None
    created_at: datetime
    undone_at: datetime | None
    undone_by: int | None


class CustomerMerged(Out):
    merge: CustomerMerge
    customer: Customer


class CustomerMerges(Out):
    merges: list[CustomerMerge]


class CustomerMergeUndone(Out):
    merge: CustomerMerge
    customer: Customer
    other: Customer
    ticket_ids: list[int] = Field(description="The tickets that went back to the other customer")


class MergedTicket(Ticket):
    """The ticket merged into another (closed), as a ticket merge answers it."""

    merged_into_id: int


class TicketsMerged(Out):
    ticket: Ticket
    other: MergedTicket
    moved_message_ids: list[int]


class TicketSplit(Out):
    ticket: Ticket = Field(description="The new ticket")
    source: Ticket = Field(description="The ticket split from")
    moved_message_ids: list[int]


class CannedReply(Out):
    """A canned reply (core.canned.view)."""

    id: int
    scope: Literal["tenant", "personal"]
    agent_id: int | None = Field(description="The owner of a personal reply; null for the tenant's")
    shortcut: str
    title: str
    text: str
    created_by: int | None
    created_at: datetime
    updated_at: datetime


class CannedReplyEnvelope(Out):
    canned_reply: CannedReply


class CannedRepliesEnvelope(Out):
    canned_replies: list[CannedReply]


class CannedRendered(Out):
    canned_reply_id: int
    ticket_id: int
    shortcut: str
    text: str


class MacroTextAction(Out):
    type: Literal["reply", "note"]
    text: str


class MacroTagsAction(Out):
    type: Literal["add_tags", "remove_tags"]
    tags: list[str]


class MacroStatusAction(Out):
    type: Literal["status"]
    status: StatusName


class MacroPriorityAction(Out):
    type: Literal["priority"]
    priority: PriorityName


class MacroGroupAction(Out):
    type: Literal["group"]
    group_id: int


MacroActionType = Literal["reply", "note", "add_tags", "remove_tags", "status", "priority", "group"]
StoredMacroAction = Annotated[MacroTextAction | MacroTagsAction | MacroStatusAction | MacroPriorityAction
                              | MacroGroupAction, Field(discriminator="type")]


class Macro(Out):
    """A macro (core.macros.view), its actions as stored (core.macros.check_actions)."""

    id: int
    name: str
    description: str | None
    actions: list[StoredMacroAction]
    created_by: int | None
    created_at: datetime
    updated_at: datetime


class MacroEnvelope(Out):
    macro: Macro


class MacrosEnvelope(Out):
    macros: list[Macro]


class MacroApplied(Out):
    ticket: Ticket = Field(description="The ticket after the macro")
    macro_id: int
    messages: list[Message] = Field(description="The reply and the note the macro wrote, in that order")
    applied: list[MacroActionType]


class NoteAuthor(Out):
    type: Literal["agent"]
    id: int | None
    name: str | None


class Mention(Out):
    """A mention of the caller in a note (core.mentions._view)."""

    id: int
    ticket_id: int
    note_id: int
    text: str
    author: NoteAuthor
    ticket: Ticket
    created_at: datetime
    read_at: datetime | None


class MentionsPage(Out):
    mentions: list[Mention]
    unread: int = Field(description="How many of the caller's mentions are unread, in all")


class MentionsRead(Out):
    marked: int = Field(description="How many were newly marked read")
    unread: int


# --- availability (#15): core.availability.month_report ------------------------------------------------
class Incident(Out):
    """One outage touching the month: the whole outage's times and length, and its part in the month."""

    start: datetime
    end: datetime
    ended_by: Literal["up", "unknown", "open"] = Field(
        description="up: a probe succeeded; unknown: no probes after it; open: still going on")
    minutes: float = Field(description="The whole outage's length")
    cause: str
    causes: list[str]
    counted: bool = Field(description="Whether it lasted 5 minutes or more, and so counts toward downtime")
    minutes_in_month: float
    maintenance_minutes: float = Field(description="Of its part in the month, the minutes in announced maintenance")
    counted_minutes: float = Field(description="What it adds to the month's downtime")


class UnknownSpan(Out):
    start: datetime
    end: datetime
    minutes: float


class MaintenanceWindow(Out):
    id: int
    start: datetime
    end: datetime
    reason: str
    tenant_id: int | None = Field(description="None: for every tenant")


class AvailabilityDay(Out):
    date: str
    downtime_minutes: float
    unknown_minutes: float
    measured_minutes: float
    availability: float | None = Field(description="Over the day's elapsed part; null while any of it is unknown")


class ClosedMonth(Out):
    closed_at: datetime
    availability: float | None
    measured_availability: float | None
    downtime_minutes: float
    unknown_minutes: float
    compensated_minutes: int
    ledger_entry_id: int | None
    compensation: Literal["none", "paid", "no_contract"]


class AvailabilityReport(Out):
    tenant_id: int
    month: str
    start: datetime
    end: datetime
    as_of: datetime = Field(description="The figures' time: the month's end, or now less one probe interval")
    complete: bool
    basis_minutes: int = Field(description="43200: every month counts as 30 days")
    target: float
    availability: float | None = Field(
        description="(43200 - downtime minutes) / 43200 in %, rounded down to 3 decimals; null while any "
                    "elapsed part of the month has no probe data")
    measured_availability: float | None = Field(description="Over the part of the month with probe data")
    meets_target: bool | None
    downtime_minutes: float
    unknown_minutes: float
    measured_minutes: float
    incidents_total: int
    incidents_counted: int
    incidents: list[Incident]
    unknown: list[UnknownSpan]
    maintenance: list[MaintenanceWindow]
    days: list[AvailabilityDay]
    closed: ClosedMonth | None


class AvailabilityEnvelope(Out):
    availability: AvailabilityReport


# --- deletion (#16): a tenant's purge, one customer's erasure (core.purge, core.erasure) -------------
class PurgeRequester(Out):
    type: str
    id: int | None


class Purge(Out):
    """A tenant's purge and its progress (core.purge.purge_dict)."""

    tenant_id: int
    tenant_name: str
    domains: list[str]
    reason: Literal["owner", "operator", "retention"]
    requested_by: PurgeRequester
    requested_at: datetime
    state: Literal["requested", "running", "done"]
    table: str | None = Field(description="the table being emptied")
    rows_deleted: int
    chunks: int
    passes: int
    started_at: datetime | None
    finished_at: datetime | None


class PurgeEnvelope(Out):
    purge: Purge


class Erased(Out):
    """What one customer's erasure deleted, by kind (tickets, messages, identities, attachments, a
    channel's table name...): counts only."""

    customer_id: int
    deleted: dict[str, int]


# --- the audit and login logs (core.audit.audit_dict, login_dict) ---------------------------------------
class AuditEntry(Out):
    """One audited change (a tenant's log, the operator's trail)."""

    id: int
    at: datetime
    actor_type: str
    actor_id: int | None
    action: str
    target_type: str | None
    target_id: str | None
    # What changed (before/after, or the fields): never a password, a secret or a message's text.
    details: dict[str, Any]
    ip: str | None


class AuditRow(AuditEntry):
    # The row's link in its chain (channelhub audit verify).
    hash: str


class AuditRowsPage(Out):
    entries: list[AuditRow]
    next_before_id: int | None


class LoginRow(Out):
    id: int
    at: datetime
    agent_id: int | None
    email: str
    ip: str | None
    user_agent: str | None
    outcome: Literal["success", "bad_password", "unknown_user", "disabled", "locked", "throttled"]


class LoginRowsPage(Out):
    entries: list[LoginRow]
    next_before_id: int | None

class ExportFilters(Out):
    from_: str | None = Field(alias="from", description="The first day (UTC), YYYY-MM-DD; null: no bound")
    to: str | None = Field(description="The last day (UTC), included; null: no bound")
    statuses: list[str]
    channels: list[str]


class ExportOut(Out):
    id: int
    state: Literal["queued", "running", "done", "failed", "expired"]
    customer_id: int | None = Field(description="Set for one customer's export (personal-data request)")
    filters: ExportFilters
    include_messages: bool
    rows_done: int
    rows_total: int | None = Field(description="Rows in all, once the build has counted them")
    progress: float = Field(description="0 to 1")
    size: int | None = Field(description="The file's size in bytes, once done")
    error: str | None
    agent_id: int | None = Field(description="Who asked for it")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None = Field(description="When the file is deleted")
    download_url: str | None = Field(description="A signed link to the .xlsx (no sign-in), while it is done")
    download_expires_at: datetime | None = Field(description="When that link stops working")


class ExportEnvelope(Out):
    export: ExportOut


class ExportList(Out):
    exports: list[ExportOut]


# --- reports (#17): the metrics object and the reports (docs/reports.md) -------------------------------
class TimedMetric(Out):
    count: int
    mean: float | None = Field(description="Seconds, wall clock")
    mean_business: float | None = Field(description="Seconds of the tenant's business hours")


class HandleMetric(Out):
    count: int = Field(description="(ticket, agent) pairs")
    total: float = Field(description="Seconds")
    mean: float | None


class StatusShare(Out):
    new: float
    open: float
    pending: float
    solved: float


class CsatMetric(Out):
    count: int
    mean: float | None
    satisfied: float | None = Field(description="The share of 4 and 5")
    distribution: list[int] = Field(description="Ratings 1 to 5")


# --- SLA policies and the breach report (#17, core.sla) ---------------------------------------------
class SlaPolicy(Out):
    """An SLA policy (core.sla.policy_dict)."""

    id: int
    name: str
    position: int
    enabled: bool
    priorities: list[PriorityName]
    channels: list[str]
    first_response: int | None
    next_response: int | None
    resolution: int | None
    business_hours: bool
    warn_before: int | None
    escalate_priority: PriorityName | None
    created_at: datetime
    updated_at: datetime


class SlaPolicyEnvelope(Out):
    policy: SlaPolicy


class SlaPoliciesEnvelope(Out):
    policies: list[SlaPolicy]


class SlaCounts(Out):
    first_response: int
    next_response: int
    resolution: int


class Metrics(Out):
    received: int
    assigned: int
    solved: int
    transferred: int
    reopened: int
    reopen_rate: float | None
    first_response: TimedMetric
    next_response: TimedMetric
    resolution: TimedMetric
    handle: HandleMetric
    status_share: StatusShare
    csat: CsatMetric
    sla_breaches: SlaCounts


class ReportPeriod(Out):
    from_: str = Field(alias="from")
    to: str
    timezone: str


class ReportFilters(Out):
    channel: str | None
    group_id: int | None
    agent_id: int | None
    tag: str | None


class AgentReportRow(Out):
    agent_id: int
    agent_name: str
    metrics: Metrics


class GroupReportRow(Out):
    group_id: int | None
    group_name: str | None
    metrics: Metrics


class AgentsReport(Out):
    period: ReportPeriod
    filters: ReportFilters
    totals: Metrics
    rows: list[AgentReportRow]


class GroupsReport(Out):
    period: ReportPeriod
    filters: ReportFilters
    totals: Metrics
    rows: list[GroupReportRow]


class DayCount(Out):
    date: str
    received: int


class ChannelCount(Out):
    channel: str
    received: int


class TagCount(Out):
    tag: str
    received: int


class DemandReport(Out):
    period: ReportPeriod
    filters: ReportFilters
    received: int
    by_day: list[DayCount]
    by_hour: list[int] = Field(description="24 hours of the tenant's time zone")
    by_weekday: list[int] = Field(description="Monday first")
    by_channel: list[ChannelCount]
    by_tag: list[TagCount]


class AgentsReportEnvelope(Out):
    report: AgentsReport


class GroupsReportEnvelope(Out):
    report: GroupsReport


class DemandReportEnvelope(Out):
    report: DemandReport


class SlaAgentRow(Out):
    agent_id: int | None
    agent_name: str | None
    breaches: SlaCounts


class SlaGroupRow(Out):
    group_id: int | None
    group_name: str | None
    breaches: SlaCounts


class SlaReport(Out):
    period: ReportPeriod
    filters: ReportFilters
    totals: SlaCounts
    agents: list[SlaAgentRow]
    groups: list[SlaGroupRow]


class SlaReportEnvelope(Out):
    report: SlaReport
