"""The ticket model, shared by every channel.

Every table that holds tenant data carries ``tenant_id``; queries reach them through
:mod:`core.tenancy`, which scopes them by the tenant resolved from the request.
Times are timezone-aware UTC (see :class:`UTCDateTime`).
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, ORMExecuteState, Session, mapped_column

from core import auditchain

# Stable constraint names on SQLite and PostgreSQL alike (alembic relies on them).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes; SQLite hands back naive ones, which we mark as UTC again."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; channelhub stores UTC-aware times only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT for the big tables.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# The largest id a key column can hold on both databases: INTEGER keys (tenants, agents, groups)
# are int4 on PostgreSQL, BigId keys int8. An id from outside beyond these is refused as invalid
# input; handed to the database it would overflow the driver (a 500), not simply match nothing.
MAX_ID = 2**31 - 1
MAX_BIG_ID = 2**63 - 1


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


def table_of(model: type[Base]) -> Table:
    """A model's table, for Core statements on hot paths (they skip the ORM's per-row machinery)."""
    return cast(Table, model.__table__)


class TenantScoped:
    """Marks a model that holds tenant data: sessions opened for a tenant add
    ``tenant_id = :tid`` to every query of it (core.db). Each model declares its own column
    (with its foreign key); this one only gives the criteria something to be written against."""

    tenant_id = mapped_column(Integer)


class TicketStatus(enum.StrEnum):
    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    SOLVED = "solved"
    CLOSED = "closed"


# Tickets in these states occupy an agent's capacity.
ACTIVE_STATUSES = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING)
# A customer's new message joins a ticket in one of these states (a solved one is reopened).
JOINABLE_STATUSES = (*ACTIVE_STATUSES, TicketStatus.SOLVED)


class Priority(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


PRIORITY_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.URGENT: 3}


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    NOTE = "note"


class Role(enum.StrEnum):
    """A tenant's roles, each allowed what the ones below it are: the owner holds the contract
    (ends it, names admins and owners), admins run the tenant (seats, routing, channels, billing
    reads), supervisors see every ticket, agents their own and the waiting ones."""

    OWNER = "owner"
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    AGENT = "agent"


# Higher is more; a role may do what any role below it may.
ROLE_RANK: dict[str, int] = {Role.AGENT: 0, Role.SUPERVISOR: 1, Role.ADMIN: 2, Role.OWNER: 3}


class TenantStatus(enum.StrEnum):
    ACTIVE = "active"
    # Its agents are refused (403 tenant_suspended); what customers send is still taken in.
    SUSPENDED = "suspended"
    # The contract ended: everything is refused; the data waits for its purge.
    ENDED = "ended"
    # Its data is being deleted (core.purge): everything is refused, its sockets are closed.
    PURGING = "purging"
    # Its data is gone: the row is a tombstone (no name, no domain), kept so that its id is never
    # given to another tenant (SQLite reuses the highest id of a deleted row), which would blur the
    # operator's audit trail and the purge's record.
    PURGED = "purged"


# Statuses in which nothing of the tenant is served any more.
GONE_STATUSES = (TenantStatus.ENDED, TenantStatus.PURGING, TenantStatus.PURGED)


class OperatorRole(enum.StrEnum):
    """The operator's staff (the company that runs the hub): the owner does everything, billing
    sets prices and terms and moves money, support looks after tenants (domains, suspension)."""

    OWNER = "owner"
    BILLING = "billing"
    SUPPORT = "support"


class Presence(enum.StrEnum):
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    domain: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(20), default=TenantStatus.ACTIVE)
    # Who suspended it: "operator" (only the operator resumes it) or "billing" (the term ran out
    # unpaid; a renewal resumes it). None while active.
    suspended_by: Mapped[str | None] = mapped_column(String(20))
    status_changed_at: Mapped[datetime | None]
    # Routing settings (validated by admin_api.schemas.RoutingSettingsBody): default group, business
    # hours, what happens to an agent's chats when they drop, the default overflow wait.
    routing: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TenantDomain(Base):
    """The domains a tenant is served on (its primary one, ``Tenant.domain``, among them). A domain
    belongs to one tenant: requests are served with the data of the tenant whose domain they came
    in on (core.tenancy)."""

    __tablename__ = "tenant_domains"
    domain: Mapped[str] = mapped_column(String(255), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OperatorAccount(Base):
    """A member of the operator's staff; signs in on the operator host only (core.operators)."""

    __tablename__ = "operator_accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OperatorToken(Base):
    __tablename__ = "operator_tokens"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("operator_accounts.id", ondelete="CASCADE"), index=True)
    # sha256 of the token, as for agents' tokens.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Agent(TenantScoped, Base):
    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default=Role.AGENT)
    status: Mapped[str] = mapped_column(String(20), default=Presence.OFFLINE)
    capacity: Mapped[int] = mapped_column(Integer, default=5)
    # Open tickets assigned (new, open, pending): kept in step with every change of a ticket's
    # assignee or status, and only ever raised by a conditional UPDATE that checks capacity.
    load: Mapped[int] = mapped_column(Integer, default=0)
    # Per channel kind caps, e.g. {"webchat": 3}; a channel not named is bound only by capacity.
    channel_capacity: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Skill levels, e.g. {"english": 3, "billing": 2}.
    skills: Mapped[dict[str, Any]] = mapped_column(default=dict)
    active: Mapped[bool] = mapped_column(default=True)
    last_seen_at: Mapped[datetime | None]
    # Ties in "least busy" go to the agent who has waited longest for work.
    last_assigned_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Group(TenantScoped, Base):
    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    # round_robin, least_busy, skills, sticky, manual
    strategy: Mapped[str] = mapped_column(String(20), default="least_busy")
    sticky_days: Mapped[int] = mapped_column(Integer, default=7)
    # What a sticky group does when the last agent is not available.
    sticky_fallback: Mapped[str] = mapped_column(String(20), default="least_busy")
    overflow_group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id", ondelete="SET NULL"))
    overflow_after_seconds: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AgentGroup(TenantScoped, Base):
    __tablename__ = "agent_groups"
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)


