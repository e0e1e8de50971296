"""Web chat's queries: visitors' uploads (core's attachments, with whose they are) and the tenant's
widget words."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from connectors.webchat.models import WebchatSettingsRow, WebchatUpload
from connectors.webchat.settings import WebchatSettings
from core import attachments
from core.audit import audit
from core.errors import InvalidInput, NotFound, TooManyRequests
from core.models import Agent, Presence, StoredAttachment, utcnow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from core.hub import Hub


def customer_file(hub: Hub, tenant_id: int, stored: dict[str, Any]) -> dict[str, Any]:
    """An uploaded file as the visitor gets it back: its id (to name in a message) and the visitor's
    own signed link (core.attachments.public_path), never the agents' URL."""
    return {"id": stored["id"], "name": stored["name"], "content_type": stored["content_type"],
            "size": stored["size"], "url": attachments.public_path(hub.settings, tenant_id, stored["id"])}


async def save_upload(hub: Hub, limits: WebchatSettings, tenant_id: int, visitor_id: str, name: str,
                      content_type: str, data: bytes, *, now: datetime) -> dict[str, Any]:
    """Store a visitor's file with core's attachments, and that it is this visitor's, in one
    transaction; refused with 429 past the visitor's upload limit (counted back from ``now``)."""
    window = timedelta(seconds=limits.upload_window_seconds)
    async with hub.db.session(tenant_id) as session:
        count, oldest = (await session.execute(
            select(func.count(), func.min(WebchatUpload.created_at))
            .where(WebchatUpload.visitor_id == visitor_id, WebchatUpload.created_at > now - window)
        )).one()
        if count >= limits.uploads_per_window:
            wait = max(1, math.ceil(((oldest + window) - now).total_seconds())) if oldest else 1
            raise TooManyRequests(f"at most {limits.uploads_per_window} files per "
                                  f"{int(limits.upload_window_seconds // 60)} minutes; try again later",
                                  code="too_many_uploads", retry_after=wait)
        stored = await attachments.add(session, tenant_id, None, name, content_type, data)
        session.add(WebchatUpload(attachment_id=stored["id"], tenant_id=tenant_id, visitor_id=visitor_id,
                                  created_at=now))
    return stored


async def visitor_files(hub: Hub, tenant_id: int, visitor_id: str, ids: Sequence[int]) -> list[dict[str, Any]]:
    """What a visitor's message keeps of the files it names (core.attachments.attachment_dict), in
    the order given. Only files this visitor uploaded to this tenant: any other id (another
    visitor's, an agent's, another tenant's, none at all) is not found, all alike."""
    wanted = list(dict.fromkeys(ids))
    if len(wanted) > attachments.MAX_PER_MESSAGE:
        raise InvalidInput(f"a message has at most {attachments.MAX_PER_MESSAGE} attachments",
                           code="too_many_attachments")
    if not wanted:
        return []
    async with hub.db.read(tenant_id) as session:
        rows = {row.id: row for row in (await session.execute(
            select(StoredAttachment.id, StoredAttachment.name, StoredAttachment.content_type, StoredAttachment.size)
            .join(WebchatUpload, WebchatUpload.attachment_id == StoredAttachment.id)
            .where(StoredAttachment.id.in_(wanted), WebchatUpload.visitor_id == visitor_id)
        )).all()}
    for attachment_id in wanted:
        if attachment_id not in rows:
            raise NotFound(f"attachment {attachment_id} not found", code="attachment_not_found")
    return [attachments.attachment_dict(rows[i]) for i in wanted]


# --- the tenant's words ----------------------------------------------------------------------
def settings_dict(row: WebchatSettingsRow | None) -> dict[str, Any]:
    return {"offline_message": dict(row.offline_message or {}) if row else {},
            "welcome": dict(row.welcome or {}) if row else {}}


async def get_settings(session: AsyncSession) -> dict[str, Any]:
    """The session's tenant's widget words ({} per field until an admin sets them)."""
    return settings_dict((await session.execute(select(WebchatSettingsRow))).scalar_one_or_none())


async def put_settings(session: AsyncSession, tenant_id: int, changes: dict[str, Any], *, actor_id: int | None,
                       ip: str | None) -> dict[str, Any]:
    """Set the fields given (each a whole {language: text} object); audited by field name."""
    row = (await session.execute(select(WebchatSettingsRow).with_for_update())).scalar_one_or_none()
    if row is None:
        row = WebchatSettingsRow(tenant_id=tenant_id, offline_message={}, welcome={})
        session.add(row)
    for field, value in changes.items():
        setattr(row, field, dict(value))
    row.updated_at = utcnow()
    audit(session, tenant_id=tenant_id, actor_type="agent", actor_id=actor_id, action="webchat.settings.update",
          target_type="webchat_settings", target_id=tenant_id,
          details={"fields": sorted(changes), "languages": {f: sorted(v) for f, v in changes.items()}}, ip=ip)
    await session.flush()
    return settings_dict(row)


async def online_agents(session: AsyncSession) -> set[int]:
    """The session's tenant's agents who are online (one query; the widget's presence follows
    the presence events from there)."""
    return set((await session.execute(
        select(Agent.id).where(Agent.status == Presence.ONLINE, Agent.active.is_(True))
    )).scalars())
