"""Routing under concurrency on PostgreSQL: four hub processes route 1,000 tickets to 50 agents with
small capacities while agents go on and off line. Afterwards every ticket is assigned once or
queued, no agent was ever over capacity (sampled all along), and nothing was forgotten."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from collections import defaultdict
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from admin_api.client import AgentClient
from core.db import Database
from tests.conftest import PASSWORD, ROOT, TenantInfo, free_port

PROCESSES = 4
AGENTS = 50
TICKETS = 1000
GROUPS = 5


class Proc:
    def __init__(self, url: str, proc: subprocess.Popen[bytes]) -> None:
        self.url, self.proc = url, proc


async def start_hubs(settings: Any, n: int, namespace: str) -> list[Proc]:
    env = {**os.environ, "CHANNELHUB_DATABASE_URL": settings.database_url, "CHANNELHUB_REDIS_URL": settings.redis_url,
           "CHANNELHUB_QUEUE_NAMESPACE": namespace, "CHANNELHUB_EMBEDDED_WORKER": "0",
           "CHANNELHUB_LOG_LEVEL": "WARNING", "CHANNELHUB_DB_POOL_SIZE": "4"}
    procs = []
    for _ in range(n):
        port = free_port()
        cmd = [sys.executable, "-m", "channelhub.cli", "serve", "--port", str(port)]
        p = subprocess.Popen(cmd, cwd=ROOT, env=env,  # noqa: ASYNC220 (a few processes, started once)
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        procs.append(Proc(f"http://127.0.0.1:{port}", p))
    async with aiohttp.ClientSession() as http:
        for p in procs:
            for _ in range(200):
                try:
                    async with http.get(p.url + "/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if p.proc.poll() is not None:
                    raise RuntimeError(p.proc.stdout.read().decode() if p.proc.stdout else "hub died")
                await asyncio.sleep(0.1)
    return procs


def stop_hubs(procs: list[Proc]) -> str:
    out = []
    for p in procs:
        p.proc.terminate()
    for p in procs:
        try:
            stdout, _ = p.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            p.proc.kill()
            stdout, _ = p.proc.communicate()
        out.append(stdout.decode(errors="replace"))
    return "\n".join(out)


OVER_CAPACITY = """
SELECT a.id, a.capacity, count(t.id) AS n FROM agents a
JOIN tickets t ON t.assignee_id = a.id AND t.status IN ('new', 'open', 'pending')
WHERE a.tenant_id = :tid GROUP BY a.id, a.capacity HAVING count(t.id) > a.capacity
"""


NEEDS = "needs PostgreSQL and Redis (CHANNELHUB_TEST_DATABASE_URL, CHANNELHUB_TEST_REDIS_URL)"


@pytest.mark.skipif(
    not (os.environ.get("CHANNELHUB_TEST_DATABASE_URL") and os.environ.get("CHANNELHUB_TEST_REDIS_URL")), reason=NEEDS)
async def test_four_processes_thousand_tickets_fifty_agents(settings: Any, tenant: TenantInfo) -> None:
    rng = random.Random(7)
    groups = [await tenant.add_group(f"g{i}") for i in range(GROUPS)]
    admin = await tenant.add_agent(role="admin", capacity=0, name="Admin")
    agents = [await tenant.add_agent(capacity=rng.randint(1, 3), group_ids=[groups[i % GROUPS]])
              for i in range(AGENTS)]
    procs = await start_hubs(settings, PROCESSES, f"conc{os.getpid()}")
    db = Database(settings.database_url)
    violations: list[Any] = []
    stop = asyncio.Event()
    output = ""
    try:
        admin_client = AgentClient(procs[0].url, host=tenant.domain)
        await admin_client.login(admin.email, PASSWORD)
        for i, g in enumerate(groups):
            await admin_client.api("POST", "/api/v1/routing/rules", {
                "name": f"to g{i}", "conditions": {"text_contains": [f"[g{i}]"]}, "actions": {"group_id": g}})
        clients = []
        for i, a in enumerate(agents):
            c = AgentClient(procs[i % PROCESSES].url, host=tenant.domain)
            await c.login(a.email, PASSWORD)
            await c.connect()
            clients.append(c)

        async def monitor() -> None:
            while not stop.is_set():
                async with db.read() as session:
                    rows = (await session.execute(text(OVER_CAPACITY), {"tid": tenant.id})).all()
                violations.extend(rows)
                await asyncio.sleep(0.02)

        async def churn() -> None:
            while not stop.is_set():
                c = rng.choice(clients)
                status = rng.choice(["online", "online", "away", "offline"])
                await c.request("PUT", "/api/v1/me/presence", {"status": status}, token=c.token)
                await asyncio.sleep(0.01)

        sem = asyncio.Semaphore(40)
        async with aiohttp.ClientSession() as http:
            async def post(i: int) -> None:
                proc = procs[i % PROCESSES]
                tag = f"[g{rng.randrange(GROUPS + 1)}]"  # [g5] matches no rule: any agent
                # As the widget does: a 503 busy (load shedding on a loaded machine) stored nothing,
                # and the same client_id is sent again after its Retry-After.
                for _attempt in range(20):
                    async with sem, http.post(proc.url + "/webchat/messages", headers={"Host": tenant.domain},
                                              json={"client_id": f"c{i}", "text": f"{tag} ticket {i}"}) as resp:
                        if resp.status == 503:
                            await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                            continue
                        assert resp.status == 201, await resp.text()
                        return
                raise AssertionError(f"ticket {i} was refused as busy 20 times")

            watch = [asyncio.create_task(monitor()), asyncio.create_task(churn())]
            await asyncio.gather(*(post(i) for i in range(TICKETS)))
            stop.set()
            await asyncio.gather(*watch)

        # Everyone back online; the routers settle.
        for c in clients:
            await c.request("PUT", "/api/v1/me/presence", {"status": "online"}, token=c.token)

        async def settled() -> dict[str, Any]:
            async with db.read() as session:
                states = dict((await session.execute(text(
                    "SELECT routing_state, count(*) FROM tickets WHERE tenant_id = :tid GROUP BY routing_state"),
                    {"tid": tenant.id})).all())
                free = (await session.execute(text(
                    "SELECT count(*) FROM agents WHERE tenant_id = :tid AND status = 'online' AND load < capacity"),
                    {"tid": tenant.id})).scalar_one()
            return {"states": states, "free": free}

        for _ in range(300):
            snap = await settled()
            if snap["states"].get("pending", 0) == 0 and (snap["free"] == 0 or snap["states"].get("queued", 0) == 0):
                break
            await asyncio.sleep(0.1)
        async with db.read() as session:
            monitor_rows = (await session.execute(text(OVER_CAPACITY), {"tid": tenant.id})).all()
            tickets = (await session.execute(text(
                "SELECT id, assignee_id, routing_state, status FROM tickets WHERE tenant_id = :tid"),
                {"tid": tenant.id})).all()
            messages = (await session.execute(text(
                "SELECT count(*) FROM messages WHERE tenant_id = :tid AND direction = 'inbound'"),
                {"tid": tenant.id})).scalar_one()
            loads = (await session.execute(text(
                "SELECT a.id, a.load, a.capacity, (SELECT count(*) FROM tickets t WHERE t.assignee_id = a.id "
                "AND t.status IN ('new', 'open', 'pending')) FROM agents a WHERE a.tenant_id = :tid"),
                {"tid": tenant.id})).all()
            records = (await session.execute(text(
                "SELECT ticket_id, outcome, agent_id FROM assignment_records WHERE tenant_id = :tid ORDER BY id"),
                {"tid": tenant.id})).all()
            free = (await session.execute(text(
                "SELECT count(*) FROM agents WHERE tenant_id = :tid AND status = 'online' AND load < capacity"),
                {"tid": tenant.id})).scalar_one()
        for c in clients:
            await c.close()
        await admin_client.close()
    finally:
        stop.set()
        output = stop_hubs(procs)
        await db.dispose()

    assert violations == [] and monitor_rows == [], f"over capacity: {violations[:5]}"
    assert len(tickets) == TICKETS and messages == TICKETS, output[-3000:]
    states = defaultdict(int)
    for _id, assignee, state, _status in tickets:
        states[state] += 1
        assert (state == "assigned" and assignee is not None) or (state == "queued" and assignee is None), \
            (_id, assignee, state)
    for agent_id, load, capacity, actual in loads:
        assert load == actual <= capacity, (agent_id, load, actual, capacity)
    # Every assignment follows a release: no ticket is ever given to a second agent while it has one.
    holder: dict[int, int | None] = {}
    for ticket_id, outcome, agent_id in records:
        if outcome in ("assigned", "claimed"):
            assert holder.get(ticket_id) is None, (ticket_id, holder.get(ticket_id), agent_id)
            holder[ticket_id] = agent_id
        elif outcome in ("unassigned",):
            holder[ticket_id] = None
    assert states["assigned"] == sum(1 for v in holder.values() if v is not None)
    # Nothing waits while an agent who could take it has room (agents of every group are online).
    if states["queued"]:
        assert free == 0, f"{states['queued']} tickets wait while {free} agents have room"
    assert states["assigned"] == sum(cap for _a, _l, cap, _n in loads)
