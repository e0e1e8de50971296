"""The XMPP channel's tables: the tenants' accounts (client accounts and XEP-0114 components), who
wrote to which of them, and what became of each reply (the server's ack, the customer's receipt).

They share core's metadata (``core.models.Base``), so alembic and the tenant scoping see them as
soon as the channel is imported (``connectors.registry`` imports every channel).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base, BigId, TenantScoped, utcnow


class XmppAccount(TenantScoped, Base):
    """One XMPP address of a tenant: a client account (``jid`` is its bare JID, ``secret`` its
    password) or an external component (``jid`` is the component's domain, ``support.example.com``,
    ``secret`` the component secret; customers write to ``anything@`` it).

    ``jid`` is unique over all tenants. The secret is Fernet-encrypted (core.secrets) and never
    leaves the server. One process holds an account's connection at a time: the lease."""

    __tablename__ = "xmpp_accounts"
    __table_args__ = (UniqueConstraint("jid"), Index("ix_xmpp_accounts_tenant", "tenant_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    # "client" or "component"
    kind: Mapped[str] = mapped_column(String(10))
    jid: Mapped[str] = mapped_column(String(320))
    secret_enc: Mapped[str] = mapped_column(Text)
    # Where to connect (null host: the JID's domain; null port: 5222 for a client, 5347 for a
    # component) and how: "none" (plaintext, loopback), "starttls" (required), "tls" (direct TLS).
    host: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)
    security: Mapped[str] = mapped_column(String(10), default="starttls")
    # The status text shown with the account's presence.
    name: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True)
    # Group chats (MUC) whose messages are taken; empty: group chat messages are ignored.
    muc_rooms: Mapped[list[Any]] = mapped_column(default=list)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None]
    # What the link last met, for the admin: connected (null error) or the failure.
    connected: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None] = mapped_column(Text)
    checked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class XmppPeer(TenantScoped, Base):
    """A customer (bare JID) and the account and address they last wrote to: replies go out from
    there (a component has any number of addresses)."""

    __tablename__ = "xmpp_peers"
    __table_args__ = (UniqueConstraint("tenant_id", "jid"),
                      # A customer's erasure (core.erasure) deletes what is kept of their JID.
                      {"info": {"customer_key": {"channel": "xmpp", "column": "jid"}}})
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("xmpp_accounts.id", ondelete="CASCADE"))
    jid: Mapped[str] = mapped_column(String(320))
    local_jid: Mapped[str] = mapped_column(String(320))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class XmppDelivery(TenantScoped, Base):
    """A reply as it went out: its stanza id, when the server acknowledged it, and when the
    customer's client sent its delivery receipt (XEP-0184), if it did."""

    __tablename__ = "xmpp_deliveries"
    __table_args__ = (UniqueConstraint("tenant_id", "stanza_id"), Index("ix_xmpp_deliveries_message", "message_id"),
                      # Erased with the customer's messages (core.erasure): it holds their JID.
                      {"info": {"message_key": "message_id"}})
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(BigInteger)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("xmpp_accounts.id", ondelete="SET NULL"))
    stanza_id: Mapped[str] = mapped_column(String(100))
    to_jid: Mapped[str] = mapped_column(String(320))
    acked_at: Mapped[datetime] = mapped_column(default=utcnow)
    receipt_at: Mapped[datetime | None]
