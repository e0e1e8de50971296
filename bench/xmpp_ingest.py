#!/usr/bin/env python3
"""XMPP ingest: N customers on a real prosody write to one tenant's account.

Starts a throw-away prosody on loopback (tests/xmpp/prosody.py) and one `channelhub serve`
(SQLite in a temporary folder, or PostgreSQL with ``--pg URL``) that connects the tenant's client
account. ``--customers`` slixmpp clients (default 20) each send ``--messages`` chat messages
(default 50) as fast as the server takes them, all at once. A supervisor of the tenant is connected
to the agent gateway and notes when each message's ``message.created`` reaches its socket.

Measured: messages per second into tickets (first send to the last message on the agent's socket),
send → agent's socket latency (p50/p95/p99), every message stored once, the serve process's CPU per
message. Then ``--tenants`` (default 100) more tenants each get an account on the same prosody, and
the same serve process's connections to prosody and its RSS are counted once they are all connected.

The same-run reference: the same customers send the same messages to a bare slixmpp client on the
same prosody, which only notes when each arrives (an echo with no storage): the hub's figures are
printed as a share of it.

Prints ONE JSON object on stdout (progress goes to stderr). Never part of the test run.

    python bench/xmpp_ingest.py --customers 20 --messages 50 --tenants 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import slixmpp  # noqa: E402
from reference import cpu_seconds, free_port, scratch_database, share, wait_up  # noqa: E402
from ticket_create import log, start_serve, stop_serve  # noqa: E402
from webchat_roundtrip import percentiles  # noqa: E402

from admin_api.client import AgentClient  # noqa: E402
from core.db import drop_pg_database  # noqa: E402
from tests.xmpp.prosody import Prosody  # noqa: E402

PASSWORD = "bench password 1"
SECRET_KEY = "bench-secret-key-" + "x" * 32


def client(prosody: Prosody, user: str) -> Any:
    xmpp = slixmpp.ClientXMPP(f"{prosody.jid(user)}/bench", "pw", plugin_config={
        "feature_mechanisms": {"unencrypted_plain": True, "unencrypted_scram": True}})
    xmpp.enable_plaintext, xmpp.enable_starttls, xmpp.enable_direct_tls = True, False, False
    return xmpp


async def connect_all(prosody: Prosody, users: list[str]) -> list[Any]:
    clients = [client(prosody, u) for u in users]

    async def one(c: Any) -> None:
        c.connect(prosody.host, prosody.c2s_port)
        await c.wait_until("session_start", 30)
        c.send_presence()

    await asyncio.gather(*(one(c) for c in clients))
    return clients


async def disconnect_all(clients: list[Any]) -> None:
    for c in clients:
        try:
            await asyncio.wait_for(c.disconnect(wait=0.5), 3)
        except Exception:
            c.abort()


async def blast(clients: list[Any], to: str, per_client: int, sent_at: dict[str, float]) -> None:
    """Every client sends its messages one after another (slixmpp queues them), all at once."""
    async def one(n: int, c: Any) -> None:
        for i in range(per_client):
            text = f"bench c{n} m{i} {uuid.uuid4().hex[:6]}"
            key = f"c{n}m{i}"
            msg = c.make_message(mto=to, mbody=f"[{key}] {text}", mtype="chat")
            msg["id"] = key
            sent_at[key] = time.perf_counter()
            msg.send()
            if i % 10 == 9:
                await asyncio.sleep(0)  # let the send queue drain a little, as a real client would

    await asyncio.gather(*(one(n, c) for n, c in enumerate(clients)))


def key_of(text: str) -> str | None:
    if text.startswith("[") and "]" in text:
        return text[1:text.index("]")]
    return None


async def wait_all(arrived: dict[str, float], want: int, timeout: float) -> None:
    for _ in range(int(timeout / 0.05)):
        if len(arrived) >= want:
            return
        await asyncio.sleep(0.05)


def figures(sent_at: dict[str, float], arrived: dict[str, float]) -> dict[str, Any]:
    lat = [arrived[k] - sent_at[k] for k in arrived if k in sent_at]
    if not arrived:
        return {"received": 0}
    span = max(arrived.values()) - min(sent_at.values())
    return {"received": len(arrived), "messages_per_s": round(len(arrived) / span, 1) if span > 0 else None,
            "latency": percentiles(lat)}


def established_to(port: int) -> int:
    """ESTABLISHED TCP connections to ``port`` on loopback (the hub's, once the customers left)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            remote, state = parts[2], parts[3]
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


async def make_tenant(url: str, domain: str, *, admin: bool) -> int:
    from core import seats, tenants
    from core.db import Database, migrate

    db = Database(url)
    try:
        await migrate(db)
        async with db.session() as session:
            tid = (await tenants.create(session, name=f"Bench {domain}", domains=[domain])).id
        if admin:
            async with db.session(tid) as session:
                await seats.create_agent(session, tid, email=f"admin@{domain}", name="Admin", password=PASSWORD,
                                         role="admin", capacity=1000)
        return int(tid)
    finally:
        await db.dispose()


async def add_accounts(url: str, prosody: Prosody, jids: list[tuple[int, str]]) -> None:
    """XMPP client accounts straight into the database (what the admin API does, a hundred at once)."""
    from connectors.xmpp import store as xstore
    from core.config import Settings
    from core.db import Database

    settings = Settings.from_env({"CHANNELHUB_DATABASE_URL": url, "CHANNELHUB_SECRET_KEY": SECRET_KEY})
    db = Database(url)
    try:
        for tid, jid in jids:
            async with db.session(tid) as session:
                await xstore.create_account(session, settings, tid, {
                    "kind": "client", "jid": jid, "secret": "pw", "host": prosody.host, "port": prosody.c2s_port,
                    "security": "none"}, actor_id=None, ip=None)
    finally:
        await db.dispose()


async def connected_count(url: str) -> int:
    from sqlalchemy import func, select

    from connectors.xmpp.models import XmppAccount
    from core.db import Database

    db = Database(url)
    try:
        async with db.read() as session:
            return int((await session.execute(select(func.count()).select_from(XmppAccount)
                                              .where(XmppAccount.connected.is_(True)))).scalar_one())
    finally:
        await db.dispose()


async def until_connected(url: str, want: int, timeout: float) -> None:
    for _ in range(int(timeout / 0.2)):
        if await connected_count(url) >= want:
            return
        await asyncio.sleep(0.2)


async def stored_count(url: str) -> tuple[int, int]:
    from sqlalchemy import func, select

    from core.db import Database
    from core.models import Direction, Message

    db = Database(url)
    try:
        async with db.read() as session:
            row = (await session.execute(select(func.count(), func.count(func.distinct(Message.channel_message_id)))
                                         .where(Message.direction == Direction.INBOUND,
                                                Message.channel == "xmpp"))).one()
            return int(row[0]), int(row[1])
    finally:
        await db.dispose()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="chbench-xmpp-"))
    pg_url: str | None = None
    proc = None
    log_file = (workdir / "serve.log").open("wb")
    customers = [f"c{n}" for n in range(args.customers)]
    prosody = Prosody(log_level="warn")
    prosody.write_accounts({**{u: "pw" for u in customers}, "support": "pw", "echo": "pw",
                            **{f"s{n}": "pw" for n in range(args.tenants)}})
    await prosody.start()
    result: dict[str, Any] = {"customers": args.customers, "messages": args.customers * args.messages}
    clients: list[Any] = []
    agent: AgentClient | None = None
    try:
        database_url, pg_url = await scratch_database(args.pg, workdir, "xmpp")
        domain = f"bench-{uuid.uuid4().hex[:8]}.example.com"
        tid = await make_tenant(database_url, domain, admin=True)
        await add_accounts(database_url, prosody, [(tid, prosody.jid("support"))])
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHANNELHUB_")}
        env.update({"CHANNELHUB_DATABASE_URL": database_url, "CHANNELHUB_PORT": str(port),
                    "CHANNELHUB_HOST": "127.0.0.1", "CHANNELHUB_LOG_LEVEL": args.log_level,
                    "CHANNELHUB_SECRET_KEY": SECRET_KEY, "CHANNELHUB_SMTP_PORT": "off",
                    "CHANNELHUB_XMPP_REFRESH_SECONDS": "1", "CHANNELHUB_XMPP_LEASE_SECONDS": "10",
                    "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
        proc = start_serve(env, workdir, log_file)
        await wait_up(f"http://127.0.0.1:{port}", proc, timeout=60)
        await until_connected(database_url, 1, 60)
        agent = AgentClient(f"http://127.0.0.1:{port}", host=domain)
        await agent.login(f"admin@{domain}", PASSWORD)
        await agent.connect()
        clients = await connect_all(prosody, customers)
        log(f"hub up (pid {proc.pid}); {len(clients)} customers send {args.messages} messages each")

        sent_at: dict[str, float] = {}
        arrived: dict[str, float] = {}
        seen = 0

        async def watch() -> None:
            nonlocal seen
            while True:
                events = agent.events
                for e in events[seen:]:
                    if e["kind"] in ("message.created", "ticket.created") and e.get("message"):
                        key = key_of(e["message"]["text"])
                        if key and key not in arrived:
                            arrived[key] = time.perf_counter()
                seen = len(events)
                async with agent._changed:
                    await agent._changed.wait()

        watcher = asyncio.create_task(watch())
        cpu0 = cpu_seconds(proc.pid)
        await blast(clients, prosody.jid("support"), args.messages, sent_at)
        await wait_all(arrived, len(sent_at), args.timeout)
        cpu = cpu_seconds(proc.pid) - cpu0
        watcher.cancel()
        hub = figures(sent_at, arrived)
        hub["cpu_ms_per_message"] = round(cpu * 1000 / max(len(arrived), 1), 3)
        stored, distinct = await stored_count(database_url)
        result.update({"database": "postgresql" if args.pg else "sqlite", "hub": hub,
                       "messages_per_s_into_tickets": hub.get("messages_per_s"),
                       "p99_send_to_agent_socket_ms": (hub.get("latency") or {}).get("p99_ms"),
                       "stored": stored, "every_message_stored_once": stored == distinct == len(sent_at)})
        await disconnect_all(clients)
        clients = []

        # Side by side: 100 more tenants' accounts in the same process.
        log(f"adding {args.tenants} tenants' accounts")
        extra = []
        for n in range(args.tenants):
            extra.append((await make_tenant(database_url, f"t{n}-{domain}", admin=False), prosody.jid(f"s{n}")))
        started = time.perf_counter()
        await add_accounts(database_url, prosody, extra)
        await until_connected(database_url, args.tenants + 1, 120)
        await asyncio.sleep(1)
        result["tenants_side_by_side"] = {
            "accounts": args.tenants + 1, "connected": await connected_count(database_url),
            "connected_within_s": round(time.perf_counter() - started, 2),
            "connections_to_prosody": established_to(prosody.c2s_port), "serve_rss_mb": rss_mb(proc.pid)}
    finally:
        if agent is not None:
            await agent.close()
        await disconnect_all(clients)
        stop_serve(proc)
        log_file.close()
        if pg_url:
            await drop_pg_database(pg_url)

    if not args.no_reference:
        log("measuring the reference (a bare slixmpp client on the same prosody)")
        [echo] = await connect_all(prosody, ["echo"])
        ref_sent: dict[str, float] = {}
        ref_arrived: dict[str, float] = {}

        def on_message(msg: Any) -> None:
            key = key_of(str(msg["body"]))
            if key and key not in ref_arrived:
                ref_arrived[key] = time.perf_counter()

        echo.add_event_handler("message", on_message)
        clients = await connect_all(prosody, customers)
        await blast(clients, prosody.jid("echo"), args.messages, ref_sent)
        await wait_all(ref_arrived, len(ref_sent), args.timeout)
        await disconnect_all([*clients, echo])
        ref = figures(ref_sent, ref_arrived)
        result["reference"] = {"kind": "a bare slixmpp client on the same prosody, storing nothing", **ref}
        result["share_of_reference"] = {
            "throughput": share(ref.get("messages_per_s"), (result.get("hub") or {}).get("messages_per_s")),
            "p99_latency": share((result.get("hub") or {}).get("latency", {}).get("p99_ms"),
                                 (ref.get("latency") or {}).get("p99_ms")),
        }
    await prosody.close()
    result["load_average_1m"] = round(os.getloadavg()[0], 2)
    if args.keep:
        result["workdir"] = str(workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20, help="customers writing at once (default 20)")
    parser.add_argument("--messages", type=int, default=50, help="messages per customer (default 50)")
    parser.add_argument("--tenants", type=int, default=100, help="tenants' accounts side by side (default 100)")
    parser.add_argument("--pg", metavar="URL", help="PostgreSQL server (postgresql+asyncpg://...) instead of SQLite")
    parser.add_argument("--timeout", type=float, default=120.0, help="how long to wait for the messages")
    parser.add_argument("--log-level", default="WARNING", help="the hub's log level (default WARNING)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (hub log, SQLite file)")
    parser.add_argument("--no-reference", action="store_true", help="skip the bare reference")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
