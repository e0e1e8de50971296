"""Deleting a tenant's data (#16): asked for by its owner or the operator with a typed
confirmation, or by retention 7 days after its term ended unpaid; run in chunks, resumable.

**Asking.** :func:`request` checks the confirmation (the tenant's primary domain, typed), ends a
contract that still runs (today, its unused days refunded to the balance, as at the end of a
notice: the owner chose to leave; the balance left is written in the operator's audit, which
outlives the purge, for the operator to settle), sets the tenant's status to ``purging`` (every route refuses
it with 403 ``tenant_purged``; the caller announces it, so every process does at once and its
agents' sockets close) and writes a :class:`core.models.TenantPurge` row. The request and, later,
the completion are written to the operator's audit trail (rows without a tenant id: they outlive
the tenant).

**Running.** :func:`run` walks the metadata: every table with a ``tenant_id`` column (the
channels' included), children before parents (``Base.metadata.sorted_tables`` reversed), deleting
``chunk`` rows per short transaction, so the hub keeps serving meanwhile (on SQLite the write lock
is held for one chunk at a time). The audit log's rows are deleted explicitly like any table,
while the tenant is ``purging`` (the database only lets them go then). Each chunk moves the
purge's progress on in its own transaction (table reached, rows deleted), so a crash loses
nothing: the next run resumes at that table (deleting by chunk is idempotent). A walk that finds
rows written meanwhile (a message that was already on its way in) walks again. The tenant's
domains go last (they keep answering ``tenant_purged`` until then; then they are free for another
tenant), and the tenant row becomes a tombstone: status ``purged``, no name, no domain, kept so its
id is never given to another tenant.

**Who runs it.** Every ``serve`` process, every ``purge_interval`` seconds
(:func:`purge_round`); a lease on the purge row (owner, until) lets one process work a purge at a
time, renewed with every chunk; a process that dies leaves a lease that runs out, and another
takes the purge on. ``channelhub purge`` runs one to completion from the command line.

**Retention.** :func:`retention_due`: a tenant suspended by billing because its term ran out
unpaid (its contract ``lapsed_at``), or whose contract ended, or that was ended without one, is
purged 7 days after its term ended (``term_end``, ``ends_on``, or the day it was ended) unless it
renewed meanwhile (a renewal clears ``lapsed_at`` and resumes it). A tenant the operator suspended
is never purged by retention. The round skips retention while billing is offline: a tenant who
paid may not have been renewed yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Table, delete, exists, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from core import billing, exports
from core.auth import announce_revoked
from core.billing import SYSTEM, Actor
from core.errors import InvalidInput, NotFound
from core.models import (
    AuditLog,
    Base,
    BillingContract,
    ContractState,
    Export,
    PurgeState,
    Tenant,
    TenantDomain,
    TenantPurge,
    TenantStatus,
    table_of,
    utcnow,
)
from core.tenancy import announce_changed

if TYPE_CHECKING:
    from core.hub import Hub

logger = logging.getLogger(__name__)

RETENTION_DAYS = 7
# A purge's lease: renewed with every chunk, so it runs out only when its process stopped.
LEASE_SECONDS = 120.0
# Walks over the tables: a second one takes what was written while the first went by (a message
# that was already on its way in); more would mean something keeps writing for a purged tenant.
MAX_PASSES = 5
DEFAULT_CHUNK = 2000

PURGES = table_of(TenantPurge)
TENANTS = table_of(Tenant)
DOMAINS = table_of(TenantDomain)


def purge_tables() -> list[Table]:
    """Every table holding a tenant's rows, in the order they are emptied: children before their
    parents (so no delete cascades into a big unchunked one), the tenant's domains last."""
    tables = [t for t in reversed(Base.metadata.sorted_tables)
              if "tenant_id" in t.c and t.name != DOMAINS.name]
    return [*tables, DOMAINS]


def _owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


