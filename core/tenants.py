"""A tenant's life, as the operator runs it: created with its domains (and, when it is billed, its
contract and first owner), domains added and removed, suspended, resumed and ended.

Every change is audited with the operator's actor, the address and what changed (before and
after), in the change's own transaction. Operator actions are written with no tenant id
(``target_type="tenant"``, ``target_id``: the tenant), so the operator's trail outlives a tenant's
purge. After a change commits, the caller announces it (:func:`core.tenancy.announce_changed`), so
every process serves the new domains and status at once.

Statuses: ``active``; ``suspended`` (its agents are refused, what customers send is still taken
in; ``suspended_by`` says whether the operator or billing did it, and billing resumes only its own);
``ended`` (everything is refused; the data waits for its purge); ``purging`` (its data is being
deleted, core.purge: everything is refused, and no change of status is taken any more);
``purged`` (a tombstone without name or domains, so its id is never reused).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core import billing
from core.audit import audit
from core.auth import announce_revoked
from core.billing import Actor
from core.breakers import SubsystemOffline
from core.errors import Conflict, InvalidInput, NotFound, PaymentRequired
from core.models import Agent, BillingContract, ContractState, Role, Tenant, TenantDomain, TenantStatus, utcnow
from core.seats import NewAgent, add_agents, clean_domain
from core.tenancy import announce_changed

if TYPE_CHECKING:
    from core.hub import Hub

logger = logging.getLogger(__name__)
MAX_DOMAINS = 20


@dataclass(frozen=True)
class Owner:
    email: str
    name: str
    password: str


@dataclass(frozen=True)
class Terms:
    """A billed tenant's contract: price per seat per year (minor units), currency, first day."""

    price_per_seat_year: int
    currency: str
    term_start: date


def operator_audit(session: AsyncSession, actor: Actor, action: str, tenant_id: int | None,
                   details: dict[str, Any], ip: str | None) -> None:
    audit(session, tenant_id=None, actor_type=actor.type, actor_id=actor.id, action=action,
          target_type="tenant" if tenant_id is not None else None, target_id=tenant_id, details=details, ip=ip)


def _domains(raw: list[str]) -> list[str]:
    domains = list(dict.fromkeys(clean_domain(d) for d in raw))
    if not domains:
        raise InvalidInput("a tenant needs at least one domain", code="invalid_domain")
    if len(domains) > MAX_DOMAINS:
        raise InvalidInput(f"a tenant has at most {MAX_DOMAINS} domains", code="too_many_domains")
    return domains


async def _claim_domains(session: AsyncSession, tenant_id: int, domains: list[str]) -> None:
    taken = list((await session.execute(select(TenantDomain.domain).where(TenantDomain.domain.in_(domains))))
                 .scalars())
    if taken:
        raise Conflict(f"taken by another tenant: {', '.join(sorted(taken))}", code="domain_taken",
                       details={"domains": sorted(taken)})
    session.add_all([TenantDomain(domain=d, tenant_id=tenant_id) for d in domains])
    try:
        await session.flush()
    except IntegrityError:  # a concurrent claim of the same domain
        raise Conflict("a domain was just taken by another tenant", code="domain_taken") from None


# The command line's actor (``channelhub tenant create``): the operator, signed in to the machine.
CLI = Actor("operator")


async def create(
    session: AsyncSession, *, name: str, domains: list[str], now: datetime | None = None, actor: Actor = CLI,
    ip: str | None = None, terms: Terms | None = None, top_up: int | None = None, owner: Owner | None = None,
) -> Tenant:
    """A new tenant served on ``domains`` (the first is its primary one). With ``terms`` it is
    billed: its contract opens (``top_up`` paid in) and the owner's seat is charged from the
    balance, or nothing is created (402). Without, it is unbilled (a self-hosted install)."""
    now = now or utcnow()
    name = name.strip()
    if not name:
        raise InvalidInput("a tenant needs a name", code="invalid_name")
    domains = _domains(domains)
    if top_up is not None and terms is None:
        raise InvalidInput("a top-up needs a contract: give the price and term too", code="no_contract")
    tenant = Tenant(name=name, domain=domains[0], status=TenantStatus.ACTIVE.value, status_changed_at=now)
    session.add(tenant)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"domain {domains[0]} is taken", code="domain_taken") from None
    await _claim_domains(session, tenant.id, domains)
    details: dict[str, Any] = {"name": name, "domains": domains}
    if terms is not None:
        await billing.open_contract(session, tenant.id, price_per_seat_year=terms.price_per_seat_year,
                                    currency=terms.currency, term_start=terms.term_start, now=now, actor=actor)
        details["contract"] = {"price_per_seat_year": terms.price_per_seat_year, "currency": terms.currency,
                               "term_start": terms.term_start.isoformat()}
        if top_up:
            await billing.top_up(session, tenant.id, top_up, now=now, actor=actor, reference="opening balance")
            details["top_up"] = top_up
    if owner is not None:
        # A billed tenant pays for its owner's seat from the top-up (402 and nothing made when short).
        [made], _ = await add_agents(session, tenant.id, [NewAgent(owner.email, owner.name, owner.password,
                                                                   Role.OWNER)], actor=actor, ip=ip, now=now)
        details["owner"] = {"id": made["id"], "email": made["email"]}
    operator_audit(session, actor, "tenant.create", tenant.id, details, ip)
    return tenant


