"""The availability promise (#15): probes in through core.availability.record (the path the probers
use), with injected times; outages, the monthly report, maintenance windows, closing and
compensation out through the functions the hub runs and the HTTP API users call.

Months the tests close lie after the real clock's (2031 on), so the test server's own availability
round (which closes what is over by the wall clock) never closes them first.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from channelhub.app import build_hub
from core import availability, billing
from core.availability import Probe
from core.config import Settings
from core.db import Database
from core.models import AuditLog, AvailabilityMonth
from tests.conftest import PASSWORD, Server, TenantInfo, make_tenant
from tests.processes import child_env, spawn, stop
from tests.support import Http, assert_error, open_billing
from tests.test_operator import Desk, desk  # noqa: F401  (the operator's staff, a fixture)
from web.http import HUB

SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
INTERVAL = timedelta(seconds=30)
CAUSE = "webchat: no echo within 10 s"


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url)
    yield database
    await database.dispose()


async def put(db: Database, probes: list[Probe]) -> None:
    """Store probes the way a prober does."""
    for chunk in range(0, len(probes), 5000):
        async with db.session() as session:
            await availability.record(session, probes[chunk:chunk + 5000])


def every(tenant_id: int, start: datetime, end: datetime, *, step: timedelta = INTERVAL, prober: str = "p1",
          down: Callable[[datetime], bool] = lambda at: False, cause: str = CAUSE) -> list[Probe]:
    """A prober's probes every ``step`` in [start, end), failing when ``down(at)``."""
    out, at = [], start
    while at < end:
        failed = down(at)
        out.append(Probe(tenant_id, prober, at, not failed, cause if failed else None, 120))
        at += step
    return out


def between(lo: datetime, hi: datetime) -> Callable[[datetime], bool]:
    return lambda at: lo <= at < hi


async def report(db: Database, tenant_id: int, month: str, *, now: datetime,
                 interval: timedelta = INTERVAL) -> dict[str, Any]:
    async with db.read() as session:
        return await availability.month_report(session, tenant_id, availability.parse_month(month, now), now=now,
                                               interval=interval)


@pytest.fixture
async def tenant_id(settings: Settings, server: Server) -> int:
    return (await make_tenant(settings, server)).id


# --- outages: the 5-minute threshold, measured by probe times --------------------------------------------
async def test_an_outage_of_4_59_does_not_count_and_one_of_5_00_does(db: Database, tenant_id: int) -> None:
    day = t("2026-03-10T00:00:00")
    # Failures from 10:00:00; the first success at 10:04:59 (no probe at 10:04:30): 4:59.
    short = [p for p in every(tenant_id, day.replace(hour=10), day.replace(hour=10, minute=4, second=30),
                              down=lambda at: True)]
    short.append(Probe(tenant_id, "p1", day.replace(hour=10, minute=4, second=59), True))
    short += every(tenant_id, day.replace(hour=10, minute=5, second=30), day.replace(hour=11))
    # Failures from 12:00:00; the first success at 12:05:00 exactly: 5:00.
    full = every(tenant_id, day.replace(hour=12), day.replace(hour=13), down=between(day.replace(hour=12),
                                                                                     day.replace(hour=12, minute=5)))
    await put(db, short + full)
    got = await report(db, tenant_id, "2026-03", now=t("2026-04-02T00:00:00"))
    first, second = got["incidents"]
    assert (first["start"], first["end"], first["minutes"], first["counted"]) == (
        "2026-03-10T10:00:00+00:00", "2026-03-10T10:04:59+00:00", round(299 / 60, 3), False)
    assert (second["start"], second["end"], second["minutes"], second["counted"]) == (
        "2026-03-10T12:00:00+00:00", "2026-03-10T12:05:00+00:00", 5.0, True)
    assert second["cause"] == CAUSE and second["counted_minutes"] == 5.0 and first["counted_minutes"] == 0.0
    assert got["downtime_minutes"] == 5.0
    # Only two hours of the month have probe data: the rest is unknown, so no availability at all,
    # and the measured one is over those two hours (and the tolerated round after each).
    assert got["availability"] is None and got["meets_target"] is None
    assert got["unknown_minutes"] == pytest.approx(31 * 1440 - 121)
    assert got["measured_availability"] == pytest.approx(100 * (121 - 5) / 121, abs=0.001)
    tenth = next(d for d in got["days"] if d["date"] == "2026-03-10")
    assert tenth["downtime_minutes"] == 5.0 and tenth["availability"] is None
    assert all(d["availability"] is None for d in got["days"])


