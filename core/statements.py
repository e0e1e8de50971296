"""What a tenant reads of its billing (issue #12): the contract's summary, the ledger page by page,
statements for a period, and invoices for its charges, as plain data. Rendering them (JSON, PDF,
.xlsx) is the presentation's job (admin_api/documents.py); everything here takes the tenant's id,
so the tenant API and the operator's serve the same documents. Nothing here writes: the rules
stay in core.billing.

- **Money** is ``int`` minor units to the end. :func:`format_money` turns it into a decimal string
  by the currency's ISO 4217 exponent (two digits unless :data:`MINOR_UNIT_DIGITS` says
  otherwise), with integer arithmetic, never a float.
- **A statement** covers ``[start, end)`` in UTC dates (entries whose time falls in it). The
  opening balance is the sum of the tenant's entries before ``start``; the closing balance is the
  opening plus the entries listed. The two sets partition the ledger, so
  ``opening + sum(lines) == closing`` holds by construction, whatever order the times came in.
  Without dates, the period is the contract's current term.
- **An invoice** is a ``charge`` entry (seats added mid-term, or a renewal), paid in full from the
  prepaid balance when it was made (a charge the balance cannot pay is never written). Its number
  is :func:`invoice_number`: the tenant id and the entry id, zero-padded, ``000042-00001234``;
  stable because the ledger is append-only, unique across the hub, and naming the tenant so that
  another tenant's number is refused before any lookup. It is the hub's commercial invoice, not a
  tax authority's (a Chinese fapiao is issued outside the hub).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import billing
from core.config import Settings
from core.errors import InvalidInput, NotFound
from core.models import MAX_BIG_ID, MAX_ID, BillingContract, LedgerEntry, LedgerKind, Tenant

logger = logging.getLogger(__name__)

# ISO 4217: the currencies whose minor unit is not a hundredth. Every other code has two digits
# (the standard's own default; funds codes such as XAU have none and are no contract's currency).
MINOR_UNIT_DIGITS: dict[str, int] = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
                     "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
# A statement covers at most three years (of 366 days), and lists at most this many entries (a
# year of daily seat changes fits): a document is built in one piece, and a PDF of 1000 lines
# takes reportlab about two seconds of a worker thread here (5000, over ten).
MAX_PERIOD_DAYS = 3 * 366
MAX_STATEMENT_LINES = 1000
# One page of the ledger or of the invoices.
DEFAULT_PAGE = 100
MAX_PAGE = 500

_NUMBER = re.compile(r"([0-9]{6,10})-([0-9]{8,19})")


# -- Money -----------------------------------------------------------------------------------------


def minor_digits(currency: str) -> int:
    """Digits after the decimal point in ``currency`` (ISO 4217's minor unit)."""
    return MINOR_UNIT_DIGITS.get(currency, 2)


def format_money(minor: int, currency: str, *, grouping: bool = False) -> str:
    """``123456`` fen as ``"1234.56"`` (``"1,234.56"`` with ``grouping``); ``-5`` as ``"-0.05"``;
    yen as whole numbers. Exact for any int: the division is an integer one."""
    if type(minor) is not int:
        raise TypeError(f"money is an int of minor units, not {type(minor).__name__}")
    digits = minor_digits(currency)
    whole, fraction = divmod(abs(minor), 10**digits)
    text = f"{whole:,}" if grouping else str(whole)
    if digits:
        text += f".{fraction:0{digits}d}"
    return f"-{text}" if minor < 0 else text


def to_decimal(minor: int, currency: str) -> Decimal:
    """The amount in major units as an exact Decimal (for spreadsheets and the like)."""
    return Decimal(format_money(minor, currency))


def money_json(minor: int, currency: str) -> dict[str, Any]:
    """Money in JSON: the exact integer for programs, the decimal string for people."""
    return {"minor": minor, "decimal": format_money(minor, currency)}


# -- Invoice numbers -------------------------------------------------------------------------------


def invoice_number(tenant_id: int, entry_id: int) -> str:
    return f"{tenant_id:06d}-{entry_id:08d}"


def parse_invoice_number(number: str) -> tuple[int, int] | None:
    """(tenant id, entry id), or None when ``number`` is not one :func:`invoice_number` writes
    (each invoice has exactly one spelling: ``42-1234`` names nothing)."""
    found = _NUMBER.fullmatch(number)
    if found is None:
        return None
    tenant_id, entry_id = int(found[1]), int(found[2])
    # Beyond what the keys hold it names nothing (and must not reach the driver, which overflows).
    if not (0 < tenant_id <= MAX_ID and 0 < entry_id <= MAX_BIG_ID):
        return None
    return (tenant_id, entry_id) if invoice_number(tenant_id, entry_id) == number else None


# -- The documents' parts --------------------------------------------------------------------------


@dataclass(frozen=True)
class Party:
    """A seller or a buyer as an invoice names them."""

    name: str
    address: str = ""
    domain: str = ""
    tax_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "domain": self.domain, "tax_id": self.tax_id}


