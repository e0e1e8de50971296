#!/usr/bin/env python3
"""Excel export at scale (#16): `channelhub export` of a tenant with 1,000,000 tickets.

Builds one tenant with ``--tickets`` tickets (default 1,000,000) of ``--tickets / 5`` customers
(names and subjects half in Chinese), inserted in bulk with Core statements into a database
migrated with alembic (a database that already holds the benchmark's tenant is reused;
``--rebuild`` makes it again). ``--messages N`` adds N messages and exports them too.

Then, each in a process of its own so that each peak RSS is its own:

* the export: ``channelhub export --domain ... --out ...`` (core.exports.build, the code the
  background builder runs): wall time, rows per second, peak RSS (ru_maxrss);
* the reference of the same run: the bare library (xlsxwriter, constant_memory, the same options)
  writing the same number of rows and columns from memory, with no database.

Aims (issue #16): under 3 minutes and under 100 MB RSS for 1,000,000 tickets.

Prints ONE JSON object (progress on stderr). Never part of the test run.

    .venv/bin/python bench/export.py                      # SQLite in /tmp
    .venv/bin/python bench/export.py --tickets 200000     # smaller
    .venv/bin/python bench/export.py --database-url postgresql+asyncpg://postgres@127.0.0.1/chexport_bench
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The database and the hub's modules are imported where they are used, never at the top: each
# child process measures its own peak RSS, which imports it does not need would inflate (core.tenants
# alone brings some 55 MB of billing documents and password hashing).

DOMAIN = "export-bench.example.com"
START = datetime(2025, 1, 1, tzinfo=UTC)
BATCH = 20_000
TIME_FORMAT = "yyyy-mm-dd hh:mm:ss"  # core.exports.TIME_FORMAT (not imported: the reference is the bare library)


def peak_rss_kb() -> int:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries that over an exec
    from the parent that forked, so a child would report the builder's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def cpu_seconds() -> float:
    """This process's CPU time (user and system, every thread): the rate per CPU second holds on a
    loaded machine, where the wall time mostly says how busy the other processes were."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