async def get(session: AsyncSession, tenant_id: int, *, lock: bool = False) -> Tenant:
    stmt = select(Tenant).where(Tenant.id == tenant_id)
    if lock:
        stmt = stmt.with_for_update()
    tenant = (await session.execute(stmt)).scalar_one_or_none()
    if tenant is None:
        raise NotFound(f"tenant {tenant_id} not found", code="tenant_not_found")
    return tenant


async def domains_of(session: AsyncSession, tenant_id: int) -> list[str]:
    stmt = select(TenantDomain.domain).where(TenantDomain.tenant_id == tenant_id).order_by(TenantDomain.created_at,
                                                                                             TenantDomain.domain)
    return list((await session.execute(stmt)).scalars())


async def describe(session: AsyncSession, tenant: Tenant) -> dict[str, Any]:
    """The tenant as the operator sees it: status, domains, seats and its contract in short."""
    contract = await billing.contract_of(session, tenant.id)
    seats_in_use = await billing.seats_in_use(session, tenant.id)
    return {
        "id": tenant.id, "name": tenant.name, "domain": tenant.domain, "domains": await domains_of(session, tenant.id),
        "status": tenant.status, "suspended_by": tenant.suspended_by,
        "status_changed_at": tenant.status_changed_at.isoformat() if tenant.status_changed_at else None,
        "created_at": tenant.created_at.isoformat(), "seats_in_use": seats_in_use,
        "contract": contract_dict(contract) if contract is not None else None,
    }


def contract_dict(contract: BillingContract) -> dict[str, Any]:
    return {
        "price_per_seat_year": contract.price_per_seat_year, "currency": contract.currency,
        "term_start": contract.term_start.isoformat(), "term_end": contract.term_end.isoformat(),
        "seats": contract.seats, "balance": contract.balance, "state": contract.state,
        "next_price_per_seat_year": contract.next_price_per_seat_year,
        "ends_on": contract.ends_on.isoformat() if contract.ends_on else None,
        "lapsed": contract.lapsed_at is not None,
    }


async def listing(session: AsyncSession, *, status: str | None, after: int, limit: int) -> list[dict[str, Any]]:
    """Tenants by id after ``after``, with their domains and seats, in a few queries."""
    stmt = select(Tenant).where(Tenant.id > after).order_by(Tenant.id).limit(limit)
    if status is not None:
        stmt = stmt.where(Tenant.status == status)
    tenants = list((await session.execute(stmt)).scalars())
    ids = [t.id for t in tenants]
    domains: dict[int, list[str]] = {}
    for tid, domain in await session.execute(select(TenantDomain.tenant_id, TenantDomain.domain)
                                             .where(TenantDomain.tenant_id.in_(ids))
                                             .order_by(TenantDomain.created_at, TenantDomain.domain)):
        domains.setdefault(tid, []).append(domain)
    seats: dict[int, int] = {tid: n for tid, n in await session.execute(select(Agent.tenant_id, func.count()).where(
        Agent.tenant_id.in_(ids), Agent.active.is_(True)).group_by(Agent.tenant_id))}
    contracts = {c.tenant_id: c for c in (await session.execute(
        select(BillingContract).where(BillingContract.tenant_id.in_(ids)))).scalars()}
    return [{
        "id": t.id, "name": t.name, "domain": t.domain, "domains": domains.get(t.id, []), "status": t.status,
        "suspended_by": t.suspended_by, "created_at": t.created_at.isoformat(), "seats_in_use": seats.get(t.id, 0),
        "contract": contract_dict(contracts[t.id]) if t.id in contracts else None,
    } for t in tenants]