def seller_of(settings: Settings) -> Party:
    """The operator, from CHANNELHUB_OPERATOR_NAME / _ADDRESS / _TAX_ID."""
    return Party(settings.operator_name, settings.operator_address, "", settings.operator_tax_id)


@dataclass(frozen=True)
class ContractSummary:
    tenant_id: int
    state: str
    tenant_status: str
    price_per_seat_year: int
    currency: str
    term_start: date
    # The first day after the term (the term is [term_start, term_end)).
    term_end: date
    term_days: int
    seats_paid: int
    seats_in_use: int
    balance: int
    ends_on: date | None

    def as_dict(self) -> dict[str, Any]:
        c = self.currency
        return {
            "state": self.state, "tenant_status": self.tenant_status, "currency": c,
            "minor_unit_digits": minor_digits(c), "price_per_seat_year": money_json(self.price_per_seat_year, c),
            "term_start": self.term_start.isoformat(), "term_end": self.term_end.isoformat(),
            "term_days": self.term_days, "seats_paid": self.seats_paid, "seats_in_use": self.seats_in_use,
            "balance": money_json(self.balance, c), "ends_on": self.ends_on.isoformat() if self.ends_on else None,
        }


@dataclass(frozen=True)
class Line:
    """One ledger entry as a statement shows it."""

    entry_id: int
    at: datetime
    kind: str
    description: str
    seats: int
    days: int
    amount: int
    balance_after: int
    # Charges are invoiced: the invoice's number.
    invoice: str | None

    def as_dict(self, currency: str) -> dict[str, Any]:
        return {"id": self.entry_id, "at": self.at.isoformat(), "date": self.at.date().isoformat(),
                "kind": self.kind, "description": self.description, "seats": self.seats, "days": self.days,
                "amount": money_json(self.amount, currency),
                "balance_after": money_json(self.balance_after, currency), "invoice": self.invoice}


@dataclass(frozen=True)
class Statement:
    buyer: Party
    contract: ContractSummary
    # The period [start, end) in UTC dates.
    start: date
    end: date
    opening_balance: int
    lines: list[Line]
    # The sum of the lines' amounts by kind, every kind listed (0 when none).
    totals: dict[str, int]
    closing_balance: int
    generated_at: datetime

    @property
    def currency(self) -> str:
        return self.contract.currency

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    def as_dict(self) -> dict[str, Any]:
        c = self.currency
        return {
            "tenant": self.buyer.as_dict(), "contract": self.contract.as_dict(), "currency": c,
            "minor_unit_digits": minor_digits(c),
            "period": {"from": self.start.isoformat(), "to": self.end.isoformat()},
            "opening_balance": money_json(self.opening_balance, c),
            "entries": [line.as_dict(c) for line in self.lines],
            "totals": {kind: money_json(total, c) for kind, total in self.totals.items()},
            "closing_balance": money_json(self.closing_balance, c),
            "generated_at": self.generated_at.isoformat(),
        }


@dataclass(frozen=True)
class InvoiceLine:
    """``seats x price_per_seat_year x days / term_days = amount`` (rounded half up, core.billing)."""

    description: str
    seats: int
    days: int
    term_days: int
    price_per_seat_year: int
    amount: int

    def as_dict(self, currency: str) -> dict[str, Any]:
        return {"description": self.description, "seats": self.seats, "days": self.days,
                "term_days": self.term_days, "price_per_seat_year": money_json(self.price_per_seat_year, currency),
                "amount": money_json(self.amount, currency)}