def _audit_row(actor: Actor, action: str, tenant_id: int, details: dict[str, Any], ip: str | None,
               now: datetime) -> dict[str, Any]:
    """An operator audit row (no tenant id: it outlives the tenant), for Core inserts."""
    return {"tenant_id": None, "actor_type": actor.type, "actor_id": actor.id, "action": action,
            "target_type": "tenant", "target_id": str(tenant_id), "details": details, "ip": ip, "created_at": now}


def purge_dict(purge: TenantPurge | Any) -> dict[str, Any]:
    """A purge as the routes show it (an ORM row or a Core row)."""
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None
    return {
        "tenant_id": purge.purged_tenant_id, "tenant_name": purge.tenant_name, "domains": list(purge.domains),
        "reason": purge.reason, "requested_by": {"type": purge.requested_by_type, "id": purge.requested_by_id},
        "requested_at": iso(purge.requested_at), "state": purge.state, "table": purge.table_name,
        "rows_deleted": purge.rows_deleted, "chunks": purge.chunks, "passes": purge.passes,
        "started_at": iso(purge.started_at), "finished_at": iso(purge.finished_at),
    }


async def of_tenant(session: AsyncSession, tenant_id: int) -> TenantPurge | None:
    return (await session.execute(select(TenantPurge).where(TenantPurge.purged_tenant_id == tenant_id))
            ).scalar_one_or_none()


async def request(session: AsyncSession, tenant_id: int, *, confirm: str | None, actor: Actor, reason: str,
                  now: datetime, ip: str | None = None) -> TenantPurge:
    """Ask for the tenant's purge (in the caller's transaction; the caller announces the status
    change after commit: :func:`announced`). Asked again while it runs: the purge as it is."""
    tenant = (await session.execute(select(Tenant).where(Tenant.id == tenant_id).with_for_update())
              ).scalar_one_or_none()
    if tenant is None:
        existing = await of_tenant(session, tenant_id)
        if existing is not None:
            return existing
        raise NotFound(f"tenant {tenant_id} not found", code="tenant_not_found")
    if tenant.status in (TenantStatus.PURGING, TenantStatus.PURGED):
        existing = await of_tenant(session, tenant_id)
        if existing is not None:
            return existing
    if reason != "retention":
        typed = (confirm or "").strip().lower().rstrip(".")
        if typed != tenant.domain:
            raise InvalidInput("to confirm, type the tenant's primary domain exactly", code="confirmation_mismatch",
                               details={"expected": "the tenant's primary domain"})
    settlement = await _settle(session, tenant_id, now=now, actor=actor)
    domains = list((await session.execute(select(TenantDomain.domain).where(TenantDomain.tenant_id == tenant_id)
                                          .order_by(TenantDomain.created_at, TenantDomain.domain))).scalars())
    before = tenant.status
    tenant.status, tenant.suspended_by, tenant.status_changed_at = TenantStatus.PURGING.value, None, now
    purge = TenantPurge(purged_tenant_id=tenant_id, tenant_name=tenant.name, domains=domains, reason=reason,
                        requested_by_type=actor.type, requested_by_id=actor.id, requested_at=now,
                        confirmation=confirm, state=PurgeState.REQUESTED.value, rows_deleted=0, chunks=0, passes=0)
    session.add(purge)
    session.add(AuditLog(**_audit_row(actor, "tenant.purge.request", tenant_id, {
        "reason": reason, "name": tenant.name, "domains": domains, "status_before": before,
        "contract": settlement}, ip, now)))
    await session.flush()
    logger.info("purge of tenant %s requested (%s)", tenant_id, reason)
    return purge


async def _settle(session: AsyncSession, tenant_id: int, *, now: datetime, actor: Actor) -> dict[str, Any] | None:
    """The contract, before it goes with the tenant: a running one ends today, its unused days
    refunded to the balance (as at the end of a notice); what is left, in the operator's audit
    (which outlives the purge), so the operator can settle it."""
    contract = (await session.execute(select(BillingContract).where(BillingContract.tenant_id == tenant_id)
                                      .with_for_update())).scalar_one_or_none()
    if contract is None:
        return None
    today = now.astimezone(UTC).date()
    if contract.state != ContractState.ENDED and contract.lapsed_at is None and contract.term_start <= today:
        contract.state, contract.ends_on, contract.notice_given_at = ContractState.ENDING.value, today, now
        await billing.end_contract(session, tenant_id, now=now, actor=actor)
    return {"state": contract.state, "balance": contract.balance, "currency": contract.currency,
            "term_start": contract.term_start.isoformat(), "term_end": contract.term_end.isoformat(),
            "lapsed": contract.lapsed_at is not None}


