#!/usr/bin/env python3
"""Web chat round trip under load: customers write, agents answer, both sides timed.

Starts a hub (`channelhub serve` in a subprocess; on SQLite in a temporary folder by default, or on
PostgreSQL + Redis with ``--pg URL --redis URL``, where a `channelhub worker` process delivers the
replies unless ``--embedded-worker``), creates a tenant and M agents, connects N web chat customers
(VisitorClient) and M agents (AgentClient) that answer every customer message they get, then sends
customer messages at ``--rate`` per second for ``--seconds``.

Measured, on one clock (the clients all live in this process):
  customer_to_agent  a customer's send -> the agent client receives the message.created event
  agent_to_customer  an agent's reply send -> the customer receives the outbound message
  customer_ack       a customer's send -> the customer receives the ack (the message is stored)

After the hub it measures the bare reference, an aiohttp websocket echo at saturation, and prints
the hub's figures as a share of it (``share_of_reference``; see reference_figures).

Prints ONE JSON object on stdout (progress goes to stderr). Never part of the test run. "lost" counts
what had not arrived when the drain after the last send ended (--drain seconds with nothing arriving,
--max-drain at most): on an overloaded hub that includes messages that were merely very late.

    python bench/webchat_roundtrip.py --rate 300 --seconds 15
    python bench/webchat_roundtrip.py --pg postgresql+asyncpg://postgres@127.0.0.1/chbench \\
        --redis redis://127.0.0.1:6379/14 --rate 300
    python bench/webchat_roundtrip.py --rate 500 --py-spy /tmp/serve.txt   # profile the serve process

With ``--pg`` a fresh database named after the URL's (suffixed with this process's id) is created on
that server and dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from reference import (  # noqa: E402  (bench/reference.py, beside this script)
    cpu_seconds,
    free_port,
    measure_ws_echo,
    scratch_database,
    share,
    wait_up,
)

from admin_api.client import AgentClient, HubError, VisitorClient  # noqa: E402
from core.db import drop_pg_database  # noqa: E402

PASSWORD = "bench-password-1"


def log(*args: Any) -> None:
    print("[bench]", *args, file=sys.stderr, flush=True)


# --- measurements ------------------------------------------------------------------------------
@dataclass
class Stats:
    sent_at: dict[int, float] = field(default_factory=dict)         # seq -> customer send time
    to_agent: dict[int, float] = field(default_factory=dict)        # seq -> latency (s)
    acked: dict[int, float] = field(default_factory=dict)           # seq -> latency (s)
    reply_sent_at: dict[int, float] = field(default_factory=dict)   # seq -> agent reply send time
    to_customer: dict[int, float] = field(default_factory=dict)     # seq -> latency (s)
    errors: list[str] = field(default_factory=list)
    busy: int = 0  # customer messages refused busy (load shedding)
    last_arrival: float = 0.0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def mark_arrival(self, now: float) -> None:
        self.last_arrival = now
        self.arrived.set()

    async def wait_for(self, done: Callable[[], bool], *, idle: float, limit: float = math.inf) -> bool:
        """Wait until ``done()``, until nothing arrived for ``idle`` seconds, or at most ``limit``
        seconds in all; returns ``done()``."""
        deadline = time.perf_counter() + limit
        while not done():
            self.arrived.clear()
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(self.arrived.wait(), min(idle, left))
            except TimeoutError:
                if min(idle, left) == idle:
                    break
        return done()

    def note_error(self, what: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(what)
        elif len(self.errors) == 20:
            self.errors.append("(more errors left out)")


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    ordered = sorted(values)

    def rank(p: float) -> float:  # nearest rank
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000

    return {"p50_ms": round(rank(50), 2), "p95_ms": round(rank(95), 2), "p99_ms": round(rank(99), 2),
            "max_ms": round(ordered[-1] * 1000, 2), "mean_ms": round(sum(ordered) / len(ordered) * 1000, 2)}


def seq_of(text: str, prefix: str) -> int | None:
    if not text.startswith(prefix):
        return None
    try:
        return int(text[len(prefix):])
    except ValueError:
        return None


# --- the simulated clients ---------------------------------------------------------------------
class BenchAgent(AgentClient):
    """An agent who answers every customer message at once; keeps no event list (memory, speed)."""

    stats: Stats
    _answers: set[asyncio.Task[None]]
    # Tickets seen before the router assigned them: ticket id -> the message waiting for an answer.
    _unassigned: dict[int, int]
    _mine: set[int]  # tickets assigned to this agent
    answering: bool

    def _take(self, event: dict[str, Any]) -> None:
        if event["id"] in self._seen:
            return
        self._seen.add(event["id"])
        self.last_event_id = max(self.last_event_id or 0, event["id"])
        me = (self.agent or {}).get("id")
        if event.get("kind") == "ticket.assigned" and (event.get("ticket") or {}).get("assignee_id") == me:
            # A new ticket's first message is seen by every agent before the router picks one:
            # the one it picks answers it now. (With several processes the assignment, published
            # by another process's router, can also arrive before the message.)
            self._mine.add(event["ticket_id"])
            seq = self._unassigned.pop(event["ticket_id"], None)
            if seq is not None:
                self._spawn_answer(event["ticket_id"], seq)
            return
        if event.get("kind") != "message.created":
            return
        message = event.get("message") or {}
        if message.get("direction") != "inbound":
            return
        seq = seq_of(message.get("text", ""), "c")
        if seq is None:
            return
        assignee = (event.get("ticket") or {}).get("assignee_id")
        if assignee is None and event["ticket_id"] in self._mine:
            assignee = me
        if assignee is None:
            self._unassigned[event["ticket_id"]] = seq
            return
        if assignee != me:
            return
        now = time.perf_counter()
        sent = self.stats.sent_at.get(seq)
        if sent is not None and seq not in self.stats.to_agent:
            self.stats.to_agent[seq] = now - sent
            self.stats.mark_arrival(now)
        self._spawn_answer(event["ticket_id"], seq)

    def _spawn_answer(self, ticket_id: int, seq: int) -> None:
        if not self.answering:
            return
        task = asyncio.get_running_loop().create_task(self._answer(ticket_id, seq))
        self._answers.add(task)  # a reference until done, or the task may be collected
        task.add_done_callback(self._answers.discard)

    async def _answer(self, ticket_id: int, seq: int) -> None:
        self.stats.reply_sent_at[seq] = time.perf_counter()
        try:
            await self.reply(ticket_id, f"r{seq}")
        except (HubError, TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            self.stats.note_error(f"reply to {seq}: {exc!r}")


class BenchVisitor(VisitorClient):
    """A customer who records acks and answers; keeps no frame list."""

    stats: Stats

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            kind = frame.get("type")
            now = time.perf_counter()
            if kind == "ack":
                seq = seq_of(frame["message"]["text"], "c")
                if seq is not None and seq in self.stats.sent_at:
                    self.stats.acked[seq] = now - self.stats.sent_at[seq]
                    self.stats.mark_arrival(now)
            elif kind == "message" and frame["message"]["direction"] == "outbound":
                seq = seq_of(frame["message"]["text"], "r")
                if seq is not None and seq in self.stats.reply_sent_at and seq not in self.stats.to_customer:
                    self.stats.to_customer[seq] = now - self.stats.reply_sent_at[seq]
                    self.stats.mark_arrival(now)
            elif kind == "error" and frame.get("code") == "busy":
                self.stats.busy += 1
                self.stats.mark_arrival(now)
            elif kind == "error":
                self.stats.note_error(f"visitor error frame: {frame}")


# --- the hub processes ---------------------------------------------------------------------------
@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def cpu_seconds(self) -> float:
        try:
            return cpu_seconds(self.popen.pid)
        except OSError:  # it has exited
            return 0.0


def spawn(name: str, args: list[str], env: dict[str, str], workdir: Path, cprofile: str | None = None) -> Proc:
    log_path = workdir / f"{name}.log"
    log_file = log_path.open("wb")
    python = [sys.executable, *(["-m", "cProfile", "-o", str(Path(cprofile).resolve())] if cprofile else [])]
    popen = subprocess.Popen([*python, "-m", "channelhub.cli", *args], env=env, cwd=workdir,
                             stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT)
    return Proc(name, popen, log_path, log_file)


def stop(proc: Proc) -> None:
    if proc.popen.poll() is None:
        proc.popen.send_signal(signal.SIGTERM)
        try:
            proc.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait()
    proc.log_file.close()


def machine_busy_ticks() -> tuple[int, int]:
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]  # idle + iowait
    return sum(parts) - idle, sum(parts)


async def prepare(url: str, domain: str, agents: int, capacity: int) -> list[str]:
    """Migrate, then create the tenant and its agents (core.seats, as `channelhub agent create` does)."""
    from core import seats, tenants
    from core.db import Database, migrate

    db = Database(url)
    try:
        await migrate(db)
        async with db.session() as session:
            tenant = await tenants.create(session, name="Bench", domains=[domain])
            tid = tenant.id
        emails = []
        async with db.session(tid) as session:
            for i in range(agents):
                email = f"agent{i + 1}@{domain}"
                await seats.create_agent(session, tid, email=email, name=f"Agent {i + 1}", password=PASSWORD,
                                         role="agent", capacity=capacity)
                emails.append(email)
        return emails
    finally:
        await db.dispose()


def start_py_spy(args: argparse.Namespace, pid: int) -> subprocess.Popen[bytes]:
    local = Path(sys.executable).parent / "py-spy"
    exe = str(local) if local.exists() else shutil.which("py-spy")
    if exe is None:
        raise RuntimeError("--py-spy: py-spy not found (pip install py-spy)")
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--duration", str(math.ceil(args.seconds)),
                             "--rate", "250", "--format", "raw", "--output", args.py_spy, "--nonblocking",
                             *(["--gil"] if args.py_spy_gil else [])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --- the run ------------------------------------------------------------------------------------
async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="chbench-"))
    procs: list[Proc] = []
    pg_url: str | None = None
    clients: list[AgentClient | VisitorClient] = []
    session: aiohttp.ClientSession | None = None
    capacity = args.capacity or math.ceil(args.customers / args.agents)
    if capacity * args.agents < args.customers:
        log(f"warning: {args.agents} agents x capacity {capacity} < {args.customers} customers; "
            "tickets beyond that wait unassigned and their messages count as lost")
    try:
        database_url, pg_url = await scratch_database(args.pg, workdir, "bench")
        domain = f"bench-{uuid.uuid4().hex[:8]}.example.com"
        emails = await prepare(database_url, domain, args.agents, capacity)

        port = args.port or free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHANNELHUB_")}
        env.update({"CHANNELHUB_DATABASE_URL": database_url, "CHANNELHUB_PORT": str(port),
                    "CHANNELHUB_HOST": "127.0.0.1", "CHANNELHUB_LOG_LEVEL": args.log_level,
                    "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
        if args.redis:
            env["CHANNELHUB_REDIS_URL"] = args.redis
            env["CHANNELHUB_QUEUE_NAMESPACE"] = f"bench{os.getpid()}"
            if args.embedded_worker:
                env["CHANNELHUB_EMBEDDED_WORKER"] = "1"
        # Every client connects from loopback, as if behind one load balancer: no per-address cap.
        env["CHANNELHUB_MAX_CONNECTIONS_PER_ADDRESS"] = "0"
        ports = [port] + [free_port() for _ in range(args.processes - 1)]
        serves = []
        for n, p in enumerate(ports):
            name = "serve" if args.processes == 1 else f"serve{n + 1}"
            serves.append(spawn(name, ["serve"], {**env, "CHANNELHUB_PORT": str(p)}, workdir,
                                cprofile=args.cprofile if n == 0 else None))
        procs.extend(serves)
        if args.redis and not args.embedded_worker:
            procs.append(spawn("worker", ["worker"], env, workdir))
        bases = [f"http://127.0.0.1:{p}" for p in ports]

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                        timeout=aiohttp.ClientTimeout(total=60))
        for base, serve in zip(bases, serves, strict=True):
            await wait_up(base, serve.popen, timeout=60)
        kind = "postgresql" if args.pg else "sqlite"
        log(f"hub up at {', '.join(bases)} (serve pids {[s.popen.pid for s in serves]}, {kind}), logs in {workdir}")

        stats = Stats()
        agents: list[BenchAgent] = []
        for i, email in enumerate(emails):
            agent = BenchAgent(bases[i % len(bases)], host=domain, session=session)
            agent.stats, agent._answers, agent._unassigned, agent._mine = stats, set(), {}, set()
            agent.answering = True
            clients.append(agent)
            await agent.login(email, PASSWORD)
            await agent.connect()
            agents.append(agent)
        visitors: list[BenchVisitor] = []
        for i in range(args.customers):
            visitor = BenchVisitor(bases[i % len(bases)], host=domain, session=session)
            visitor.stats = stats
            clients.append(visitor)
            await visitor.connect(name=f"Customer {i + 1}")
            visitors.append(visitor)
        log(f"{len(agents)} agents (capacity {capacity}) and {len(visitors)} customers connected")

        # Warm-up: every customer's first message opens and assigns a ticket (the costlier path);
        # it is not what a steady conversation costs, so it is left out of the figures. Ten at a
        # time, so the burst does not open a connection pool's worth of transactions at once.
        seq = 0
        for start in range(0, len(visitors), 10):
            for visitor in visitors[start:start + 10]:
                seq += 1
                stats.sent_at[seq] = time.perf_counter()
                await visitor.send(f"c{seq}")
            def warmed(n: int = seq) -> bool:
                return len(stats.to_customer) >= n

            if not await stats.wait_for(warmed, idle=30):
                raise RuntimeError(f"warm-up: only {len(stats.to_customer)} of {seq} round trips completed")
        log(f"warm-up done ({seq} tickets)")
        for agent in agents:
            agent.answering = args.replies

        phases = []
        for rate in args.rates:
            phase, seq = await run_phase(args, rate, seq, stats, procs, visitors)
            phases.append(phase)
        return {
            "database": "postgresql" if args.pg else "sqlite",
            "bus": "redis" if args.redis else "in-process",
            "delivery": ("embedded worker" if (not args.redis or args.embedded_worker) else "worker process"),
            "serve_processes": args.processes,
            "customers": args.customers, "agents": args.agents, "capacity": capacity,
            "agents_answer": args.replies,
            "phases": phases,
        }
    except BaseException:
        for proc in procs:
            with contextlib.suppress(OSError):
                log(f"--- {proc.name} output ---\n{proc.log_path.read_text(errors='replace')[-5000:]}")
        raise
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
        if session is not None:
            await session.close()
        for proc in procs:
            await asyncio.to_thread(stop, proc)
        if pg_url is not None:
            with contextlib.suppress(Exception):
                await drop_pg_database(pg_url)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


async def run_phase(args: argparse.Namespace, rate: float, seq: int, stats: Stats, procs: list[Proc],
                    visitors: list[BenchVisitor]) -> tuple[dict[str, Any], int]:
    """Send customer messages at ``rate`` per second for ``args.seconds``, then drain; the figures."""
    for timings in (stats.sent_at, stats.to_agent, stats.acked, stats.reply_sent_at, stats.to_customer):
        timings.clear()
    stats.errors.clear()
    stats.busy = 0
    log(f"sending {rate}/s for {args.seconds}s")
    py_spy = start_py_spy(args, procs[0].popen.pid) if args.py_spy else None
    load_before = os.getloadavg()[0]
    cpu_before = {p.name: p.cpu_seconds() for p in procs}
    self_before = time.process_time()
    busy_before = machine_busy_ticks()
    total = int(rate * args.seconds)
    first = seq + 1
    t0 = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - t0) * rate) + 1)
        while sent < due:
            seq += 1
            visitor = visitors[(seq - first) % len(visitors)]
            stats.sent_at[seq] = time.perf_counter()
            await visitor.send(f"c{seq}")
            sent += 1
        next_at = t0 + sent / rate
        delay = next_at - time.perf_counter()
        await asyncio.sleep(max(delay, 0))
    send_end = time.perf_counter()

    # Drain: wait for the stragglers, until --drain seconds pass with nothing arriving or
    # --max-drain in all (an overloaded hub can take minutes; what is missing then is "lost").
    def finished() -> bool:
        answered = len(stats.to_customer) >= total or not args.replies
        return len(stats.acked) + stats.busy >= total and len(stats.to_agent) >= total - stats.busy and answered

    await stats.wait_for(finished, idle=args.drain, limit=args.max_drain)
    drain_seconds = time.perf_counter() - send_end
    end = stats.last_arrival or time.perf_counter()
    cpu_after = {p.name: p.cpu_seconds() for p in procs}
    self_cpu = time.process_time() - self_before
    busy_after = machine_busy_ticks()
    if py_spy is not None:
        await asyncio.to_thread(py_spy.wait, 60)

    wall = end - t0
    completed = len(stats.to_customer) if args.replies else len(stats.to_agent)
    busy = (busy_after[0] - busy_before[0]) / max(busy_after[1] - busy_before[1], 1)
    serve_cpu = sum(cpu_after[p.name] - cpu_before[p.name] for p in procs if p.name.startswith("serve"))
    result: dict[str, Any] = {
        "target_per_s": rate, "seconds": args.seconds,
        "sent_per_s": round(total / (send_end - t0), 1),
        "drain_seconds": round(drain_seconds, 1),
        "acked_per_s": round(len(stats.acked) / (send_end - t0), 1),
        # Round trips (customer -> agent -> customer) completed per second, or with agents not
        # answering, customer messages that reached an agent.
        "achieved_per_s": round(completed / wall, 1) if wall > 0 else None,
        "customer_ack": percentiles(list(stats.acked.values())),
        "customer_to_agent": percentiles(list(stats.to_agent.values())),
        "agent_to_customer": percentiles(list(stats.to_customer.values())),
        "counts": {
            "sent": total,
            "acked": len(stats.acked),
            "refused_busy": stats.busy,
            "received_by_agents": len(stats.to_agent),
            "replies_sent": len(stats.reply_sent_at),
            "replies_received": len(stats.to_customer),
            "lost_customer_to_agent": len(stats.acked) - len(stats.to_agent),
            "lost_agent_to_customer": len(stats.reply_sent_at) - len(stats.to_customer),
        },
        "cpu_percent_of_one_core": {
            **{name: round((cpu_after[name] - cpu_before[name]) / wall * 100, 1) for name in cpu_after},
            "bench_clients": round(self_cpu / wall * 100, 1),
            "machine_busy_of_all_cores": round(busy * 100, 1),
        },
        # CPU spent per completed round trip (or message): what a rate costs, whatever else the
        # machine is doing. "serve" sums the serve processes.
        "cpu_ms_per_round_trip": {
            **{name: round((cpu_after[name] - cpu_before[name]) / max(completed, 1) * 1000, 3) for name in cpu_after},
            "serve": round(serve_cpu / max(completed, 1) * 1000, 3),
        },
        "load_average_1m_at_start": round(load_before, 2),
        "errors": list(stats.errors),
    }
    if args.py_spy:
        result["py_spy_profile"] = args.py_spy
    return result, seq


async def reference_figures(result: dict[str, Any]) -> dict[str, Any]:
    """The bare reference, measured after the hub in the same run: an aiohttp websocket echo at
    saturation (bench/reference.py). A round trip is at least two echoes' worth of work (the
    customer's message to an agent, the reply back; one with agents not answering), so each
    phase's figures are put beside that many echo messages: ``cpu`` = the echo's CPU for them / the
    serve processes' CPU per round trip, ``throughput`` = round trips achieved per second / the
    echo's messages per second over that many (a share of capacity only at saturation)."""
    log("measuring the reference (aiohttp websocket echo)")
    echo = await measure_ws_echo()
    legs = 2 if result["agents_answer"] else 1
    for phase in result["phases"]:
        phase["share_of_reference"] = {
            "cpu": share(phase["cpu_ms_per_round_trip"]["serve"], legs * echo["cpu_ms_per_message"]),
            "throughput": share(echo["messages_per_s"] / legs, phase["achieved_per_s"]),
        }
    return {"reference": echo}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100, help="web chat customers (default 100)")
    parser.add_argument("--agents", type=int, default=10, help="agents answering (default 10)")
    parser.add_argument("--rate", type=float, default=100, help="customer messages per second (default 100)")
    parser.add_argument("--rates", type=lambda v: [float(x) for x in v.split(",")],
                        help="rising rates, one phase each on the same hub (e.g. 250,500,1000); overrides --rate")
    parser.add_argument("--no-replies", dest="replies", action="store_false",
                        help="agents do not answer: customer messages acknowledged and delivered to agents only")
    parser.add_argument("--processes", type=int, default=1,
                        help="serve processes sharing the clients (needs --pg and --redis when > 1)")
    parser.add_argument("--seconds", type=float, default=10, help="how long to send (default 10)")
    parser.add_argument("--capacity", type=int, default=0,
                        help="tickets per agent (default: enough for every customer)")
    parser.add_argument("--pg", metavar="URL", help="PostgreSQL server (postgresql+asyncpg://...) instead of SQLite")
    parser.add_argument("--redis", metavar="URL", help="Redis for the bus and the queue (with --pg)")
    parser.add_argument("--embedded-worker", action="store_true",
                        help="with --redis: deliver in the serve process, not in a worker process")
    parser.add_argument("--drain", type=float, default=5.0, help="seconds to wait for stragglers without progress")
    parser.add_argument("--max-drain", type=float, default=30.0,
                        help="at most this many seconds of draining after the last send (default 30)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log-level", default="WARNING", help="the hub's log level (default WARNING)")
    parser.add_argument("--py-spy", metavar="FILE", help="record the serve process with py-spy (raw format)")
    parser.add_argument("--py-spy-gil", action="store_true",
                        help="with --py-spy: only samples of the thread holding the GIL (where the CPU goes)")
    parser.add_argument("--cprofile", metavar="FILE",
                        help="run the serve process under cProfile (its main thread), stats written to FILE")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (hub logs, SQLite file)")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="skip the aiohttp websocket echo measured after the hub")
    args = parser.parse_args()
    if args.redis and not args.pg:
        parser.error("--redis goes with --pg (several processes need a shared database)")
    if args.processes > 1 and not args.redis:
        parser.error("--processes > 1 needs --pg and --redis")
    args.rates = args.rates or [args.rate]
    if args.pg and not args.redis:
        log("--pg without --redis: in-process bus and broker in the one serve process")
    result = asyncio.run(run(args))
    if args.reference:
        result.update(asyncio.run(reference_figures(result)))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
