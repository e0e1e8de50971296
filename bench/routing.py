"""Routing benchmark: 10,000 agents in 200 groups, 100,000 tickets arriving.

Tickets arrive in waves (stored as the ingest path stores them: pending, with a group from the
rules); the router routes them the way the hub does (Router.route_tenant, batches with
FOR UPDATE SKIP LOCKED and one conditional capacity UPDATE per batch). Prints one JSON object:
decisions per second (and the router's CPU per decision), per-ticket decision time (arrival to
assignment committed) p50 / p99, batch commit time, and the audit afterwards: double assignments,
over-capacity agents and load counters that drifted from the tickets (all must be 0).

Before the load, ``--quiet`` tickets arrive one at a time with pauses between them, routed by the
router's own loop as the hub does (a signal after the ticket's commit): ``quiet`` gives the p50 /
p99 of those decisions (arrival committed to decision committed), the figure a customer sees when
the hub is not busy.

After the audit, the bare reference (``reference``, skipped with ``--no-reference``): the same
statements a batch makes, with the same row counts, through the driver alone (sqlite3 or asyncpg,
no SQLAlchemy, no choosing): per batch of 500 fresh tickets, the locked SELECT of the tickets with
their customers, one conditional UPDATE of the chosen agents, one executemany UPDATE of the
tickets and one INSERT each of the assignment records and events, in one transaction.
``share_of_reference`` puts the router beside it: ``throughput``, its decisions per second as a
share of the reference's, and ``cpu``, the reference's CPU per decision as a share of the
router's (1.0: routing costs no more than the database work it cannot avoid).

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
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference import share  # bench/reference.py, beside this script
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url

from channelhub.app import build_hub
from core.auth import hash_password
from core.config import Settings
from core.db import create_pg_database, drop_pg_database, migrate
from core.hub import Hub
from core.models import ACTIVE_STATUSES, Agent, AgentGroup, Customer, Group, Tenant, Ticket, utcnow
from core.serialize import CUSTOMER_ROW_FIELDS, TicketRow
from routing.router import BATCH, Router


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


async def quiet_decisions(hub: Hub, tid: int, n: int, rng: random.Random,
                          decided_at: dict[int, float]) -> tuple[list[float], list[float]]:
    """``n`` tickets arriving one at a time, each routed by the router's loop (woken by the signal
    ingest sends after its commit) before the next arrives a few milliseconds later: the decision
    time (ms) of each, from its arrival committed to its decision committed."""
    router = hub.router
    assert isinstance(router, Router)
    # A first ticket, not measured: a hub that has routed before holds its snapshot of the agents.
    await arrive(hub, tid, 1, 0, rng)
    await router.route_tenant(tid)
    router.start()
    latencies: list[float] = []
    cpu: list[float] = []
    try:
        for i in range(n):
            arrived = await arrive(hub, tid, 1, -1 - i, rng)
            c0 = time.process_time()
            router.signal(tid, capacity=False)
            ticket_id, at = next(iter(arrived.items()))
            for _ in range(5000):  # at most 5 s
                if ticket_id in decided_at:
                    break
                await asyncio.sleep(0.001)
            if ticket_id in decided_at:
                latencies.append((decided_at[ticket_id] - at) * 1000)
                cpu.append((time.process_time() - c0) * 1000)
            await asyncio.sleep(rng.uniform(0.005, 0.02))
    finally:
        await router.stop()
    return latencies, cpu


# --- the bare reference -------------------------------------------------------------------------
_COLUMNS = (", ".join(f"t.{f}" for f in TicketRow.__dataclass_fields__)
            + ", " + ", ".join(f"c.{f}" for f in CUSTOMER_ROW_FIELDS))
_ACTIVE = ", ".join(f"'{s}'" for s in ACTIVE_STATUSES)
# The batch's statements, written out for each driver ($n for asyncpg, ? for sqlite3).
_REF_SELECT = (f"SELECT {_COLUMNS} FROM tickets t JOIN customers c ON c.id = t.customer_id "
               f"WHERE t.tenant_id = $1 AND t.assignee_id IS NULL AND t.status IN ({_ACTIVE}) "
               f"AND t.routing_state = 'pending' ORDER BY t.priority_rank DESC, t.created_at, t.id LIMIT {BATCH}")
# The chosen agents' conditional UPDATE; it grants nothing (load + 0), as the agents are full by
# now, but checks and writes every row as the router's does.
_REF_AGENTS = ("UPDATE agents SET load = load + 0, last_assigned_at = $1 WHERE id IN ({ids}) "
               "AND load + 0 <= capacity AND status = 'online' AND active RETURNING id, channel_capacity")
_REF_TICKETS = ("UPDATE tickets SET assignee_id = $1, assigned_at = $2, routing_state = 'assigned', "
                "queued_at = NULL, overflow_at = NULL, updated_at = $3 WHERE id = $4")
_REF_RECORDS = ("INSERT INTO assignment_records (tenant_id, ticket_id, outcome, agent_id, group_id, rule, strategy, "
                "candidates, detail, created_at) VALUES ($1, $2, 'assigned', $3, $4, NULL, 'least_busy', $5, '{}', $6)")
_REF_EVENTS = ("INSERT INTO events (tenant_id, ticket_id, kind, assignee_id, previous_assignee_id, payload, "
               "created_at) VALUES ($1, $2, 'ticket.assigned', $3, NULL, $4, $5)")


def _payload(ticket_id: int, agent_id: int) -> tuple[str, str]:
    """Candidates and an event payload the size of the router's (the JSON written out once)."""
    candidates = json.dumps([{"agent_id": agent_id + i, "load": 3, "capacity": 10} for i in range(5)])
    at = "2026-12-01T00:00:00+00:00"
    ticket = {"id": ticket_id, "subject": "bench", "status": "new", "priority": "normal", "channel": "webchat",
              "tags": [], "group_id": 1, "assignee_id": agent_id, "customer_id": ticket_id,
              "customer": {"id": ticket_id, "name": "c", "email": None}, "created_at": at, "updated_at": at,
              "last_message_at": None, "assigned_at": at, "first_response_at": None, "solved_at": None,
              "reopen_count": 0}
    payload = json.dumps({"ticket": ticket, "reason": {"rule": None, "strategy": "least_busy", "candidates": 5,
                                                       "from_queue": False}})
    return candidates, payload


