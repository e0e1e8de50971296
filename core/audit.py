"""The audit trail and the login log: writing, reading, and checking the audit chain.

Every change made by a tenant's admin or agent to the tenant's configuration, and every change by
the operator's staff, is written here in the change's own transaction (:func:`audit`): who (actor),
what (action), on what (target) and what changed (details: before/after or the fields changed —
never a password, a secret or a message's text). Ticket work (replies, notes, status, assignment,
tags...) is recorded in the ticket's events instead (core.models.TicketEvent, with the agent), which
the ticket's history shows; docs/api.md says which routes are audited and which are not.

Rows are linked in a hash chain per tenant, and one for the operator (core.auditchain; the hashes
are set by core.models' insert hooks, whoever adds the row). :func:`verify` walks the chains and
reports the first row that does not fit. The database refuses to change or remove rows of either
log (triggers of migration 0016a), except a tenant's while it is purged.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import auditchain
from core.models import AuditHead, AuditLog, LoginLog

if TYPE_CHECKING:
    from core.db import Database

# A page of either log holds at most this many rows; an export reads them this many at a time.
MAX_PAGE = 500
DEFAULT_PAGE = 100
EXPORT_BATCH = 500


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


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """``{"before": {...}, "after": {...}}`` of the keys whose values differ."""
    keys = [k for k in after if before.get(k) != after.get(k)]
    return {"before": {k: before.get(k) for k in keys}, "after": {k: after.get(k) for k in keys}}


# --- reading ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditFilter:
    """What to read of one chain: the tenant's (``tenant_id``) or the operator's (None)."""

    tenant_id: int | None
    since: datetime | None = None
    until: datetime | None = None
    actor_type: str | None = None
    actor_id: int | None = None
    # A prefix: "agent." finds agent.create, agent.update...
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    # The operator's trail: only its actions on this tenant.
    about_tenant: int | None = None

    def statement(self) -> Select[AuditLog]:
        stmt = select(AuditLog).where(AuditLog.tenant_id.is_(None) if self.tenant_id is None
                                      else AuditLog.tenant_id == self.tenant_id)
        if self.since is not None:
            stmt = stmt.where(AuditLog.created_at >= self.since)
        if self.until is not None:
            stmt = stmt.where(AuditLog.created_at < self.until)
        if self.actor_type is not None:
            stmt = stmt.where(AuditLog.actor_type == self.actor_type)
        if self.actor_id is not None:
            stmt = stmt.where(AuditLog.actor_id == self.actor_id)
        if self.action is not None:
            stmt = stmt.where(AuditLog.action.startswith(self.action, autoescape=True))
        if self.target_type is not None:
            stmt = stmt.where(AuditLog.target_type == self.target_type)
        if self.target_id is not None:
            stmt = stmt.where(AuditLog.target_id == self.target_id)
        if self.about_tenant is not None:
            stmt = stmt.where(AuditLog.target_type == "tenant", AuditLog.target_id == str(self.about_tenant))
        return stmt


@dataclass(frozen=True)
class LoginFilter:
    tenant_id: int
    since: datetime | None = None
    until: datetime | None = None
    agent_id: int | None = None
    email: str | None = None
    outcome: str | None = None
    ip: str | None = None

    def statement(self) -> Select[LoginLog]:
        stmt = select(LoginLog).where(LoginLog.tenant_id == self.tenant_id)
        if self.since is not None:
            stmt = stmt.where(LoginLog.created_at >= self.since)
        if self.until is not None:
            stmt = stmt.where(LoginLog.created_at < self.until)
        if self.agent_id is not None:
            stmt = stmt.where(LoginLog.agent_id == self.agent_id)
        if self.email is not None:
            stmt = stmt.where(LoginLog.email == self.email.strip().lower())
        if self.outcome is not None:
            stmt = stmt.where(LoginLog.outcome == self.outcome)
        if self.ip is not None:
            stmt = stmt.where(LoginLog.ip == self.ip)
        return stmt


def audit_dict(r: AuditLog) -> dict[str, Any]:
    return {"id": r.id, "at": r.created_at.isoformat(), "actor_type": r.actor_type, "actor_id": r.actor_id,
            "action": r.action, "target_type": r.target_type, "target_id": r.target_id, "details": r.details,
            "ip": r.ip, "hash": r.hash}


def login_dict(r: LoginLog) -> dict[str, Any]:
    return {"id": r.id, "at": r.created_at.isoformat(), "agent_id": r.agent_id, "email": r.email, "ip": r.ip,
            "user_agent": r.user_agent, "outcome": r.outcome}


async def page(session: AsyncSession, filters: AuditFilter | LoginFilter, *, before_id: int | None,
               limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """Newest first, ``limit`` rows with ids below ``before_id``; and the ``before_id`` of the next
    page (None: this was the last)."""
    model: Any = AuditLog if isinstance(filters, AuditFilter) else LoginLog
    stmt = filters.statement()
    if before_id is not None:
        stmt = stmt.where(model.id < before_id)
    rows = list((await session.execute(stmt.order_by(model.id.desc()).limit(limit + 1))).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    as_dict = audit_dict if model is AuditLog else login_dict
    return [as_dict(r) for r in rows], (rows[-1].id if more and rows else None)


async def rows(db: Database, filters: AuditFilter | LoginFilter, *,
               batch: int = EXPORT_BATCH) -> AsyncIterator[list[dict[str, Any]]]:
    """Every row the filters match, newest first, a batch at a time; each batch is read in a short
    transaction of its own, so a slow download holds no transaction open."""
    before: int | None = None
    scope = filters.tenant_id
    while True:
        async with db.read(scope) as session:
            found, before = await page(session, filters, before_id=before, limit=batch)
        if found:
            yield found
        if before is None:
            return


# --- the chain ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Break:
    """The first row of a chain that does not fit, and how."""

    chain: str  # "tenant 12" or "operator"
    row_id: int | None
    problem: str

    def __str__(self) -> str:
        where = f"row {self.row_id}" if self.row_id is not None else "head"
        return f"{self.chain}: {where}: {self.problem}"


def chain_name(tenant_id: int | None) -> str:
    return "operator" if tenant_id is None else f"tenant {tenant_id}"


async def chains(db: Database) -> list[int | None]:
    """Every chain there is: the operator's (None) and those of tenants with rows or a head."""
    async with db.read() as session:
        with_rows = set((await session.execute(select(AuditLog.tenant_id).distinct())).scalars())
        with_head = set((await session.execute(select(AuditHead.tenant_id).distinct())).scalars())
    found = with_rows | with_head
    return ([None] if None in found else []) + sorted(t for t in found if t is not None)


