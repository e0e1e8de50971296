"""The operator's API, on the operator host only (``CHANNELHUB_OPERATOR_HOST``; web.http refuses
these paths on tenants' domains and everything else on the operator host).

Who may call what is docs/operator.md's table (tests/test_operator.py holds the code to it): the
``owner`` does everything, ``billing`` sets contracts and moves money, ``support`` looks after
tenants' domains and suspensions; every signed-in account reads. Every change is audited with the
account, the time, the address and what changed.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from aiohttp import web

from admin_api import downloads
from admin_api.operator.responses import (
    AccountEnvelope,
    AccountsList,
    AuditPage,
    EntryEnvelope,
    Ok,
    OperatorLogin,
    Renewal,
    SubsystemEnvelope,
    SubsystemHistory,
    SubsystemsList,
    TenantBilling,
    TenantEnvelope,
    TenantsPage,
    WindowEnvelope,
    WindowsList,
)
from admin_api.operator.schemas import (
    AccountPatch,
    AuditExportQuery,
    AuditQuery,
    CompensationBody,
    ContractTerms,
    CreateAccountBody,
    CreateTenantBody,
    DomainsBody,
    MaintenanceBody,
    MaintenanceQuery,
    NoticeBody,
    OperatorLoginBody,
    RepriceBody,
    SubsystemHistoryQuery,
    SubsystemSwitchBody,
    SuspendBody,
    TenantAvailabilityQuery,
    TenantPatch,
    TenantsQuery,
    TopUpBody,
    parse_moment,
)
from admin_api.responses import AvailabilityEnvelope, InvoiceEnvelope, InvoicesPage, PurgeEnvelope, StatementEnvelope
from admin_api.routes import audit as audit_routes
from admin_api.routes import availability as availability_routes
from admin_api.routes import billing as billing_routes
from admin_api.routes.billing import DOCUMENTS
from admin_api.schemas import ConfirmBody, DocumentQuery, PageQuery, StatementQuery
from core import availability, billing, breakers, operators, purge, tenants
from core.auth import announce_revoked
from core.errors import InvalidInput
from core.hub import Hub
from core.models import MAX_BIG_ID, MAX_ID, OperatorRole, TenantStatus, utcnow
from core.operators import Operator
from core.seats import clean_domain
from core.serialize import ledger_dict
from core.tenancy import announce_changed
from web.api import IntId, PathParam, RouteTable, WordId
from web.http import HUB, bearer_token, body, int_param, query_int, query_value, word_param
from web.schemas import Deleted

ROUTES = RouteTable("operator")
TENANT: dict[str, PathParam] = {"tenant_id": IntId(MAX_ID)}
ACCOUNT: dict[str, PathParam] = {"account_id": IntId(MAX_ID)}
TENANT_DOMAIN: dict[str, PathParam] = {**TENANT, "domain": WordId(253)}
SUBSYSTEM: dict[str, PathParam] = {"name": WordId(32)}
WINDOW: dict[str, PathParam] = {"window_id": IntId(MAX_ID)}
BILLING, SUPPORT = OperatorRole.BILLING.value, OperatorRole.SUPPORT.value


async def operator_of(request: web.Request, *roles: str) -> Operator:
    """The signed-in operator; ``roles``: those allowed besides the owner (none: the owner only;
    :data:`READ`: every role)."""
    hub = request.app[HUB]
    async with hub.db.read() as session:
        op = await operators.authenticate(session, bearer_token(request))
    op.require(*roles)
    return op


READ = (BILLING, SUPPORT)


def _tenant_id(request: web.Request) -> int:
    return int_param(request, "tenant_id", limit=MAX_ID)


async def changed(hub: Hub, tenant_id: int, *, sessions: bool = False) -> None:
    """After a tenant's domains or status changed (committed): every process serves the new ones;
    ``sessions``: its agents' open sockets re-check (and close when the tenant is no longer active)."""
    await announce_changed(hub, tenant_id)
    if sessions:
        await announce_revoked(hub, tenant_id, None)


# --- signing in -----------------------------------------------------------------------------------
@ROUTES.route("POST", "/operator/v1/auth/login", summary="Sign in as a member of the operator's staff; returns "
              "a bearer token for the operator host (429 after repeated failures)", body=OperatorLoginBody,
              auth=False, response=OperatorLogin, errors=(401, 429))