async def reference_sqlite(path: str, tid: int, agent_ids: list[int], n: int) -> tuple[float, float]:
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=10000", "foreign_keys=ON"):
        db.execute(f"PRAGMA {pragma}")

    def q(sql: str) -> str:
        return re.sub(r"\$\d+", "?", sql)

    select_sql, tickets_sql, records_sql, events_sql = (q(x) for x in (_REF_SELECT, _REF_TICKETS, _REF_RECORDS,
                                                                        _REF_EVENTS))
    done, k, t0, c0 = 0, 0, time.perf_counter(), time.process_time()
    while done < n:
        db.execute("BEGIN IMMEDIATE")
        rows = db.execute(select_sql, (tid,)).fetchall()
        if not rows:
            db.execute("COMMIT")
            break
        now = utcnow().isoformat(sep=" ")
        chosen = [agent_ids[(k + i) % len(agent_ids)] for i in range(len(rows))]
        k += len(rows)
        db.execute(q(_REF_AGENTS).format(ids=", ".join("?" * len(set(chosen)))), (now, *sorted(set(chosen)))).fetchall()
        db.executemany(tickets_sql, [(a, now, now, r[0]) for r, a in zip(rows, chosen, strict=True)])
        payloads = [_payload(r[0], a) for r, a in zip(rows, chosen, strict=True)]
        db.executemany(records_sql, [(tid, r[0], a, r[13], p[0], now)
                                     for r, a, p in zip(rows, chosen, payloads, strict=True)])
        db.executemany(events_sql, [(tid, r[0], a, p[1], now) for r, a, p in zip(rows, chosen, payloads, strict=True)])
        db.execute("COMMIT")
        done += len(rows)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    db.close()
    return done / elapsed, cpu / done * 1e6