async def test_one_prober_failing_alone_is_no_outage(db: Database, tenant_id: int) -> None:
    start, end = t("2026-05-01T00:00:00"), t("2026-05-01T02:00:00")
    # p1 fails for 20 minutes while p2, a few seconds later in each round, gets through.
    a = every(tenant_id, start, end, prober="p1", down=between(t("2026-05-01T00:10:00"), t("2026-05-01T00:30:00")))
    b = every(tenant_id, start + 7 * SECOND, end, prober="p2",
              down=between(t("2026-05-01T01:00:00"), t("2026-05-01T01:08:00")), cause="agent socket: refused")
    # Then both fail, from 01:00 (p1, cause "dns") to 01:08; p1 fails first, so its cause leads.
    a = [Probe(p.tenant_id, p.prober, p.at, False, "dns: no answer") if t("2026-05-01T01:00:00") <= p.at
         < t("2026-05-01T01:08:00") else p for p in a]
    await put(db, a + b)
    got = await report(db, tenant_id, "2026-05", now=t("2026-06-01T00:00:00"))
    [incident] = got["incidents"]
    assert incident["start"] == "2026-05-01T01:00:00+00:00" and incident["end"] == "2026-05-01T01:08:00+00:00"
    assert incident["cause"] == "dns: no answer"
    assert incident["causes"] == ["dns: no answer", "agent socket: refused"]
    assert got["downtime_minutes"] == 8.0


async def test_an_outage_over_a_month_boundary_is_split(db: Database, tenant_id: int) -> None:
    # Down 23:57 to 00:03 over the month's end (6 minutes: counts, 3 in each month); down 23:10 to
    # 23:14 (4 minutes: counts nowhere). Probes from 31 January 2031 23:00 to 1 February 00:30.
    down = between(t("2031-01-31T23:57:00"), t("2031-02-01T00:03:00"))
    short = between(t("2031-01-31T23:10:00"), t("2031-01-31T23:14:00"))
    await put(db, every(tenant_id, t("2031-01-31T23:00:00"), t("2031-02-01T00:30:00"),
                        down=lambda at: down(at) or short(at)))
    now = t("2031-02-02T00:00:00")
    january = await report(db, tenant_id, "2031-01", now=now)
    february = await report(db, tenant_id, "2031-02", now=now)
    assert [i["counted"] for i in january["incidents"]] == [False, True]
    jan, feb = january["incidents"][1], february["incidents"][0]
    assert jan == feb | {"minutes_in_month": 3.0, "counted_minutes": 3.0}
    assert (feb["minutes"], feb["minutes_in_month"], feb["counted_minutes"]) == (6.0, 3.0, 3.0)
    assert january["downtime_minutes"] == february["downtime_minutes"] == 3.0
    assert january["days"][-1]["downtime_minutes"] == 3.0 and february["days"][0]["downtime_minutes"] == 3.0
    # February is not over at `now`: its figures are as of now less one interval.
    assert february["as_of"] == (now - INTERVAL).isoformat() and not february["complete"]


