#!/usr/bin/env python3
"""Ticket creation over the API under load: many agents POST /api/v1/tickets at once.

Starts one `channelhub serve` (SQLite in a temporary folder by default, or PostgreSQL with
``--pg URL``), creates a tenant and M agents, signs them in, then keeps ``--concurrency`` requests
in flight (closed loop: each sends its next as soon as its last was answered) for ``--seconds``,
the agents taking turns. Each request makes a ticket for a new customer with a first internal note
(a phone call written down), the path core.ticket_writes batches.

Measured: tickets per second answered 201, latency percentiles, 503 busy answers (load shed), the
serve process's CPU per ticket, and that the tickets are all stored (counted in the database
afterwards). After the hub, the bare reference (``bench/reference.py json-api``: an aiohttp
handler taking the same JSON body and answering 201, storing nothing) is driven the same way, and
the hub's figures are printed as a share of it (``share_of_reference``).

Prints ONE JSON object on stdout (progress goes to stderr). Never part of the test run.

    python bench/ticket_create.py --seconds 10 --concurrency 64
    python bench/ticket_create.py --pg postgresql+asyncpg://postgres@127.0.0.1/chbench
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp  # noqa: E402
from reference import cpu_seconds, free_port, reference_server, scratch_database, share, wait_up  # noqa: E402
from webchat_roundtrip import PASSWORD, percentiles, prepare  # noqa: E402  (the same tenant and agents)

from core.db import drop_pg_database  # noqa: E402


def log(*args: Any) -> None:
    print("[bench]", *args, file=sys.stderr, flush=True)


async def count_tickets(url: str) -> int:
    from sqlalchemy import func, select

    from core.db import Database
    from core.models import Ticket

    db = Database(url)
    try:
        async with db.read() as session:  # a database of its own: only the bench's tenant
            return int((await session.execute(select(func.count(Ticket.id)))).scalar_one())
    finally:
        await db.dispose()


async def drive(base: str, host: str, tokens: list[str], *, concurrency: int, seconds: float,
                pid: int) -> dict[str, Any]:
    """Closed loop: ``concurrency`` requests in flight for ``seconds``; the figures of the run."""
    latencies: list[float] = []
    counts = {"created": 0, "busy": 0, "errors": 0}
    errors: list[str] = []
    turn = itertools.cycle(tokens)
    serial = itertools.count()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers={"Host": host}) as http:
        stop_at = time.monotonic() + seconds

        async def loop() -> None:
            while time.monotonic() < stop_at:
                n = next(serial)
                body = {"text": f"Phone call {n}: the parcel never arrived", "customer": {"name": f"Caller {n}"}}
                started = time.perf_counter()
                try:
                    async with http.post(base + "/api/v1/tickets", json=body,
                                         headers={"Authorization": f"Bearer {next(turn)}"}) as resp:
                        await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, ConnectionError) as exc:
                    status, exc_text = 0, repr(exc)
                else:
                    exc_text = ""
                if status == 201:
                    counts["created"] += 1
                    latencies.append(time.perf_counter() - started)
                elif status == 503:
                    counts["busy"] += 1
                    await asyncio.sleep(0.05)
                else:
                    counts["errors"] += 1
                    if len(errors) < 10:
                        errors.append(exc_text or f"HTTP {status}")

        cpu_before = cpu_seconds(pid)
        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(pid) - cpu_before
    return {"seconds": round(elapsed, 2), "per_s": round(counts["created"] / elapsed, 1), **counts,
            "latency": percentiles(latencies), "cpu_percent_of_one_core": round(cpu / elapsed * 100, 1),
            "cpu_ms_per_request": round(cpu * 1000 / max(counts["created"], 1), 3), "errors_seen": errors}


def start_serve(env: dict[str, str], workdir: Path, log_file: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "channelhub.cli", "serve"], env=env, cwd=workdir,
                            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT)


def stop_serve(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM (a graceful stop), then kill if it is still there after 15 s."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="chbench-tickets-"))
    pg_url: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_file = (workdir / "serve.log").open("wb")
    try:
        database_url, pg_url = await scratch_database(args.pg, workdir, "tickets")
        domain = f"bench-{uuid.uuid4().hex[:8]}.example.com"
        emails = await prepare(database_url, domain, args.agents, 10)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHANNELHUB_")}
        env.update({"CHANNELHUB_DATABASE_URL": database_url, "CHANNELHUB_PORT": str(port),
                    "CHANNELHUB_HOST": "127.0.0.1", "CHANNELHUB_LOG_LEVEL": args.log_level,
                    "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
        proc = start_serve(env, workdir, log_file)
        base = f"http://127.0.0.1:{port}"
        await wait_up(base, proc, timeout=60)
        tokens = []
        async with aiohttp.ClientSession(headers={"Host": domain}) as http:
            for email in emails:
                async with http.post(base + "/api/v1/auth/login", json={"email": email, "password": PASSWORD}) as r:
                    tokens.append((await r.json())["token"])
        log(f"hub up at {base} (pid {proc.pid}), {len(tokens)} agents signed in; warming up")
        await drive(base, domain, tokens, concurrency=args.concurrency, seconds=1.0, pid=proc.pid)
        before = await count_tickets(database_url)
        log(f"creating tickets with {args.concurrency} in flight for {args.seconds}s")
        hub = await drive(base, domain, tokens, concurrency=args.concurrency, seconds=args.seconds, pid=proc.pid)
        stored = await count_tickets(database_url) - before
    finally:
        stop_serve(proc)
        log_file.close()
        if pg_url:
            await drop_pg_database(pg_url)
    result: dict[str, Any] = {
        "database": "postgresql" if args.pg else "sqlite", "agents": args.agents,
        "concurrency": args.concurrency, "tickets_per_s": hub["per_s"], "hub": hub,
        "stored": stored, "all_stored": stored == hub["created"],
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
    }
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        result["workdir"] = str(workdir)
    if not args.no_reference:
        log("measuring the reference (bench/reference.py json-api)")
        with reference_server("json-api") as (ref_url, ref_pid):
            await wait_up(ref_url)
            ref = await drive(ref_url, "reference", ["t"], concurrency=args.concurrency,
                              seconds=min(args.seconds, 5.0), pid=ref_pid)
        result["reference"] = {"kind": "aiohttp JSON POST answering 201 (stores nothing)", **ref}
        result["share_of_reference"] = {
            "throughput": share(ref["per_s"], hub["per_s"]),
            "cpu": share(hub["cpu_ms_per_request"], ref["cpu_ms_per_request"]),
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=20, help="agents creating tickets (default 20)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight (default 64)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to create (default 10)")
    parser.add_argument("--pg", metavar="URL", help="PostgreSQL server (postgresql+asyncpg://...) instead of SQLite")
    parser.add_argument("--log-level", default="WARNING", help="the hub's log level (default WARNING)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (hub log, SQLite file)")
    parser.add_argument("--no-reference", action="store_true", help="skip the bare reference")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
