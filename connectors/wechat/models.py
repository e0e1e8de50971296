"""The WeChat channel's tables: accounts, the shared access token, media, reply windows, uploads.

They share core's metadata (``core.models.Base``), so alembic and the tenant scoping see them as
soon as the channel is imported (``connectors.registry`` imports every channel).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base, BigId, TenantScoped, utcnow


class WeChatAccount(TenantScoped, Base):
    """A tenant's Official Account ("oa") or WeCom customer-service account ("kf").

    ``key`` is the random public id in the webhook URL. Secrets are Fernet-encrypted
    (core.secrets) and never leave the server in clear.
    """

    __tablename__ = "wechat_accounts"
    __table_args__ = (Index("ix_wechat_accounts_tenant_kind", "tenant_id", "kind"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(10))  # oa, kf
    name: Mapped[str] = mapped_column(String(200))
    # The Official Account's AppID, or the WeCom corp id.
    app_id: Mapped[str] = mapped_column(String(64))
    open_kfid: Mapped[str | None] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(10), default="plain")  # plain, compat, safe
    secret_enc: Mapped[str] = mapped_column(Text)
    token_enc: Mapped[str] = mapped_column(Text)
    aes_key_enc: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(default=True)
    # WeCom kf: where sync_msg stopped, and a lease so one process pulls at a time.
    kf_cursor: Mapped[str | None] = mapped_column(String(255))
    kf_sync_until: Mapped[datetime | None]
    kf_sync_pending: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WeChatToken(TenantScoped, Base):
    """The shared access token of one account when there is no Redis (encrypted, with a refresh lease)."""

    __tablename__ = "wechat_tokens"
    account_id: Mapped[int] = mapped_column(ForeignKey("wechat_accounts.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    token_enc: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None]
    lock_until: Mapped[datetime | None]


class WeChatMedia(TenantScoped, Base):
    """A customer's image, voice or video, fetched through the media API once and kept here, so every
    process (and machine) serves the same bytes."""

    __tablename__ = "wechat_media"
    __table_args__ = (UniqueConstraint("account_id", "media_id"),
                      # Erased with the customer's messages (core.erasure), named in their attachments'
                      # URLs (connectors.wechat.inbound.media_url).
                      {"info": {"attachment_url": r"/api/v1/wechat/media/[^/]+/(?P<key>[^/?#]+)",
                                "column": "media_id"}})
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("wechat_accounts.id", ondelete="CASCADE"))
    media_id: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WeChatReplyWindow(TenantScoped, Base):
    """Replies sent in a customer's current 48-hour window (the platform allows 5 per window)."""

    __tablename__ = "wechat_reply_windows"
    # A customer's erasure (core.erasure): their openid is the last part of their identity.
    __table_args__ = ({"info": {"customer_key": {"channel": "wechat", "column": "user_id", "part": "last"}}},)
    account_id: Mapped[int] = mapped_column(ForeignKey("wechat_accounts.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    # The customer's message that opened the window.
    opened_at: Mapped[datetime]
    sent: Mapped[int] = mapped_column(Integer, default=0)


class WeChatUpload(TenantScoped, Base):
    """One of our attachments uploaded to an account as temporary media: the platform keeps it 3
    days, so a retry or another reply within that time sends the same media_id again."""

    __tablename__ = "wechat_uploads"
    account_id: Mapped[int] = mapped_column(ForeignKey("wechat_accounts.id", ondelete="CASCADE"), primary_key=True)
    attachment_id: Mapped[int] = mapped_column(ForeignKey("attachments.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    media_type: Mapped[str] = mapped_column(String(10))  # image, voice, video, file
    media_id: Mapped[str] = mapped_column(String(255))
    # When the upload began (the platform's 3 days start no earlier).
    uploaded_at: Mapped[datetime]