async def test_announced_maintenance_is_excluded(db: Database, tenant_id: int, settings: Settings,
                                                 server: Server) -> None:
    # Down 10:00-10:20 with a window 10:00-10:15: 5 minutes count. Down 14:00-14:06 with a window
    # 13:30-14:05:30: the outage lasted 6 minutes, so it counts, but only its 30 s outside the window.
    day = t("2026-06-15T00:00:00")
    await put(db, every(tenant_id, day.replace(hour=9), day.replace(hour=15), down=lambda at: between(
        day.replace(hour=10), day.replace(hour=10, minute=20))(at) or between(
        day.replace(hour=14), day.replace(hour=14, minute=6))(at)))
    ops = billing.Actor("operator", None)
    async with db.session() as session:
        await availability.add_window(session, start=day.replace(hour=10), end=day.replace(hour=10, minute=15),
                                      reason="database upgrade", tenant_id=tenant_id, actor=ops, now=day)
        await availability.add_window(session, start=day.replace(hour=13, minute=30),
                                      end=day.replace(hour=14, minute=5, second=30), reason="network",
                                      tenant_id=tenant_id, actor=ops, now=day)
    got = await report(db, tenant_id, "2026-06", now=t("2026-07-01T01:00:00"))
    first, second = got["incidents"]
    assert (first["minutes"], first["maintenance_minutes"], first["counted_minutes"]) == (20.0, 15.0, 5.0)
    assert (second["minutes"], second["counted"], second["maintenance_minutes"], second["counted_minutes"]) == (
        6.0, True, 5.5, 0.5)
    assert got["downtime_minutes"] == 5.5
    assert [w["reason"] for w in got["maintenance"]] == ["database upgrade", "network"]
    # Another tenant's window changes nothing here.
    other = await make_tenant(settings, server)
    async with db.session() as session:
        await availability.add_window(session, start=day.replace(hour=14), end=day.replace(hour=15),
                                      reason="theirs", tenant_id=other.id, actor=ops, now=day)
    assert (await report(db, tenant_id, "2026-06", now=t("2026-07-01T01:00:00")))["downtime_minutes"] == 5.5


async def test_a_month_without_data_is_unknown_never_100(db: Database, tenant_id: int) -> None:
    got = await report(db, tenant_id, "2026-04", now=t("2026-12-01T00:00:00"))
    assert got["availability"] is None and got["measured_availability"] is None and got["meets_target"] is None
    assert got["unknown_minutes"] == 30 * 1440 and got["downtime_minutes"] == 0.0 and got["measured_minutes"] == 0
    assert all(d["availability"] is None and d["unknown_minutes"] == 1440 for d in got["days"])
    assert got["unknown"] == [{"start": "2026-04-01T00:00:00+00:00", "end": "2026-05-01T00:00:00+00:00",
                               "minutes": 43200.0}]


async def test_a_gap_in_the_probes_is_unknown_and_cuts_an_outage(db: Database, tenant_id: int) -> None:
    # Down from 10:00; the probers stop at 10:10 and come back at 11:00 with the service up.
    day = t("2026-07-01T00:00:00")
    await put(db, every(tenant_id, day.replace(hour=9), day.replace(hour=10, minute=10),
                        down=lambda at: at >= day.replace(hour=10))
              + every(tenant_id, day.replace(hour=11), day.replace(hour=12)))
    got = await report(db, tenant_id, "2026-07", now=t("2026-08-01T01:00:00"))
    [incident] = got["incidents"]
    # It ends where its last failed probe stops speaking for the service (the tolerated round after
    # the 10:09:30 one); what follows is unknown, neither down nor up.
    assert (incident["end"], incident["ended_by"], incident["minutes"]) == (
        "2026-07-01T10:10:30+00:00", "unknown", 10.5)
    gap = {"start": "2026-07-01T10:10:30+00:00", "end": "2026-07-01T11:00:00+00:00", "minutes": 49.5}
    assert gap in got["unknown"]
    # A single missed round is tolerated (clock jitter), two are not.
    probes = every(tenant_id, day.replace(hour=13), day.replace(hour=14))
    probes = [p for p in probes if p.at not in (day.replace(hour=13, minute=10), day.replace(hour=13, minute=20),
                                                day.replace(hour=13, minute=20, second=30))]
    await put(db, probes)
    got = await report(db, tenant_id, "2026-07", now=t("2026-08-01T01:00:00"))
    gap = {"start": "2026-07-01T13:20:30+00:00", "end": "2026-07-01T13:21:00+00:00", "minutes": 0.5}
    assert gap in got["unknown"]
    assert not any(u["start"].startswith("2026-07-01T13:10") for u in got["unknown"])


