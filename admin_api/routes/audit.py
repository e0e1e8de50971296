"""The tenant's audit log and login log, for its owner and admins: read a page at a time (newest
first, ``?before_id=`` from the page before), or downloaded as CSV or .xlsx, with the same filters.

What is audited and what is not: docs/api.md ("The audit and login logs"). The operator's trail
is read on the operator host (admin_api/operator/routes.py), with the same filters and export.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from admin_api import downloads
from admin_api.responses import AuditRowsPage, LoginRowsPage
from admin_api.schemas import AuditExportQuery, AuditQuery, LoginExportQuery, LoginQuery
from core import audit
from core.errors import InvalidInput
from core.models import MAX_BIG_ID, MAX_ID
from web.api import RouteTable
from web.http import HUB, principal_of, query_int, query_value

ROUTES = RouteTable("audit")

ACTORS = ("agent", "operator", "system", "anonymous")
OUTCOMES = ("success", "bad_password", "unknown_user", "disabled", "locked", "throttled")


def query_time(request: web.Request, name: str) -> datetime | None:
    raw = query_value(request, name)
    if raw is None:
        return None
    try:
        if len(raw) > 40:
            raise ValueError(raw)
        at = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a time written ISO 8601 (2026-12-01T08:00:00Z), not {raw[:40]!r}",
                           code="invalid_query") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def query_text(request: web.Request, name: str, max_length: int, choices: tuple[str, ...] = ()) -> str | None:
    raw = query_value(request, name)
    if raw is None:
        return None
    if len(raw) > max_length:
        raise InvalidInput(f"{name} is longer than {max_length} characters", code="invalid_query")
    if choices and raw not in choices:
        raise InvalidInput(f"{name} must be one of {', '.join(choices)}, not {raw[:40]!r}", code="invalid_query")
    return raw


def audit_filter(request: web.Request, tenant_id: int | None, *, about_tenant: int | None = None) -> audit.AuditFilter:
    """The audit filters of the request's query (schemas.AuditFilterQuery says which)."""
    return audit.AuditFilter(
        tenant_id=tenant_id, since=query_time(request, "from"), until=query_time(request, "to"),
        actor_type=query_text(request, "actor_type", 20, ACTORS),
        actor_id=query_int(request, "actor_id", None, lo=1, hi=MAX_ID),
        action=query_text(request, "action", 80), target_type=query_text(request, "target_type", 40),
        target_id=query_text(request, "target_id", 80), about_tenant=about_tenant)


def login_filter(request: web.Request, tenant_id: int) -> audit.LoginFilter:
    return audit.LoginFilter(
        tenant_id=tenant_id, since=query_time(request, "from"), until=query_time(request, "to"),
        agent_id=query_int(request, "agent_id", None, lo=1, hi=MAX_ID), email=query_text(request, "email", 320),
        outcome=query_text(request, "outcome", 20, OUTCOMES), ip=query_text(request, "ip", 64))


def export_format(request: web.Request) -> str:
    return query_text(request, "format", 10, downloads.FORMATS) or "csv"


def paging(request: web.Request) -> tuple[int | None, int]:
    return (query_int(request, "before_id", None, lo=1, hi=MAX_BIG_ID),
            query_int(request, "limit", audit.DEFAULT_PAGE, lo=1, hi=audit.MAX_PAGE))


AUDIT_COLUMNS: list[downloads.Column] = [
    ("id", lambda r: r["id"]), ("at (UTC)", lambda r: r["at"]), ("actor_type", lambda r: r["actor_type"]),
    ("actor_id", lambda r: r["actor_id"]), ("action", lambda r: r["action"]),
    ("target_type", lambda r: r["target_type"]), ("target_id", lambda r: r["target_id"]),
    ("details", lambda r: audit.details_text(r["details"])), ("ip", lambda r: r["ip"]), ("hash", lambda r: r["hash"]),
]
LOGIN_COLUMNS: list[downloads.Column] = [
    ("id", lambda r: r["id"]), ("at (UTC)", lambda r: r["at"]), ("agent_id", lambda r: r["agent_id"]),
    ("email", lambda r: r["email"]), ("ip", lambda r: r["ip"]), ("user_agent", lambda r: r["user_agent"]),
    ("outcome", lambda r: r["outcome"]),
]


async def audit_page_response(request: web.Request, filters: audit.AuditFilter | audit.LoginFilter) -> web.Response:
    hub = request.app[HUB]
    before_id, limit = paging(request)
    async with hub.db.read(filters.tenant_id) as session:
        entries, next_before = await audit.page(session, filters, before_id=before_id, limit=limit)
    return web.json_response({"entries": entries, "next_before_id": next_before})


async def export_response(request: web.Request, filters: audit.AuditFilter | audit.LoginFilter,
                          name: str) -> web.StreamResponse:
    fmt = export_format(request)
    columns = AUDIT_COLUMNS if isinstance(filters, audit.AuditFilter) else LOGIN_COLUMNS
    return await downloads.respond(request, fmt, name, columns, audit.rows(request.app[HUB].db, filters))


@ROUTES.route("GET", "/api/v1/audit", summary="The audit log: every change by the tenant's admins and agents "
              "to its configuration, newest first (filters; ?before_id=&limit=, at most 500) (admin)",
              response=AuditRowsPage, query=AuditQuery)
async def list_audit(request: web.Request) -> web.Response:
    principal = await principal_of(request, admin=True)
    return await audit_page_response(request, audit_filter(request, principal.tenant_id))


@ROUTES.route("GET", "/api/v1/audit/export", summary="The audit log as ?format=csv or xlsx, with the same "
              "filters (admin)", media_type=downloads.MEDIA_TYPES, query=AuditExportQuery)
async def export_audit(request: web.Request) -> web.StreamResponse:
    principal = await principal_of(request, admin=True)
    filters = audit_filter(request, principal.tenant_id)
    return await export_response(request, filters, "audit-log")


@ROUTES.route("GET", "/api/v1/logins", summary="The login log: every sign-in attempt, failed ones too, with "
              "time, address, user agent and outcome, newest first (filters; ?before_id=&limit=) (admin)",
              response=LoginRowsPage, query=LoginQuery)
async def list_logins(request: web.Request) -> web.Response:
    principal = await principal_of(request, admin=True)
    return await audit_page_response(request, login_filter(request, principal.tenant_id))


@ROUTES.route("GET", "/api/v1/logins/export", summary="The login log as ?format=csv or xlsx, with the same "
              "filters (admin)", media_type=downloads.MEDIA_TYPES, query=LoginExportQuery)
async def export_logins(request: web.Request) -> web.StreamResponse:
    principal = await principal_of(request, admin=True)
    filters = login_filter(request, principal.tenant_id)
    return await export_response(request, filters, "login-log")
