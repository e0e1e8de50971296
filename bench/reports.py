#!/usr/bin/env python3
"""Reports at scale (#17): a year of one tenant's data, the reports' latency and the rollups'
rebuild.

Generates ``--tickets`` tickets (default 1,000,000) with about ten events each (arrival, the
customer's messages, assignments and transfers, replies and notes, pending, solves, reopens,
ratings, breaches) spread over 365 days, written straight into the events table of a scratch
database migrated with alembic (SQLite in /tmp, or PostgreSQL with ``--pg URL``). Then:

* the time to rebuild the tenant's rollups from the events (core.rollups.rebuild);
* each report (agents, groups, demand; core.reports, what /api/v1/reports/* runs after its
  catch-up) under several filter combinations, ``--runs`` times each: p50 and p95;
* the same run's reference: a bare ``SELECT count(*)`` of the tenant's events, and a plain
  ``GROUP BY`` of the events by kind (the least a report computed from the events themselves would
  do), with the ratio of each report's p95 to them.

Aim (issue #17): p95 < 1 s at 1,000,000 tickets and 10,000,000 events.

Prints ONE JSON object (progress on stderr). Never part of the test run.

    .venv/bin/python bench/reports.py --tickets 100000
    .venv/bin/python bench/reports.py --tickets 100000 --pg postgresql+asyncpg://postgres@127.0.0.1/chreports_bench
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select, text, update  # noqa: E402

from core import reports, rollups, tenants  # noqa: E402
from core.db import Database, migrate  # noqa: E402
from core.models import Agent, Event, Group, Tenant, report_rollups, table_of  # noqa: E402

START = datetime(2025, 1, 1, tzinfo=UTC)
HOURS = {"timezone": "Asia/Shanghai", "weekly": {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
         "holidays": ["2025-10-01", "2025-10-02", "2025-10-03"]}
CHANNELS = ("webchat", "email", "wechat", "xmpp")
TAGS = ("billing", "refund", "shipping", "bug", "vip", "account", "login", "invoice", "feedback", "urgent")
AGENTS, GROUPS = 40, 6
INSERT_BATCH = 20_000


def log(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


def ticket_events(rng: random.Random, tenant_id: int, ticket_id: int, agents: list[int], groups: list[int]
                  ) -> list[dict[str, Any]]:
    at = START + timedelta(seconds=rng.randrange(365 * 86400))
    group = rng.choice(groups)
    view: dict[str, Any] = {"id": ticket_id, "status": "new", "channel": rng.choice(CHANNELS),
                            "tags": rng.sample(TAGS, rng.choice((0, 1, 1, 2))), "group_id": group,
                            "assignee_id": None, "subject": "Where is my order?"}
    out: list[dict[str, Any]] = []

    def add(kind: str, extra: dict[str, Any] | None = None, *, previous: int | None = None) -> None:
        out.append({"tenant_id": tenant_id, "ticket_id": ticket_id, "kind": kind, "assignee_id": view["assignee_id"],
                    "previous_assignee_id": previous, "payload": {"ticket": dict(view), **(extra or {})},
                    "created_at": at})

    def message(direction: str, author: int | None = None) -> None:
        who = {"type": "customer", "id": 1} if direction == "inbound" else {"type": "agent", "id": author}
        add("message.created", {"message": {"direction": direction, "author": who, "text": "..."}})

    add("ticket.created")
    message("inbound")
    at += timedelta(seconds=rng.randrange(5, 600))
    view["assignee_id"] = agent = rng.choice(agents)
    add("ticket.assigned", {"reason": {"strategy": "round_robin"}})
    if rng.random() < 0.1:
        at += timedelta(seconds=rng.randrange(60, 3600))
        previous, view["assignee_id"] = agent, rng.choice(agents)
        agent = view["assignee_id"]
        add("ticket.assigned", {"reason": {"strategy": "transfer"}}, previous=previous)
    for turn in range(rng.choice((1, 1, 2, 2, 3))):
        at += timedelta(seconds=rng.randrange(30, 4 * 3600))
        view["status"] = "open"
        message("outbound", agent)
        if rng.random() < 0.15:
            message("note", agent)
        if turn and rng.random() < 0.2:
            at += timedelta(seconds=rng.randrange(60, 3600))
            view["status"] = "pending"
            add("ticket.updated", {"changes": {"status": {"to": "pending"}}})
        at += timedelta(seconds=rng.randrange(60, 86400))
        view["status"] = "open"
        message("inbound")
    at += timedelta(seconds=rng.randrange(30, 3600))
    message("outbound", agent)
    if rng.random() < 0.85:
        at += timedelta(seconds=rng.randrange(60, 7200))
        view["status"] = "solved"
        add("ticket.updated", {"changes": {"status": {"to": "solved"}}})
        if rng.random() < 0.3:
            at += timedelta(seconds=rng.randrange(60, 3600))
            out.append({"tenant_id": tenant_id, "ticket_id": ticket_id, "kind": "csat.rated", "assignee_id": agent,
                        "previous_assignee_id": None, "created_at": at,
                        "payload": {"survey_id": ticket_id, "rating": rng.choice((1, 3, 4, 5, 5)), "comment": None,
                                    "agent_id": agent, "group_id": group}})
    if rng.random() < 0.05:
        out.append({"tenant_id": tenant_id, "ticket_id": ticket_id, "kind": "sla.breached", "assignee_id": agent,
                    "previous_assignee_id": None, "created_at": at,
                    "payload": {"target": "first_response", "due_at": at.isoformat(), "policy_id": 1,
                                "policy": "default", "agent_id": agent, "group_id": group}})
    return out


async def generate(db: Database, tenant_id: int, tickets: int, agents: list[int], groups: list[int]) -> int:
    """The tickets' events, written in batches in time order of arrival (ids roughly follow time)."""
    rng = random.Random(17)
    table = table_of(Event)
    pending: list[dict[str, Any]] = []
    written = 0
    started = time.monotonic()

    async def flush() -> None:
        nonlocal written, pending
        pending.sort(key=lambda r: r["created_at"])
        async with db.session(tenant_id) as session:
            await session.execute(insert(table), pending)
        written += len(pending)
        pending = []

    for n in range(tickets):
        pending += ticket_events(rng, tenant_id, n + 1, agents, groups)
        if len(pending) >= INSERT_BATCH:
            await flush()
            if n % 20000 < 3:
                log(f"generated {n + 1} tickets, {written} events, {time.monotonic() - started:.0f} s")
    if pending:
        await flush()
    return written


def quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50": round(statistics.median(ordered), 4),
            "p95": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 4)}


async def timed(job: Any, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await job()
        out.append(time.perf_counter() - t0)
    return out


async def setup(db: Database, tickets: int) -> tuple[int, list[int], list[int], int, float]:
    """A new tenant with its agents, groups and generated events: (tenant, agents, groups, events,
    seconds the generation took)."""
    async with db.session() as session:
        tenant = await tenants.create(session, name="Reports bench", domains=[f"r{time.time_ns()}.bench.example"])
        tenant_id = tenant.id
        await session.execute(update(Tenant).where(Tenant.id == tenant_id).values(routing={"business_hours": HOURS}))
    async with db.session(tenant_id) as session:
        groups = [(await session.execute(insert(Group).values(tenant_id=tenant_id, name=f"Group {g}")
                                         .returning(Group.id))).scalar_one() for g in range(GROUPS)]
        agents = [(await session.execute(insert(Agent).values(
            tenant_id=tenant_id, email=f"a{a}@bench.example", name=f"Agent {a}", password_hash="x", role="agent",
            capacity=5).returning(Agent.id))).scalar_one() for a in range(AGENTS)]
    t0 = time.monotonic()
    events = await generate(db, tenant_id, tickets, agents, groups)
    generate_s = time.monotonic() - t0
    log(f"{events} events in {generate_s:.0f} s")
    return tenant_id, agents, groups, events, generate_s


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--pg", help="a PostgreSQL URL (postgresql+asyncpg://...) instead of SQLite in /tmp")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--reuse", help="a SQLite file an earlier run generated (its data is reused: the "
                        "rebuild and the reports are measured again)")
    args = parser.parse_args()
    url = args.pg or f"sqlite+aiosqlite:///{args.reuse or tempfile.mkdtemp(prefix='chreports-') + '/bench.db'}"
    log(f"database {url}")
    db = Database(url)
    await migrate(db)
    if args.reuse:
        async with db.read() as session:
            tenant_id = (await session.execute(select(func.max(Tenant.id)).where(Tenant.name == "Reports bench"))
                         ).scalar_one()
            groups = list((await session.execute(select(Group.id).where(Group.tenant_id == tenant_id)
                                                 .order_by(Group.id))).scalars())
            agents = list((await session.execute(select(Agent.id).where(Agent.tenant_id == tenant_id)
                                                 .order_by(Agent.id))).scalars())
            events = (await session.execute(select(func.count()).select_from(Event)
                                            .where(Event.tenant_id == tenant_id))).scalar_one()
        generate_s = 0.0
    else:
        tenant_id, agents, groups, events, generate_s = await setup(db, args.tickets)
    log(f"{events} events; rebuilding the rollups")
    if not db.is_sqlite:
        async with db.connection() as conn:
            await conn.execute(text("ANALYZE events"))
    t0 = time.monotonic()
    await rollups.rebuild(db, tenant_id, settle=0)
    rebuild_s = time.monotonic() - t0
    if not db.is_sqlite:
        async with db.connection() as conn:
            await conn.execute(text("ANALYZE report_rollups"))
    async with db.read(tenant_id) as session:
        table = report_rollups
        per_grain = {int(g): int(n) for g, n in await session.execute(
            select(table.c.grain, func.count()).where(table.c.tenant_id == tenant_id).group_by(table.c.grain))}
        rollup_rows = sum(per_grain.values())
        clock, _ = await rollups.tenant_clock(session, tenant_id)
    log(f"rebuilt in {rebuild_s:.0f} s: {rollup_rows} rollup rows; timing the reports")

    year = (date(2025, 1, 1), date(2025, 12, 31))
    month = (date(2025, 11, 1), date(2025, 11, 30))
    combos: dict[str, reports.Filters] = {
        "year": reports.Filters(*year),
        "month": reports.Filters(*month),
        # Periods that are not whole months: days around the months come from the daily rows.
        "rolling_year": reports.Filters(date(2025, 1, 15), date(2025, 12, 14)),
        "30_days": reports.Filters(date(2025, 11, 5), date(2025, 12, 4)),
        "rolling_year+agent+tag": reports.Filters(date(2025, 1, 15), date(2025, 12, 14), agent_id=agents[1],
                                                  tag="refund"),
        "year+channel": reports.Filters(*year, channel="email"),
        "year+tag": reports.Filters(*year, tag="vip"),
        "year+group": reports.Filters(*year, group_id=groups[0]),
        "year+agent": reports.Filters(*year, agent_id=agents[0]),
        "year+group+channel+tag": reports.Filters(*year, channel="webchat", group_id=groups[1], tag="billing"),
    }
    builders = {"agents": reports.agents_report, "groups": reports.groups_report, "demand": reports.demand_report}

    async def count_events() -> None:
        async with db.read(tenant_id) as session:
            await session.execute(select(func.count()).select_from(Event).where(Event.tenant_id == tenant_id))

    async def group_events() -> None:
        async with db.read(tenant_id) as session:
            await session.execute(select(Event.kind, func.count()).where(Event.tenant_id == tenant_id)
                                  .group_by(Event.kind))

    reference = {"count_events": quantiles(await timed(count_events, max(3, args.runs // 4))),
                 "group_events_by_kind": quantiles(await timed(group_events, max(3, args.runs // 4)))}
    results: dict[str, dict[str, Any]] = {}
    for name, build in builders.items():
        for combo, filters in combos.items():
            async def run(build: Any = build, filters: reports.Filters = filters) -> None:
                async with db.read(tenant_id) as session:
                    await build(session, tenant_id, filters, clock)
            q = quantiles(await timed(run, args.runs))
            q["p95_over_count_events"] = round(q["p95"] / reference["count_events"]["p95"], 4)
            results[f"{name}:{combo}"] = q
    worst = max(r["p95"] for r in results.values())
    await db.dispose()
    print(json.dumps({
        "database": "postgresql" if args.pg else "sqlite", "tickets": args.tickets, "events": events,
        "rollup_rows": rollup_rows, "rollup_rows_per_grain": per_grain,
        "generate_seconds": round(generate_s, 1), "rebuild_seconds": round(rebuild_s, 1),
        "rebuild_events_per_second": round(events / rebuild_s), "reference": reference, "reports": results,
        "worst_p95": worst, "aim_p95_under_1s": worst < 1.0,
    }, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