# --- the 43,200-minute month, whatever the calendar says ----------------------------------------------
FIVE = timedelta(minutes=5)


async def test_february_and_a_31_day_month_count_43200_minutes(db: Database, tenant_id: int) -> None:
    # A probe every 5 minutes (the interval of this report), all month long: nothing unknown.
    feb_down = between(t("2030-02-10T08:00:00"), t("2030-02-10T08:30:00"))
    mar_down = between(t("2030-03-31T22:00:00"), t("2030-03-31T22:50:00"))
    await put(db, every(tenant_id, t("2030-02-01T00:00:00"), t("2030-04-01T00:00:00"), step=FIVE,
                        down=lambda at: feb_down(at) or mar_down(at)))
    now = t("2030-04-01T00:30:00")
    feb = await report(db, tenant_id, "2030-02", now=now, interval=FIVE)
    mar = await report(db, tenant_id, "2030-03", now=now, interval=FIVE)
    # February: 28 days, still (43200 - 30) / 43200 = 99.93055...: 99.930 (rounded down).
    assert (feb["unknown_minutes"], feb["downtime_minutes"], feb["availability"], feb["meets_target"]) == (
        0.0, 30.0, 99.930, True)
    assert feb["basis_minutes"] == 43200 and len(feb["days"]) == 28 and feb["complete"]
    # March: 31 days, (43200 - 50) / 43200 = 99.88425...: 99.884, below the promise.
    assert (mar["unknown_minutes"], mar["downtime_minutes"], mar["availability"], mar["meets_target"]) == (
        0.0, 50.0, 99.884, False)
    # Days are over their real length: 1390 of 1440 minutes is 96.5277...: 96.527.
    assert len(mar["days"]) == 31 and mar["days"][-1]["availability"] == 96.527
    assert mar["days"][0]["availability"] == 100.0


# --- closing a month and compensating, once ----------------------------------------------------------
async def _bad_month(db: Database, tenant_id: int, month: str = "2031-03") -> None:
    """A month with 50 minutes down (below 99.9 %), probed every 5 minutes."""
    start = t(f"{month}-01T00:00:00")
    end = availability.month_bounds(start.date())[1]
    await put(db, every(tenant_id, start, end + timedelta(hours=1), step=FIVE,
                        down=between(start + timedelta(days=3), start + timedelta(days=3, minutes=50))))


async def test_a_month_below_the_promise_is_compensated_exactly_once(
        settings: Settings, server: Server, db: Database, tenant_id: int) -> None:
    await open_billing(db, tenant_id, seats=3)
    await _bad_month(db, tenant_id)
    month, now = date(2031, 3, 1), t("2031-04-01T00:20:00")
    # Not before the month is over (and its grace).
    with pytest.raises(Exception, match="can be closed"):
        await availability.close_month(db, tenant_id, month, now=t("2031-04-01T00:05:00"), interval=FIVE)
    # Two closers at once, each on its own engine (as two processes would be).
    dbs = [Database(settings.database_url) for _ in range(2)]
    try:
        closings = await asyncio.gather(*(availability.close_month(d, tenant_id, month, now=now, interval=FIVE)
                                          for d in dbs))
    finally:
        for d in dbs:
            await d.dispose()
    assert sorted(c.closed_now for c in closings) == [False, True]
    async with db.read() as session:
        entries = [e for e in await billing.ledger(session, tenant_id) if e.kind == "compensation"]
        rows = (await session.execute(select(AvailabilityMonth).where(AvailabilityMonth.tenant_id == tenant_id)))\
            .scalars().all()
    [entry] = entries
    assert entry.detail["minutes"] == 50 and entry.detail["month"] == "2031-03" and entry.amount > 0
    [row] = rows
    assert row.ledger_entry_id == entry.id and row.compensated_minutes == 50 and row.availability_milli == 99884
    # The round that runs in every process finds nothing more to do for March, and closes nothing twice.
    hub = server.app[HUB]
    outcome = await availability.close_due(hub, now=now, tenant_ids=[tenant_id])
    assert outcome.get("compensated", 0) == 0
    async with db.read() as session:
        assert len([e for e in await billing.ledger(session, tenant_id) if e.kind == "compensation"]) == 1
    got = await report(db, tenant_id, "2031-03", now=now, interval=FIVE)
    assert got["closed"]["ledger_entry_id"] == entry.id and got["closed"]["compensation"] == "paid"