class Customer(TenantScoped, Base):
    __tablename__ = "customers"
    __table_args__ = (
        # Deleting a customer (a purge, an erasure) looks for the ones merged into it (the foreign
        # key's SET NULL): without an index, a scan of every tenant's customers per row deleted.
        # Partial: merged customers are few.
        Index("ix_customers_merged_into_id", "merged_into_id", sqlite_where=text("merged_into_id IS NOT NULL"),
              postgresql_where=text("merged_into_id IS NOT NULL")),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set when this customer was merged into another (core.merges): kept, not deleted, so the merge
    # can be undone with the same id and links to it still say where it went.
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))


class CustomerIdentity(TenantScoped, Base):
    """Who the customer is on one channel: a web chat visitor id, a WeChat openid, an address."""

    __tablename__ = "customer_identities"
    __table_args__ = (UniqueConstraint("tenant_id", "channel", "external_id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(40))
    external_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Ticket(TenantScoped, Base):
    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_tenant_assignee_status", "tenant_id", "assignee_id", "status"),
        Index("ix_tickets_identity_status", "identity_id", "status"),
        Index("ix_tickets_tenant_status_created", "tenant_id", "status", "created_at"),
        # The queue: waiting tickets in priority order, then oldest first.
        Index("ix_tickets_queue", "tenant_id", "routing_state", "priority_rank", "created_at"),
        Index("ix_tickets_overflow", "routing_state", "overflow_at"),
        # The views of the agent workspace (core.tickets.list_tickets, view_counts): a status's
        # tickets newest first, and every count read from the index alone.
        Index("ix_tickets_tenant_status_id", "tenant_id", "status", "id"),
        Index("ix_tickets_views", "tenant_id", "status", "assignee_id", "group_id", "routing_state"),
        # Deleting a ticket (a purge, an erasure) looks for the ones merged into it (the foreign
        # key's SET NULL): without an index, a scan of every tenant's tickets per row deleted.
        Index("ix_tickets_merged_into_id", "merged_into_id", sqlite_where=text("merged_into_id IS NOT NULL"),
              postgresql_where=text("merged_into_id IS NOT NULL")),

        # A tenant's tickets in id order: the Excel export's keyset chunks (core.exports). Without it
        # SQLite took the views' index and sorted every remaining ticket for each chunk.
        Index("ix_tickets_tenant_id_id", "tenant_id", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    # The channel identity replies go out on (null for a ticket made by hand without one).
    identity_id: Mapped[int | None] = mapped_column(ForeignKey("customer_identities.id", ondelete="SET NULL"))
    channel: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), default=TicketStatus.NEW)
    priority: Mapped[str] = mapped_column(String(20), default=Priority.NORMAL)
    # PRIORITY_RANK[priority], stored so the queue is served from an index.
    priority_rank: Mapped[int] = mapped_column(Integer, default=1)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    required_skills: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # pending (to be routed), queued (waiting for an agent), assigned, idle (solved / closed)
    routing_state: Mapped[str] = mapped_column(String(20), default="pending")
    # When the ticket began waiting in its current group (overflow is timed from here).
    queued_at: Mapped[datetime | None]
    # When a waiting ticket moves on to its group's overflow (null: it waits where it is).
    overflow_at: Mapped[datetime | None]
    routing_rule: Mapped[str | None] = mapped_column(String(200))
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id", ondelete="SET NULL"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    created_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_message_at: Mapped[datetime | None]
    assigned_at: Mapped[datetime | None]
    first_response_at: Mapped[datetime | None]
    solved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    # Set when this ticket was merged into another (core.merges): its messages moved there and it
    # was closed. Shown in the ticket's detail.
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"))


class TicketParticipant(TenantScoped, Base):
    """Someone besides the ticket's customer who is on its conversation: an address on an e-mail's
    Cc. A reply from a participant joins the ticket; from anyone else, it opens a ticket of its own
    (core.ingest), so a stranger who copies a ticket's reference never lands in it."""

    __tablename__ = "ticket_participants"
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(40), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RoutingRule(TenantScoped, Base):
    """One ordered routing rule: all its conditions must hold; the first matching rule wins."""

    __tablename__ = "routing_rules"
    __table_args__ = (UniqueConstraint("tenant_id", "name"), Index("ix_routing_rules_tenant_position",
                                                                      "tenant_id", "position"))
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(default=True)
    conditions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AssignmentRecord(TenantScoped, Base):
    """Why a ticket went where it went: the rule that matched, the strategy, the candidates."""

    __tablename__ = "assignment_records"
    __table_args__ = (Index("ix_assignment_records_ticket", "ticket_id", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    # assigned, queued, overflowed, unassigned, claimed, transferred
    outcome: Mapped[str] = mapped_column(String(20))
    agent_id: Mapped[int | None] = mapped_column(Integer)
    group_id: Mapped[int | None] = mapped_column(Integer)
    rule: Mapped[str | None] = mapped_column(String(200))
    strategy: Mapped[str | None] = mapped_column(String(20))
    candidates: Mapped[list[Any]] = mapped_column(default=list)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Message(TenantScoped, Base):
    __tablename__ = "messages"
    __table_args__ = (
        # core.ingest is idempotent on (tenant, channel, channel message id) for what comes in.
        UniqueConstraint("tenant_id", "channel", "direction", "channel_message_id"),
        # core.tickets is idempotent on (tenant, agent, client id) for what agents write: a retried
        # reply or note returns the first one (NULLs, messages without a client id, never collide).
        UniqueConstraint("tenant_id", "author_agent_id", "client_id"),
        Index("ix_messages_ticket_id_id", "ticket_id", "id"),
        # A tenant's messages in id order (the export's Messages sheet, core.exports).
        Index("ix_messages_tenant_id_id", "tenant_id", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(40))
    direction: Mapped[str] = mapped_column(String(20))
    author_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    body: Mapped[str] = mapped_column(Text)
    attachments: Mapped[list[Any]] = mapped_column(default=list)
    channel_message_id: Mapped[str | None] = mapped_column(String(255))
    # The agent client's key for the action that wrote it (docs/agent-protocol.md, "Retrying").
    client_id: Mapped[str | None] = mapped_column(String(100))
    delivery_state: Mapped[str | None] = mapped_column(String(20))
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SearchDoc(TenantScoped, Base):
    """What full-text search finds (core.textsearch): a message, or a ticket's subject, or its
    customer as seen on it (name, e-mail, the identity's external id). Written in the transaction
    that writes what it indexes. ``terms`` holds the tokens: space-separated on SQLite, indexed by
    the FTS5 table ``search_fts`` (revision 0011s; triggers keep it), a ``tsvector`` under a GIN
    index on PostgreSQL. Neither index is in this metadata: both are dialect-specific
    (:func:`autogenerate_includes`)."""

    __tablename__ = "search_docs"
    __table_args__ = (
        # Newest first within a tenant (and a tenant's purge); a ticket's documents.
        Index("ix_search_docs_tenant_id_id", "tenant_id", "id"),
        Index("ix_search_docs_ticket_id", "ticket_id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    # subject, message, customer
    kind: Mapped[str] = mapped_column(String(20))
    # The message, for kind "message" (it goes with its ticket: no key of its own).
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    terms: Mapped[str] = mapped_column(TSVECTOR().with_variant(Text(), "sqlite"))


# Dialect-specific search objects that the migrations make and the models cannot describe.
SEARCH_ONLY_IN_MIGRATIONS = ("search_fts", "ix_search_docs_terms")


def autogenerate_includes(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """For alembic's comparison: leave out the FTS5 table (and its shadow tables) and the GIN index."""
    return not (name and name.startswith(SEARCH_ONLY_IN_MIGRATIONS))


class OutboxItem(TenantScoped, Base):
    """A reply waiting to be delivered; written in the same transaction as its message."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_state_next", "state", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), unique=True)
    channel: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(20), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A claimed row belongs to one deliverer until then; a crash lets the sweeper take it back.
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class InboxState(enum.StrEnum):
    PENDING = "pending"
    # Failed every attempt: kept aside for an operator to look at, out of the drainer's way.
    FAILED = "failed"


class InboxItem(TenantScoped, Base):
    """A message a web-hook channel accepted and has not yet turned into a ticket (core.inbox).

    Written (in group commits) before the web-hook answers; deleted in the transaction that
    ingests it. The key makes a retried push land once while its first try is still waiting.
    """

    __tablename__ = "inbox"
    __table_args__ = (
        UniqueConstraint("tenant_id", "channel", "channel_message_id"),
        Index("ix_inbox_state_next_attempt_id", "state", "next_attempt_at", "id"),
        # A customer's messages not yet made tickets count for their reply window (WeChat's 48 h).
        Index("ix_inbox_sender", "tenant_id", "channel", "external_id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(40))
    channel_message_id: Mapped[str] = mapped_column(String(255))
    external_id: Mapped[str] = mapped_column(String(255))
    # The rest of the InboundMessage (text, attachments, customer details).
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    state: Mapped[str] = mapped_column(String(20), default=InboxState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)


class Event(TenantScoped, Base):
    """Every change of state, in order. Live clients get it from the bus; reconnecting ones from here."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_tenant_id_id", "tenant_id", "id"),
                      # A ticket's history in order: the SLA sweeper (core.sla) and the reports'
                      # rollups (core.rollups) recompute a ticket from it.
                      Index("ix_events_ticket_id_id", "ticket_id", "id"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ticket_id: Mapped[int | None] = mapped_column(BigId)
    kind: Mapped[str] = mapped_column(String(40))
    # Who may see it: the assignee after the change and, for a transfer, the one before.
    assignee_id: Mapped[int | None] = mapped_column(Integer)
    previous_assignee_id: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuthToken(TenantScoped, Base):
    __tablename__ = "auth_tokens"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    # sha256 of the token; the token itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class AuditLog(TenantScoped, Base):
    """Who changed what (core.audit). Append-only: the database refuses UPDATE and DELETE (triggers
    made by migration 0016a; a tenant's rows may go only while it is purged), the hooks below refuse
    it in the ORM, and each row carries the hash chain of core.auditchain, so a change made behind
    all of that is found by ``channelhub audit verify``."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_tenant_created", "tenant_id", "created_at"),
                      Index("ix_audit_log_tenant_id_id", "tenant_id", "id"))
    # One row at a time: each row's hash needs the one before it (see _chain_audit_row).
    __mapper_args__ = {"batch": False}
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    actor_type: Mapped[str] = mapped_column(String(20))  # agent, operator, system
    actor_id: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(80))
    target_type: Mapped[str | None] = mapped_column(String(40))
    target_id: Mapped[str | None] = mapped_column(String(80))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ip: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The hash of the row before it in its chain (the tenant's, or the operator's), and its own.
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(TenantScoped, Base):
    """The newest row of each audit chain. Appending to a chain locks its head (SELECT ... FOR
    UPDATE) in the transaction that writes the row, so rows of one chain are linked one after the
    other however many processes write; and the head shows when the newest rows were removed."""

    __tablename__ = "audit_heads"
    # The tenant's id, or 0 for the operator's chain (core.auditchain.chain_key).
    chain: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # So that the head goes with its tenant (NULL: the operator's).
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    last_id: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))


@event.listens_for(AuditLog, "before_insert")
def _chain_audit_row(_mapper: Any, conn: Any, row: AuditLog) -> None:
    # Lock the chain's head, link the row to it; _advance_audit_head moves the head once the row
    # has its id. The lock is held to the end of the change's own transaction.
    heads = table_of(AuditHead)
    key = auditchain.chain_key(row.tenant_id)
    locked = select(heads.c.last_hash).where(heads.c.chain == key).with_for_update()
    prev = conn.execute(locked).scalar()
    if prev is None:
        from sqlalchemy.dialects import postgresql, sqlite

        dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(dialect_insert(heads).values(chain=key, tenant_id=row.tenant_id, last_id=0,
                                                  last_hash=auditchain.GENESIS).on_conflict_do_nothing())
        prev = conn.execute(locked).scalar_one()
    if row.created_at is None:
        row.created_at = utcnow()
    row.details = auditchain.canonical_details(row.details)
    row.prev_hash = prev
    row.hash = auditchain.row_hash(
        prev_hash=prev, tenant_id=row.tenant_id, actor_type=row.actor_type, actor_id=row.actor_id,
        action=row.action, target_type=row.target_type, target_id=row.target_id, details=row.details,
        ip=row.ip, created_at=row.created_at)


@event.listens_for(AuditLog, "after_insert")
def _advance_audit_head(_mapper: Any, conn: Any, row: AuditLog) -> None:
    heads = table_of(AuditHead)
    conn.execute(update(heads).where(heads.c.chain == auditchain.chain_key(row.tenant_id))
                 .values(last_id=row.id, last_hash=row.hash))


class LoginLog(TenantScoped, Base):
    """Every sign-in attempt, whatever its outcome (core.logins). Append-only like the audit log."""

    __tablename__ = "login_log"
    __table_args__ = (Index("ix_login_log_tenant_created", "tenant_id", "created_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    email: Mapped[str] = mapped_column(String(320))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    # success, bad_password, unknown_user, disabled; locked (a lockout began), throttled (refused unchecked)
    outcome: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StoredAttachment(TenantScoped, Base):
    """A file an agent uploaded to attach to messages. The bytes live here for now (as WeChat media
    do), so every process serves the same file; ``sha256`` identifies the content."""

    __tablename__ = "attachments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    uploaded_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ContractState(enum.StrEnum):
    ACTIVE = "active"
    # Notice was given: the contract runs until ``ends_on``, then ends with a refund.
    ENDING = "ending"
    ENDED = "ended"


class LedgerKind(enum.StrEnum):
    TOP_UP = "top_up"
    # Seats added mid-term (prorated) or a renewal (the next term, in full).
    CHARGE = "charge"
    # Seats removed: the unused days go back to the balance.
    CREDIT = "credit"
    # The contract ended before its term did: the prepaid days after the end go back.
    REFUND = "refund"
    # Service time credited for downtime (the availability promise).
    COMPENSATION = "compensation"


class BillingContract(TenantScoped, Base):
    """A tenant's contract (core.billing): price, term, seats paid for, notice, and the balance.

    ``balance`` caches the sum of the tenant's ledger entries; it changes only in the transaction
    that appends an entry, under this row's lock, so it always equals that sum (and the checks
    against it cannot race). The database refuses a negative balance as a last guard.
    """

    __tablename__ = "billing_contracts"
    __table_args__ = (
        CheckConstraint("balance >= 0", name="balance_not_negative"),
        CheckConstraint("seats >= 0", name="seats_not_negative"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    # One contract per tenant: the ledger and the balance are the tenant's.
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), unique=True)
    # Integer minor units (fen, cents) of ``currency`` (ISO 4217) per seat per year.
    price_per_seat_year: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # The term is [term_start, term_end): term_end is the first day after it (UTC dates).
    term_start: Mapped[date] = mapped_column(Date)
    term_end: Mapped[date] = mapped_column(Date)
    seats: Mapped[int] = mapped_column(Integer, default=0)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(String(20), default=ContractState.ACTIVE)
    notice_given_at: Mapped[datetime | None]
    # The contract ends at 00:00 UTC of this day (set with the notice).
    ends_on: Mapped[date | None] = mapped_column(Date)
    ended_at: Mapped[datetime | None]
    # When the term ran out unpaid and the tenant was suspended; a later renewal resumes it.
    lapsed_at: Mapped[datetime | None]
    # The price the next renewal charges and keeps (set by the operator mid-term; the running term
    # was paid at the old one). None: the price stays.
    next_price_per_seat_year: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class LedgerEntry(TenantScoped, Base):
    """One movement of a tenant's prepaid balance. Append-only: never updated or deleted (the
    hooks below refuse it), so the balance is always the sum of the entries.

    ``amount`` is signed, in integer minor units: positive adds to the balance (top-up, credit,
    refund, compensation), negative spends it (charge)."""

    __tablename__ = "billing_ledger"
    __table_args__ = (Index("ix_billing_ledger_tenant_id_id", "tenant_id", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    contract_id: Mapped[int] = mapped_column(ForeignKey("billing_contracts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # What it covers: that many seats for that many days (0 for a top-up).
    seats: Mapped[int] = mapped_column(Integer, default=0)
    days: Mapped[int] = mapped_column(Integer, default=0)
    # The balance after this entry (the running sum up to it), for statements.
    balance_after: Mapped[int] = mapped_column(BigInteger)
    # Who or what caused it: operator, agent, system (with its id where it has one).
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[int | None] = mapped_column(Integer)
    # The rest: the period covered, a payment reference, the downtime compensated, a note.
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The injected clock's time of the operation, not the wall clock's.
    created_at: Mapped[datetime]


class AppendOnly(Exception):
    """Something tried to change or remove a ledger entry."""


@event.listens_for(LedgerEntry, "before_update")
@event.listens_for(LedgerEntry, "before_delete")
@event.listens_for(AuditLog, "before_update")
@event.listens_for(AuditLog, "before_delete")
@event.listens_for(LoginLog, "before_update")
@event.listens_for(LoginLog, "before_delete")
def _ledger_is_append_only(_mapper: Any, _conn: Any, entry: LedgerEntry | AuditLog | LoginLog) -> None:
    raise AppendOnly(f"{entry.__tablename__} row {entry.id} cannot be changed or removed")


# Tables whose rows are never changed; their rows are removed only with their tenant (its purge:
# a bulk delete carrying the execution option ``tenant_purge=True``; the database checks the rest).
APPEND_ONLY = ("billing_ledger", "audit_log", "login_log")


@event.listens_for(Session, "do_orm_execute")
def _no_bulk_ledger_changes(state: ORMExecuteState) -> None:
    # update(...) / delete(...) through a session skip the per-object hooks above.
    if not (state.is_update or state.is_delete):
        return
    if state.is_delete and state.execution_options.get("tenant_purge"):
        return
    for m in state.all_mappers:
        if getattr(m.class_, "__tablename__", None) in APPEND_ONLY:
            raise AppendOnly(f"{m.class_.__tablename__} is append-only")


# --- the agent workspace (#13): customer merges, canned replies, macros, mentions ----------------------
class CustomerMerge(TenantScoped, Base):
    """One customer merged into another (core.merges), with what moved and what was there before,
    so that :func:`core.merges.undo_customer_merge` puts exactly that back."""

    __tablename__ = "customer_merges"
    __table_args__ = (Index("ix_customer_merges_tenant_customer", "tenant_id", "customer_id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    # The one kept, and the one merged into it.
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    other_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    # Ids of the identities and tickets that moved from the other to the one kept.
    identity_ids: Mapped[list[Any]] = mapped_column(default=list)
    ticket_ids: Mapped[list[Any]] = mapped_column(default=list)
    # The kept customer's fields before the merge (name, email, tags, attributes), and the other's.
    before: Mapped[dict[str, Any]] = mapped_column(default=dict)
    other_fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    merged_by: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    undone_at: Mapped[datetime | None]
    undone_by: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))


class CannedReply(TenantScoped, Base):
    """A prepared answer an agent inserts with ``/shortcut`` (core.canned): the tenant's own
    (``agent_id`` null, managed by admins) or one agent's personal one."""

    __tablename__ = "canned_replies"
    __table_args__ = (
        # A shortcut names one reply per scope: once among the tenant's, once among each agent's.
        Index("uq_canned_replies_tenant_shortcut", "tenant_id", "shortcut", unique=True,
              sqlite_where=text("agent_id IS NULL"), postgresql_where=text("agent_id IS NULL")),
        Index("uq_canned_replies_agent_shortcut", "tenant_id", "agent_id", "shortcut", unique=True,
              sqlite_where=text("agent_id IS NOT NULL"), postgresql_where=text("agent_id IS NOT NULL")),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    shortcut: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Macro(TenantScoped, Base):
    """Several actions applied to a ticket at once (core.macros): reply, note, tags, status,
    priority, transfer to a group. Managed by the tenant's admins."""

    __tablename__ = "macros"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(1000))
    actions: Mapped[list[Any]] = mapped_column(default=list)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Mention(TenantScoped, Base):
    """An agent named in an internal note (core.mentions); read once they have seen it."""

    __tablename__ = "mentions"
    __table_args__ = (
        UniqueConstraint("message_id", "agent_id"),
        Index("ix_mentions_tenant_agent_read", "tenant_id", "agent_id", "read_at", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    author_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None]


# --- the availability promise (#15): what the probers saw ----------------------------------------------
class ProbeResult(TenantScoped, Base):
    """One probe of one tenant's service by one prober (``channelhub probe``): whether its domain
    answered, a synthetic web chat message went in and came back, and the agent socket accepted.
    Several probers may run; core.availability merges what they saw into outages."""

    __tablename__ = "probe_results"
    __table_args__ = (Index("ix_probe_results_tenant_at", "tenant_id", "at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    # Which prober saw it (its name: host and process by default).
    prober: Mapped[str] = mapped_column(String(100))
    # When the probe began, by the prober's clock.
    at: Mapped[datetime]
    ok: Mapped[bool]
    # The first check that failed and why ("webchat: no echo within 10 s"); None when ok.
    cause: Mapped[str | None] = mapped_column(String(500))
    # How long the whole probe took.
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)


class BreakerState(enum.StrEnum):
    """A subsystem's automatic state (core.breakers): ``closed`` runs, ``open`` refuses until its
    trial, ``half_open`` lets one trial run and refuses the rest."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Subsystem(Base):
    """One subsystem that may go offline without taking messaging with it (billing, statistics,
    reports): the operator's switch and the circuit breaker's state, shared by every process
    (core.breakers). One row per subsystem; no tenant data."""

    __tablename__ = "subsystems"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The operator's switch: off refuses everything, whatever the breaker says.
    enabled: Mapped[bool] = mapped_column(default=True)
    switched_by: Mapped[int | None] = mapped_column(Integer)
    switch_reason: Mapped[str | None] = mapped_column(String(500))
    switched_at: Mapped[datetime | None]
    # The breaker.
    state: Mapped[str] = mapped_column(String(16), default=BreakerState.CLOSED.value)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[datetime | None]
    next_trial_at: Mapped[datetime | None]
    # The cooldown the breaker opened with last (seconds): doubled while trials fail, up to a cap.
    cooldown: Mapped[float] = mapped_column(default=0.0)
    trial_started_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_failure_at: Mapped[datetime | None]
    changed_at: Mapped[datetime | None]


class SubsystemChange(Base):
    """Every change of a subsystem's state, by the operator (``actor_type`` operator, its account
    id) or by the breaker (``auto``): what it was, what it became, and why."""

    __tablename__ = "subsystem_history"
    __table_args__ = (Index("ix_subsystem_history_subsystem_id", "subsystem", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subsystem: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    # Effective states: closed, open, half_open, or off (switched off by the operator).
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(500))
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(Integer)
class MaintenanceWindow(Base):
    """An announced maintenance window, set by the operator (core.availability): an outage inside
    it does not count against the availability promise. ``tenant_id`` None: every tenant's.
    Not TenantScoped: the windows for all tenants (None) would vanish from a tenant's session."""

    __tablename__ = "maintenance_windows"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        Index("ix_maintenance_windows_ends_at", "ends_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(String(500))
    # The operator account that announced it (kept when the account goes: the audit trail names it).
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AvailabilityMonth(TenantScoped, Base):
    """A tenant's calendar month (UTC) once closed (core.availability.close_month): the figures
    it closed with and the compensation paid for it. The key (tenant, month) is what makes the
    compensation happen once: it is inserted in the transaction that appends the ledger entry."""

    __tablename__ = "availability_months"
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    # The month's first day.
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    closed_at: Mapped[datetime]
    # Thousandths of a percent (99912 is 99.912 %), rounded down; None while any part was unknown.
    availability_milli: Mapped[int | None] = mapped_column(Integer)
    # Over the part of the month with probe data; None when there was none.
    measured_availability_milli: Mapped[int | None] = mapped_column(Integer)
    downtime_seconds: Mapped[int] = mapped_column(Integer, default=0)
    unknown_seconds: Mapped[int] = mapped_column(Integer, default=0)
    # Minutes of service credited (the counted downtime rounded up); 0 when the month met the promise.
    compensated_minutes: Mapped[int] = mapped_column(Integer, default=0)
    # The ledger's compensation entry (None: none was due, or the tenant has no contract).
    ledger_entry_id: Mapped[int | None] = mapped_column(BigInteger)
    # The closed figures and incidents, as the report showed them then.
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)


class PeriodicJob(Base):
    """A job that one process of the hub runs every so often, whichever (core.backups' scheduled
    backup): who holds it now and until when (a core.leases.RowLease), and when it last succeeded,
    which is what makes it due. One row per job; no tenant data."""

    __tablename__ = "periodic_jobs"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(200))
    held_until: Mapped[datetime | None]
    # When the last successful run began.
    last_done_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))


class PurgeState(enum.StrEnum):
    # Asked for; no process has begun it yet.
    REQUESTED = "requested"
    # A process works on it (or did, and died: its lease runs out and another takes it on).
    RUNNING = "running"
    DONE = "done"


class TenantPurge(Base):
    """The deletion of one tenant's data (core.purge), and its progress, durable: each chunk of
    rows deleted moves ``table_name``/``rows_deleted`` on in the chunk's own transaction, so a
    purge interrupted by a crash resumes where it was. It outlives the tenant (no foreign key, and
    its column is not ``tenant_id``: the purge walks every table that has one). It keeps the
    tenant's name and domains, so the operator can tell what was purged."""

    __tablename__ = "tenant_purges"
    id: Mapped[int] = mapped_column(primary_key=True)
    purged_tenant_id: Mapped[int] = mapped_column(Integer, unique=True)
    tenant_name: Mapped[str] = mapped_column(String(200))
    domains: Mapped[list[Any]] = mapped_column(default=list)
    # owner (the tenant's owner asked), operator, retention (7 days after the term ended unpaid)
    reason: Mapped[str] = mapped_column(String(20))
    requested_by_type: Mapped[str] = mapped_column(String(20))
    requested_by_id: Mapped[int | None] = mapped_column(Integer)
    requested_at: Mapped[datetime]
    # What was typed to confirm it (the tenant's primary domain); None for retention.
    confirmation: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(20), default=PurgeState.REQUESTED.value)
    # The table being emptied (None: not begun, or done).
    table_name: Mapped[str | None] = mapped_column(String(64))
    rows_deleted: Mapped[int] = mapped_column(BigInteger, default=0)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    # Walks over the tables (a second one sweeps up rows written while the first ran).
    passes: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

class ExportState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    # Its file was deleted after ``expires_at``; the row stays as the record of who exported what.
    EXPIRED = "expired"


class Export(TenantScoped, Base):
    """An Excel export of a tenant's customers, tickets and (optionally) messages, or of one
    customer's data (core.exports). Any process that builds exports claims a queued one with a
    conditional UPDATE and holds it by a lease it renews each chunk; a crashed builder's export
    is taken again once the lease runs out."""

    __tablename__ = "exports"
    __table_args__ = (Index("ix_exports_tenant_id", "tenant_id", "id"), Index("ix_exports_state", "state"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    # Who asked (kept when the seat goes: the record still says an export was made).
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    # Set: one customer's data (a request under personal-data law); the filters are then empty.
    customer_id: Mapped[int | None] = mapped_column(BigInteger)
    # {"from": "YYYY-MM-DD", "to": ..., "statuses": [...], "channels": [...]} (core.exports.Filters)
    filters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    include_messages: Mapped[bool] = mapped_column(default=False)
    state: Mapped[str] = mapped_column(String(20), default=ExportState.QUEUED)
    rows_done: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_total: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Who builds it and until when that claim holds (renewed each chunk).
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None]
    # The file's name under CHANNELHUB_EXPORT_DIR, and its size, once done.
    file_name: Mapped[str | None] = mapped_column(String(200))
    size: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # When the file is deleted (set when it is done).
    expires_at: Mapped[datetime | None]


# --- reports (#17): rollups of the metrics, kept from the events (core.rollups, core.metrics) --------
_TIMED = ("first_response", "next_response", "resolution")
# The counters of a rollup row (docs/reports.md defines each); times are whole milliseconds.
REPORT_COUNTERS: tuple[str, ...] = (
    "received", "assigned", "solved", "transferred", "reopened",
    *(f"{t}_{part}" for t in _TIMED for part in ("count", "ms", "bms")),
    "handle_count", "handle_ms",
    *(f"{s}_ms" for s in ("new", "open", "pending", "solved")),
    *(f"csat_{n}" for n in range(1, 6)),
    *(f"sla_{t}" for t in _TIMED),
    *(f"h{n:02d}" for n in range(24)),
)

# The sums of what the tickets contributed, at several grains (core.rollups): ``grain`` says which
# of tag, channel, group and agent a row keeps (bits 1, 2, 4, 8; the others hold "" or 0) and
# whether ``day`` is a local day or (+16) the first day of a month. Grain 15 is the finest: one row
# per tenant, tag ("" = every ticket), channel, group (0 = none), agent (0 = none) and local day.
# A report reads the coarsest grain that answers its filters, so a year is a few thousand rows. A
# Core table: its counters are many and all alike; on SQLite the key is the table (WITHOUT ROWID),
# so a report's sums read one b-tree.
report_rollups = Table(
    "report_rollups", Base.metadata,
    Column("tenant_id", Integer, ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    Column("grain", SmallInteger, primary_key=True),
    Column("tag", String(64), primary_key=True),
    Column("channel", String(40), primary_key=True),
    Column("group_id", Integer, primary_key=True),
    Column("agent_id", Integer, primary_key=True),
    Column("day", Date, primary_key=True),
    *(Column(name, BigInteger, nullable=False, server_default="0") for name in REPORT_COUNTERS),
    sqlite_with_rowid=False,
)


class ReportCursor(TenantScoped, Base):
    """How far a tenant's rollups have read its events, and with which clock (zone and business
    hours: when they change, the rollups are rebuilt). Locked while a process updates them."""

    __tablename__ = "report_cursors"
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BigInteger, default=0)
    clock: Mapped[str] = mapped_column(String(64), default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- satisfaction surveys (#17, core.csat) ---------------------------------------------------------------
class CsatState(enum.StrEnum):
    PENDING = "pending"  # stored with the solve, not yet handed to the channel
    SENDING = "sending"  # claimed by a sender until locked_until
    SENT = "sent"
    FAILED = "failed"  # the channel refused it for good (or every try failed)


class CsatSurvey(TenantScoped, Base):
    """A satisfaction survey: at most one per ticket (the unique ticket_id: never sent twice, even
    when the ticket is reopened and solved again or solved twice at once). Written in the solve's
    transaction with the agent and group of that moment; sent afterwards (core.csat.deliver); the
    random token is the customer's capability to answer it, once."""

    __tablename__ = "csat_surveys"
    __table_args__ = (
        Index("ix_csat_surveys_state", "state", "created_at"),
        # The open survey of a customer's identity (a WeChat reply of a digit, a widget reconnecting).
        Index("ix_csat_surveys_identity", "tenant_id", "identity_id", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), unique=True)
    identity_id: Mapped[int | None] = mapped_column(ForeignKey("customer_identities.id", ondelete="SET NULL"))
    channel: Mapped[str] = mapped_column(String(40))
    # Who had the ticket, and its group, when it was solved: the rating counts for them.
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id", ondelete="SET NULL"))
    token: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(20), default=CsatState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    rating: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime | None]
    # The channel message that answered it (a WeChat reply of a digit): a retried push of that same
    # message is known as answered, not taken as a new message.
    answered_ref: Mapped[str | None] = mapped_column(String(200))


class CsatSettings(TenantScoped, Base):
    """A tenant's survey settings; no row: the defaults (surveys on)."""

    __tablename__ = "csat_settings"
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
class SlaTarget(enum.StrEnum):
    FIRST_RESPONSE = "first_response"
    NEXT_RESPONSE = "next_response"
    RESOLUTION = "resolution"


class SlaPolicy(TenantScoped, Base):
    """One ordered SLA policy of a tenant (core.sla): the first enabled one whose conditions hold
    for a ticket's priority and channel applies to it. Targets are seconds (null: not measured)."""

    __tablename__ = "sla_policies"
    __table_args__ = (UniqueConstraint("tenant_id", "name"), Index("ix_sla_policies_tenant_position",
                                                                      "tenant_id", "position"))
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(default=True)
    # Empty: any priority / any channel.
    priorities: Mapped[list[Any]] = mapped_column(default=list)
    channels: Mapped[list[Any]] = mapped_column(default=list)
    first_response: Mapped[int | None] = mapped_column(Integer)
    next_response: Mapped[int | None] = mapped_column(Integer)
    resolution: Mapped[int | None] = mapped_column(Integer)
    # True: the targets count the tenant's business hours only (routing_settings.business_hours).
    business_hours: Mapped[bool] = mapped_column(default=False)
    # The warning fires this many seconds before the deadline (null: when 80 % of the target ran).
    warn_before: Mapped[int | None] = mapped_column(Integer)
    # When the warning fires, the ticket's priority rises to this one (if lower).
    escalate_priority: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TicketSla(TenantScoped, Base):
    """A ticket's live deadline of one target (core.sla): computed by the SLA sweeper from the
    ticket's events; ``warned_at`` and ``breached_at`` are set once each, by a conditional UPDATE.
    Next response has one row per wait (``cycle`` 1, 2, ...); the others have cycle 0."""

    __tablename__ = "ticket_sla"
    __table_args__ = (
        UniqueConstraint("ticket_id", "target", "cycle"),
        Index("ix_ticket_sla_warn_at", "warn_at"),
        Index("ix_ticket_sla_due_at", "due_at"),
        Index("ix_ticket_sla_policy_id", "policy_id"),
        # The breach report: a tenant's breaches in a period.
        Index("ix_ticket_sla_tenant_breached", "tenant_id", "breached_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(String(20))
    cycle: Mapped[int] = mapped_column(Integer, default=0)
    policy_id: Mapped[int | None] = mapped_column(ForeignKey("sla_policies.id", ondelete="SET NULL"))
    policy_name: Mapped[str] = mapped_column(String(200))
    business_hours: Mapped[bool] = mapped_column(default=False)
    target_seconds: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    # When the clock runs out (null while paused with time left).
    due_at: Mapped[datetime | None]
    # When the warning is due (null while paused, or when met).
    warn_at: Mapped[datetime | None]
    # Set while the ticket is pending on the customer: the clock stands, with ``remaining`` seconds.
    paused_at: Mapped[datetime | None]
    remaining: Mapped[float | None] = mapped_column(Float)
    met_at: Mapped[datetime | None]
    warned_at: Mapped[datetime | None]
    breached_at: Mapped[datetime | None]
    # The assignee and group when the breach was recorded (the breach report counts them).
    breach_agent_id: Mapped[int | None] = mapped_column(Integer)
    breach_group_id: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SlaCursor(Base):
    """How far the SLA sweeper has read the events table (the last id below which every event was
    seen or is long past committing). One row; no tenant data."""

    __tablename__ = "sla_cursor"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BigInteger, default=0)