@dataclass(frozen=True)
class Invoice:
    number: str
    entry_id: int
    issued_at: datetime
    seller: Party
    buyer: Party
    currency: str
    # What was bought: the service days [service_start, service_end).
    service_start: date | None
    service_end: date | None
    lines: list[InvoiceLine]
    total: int
    # Paid in full from the prepaid balance when it was issued: the balance before and after.
    paid_from_balance: int
    balance_before: int
    balance_after: int
    reason: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def issued_on(self) -> date:
        return self.issued_at.date()

    def as_dict(self) -> dict[str, Any]:
        c = self.currency
        return {
            "number": self.number, "entry_id": self.entry_id, "issued_on": self.issued_on.isoformat(),
            "issued_at": self.issued_at.isoformat(), "reason": self.reason,
            "seller": self.seller.as_dict(), "buyer": self.buyer.as_dict(), "currency": c,
            "minor_unit_digits": minor_digits(c),
            "service_period": {"from": self.service_start.isoformat() if self.service_start else None,
                               "to": self.service_end.isoformat() if self.service_end else None},
            "lines": [line.as_dict(c) for line in self.lines], "total": money_json(self.total, c),
            "paid_from_balance": money_json(self.paid_from_balance, c),
            "balance_before": money_json(self.balance_before, c),
            "balance_after": money_json(self.balance_after, c),
        }

    def summary(self) -> dict[str, Any]:
        """What the list of invoices shows of each."""
        return {"number": self.number, "entry_id": self.entry_id, "issued_on": self.issued_on.isoformat(),
                "reason": self.reason, "description": self.lines[0].description if self.lines else "",
                "currency": self.currency, "total": money_json(self.total, self.currency)}


# -- Reading ---------------------------------------------------------------------------------------


async def _contract(session: AsyncSession, tenant_id: int) -> BillingContract:
    contract = await billing.contract_of(session, tenant_id)
    if contract is None:
        raise NotFound("this tenant has no billing contract yet: the operator opens one", code="no_contract")
    return contract


async def _tenant(session: AsyncSession, tenant_id: int) -> Tenant:
    tenant = (await session.execute(select(Tenant).where(Tenant.id == tenant_id))).scalar_one_or_none()
    if tenant is None:
        raise NotFound(f"tenant {tenant_id} not found", code="tenant_not_found")
    return tenant


def _buyer(tenant: Tenant) -> Party:
    return Party(tenant.name, "", tenant.domain)


async def summary(session: AsyncSession, tenant_id: int) -> ContractSummary:
    """The tenant's contract, balance and seats (NotFound ``no_contract`` without one)."""
    contract = await _contract(session, tenant_id)
    tenant = await _tenant(session, tenant_id)
    return ContractSummary(
        tenant_id=tenant_id, state=contract.state, tenant_status=tenant.status,
        price_per_seat_year=contract.price_per_seat_year, currency=contract.currency,
        term_start=contract.term_start, term_end=contract.term_end, term_days=billing.term_days(contract),
        seats_paid=await billing.seats_paid(session, tenant_id),
        seats_in_use=await billing.seats_in_use(session, tenant_id), balance=contract.balance,
        ends_on=contract.ends_on,
    )


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _iso_day(value: object) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _span(start: date, end: date) -> str:
    """``[start, end)`` for people: its first and last day."""
    last = end - timedelta(days=1)
    return start.isoformat() if last <= start else f"{start.isoformat()} to {last.isoformat()}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def describe(entry: LedgerEntry) -> str:
    """An entry in plain words, from what the ledger recorded."""
    detail = entry.detail or {}
    reason = detail.get("reason")
    start, end = _iso_day(detail.get("from")), _iso_day(detail.get("to"))
    if entry.kind == LedgerKind.TOP_UP:
        reference = detail.get("reference")
        return f"Top-up (payment reference {reference})" if reference else "Top-up"
    if entry.kind == LedgerKind.CHARGE:
        period = f", {_span(start, end)}" if start and end else ""
        if reason == "renewal":
            return f"Renewal: {_plural(entry.seats, 'seat')} for a year{period} ({_plural(entry.days, 'day')})"
        return f"{_plural(entry.seats, 'seat')} added{period} ({_plural(entry.days, 'day')} of the term)"
    if entry.kind == LedgerKind.CREDIT:
        return (f"{_plural(entry.seats, 'seat')} removed: {_plural(entry.days, 'unused day')} credited"
                + (f" (to {(end - timedelta(days=1)).isoformat()})" if end and entry.days else ""))
    if entry.kind == LedgerKind.REFUND:
        ended = f" on {start.isoformat()}" if start else ""
        return (f"Contract ended{ended}: {_plural(entry.days, 'prepaid day')} for "
                f"{_plural(entry.seats, 'seat')} refunded")
    if entry.kind == LedgerKind.COMPENSATION:
        minutes = detail.get("minutes")
        text = f"Service credit for {_plural(minutes, 'minute')} of downtime" if isinstance(minutes, int) \
            else "Service credit for downtime"
        note = detail.get("note")
        return f"{text} ({note})" if note else text
    return entry.kind.replace("_", " ").capitalize()


