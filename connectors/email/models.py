"""The email channel's tables: the tenants' mailboxes and the originals of the mail they hold.

They share core's metadata (``core.models.Base``), so alembic and the tenant scoping see them as
soon as the channel is imported (``connectors.registry`` imports every channel).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base, BigId, TenantScoped, utcnow


class EmailMailbox(TenantScoped, Base):
    """One support address of a tenant (``support@acme.example.com``), with how its replies go out
    (the tenant's SMTP relay) and, if mail is not pointed at the hub's own receiver, the IMAP
    account it is read from.

    ``address`` is unique over all tenants: the recipient of a mail names its tenant. Passwords are
    Fernet-encrypted (core.secrets) and never leave the server in clear.
    """

    __tablename__ = "email_mailboxes"
    __table_args__ = (UniqueConstraint("address"), Index("ix_email_mailboxes_tenant", "tenant_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))
    # The display name of the From header ("Acme Support").
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True)
    # Replies carry a signed plus address (support+t123-sig@...) as Reply-To, for servers that
    # deliver plus addresses to the mailbox.
    plus_addressing: Mapped[bool] = mapped_column(default=False)
    # The relay replies go out through: security is "none", "starttls" or "tls".
    smtp_host: Mapped[str | None] = mapped_column(String(255))
    smtp_port: Mapped[int | None] = mapped_column(Integer)
    smtp_security: Mapped[str] = mapped_column(String(10), default="starttls")
    smtp_username: Mapped[str | None] = mapped_column(String(320))
    smtp_password_enc: Mapped[str | None] = mapped_column(Text)
    # The IMAP account mail is read from (null host: mail comes in over SMTP only).
    imap_host: Mapped[str | None] = mapped_column(String(255))
    imap_port: Mapped[int | None] = mapped_column(Integer)
    imap_security: Mapped[str] = mapped_column(String(10), default="tls")
    imap_username: Mapped[str | None] = mapped_column(String(320))
    imap_password_enc: Mapped[str | None] = mapped_column(Text)
    imap_folder: Mapped[str] = mapped_column(String(200), default="INBOX")
    # Where reading stopped: the folder's UIDVALIDITY and the highest UID stored. A UIDVALIDITY
    # that changed means the server renumbered the folder (the UIDs say nothing any more).
    imap_uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    imap_last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    # One process follows a mailbox at a time: it holds the lease and renews it while connected.
    imap_lease_owner: Mapped[str | None] = mapped_column(String(100))
    imap_lease_until: Mapped[datetime | None]
    # What the last attempt to read the mailbox met, for the admin (null when it worked).
    imap_error: Mapped[str | None] = mapped_column(Text)
    imap_checked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class EmailOriginal(TenantScoped, Base):
    """A mail as it came, beside the ticket message made of it: the whole text (the message shows
    what the customer wrote this time, without the quoted history), the HTML as sent (sanitised
    each time it is read, never shown as stored), and the headers an agent may want, with the
    descriptions of the mail's stored files. Keyed like the message: (tenant, Message-ID)."""

    __tablename__ = "email_originals"
    __table_args__ = (UniqueConstraint("tenant_id", "message_key"),
                      # Erased with the customer's messages (core.erasure): the whole mail.
                      {"info": {"channel_message_key": "message_key"}})
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    mailbox_id: Mapped[int | None] = mapped_column(ForeignKey("email_mailboxes.id", ondelete="SET NULL"))
    # The ticket message's channel_message_id: the Message-ID without its angle brackets.
    message_key: Mapped[str] = mapped_column(String(255))
    # from, to, cc, reply_to, subject, message_id, in_reply_to, references, defects, attachments
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
