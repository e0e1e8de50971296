"""The billing core (core/billing.py) on the real database: proration by the day (first, middle and
last day of a term, leap years and not), credits, refunds, the 30 days' notice, renewal or
suspension, a 402 that changes nothing, charges racing for the last of the balance, and the
ledger summing to the balance after every step. Time is always handed in, never read."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update

from core import billing
from core.billing import Actor, days_from, one_year_after, prorate
from core.db import Database
from core.errors import Conflict, InvalidInput, PaymentRequired
from core.models import AppendOnly, AuditLog, BillingContract, LedgerEntry, Tenant
from tests.conftest import make_tenant

OPERATOR = Actor("operator", 1)
SYSTEM_ACTOR = billing.SYSTEM
# 365.00 a seat a year: a non-leap term costs 1.00 a seat a day, a leap one 365/366.
PRICE = 36_500


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


@pytest.fixture
async def db(settings: Any) -> AsyncIterator[Database]:
    # 20 connections: the race below holds that many transactions open at once on PostgreSQL.
    database = Database(settings.database_url, pool_size=10)
    yield database
    await database.dispose()


async def contracted(settings: Any, server: Any, db: Database, *, start: date, price: int = PRICE,
                     top_up: int = 0) -> int:
    """A new tenant with a contract from ``start`` (and a top-up), opened the day it starts."""
    tenant = await make_tenant(settings, server)
    async with db.session() as s:
        await billing.open_contract(s, tenant.id, price_per_seat_year=price, currency="CNY", term_start=start,
                                    now=at(start, 9), actor=OPERATOR)
        if top_up:
            await billing.top_up(s, tenant.id, top_up, now=at(start, 9), actor=OPERATOR, reference="bank 1")
    return tenant.id


async def check_ledger(db: Database, tenant_id: int) -> int:
    """The balance is the sum of the entries, the cached balance agrees, each entry's balance_after
    is the running sum up to it and never below zero, and every amount is an int. Returns it."""
    async with db.read(tenant_id) as s:
        entries = await billing.ledger(s, tenant_id)
        contract = await billing.contract_of(s, tenant_id)
        summed = await billing.balance(s, tenant_id)
    assert contract is not None
    running = 0
    for entry in entries:
        assert type(entry.amount) is int and type(entry.balance_after) is int
        running += entry.amount
        assert entry.balance_after == running >= 0, entry.id
    assert type(summed) is int and type(contract.balance) is int
    assert summed == running == contract.balance
    return summed


async def snapshot(db: Database, tenant_id: int) -> tuple[Any, ...]:
    async with db.read(tenant_id) as s:
        contract = await billing.contract_of(s, tenant_id)
        assert contract is not None
        entries = len(await billing.ledger(s, tenant_id))
        audits = (await s.execute(select(func.count()).select_from(AuditLog)
                                  .where(AuditLog.tenant_id == tenant_id))).scalar_one()
        status = (await s.execute(select(Tenant.status).where(Tenant.id == tenant_id))).scalar_one()
    return (contract.balance, contract.seats, contract.state, contract.term_start, contract.term_end,
            contract.ends_on, entries, audits, status)


# -- Proration ------------------------------------------------------------------------------------

# (term start, days in the term, the day seats are added, days charged, amount for 3 seats)
PRORATION = [
    # Not a leap year: 365 days, so 3 seats cost 3.00 a day.
    (date(2023, 1, 1), 365, date(2023, 1, 1), 365, 3 * PRICE),  # first day: the full term
    (date(2023, 1, 1), 365, date(2023, 7, 2), 183, 3 * 100 * 183),  # middle: 2 July to 31 December
    (date(2023, 1, 1), 365, date(2023, 12, 31), 1, 300),  # last day: that day only
    # A leap year: 366 days; 3 x 36500 x 307 / 366 = 91848.36... rounds to 91848.
    (date(2024, 1, 1), 366, date(2024, 1, 1), 366, 3 * PRICE),
    (date(2024, 1, 1), 366, date(2024, 2, 29), 307, 91_848),
    (date(2024, 1, 1), 366, date(2024, 12, 31), 1, 299),  # 299.18 -> 299
    # A term across a 29 February has 366 days too; one that starts on it ends on 28 February (365 days).
    (date(2023, 3, 1), 366, date(2023, 3, 1), 366, 3 * PRICE),
    (date(2023, 3, 1), 366, date(2024, 2, 29), 1, 299),
    (date(2024, 2, 29), 365, date(2025, 2, 27), 1, 300),
]


@pytest.mark.parametrize(("start", "term", "day", "days", "amount"), PRORATION)
async def test_adding_seats_charges_the_rest_of_the_term_by_the_day(
    settings: Any, server: Any, db: Database, start: date, term: int, day: date, days: int, amount: int,
) -> None:
    tid = await contracted(settings, server, db, start=start, top_up=10 * PRICE)
    async with db.session(tid) as s:
        entry = await billing.charge_for_seats(s, tid, 3, now=at(day, 23), actor=OPERATOR)
        contract = await billing.contract_of(s, tid)
    assert contract is not None
    assert (contract.term_end - contract.term_start).days == term
    assert (entry.kind, entry.seats, entry.days, entry.amount) == ("charge", 3, days, -amount)
    assert contract.seats == 3
    assert await check_ledger(db, tid) == 10 * PRICE - amount
    async with db.read(tid) as s:
        assert await billing.seats_paid(s, tid) == 3


def test_rounding_is_half_up_to_the_minor_unit() -> None:
    # 183 / 366 is exactly half a fen: rounded up. 100000 / 365 = 273.97 -> 274; 36500 / 366 = 99.73 -> 100.
    assert prorate(1, 183, 1, 366) == 1
    assert prorate(1, 182, 1, 366) == 0
    assert prorate(1, 100_000, 1, 365) == 274
    assert prorate(1, PRICE, 1, 366) == 100
    assert prorate(2, PRICE, 0, 365) == 0
    assert one_year_after(date(2024, 2, 29)) == date(2025, 2, 28)
    for bad in (1.0, True):
        with pytest.raises(TypeError):
            prorate(1, bad, 1, 365)  # type: ignore[arg-type]


def test_proration_properties_over_random_terms() -> None:
    """Over many random terms, days, prices and seat counts: amounts are ints, a charge and the
    credit for the same seats and days sum to 0, proration never exceeds the full-term price and
    never falls as days grow, and the first day of a term costs exactly the full price."""
    rng = random.Random(20261207)
    for _ in range(5000):
        start = date(2000, 1, 1) + timedelta(days=rng.randrange(0, 365 * 100))
        contract = BillingContract(term_start=start, term_end=one_year_after(start))
        term = (contract.term_end - contract.term_start).days
        assert term in (365, 366)
        day = start + timedelta(days=rng.randrange(0, term))
        seats = rng.randint(1, 1000)
        price = rng.choice([rng.randint(0, 100), rng.randint(0, 10**6), rng.randint(0, billing.MAX_PRICE)])
        days = days_from(contract, day)
        charge = prorate(seats, price, days, term)
        credit = prorate(seats, price, days, term)
        assert type(charge) is int
        assert -charge + credit == 0
        assert 0 <= charge <= seats * price
        assert prorate(seats, price, max(days - 1, 0), term) <= charge
        assert prorate(seats, price, term, term) == seats * price
        # Within half a minor unit of the exact fraction.
        assert abs(2 * charge * term - 2 * seats * price * days) <= term


# -- Credits, same-day changes, insufficient balance ----------------------------------------------


async def test_removing_seats_credits_the_days_after_today(settings: Any, server: Any, db: Database) -> None:
    tid = await contracted(settings, server, db, start=date(2023, 1, 1), top_up=10 * PRICE)
    async with db.session(tid) as s:
        await billing.charge_for_seats(s, tid, 4, now=at(date(2023, 1, 1)), actor=OPERATOR)
    await check_ledger(db, tid)
    # 1 July: the days from 2 July to 31 December (183) go back for each seat; 1 July was used.
    async with db.session(tid) as s:
        entry = await billing.credit_for_seats(s, tid, 2, now=at(date(2023, 7, 1)), actor=OPERATOR)
    assert (entry.kind, entry.seats, entry.days, entry.amount) == ("credit", 2, 183, 2 * 100 * 183)
    assert await check_ledger(db, tid) == 10 * PRICE - 4 * PRICE + 2 * 18_300
    # On the last day of the term nothing is left to credit.
    async with db.session(tid) as s:
        entry = await billing.credit_for_seats(s, tid, 1, now=at(date(2023, 12, 31)), actor=OPERATOR)
        assert (entry.days, entry.amount) == (0, 0)
        assert await billing.seats_paid(s, tid) == 1
    await check_ledger(db, tid)


async def test_a_seat_in_use_cannot_be_credited(settings: Any, server: Any, db: Database) -> None:
    tenant = await make_tenant(settings, server)
    # Two agents from before the tenant was billed (adding one now would be charged at once).
    await tenant.add_agent()
    await tenant.add_agent()
    async with db.session() as s:
        await billing.open_contract(s, tenant.id, price_per_seat_year=PRICE, currency="CNY",
                                    term_start=date(2023, 1, 1), now=at(date(2023, 1, 1)), actor=OPERATOR)
        await billing.top_up(s, tenant.id, 5 * PRICE, now=at(date(2023, 1, 1)), actor=OPERATOR)
    # Two agents and no seat: making room for a third charges for three.
    async with db.session(tenant.id) as s:
        entry = await billing.ensure_seats(s, tenant.id, 1, now=at(date(2023, 1, 1)), actor=OPERATOR)
        assert entry is not None and entry.seats == 3
        assert await billing.ensure_seats(s, tenant.id, 1, now=at(date(2023, 1, 1)), actor=OPERATOR) is None
        assert await billing.seats_in_use(s, tenant.id) == 2
    before = await snapshot(db, tenant.id)
    with pytest.raises(Conflict) as refused:
        async with db.session(tenant.id) as s:
            await billing.credit_for_seats(s, tenant.id, 2, now=at(date(2023, 2, 1)), actor=OPERATOR)
    assert refused.value.code == "seats_in_use"
    assert await snapshot(db, tenant.id) == before
    async with db.session(tenant.id) as s:
        await billing.credit_for_seats(s, tenant.id, 1, now=at(date(2023, 2, 1)), actor=OPERATOR)
    await check_ledger(db, tenant.id)


async def test_a_seat_added_and_removed_on_the_same_day_costs_that_day(
    settings: Any, server: Any, db: Database,
) -> None:
    """Adding charges from today; removing credits from tomorrow: the seat was held today, so it
    costs that day's fee (what the rounding of the two entries makes of it). Adding and removing
    seats within a day is not free, so seats cannot be borrowed for a day at no cost."""
    for start, day in ((date(2023, 1, 1), date(2023, 3, 10)), (date(2024, 1, 1), date(2024, 3, 10))):
        tid = await contracted(settings, server, db, start=start, top_up=2 * PRICE)
        async with db.session(tid) as s:
            charge = await billing.charge_for_seats(s, tid, 1, now=at(day, 8), actor=OPERATOR)
        async with db.session(tid) as s:
            credit = await billing.credit_for_seats(s, tid, 1, now=at(day, 17), actor=OPERATOR)
        term = (one_year_after(start) - start).days
        left = (one_year_after(start) - day).days
        assert charge.amount == -prorate(1, PRICE, left, term)
        assert credit.amount == prorate(1, PRICE, left - 1, term)
        net = charge.amount + credit.amount
        assert net == (-100 if term == 365 else -prorate(1, PRICE, left, term) + prorate(1, PRICE, left - 1, term))
        assert abs(-net - prorate(1, PRICE, 1, term)) <= 1
        assert await check_ledger(db, tid) == 2 * PRICE + net


async def test_an_add_the_balance_cannot_pay_is_refused_with_402_and_changes_nothing(
    settings: Any, server: Any, db: Database,
) -> None:
    tid = await contracted(settings, server, db, start=date(2023, 1, 1), top_up=PRICE - 1)
    before = await snapshot(db, tid)
    with pytest.raises(PaymentRequired) as refused:
        async with db.session(tid) as s:
            await billing.charge_for_seats(s, tid, 1, now=at(date(2023, 1, 1)), actor=OPERATOR)
    assert (refused.value.status, refused.value.code) == (402, "insufficient_balance")
    assert refused.value.details == {"required": PRICE, "balance": PRICE - 1, "currency": "CNY"}
    assert await snapshot(db, tid) == before
    # The same seat a day later costs 364.00: now it is paid.
    async with db.session(tid) as s:
        entry = await billing.charge_for_seats(s, tid, 1, now=at(date(2023, 1, 2)), actor=OPERATOR)
    assert entry.amount == -36_400
    assert await check_ledger(db, tid) == PRICE - 1 - 36_400


async def test_money_is_whole_minor_units(settings: Any, server: Any, db: Database) -> None:
    tid = await contracted(settings, server, db, start=date(2023, 1, 1), top_up=PRICE)
    before = await snapshot(db, tid)
    for call in (
        lambda s: billing.top_up(s, tid, 10.5, now=at(date(2023, 1, 2)), actor=OPERATOR),
        lambda s: billing.top_up(s, tid, True, now=at(date(2023, 1, 2)), actor=OPERATOR),
        lambda s: billing.top_up(s, tid, 0, now=at(date(2023, 1, 2)), actor=OPERATOR),
        lambda s: billing.charge_for_seats(s, tid, 1.0, now=at(date(2023, 1, 2)), actor=OPERATOR),
        lambda s: billing.charge_for_seats(s, tid, -1, now=at(date(2023, 1, 2)), actor=OPERATOR),
    ):
        with pytest.raises(InvalidInput) as refused:
            async with db.session(tid) as s:
                await call(s)
        assert refused.value.code == "invalid_amount"
    with pytest.raises(InvalidInput):
        async with db.session() as s:
            await billing.open_contract(s, tid, price_per_seat_year=365.0, currency="CNY",  # type: ignore[arg-type]
                                        term_start=date(2023, 1, 1), now=at(date(2023, 1, 1)), actor=OPERATOR)
    with pytest.raises(ValueError):
        async with db.session(tid) as s:
            await billing.charge_for_seats(s, tid, 1, now=datetime(2023, 1, 2), actor=OPERATOR)
    assert await snapshot(db, tid) == before


async def test_the_ledger_is_append_only(settings: Any, server: Any, db: Database) -> None:
    tid = await contracted(settings, server, db, start=date(2023, 1, 1), top_up=PRICE)
    for change in (
        lambda s, e: setattr(e, "amount", 10**9),
        lambda s, e: s.delete(e),
    ):
        with pytest.raises(AppendOnly):
            async with db.session(tid) as s:
                entry = (await billing.ledger(s, tid))[0]
                result = change(s, entry)
                if asyncio.iscoroutine(result):
                    await result
                await s.flush()
    for stmt in (update(LedgerEntry).where(LedgerEntry.tenant_id == tid).values(amount=1),
                 delete(LedgerEntry).where(LedgerEntry.tenant_id == tid)):
        with pytest.raises(AppendOnly):
            async with db.session(tid) as s:
                await s.execute(stmt)
    assert await check_ledger(db, tid) == PRICE


async def test_another_tenants_session_sees_no_contract(settings: Any, server: Any, db: Database) -> None:
    tid = await contracted(settings, server, db, start=date(2023, 1, 1), top_up=PRICE)
    other = await make_tenant(settings, server)
    async with db.read(other.id) as s:
        assert await billing.contract_of(s, tid) is None
        assert await billing.ledger(s, tid) == []
        assert await billing.seats_paid(s, tid) == 0


# -- Races ----------------------------------------------------------------------------------------


async def test_concurrent_charges_never_take_the_balance_below_zero(
    settings: Any, server: Any, db: Database,
) -> None:
    """20 charges of one seat at once against a balance that pays for 7: exactly 7 succeed."""
    day = date(2023, 7, 2)
    cost = prorate(1, PRICE, 183, 365)
    tid = await contracted(settings, server, db, start=date(2023, 1, 1), top_up=7 * cost)
    start = asyncio.Event()

    async def charge() -> bool:
        await start.wait()
        try:
            async with db.session(tid) as s:
                await billing.charge_for_seats(s, tid, 1, now=at(day), actor=OPERATOR)
                # Hold the transaction open a moment, so the others pile up against the lock.
                await asyncio.sleep(0.01)
        except PaymentRequired:
            return False
        return True

    tasks = [asyncio.create_task(charge()) for _ in range(20)]
    await asyncio.sleep(0.05)
    start.set()
    results = await asyncio.gather(*tasks)
    assert results.count(True) == 7
    assert await check_ledger(db, tid) == 0
    async with db.read(tid) as s:
        assert await billing.seats_paid(s, tid) == 7
        charges = [e for e in await billing.ledger(s, tid) if e.kind == "charge"]
    assert [e.amount for e in charges] == [-cost] * 7


async def test_mixed_concurrent_changes_keep_the_ledger_summing_to_the_balance(
    settings: Any, server: Any, db: Database,
) -> None:
    """Charges, credits, top-ups and compensation all at once: whatever order they commit in, the
    cached balance, the ledger's sum and each entry's running balance agree, and none is negative."""
    day = date(2024, 5, 20)
    tid = await contracted(settings, server, db, start=date(2024, 1, 1), top_up=5 * PRICE)
    async with db.session(tid) as s:
        await billing.charge_for_seats(s, tid, 4, now=at(date(2024, 1, 1)), actor=OPERATOR)
    rng = random.Random(7)
    start = asyncio.Event()

    async def one(kind: str) -> str:
        await start.wait()
        try:
            async with db.session(tid) as s:
                if kind == "charge":
                    await billing.charge_for_seats(s, tid, rng.randint(1, 3), now=at(day), actor=OPERATOR)
                elif kind == "credit":
                    await billing.credit_for_seats(s, tid, 1, now=at(day), actor=OPERATOR)
                elif kind == "top_up":
                    await billing.top_up(s, tid, rng.randint(1, PRICE), now=at(day), actor=OPERATOR)
                else:
                    await billing.compensate(s, tid, minutes=rng.randint(5, 100), now=at(day), actor=SYSTEM_ACTOR)
                await asyncio.sleep(0.005)
        except (PaymentRequired, Conflict) as exc:
            return exc.code
        return "ok"

    kinds = [rng.choice(["charge", "charge", "credit", "top_up", "compensate"]) for _ in range(20)]
    tasks = [asyncio.create_task(one(kind)) for kind in kinds]
    await asyncio.sleep(0.05)
    start.set()
    outcomes = await asyncio.gather(*tasks)
    assert set(outcomes) <= {"ok", "insufficient_balance", "not_enough_seats"}
    await check_ledger(db, tid)
    async with db.read(tid) as s:
        entries = await billing.ledger(s, tid)
        seats = sum(e.seats if e.kind == "charge" else -e.seats for e in entries if e.kind in ("charge", "credit"))
        assert await billing.seats_paid(s, tid) == seats >= 0
    assert len(entries) == 2 + outcomes.count("ok")  # the top-up and the first charge, then one each


async def test_a_random_walk_keeps_the_ledger_summing_to_the_balance(
    settings: Any, server: Any, db: Database,
) -> None:
    """Random top-ups, adds (some refused), removes and compensation over a term, checked after
    every step; then renewal or suspension, and the end of the contract with its refund."""
    rng = random.Random(12)
    for price in (rng.randint(1, 10**6), 99_999, 1):
        start = date(2024, 1, 1) + timedelta(days=rng.randrange(0, 400))
        tid = await contracted(settings, server, db, start=start, price=price, top_up=rng.randint(1, 5 * price))
        day = start
        # At most 12 x 25 days in, so the notice below (40 days) still ends within the term.
        for _ in range(12):
            day += timedelta(days=rng.randrange(0, 26))
            now = at(day, rng.randrange(0, 24))
            try:
                async with db.session(tid) as s:
                    action = rng.choice(["top_up", "add", "add", "remove", "compensate"])
                    paid = await billing.seats_paid(s, tid)
                    if action == "top_up":
                        await billing.top_up(s, tid, rng.randint(1, 3 * price), now=now, actor=OPERATOR)
                    elif action == "add":
                        await billing.charge_for_seats(s, tid, rng.randint(1, 4), now=now, actor=OPERATOR)
                    elif action == "remove" and paid:
                        await billing.credit_for_seats(s, tid, rng.randint(1, paid), now=now, actor=OPERATOR)
                    elif action == "compensate":
                        await billing.compensate(s, tid, minutes=rng.randint(5, 600), now=now, actor=SYSTEM_ACTOR)
            except PaymentRequired:
                pass
            await check_ledger(db, tid)
        async with db.session(tid) as s:
            await billing.give_notice(s, tid, ends_on=day + timedelta(days=40), now=at(day), actor=OPERATOR)
        async with db.session(tid) as s:
            await billing.end_contract(s, tid, now=at(day + timedelta(days=40)), actor=SYSTEM_ACTOR)
        await check_ledger(db, tid)



# -- Ending a contract ----------------------------------------------------------------------------


async def test_ending_needs_30_days_notice_and_refunds_the_unused_part(
    settings: Any, server: Any, db: Database,
) -> None:
    tid = await contracted(settings, server, db, start=date(2023, 1, 1), top_up=3 * PRICE)
    async with db.session(tid) as s:
        await billing.charge_for_seats(s, tid, 2, now=at(date(2023, 1, 1)), actor=OPERATOR)
    before = await snapshot(db, tid)
    notice_day = at(date(2023, 6, 1))
    for ends_on, code in ((date(2023, 6, 30), "notice_too_short"), (date(2024, 1, 2), "ends_after_term")):
        with pytest.raises(InvalidInput) as refused:
            async with db.session(tid) as s:
                await billing.give_notice(s, tid, ends_on=ends_on, now=notice_day, actor=OPERATOR)
        assert (refused.value.status, refused.value.code) == (422, code)
    assert await snapshot(db, tid) == before
    # Exactly 30 days (1 June counts as the first): ends at 00:00 on 1 July.
    async with db.session(tid) as s:
        contract = await billing.give_notice(s, tid, ends_on=date(2023, 7, 1), now=notice_day, actor=OPERATOR)
        assert (contract.state, contract.ends_on) == ("ending", date(2023, 7, 1))
    with pytest.raises(Conflict):
        async with db.session(tid) as s:
            await billing.give_notice(s, tid, ends_on=date(2023, 8, 1), now=notice_day, actor=OPERATOR)
    # Seats can still change during the notice; the refund covers what is paid at the end.
    async with db.session(tid) as s:
        await billing.credit_for_seats(s, tid, 1, now=at(date(2023, 6, 15)), actor=OPERATOR)
        assert await billing.end_contract(s, tid, now=at(date(2023, 6, 30, ), 23)) is None
    async with db.session(tid) as s:
        refund = await billing.end_contract(s, tid, now=at(date(2023, 7, 1), 0))
    assert refund is not None
    # 1 July to 31 December: 184 days of the one seat left.
    assert (refund.kind, refund.seats, refund.days, refund.amount) == ("refund", 1, 184, 18_400)
    balance = await check_ledger(db, tid)
    assert balance == 3 * PRICE - 2 * PRICE + prorate(1, PRICE, 199, 365) + 18_400
    status = await snapshot(db, tid)
    assert status[1:3] == (0, "ended") and status[-1] == "suspended"
    async with db.session(tid) as s:
        assert await billing.seats_paid(s, tid) == 0
        for call in (billing.charge_for_seats, billing.credit_for_seats):
            with pytest.raises(Conflict) as ended:
                await call(s, tid, 1, now=at(date(2023, 7, 2)), actor=OPERATOR)
            assert ended.value.code == "contract_ended"
        assert (await billing.renew(s, tid, now=at(date(2024, 1, 1)))).outcome == "ended"


# -- Renewal --------------------------------------------------------------------------------------


async def test_renewal_charges_the_next_term_for_the_seats_kept(settings: Any, server: Any, db: Database) -> None:
    tid = await contracted(settings, server, db, start=date(2023, 1, 1), top_up=4 * PRICE)
    async with db.session(tid) as s:
        await billing.charge_for_seats(s, tid, 2, now=at(date(2023, 1, 1)), actor=OPERATOR)
        assert (await billing.renew(s, tid, now=at(date(2023, 12, 31), 23))).outcome == "not_due"
        # A lapsed term takes no seats until it is renewed.
        with pytest.raises(Conflict) as over:
            await billing.charge_for_seats(s, tid, 1, now=at(date(2024, 1, 1), 0), actor=OPERATOR)
        assert over.value.code == "term_over"
    async with db.session(tid) as s:
        renewal = await billing.renew(s, tid, now=at(date(2024, 1, 1), 0))
        again = await billing.renew(s, tid, now=at(date(2024, 1, 1), 1))
        contract = await billing.contract_of(s, tid)
    assert renewal.outcome == "renewed" and renewal.entry is not None and again.outcome == "not_due"
    # A full year's fee for the two seats, though the new term (2024) has 366 days.
    assert (renewal.entry.kind, renewal.entry.amount, renewal.entry.seats, renewal.entry.days) == \
        ("charge", -2 * PRICE, 2, 366)
    assert contract is not None and (contract.term_start, contract.term_end) == (date(2024, 1, 1), date(2025, 1, 1))
    assert await check_ledger(db, tid) == 0


async def test_renewal_short_of_money_suspends_and_a_top_up_resumes(
    settings: Any, server: Any, db: Database,
) -> None:
    tid = await contracted(settings, server, db, start=date(2023, 1, 1), top_up=3 * PRICE)
    async with db.session(tid) as s:
        await billing.charge_for_seats(s, tid, 3, now=at(date(2023, 1, 1)), actor=OPERATOR)
        await billing.top_up(s, tid, 2 * PRICE, now=at(date(2023, 12, 1)), actor=OPERATOR)
    before = await snapshot(db, tid)
    async with db.session(tid) as s:
        renewal = await billing.renew(s, tid, now=at(date(2024, 1, 1), 0))
    assert (renewal.outcome, renewal.entry, renewal.shortfall) == ("suspended", None, PRICE)
    after = await snapshot(db, tid)
    # Nothing charged, the term as it was; the tenant is suspended (and that was audited).
    assert after[:7] == before[:7] and after[-1] == "suspended" and after[7] == before[7] + 1
    async with db.session(tid) as s:
        assert (await billing.renew(s, tid, now=at(date(2024, 1, 2)))).outcome == "suspended"
        # Keeping fewer seats is allowed while lapsed (nothing left to credit): now two are affordable.
        credit = await billing.credit_for_seats(s, tid, 1, now=at(date(2024, 1, 3)), actor=OPERATOR)
        assert credit.amount == 0
    async with db.session(tid) as s:
        renewal = await billing.renew(s, tid, now=at(date(2024, 1, 5)))
        contract = await billing.contract_of(s, tid)
        status = (await s.execute(select(Tenant.status).where(Tenant.id == tid))).scalar_one()
    assert renewal.outcome == "renewed" and renewal.entry is not None and renewal.entry.amount == -2 * PRICE
    # The new term starts the day it was paid: the suspended days are not charged.
    assert contract is not None and (contract.term_start, contract.term_end) == (date(2024, 1, 5), date(2025, 1, 5))
    assert contract.lapsed_at is None and status == "active"
    assert await check_ledger(db, tid) == 0


async def test_notice_for_the_term_end_means_no_renewal(settings: Any, server: Any, db: Database) -> None:
    tid = await contracted(settings, server, db, start=date(2023, 1, 1), top_up=5 * PRICE)
    async with db.session(tid) as s:
        await billing.charge_for_seats(s, tid, 2, now=at(date(2023, 1, 1)), actor=OPERATOR)
        await billing.give_notice(s, tid, ends_on=date(2024, 1, 1), now=at(date(2023, 11, 1)), actor=OPERATOR)
    async with db.session(tid) as s:
        assert (await billing.renew(s, tid, now=at(date(2023, 12, 31)))).outcome == "not_due"
    async with db.session(tid) as s:
        renewal = await billing.renew(s, tid, now=at(date(2024, 1, 1)))
    assert renewal.outcome == "ended" and renewal.entry is not None
    assert (renewal.entry.kind, renewal.entry.amount, renewal.entry.days) == ("refund", 0, 0)
    assert await check_ledger(db, tid) == 3 * PRICE