def _line(entry: LedgerEntry) -> Line:
    invoice = invoice_number(entry.tenant_id, entry.id) if entry.kind == LedgerKind.CHARGE else None
    return Line(entry.id, entry.created_at, entry.kind, describe(entry), entry.seats, entry.days, entry.amount,
                entry.balance_after, invoice)


async def _sum_before(session: AsyncSession, tenant_id: int, moment: datetime) -> int:
    # Cast: PostgreSQL's sum of a bigint is numeric (a Decimal through asyncpg), as in core.billing.
    total = cast(func.coalesce(func.sum(LedgerEntry.amount), 0), BigInteger)
    stmt = select(total).where(LedgerEntry.tenant_id == tenant_id, LedgerEntry.created_at < moment)
    return int((await session.execute(stmt)).scalar_one())


def check_period(start: date, end: date) -> None:
    """``[start, end)`` must hold at least a day and at most MAX_PERIOD_DAYS."""
    if end <= start:
        raise InvalidInput(f"the period is empty: from ({start.isoformat()}) must be before to ({end.isoformat()})",
                           code="invalid_period")
    if (end - start).days > MAX_PERIOD_DAYS:
        raise InvalidInput(f"a statement covers at most {MAX_PERIOD_DAYS} days; "
                           f"{start.isoformat()} to {end.isoformat()} is {(end - start).days}",
                           code="period_too_long")


async def statement(
    session: AsyncSession, tenant_id: int, *, start: date | None = None, end: date | None = None, now: datetime,
) -> Statement:
    """The tenant's statement for ``[start, end)`` (UTC dates); a missing bound is the current
    term's. Raises NotFound ``no_contract``, InvalidInput ``invalid_period`` / ``period_too_long`` /
    ``statement_too_long``."""
    contract_summary = await summary(session, tenant_id)
    start = contract_summary.term_start if start is None else start
    end = contract_summary.term_end if end is None else end
    check_period(start, end)
    since, until = _midnight(start), _midnight(end)
    opening = await _sum_before(session, tenant_id, since)
    stmt = (select(LedgerEntry)
            .where(LedgerEntry.tenant_id == tenant_id, LedgerEntry.created_at >= since, LedgerEntry.created_at < until)
            .order_by(LedgerEntry.id).limit(MAX_STATEMENT_LINES + 1))
    entries = list((await session.execute(stmt)).scalars())
    if len(entries) > MAX_STATEMENT_LINES:
        raise InvalidInput(f"the period holds more than {MAX_STATEMENT_LINES} entries: ask for a shorter one",
                           code="statement_too_long")
    lines = [_line(entry) for entry in entries]
    totals = {kind.value: 0 for kind in LedgerKind}
    for line in lines:
        totals[line.kind] = totals.get(line.kind, 0) + line.amount
    closing = opening + sum(line.amount for line in lines)
    tenant = await _tenant(session, tenant_id)
    return Statement(_buyer(tenant), contract_summary, start, end, opening, lines, totals, closing, now)


async def ledger_page(
    session: AsyncSession, tenant_id: int, *, after_id: int | None = None, limit: int = DEFAULT_PAGE,
) -> tuple[str, list[Line], int | None]:
    """Entries oldest first after ``after_id``: (currency, lines, the next page's after_id or None)."""
    contract = await _contract(session, tenant_id)
    limit = max(1, min(limit, MAX_PAGE))
    stmt = select(LedgerEntry).where(LedgerEntry.tenant_id == tenant_id)
    if after_id is not None:
        stmt = stmt.where(LedgerEntry.id > after_id)
    entries = list((await session.execute(stmt.order_by(LedgerEntry.id).limit(limit + 1))).scalars())
    more = len(entries) > limit
    lines = [_line(entry) for entry in entries[:limit]]
    return contract.currency, lines, lines[-1].entry_id if more else None