async def verify_chain(db: Database, tenant_id: int | None, *, batch: int = 1000) -> tuple[int, Break | None]:
    """Walk one chain in id order: each row's ``prev_hash`` is the hash of the row before it, its
    ``hash`` is that of its fields, and the head names the last row. The number of rows checked,
    and the first break (None: the chain is whole)."""
    name = chain_name(tenant_id)
    prev, prev_id, after, count = auditchain.GENESIS, None, 0, 0
    scope = AuditLog.tenant_id.is_(None) if tenant_id is None else AuditLog.tenant_id == tenant_id
    while True:
        async with db.read() as session:
            found = list((await session.execute(
                select(AuditLog).where(scope, AuditLog.id > after).order_by(AuditLog.id).limit(batch))).scalars())
        for r in found:
            count += 1
            if r.prev_hash != prev:
                what = ("the first row of the chain does not start it" if prev_id is None else
                        f"its prev_hash is not the hash of row {prev_id} before it: a row between them was "
                        f"removed, or row {prev_id} was changed")
                return count, Break(name, r.id, what)
            digest = auditchain.row_hash(
                prev_hash=r.prev_hash, tenant_id=r.tenant_id, actor_type=r.actor_type, actor_id=r.actor_id,
                action=r.action, target_type=r.target_type, target_id=r.target_id, details=r.details, ip=r.ip,
                created_at=r.created_at)
            if digest != r.hash:
                return count, Break(name, r.id, "its fields do not match its hash: the row was changed")
            prev, prev_id = r.hash, r.id
        if len(found) < batch:
            break
        after = found[-1].id
    async with db.read() as session:
        head = (await session.execute(select(AuditHead).where(
            AuditHead.chain == auditchain.chain_key(tenant_id)))).scalar_one_or_none()
    if head is None:
        if prev_id is not None:
            return count, Break(name, None, "the chain has rows but no head")
    elif head.last_id != (prev_id or 0) or head.last_hash != prev:
        return count, Break(name, None, f"the head names row {head.last_id}, the last row is {prev_id}: "
                                        "the newest rows were removed or changed")
    return count, None


async def verify(db: Database, tenant_ids: Sequence[int | None] | None = None) -> list[tuple[str, int, Break | None]]:
    """Each chain asked for (default: all) with its rows checked and its first break."""
    out = []
    for tid in (await chains(db) if tenant_ids is None else tenant_ids):
        count, broken = await verify_chain(db, tid)
        out.append((chain_name(tid), count, broken))
    return out


def details_text(details: Any) -> str:
    return json.dumps(details, ensure_ascii=False, sort_keys=True)
