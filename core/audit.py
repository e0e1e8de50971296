"""The audit trail: every admin and operator action, written in the action's own transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.models import AuditLog


def audit(
    session: AsyncSession,
    *,
    tenant_id: int | None,
    actor_type: str,
    actor_id: int | None,
    action: str,
    target_type: str | None = None,
    target_id: Any = None,
    details: dict[str, Any] | None = None,
    ip: str | None = None,
) -> None:
    session.add(
        AuditLog(
            tenant_id=tenant_id, actor_type=actor_type, actor_id=actor_id, action=action,
            target_type=target_type, target_id=None if target_id is None else str(target_id),
            details=details or {}, ip=ip,
        )
    )