async def reference_pg(url: str, tid: int, agent_ids: list[int], n: int) -> tuple[float, float]:
    import asyncpg

    u = make_url(url)
    conn = await asyncpg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                                 database=u.database)
    done, k, t0, c0 = 0, 0, time.perf_counter(), time.process_time()
    while done < n:
        async with conn.transaction():
            rows = await conn.fetch(_REF_SELECT + " FOR UPDATE OF t SKIP LOCKED", tid)
            if not rows:
                break
            now = utcnow()
            chosen = [agent_ids[(k + i) % len(agent_ids)] for i in range(len(rows))]
            k += len(rows)
            await conn.fetch("SELECT id FROM agents WHERE id = ANY($1::int[]) ORDER BY id FOR UPDATE",
                             sorted(set(chosen)))
            ids = ", ".join(f"${i + 2}" for i in range(len(set(chosen))))
            await conn.fetch(_REF_AGENTS.format(ids=ids), now, *sorted(set(chosen)))
            await conn.executemany(_REF_TICKETS, [(a, now, now, r[0]) for r, a in zip(rows, chosen, strict=True)])
            payloads = [_payload(r[0], a) for r, a in zip(rows, chosen, strict=True)]
            await conn.executemany(_REF_RECORDS, [(tid, r[0], a, r[13], p[0], now)
                                                  for r, a, p in zip(rows, chosen, payloads, strict=True)])
            await conn.executemany(_REF_EVENTS, [(tid, r[0], a, p[1], now)
                                                 for r, a, p in zip(rows, chosen, payloads, strict=True)])
        done += len(rows)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    await conn.close()
    return done / elapsed, cpu / done * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", help="PostgreSQL URL (a fresh database is made beside it)")
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--capacity", type=int, default=10)
    parser.add_argument("--wave", type=int, default=2_000, help="tickets arriving between router runs")
    parser.add_argument("--quiet", type=int, default=200, help="tickets arriving one at a time before the load")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="skip the bare reference (the batch's statements through the driver alone)")
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

    async def timed_batch(tenant_id: int, limit: int = BATCH) -> Any:
        t0 = time.perf_counter()
        result = await original(tenant_id, limit)
        t1 = time.perf_counter()
        if result.examined:
            batch_times.append(t1 - t0)
        return result

    async def capture(tenant_id: int, events: list[dict[str, Any]]) -> None:
        now = time.perf_counter()
        for e in events:
            if e["kind"] in ("ticket.assigned", "ticket.queued"):
                decided_at.setdefault(e["ticket_id"], now)

    hub.publish = capture  # type: ignore[method-assign]

    quiet, quiet_cpu = await quiet_decisions(hub, tid, args.quiet, rng, decided_at)
    router.route_batch = timed_batch  # type: ignore[method-assign]
    decided_at.clear()

    arrivals: dict[int, float] = {}
    routing_time = routing_cpu = 0.0
    for start in range(0, args.tickets, args.wave):
        arrivals.update(await arrive(hub, tid, min(args.wave, args.tickets - start), start, rng))
        if start == 0:
            await analyze(hub)
        t0, c0 = time.perf_counter(), time.process_time()
        await router.route_tenant(tid)
        routing_time += time.perf_counter() - t0
        routing_cpu += time.process_time() - c0

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
        agent_ids = list((await s.execute(text("SELECT id FROM agents WHERE tenant_id = :t ORDER BY id"),
                                          {"t": tid})).scalars())
    decisions = len(decided_at)
    rate = round(decisions / routing_time, 1) if routing_time else None
    result: dict[str, Any] = {
        "database": "postgresql" if args.pg else "sqlite",
        "agents": args.agents, "groups": args.groups, "tickets": args.tickets,
        "decisions": decisions,
        "decisions_per_s": rate,
        "cpu_us_per_decision": round(routing_cpu / decisions * 1e6, 1) if decisions else None,
        "decision_ms_p50": round(statistics.median(latencies), 2) if latencies else None,
        "decision_ms_p99": round(pct(latencies, 99), 2),
        "batch_ms_p50": round(statistics.median(batch_times) * 1000, 2) if batch_times else None,
        "batch_ms_p99": round(pct(batch_times, 99) * 1000, 2),
        "batches": len(batch_times),
        "quiet": {"decisions": len(quiet), "of": args.quiet,
                  "decision_ms_p50": round(statistics.median(quiet), 2) if quiet else None,
                  "decision_ms_p99": round(pct(quiet, 99), 2) if quiet else None,
                  "cpu_ms_p50": round(statistics.median(quiet_cpu), 2) if quiet_cpu else None,
                  "cpu_ms_p99": round(pct(quiet_cpu, 99), 2) if quiet_cpu else None},
        "states": states,
        "double_assignments": doubles,
        "over_capacity_agents": over,
        "load_counter_drift": drift,
    }
    n = min(args.tickets, 20_000)
    if args.reference:
        # Fresh pending tickets, nobody routing them; the audit above is already taken.
        for start in range(0, n, args.wave):
            await arrive(hub, tid, min(args.wave, n - start), args.tickets + start, rng)
        await analyze(hub)
    await hub.close()
    if args.reference:
        ref, ref_cpu = await (reference_pg(url, tid, agent_ids, n) if args.pg else
                              reference_sqlite(str(make_url(url).database), tid, agent_ids, n))
        result["reference"] = {"what": "the batch's statements through the driver alone", "tickets": n,
                               "decisions_per_s": round(ref, 1), "cpu_us_per_decision": round(ref_cpu, 1)}
        # Throughput moves with what else the machine runs meanwhile (the reference takes seconds,
        # the router a minute); CPU per decision much less. On PostgreSQL both count this process
        # only, not the server's work.
        result["share_of_reference"] = {"throughput": share(ref, rate),
                                        "cpu": share(result["cpu_us_per_decision"], ref_cpu)}
    print(json.dumps(result, indent=1))
    if args.pg:
        await drop_pg_database(url)
    tmp.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
