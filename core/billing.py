"""Per-seat billing: a tenant's contract, its append-only ledger, proration by the day, renewal and
ending (PRODUCT.md §4, issue #12). The rules, in short (docs/architecture.md, "Billing: the ledger
and proration", says why):

- Money is ``int`` minor units (fen, cents) everywhere; a float is refused at the door.
- The fee is seats x price per seat per year, paid in advance from a prepaid balance. The balance
  is the sum of the tenant's ledger entries; ``BillingContract.balance`` caches it and changes
  only in the transaction that appends an entry, under the contract row's lock.
- A term is ``[term_start, term_end)`` in UTC dates, one year long (365 or 366 days).
- Adding N seats on day d charges ``prorate(N, price, days from d to the term's end, d included,
  days in the term)``; removing N seats on day d credits the days after d (d itself is used).
- ``prorate`` rounds half up to the minor unit, the same for charges and credits, so a charge
  and a credit for the same seats and days cancel exactly.
- Every function takes the time as ``now`` (timezone-aware): nothing here reads the clock.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import BigInteger, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import audit
from core.errors import Conflict, InvalidInput, NotFound, PaymentRequired
from core.models import Agent, BillingContract, ContractState, LedgerEntry, LedgerKind, Tenant, TenantStatus

logger = logging.getLogger(__name__)

# Ending a contract needs this many days' notice (PRODUCT.md §4).
NOTICE_DAYS = 30
# Bounds on what comes in, so that seats x price x days stays far inside a signed 64-bit column
# (10^5 x 10^12 x 366 < 2^63): 10^12 minor units is ten billion yuan per seat per year.
MAX_SEATS = 100_000
MAX_PRICE = 10**12
MAX_AMOUNT = 10**15
MINUTES_PER_DAY = 24 * 60

_CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class Actor:
    """Who or what caused a billing change: ``operator``, ``agent`` or ``system``, with an id."""

    type: str
    id: int | None = None


SYSTEM = Actor("system")


@dataclass(frozen=True)
class Renewal:
    """What :func:`renew` did.

    ``not_due``: the term has not run out. ``renewed``: the next term was charged (``entry``).
    ``suspended``: the balance is ``shortfall`` short of the next term; the tenant is suspended.
    ``ended``: the contract had ended, or ended now (``entry`` is its refund)."""

    outcome: Literal["not_due", "renewed", "suspended", "ended"]
    entry: LedgerEntry | None = None
    shortfall: int = 0


# -- The arithmetic (pure) ------------------------------------------------------------------------


def prorate(seats: int, price_per_seat_year: int, days: int, term_days: int) -> int:
    """``seats x price x days / term_days``, rounded half up to the minor unit.

    Integer arithmetic only: ``(2n + d) // 2d`` is ``n / d`` rounded half up for n, d >= 0. The same
    rounding for charges and credits makes a charge and a credit of the same seats and days sum to
    exactly 0; as ``days <= term_days``, the result never exceeds ``seats x price``. The unit of
    ``days`` and ``term_days`` only has to agree (compensation uses minutes)."""
    for name, value in (("seats", seats), ("price", price_per_seat_year), ("days", days), ("term", term_days)):
        if type(value) is not int:
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if seats < 0 or price_per_seat_year < 0 or term_days <= 0 or not 0 <= days <= term_days:
        raise ValueError(f"cannot prorate {seats} seats at {price_per_seat_year} for {days}/{term_days} days")
    numerator = seats * price_per_seat_year * days
    return (2 * numerator + term_days) // (2 * term_days)


def one_year_after(day: date) -> date:
    """The same day a year later; a term that begins on 29 February ends on 28 February."""
    try:
        return day.replace(year=day.year + 1)
    except ValueError:
        return date(day.year + 1, 2, 28)


def term_days(contract: BillingContract) -> int:
    """Days in the contract's term, from the real dates (366 when it holds a 29 February)."""
    return (contract.term_end - contract.term_start).days


def days_from(contract: BillingContract, day: date) -> int:
    """Days of the term from ``day`` (included) to its end: the whole term before it begins, 0 after."""
    return max((contract.term_end - max(day, contract.term_start)).days, 0)