async def add_domains(session: AsyncSession, tenant_id: int, raw: list[str], *, actor: Actor,
                      ip: str | None) -> list[str]:
    tenant = await get(session, tenant_id, lock=True)
    before = await domains_of(session, tenant.id)
    new = [d for d in _domains(raw) if d not in before]
    if len(before) + len(new) > MAX_DOMAINS:
        raise InvalidInput(f"a tenant has at most {MAX_DOMAINS} domains", code="too_many_domains")
    await _claim_domains(session, tenant.id, new)
    after = await domains_of(session, tenant.id)
    operator_audit(session, actor, "tenant.domains.add", tenant.id, {"before": before, "after": after}, ip)
    return after


async def remove_domain(session: AsyncSession, tenant_id: int, raw: str, *, actor: Actor,
                        ip: str | None) -> list[str]:
    """Stop serving the tenant on ``raw``. Its primary domain goes last: name another one primary
    first (:func:`set_primary`)."""
    tenant = await get(session, tenant_id, lock=True)
    domain = clean_domain(raw)
    before = await domains_of(session, tenant.id)
    if domain not in before:
        raise NotFound(f"{domain} is not one of the tenant's domains", code="domain_not_found")
    if domain == tenant.domain:
        raise Conflict(f"{domain} is the tenant's primary domain: make another one primary first",
                       code="primary_domain")
    row = (await session.execute(select(TenantDomain).where(TenantDomain.domain == domain))).scalar_one()
    await session.delete(row)
    await session.flush()
    after = await domains_of(session, tenant.id)
    operator_audit(session, actor, "tenant.domains.remove", tenant.id, {"before": before, "after": after}, ip)
    return after


async def update(session: AsyncSession, tenant_id: int, *, name: str | None, primary_domain: str | None,
                 actor: Actor, ip: str | None) -> Tenant:
    tenant = await get(session, tenant_id, lock=True)
    before = {"name": tenant.name, "domain": tenant.domain}
    if name is not None:
        if not name.strip():
            raise InvalidInput("a tenant needs a name", code="invalid_name")
        tenant.name = name.strip()
    if primary_domain is not None:
        domain = clean_domain(primary_domain)
        if domain not in await domains_of(session, tenant.id):
            raise InvalidInput(f"{domain} is not one of the tenant's domains: add it first", code="domain_not_found")
        tenant.domain = domain
    after = {"name": tenant.name, "domain": tenant.domain}
    if after != before:
        await session.flush()
        operator_audit(session, actor, "tenant.update", tenant.id, {"before": before, "after": after}, ip)
    return tenant


def _not_purging(tenant: Tenant) -> None:
    if tenant.status in (TenantStatus.PURGING, TenantStatus.PURGED):
        raise Conflict("the tenant's data is deleted or being deleted", code="tenant_purged")


async def suspend(session: AsyncSession, tenant_id: int, *, now: datetime, actor: Actor, ip: str | None,
                  reason: str | None = None) -> Tenant:
    tenant = await get(session, tenant_id, lock=True)
    _not_purging(tenant)
    if tenant.status == TenantStatus.ENDED:
        raise Conflict("the tenant has ended", code="tenant_ended")
    before = {"status": tenant.status, "suspended_by": tenant.suspended_by}
    tenant.status, tenant.suspended_by, tenant.status_changed_at = TenantStatus.SUSPENDED.value, "operator", now
    operator_audit(session, actor, "tenant.suspend", tenant.id,
                   {"before": before, "after": {"status": tenant.status, "suspended_by": "operator"},
                    "reason": reason}, ip)
    return tenant


async def resume(session: AsyncSession, tenant_id: int, *, now: datetime, actor: Actor, ip: str | None) -> Tenant:
    """Serve a suspended tenant again. One whose term ran out unpaid stays suspended (by billing)
    until it renews: resuming it is refused with 402, so the operator sees why."""
    tenant = await get(session, tenant_id, lock=True)
    _not_purging(tenant)
    if tenant.status == TenantStatus.ENDED:
        raise Conflict("the tenant has ended", code="tenant_ended")
    if tenant.status == TenantStatus.ACTIVE:
        return tenant
    contract = await billing.contract_of(session, tenant.id)
    if contract is not None and contract.state == ContractState.ENDED:
        raise Conflict("the tenant's contract has ended: end the tenant, or open a new contract",
                       code="contract_ended")
    if contract is not None and contract.lapsed_at is not None:
        raise PaymentRequired("the term ran out unpaid: top up the balance, and the renewal resumes the tenant",
                              code="term_lapsed", details={"balance": contract.balance,
                                                           "required": contract.seats * contract.price_per_seat_year})
    before = {"status": tenant.status, "suspended_by": tenant.suspended_by}
    tenant.status, tenant.suspended_by, tenant.status_changed_at = TenantStatus.ACTIVE.value, None, now
    operator_audit(session, actor, "tenant.resume", tenant.id,
                   {"before": before, "after": {"status": tenant.status}}, ip)
    return tenant


