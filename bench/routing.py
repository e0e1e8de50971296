"""Routing benchmark: 10,000 agents in 200 groups, 100,000 tickets arriving.

Tickets arrive in waves (stored as the ingest path stores them: pending, with a group from the
rules); the router routes them the way the hub does (Router.route_tenant, batches with
FOR UPDATE SKIP LOCKED and one conditional capacity UPDATE per batch). Prints one JSON object:
decisions per second, per-ticket decision time (arrival to assignment committed) p50 / p99, batch
commit time, and the audit afterwards: double assignments and over-capacity agents (must be 0).

    python bench/routing.py                       # SQLite in a temporary folder
    python bench/routing.py --pg postgresql+asyncpg://postgres@127.0.0.1:5432/test
    python bench/routing.py --agents 1000 --groups 20 --tickets 10000   # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, text

from channelhub.app import build_hub
from core.auth import hash_password
from core.config import Settings
from core.db import create_pg_database, drop_pg_database, migrate
from core.hub import Hub
from core.models import Agent, AgentGroup, Customer, Group, Tenant, Ticket, utcnow
from routing.router import Router


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


async def setup(hub: Hub, args: argparse.Namespace, rng: random.Random) -> int:
    async with hub.db.session() as s:
        tenant = Tenant(name="Bench", domain="bench.example.com")
        s.add(tenant)
        await s.flush()
        tid = tenant.id
        strategies = ["least_busy", "round_robin"]
        await s.execute(insert(Group), [{"tenant_id": tid, "name": f"g{i}", "strategy": strategies[i % 2]}
                                        for i in range(args.groups)])
    async with hub.db.session() as s:
        group_ids = list((await s.execute(text("SELECT id FROM groups WHERE tenant_id = :t ORDER BY id"),
                                          {"t": tid})).scalars())
        pw = hash_password("bench-password")  # one hash for all: argon2 is not what is measured
        now = utcnow()
        rows = [{"tenant_id": tid, "email": f"a{i}@bench", "name": f"A{i}", "password_hash": pw, "role": "agent",
                 "status": "online", "capacity": rng.randint(args.capacity - 2, args.capacity + 2), "load": 0,
                 "channel_capacity": {}, "skills": {}, "active": True, "created_at": now} for i in range(args.agents)]
        for i in range(0, len(rows), 2000):
            await s.execute(insert(Agent), rows[i:i + 2000])
    async with hub.db.session() as s:
        agent_ids = list((await s.execute(text("SELECT id FROM agents WHERE tenant_id = :t ORDER BY id"),
                                          {"t": tid})).scalars())
        links = [{"tenant_id": tid, "agent_id": a, "group_id": group_ids[i % len(group_ids)]}
                 for i, a in enumerate(agent_ids)]
        for i in range(0, len(links), 5000):
            await s.execute(insert(AgentGroup), links[i:i + 5000])
    hub._bench_groups = group_ids  # type: ignore[attr-defined]
    return tid


async def arrive(hub: Hub, tid: int, n: int, start: int, rng: random.Random) -> dict[int, float]:
    """Store ``n`` tickets as ingest leaves them (pending, grouped); returns their arrival times."""
    groups = hub._bench_groups  # type: ignore[attr-defined]
    now = utcnow()
    async with hub.db.session() as s:
        result = await s.execute(insert(Customer).returning(Customer.id),
                                 [{"tenant_id": tid, "name": f"c{start + i}", "attributes": {}, "tags": [],
                                   "created_at": now} for i in range(n)])
        customers = list(result.scalars())
        result = await s.execute(insert(Ticket).returning(Ticket.id), [
            {"tenant_id": tid, "customer_id": c, "channel": "webchat", "subject": "bench", "status": "new",
             "priority": "normal", "priority_rank": 1, "tags": [], "required_skills": {},
             "group_id": rng.choice(groups), "routing_state": "pending", "created_at": now, "updated_at": now,
             "reopen_count": 0} for c in customers])
        ids = list(result.scalars())
    t = time.perf_counter()
    return {i: t for i in ids}


async def analyze(hub: Hub) -> None:
    """Give PostgreSQL's planner statistics, as autovacuum would after bulk loading; without them it
    joins 10,000 agents to their groups by nested loops."""
    if not hub.db.is_sqlite:
        async with hub.db.engine.connect() as conn:
            await conn.execute(text("COMMIT"))
            await conn.execute(text("ANALYZE"))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", help="PostgreSQL URL (a fresh database is made beside it)")
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--capacity", type=int, default=10)
    parser.add_argument("--wave", type=int, default=2_000, help="tickets arriving between router runs")
    args = parser.parse_args()
    rng = random.Random(1)

    tmp = tempfile.TemporaryDirectory()
    url = await create_pg_database(args.pg, f"bench_routing_{os.getpid()}") if args.pg else f"sqlite+aiosqlite:///{tmp.name}/bench.db"
    hub = build_hub(Settings(database_url=url, embedded_worker=False))
    await migrate(hub.db)
    tid = await setup(hub, args, rng)
    await analyze(hub)

    # Time each batch commit, and when each ticket's assignment became durable.
    batch_times: list[float] = []
    decided_at: dict[int, float] = {}
    router = hub.router
    assert isinstance(router, Router)
    original = router.route_batch

    async def timed_batch(tenant_id: int, limit: int = 500) -> Any:
        t0 = time.perf_counter()
        result = await original(tenant_id, limit)
        t1 = time.perf_counter()
        if result.examined:
            batch_times.append(t1 - t0)
        return result

    router.route_batch = timed_batch  # type: ignore[method-assign]
    published: list[dict[str, Any]] = []

    async def capture(tenant_id: int, events: list[dict[str, Any]]) -> None:
        now = time.perf_counter()
        for e in events:
            if e["kind"] in ("ticket.assigned", "ticket.queued"):
                decided_at.setdefault(e["ticket_id"], now)
        published.extend(())

    hub.publish = capture  # type: ignore[method-assign]

    arrivals: dict[int, float] = {}
    routing_time = 0.0
    for start in range(0, args.tickets, args.wave):
        arrivals.update(await arrive(hub, tid, min(args.wave, args.tickets - start), start, rng))
        if start == 0:
            await analyze(hub)
        t0 = time.perf_counter()
        await router.route_tenant(tid)
        routing_time += time.perf_counter() - t0

    latencies = [(decided_at[t] - arrivals[t]) * 1000 for t in arrivals if t in decided_at]
    async with hub.db.read() as s:
        over = (await s.execute(text(
            "SELECT count(*) FROM (SELECT a.id FROM agents a JOIN tickets t ON t.assignee_id = a.id "
            "AND t.status IN ('new','open','pending') WHERE a.tenant_id = :t GROUP BY a.id, a.capacity "
            "HAVING count(t.id) > a.capacity) x"), {"t": tid})).scalar_one()
        drift = (await s.execute(text(
            "SELECT count(*) FROM agents a WHERE a.tenant_id = :t AND a.load <> (SELECT count(*) FROM tickets t "
            "WHERE t.assignee_id = a.id AND t.status IN ('new','open','pending'))"), {"t": tid})).scalar_one()
        doubles = (await s.execute(text(
            "SELECT count(*) FROM (SELECT ticket_id FROM assignment_records WHERE tenant_id = :t "
            "AND outcome = 'assigned' GROUP BY ticket_id HAVING count(*) > 1) x"), {"t": tid})).scalar_one()
        states: dict[str, int] = {str(k): int(v) for k, v in (await s.execute(text(
            "SELECT routing_state, count(*) FROM tickets WHERE tenant_id = :t GROUP BY routing_state"),
            {"t": tid})).all()}
    decisions = len(decided_at)
    print(json.dumps({
        "database": "postgresql" if args.pg else "sqlite",
        "agents": args.agents, "groups": args.groups, "tickets": args.tickets,
        "decisions": decisions,
        "decisions_per_s": round(decisions / routing_time, 1) if routing_time else None,
        "decision_ms_p50": round(statistics.median(latencies), 2) if latencies else None,
        "decision_ms_p99": round(pct(latencies, 99), 2),
        "batch_ms_p50": round(statistics.median(batch_times) * 1000, 2) if batch_times else None,
        "batch_ms_p99": round(pct(batch_times, 99) * 1000, 2),
        "batches": len(batch_times),
        "states": states,
        "double_assignments": doubles,
        "over_capacity_agents": over,
        "load_counter_drift": drift,
    }, indent=1))
    await hub.close()
    if args.pg:
        await drop_pg_database(url)
    tmp.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
