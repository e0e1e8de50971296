"""The reports on agents, groups and demand (#17), for supervisors and up: JSON, or the same rows
as an .xlsx download. Read from the rollups (core.rollups), which a background job keeps up with
the events; a report first lets the rollups read what is new (a few batches at most, through the
statistics breaker: while statistics are degraded the figures are those of when it went offline).
Reports can be taken offline (core.breakers "reports": 503 subsystem_offline) without touching
messaging. docs/reports.md defines every figure."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from admin_api import downloads
from admin_api.responses import AgentsReportEnvelope, DemandReportEnvelope, GroupsReportEnvelope
from admin_api.schemas import ReportQuery
from core import reports, rollups
from core.auth import Principal
from core.breakers import SubsystemOffline
from core.errors import Forbidden, InvalidInput
from core.metrics import Clock
from core.models import MAX_ID
from web.api import RouteTable
from web.http import HUB, principal_of, query_date, query_int, query_value

ROUTES = RouteTable("reports")

# Batches of events a report lets the rollups read before it answers (core.rollups.BATCH each):
# beyond that it answers from what they have, and the background job catches up.
CATCH_UP_BATCHES = 4
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

Builder = Callable[[AsyncSession, int, reports.Filters, Clock], Awaitable[dict[str, Any]]]


def _text(request: web.Request, name: str, limit: int) -> str | None:
    raw = query_value(request, name)
    if raw is not None and len(raw) > limit:
        raise InvalidInput(f"{name} is longer than {limit} characters", code="invalid_query")
    return raw


@dataclass(frozen=True)
class ReportAsk:
    """A report's query as asked (docs/reports.md, "The reports"), by a supervisor or above: the
    agents, groups and demand reports and the SLA breach report (admin_api/routes/sla.py) read it
    alike."""

    principal: Principal
    start: date | None
    end: date | None
    channel: str | None
    group_id: int | None
    agent_id: int | None
    tag: str | None
    format: str

    async def filters(self, session: AsyncSession) -> tuple[reports.Filters, Clock]:
        """The period resolved in the tenant's reporting time zone (default: the last 30 days)."""
        clock, _ = await rollups.tenant_clock(session, self.principal.tenant_id)
        start, end = reports.period(self.start, self.end, clock.day(datetime.now(UTC)))
        return reports.Filters(start, end, channel=self.channel, group_id=self.group_id, agent_id=self.agent_id,
                               tag=self.tag), clock


async def report_ask(request: web.Request, formats: tuple[str, ...] = ("json", "xlsx")) -> ReportAsk:
    principal = await principal_of(request)
    if not principal.sees_all:
        raise Forbidden("reports are for supervisors, admins and owners", code="supervisor_only")
    fmt = query_value(request, "format") or "json"
    if fmt not in formats:
        raise InvalidInput(f"format must be {' or '.join(formats)}, not {fmt[:40]!r}", code="invalid_query")
    return ReportAsk(principal, query_date(request, "from"), query_date(request, "to"), _text(request, "channel", 40),
                     query_int(request, "group_id", None, lo=1, hi=MAX_ID),
                     query_int(request, "agent_id", None, lo=1, hi=MAX_ID), _text(request, "tag", 64), fmt)


async def _report(request: web.Request, kind: str, build: Builder) -> web.StreamResponse:
    ask = await report_ask(request)
    hub = request.app[HUB]
    tenant_id = ask.principal.tenant_id
    async with hub.breakers.run("reports"):
        with contextlib.suppress(SubsystemOffline):
            await hub.breakers.call("statistics", lambda: rollups.catch_up(hub.db, tenant_id,
                                                                           batches=CATCH_UP_BATCHES))
        async with hub.db.read(tenant_id) as session:
            filters, clock = await ask.filters(session)
            report = await build(session, tenant_id, filters, clock)
    fmt = ask.format
    if fmt == "json":
        return web.json_response({"report": report})
    headings, rows = reports.table(kind, report)

    async def one_batch() -> AsyncIterator[list[dict[str, Any]]]:
        yield rows
    return await downloads.respond(request, "xlsx", f"report-{kind}", [(h, itemgetter(h)) for h in headings],
                                   one_batch())


_COMMON = ("?from=YYYY-MM-DD&to=YYYY-MM-DD (days of the tenant's reporting time zone, both included; default: "
           "the last 30 days), channel, group_id, agent_id, tag; format=json or xlsx (supervisors and up)")


@ROUTES.route("GET", "/api/v1/reports/agents", summary="Agent performance: the metrics (docs/reports.md) per "
              "agent and in total, " + _COMMON, response=AgentsReportEnvelope, media_type=XLSX, query=ReportQuery)
async def agents_report(request: web.Request) -> web.StreamResponse:
    return await _report(request, "agents", reports.agents_report)


@ROUTES.route("GET", "/api/v1/reports/groups", summary="The metrics per group (of the ticket when each counted "
              "thing happened) and in total, " + _COMMON, response=GroupsReportEnvelope, media_type=XLSX,
              query=ReportQuery)
async def groups_report(request: web.Request) -> web.StreamResponse:
    return await _report(request, "groups", reports.groups_report)


@ROUTES.route("GET", "/api/v1/reports/demand", summary="Customer demand: tickets received per day, hour of day, "
              "weekday, channel and tag, " + _COMMON, response=DemandReportEnvelope, media_type=XLSX,
              query=ReportQuery)
async def demand_report(request: web.Request) -> web.StreamResponse:
    return await _report(request, "demand", reports.demand_report)