async def announced(hub: Hub, tenant_id: int) -> None:
    """After a purge was asked for (committed): every process refuses the tenant at once, and its
    agents' sockets re-check and close."""
    await announce_changed(hub, tenant_id)
    await announce_revoked(hub, tenant_id, None)


async def progress(hub: Hub, tenant_id: int) -> dict[str, Any]:
    async with hub.db.read() as session:
        purge = await of_tenant(session, tenant_id)
    if purge is None:
        raise NotFound(f"no purge of tenant {tenant_id}", code="purge_not_found")
    return purge_dict(purge)


class LeaseLost(Exception):
    """Another process took the purge over (this one's lease had run out)."""


@dataclass
class Runner:
    """One process working one purge: claims it, then deletes chunk after chunk under its lease."""

    hub: Hub
    purge_id: int
    tenant_id: int
    owner: str
    chunk: int
    clock: Callable[[], datetime]

    def _mine(self) -> ColumnElement[bool]:
        return (PURGES.c.id == self.purge_id) & (PURGES.c.lease_owner == self.owner)

    async def claim(self) -> dict[str, Any] | None:
        """Take the purge when nobody works it (or its worker's lease ran out). The row as taken."""
        now = self.clock()
        free = or_(PURGES.c.lease_owner.is_(None), PURGES.c.lease_owner == self.owner,
                   PURGES.c.lease_until.is_(None), PURGES.c.lease_until < now)
        async with self.hub.db.connection() as conn:
            result = await conn.execute(
                update(PURGES).where(PURGES.c.id == self.purge_id, PURGES.c.state != PurgeState.DONE.value, free)
                .values(lease_owner=self.owner, lease_until=now + timedelta(seconds=LEASE_SECONDS),
                        state=PurgeState.RUNNING.value, started_at=func.coalesce(PURGES.c.started_at, now)))
            if result.rowcount != 1:
                return None
            row = (await conn.execute(select(PURGES).where(PURGES.c.id == self.purge_id))).one()
        return dict(row._mapping)

    async def _note(self, conn: AsyncConnection, **values: Any) -> None:
        """Progress, in the chunk's transaction, under the lease: a lost lease undoes the chunk."""
        result = await conn.execute(update(PURGES).where(self._mine()).values(
            {"lease_until": self.clock() + timedelta(seconds=LEASE_SECONDS), **values}))
        if result.rowcount != 1:
            raise LeaseLost(f"purge of tenant {self.tenant_id}: another process took it over")

    async def delete_chunk(self, table: Table) -> int:
        """Delete up to ``chunk`` of the tenant's rows of ``table``; progress noted with them."""
        pk = list(table.primary_key.columns)
        some = select(*pk).where(table.c.tenant_id == self.tenant_id).limit(self.chunk)
        key = pk[0] if len(pk) == 1 else tuple_(*pk)
        async with self.hub.db.connection() as conn:
            n = (await conn.execute(delete(table).where(key.in_(some)))).rowcount or 0
            await self._note(conn, table_name=table.name, rows_deleted=PURGES.c.rows_deleted + n,
                             chunks=PURGES.c.chunks + 1)
        return n

    async def release(self) -> None:
        """Let the purge go at once (a process stopping), so the next one need not wait for the lease."""
        async with self.hub.db.connection() as conn:
            await conn.execute(update(PURGES).where(self._mine()).values(lease_owner=None, lease_until=None))

    async def leftovers(self) -> list[str]:
        """Tables that still hold rows of the tenant (written while the walk went by them)."""
        found: list[str] = []
        async with self.hub.db.read() as session:
            for table in purge_tables():
                if await session.scalar(select(exists().where(table.c.tenant_id == self.tenant_id))):
                    found.append(table.name)
        return found

    async def finish(self, rows: int) -> None:
        """The tenant row becomes a tombstone (no name, no domain: its domains were deleted last
        and are free), the purge is done and audited: one transaction."""
        now = self.clock()
        # Through the ORM: an audit row is linked into its hash chain as it is inserted (core.models).
        async with self.hub.db.session() as session:
            conn = await session.connection()
            await conn.execute(update(TENANTS).where(TENANTS.c.id == self.tenant_id).values(
                status=TenantStatus.PURGED.value, name="", domain=f"purged-{self.tenant_id}.invalid",
                suspended_by=None, routing={}, status_changed_at=now))
            await self._note(conn, state=PurgeState.DONE.value, table_name=None, finished_at=now,
                             lease_owner=None, lease_until=None)
            session.add(AuditLog(**_audit_row(SYSTEM, "tenant.purge.done", self.tenant_id, {"rows_deleted": rows},
                                              None, now)))


