"""The tenant's billing, read-only: the contract and balance, the ledger, statements and invoices
(as JSON, PDF or .xlsx) for admins and owners; the owner alone gives notice. The documents come
from core.statements, which takes the tenant id: the operator's API serves the same ones for any
tenant (statement_response, invoices_response, invoice_response).

Every route runs through billing's breaker (core.breakers): while billing is switched off or
failing they answer 503 ``subsystem_offline`` with Retry-After, and their failures count."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from aiohttp import web

from admin_api import documents
from admin_api.responses import (
    ContractEnvelope,
    InvoiceEnvelope,
    InvoicesPage,
    LedgerPage,
    StatementEnvelope,
)
from admin_api.schemas import DocumentQuery, NoticeBody, PageQuery, StatementQuery
from core import billing, statements
from core.errors import InvalidInput
from core.models import MAX_BIG_ID
from web.api import RouteTable, WordId
from web.http import HUB, body, principal_of, query_date, query_int, query_value, word_param

ROUTES = RouteTable("billing")

# The longest invoice number (core.statements.invoice_number): 10 digits, a dash, 19 digits.
MAX_INVOICE_NUMBER = 40


def _format(request: web.Request) -> str:
    fmt = query_value(request, "format") or "json"
    if fmt not in documents.FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(documents.FORMATS)}, not {fmt[:40]!r}",
                           code="invalid_query")
    return fmt


def _page(request: web.Request) -> tuple[int | None, int]:
    after_id = query_int(request, "after_id", None, lo=1, hi=MAX_BIG_ID)
    limit = query_int(request, "limit", statements.DEFAULT_PAGE, lo=1, hi=statements.MAX_PAGE)
    return after_id, limit or statements.DEFAULT_PAGE


async def _download(document: statements.Statement | statements.Invoice, fmt: str) -> web.Response:
    data = await documents.render(document, cast(documents.Format, fmt))
    return web.Response(body=data, content_type=documents.CONTENT_TYPES[fmt], headers={
        "Content-Disposition": f'attachment; filename="{documents.filename(document, fmt)}"',
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-store",
    })


DOCUMENTS = "application/pdf, application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
INVOICE_NUMBER = {"invoice_number": WordId(MAX_INVOICE_NUMBER)}


@ROUTES.route("GET", "/api/v1/billing", summary="The tenant's contract, balance and seats paid and in use (admin)",
              response=ContractEnvelope)
async def get_billing(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    async with hub.breakers.run("billing"), hub.db.read(principal.tenant_id) as session:
        found = await statements.summary(session, principal.tenant_id)
    return web.json_response({"contract": found.as_dict()})


@ROUTES.route("GET", "/api/v1/billing/ledger",
              summary="The billing ledger, oldest first (?after_id=&limit=, at most 500) (admin)",
              response=LedgerPage, query=PageQuery)
async def get_ledger(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    after_id, limit = _page(request)
    async with hub.breakers.run("billing"), hub.db.read(principal.tenant_id) as session:
        currency, lines, next_after = await statements.ledger_page(session, principal.tenant_id, after_id=after_id,
                                                                   limit=limit)
    return web.json_response({"currency": currency, "minor_unit_digits": statements.minor_digits(currency),
                              "entries": [line.as_dict(currency) for line in lines], "next_after_id": next_after})


@ROUTES.route("GET", "/api/v1/billing/statement",
              summary="A statement for ?from=YYYY-MM-DD&to=YYYY-MM-DD (UTC, to excluded; default: the current "
                      "term) as ?format=json, pdf or xlsx (admin)",
              response=StatementEnvelope, media_type=DOCUMENTS, query=StatementQuery)
async def get_statement(request: web.Request) -> web.Response:
    principal = await principal_of(request, admin=True)
    return await statement_response(request, principal.tenant_id)


@ROUTES.route("GET", "/api/v1/billing/invoices",
              summary="The tenant's invoices (one per charge), oldest first (?after_id=&limit=) (admin)",
              response=InvoicesPage, query=PageQuery)
async def list_invoices(request: web.Request) -> web.Response:
    principal = await principal_of(request, admin=True)
    return await invoices_response(request, principal.tenant_id)


@ROUTES.route("GET", "/api/v1/billing/invoices/{invoice_number}",
              summary="One invoice as ?format=json, pdf or xlsx (admin)",
              response=InvoiceEnvelope, media_type=DOCUMENTS, query=DocumentQuery, path_params=INVOICE_NUMBER)
async def get_invoice(request: web.Request) -> web.Response:
    principal = await principal_of(request, admin=True)
    return await invoice_response(request, principal.tenant_id)


@ROUTES.route("POST", "/api/v1/billing/notice", summary="End the contract on a day at least 30 days away (no "
              "later than the term's end); the prepaid days after it are refunded then (owner)", body=NoticeBody,
              response=ContractEnvelope, errors=(409,))
async def give_notice(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, owner=True)
    data = await body(request, NoticeBody)
    async with hub.breakers.run("billing"), hub.db.session(principal.tenant_id) as session:
        await billing.give_notice(session, principal.tenant_id, ends_on=data.ends_on, now=datetime.now(UTC),
                                  actor=billing.Actor("agent", principal.agent_id))
        found = await statements.summary(session, principal.tenant_id)
    return web.json_response({"contract": found.as_dict()})


# --- shared with the operator's API, which serves the same documents for any tenant ----------------
async def statement_response(request: web.Request, tenant_id: int) -> web.Response:
    """The tenant's statement for the request's ?from, ?to and ?format."""
    hub = request.app[HUB]
    start, end, fmt = query_date(request, "from"), query_date(request, "to"), _format(request)
    async with hub.breakers.run("billing"):
        async with hub.db.read(tenant_id) as session:
            found = await statements.statement(session, tenant_id, start=start, end=end, now=datetime.now(UTC))
        if fmt == "json":
            return web.json_response({"statement": found.as_dict()})
        return await _download(found, fmt)


async def invoices_response(request: web.Request, tenant_id: int) -> web.Response:
    hub = request.app[HUB]
    after_id, limit = _page(request)
    async with hub.breakers.run("billing"), hub.db.read(tenant_id) as session:
        found, next_after = await statements.invoices(session, tenant_id, seller=statements.seller_of(hub.settings),
                                                      after_id=after_id, limit=limit)
    return web.json_response({"invoices": [i.summary() for i in found], "next_after_id": next_after})


async def invoice_response(request: web.Request, tenant_id: int) -> web.Response:
    """The tenant's invoice named by the path's {invoice_number}, in the request's ?format."""
    hub = request.app[HUB]
    number = word_param(request, "invoice_number", max_length=MAX_INVOICE_NUMBER)
    fmt = _format(request)
    async with hub.breakers.run("billing"):
        async with hub.db.read(tenant_id) as session:
            found = await statements.invoice(session, tenant_id, number, seller=statements.seller_of(hub.settings))
        if fmt == "json":
            return web.json_response({"invoice": found.as_dict()})
        return await _download(found, fmt)