async def test_closing_without_a_contract_records_once_and_pays_nothing(
        settings: Settings, db: Database, tenant_id: int) -> None:
    await _bad_month(db, tenant_id, "2031-05")
    dbs = [Database(settings.database_url) for _ in range(3)]
    try:
        closings = await asyncio.gather(*(availability.close_month(d, tenant_id, date(2031, 5, 1),
                                                                   now=t("2031-06-02T00:00:00"), interval=FIVE)
                                          for d in dbs))
    finally:
        for d in dbs:
            await d.dispose()
    assert sorted(c.closed_now for c in closings) == [False, False, True]
    assert all(c.row.ledger_entry_id is None and c.row.compensated_minutes == 0 for c in closings)
    assert closings[0].row.summary["compensation"] == "no_contract"


async def test_the_round_closes_each_month_that_is_over(
        server: Server, db: Database, tenant_id: int) -> None:
    await open_billing(db, tenant_id, seats=1)
    # Probes from 20 July 2031 (all up) to 10 September; only August is bad.
    await put(db, every(tenant_id, t("2031-07-20T00:00:00"), t("2031-09-10T00:00:00"), step=FIVE,
                        down=between(t("2031-08-05T00:00:00"), t("2031-08-05T01:00:00"))))
    # A hub whose probers probe every 5 minutes (CHANNELHUB_PROBE_INTERVAL=300).
    hub = build_hub(replace(server.settings, probe_interval=300.0))
    try:
        # July closes; not August yet: its grace has not passed.
        assert await availability.close_due(hub, now=t("2031-09-01T00:05:00"), tenant_ids=[tenant_id]) == {
            "closed": 1}
        assert await availability.close_due(hub, now=t("2031-09-01T00:15:00"), tenant_ids=[tenant_id]) == {
            "closed": 1, "compensated": 1}
        assert await availability.close_due(hub, now=t("2031-09-20T00:00:00"), tenant_ids=[tenant_id]) == {}
    finally:
        await hub.close()
    async with db.read() as session:
        rows = (await session.execute(select(AvailabilityMonth).where(AvailabilityMonth.tenant_id == tenant_id)
                                      .order_by(AvailabilityMonth.month))).scalars().all()
    assert [(r.month, r.availability_milli, r.compensated_minutes) for r in rows] == [
        (date(2031, 7, 1), None, 0),  # probed from the 20th only: unknown before
        (date(2031, 8, 1), 99861, 60),
    ]


# --- over HTTP: the tenant's report, the operator's windows ----------------------------------------------
async def _login(http: Http, domain: str, email: str) -> str:
    reply = await http("POST", "/api/v1/auth/login", host=domain, json_body={"email": email, "password": PASSWORD})
    assert reply.status == 200, reply
    return str(reply.body["token"])


