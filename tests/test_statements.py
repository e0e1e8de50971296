"""The tenant's billing read API (core.statements, admin_api/documents.py, /api/v1/billing): a
contract and a ledger made through core.billing with an injected clock, then read back over HTTP
from the running hub in each format. JSON sums are checked, the PDF is parsed back to text
(pypdf) and the .xlsx back to cells (openpyxl): the tenant's Chinese name, the invoice numbers and
the totals are in them, and the integer minor-unit column sums to closing minus opening.
Another tenant's invoice numbers answer exactly like missing ones; agents get 403."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import aiohttp
import openpyxl
import pytest
from pypdf import PdfReader

from core import billing, statements
from core.billing import Actor, prorate
from core.config import Settings
from core.db import Database
from core.statements import format_money, invoice_number, parse_invoice_number
from tests.conftest import PASSWORD, Server, TenantInfo, make_tenant
from tests.support import Http, Reply, assert_error

OPERATOR = Actor("operator", 1)
PRICE = 36_500  # 365.00 a seat a year: 1.00 a seat a day in a 365-day term
CHINESE_NAME = "上海某某科技有限公司"


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


@dataclass
class Billed:
    """A tenant with a contract, a year and a bit of ledger, and its admin's and agent's tokens."""

    info: TenantInfo
    http: Http
    admin_token: str
    agent_token: str

    @property
    def domain(self) -> str:
        return self.info.domain

    async def get(self, path: str, *, token: str | None = None) -> Reply:
        return await self.http("GET", path, host=self.domain, token=token or self.admin_token)

    async def raw(self, path: str) -> tuple[int, dict[str, str], bytes]:
        async with self.http.session.get(self.http.base_url + path, headers={
                "Host": self.domain, "Authorization": f"Bearer {self.admin_token}"}) as resp:
            return resp.status, dict(resp.headers), await resp.read()


async def _login(http: Http, domain: str, email: str) -> str:
    reply = await http("POST", "/api/v1/auth/login", host=domain, json_body={"email": email, "password": PASSWORD})
    assert reply.status == 200, reply
    return str(reply.body["token"])


async def _history(db: Database, tenant_id: int) -> None:
    """2023: a top-up, 3 seats on the first day, 2 more on 2 July (183 days), one given back on
    1 August (152 days credited), an hour of downtime compensated. 2024 (a leap year, 366 days): a
    top-up, the renewal of 4 seats, 1 seat more on 1 March (306 days)."""
    async with db.session() as s:
        await billing.open_contract(s, tenant_id, price_per_seat_year=PRICE, currency="CNY",
                                    term_start=date(2023, 1, 1), now=at(date(2023, 1, 1), 9), actor=OPERATOR)
        await billing.top_up(s, tenant_id, 200_000, now=at(date(2023, 1, 1), 9), actor=OPERATOR,
                             reference="bank 2023-001")
        await billing.charge_for_seats(s, tenant_id, 3, now=at(date(2023, 1, 1), 10), actor=OPERATOR)
    async with db.session() as s:
        await billing.charge_for_seats(s, tenant_id, 2, now=at(date(2023, 7, 2)), actor=OPERATOR)
        await billing.credit_for_seats(s, tenant_id, 1, now=at(date(2023, 8, 1)), actor=OPERATOR)
        await billing.compensate(s, tenant_id, minutes=60, now=at(date(2023, 9, 15)), actor=OPERATOR,
                                 note="outage 2023-09-14")
    async with db.session() as s:
        await billing.top_up(s, tenant_id, 150_000, now=at(date(2024, 1, 1), 8), actor=OPERATOR)
        renewal = await billing.renew(s, tenant_id, now=at(date(2024, 1, 1), 9))
        assert renewal.outcome == "renewed"
        await billing.charge_for_seats(s, tenant_id, 1, now=at(date(2024, 3, 1)), actor=OPERATOR)


# What _history writes, entry by entry: (kind, amount).
EXPECTED = [
    ("top_up", 200_000), ("charge", -3 * PRICE), ("charge", -2 * 100 * 183), ("credit", 100 * 152),
    ("compensation", prorate(4, PRICE, 60, 365 * 24 * 60)), ("top_up", 150_000), ("charge", -4 * PRICE),
    ("charge", -prorate(1, PRICE, 306, 366)),
]


@pytest.fixture(scope="module")
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url)
    yield database
    await database.dispose()


@pytest.fixture(scope="module")
async def http(server: Server) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession() as session:
        yield Http(server.url, session)


async def _billed(settings: Settings, server: Server, http: Http, db: Database, name: str) -> Billed:
    info = await make_tenant(settings, server, name=name)
    admin = await info.add_agent(role="admin")
    agent = await info.add_agent(role="agent")
    await _history(db, info.id)
    return Billed(info, http, await _login(http, info.domain, admin.email), await _login(http, info.domain,
                                                                                         agent.email))


@pytest.fixture(scope="module")
async def shanghai(settings: Settings, server: Server, http: Http, db: Database) -> Billed:
    return await _billed(settings, server, http, db, CHINESE_NAME)


@pytest.fixture(scope="module")
async def globex(settings: Settings, server: Server, http: Http, db: Database) -> Billed:
    # Markup in a name is text in the documents, not markup.
    return await _billed(settings, server, http, db, "Globex & <b>Co</b>")


def _minor(money: dict[str, Any]) -> int:
    assert set(money) == {"minor", "decimal"} and type(money["minor"]) is int, money
    return int(money["minor"])


# -- Money and numbers (pure) ----------------------------------------------------------------------


def test_money_is_formatted_by_the_currencys_exponent_without_floats() -> None:
    assert format_money(123_456, "CNY") == "1234.56"
    assert format_money(123_456, "CNY", grouping=True) == "1,234.56"
    assert format_money(-5, "USD") == "-0.05"
    assert format_money(0, "EUR") == "0.00"
    assert format_money(1_234_567, "JPY", grouping=True) == "1,234,567"
    assert format_money(1_234_567, "KWD") == "1234.567"
    assert format_money(10**17 + 1, "CNY") == "1000000000000000.01"  # beyond a double's exact digits
    assert statements.minor_digits("CLF") == 4 and statements.minor_digits("XYZ") == 2
    assert str(statements.to_decimal(-12_345, "CNY")) == "-123.45"
    for bad in (1.5, True, "12"):
        with pytest.raises(TypeError):
            format_money(bad, "CNY")  # type: ignore[arg-type]


def test_invoice_numbers_have_one_spelling_each() -> None:
    assert invoice_number(42, 1234) == "000042-00001234"
    assert parse_invoice_number("000042-00001234") == (42, 1234)
    assert invoice_number(2**31 - 1, 2**63 - 1) == "2147483647-9223372036854775807"
    assert parse_invoice_number("2147483647-9223372036854775807") == (2**31 - 1, 2**63 - 1)
    for other in ("42-1234", "0000042-00001234", "000042-1234", "000042_00001234", "000000-00001234",
                  "9999999999-00000001", "000042-9999999999999999999", "٠٠٠٠٤٢-٠٠٠٠١٢٣٤", " 000042-00001234"):
        assert parse_invoice_number(other) is None, other


def test_the_operator_is_the_seller_from_the_environment() -> None:
    settings = Settings.from_env({"CHANNELHUB_OPERATOR_NAME": "Hub Ltd", "CHANNELHUB_OPERATOR_ADDRESS": "1 Main St",
                                  "CHANNELHUB_OPERATOR_TAX_ID": "91310000XXXX"})
    assert statements.seller_of(settings) == statements.Party("Hub Ltd", "1 Main St", "", "91310000XXXX")
    assert statements.seller_of(Settings.from_env({})).name == "channelhub operator"


# -- JSON --------------------------------------------------------------------------------------------


async def test_contract_summary(shanghai: Billed) -> None:
    reply = await shanghai.get("/api/v1/billing")
    assert reply.status == 200, reply
    contract = reply.body["contract"]
    assert contract["currency"] == "CNY" and contract["minor_unit_digits"] == 2
    assert contract["price_per_seat_year"] == {"minor": PRICE, "decimal": "365.00"}
    assert (contract["term_start"], contract["term_end"], contract["term_days"]) == ("2024-01-01", "2025-01-01", 366)
    assert (contract["seats_paid"], contract["seats_in_use"]) == (5, 2)  # the admin and the agent
    assert _minor(contract["balance"]) == sum(amount for _, amount in EXPECTED)
    assert contract["state"] == "active" and contract["ends_on"] is None


async def test_a_statement_sums_by_construction(shanghai: Billed) -> None:
    reply = await shanghai.get("/api/v1/billing/statement?from=2023-07-01&to=2024-01-01")
    assert reply.status == 200, reply
    st = reply.body["statement"]
    assert st["period"] == {"from": "2023-07-01", "to": "2024-01-01"}
    assert st["tenant"]["name"] == CHINESE_NAME and st["tenant"]["domain"] == shanghai.domain
    entries = st["entries"]
    assert [(e["kind"], _minor(e["amount"])) for e in entries] == EXPECTED[2:5]
    opening, closing = _minor(st["opening_balance"]), _minor(st["closing_balance"])
    assert opening == 200_000 - 3 * PRICE
    assert opening + sum(_minor(e["amount"]) for e in entries) == closing
    assert closing == _minor(entries[-1]["balance_after"])  # the ledger's own running balance agrees
    totals = {kind: _minor(total) for kind, total in st["totals"].items()}
    assert totals == {"top_up": 0, "charge": -36_600, "credit": 15_200, "compensation": EXPECTED[4][1], "refund": 0}
    assert sum(totals.values()) == closing - opening
    assert entries[0]["description"] == "2 seats added, 2023-07-02 to 2023-12-31 (183 days of the term)"
    assert entries[0]["invoice"] == invoice_number(shanghai.info.id, entries[0]["id"])
    assert entries[1]["description"] == "1 seat removed: 152 unused days credited (to 2023-12-31)"
    assert entries[1]["invoice"] is None
    assert entries[2]["description"] == "Service credit for 60 minutes of downtime (outage 2023-09-14)"
    assert entries[0]["amount"]["decimal"] == "-366.00"


async def test_the_default_period_is_the_current_term(shanghai: Billed) -> None:
    reply = await shanghai.get("/api/v1/billing/statement")
    assert reply.status == 200, reply
    st = reply.body["statement"]
    assert st["period"] == {"from": "2024-01-01", "to": "2025-01-01"}
    assert [(e["kind"], _minor(e["amount"])) for e in st["entries"]] == EXPECTED[5:]
    assert _minor(st["opening_balance"]) == sum(amount for _, amount in EXPECTED[:5])
    assert _minor(st["closing_balance"]) == sum(amount for _, amount in EXPECTED)
    assert st["entries"][0]["description"] == "Top-up"
    assert st["entries"][1]["description"] == "Renewal: 4 seats for a year, 2024-01-01 to 2024-12-31 (366 days)"
    # An empty period still states its balances.
    empty = (await shanghai.get("/api/v1/billing/statement?from=2022-01-01&to=2022-12-31")).body["statement"]
    assert empty["entries"] == [] and _minor(empty["opening_balance"]) == _minor(empty["closing_balance"]) == 0


async def test_ledger_pages(shanghai: Billed) -> None:
    seen: list[dict[str, Any]] = []
    path = "/api/v1/billing/ledger?limit=3"
    while True:
        reply = await shanghai.get(path)
        assert reply.status == 200, reply
        seen += reply.body["entries"]
        if reply.body["next_after_id"] is None:
            break
        assert len(reply.body["entries"]) == 3
        path = f"/api/v1/billing/ledger?limit=3&after_id={reply.body['next_after_id']}"
    assert [(e["kind"], _minor(e["amount"])) for e in seen] == EXPECTED
    running = 0
    for entry in seen:
        running += _minor(entry["amount"])
        assert _minor(entry["balance_after"]) == running
    assert (await shanghai.get("/api/v1/billing/ledger")).body["entries"] == seen


async def test_every_charge_is_an_invoice(shanghai: Billed) -> None:
    reply = await shanghai.get("/api/v1/billing/invoices")
    assert reply.status == 200, reply
    listed = reply.body["invoices"]
    charges = [amount for kind, amount in EXPECTED if kind == "charge"]
    assert [_minor(i["total"]) for i in listed] == [-amount for amount in charges]
    assert [i["reason"] for i in listed] == ["seats_added", "seats_added", "renewal", "seats_added"]
    page = await shanghai.get("/api/v1/billing/invoices?limit=2")
    assert [i["number"] for i in page.body["invoices"]] == [i["number"] for i in listed[:2]]
    rest = await shanghai.get(f"/api/v1/billing/invoices?after_id={page.body['next_after_id']}")
    assert [i["number"] for i in rest.body["invoices"]] == [i["number"] for i in listed[2:]]

    for summary in listed:
        one = await shanghai.get(f"/api/v1/billing/invoices/{summary['number']}")
        assert one.status == 200, one
        inv = one.body["invoice"]
        assert inv["number"] == summary["number"] == invoice_number(shanghai.info.id, inv["entry_id"])
        assert inv["buyer"] == {"name": CHINESE_NAME, "address": "", "domain": shanghai.domain, "tax_id": ""}
        assert inv["seller"]["name"] == "channelhub operator"
        [line] = inv["lines"]
        expected = (line["seats"] * PRICE if inv["reason"] == "renewal"
                    else prorate(line["seats"], PRICE, line["days"], line["term_days"]))
        assert _minor(line["amount"]) == _minor(inv["total"]) == expected
        assert _minor(inv["paid_from_balance"]) == _minor(inv["total"])
        assert _minor(inv["balance_before"]) - _minor(inv["total"]) == _minor(inv["balance_after"])
    mid_2023, leap = (await shanghai.get(f"/api/v1/billing/invoices/{listed[1]['number']}")).body["invoice"], \
        (await shanghai.get(f"/api/v1/billing/invoices/{listed[3]['number']}")).body["invoice"]
    assert [(x["seats"], x["days"], x["term_days"]) for x in mid_2023["lines"]] == [(2, 183, 365)]
    assert mid_2023["service_period"] == {"from": "2023-07-02", "to": "2024-01-01"}
    assert mid_2023["issued_on"] == "2023-07-02" and mid_2023["total"]["decimal"] == "366.00"
    assert [(x["seats"], x["days"], x["term_days"]) for x in leap["lines"]] == [(1, 306, 366)]


# -- PDF and .xlsx ---------------------------------------------------------------------------------


def _pdf_text(data: bytes) -> str:
    assert data.startswith(b"%PDF-")
    return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages)


async def test_statement_as_pdf(shanghai: Billed) -> None:
    status, headers, data = await shanghai.raw("/api/v1/billing/statement?from=2023-01-01&to=2024-01-01&format=pdf")
    assert status == 200 and headers["Content-Type"] == "application/pdf"
    assert headers["Content-Disposition"] == \
        f'attachment; filename="statement-{shanghai.domain}-2023-01-01-2023-12-31.pdf"'
    text = _pdf_text(data)
    json_st = (await shanghai.get("/api/v1/billing/statement?from=2023-01-01&to=2024-01-01")).body["statement"]
    assert CHINESE_NAME in text
    for entry in json_st["entries"]:
        assert format_money(_minor(entry["amount"]), "CNY", grouping=True) in text
        if entry["invoice"]:
            assert entry["invoice"] in text
    assert "Opening balance" in text and "Closing balance" in text
    closing = format_money(_minor(json_st["closing_balance"]), "CNY", grouping=True)
    assert f"0.00 + {closing} = {closing}" in text  # opening 0, the year's entries, closing
    assert b"FontFile" not in data  # the CID font is the reader's, not embedded


async def test_statement_as_xlsx(shanghai: Billed) -> None:
    status, headers, data = await shanghai.raw("/api/v1/billing/statement?format=xlsx&from=2023-01-01&to=2025-01-01")
    assert status == 200, data[:300]
    assert headers["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert headers["Content-Disposition"].endswith('-2023-01-01-2024-12-31.xlsx"')
    book = openpyxl.load_workbook(io.BytesIO(data))
    summary = {row[0]: row[1:] for row in book["Statement"].iter_rows(min_row=2, values_only=True)}
    assert summary["Tenant"][0] == CHINESE_NAME
    opening, closing = summary["Opening balance"][1], summary["Closing balance"][1]
    assert (opening, closing) == (0, sum(amount for _, amount in EXPECTED))
    sheet = book["Entries"]
    header = [cell.value for cell in sheet[1]]
    assert header[6:10] == ["Amount (CNY)", "Balance after (CNY)", "Amount (minor units)",
                            "Balance after (minor units)"]
    rows = list(sheet.iter_rows(min_row=2, values_only=True))
    names = {"top_up": "Top-up", "charge": "Charge", "credit": "Credit", "compensation": "Compensation"}
    assert [(row[2], row[8]) for row in rows] == [(names[kind], amount) for kind, amount in EXPECTED]
    assert sum(row[8] for row in rows) == closing - opening
    assert all(type(row[8]) is int and type(row[9]) is int for row in rows)
    # The amounts in CNY are numbers with two decimals' format, equal to the minor units / 100.
    amount_cell = sheet.cell(row=2, column=7)
    assert amount_cell.number_format == "#,##0.00"
    assert all(round(row[6] * 100) == row[8] for row in rows)
    assert rows[0][1].date() == date(2023, 1, 1)


async def test_invoice_as_pdf_and_xlsx(shanghai: Billed) -> None:
    listed = (await shanghai.get("/api/v1/billing/invoices")).body["invoices"]
    number = listed[1]["number"]
    status, headers, data = await shanghai.raw(f"/api/v1/billing/invoices/{number}?format=pdf")
    assert status == 200 and headers["Content-Disposition"] == f'attachment; filename="invoice-{number}.pdf"'
    text = _pdf_text(data)
    for expected in (CHINESE_NAME, number, shanghai.domain, "366.00", "365.00", "channelhub operator",
                     "2023-07-02 to 2023-12-31", "Paid from the prepaid balance"):
        assert expected in text, expected

    status, headers, data = await shanghai.raw(f"/api/v1/billing/invoices/{number}?format=xlsx")
    assert status == 200 and headers["Content-Disposition"] == f'attachment; filename="invoice-{number}.xlsx"'
    cells = list(openpyxl.load_workbook(io.BytesIO(data))["Invoice"].iter_rows(values_only=True))
    facts = {row[0]: row[1] for row in cells if row[0]}
    assert facts["Invoice number"] == number and facts["Buyer"] == CHINESE_NAME
    [line] = [row for row in cells if row[0] and str(row[0]).startswith("2 seats")]
    assert line[1:4] == (2, 183, 365) and line[6] == 36_600 and line[5] == 366
    totals = {row[4]: row[6] for row in cells if row[4] in ("Total", "Amount due")}
    assert totals == {"Total": 36_600, "Amount due": 0}


async def test_markup_in_a_name_is_text(globex: Billed) -> None:
    number = (await globex.get("/api/v1/billing/invoices")).body["invoices"][0]["number"]
    _, _, data = await globex.raw(f"/api/v1/billing/invoices/{number}?format=pdf")
    assert "Globex & <b>Co</b>" in _pdf_text(data)
    _, _, data = await globex.raw("/api/v1/billing/statement?format=xlsx")
    summary = {row[0]: row[1] for row in openpyxl.load_workbook(io.BytesIO(data))["Statement"].iter_rows(
        values_only=True)}
    assert summary["Tenant"] == "Globex & <b>Co</b>"


# -- Who may read what -------------------------------------------------------------------------------


async def test_another_tenants_invoice_is_like_a_missing_one(shanghai: Billed, globex: Billed) -> None:
    theirs = [i["number"] for i in (await shanghai.get("/api/v1/billing/invoices")).body["invoices"]]
    ours = [i["number"] for i in (await globex.get("/api/v1/billing/invoices")).body["invoices"]]
    assert not set(theirs) & set(ours)
    missing = invoice_number(globex.info.id, 10**12)
    absent = assert_error(await globex.get(f"/api/v1/billing/invoices/{missing}"), 404, "invoice_not_found")
    for number in [*theirs, invoice_number(globex.info.id, int(theirs[0].split("-")[1]))]:
        for fmt in ("", "?format=pdf", "?format=xlsx"):
            error = assert_error(await globex.get(f"/api/v1/billing/invoices/{number}{fmt}"), 404,
                                 "invoice_not_found")
            assert error["message"] == absent["message"].replace(missing, number)
    # Shanghai's admin token on Globex's domain is no one there.
    reply = await globex.http("GET", f"/api/v1/billing/invoices/{theirs[0]}", host=globex.domain,
                              token=shanghai.admin_token)
    assert_error(reply, 401, "invalid_token")
    # Nothing of Shanghai's in Globex's statement or ledger.
    st = (await globex.get("/api/v1/billing/statement?from=2023-01-01&to=2024-01-01")).body["statement"]
    assert st["tenant"]["domain"] == globex.domain and CHINESE_NAME not in str(st)
    assert all(e["invoice"] is None or e["invoice"] in ours for e in st["entries"])


BILLING_PATHS = ["/api/v1/billing", "/api/v1/billing/ledger", "/api/v1/billing/statement",
                 "/api/v1/billing/statement?format=pdf", "/api/v1/billing/invoices"]


async def test_agents_may_not_read_billing(shanghai: Billed) -> None:
    number = (await shanghai.get("/api/v1/billing/invoices")).body["invoices"][0]["number"]
    for path in [*BILLING_PATHS, f"/api/v1/billing/invoices/{number}"]:
        assert_error(await shanghai.get(path, token=shanghai.agent_token), 403, "admin_only")


async def test_without_a_contract(settings: Settings, server: Server, http: Http) -> None:
    info = await make_tenant(settings, server, name="Newcomer")
    admin = await info.add_agent(role="admin")
    token = await _login(http, info.domain, admin.email)
    for path in BILLING_PATHS:
        error = assert_error(await http("GET", path, host=info.domain, token=token), 404, "no_contract")
        assert "no billing contract" in error["message"]
    assert_error(await http("GET", f"/api/v1/billing/invoices/{invoice_number(info.id, 1)}", host=info.domain,
                            token=token), 404, "invoice_not_found")


@pytest.mark.parametrize(("query", "code", "names"), [
    ("from=2023-13-01", "invalid_query", "from"), ("from=20230101", "invalid_query", "from"),
    ("to=2023-1-1", "invalid_query", "to"), ("from=2023-02-30", "invalid_query", "from"),
    ("from=%D9%A2023-01-01", "invalid_query", "from"), ("from=2023-01-01T00:00", "invalid_query", "from"),
    ("from=2023-01-01&from=2023-02-01", "invalid_query", "from"),
    ("from=2023-03-01&to=2023-02-01", "invalid_period", "from"), ("from=2023-03-01&to=2023-03-01", "invalid_period",
                                                                  "from"),
    ("from=2020-01-01&to=2023-01-04", "period_too_long", "1099"), ("format=docx", "invalid_query", "format"),
    ("format=PDF", "invalid_query", "format"), ("format=pdf&format=xlsx", "invalid_query", "format"),
])
async def test_bad_statement_queries(shanghai: Billed, query: str, code: str, names: str) -> None:
    error = assert_error(await shanghai.get(f"/api/v1/billing/statement?{query}"), 422, code)
    assert names in error["message"], error


async def test_bad_page_queries_and_far_dates(shanghai: Billed) -> None:
    for path in ("/api/v1/billing/ledger", "/api/v1/billing/invoices"):
        for query in ("limit=0", "limit=501", "limit=abc", "limit=+5", "after_id=0", "after_id=x",
                      f"after_id={2**63}", "after_id=1_0"):
            assert_error(await shanghai.get(f"{path}?{query}"), 422, "invalid_query")
        assert (await shanghai.get(f"{path}?after_id={2**63 - 1}")).body["next_after_id"] is None
    assert_error(await shanghai.get("/api/v1/billing/invoices/000001-00000001?format=csv"), 422, "invalid_query")
    # The edges of the calendar are periods like any other (nothing in them).
    for query in ("from=0001-01-01&to=0001-12-31", "from=9999-01-01&to=9999-12-31"):
        reply = await shanghai.get(f"/api/v1/billing/statement?{query}")
        assert reply.status == 200 and reply.body["statement"]["entries"] == [], reply


async def test_a_statement_holds_at_most_max_lines(settings: Settings, server: Server, http: Http,
                                                   db: Database) -> None:
    info = await make_tenant(settings, server, name="Busy")
    admin = await info.add_agent(role="admin")
    token = await _login(http, info.domain, admin.email)
    day = date(2026, 1, 1)
    async with db.session() as s:
        await billing.open_contract(s, info.id, price_per_seat_year=PRICE, currency="CNY", term_start=day,
                                    now=at(day), actor=OPERATOR)
        for _ in range(statements.MAX_STATEMENT_LINES):
            await billing.top_up(s, info.id, 1, now=at(day), actor=OPERATOR)
        await billing.top_up(s, info.id, 1, now=at(date(2026, 1, 2)), actor=OPERATOR)
    full = await http("GET", "/api/v1/billing/statement?from=2026-01-01&to=2026-01-02", host=info.domain, token=token)
    assert full.status == 200 and len(full.body["statement"]["entries"]) == statements.MAX_STATEMENT_LINES
    assert _minor(full.body["statement"]["closing_balance"]) == statements.MAX_STATEMENT_LINES
    assert_error(await http("GET", "/api/v1/billing/statement", host=info.domain, token=token), 422,
                 "statement_too_long")
