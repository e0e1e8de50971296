#!/usr/bin/env python3
"""SQLAlchemy against the bare driver on ingest's hot statements (issue #10 asks for the figure).

Ingest writes a batch's messages with one multi-row INSERT ... RETURNING and its joined tickets
with one executemany UPDATE (core.ingest). This measures the same two statements on the same
rows three ways, CPU time per row of this process:

- ``sqlalchemy``: as core.ingest runs them (Core statements built once, on an AsyncConnection,
  with SQLAlchemy's type processing and insertmanyvalues);
- ``driver``: the SQL text compiled once by SQLAlchemy, run on the driver's own connection (the
  sqlite3 connection under aiosqlite; asyncpg's ``fetch``/``executemany``), values converted by
  hand as the column types would.

It prints the ratio: how much of the statements' cost is SQLAlchemy's. The whole ingest path is
several times the statements (reading the batch's tickets, events, serialising for the bus), so a
ratio here bounds what a switch to the driver could save on it.

    python bench/driver.py                          # SQLite in a temporary folder
    python bench/driver.py --pg postgresql+asyncpg://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reference import scratch_database  # bench/reference.py, beside this script
from sqlalchemy import bindparam, insert, update

from core import tenants
from core.channels import InboundMessage
from core.config import Settings
from core.db import Database, drop_pg_database, migrate
from core.models import Message, Ticket, table_of, utcnow


async def setup(url: str, tickets: int) -> tuple[Database, int, list[int]]:
    from channelhub.app import build_hub
    from core.ingest import ingest_many

    hub = build_hub(Settings(database_url=url))
    await migrate(hub.db)
    async with hub.db.session() as session:
        tenant = await tenants.create(session, name="Driver", domains=[f"driver{time.time_ns()}.example.com"])
    msgs = [InboundMessage(tenant_id=tenant.id, channel="webchat", external_id=f"visitor-{i:04d}-xxxxxxxxxx",
                           text="hello", channel_message_id=f"first-{i}", received_at=utcnow())
            for i in range(tickets)]
    results = await ingest_many(hub, msgs)
    await hub.close()
    return Database(url), tenant.id, [r.message["ticket_id"] for r in results]


def rows_for(tenant_id: int, ticket_ids: list[int], n: int, start: int
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    now = utcnow()
    messages = [{"tenant_id": tenant_id, "ticket_id": ticket_ids[i % len(ticket_ids)], "channel": "webchat",
                 "direction": "inbound", "body": f"message {start + i}", "attachments": [],
                 "channel_message_id": f"m-{start + i}", "created_at": now} for i in range(n)]
    tickets = [{"_id": ticket_ids[i % len(ticket_ids)], "last_message_at": now, "updated_at": now}
               for i in range(n)]
    return messages, tickets


SERIAL = itertools.count()
M, T = table_of(Message), table_of(Ticket)
INSERT = insert(M).returning(M.c.id)
UPDATE = update(T).where(T.c.id == bindparam("_id")).values(last_message_at=bindparam("last_message_at"),
                                                            updated_at=bindparam("updated_at"))


async def with_sqlalchemy(db: Database, messages: list[dict[str, Any]], tickets: list[dict[str, Any]]) -> int:
    async with db.connection() as conn:
        ids = list((await conn.execute(INSERT, messages)).scalars())
        await conn.execute(UPDATE, tickets)
    return len(ids)


def sqlite_time(value: Any) -> str:
    # As SQLAlchemy's SQLite DATETIME stores it.
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


MESSAGE_COLUMNS = ("tenant_id", "ticket_id", "channel", "direction", "body", "attachments", "channel_message_id",
                   "created_at")


async def with_driver(db: Database, messages: list[dict[str, Any]], tickets: list[dict[str, Any]]) -> int:
    async with db.connection() as conn:
        raw: Any = (await conn.get_raw_connection()).driver_connection
        if db.is_sqlite:
            sqlite = raw._conn  # the sqlite3.Connection under aiosqlite (core.db runs it inline)
            values = ", ".join(["(" + ", ".join("?" * len(MESSAGE_COLUMNS)) + ")"] * len(messages))
            params: list[Any] = []
            for m in messages:
                params += [m["tenant_id"], m["ticket_id"], m["channel"], m["direction"], m["body"],
                           json.dumps(m["attachments"]), m["channel_message_id"], sqlite_time(m["created_at"])]
            cur = sqlite.execute(f"INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)}) VALUES {values} RETURNING id",
                                 params)
            ids = [r[0] for r in cur.fetchall()]
            sqlite.executemany("UPDATE tickets SET last_message_at = ?, updated_at = ? WHERE id = ?",
                               [(sqlite_time(t["last_message_at"]), sqlite_time(t["updated_at"]), t["_id"])
                                for t in tickets])
        else:
            cols = ", ".join(MESSAGE_COLUMNS)
            rows = await raw.fetch(
                f"INSERT INTO messages ({cols}) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], "
                "$4::text[], $5::text[], $6::json[], $7::text[], $8::timestamptz[]) RETURNING id",
                [m["tenant_id"] for m in messages], [m["ticket_id"] for m in messages],
                [m["channel"] for m in messages], [m["direction"] for m in messages],
                [m["body"] for m in messages], [json.dumps(m["attachments"]) for m in messages],
                [m["channel_message_id"] for m in messages], [m["created_at"] for m in messages])
            ids = [r[0] for r in rows]
            await raw.executemany("UPDATE tickets SET last_message_at = $1, updated_at = $2 WHERE id = $3",
                                  [(t["last_message_at"], t["updated_at"], t["_id"]) for t in tickets])
    return len(ids)


async def measure(db: Database, tenant_id: int, ticket_ids: list[int], batch: int, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    start = next(SERIAL) * 1_000_000
    for name, run in (("sqlalchemy", with_sqlalchemy), ("driver", with_driver)):
        for _ in range(3):  # compile caches, prepared statements
            messages, tickets = rows_for(tenant_id, ticket_ids, batch, start)
            start += batch
            await run(db, messages, tickets)
        cpu = 0.0
        t0 = time.perf_counter()
        for _ in range(rounds):
            messages, tickets = rows_for(tenant_id, ticket_ids, batch, start)
            start += batch
            c0 = time.process_time()
            assert await run(db, messages, tickets) == batch
            cpu += time.process_time() - c0
        out[name] = {"cpu_us_per_row": round(cpu / (rounds * batch) * 1e6, 1),
                     "wall_ms_per_batch": round((time.perf_counter() - t0) / rounds * 1000, 2)}
    out["sqlalchemy_over_driver"] = round(out["sqlalchemy"]["cpu_us_per_row"] / out["driver"]["cpu_us_per_row"], 2)
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    url, pg_url = await scratch_database(args.pg, Path(tempfile.mkdtemp(prefix="chdriver-")), "driver")
    db, tenant_id, ticket_ids = await setup(url, 100)
    try:
        return {"database": "postgresql" if args.pg else "sqlite",
                "statements": "multi-row INSERT messages RETURNING id + executemany UPDATE tickets",
                **{f"batch_{b}": await measure(db, tenant_id, ticket_ids, b, args.rounds) for b in args.batches}}
    finally:
        await db.dispose()
        if pg_url:
            await drop_pg_database(pg_url)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", metavar="URL", help="PostgreSQL server (postgresql+asyncpg://...) instead of SQLite")
    parser.add_argument("--batches", type=lambda v: [int(x) for x in v.split(",")], default=[1, 10, 100])
    parser.add_argument("--rounds", type=int, default=200)
    print(json.dumps(asyncio.run(main_async(parser.parse_args())), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