async def test_admins_read_the_report_over_http_and_agents_do_not(
        settings: Settings, server: Server, db: Database) -> None:
    tenant: TenantInfo = await make_tenant(settings, server)
    admin = await tenant.add_agent(role="admin")
    agent = await tenant.add_agent(role="agent")
    await put(db, every(tenant.id, t("2026-08-03T00:00:00"), t("2026-08-03T02:00:00"),
                        down=between(t("2026-08-03T01:00:00"), t("2026-08-03T01:07:00"))))
    async with aiohttp.ClientSession() as session:
        http = Http(server.url, session)
        admin_token = await _login(http, tenant.domain, admin.email)
        agent_token = await _login(http, tenant.domain, agent.email)
        reply = await http("GET", "/api/v1/availability?month=2026-08", host=tenant.domain, token=admin_token)
        assert reply.status == 200, reply
        got = reply.body["availability"]
        assert got["month"] == "2026-08" and got["tenant_id"] == tenant.id and got["availability"] is None
        assert got["downtime_minutes"] == 7.0 and got["incidents"][0]["cause"] == CAUSE
        assert len(got["days"]) == 31
        # The current month so far, by default.
        now = datetime.now(UTC)
        current = await http("GET", "/api/v1/availability", host=tenant.domain, token=admin_token)
        assert current.status == 200 and current.body["availability"]["month"] == f"{now:%Y-%m}", current
        assert_error(await http("GET", "/api/v1/availability?month=2026-08", host=tenant.domain, token=agent_token),
                     403, "admin_only")
        for bad in ("2026-13", "2026-8", "26-08", "x", "2026-08-01", "1999-12", "2026-08&month=2026-07"):
            assert_error(await http("GET", f"/api/v1/availability?month={bad}", host=tenant.domain,
                                    token=admin_token), 422, "invalid_query")
        future = availability.next_month(date(now.year, now.month, 1))
        assert_error(await http("GET", f"/api/v1/availability?month={future:%Y-%m}", host=tenant.domain,
                                token=admin_token), 422, "month_in_future")


async def test_operators_announce_and_withdraw_maintenance(desk: Desk, db: Database) -> None:  # noqa: F811
    tenant = await desk.tenant(owner=False)
    body = {"start": "2031-09-01T02:00:00+08:00", "end": "2031-09-01T04:00:00+08:00", "reason": "kernel update",
            "tenant_id": tenant["id"]}
    made = await desk.call("POST", "/operator/v1/maintenance", role="support", body=body)
    assert made.status == 201, made
    window = made.body["window"]
    assert (window["start"], window["end"]) == ("2031-08-31T18:00:00+00:00", "2031-08-31T20:00:00+00:00")
    assert_error(await desk.call("POST", "/operator/v1/maintenance", role="billing", body=body), 403, "operator_role")
    for bad in ({**body, "end": body["start"]}, {**body, "end": "2031-09-01T01:00:00+08:00"}):
        error = assert_error(await desk.call("POST", "/operator/v1/maintenance", body=bad), 422, "invalid_window")
        assert "before its end" in error["message"]
    # Announced means before: a window cannot excuse an outage after the fact.
    past = {**body, "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z"}
    assert_error(await desk.call("POST", "/operator/v1/maintenance", body=past), 422, "window_in_past")
    for bad in ({**body, "start": "2031-09-01T02:00:00"}, {**body, "start": "soon"}, {**body, "reason": ""},
                {**body, "tenant_id": 0}, {**body, "start": 1}):
        assert_error(await desk.call("POST", "/operator/v1/maintenance", body=bad), 422)
    assert_error(await desk.call("POST", "/operator/v1/maintenance", body={**body, "tenant_id": 2**31 - 2}), 404,
                 "tenant_not_found")
    listed = await desk.call("GET", "/operator/v1/maintenance?from=2031-08-31T00:00:00Z&to=2031-09-02T00:00:00Z"
                                    f"&tenant_id={tenant['id']}", role="billing")
    assert listed.status == 200 and window in listed.body["windows"], listed
    outside = await desk.call("GET", "/operator/v1/maintenance?from=2031-09-02T00:00:00Z&to=2031-09-03T00:00:00Z"
                                     f"&tenant_id={tenant['id']}")
    assert outside.status == 200 and window not in outside.body["windows"], outside
    for bad in ("from=yesterday", "to=2031-09-01", "from=2031-09-02T00:00:00Z&to=2031-09-01T00:00:00Z",
                "tenant_id=0", "from=2031-09-01T00:00:00Z&from=2031-09-01T00:00:00Z"):
        assert_error(await desk.call("GET", f"/operator/v1/maintenance?{bad}"), 422, "invalid_query")
    # The operator reads the tenant's report (this month's, so far: no probes yet, all unknown).
    read = await desk.call("GET", f"/operator/v1/tenants/{tenant['id']}/availability", role="support")
    assert read.status == 200 and read.body["availability"]["tenant_id"] == tenant["id"], read
    assert read.body["availability"]["availability"] is None
    assert_error(await desk.call("GET", f"/operator/v1/tenants/{tenant['id']}/availability?month=2026-8"), 422,
                 "invalid_query")
    assert_error(await desk.call("GET", "/operator/v1/tenants/2147483646/availability"), 404, "tenant_not_found")
    assert_error(await desk.call("DELETE", f"/operator/v1/maintenance/{window['id']}", role="billing"), 403,
                 "operator_role")
    gone = await desk.call("DELETE", f"/operator/v1/maintenance/{window['id']}", role="support")
    assert gone.status == 200 and gone.body == {"deleted": window["id"]}, gone
    assert_error(await desk.call("DELETE", f"/operator/v1/maintenance/{window['id']}"), 404, "window_not_found")
    async with db.read() as session:
        actions = (await session.execute(select(AuditLog.action, AuditLog.actor_id).where(
            AuditLog.target_type == "tenant", AuditLog.target_id == str(tenant["id"]),
            AuditLog.action.like("maintenance.%")).order_by(AuditLog.id))).all()
    assert [tuple(a) for a in actions] == [("maintenance.create", desk.ids["support"]),
                                           ("maintenance.delete", desk.ids["support"])]