async def run(hub: Hub, tenant_id: int, *, chunk: int | None = None, owner: str | None = None,
              clock: Callable[[], datetime] | None = None, max_chunks: int | None = None,
              pause: float = 0.0, on_progress: Callable[[dict[str, Any]], None] | None = None) -> str:
    """Work the tenant's purge to its end (or until this process loses it). Returns the purge's
    state as this run left it: ``done``, ``busy`` (another process works it), ``stopped``
    (``max_chunks`` reached: a test's stand-in for a crash; the lease is left as a crash leaves it).
    ``pause``: seconds between chunks, to leave the database to others."""
    clock = clock or utcnow
    async with hub.db.read() as session:
        purge = await of_tenant(session, tenant_id)
    if purge is None:
        raise NotFound(f"no purge of tenant {tenant_id}", code="purge_not_found")
    if purge.state == PurgeState.DONE:
        return PurgeState.DONE.value
    runner = Runner(hub, purge.id, tenant_id, owner or _owner_name(), chunk or hub.settings.purge_chunk, clock)
    row = await runner.claim()
    if row is None:
        return "busy"
    await _remove_export_files(hub, tenant_id)
    tables = purge_tables()
    names = [t.name for t in tables]
    start = names.index(row["table_name"]) if row["table_name"] in names else 0
    rows, chunks, passes = int(row["rows_deleted"]), 0, int(row["passes"])
    logger.info("purge of tenant %s: %s from table %s", tenant_id, "resuming" if row["chunks"] else "starting",
                names[start])
    try:
        while True:
            for table in tables[start:]:
                while True:
                    if max_chunks is not None and chunks >= max_chunks:
                        logger.info("purge of tenant %s stopped after %s chunks", tenant_id, chunks)
                        return "stopped"
                    n = await runner.delete_chunk(table)
                    rows, chunks = rows + n, chunks + 1
                    if on_progress is not None:
                        on_progress({"table": table.name, "deleted": n, "rows_deleted": rows})
                    if pause:
                        await asyncio.sleep(pause)
                    else:
                        await asyncio.sleep(0)  # let the requests waiting for the database in
                    if n < runner.chunk:
                        break
            passes += 1
            left = await runner.leftovers()
            if not left:
                break
            if passes >= MAX_PASSES:
                logger.error("purge of tenant %s: rows keep appearing in %s; finishing anyway", tenant_id, left)
                break
            logger.info("purge of tenant %s: rows written meanwhile in %s; walking again", tenant_id, left)
            start = 0
            async with hub.db.connection() as conn:
                await runner._note(conn, passes=passes, table_name=names[0])
        await runner.finish(rows)
    except LeaseLost:
        logger.warning("purge of tenant %s: another process took it over; stopping here", tenant_id)
        return "busy"
    except asyncio.CancelledError:
        # The process is stopping: the chunk in flight was rolled back; hand the purge on now.
        with contextlib.suppress(Exception):
            await asyncio.shield(runner.release())
        raise
    hub.tenants.forget_tenant(tenant_id)
    await announce_changed(hub, tenant_id)
    logger.info("purge of tenant %s done: %s rows", tenant_id, rows)
    return PurgeState.DONE.value


