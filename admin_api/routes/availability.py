"""The tenant's availability (#15): the monthly report of what the probers saw, for admins and
the owner. The figures come from core.availability (its docstring says how they are reckoned); the
operator's API serves the same report for any tenant (report_response)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web

from admin_api.responses import AvailabilityEnvelope
from admin_api.schemas import AvailabilityQuery
from core import availability
from web.api import RouteTable
from web.http import HUB, principal_of, query_value

ROUTES = RouteTable("availability")


@ROUTES.route("GET", "/api/v1/availability", summary="The availability report of a calendar month (UTC, "
              "?month=YYYY-MM; default: the current month so far): availability against the 99.9 % promise, "
              "counted downtime, each incident, unknown time, a figure per day, and the closed month's "
              "compensation (admin)", response=AvailabilityEnvelope, query=AvailabilityQuery)
async def get_availability(request: web.Request) -> web.Response:
    principal = await principal_of(request, admin=True)
    return await report_response(request, principal.tenant_id)


async def report_response(request: web.Request, tenant_id: int) -> web.Response:
    """The tenant's report for the request's ?month. Reports are a subsystem that can be taken
    offline (core.breakers): switched off, or failing again and again, it answers 503
    subsystem_offline while messaging goes on."""
    hub = request.app[HUB]
    now = datetime.now(UTC)
    month = availability.parse_month(query_value(request, "month"), now)
    async with hub.breakers.run("reports"), hub.db.read(tenant_id) as session:
        report = await availability.month_report(session, tenant_id, month, now=now,
                                                  interval=timedelta(seconds=hub.settings.probe_interval))
    return web.json_response({"availability": report})