async def test_two_processes_closing_at_once_compensate_once(
        settings: Settings, db: Database, tenant_id: int, tmp_path: Path) -> None:
    """`channelhub availability close` in two real processes at the same moment (as two `serve`
    processes' rounds would): one compensation. (The month is over by the wall clock, which these
    processes read; the test server's own round may close it first, with the same figures.)"""
    await open_billing(db, tenant_id, seats=2)
    await put(db, every(tenant_id, t("2025-06-10T08:00:00"), t("2025-06-10T10:00:00"),
                        down=between(t("2025-06-10T08:30:00"), t("2025-06-10T09:20:00"))))
    env = child_env(settings, f"avail{uuid.uuid4().hex[:6]}", None)
    procs = [await spawn(f"close{i}", ["availability", "close", "--tenant", str(tenant_id)], env, tmp_path)
             for i in range(2)]
    try:
        codes = await asyncio.wait_for(asyncio.gather(*(p.proc.wait() for p in procs)), timeout=120)
    finally:
        for p in procs:
            await stop(p)
    assert codes == [0, 0], [p.output() for p in procs]
    async with db.read() as session:
        entries = [e for e in await billing.ledger(session, tenant_id) if e.kind == "compensation"]
        june = (await session.execute(select(AvailabilityMonth).where(
            AvailabilityMonth.tenant_id == tenant_id, AvailabilityMonth.month == date(2025, 6, 1)))).scalar_one()
    [entry] = entries
    assert entry.detail["month"] == "2025-06" and entry.detail["minutes"] == 50
    assert june.ledger_entry_id == entry.id and june.downtime_seconds == 50 * 60


def test_an_outage_going_on_is_open_and_counts_once_it_reaches_5_minutes() -> None:
    # Pure: the analysis alone, the way the report runs it (as of now less one interval).
    start = t("2026-10-05T12:00:00")
    probes = every(1, start, start + 10 * MINUTE, down=lambda at: at >= start + 2 * MINUTE)
    for minutes_on, counted in ((4, False), (8, True)):
        now = availability.settled(start + (2 + minutes_on) * MINUTE + INTERVAL, INTERVAL)
        got = availability.analyse([p for p in probes if p.at <= now], [], date(2026, 10, 1), now=now,
                                   interval=INTERVAL)
        [outage] = got.outages
        assert (outage.ended_by, outage.end, outage.counts) == ("open", now, counted)
        assert got.downtime == (now - outage.start if counted else timedelta())
        assert got.meets_target is None  # most of October is unknown