async def _remove_export_files(hub: Hub, tenant_id: int) -> None:
    """The tenant's Excel exports are files beside the database (core.exports): they go first; their
    rows go with the walk. Run again on a resumed purge (a missing file is no error)."""
    async with hub.db.read() as session:
        names = (await session.execute(select(Export.file_name).where(
            Export.tenant_id == tenant_id, Export.file_name.is_not(None)))).scalars().all()
    for name in names:
        if name:
            with contextlib.suppress(FileNotFoundError):
                exports.file_path(hub.settings, name).unlink()


async def unfinished(hub: Hub, now: datetime) -> list[int]:
    """Purges no process works: asked for, or interrupted (their lease ran out)."""
    async with hub.db.read() as session:
        rows = await session.execute(select(TenantPurge.purged_tenant_id).where(
            TenantPurge.state != PurgeState.DONE.value,
            or_(TenantPurge.lease_until.is_(None), TenantPurge.lease_until < now)).order_by(TenantPurge.id))
        return [int(t) for t in rows.scalars()]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


async def retention_due(session: AsyncSession, now: datetime, *,
                        tenant_ids: Sequence[int] | None = None) -> list[int]:
    """Tenants whose retention ran out: 7 days after their term ended unpaid (suspended by billing,
    the contract lapsed and its balance still short of the renewal), after their contract ended,
    or after they were ended without a contract."""
    cutoff = now - timedelta(days=RETENTION_DAYS)
    due: list[int] = []
    rows = await session.execute(
        select(Tenant, BillingContract).outerjoin(BillingContract, BillingContract.tenant_id == Tenant.id)
        .where(Tenant.status.in_((TenantStatus.SUSPENDED.value, TenantStatus.ENDED.value)),
               *([Tenant.id.in_(tenant_ids)] if tenant_ids is not None else [])).order_by(Tenant.id))
    for tenant, contract in rows:
        since: datetime | None = None
        if contract is not None and contract.state == ContractState.ENDED and contract.ends_on is not None:
            since = _midnight(contract.ends_on)
        elif (contract is not None and contract.lapsed_at is not None and tenant.status == TenantStatus.SUSPENDED
              and tenant.suspended_by == "billing"):
            price = contract.next_price_per_seat_year or contract.price_per_seat_year
            if contract.balance < contract.seats * price:  # paid meanwhile: the renewal is on its way
                since = _midnight(contract.term_end)
        elif contract is None and tenant.status == TenantStatus.ENDED:
            since = tenant.status_changed_at
        if since is not None and since <= cutoff:
            due.append(tenant.id)
    return due


async def retention_round(hub: Hub, *, now: datetime | None = None,
                          tenant_ids: Sequence[int] | None = None) -> list[int]:
    """Ask for the purge of every tenant (of ``tenant_ids``, when given) whose retention ran out.
    Skipped while billing is offline (a tenant who paid may be waiting for the renewal that billing
    would make)."""
    now = now or hub.breakers.clock()
    if (offline := await hub.breakers.offline("billing")) is not None:
        logger.info("retention skipped: %s", offline.message)
        return []
    async with hub.db.read() as session:
        due = await retention_due(session, now, tenant_ids=tenant_ids)
    asked: list[int] = []
    for tenant_id in due:
        async with hub.db.session() as session:
            await request(session, tenant_id, confirm=None, actor=SYSTEM, reason="retention", now=now)
        await announced(hub, tenant_id)
        asked.append(tenant_id)
    if asked:
        logger.info("retention: purges asked for tenants %s", asked)
    return asked


async def purge_round(hub: Hub, *, now: datetime | None = None, clock: Callable[[], datetime] | None = None) -> int:
    """The periodic task: retention, then every purge that waits, one after the other. The number
    of purges finished."""
    clock = clock or utcnow
    await retention_round(hub, now=now)
    done = 0
    for tenant_id in await unfinished(hub, now or clock()):
        if await run(hub, tenant_id, clock=clock) == PurgeState.DONE:
            done += 1
    return done
