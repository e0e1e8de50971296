"""Web chat's tables: which visitor uploaded which file, and each tenant's words for the widget.

They share core's metadata (``core.models.Base``), so alembic and the tenant scoping see them as
soon as the channel is imported (``connectors.registry`` imports every channel). The files
themselves are core's attachments (core.attachments): this only says whose they are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base, BigId, TenantScoped, utcnow


class WebchatUpload(TenantScoped, Base):
    """A file a visitor uploaded from the widget. Only that visitor may attach it to a message, and
    the rows of the last minutes are what the per-visitor upload limit counts."""

    __tablename__ = "webchat_uploads"
    __table_args__ = (Index("ix_webchat_uploads_visitor", "tenant_id", "visitor_id", "created_at"),
                      # A customer's erasure (core.erasure) deletes their uploads, files included.
                      {"info": {"customer_key": {"channel": "webchat", "column": "visitor_id"}}})
    attachment_id: Mapped[int] = mapped_column(BigId, ForeignKey("attachments.id", ondelete="CASCADE"),
                                               primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    visitor_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebchatSettingsRow(TenantScoped, Base):
    """A tenant's own words for the widget, by language tag (``{"en": ..., "zh-CN": ...}``): the
    notice shown while no agent is online, and an optional greeting."""

    __tablename__ = "webchat_settings"
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    offline_message: Mapped[dict[str, Any]] = mapped_column(default=dict)
    welcome: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