def _today(now: datetime) -> date:
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("billing needs a timezone-aware time")
    return now.astimezone(UTC).date()


def _whole(name: str, value: object, *, low: int, high: int) -> int:
    # type() rather than isinstance(): bool is an int, and neither it nor a float is money.
    if type(value) is not int:
        raise InvalidInput(f"{name} must be a whole number, got {type(value).__name__}", code="invalid_amount")
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}", code="invalid_amount")
    return value


def _day(name: str, value: object) -> date:
    # A datetime is a date too; refusing it keeps a time zone from shifting the day silently.
    if not isinstance(value, date) or isinstance(value, datetime):
        raise InvalidInput(f"{name} must be a date", code="invalid_date")
    return value


# -- Storage ---------------------------------------------------------------------------------------


async def _locked_contract(session: AsyncSession, tenant_id: int) -> BillingContract:
    """The tenant's contract, locked for the rest of the transaction.

    Every change of the balance goes through here first, so they happen one after the other and
    each checks the balance it will change. On PostgreSQL this is ``SELECT ... FOR UPDATE``; SQLite
    drops the clause, but its writing sessions hold the database's write lock from
    ``BEGIN IMMEDIATE`` on (core.db), which serialises them as well."""
    stmt = (select(BillingContract).where(BillingContract.tenant_id == tenant_id)
            .with_for_update().execution_options(populate_existing=True))
    contract = (await session.execute(stmt)).scalar_one_or_none()
    if contract is None:
        raise NotFound(f"tenant {tenant_id} has no contract", code="no_contract")
    return contract


def _append(
    session: AsyncSession,
    contract: BillingContract,
    *,
    kind: LedgerKind,
    amount: int,
    seats: int,
    days: int,
    now: datetime,
    actor: Actor,
    detail: dict[str, Any],
) -> LedgerEntry:
    """Append one entry and move the cached balance with it (the contract must be locked)."""
    balance = contract.balance + amount
    if balance < 0:
        # The callers check first and raise with the details; this is the last guard in code (the
        # database's check constraint is the one after it).
        raise PaymentRequired(f"the balance {contract.balance} cannot pay {-amount}",
                              details={"balance": contract.balance, "required": -amount})
    contract.balance = balance
    contract.updated_at = now
    if seats:
        # What the amount was reckoned from, for its invoice: the price and the term's length then.
        detail = {**detail, "price_per_seat_year": contract.price_per_seat_year, "term_days": term_days(contract)}
    entry = LedgerEntry(
        tenant_id=contract.tenant_id, contract_id=contract.id, kind=kind.value, amount=amount,
        currency=contract.currency, seats=seats, days=days, balance_after=balance,
        actor_type=actor.type, actor_id=actor.id, detail=detail, created_at=now,
    )
    session.add(entry)
    return entry


def _audit(session: AsyncSession, contract: BillingContract, actor: Actor, action: str,
           details: dict[str, Any]) -> None:
    audit(session, tenant_id=contract.tenant_id, actor_type=actor.type, actor_id=actor.id, action=action,
          target_type="billing_contract", target_id=contract.id, details=details)


def _require_running(contract: BillingContract, today: date, *, term_over_ok: bool = False) -> None:
    if contract.state == ContractState.ENDED or (
        contract.state == ContractState.ENDING and contract.ends_on is not None and today >= contract.ends_on
    ):
        raise Conflict("the contract has ended", code="contract_ended")
    if today >= contract.term_end and not term_over_ok:
        raise Conflict(f"the term ended on {contract.term_end.isoformat()}: renew it first", code="term_over")


# -- Reading ---------------------------------------------------------------------------------------