def _term_starts(end: date) -> list[date]:
    """The days a one-year term ending at ``end`` can have begun on (two when it ends on 28 February)."""
    starts = []
    for year, month, day in ((end.year - 1, end.month, end.day), (end.year - 1, 2, 29)):
        try:
            start = date(year, month, day)
        except ValueError:
            continue
        if billing.one_year_after(start) == end and start not in starts:
            starts.append(start)
    return starts


def _term_days_of(contract: BillingContract, entry: LedgerEntry) -> int:
    """Days in the term a seat charge was prorated over. The entry keeps the term's end; the
    contract's current term, or the one-year term ending then, gives its length (a term ending on
    28 February may have begun on 28 or 29 February: the one whose proration gives the amount)."""
    end = _iso_day((entry.detail or {}).get("to"))
    if end is None or end == contract.term_end:
        return billing.term_days(contract)
    lengths = [(end - start).days for start in _term_starts(end)]
    for length in lengths:
        if entry.days <= length and billing.prorate(entry.seats, contract.price_per_seat_year, entry.days,
                                                    length) == -entry.amount:
            return length
    return lengths[0] if lengths else billing.term_days(contract)


def _invoice(entry: LedgerEntry, contract: BillingContract, seller: Party, buyer: Party) -> Invoice:
    detail = entry.detail or {}
    reason = str(detail.get("reason") or "")
    start, end = _iso_day(detail.get("from")), _iso_day(detail.get("to"))
    total = -entry.amount
    # The price and term length the charge was reckoned from (core.billing keeps them on the entry);
    # older entries, made before it did, were all at the contract's only price.
    price = int(detail.get("price_per_seat_year", contract.price_per_seat_year))
    if reason == "renewal":
        term = entry.days
        line = InvoiceLine(f"Renewal: {_plural(entry.seats, 'seat')} for a year" +
                           (f", {_span(start, end)}" if start and end else ""),
                           entry.seats, entry.days, term, price, total)
    else:
        term = int(detail["term_days"]) if "term_days" in detail else _term_days_of(contract, entry)
        line = InvoiceLine(f"{_plural(entry.seats, 'seat')} for the rest of the term" +
                           (f", {_span(start, end)}" if start and end else "") +
                           f": {entry.days} of {term} days", entry.seats, entry.days, term, price, total)
    return Invoice(
        number=invoice_number(entry.tenant_id, entry.id), entry_id=entry.id, issued_at=entry.created_at,
        seller=seller, buyer=buyer, currency=entry.currency, service_start=start, service_end=end, lines=[line],
        total=total, paid_from_balance=total, balance_before=entry.balance_after + total,
        balance_after=entry.balance_after, reason=reason or "charge",
    )


async def invoices(
    session: AsyncSession, tenant_id: int, *, seller: Party, after_id: int | None = None, limit: int = DEFAULT_PAGE,
) -> tuple[list[Invoice], int | None]:
    """The tenant's invoices oldest first after entry ``after_id``: (invoices, next after_id or None)."""
    contract = await _contract(session, tenant_id)
    buyer = _buyer(await _tenant(session, tenant_id))
    limit = max(1, min(limit, MAX_PAGE))
    stmt = select(LedgerEntry).where(LedgerEntry.tenant_id == tenant_id, LedgerEntry.kind == LedgerKind.CHARGE.value)
    if after_id is not None:
        stmt = stmt.where(LedgerEntry.id > after_id)
    entries = list((await session.execute(stmt.order_by(LedgerEntry.id).limit(limit + 1))).scalars())
    found = [_invoice(entry, contract, seller, buyer) for entry in entries[:limit]]
    return found, found[-1].entry_id if len(entries) > limit else None


async def invoice(session: AsyncSession, tenant_id: int, number: str, *, seller: Party) -> Invoice:
    """The tenant's invoice ``number``. Another tenant's number, a malformed one and one that names
    no charge are the same NotFound ``invoice_not_found``: nothing tells them apart."""
    missing = NotFound(f"no invoice numbered {number}", code="invoice_not_found")
    parsed = parse_invoice_number(number)
    if parsed is None or parsed[0] != tenant_id:
        raise missing
    stmt = select(LedgerEntry).where(LedgerEntry.tenant_id == tenant_id, LedgerEntry.id == parsed[1],
                                     LedgerEntry.kind == LedgerKind.CHARGE.value)
    entry = (await session.execute(stmt)).scalar_one_or_none()
    if entry is None:
        raise missing
    contract = await _contract(session, tenant_id)
    return _invoice(entry, contract, seller, _buyer(await _tenant(session, tenant_id)))