async def build_database(url: str, tickets: int, messages: int, rebuild: bool) -> None:
    from sqlalchemy import func, insert, select

    from core import tenants
    from core.db import Database, migrate
    from core.models import Customer, Message, Tenant, TenantDomain, Ticket

    db = Database(url)
    try:
        await migrate(db)
        async with db.read() as session:
            tid = await session.scalar(select(TenantDomain.tenant_id).where(TenantDomain.domain == DOMAIN))
            have = (await session.scalar(select(func.count()).select_from(Ticket).where(Ticket.tenant_id == tid))
                    if tid else 0)
            have_messages = await session.scalar(select(func.count()).select_from(Message).where(
                Message.tenant_id == tid)) if tid else 0
        if tid and have == tickets and have_messages == messages and not rebuild:
            log(f"reusing {tickets} tickets of tenant {tid}")
            return
        if tid:
            async with db.session() as session:
                await session.delete(await session.get(Tenant, tid))
        async with db.session() as session:
            tid = (await tenants.create(session, name="Export bench", domains=[DOMAIN])).id
        customers = max(tickets // 5, 1)
        t0 = time.perf_counter()
        for start in range(0, customers, BATCH):
            async with db.connection() as conn:
                await conn.execute(insert(Customer), [
                    {"tenant_id": tid, "name": f"客户 {i}" if i % 2 else f"Customer {i}",
                     "email": f"c{i}@example.com", "created_at": START + timedelta(seconds=i)}
                    for i in range(start, min(start + BATCH, customers))])
        async with db.read() as session:
            first = await session.scalar(select(func.min(Customer.id)).where(Customer.tenant_id == tid))
        assert first is not None
        statuses = ("new", "open", "pending", "solved", "closed")
        channels = ("webchat", "email", "wechat")
        for start in range(0, tickets, BATCH):
            async with db.connection() as conn:
                await conn.execute(insert(Ticket), [
                    {"tenant_id": tid, "customer_id": first + i % customers, "channel": channels[i % 3],
                     "subject": f"订单 {i} 退款申请" if i % 2 else f"Order {i}: where is my parcel?",
                     "status": statuses[i % 5], "priority": "normal", "priority_rank": 1, "routing_state": "idle",
                     "created_at": START + timedelta(seconds=20 * i),
                     "updated_at": START + timedelta(seconds=20 * i + 5)}
                    for i in range(start, min(start + BATCH, tickets))])
            if start % 200_000 == 0:
                log(f"  {start + BATCH} tickets")
        if messages:
            async with db.read() as session:
                first_ticket = await session.scalar(select(func.min(Ticket.id)).where(Ticket.tenant_id == tid))
            assert first_ticket is not None
            for start in range(0, messages, BATCH):
                async with db.connection() as conn:
                    await conn.execute(insert(Message), [
                        {"tenant_id": tid, "ticket_id": first_ticket + i % tickets, "channel": "webchat",
                         "direction": "inbound", "body": f"你好, where is order {i}?",
                         "created_at": START + timedelta(seconds=20 * i)}
                        for i in range(start, min(start + BATCH, messages))])
        log(f"built {customers} customers, {tickets} tickets, {messages} messages in {time.perf_counter() - t0:.0f} s")
    finally:
        await db.dispose()


def child_export(url: str, out: str, messages: bool) -> None:
    """In a process of its own: the command, then its own peak RSS on the last line of stdout."""
    os.environ["CHANNELHUB_DATABASE_URL"] = url
    from channelhub.cli import main

    t0 = time.perf_counter()
    code = main(["export", "--domain", DOMAIN, "--out", out, *(["--messages"] if messages else [])])
    wall = time.perf_counter() - t0
    print(json.dumps({"code": code, "wall": wall, "rss_kb": peak_rss_kb(), "cpu": cpu_seconds()}))


def child_reference(out: str, rows: int) -> None:
    """The bare library: the same options, the same number of rows and columns (the Tickets sheet's
    15: numbers, texts, times), from memory."""
    import xlsxwriter

    t0 = time.perf_counter()
    book = xlsxwriter.Workbook(out, {"constant_memory": True, "strings_to_formulas": False,
                                     "strings_to_numbers": False, "strings_to_urls": False})
    when = book.add_format({"num_format": TIME_FORMAT})
    ws = book.add_worksheet("Tickets")
    at = datetime(2025, 1, 1)
    for r in range(rows):
        ws.write_number(r, 0, r)
        ws.write_number(r, 1, r // 5)
        ws.write_string(r, 2, f"客户 {r}")
        ws.write_string(r, 3, "webchat")
        ws.write_string(r, 4, f"订单 {r} 退款申请")
        ws.write_string(r, 5, "open")
        ws.write_string(r, 6, "normal")
        ws.write_datetime(r, 10, at, when)
        ws.write_datetime(r, 11, at, when)
    book.close()
    wall = time.perf_counter() - t0
    print(json.dumps({"code": 0, "wall": wall, "rss_kb": peak_rss_kb(), "cpu": cpu_seconds()}))


def run_child(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, *args], stdout=subprocess.PIPE, check=True)
    return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=0)
    parser.add_argument("--database-url", default=f"sqlite+aiosqlite:///{tempfile.gettempdir()}/chexport_bench.db")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "export":
            child_export(rest[0], rest[1], rest[2] == "1")
        else:
            child_reference(rest[0], int(rest[1]))
        return
    asyncio.run(build_database(args.database_url, args.tickets, args.messages, args.rebuild))
    customers = max(args.tickets // 5, 1)
    rows = customers + args.tickets + args.messages
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "export.xlsx")
        log("exporting ...")
        export = run_child("--child", "export", args.database_url, out, "1" if args.messages else "0")
        size = Path(out).stat().st_size
        log("the reference ...")
        reference = run_child("--child", "reference", str(Path(folder) / "reference.xlsx"), str(rows))
    print(json.dumps({
        "benchmark": "export",
        "load_average": os.getloadavg()[0], "cpus": os.cpu_count(),
        "database": args.database_url.split(":")[0],
        "tickets": args.tickets, "customers": customers, "messages": args.messages, "rows": rows,
        "export": {"wall_seconds": round(export["wall"], 1), "rows_per_second": round(rows / export["wall"]),
                   "cpu_seconds": round(export["cpu"], 1), "rows_per_cpu_second": round(rows / export["cpu"]),
                   "peak_rss_mb": round(export["rss_kb"] / 1024, 1), "file_mb": round(size / 2**20, 1),
                   "exit_code": export["code"]},
        "reference": {"what": "xlsxwriter constant_memory, the same number of rows (9 of 15 cells filled), "
                              "no database",
                      "wall_seconds": round(reference["wall"], 1), "rows_per_second": round(rows / reference["wall"]),
                      "cpu_seconds": round(reference["cpu"], 1),
                      "rows_per_cpu_second": round(rows / reference["cpu"]),
                      "peak_rss_mb": round(reference["rss_kb"] / 1024, 1)},
        "aims": {"wall_seconds": 180, "peak_rss_mb": 100},
    }, indent=2))


if __name__ == "__main__":
    main()