async def contract_of(session: AsyncSession, tenant_id: int) -> BillingContract | None:
    stmt = select(BillingContract).where(BillingContract.tenant_id == tenant_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def balance(session: AsyncSession, tenant_id: int) -> int:
    """The tenant's balance: the sum of its ledger entries (0 without any)."""
    # Cast: PostgreSQL's sum of a bigint is numeric, which asyncpg hands back as a Decimal.
    total = cast(func.coalesce(func.sum(LedgerEntry.amount), 0), BigInteger)
    value = (await session.execute(select(total).where(LedgerEntry.tenant_id == tenant_id))).scalar_one()
    return int(value)


async def ledger(session: AsyncSession, tenant_id: int, *, after: int = 0,
                 limit: int | None = None) -> list[LedgerEntry]:
    """The tenant's ledger, oldest first (from the entry after id ``after``, ``limit`` of them)."""
    stmt = (select(LedgerEntry).where(LedgerEntry.tenant_id == tenant_id, LedgerEntry.id > after)
            .order_by(LedgerEntry.id))
    if limit is not None:
        stmt = stmt.limit(limit)
    return list((await session.execute(stmt)).scalars())


async def seats_paid(session: AsyncSession, tenant_id: int) -> int:
    """Seats the tenant has paid for: the most agents it may have (0 without a running contract)."""
    contract = await contract_of(session, tenant_id)
    if contract is None or contract.state == ContractState.ENDED:
        return 0
    return contract.seats


async def seats_in_use(session: AsyncSession, tenant_id: int) -> int:
    """Active agents: each takes a seat."""
    stmt = select(func.count()).select_from(Agent).where(Agent.tenant_id == tenant_id, Agent.active.is_(True))
    return int((await session.execute(stmt)).scalar_one())


# -- Changes ---------------------------------------------------------------------------------------


async def open_contract(
    session: AsyncSession,
    tenant_id: int,
    *,
    price_per_seat_year: int,
    currency: str,
    term_start: date,
    now: datetime,
    actor: Actor,
) -> BillingContract:
    """The tenant's contract, with no seats and a zero balance, for one year from ``term_start``."""
    _today(now)
    price = _whole("price_per_seat_year", price_per_seat_year, low=0, high=MAX_PRICE)
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise InvalidInput(f"{currency!r} is not an ISO 4217 currency code", code="invalid_currency")
    start = _day("term_start", term_start)
    if (await session.execute(select(Tenant.id).where(Tenant.id == tenant_id))).first() is None:
        raise NotFound(f"tenant {tenant_id} not found", code="tenant_not_found")
    if await contract_of(session, tenant_id) is not None:
        raise Conflict(f"tenant {tenant_id} has a contract", code="contract_exists")
    contract = BillingContract(
        tenant_id=tenant_id, price_per_seat_year=price, currency=currency, term_start=start,
        term_end=one_year_after(start), seats=0, balance=0, state=ContractState.ACTIVE.value,
        created_at=now, updated_at=now,
    )
    session.add(contract)
    # A second contract racing this one fails on the unique tenant_id and rolls back whole.
    await session.flush()
    _audit(session, contract, actor, "billing.contract.open",
           {"price_per_seat_year": price, "currency": currency, "term_start": start.isoformat(),
            "term_end": contract.term_end.isoformat()})
    return contract


async def top_up(
    session: AsyncSession, tenant_id: int, amount: int, *, now: datetime, actor: Actor, reference: str | None = None,
) -> LedgerEntry:
    """Money paid into the tenant's balance (``reference``: the payment's, for the statement)."""
    _today(now)
    amount = _whole("amount", amount, low=1, high=MAX_AMOUNT)
    contract = await _locked_contract(session, tenant_id)
    entry = _append(session, contract, kind=LedgerKind.TOP_UP, amount=amount, seats=0, days=0, now=now,
                    actor=actor, detail={"reference": reference} if reference else {})
    _audit(session, contract, actor, "billing.top_up", {"amount": amount, "reference": reference})
    return entry


async def charge_for_seats(
    session: AsyncSession, tenant_id: int, count: int, *, now: datetime, actor: Actor,
) -> LedgerEntry:
    """Pay for ``count`` more seats for the rest of the term, from today (included) to its end.

    Raises :class:`PaymentRequired` (402, ``insufficient_balance``) when the balance cannot pay;
    then nothing has changed. The seat-adding code calls this (or :func:`ensure_seats`) in the
    transaction that adds the agents, so both commit or neither does."""
    today = _today(now)
    count = _whole("count", count, low=1, high=MAX_SEATS)
    contract = await _locked_contract(session, tenant_id)
    _require_running(contract, today)
    if contract.seats + count > MAX_SEATS:
        raise InvalidInput(f"a contract has at most {MAX_SEATS} seats", code="too_many_seats")
    days = days_from(contract, today)
    cost = prorate(count, contract.price_per_seat_year, days, term_days(contract))
    if cost > contract.balance:
        raise PaymentRequired(
            f"{count} seat(s) for the rest of the term cost {cost} {contract.currency}; the balance is "
            f"{contract.balance}", details={"required": cost, "balance": contract.balance,
                                            "currency": contract.currency},
        )
    contract.seats += count
    entry = _append(session, contract, kind=LedgerKind.CHARGE, amount=-cost, seats=count, days=days, now=now,
                    actor=actor, detail={"reason": "seats_added", "from": max(today, contract.term_start).isoformat(),
                                         "to": contract.term_end.isoformat()})
    _audit(session, contract, actor, "billing.seats.charge",
           {"seats": count, "days": days, "amount": -cost, "seats_paid": contract.seats})
    return entry


async def ensure_seats(
    session: AsyncSession, tenant_id: int, adding: int, *, now: datetime, actor: Actor,
) -> LedgerEntry | None:
    """Make room for ``adding`` more active agents: charge for the seats the paid ones lack.

    Locks the contract before counting, so two batches of agents added at once are counted one
    after the other. Returns the charge, or None when the seats paid already suffice."""
    adding = _whole("adding", adding, low=0, high=MAX_SEATS)
    contract = await _locked_contract(session, tenant_id)
    missing = await seats_in_use(session, tenant_id) + adding - contract.seats
    if missing <= 0:
        return None
    return await charge_for_seats(session, tenant_id, missing, now=now, actor=actor)


async def credit_for_seats(
    session: AsyncSession, tenant_id: int, count: int, *, now: datetime, actor: Actor,
) -> LedgerEntry:
    """Give up ``count`` paid seats: the days after today (today is used) go back to the balance.

    The seats must be free: deactivate or remove their agents first, in the same transaction.
    Allowed after the term ran out too (crediting nothing), so a lapsed tenant can keep fewer
    seats before it renews."""
    today = _today(now)
    count = _whole("count", count, low=1, high=MAX_SEATS)
    contract = await _locked_contract(session, tenant_id)
    _require_running(contract, today, term_over_ok=True)
    if count > contract.seats:
        raise Conflict(f"only {contract.seats} seat(s) are paid for", code="not_enough_seats")
    in_use = await seats_in_use(session, tenant_id)
    if contract.seats - count < in_use:
        raise Conflict(f"{in_use} agent(s) use the seats: remove agents first", code="seats_in_use",
                       details={"seats_paid": contract.seats, "seats_in_use": in_use})
    days = days_from(contract, today + timedelta(days=1))
    credit = prorate(count, contract.price_per_seat_year, days, term_days(contract))
    contract.seats -= count
    entry = _append(session, contract, kind=LedgerKind.CREDIT, amount=credit, seats=count, days=days, now=now,
                    actor=actor, detail={"reason": "seats_removed", "to": contract.term_end.isoformat()})
    _audit(session, contract, actor, "billing.seats.credit",
           {"seats": count, "days": days, "amount": credit, "seats_paid": contract.seats})
    return entry


async def compensate(
    session: AsyncSession, tenant_id: int, *, minutes: int, now: datetime, actor: Actor, note: str | None = None,
    month: str | None = None,
) -> LedgerEntry:
    """Service time credited for downtime: what the paid seats cost for ``minutes`` of the term,
    prorated by the minute (same rounding as seats). ``month`` (YYYY-MM): the month whose
    downtime it compensates (core.availability), kept in the entry's detail."""
    _today(now)
    contract = await _locked_contract(session, tenant_id)
    whole = term_days(contract) * MINUTES_PER_DAY
    minutes = _whole("minutes", minutes, low=1, high=whole)
    amount = prorate(contract.seats, contract.price_per_seat_year, minutes, whole)
    detail: dict[str, Any] = {"minutes": minutes}
    if month:
        detail["month"] = month
    if note:
        detail["note"] = note
    entry = _append(session, contract, kind=LedgerKind.COMPENSATION, amount=amount, seats=contract.seats, days=0,
                    now=now, actor=actor, detail=detail)
    _audit(session, contract, actor, "billing.compensation", {"minutes": minutes, "amount": amount})
    return entry


async def reprice(
    session: AsyncSession, tenant_id: int, price_per_seat_year: int, *, now: datetime, actor: Actor,
) -> BillingContract:
    """Set the price per seat per year from the next renewal on. The running term was paid in
    advance at its price and stays so; so do seats added in it (prorated at the running price)."""
    _today(now)
    price = _whole("price_per_seat_year", price_per_seat_year, low=0, high=MAX_PRICE)
    contract = await _locked_contract(session, tenant_id)
    if contract.state == ContractState.ENDED:
        raise Conflict("the contract has ended", code="contract_ended")
    before = contract.next_price_per_seat_year
    contract.next_price_per_seat_year = None if price == contract.price_per_seat_year else price
    contract.updated_at = now
    _audit(session, contract, actor, "billing.contract.reprice",
           {"price_per_seat_year": contract.price_per_seat_year, "next_before": before,
            "next_price_per_seat_year": contract.next_price_per_seat_year,
            "from": contract.term_end.isoformat()})
    return contract


async def give_notice(
    session: AsyncSession, tenant_id: int, *, ends_on: date, now: datetime, actor: Actor,
) -> BillingContract:
    """End the contract at 00:00 UTC of ``ends_on``: at least NOTICE_DAYS days from today, and no
    later than the term's end (then it is not renewed). :func:`end_contract` refunds the rest then."""
    today = _today(now)
    ends_on = _day("ends_on", ends_on)
    contract = await _locked_contract(session, tenant_id)
    if contract.state != ContractState.ACTIVE:
        raise Conflict(f"the contract is {contract.state}", code=f"contract_{contract.state}")
    _require_running(contract, today)
    if (ends_on - today).days < NOTICE_DAYS:
        earliest = today + timedelta(days=NOTICE_DAYS)
        raise InvalidInput(f"ending needs {NOTICE_DAYS} days' notice: {earliest.isoformat()} at the earliest",
                           code="notice_too_short", details={"earliest": earliest.isoformat()})
    if ends_on > contract.term_end:
        raise InvalidInput(f"the term ends on {contract.term_end.isoformat()}", code="ends_after_term",
                           details={"term_end": contract.term_end.isoformat()})
    contract.state = ContractState.ENDING.value
    contract.notice_given_at = now
    contract.ends_on = ends_on
    contract.updated_at = now
    _audit(session, contract, actor, "billing.contract.notice", {"ends_on": ends_on.isoformat()})
    return contract


async def end_contract(
    session: AsyncSession, tenant_id: int, *, now: datetime, actor: Actor = SYSTEM,
) -> LedgerEntry | None:
    """At (or after) the effective end: refund the prepaid days after it for the seats paid, end
    the contract and suspend the tenant. Returns the refund, or None when the end is not due."""
    today = _today(now)
    contract = await _locked_contract(session, tenant_id)
    if contract.state != ContractState.ENDING or contract.ends_on is None or today < contract.ends_on:
        return None
    return await _end(session, contract, now=now, actor=actor)


async def _end(session: AsyncSession, contract: BillingContract, *, now: datetime, actor: Actor) -> LedgerEntry:
    assert contract.ends_on is not None
    days = days_from(contract, contract.ends_on)
    refund = prorate(contract.seats, contract.price_per_seat_year, days, term_days(contract))
    entry = _append(session, contract, kind=LedgerKind.REFUND, amount=refund, seats=contract.seats, days=days,
                    now=now, actor=actor, detail={"reason": "contract_ended", "from": contract.ends_on.isoformat(),
                                                  "to": contract.term_end.isoformat()})
    contract.state = ContractState.ENDED.value
    contract.ended_at = now
    contract.seats = 0
    await _set_tenant_status(session, contract.tenant_id, TenantStatus.SUSPENDED, now=now)
    _audit(session, contract, actor, "billing.contract.end", {"refund": refund, "days": days})
    logger.info("contract of tenant %s ended, refund %s %s", contract.tenant_id, refund, contract.currency)
    return entry


async def renew(session: AsyncSession, tenant_id: int, *, now: datetime, actor: Actor = SYSTEM) -> Renewal:
    """What is due at the term's end: charge the next year for the seats kept, or suspend the
    tenant when the balance is short (a later call, after a top-up, renews and resumes it). An
    ending contract whose effective end has come is ended instead. Safe to call every day."""
    today = _today(now)
    contract = await _locked_contract(session, tenant_id)
    if contract.state == ContractState.ENDED:
        return Renewal("ended")
    if contract.state == ContractState.ENDING:
        if contract.ends_on is not None and today >= contract.ends_on:
            return Renewal("ended", await _end(session, contract, now=now, actor=actor))
        return Renewal("not_due")
    if today < contract.term_end:
        return Renewal("not_due")
    price = contract.price_per_seat_year if contract.next_price_per_seat_year is None \
        else contract.next_price_per_seat_year
    cost = contract.seats * price
    if cost > contract.balance:
        shortfall = cost - contract.balance
        if contract.lapsed_at is None:
            contract.lapsed_at = now
            contract.updated_at = now
            await _set_tenant_status(session, tenant_id, TenantStatus.SUSPENDED, now=now)
            _audit(session, contract, actor, "billing.renewal.suspend",
                   {"seats": contract.seats, "required": cost, "balance": contract.balance})
            logger.info("tenant %s suspended: renewal needs %s more %s", tenant_id, shortfall, contract.currency)
        return Renewal("suspended", shortfall=shortfall)
    # A renewal after a lapse starts today: the days the tenant was suspended are not charged.
    start = max(contract.term_end, today)
    contract.term_start, contract.term_end = start, one_year_after(start)
    contract.price_per_seat_year, contract.next_price_per_seat_year = price, None
    entry = _append(session, contract, kind=LedgerKind.CHARGE, amount=-cost, seats=contract.seats,
                    days=term_days(contract), now=now, actor=actor,
                    detail={"reason": "renewal", "from": start.isoformat(), "to": contract.term_end.isoformat()})
    if contract.lapsed_at is not None:
        contract.lapsed_at = None
        await _set_tenant_status(session, tenant_id, TenantStatus.ACTIVE, now=now)
    _audit(session, contract, actor, "billing.renewal",
           {"seats": contract.seats, "amount": -cost, "term_start": start.isoformat(),
            "term_end": contract.term_end.isoformat()})
    return Renewal("renewed", entry)


async def _set_tenant_status(session: AsyncSession, tenant_id: int, status: str, *, now: datetime) -> None:
    """Suspend an active tenant for billing, or resume one that billing (not the operator) suspended.
    The caller announces the change after commit (core.tenancy.announce_changed)."""
    tenant = (await session.execute(select(Tenant).where(Tenant.id == tenant_id))).scalar_one()
    if status == TenantStatus.SUSPENDED and tenant.status == TenantStatus.ACTIVE:
        tenant.status, tenant.suspended_by, tenant.status_changed_at = TenantStatus.SUSPENDED.value, "billing", now
    elif status == TenantStatus.ACTIVE and tenant.status == TenantStatus.SUSPENDED and tenant.suspended_by == "billing":
        tenant.status, tenant.suspended_by, tenant.status_changed_at = TenantStatus.ACTIVE.value, None, now


async def due(session: AsyncSession, now: datetime) -> list[int]:
    """Tenants whose contract :func:`renew` has something to do for today: a term run out (lapsed
    ones included, until they pay) or an effective end come."""
    today = _today(now)
    stmt = select(BillingContract.tenant_id).where(
        ((BillingContract.state == ContractState.ACTIVE) & (BillingContract.term_end <= today))
        | ((BillingContract.state == ContractState.ENDING) & (BillingContract.ends_on <= today))
    ).order_by(BillingContract.tenant_id)
    return [int(t) for t in (await session.execute(stmt)).scalars()]