async def end(session: AsyncSession, tenant_id: int, *, now: datetime, actor: Actor, ip: str | None) -> Tenant:
    """End the tenant: nothing is served on its domains any more, and its data waits for the purge.
    A running contract must end first (notice, then its end refunds the unused days)."""
    tenant = await get(session, tenant_id, lock=True)
    _not_purging(tenant)
    if tenant.status == TenantStatus.ENDED:
        return tenant
    contract = await billing.contract_of(session, tenant.id)
    if contract is not None and contract.state != ContractState.ENDED:
        raise Conflict("the contract is still running: give notice, and end the tenant once the contract has ended",
                       code="contract_running", details={"state": contract.state,
                                                         "ends_on": contract.ends_on.isoformat()
                                                         if contract.ends_on else None})
    before = {"status": tenant.status}
    tenant.status, tenant.suspended_by, tenant.status_changed_at = TenantStatus.ENDED.value, None, now
    operator_audit(session, actor, "tenant.end", tenant.id, {"before": before, "after": {"status": "ended"}}, ip)
    return tenant


class RoundFailed(Exception):
    """Every renewal the billing round tried failed: billing itself is failing (its tables, the
    database), which the breaker counts (core.breakers)."""


# Terms one tenant may catch up in one round (billing offline for years is not expected; the next
# round goes on where this one stopped).
MAX_TERMS_PER_ROUND = 5


async def run_due(hub: Hub, *, now: datetime | None = None) -> dict[str, int]:
    """What is due on every contract today (core.billing.renew): renewals charged, lapsed tenants
    suspended, ended contracts refunded. Each tenant in a transaction of its own; a tenant whose
    status changed is announced, so every process serves (or refuses) it at once. Safe to run in
    several processes at once: each renewal takes the contract's lock and does nothing twice.

    Catching up: a renewal is decided by the dates alone (a term whose end has come is charged
    once, and the term moves on under the contract's lock), so a round after billing was offline
    charges every renewal that fell due meanwhile, each exactly once. A round in which renewals
    were tried and every one failed raises :class:`RoundFailed`: billing is failing, not a tenant."""
    now = now or utcnow()
    async with hub.db.read() as session:
        due = await billing.due(session, now)
    outcomes: dict[str, int] = {}
    last_error: Exception | None = None
    for tenant_id in due:
        changed = False
        try:
            for _ in range(MAX_TERMS_PER_ROUND):
                async with hub.db.session() as session:
                    status_before = (await get(session, tenant_id)).status
                    renewal = await billing.renew(session, tenant_id, now=now)
                    status_after = (await get(session, tenant_id)).status
                    still_due = renewal.outcome == "renewed" and tenant_id in await billing.due(session, now)
                outcomes[renewal.outcome] = outcomes.get(renewal.outcome, 0) + 1
                changed = changed or status_after != status_before
                if not still_due:
                    break
        except Exception as exc:
            logger.exception("billing: the renewal of tenant %s failed; the next round tries again", tenant_id)
            outcomes["failed"] = outcomes.get("failed", 0) + 1
            last_error = exc
        if changed:
            await announce_changed(hub, tenant_id)
            await announce_revoked(hub, tenant_id, None)
    if due:
        logger.info("billing round: %s", outcomes)
    if last_error is not None and outcomes["failed"] == sum(outcomes.values()):
        raise RoundFailed(f"all {outcomes['failed']} renewals due failed: {last_error}") from last_error
    return outcomes


async def billing_round(hub: Hub, *, now: datetime | None = None) -> dict[str, int] | None:
    """The billing round as the periodic task runs it: through billing's breaker (core.breakers).
    None when billing is offline (switched off, or open and not yet due for its trial): the round
    does not run at all, and catches up once billing is back."""
    now = now or hub.breakers.clock()
    try:
        return await hub.breakers.call("billing", lambda: run_due(hub, now=now), now=now)
    except SubsystemOffline as exc:
        logger.info("billing round skipped: %s", exc.message)
        return None