async def login(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    data = await body(request, OperatorLoginBody)
    token, account = await operators.login(hub.db, data.email, data.password, ip=request.remote)
    return web.json_response({"token": token, "account": operators.account_dict(account)})


@ROUTES.route("POST", "/operator/v1/auth/logout", summary="Revoke this token", response=Ok)
async def logout(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    op = await operator_of(request, *READ)
    async with hub.db.session() as session:
        await operators.logout(session, bearer_token(request) or "", by=op, ip=request.remote)
    return web.json_response({"ok": True})


@ROUTES.route("GET", "/operator/v1/me", summary="The signed-in operator account", response=AccountEnvelope)
async def me(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    op = await operator_of(request, *READ)
    async with hub.db.read() as session:
        rows = [a for a in await operators.accounts(session) if a["id"] == op.id]
    return web.json_response({"account": rows[0]})


# --- the operator's staff -----------------------------------------------------------------------
@ROUTES.route("GET", "/operator/v1/accounts", summary="The operator's staff accounts (owner)", response=AccountsList)
async def list_accounts(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    await operator_of(request)
    async with hub.db.read() as session:
        return web.json_response({"accounts": await operators.accounts(session)})


@ROUTES.route("POST", "/operator/v1/accounts", summary="Add a staff account: owner, billing or support (owner)",
              body=CreateAccountBody, response=AccountEnvelope, status=201, errors=(409,))
async def create_account(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    op = await operator_of(request)
    data = await body(request, CreateAccountBody)
    async with hub.db.session() as session:
        account = await operators.create_account(session, email=str(data.email), name=data.name,
                                                 password=data.password, role=data.role, actor=op.actor,
                                                 ip=request.remote)
        out = operators.account_dict(account)
    return web.json_response({"account": out}, status=201)


@ROUTES.route("PATCH", "/operator/v1/accounts/{account_id}", summary="Change a staff account's name, role or "
              "whether it is active; a change of role or a deactivation ends its sessions (owner)",
              body=AccountPatch, response=AccountEnvelope, errors=(409,), path_params=ACCOUNT)
async def update_account(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    op = await operator_of(request)
    account_id = int_param(request, "account_id", limit=MAX_ID)
    data = await body(request, AccountPatch)
    async with hub.db.session() as session:
        account = await operators.update_account(session, account_id, data.model_dump(exclude_unset=True), by=op,
                                                 ip=request.remote)
        out = operators.account_dict(account)
    return web.json_response({"account": out})


# --- tenants ------------------------------------------------------------------------------------
@ROUTES.route("GET", "/operator/v1/tenants", summary="Tenants with their domains, seats and contract, by id "
              "(?status=active|suspended|ended&after_id=&limit=)", response=TenantsPage, query=TenantsQuery)
async def list_tenants(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    await operator_of(request, *READ)
    status = request.query.get("status") or None
    if status is not None and status not in {s.value for s in TenantStatus}:
        raise InvalidInput(f"status must be one of {', '.join(s.value for s in TenantStatus)}",
                           code="invalid_query")
    after = query_int(request, "after_id", 0, lo=0, hi=MAX_ID)
    limit = query_int(request, "limit", 100, lo=1, hi=500)
    async with hub.db.read() as session:
        rows = await tenants.listing(session, status=status, after=after, limit=limit)
    return web.json_response({"tenants": rows})


@ROUTES.route("POST", "/operator/v1/tenants", summary="Create a tenant on its domains; with a contract it is "
              "billed, the top-up paid in and its owner's seat charged (402 and nothing made when short) "
              "(owner, billing)", body=CreateTenantBody, response=TenantEnvelope, status=201, errors=(402, 409))
async def create_tenant(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    op = await operator_of(request, BILLING)
    data = await body(request, CreateTenantBody)
    terms = tenants.Terms(data.contract.price_per_seat_year, data.contract.currency, data.contract.term_start) \
        if data.contract is not None else None
    owner = tenants.Owner(str(data.owner.email), data.owner.name, data.owner.password) if data.owner else None
    if terms is not None or data.top_up:
        # A billed tenant's contract, top-up and owner's seat are billing's work: not while it is offline.
        await hub.breakers.require("billing")
    async with hub.db.session() as session:
        tenant = await tenants.create(session, name=data.name, domains=data.domains, now=utcnow(), actor=op.actor,
                                      ip=request.remote, terms=terms, top_up=data.top_up, owner=owner)
        out = await tenants.describe(session, tenant)
    await changed(hub, tenant.id)
    return web.json_response({"tenant": out}, status=201)


@ROUTES.route("GET", "/operator/v1/tenants/{tenant_id}", summary="One tenant: status, domains, seats, contract",
              response=TenantEnvelope, path_params=TENANT)
async def get_tenant(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    await operator_of(request, *READ)
    async with hub.db.read() as session:
        return web.json_response({"tenant": await tenants.describe(session, await tenants.get(session,
                                                                                               _tenant_id(request)))})


@ROUTES.route("PATCH", "/operator/v1/tenants/{tenant_id}", summary="Rename a tenant or make another of its "
              "domains the primary one (owner, support)", body=TenantPatch, response=TenantEnvelope, path_params=TENANT)
async def update_tenant(request: web.Request) -> web.Response:
    return await _tenant_change(request, SUPPORT, TenantPatch, lambda s, tid, op, data: tenants.update(
        s, tid, name=data.name, primary_domain=data.primary_domain, actor=op.actor, ip=request.remote))


@ROUTES.route("POST", "/operator/v1/tenants/{tenant_id}/domains", summary="Serve a tenant on more domains "
              "(owner, support)", body=DomainsBody, response=TenantEnvelope, errors=(409,), path_params=TENANT)
async def add_domains(request: web.Request) -> web.Response:
    return await _tenant_change(request, SUPPORT, DomainsBody, lambda s, tid, op, data: tenants.add_domains(
        s, tid, data.domains, actor=op.actor, ip=request.remote))


@ROUTES.route("DELETE", "/operator/v1/tenants/{tenant_id}/domains/{domain}", summary="Stop serving a tenant on "
              "one of its domains (not its primary one) (owner, support)",
              response=TenantEnvelope, errors=(409,), path_params=TENANT_DOMAIN)
async def remove_domain(request: web.Request) -> web.Response:
    domain = clean_domain(word_param(request, "domain", max_length=253))
    return await _tenant_change(request, SUPPORT, None, lambda s, tid, op, data: tenants.remove_domain(
        s, tid, domain, actor=op.actor, ip=request.remote))


@ROUTES.route("POST", "/operator/v1/tenants/{tenant_id}/suspend", summary="Suspend a tenant: its agents are "
              "refused and signed out, its customers' messages still received (owner, support)", body=SuspendBody,
              response=TenantEnvelope, errors=(409,), path_params=TENANT)
async def suspend(request: web.Request) -> web.Response:
    return await _tenant_change(request, SUPPORT, SuspendBody, lambda s, tid, op, data: tenants.suspend(
        s, tid, now=utcnow(), actor=op.actor, ip=request.remote, reason=data.reason), sessions=True)


@ROUTES.route("POST", "/operator/v1/tenants/{tenant_id}/resume", summary="Serve a suspended tenant again (402 "
              "term_lapsed while its term is unpaid) (owner, support)",
              response=TenantEnvelope, errors=(402, 409), path_params=TENANT)
async def resume(request: web.Request) -> web.Response:
    return await _tenant_change(request, SUPPORT, None, lambda s, tid, op, data: tenants.resume(
        s, tid, now=utcnow(), actor=op.actor, ip=request.remote))


@ROUTES.route("POST", "/operator/v1/tenants/{tenant_id}/end", summary="End a tenant whose contract has ended (or "
              "that has none): nothing is served on its domains, its data waits for the purge (owner)",
              response=TenantEnvelope, errors=(409,), path_params=TENANT)
async def end(request: web.Request) -> web.Response:
    return await _tenant_change(request, None, None, lambda s, tid, op, data: tenants.end(
        s, tid, now=utcnow(), actor=op.actor, ip=request.remote), sessions=True)


@ROUTES.route("POST", "/operator/v1/tenants/{tenant_id}/purge", summary="Delete all of a tenant's data: confirm "
              "with its primary domain; 202 with the purge, which runs in the background; a running contract ends "
              "today, its unused days refunded, the balance left in the audit (owner)", body=ConfirmBody,
              response=PurgeEnvelope, status=202,
              path_params=TENANT)
async def purge_tenant(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    op = await operator_of(request)
    tenant_id = _tenant_id(request)
    data = await body(request, ConfirmBody)
    async with hub.db.session() as session:
        started = await purge.request(session, tenant_id, confirm=data.confirm, actor=op.actor, reason="operator",
                                      now=utcnow(), ip=request.remote)
        out = purge.purge_dict(started)
    await purge.announced(hub, tenant_id)
    return web.json_response({"purge": out}, status=202)


@ROUTES.route("GET", "/operator/v1/tenants/{tenant_id}/purge", summary="A tenant's purge and its progress (also "
              "after the tenant is gone)", response=PurgeEnvelope, path_params=TENANT)
async def purge_progress(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    await operator_of(request, *READ)
    return web.json_response({"purge": await purge.progress(hub, _tenant_id(request))})


async def _tenant_change(request: web.Request, role: str | None, model: Any, change: Any, *,
                         sessions: bool = False, subsystem: str | None = None) -> web.Response:
    """Check the operator's role, read the body, make the change, answer the tenant as it is now,
    and announce the change to every process. ``subsystem``: the change is that subsystem's work
    (billing), run through its breaker (503 ``subsystem_offline`` while it is offline)."""
    hub = request.app[HUB]
    op = await operator_of(request, *([role] if role else []))
    tenant_id = _tenant_id(request)
    data = await body(request, model) if model is not None else None
    async with _guard(hub, subsystem), hub.db.session() as session:
        await change(session, tenant_id, op, data)
        out = await tenants.describe(session, await tenants.get(session, tenant_id))
    await changed(hub, tenant_id, sessions=sessions)
    return web.json_response({"tenant": out})


# --- billing ------------------------------------------------------------------------------------
@ROUTES.route("PUT", "/operator/v1/tenants/{tenant_id}/contract", summary="Bill a tenant: its price per seat "
              "per year, currency and first day of its one-year term; its seats in use are charged from the "
              "balance at once (402 when short) (owner, billing)", body=ContractTerms,
              response=TenantEnvelope, errors=(402, 409), path_params=TENANT)
async def open_contract(request: web.Request) -> web.Response:
    async def change(session: Any, tenant_id: int, op: Operator, data: ContractTerms) -> None:
        await tenants.get(session, tenant_id, lock=True)
        await billing.open_contract(session, tenant_id, price_per_seat_year=data.price_per_seat_year,
                                    currency=data.currency, term_start=data.term_start, now=utcnow(), actor=op.actor)
        tenants.operator_audit(session, op.actor, "tenant.contract.open", tenant_id,
                               {"after": data.model_dump(mode="json")}, request.remote)

    return await _tenant_change(request, BILLING, ContractTerms, change, subsystem="billing")


@ROUTES.route("PATCH", "/operator/v1/tenants/{tenant_id}/contract", summary="Change a tenant's price per seat "
              "per year from its next renewal on; the running term stays at the price it was paid at "
              "(owner, billing)", body=RepriceBody, response=TenantEnvelope, errors=(409,), path_params=TENANT)
async def reprice(request: web.Request) -> web.Response:
    async def change(session: Any, tenant_id: int, op: Operator, data: RepriceBody) -> None:
        contract = await billing.reprice(session, tenant_id, data.price_per_seat_year, now=utcnow(), actor=op.actor)
        tenants.operator_audit(session, op.actor, "tenant.contract.reprice", tenant_id,
                               {"price_per_seat_year": contract.price_per_seat_year,
                                "next_price_per_seat_year": contract.next_price_per_seat_year,
                                "from": contract.term_end.isoformat()}, request.remote)

    return await _tenant_change(request, BILLING, RepriceBody, change, subsystem="billing")


def _guard(hub: Hub, subsystem: str | None) -> contextlib.AbstractAsyncContextManager[None]:
    return hub.breakers.run(subsystem) if subsystem is not None else contextlib.nullcontext()


async def _money(request: web.Request, model: Any, move: Any) -> web.Response:
    hub = request.app[HUB]
    op = await operator_of(request, BILLING)
    tenant_id = _tenant_id(request)
    data = await body(request, model)
    now = utcnow()
    async with hub.breakers.run("billing"), hub.db.session() as session:
        entry = await move(session, tenant_id, data, op, now)
        await session.flush()  # the entry's id
        tenants.operator_audit(session, op.actor, f"tenant.billing.{entry.kind}", tenant_id,
                               {"amount": entry.amount, "balance_after": entry.balance_after, **entry.detail},
                               request.remote)
        out = ledger_dict(entry)
    return web.json_response({"entry": out}, status=201)


@ROUTES.route("POST", "/operator/v1/tenants/{tenant_id}/top-ups", summary="Pay money into a tenant's prepaid "
              "balance (owner, billing)", body=TopUpBody,
              response=EntryEnvelope, status=201, errors=(409,), path_params=TENANT)
async def top_up(request: web.Request) -> web.Response:
    return await _money(request, TopUpBody, lambda s, tid, data, op, now: billing.top_up(
        s, tid, data.amount, now=now, actor=op.actor, reference=data.reference))


@ROUTES.route("POST", "/operator/v1/tenants/{tenant_id}/compensations", summary="Credit service time for "
              "downtime: what the paid seats cost for that many minutes (owner, billing)", body=CompensationBody,
              response=EntryEnvelope, status=201, errors=(409,), path_params=TENANT)
async def compensate(request: web.Request) -> web.Response:
    return await _money(request, CompensationBody, lambda s, tid, data, op, now: billing.compensate(
        s, tid, minutes=data.minutes, now=now, actor=op.actor, note=data.note))


@ROUTES.route("POST", "/operator/v1/tenants/{tenant_id}/notice", summary="End a tenant's contract on a day at "
              "least 30 days away; the unused prepaid days are refunded then (owner, billing)", body=NoticeBody,
              response=TenantEnvelope, errors=(409,), path_params=TENANT)
async def notice(request: web.Request) -> web.Response:
    async def change(session: Any, tenant_id: int, op: Operator, data: NoticeBody) -> None:
        await billing.give_notice(session, tenant_id, ends_on=data.ends_on, now=utcnow(), actor=op.actor)
        tenants.operator_audit(session, op.actor, "tenant.contract.notice", tenant_id,
                               {"ends_on": data.ends_on.isoformat()}, request.remote)

    return await _tenant_change(request, BILLING, NoticeBody, change, subsystem="billing")


@ROUTES.route("POST", "/operator/v1/tenants/{tenant_id}/renew", summary="Do now what is due on a tenant's "
              "contract (a renewal after a top-up resumes a lapsed tenant) (owner, billing)",
              response=Renewal, errors=(409,), path_params=TENANT)
async def renew(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    op = await operator_of(request, BILLING)
    tenant_id = _tenant_id(request)
    async with hub.breakers.run("billing"), hub.db.session() as session:
        await tenants.get(session, tenant_id)
        renewal = await billing.renew(session, tenant_id, now=utcnow(), actor=op.actor)
        tenants.operator_audit(session, op.actor, "tenant.contract.renew", tenant_id,
                               {"outcome": renewal.outcome, "shortfall": renewal.shortfall}, request.remote)
        out = await tenants.describe(session, await tenants.get(session, tenant_id))
    await changed(hub, tenant_id, sessions=True)
    return web.json_response({"outcome": renewal.outcome, "shortfall": renewal.shortfall, "tenant": out})


@ROUTES.route("GET", "/operator/v1/tenants/{tenant_id}/billing", summary="A tenant's contract, balance and "
              "ledger entries (?after_id=&limit=)", response=TenantBilling, query=PageQuery, path_params=TENANT)
async def tenant_billing(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    await operator_of(request, *READ)
    tenant_id = _tenant_id(request)
    after = query_int(request, "after_id", 0, lo=0, hi=MAX_BIG_ID)
    limit = query_int(request, "limit", 200, lo=1, hi=1000)
    async with hub.breakers.run("billing"), hub.db.read() as session:
        tenant = await tenants.get(session, tenant_id)
        contract = await billing.contract_of(session, tenant_id)
        entries = await billing.ledger(session, tenant_id, after=after, limit=limit)
        return web.json_response({
            "tenant_id": tenant.id, "contract": tenants.contract_dict(contract) if contract else None,
            "balance": await billing.balance(session, tenant_id),
            "seats_paid": await billing.seats_paid(session, tenant_id),
            "seats_in_use": await billing.seats_in_use(session, tenant_id),
            "entries": [ledger_dict(e) for e in entries]})


@ROUTES.route("GET", "/operator/v1/tenants/{tenant_id}/billing/statement", summary="A tenant's statement for "
              "?from=YYYY-MM-DD&to=YYYY-MM-DD (UTC, to excluded; default: the current term) as ?format=json, pdf "
              "or xlsx", response=StatementEnvelope, media_type=DOCUMENTS, query=StatementQuery, path_params=TENANT)
async def tenant_statement(request: web.Request) -> web.Response:
    return await billing_routes.statement_response(request, await _readable_tenant(request))


@ROUTES.route("GET", "/operator/v1/tenants/{tenant_id}/billing/invoices", summary="A tenant's invoices (one per "
              "charge), oldest first (?after_id=&limit=)", response=InvoicesPage, query=PageQuery, path_params=TENANT)
async def tenant_invoices(request: web.Request) -> web.Response:
    return await billing_routes.invoices_response(request, await _readable_tenant(request))


@ROUTES.route("GET", "/operator/v1/tenants/{tenant_id}/billing/invoices/{invoice_number}", summary="One of a "
              "tenant's invoices as ?format=json, pdf or xlsx",
              response=InvoiceEnvelope, media_type=DOCUMENTS, query=DocumentQuery,
              path_params={**TENANT, **billing_routes.INVOICE_NUMBER})
async def tenant_invoice(request: web.Request) -> web.Response:
    return await billing_routes.invoice_response(request, await _readable_tenant(request))


async def _readable_tenant(request: web.Request) -> int:
    """The path's tenant, which must exist, for a signed-in operator of any role."""
    hub = request.app[HUB]
    await operator_of(request, *READ)
    tenant_id = _tenant_id(request)
    async with hub.db.read() as session:
        await tenants.get(session, tenant_id)
    return tenant_id


@ROUTES.route("GET", "/operator/v1/audit", summary="The operator's audit trail: every change by the operator's "
              "staff, with actor, time, address and what changed (?tenant_id=&after_id=&limit=)",
              response=AuditPage, query=AuditQuery)
async def audit_trail(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    await operator_of(request, *READ)
    tenant_id = query_int(request, "tenant_id", None, lo=1, hi=MAX_ID)
    after = query_int(request, "after_id", 0, lo=0, hi=MAX_BIG_ID)
    limit = query_int(request, "limit", 200, lo=1, hi=1000)
    async with hub.db.read() as session:
        return web.json_response({"entries": await operators.trail(session, tenant_id=tenant_id, after=after,
                                                                   limit=limit)})


@ROUTES.route("GET", "/operator/v1/audit/export", summary="The operator's audit trail as ?format=csv or xlsx, "
              "newest first (?tenant_id=, from, to, actor_type, actor_id, action, target_type, target_id)",
              media_type=downloads.MEDIA_TYPES, query=AuditExportQuery)
async def export_audit_trail(request: web.Request) -> web.StreamResponse:
    await operator_of(request, *READ)
    about = query_int(request, "tenant_id", None, lo=1, hi=MAX_ID)
    filters = audit_routes.audit_filter(request, None, about_tenant=about)
    return await audit_routes.export_response(request, filters, "operator-audit")


# --- degradation: the subsystems' switches and breakers (core.breakers) ------------------------------
@ROUTES.route("GET", "/operator/v1/subsystems", summary="Billing, statistics and reports: each one's state "
              "(closed, open, half_open, or off by the operator), its breaker and its recent changes",
              response=SubsystemsList)
async def list_subsystems(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    await operator_of(request, *READ)
    statuses = await hub.breakers.statuses(fresh=True)
    return web.json_response({"subsystems": [statuses[n].as_dict() for n in breakers.SUBSYSTEMS]})


@ROUTES.route("PUT", "/operator/v1/subsystems/{name}", summary="Switch a subsystem off (its work and routes "
              "answer 503 subsystem_offline; messaging goes on) or on again (its breaker closes; what it "
              "missed is caught up), saying why (owner, support)", body=SubsystemSwitchBody,
              response=SubsystemEnvelope, path_params=SUBSYSTEM)
async def switch_subsystem(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    op = await operator_of(request, SUPPORT)
    name = breakers.known(word_param(request, "name", max_length=32))
    data = await body(request, SubsystemSwitchBody)
    status = await hub.breakers.switch(name, enabled=data.enabled, reason=data.reason,
                                       actor=breakers.Actor("operator", op.id), ip=request.remote)
    return web.json_response({"subsystem": status.as_dict()})


@ROUTES.route("GET", "/operator/v1/subsystems/{name}/history", summary="Every change of a subsystem's state, "
              "newest first, by the operator or by its breaker (?before_id=&limit=)", response=SubsystemHistory,
              query=SubsystemHistoryQuery, path_params=SUBSYSTEM)
async def subsystem_history(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    await operator_of(request, *READ)
    name = breakers.known(word_param(request, "name", max_length=32))
    before_id = query_int(request, "before_id", None, lo=1, hi=MAX_BIG_ID)
    limit = query_int(request, "limit", 100, lo=1, hi=1000) or 100
    changes = await hub.breakers.history(name, before_id=before_id, limit=limit)
    return web.json_response({"subsystem": name, "changes": [c.as_dict() for c in changes],
                              "next_before_id": changes[-1].id if len(changes) == limit else None})
# --- availability (#15) -----------------------------------------------------------------------------
@ROUTES.route("GET", "/operator/v1/tenants/{tenant_id}/availability", summary="A tenant's availability report "
              "of a calendar month (UTC, ?month=YYYY-MM; default: the current month so far), as its admins see it",
              response=AvailabilityEnvelope, query=TenantAvailabilityQuery, path_params=TENANT)
async def tenant_availability(request: web.Request) -> web.Response:
    return await availability_routes.report_response(request, await _readable_tenant(request))


def _query_time(request: web.Request, name: str) -> datetime | None:
    raw = query_value(request, name)
    if raw is None:
        return None
    try:
        return parse_moment(raw)
    except ValueError as exc:
        raise InvalidInput(f"{name}: {exc}", code="invalid_query") from None


@ROUTES.route("GET", "/operator/v1/maintenance", summary="Announced maintenance windows, by start "
              "(?from=&to= ISO 8601 times: those overlapping; ?tenant_id=: that tenant's and every tenant's)",
              response=WindowsList, query=MaintenanceQuery)
async def list_maintenance(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    await operator_of(request, *READ)
    start, end = _query_time(request, "from"), _query_time(request, "to")
    tenant_id = query_int(request, "tenant_id", None, lo=1, hi=MAX_ID)
    if start is not None and end is not None and not start < end:
        raise InvalidInput("from must be before to", code="invalid_query")
    async with hub.db.read() as session:
        windows = await availability.list_windows(session, start=start, end=end, tenant_id=tenant_id)
    return web.json_response({"windows": [w.as_dict() for w in windows]})


@ROUTES.route("POST", "/operator/v1/maintenance", summary="Announce a maintenance window for one tenant or "
              "all, beginning now or later: outages inside it do not count against availability (owner, support)",
              body=MaintenanceBody,
              response=WindowEnvelope, status=201)
async def create_maintenance(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    op = await operator_of(request, SUPPORT)
    data = await body(request, MaintenanceBody)
    async with hub.db.session() as session:
        window = await availability.add_window(session, start=data.start, end=data.end, reason=data.reason,
                                               tenant_id=data.tenant_id, actor=op.actor, now=utcnow(),
                                               ip=request.remote)
    return web.json_response({"window": window.as_dict()}, status=201)


@ROUTES.route("DELETE", "/operator/v1/maintenance/{window_id}", summary="Withdraw a maintenance window "
              "(owner, support)", response=Deleted, path_params=WINDOW)
async def delete_maintenance(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    op = await operator_of(request, SUPPORT)
    window_id = int_param(request, "window_id", limit=MAX_ID)
    async with hub.db.session() as session:
        await availability.remove_window(session, window_id, actor=op.actor, ip=request.remote)
    return web.json_response({"deleted": window_id})
