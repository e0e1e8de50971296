"""Benchmark: WeChat Official Account pushes into one `channelhub serve` process.

Starts a hub (SQLite in a temporary folder by default; --pg URL --redis URL for the production
shape), creates a tenant, an admin and an Official Account through the admin API, then sends
signed pushes (AES-encrypted with --safe) built as the platform builds them, at rising rates,
from many concurrent connections. Pushes are scheduled open-loop at the target rate and latency
is measured from the scheduled send time, so a hub that falls behind shows it in p99 instead of
silently slowing the client down.

Prints one JSON object: per rate step, pushes/s offered and accepted ("success" answers),
p50/p99/max webhook response time in ms, the hub's CPU time per push (user + system, read from
/proc: a figure that holds when the machine is busy with other work, unlike the rates), and how
long after the step's last answer the inbox was empty (every accepted push a ticket message).
At the end it checks that every accepted push became exactly one message, then sends each step's
pushes again to the bare reference (bench/reference.py webhook: verify, decrypt, parse, answer) and
prints the hub's CPU per push as a share of the reference's (``share_of_reference``), a figure
that holds from run to run where the absolute ones move.

    .venv/bin/python bench/wechat_ingest.py [--safe] [--rates 250,500,1000,1500] [--seconds 5]
        [--connections 128] [--pg postgresql+asyncpg://...] [--redis redis://...] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reference import cpu_seconds, free_port, reference_server, share, wait_up  # noqa: E402  (bench/reference.py, beside this script)

from core.db import Database, create_pg_database, drop_pg_database  # noqa: E402
from core.models import InboxItem, Message  # noqa: E402
from tests.wechat.platform import Push, Pusher, new_aes_key, new_app_id, new_openid  # noqa: E402

DOMAIN = "bench.example.com"
PASSWORD = "bench password 1"


def run(cmd: list[str], env: dict[str, str]) -> None:
    subprocess.run(cmd, env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


async def configure(url: str, safe: bool) -> tuple[str, Pusher]:
    headers = {"Host": DOMAIN}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(url + "/api/v1/auth/login", json={"email": f"admin@{DOMAIN}", "password": PASSWORD}) as r:
            token = (await r.json())["token"]
        app_id, wx_token, aes_key = new_app_id(), "benchToken1", new_aes_key()
        body = {"name": "bench", "app_id": app_id, "secret": "bench-secret", "token": wx_token,
                "mode": "safe" if safe else "plain", "aes_key": aes_key}
        async with http.post(url + "/api/v1/wechat/accounts", json=body,
                             headers={"Authorization": f"Bearer {token}"}) as r:
            account = (await r.json())["account"]
    return account["key"], Pusher(app_id, wx_token, aes_key, "safe" if safe else "plain")


async def inbox_left(db: Database) -> int:
    async with db.read() as session:
        return int((await session.execute(select(func.count()).select_from(InboxItem))).scalar_one())


async def messages_stored(db: Database) -> int:
    async with db.read() as session:
        return int((await session.execute(
            select(func.count()).select_from(Message).where(Message.channel == "wechat"))).scalar_one())


async def step(url: str, key: str, pushes: list[Push], rate: float, connections: int) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=connections)
    latencies: list[float] = []
    failures: dict[str, int] = {}
    async with aiohttp.ClientSession(connector=connector, headers={"Host": DOMAIN, "Content-Type": "text/xml"}) as http:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05

        async def one(i: int, push: Push) -> None:
            scheduled = start + i / rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                async with http.post(f"{url}/wechat/oa/{key}", params=push.query, data=push.body) as resp:
                    text = await resp.text()
                    ok = resp.status == 200 and text == "success"
                    reason = f"http {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                ok, reason = False, type(exc).__name__
            if ok:
                latencies.append(loop.time() - scheduled)
            else:
                failures[reason] = failures.get(reason, 0) + 1

        await asyncio.gather(*(one(i, p) for i, p in enumerate(pushes)))
        elapsed = loop.time() - start
    latencies.sort()

    def pct(p: float) -> float | None:
        return round(latencies[min(int(len(latencies) * p), len(latencies) - 1)] * 1000, 2) if latencies else None

    return {"offered_per_s": rate, "sent": len(pushes), "accepted": len(latencies),
            "accepted_per_s": round(len(latencies) / elapsed, 1), "failures": failures,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": round(latencies[-1] * 1000, 2) if latencies else None}


async def bench(args: argparse.Namespace, url: str, db_url: str, pid: int) -> dict[str, Any]:
    key, pusher = await configure(url, args.safe)
    db = Database(db_url)
    openids = [new_openid() for _ in range(args.customers)]
    steps = []
    n = 0
    for rate in [float(r) for r in args.rates.split(",")]:
        count = int(rate * args.seconds)
        # Built before the step so the client's signing and AES do not compete with the clock.
        pushes = []
        for _ in range(count):
            openid = openids[n % len(openids)]
            n += 1
            pushes.append(pusher.push(pusher.xml("text", openid, content=f"message {n}"), openid))
        cpu_before = cpu_seconds(pid)
        result = await step(url, key, pushes, rate, args.connections)
        answered = time.monotonic()
        while args.drain and await inbox_left(db):  # noqa: ASYNC110 (another process drains it)
            await asyncio.sleep(0.05)
        result["drained_after_s"] = round(time.monotonic() - answered, 2)
        result["hub_cpu_ms_per_push"] = round((cpu_seconds(pid) - cpu_before) * 1000 / max(len(pushes), 1), 3)
        steps.append(result)
        print(json.dumps(result), file=sys.stderr)
        await asyncio.sleep(1.0)
    stored = await messages_stored(db) if args.drain else await inbox_left(db)
    await db.dispose()
    accepted = sum(s["accepted"] for s in steps)
    if args.reference:
        await measure_reference(args, pusher, openids, steps)
    return {"every_accepted_push_stored_once": stored == accepted, "messages": stored, "drain": args.drain,
            "reference": "a bare aiohttp handler that verifies, decrypts (safe mode) and parses each push"
                         " (bench/reference.py webhook), driven the same way in the same run;"
                         " share_of_reference = its CPU per push / the hub's" if args.reference else None,
            "benchmark": "wechat_ingest", "mode": "safe" if args.safe else "plain",
            "database": "postgresql" if args.pg else "sqlite", "redis": bool(args.redis),
            "connections": args.connections, "seconds_per_step": args.seconds, "customers": args.customers,
            "cpus": os.cpu_count(), "steps": steps}


async def measure_reference(args: argparse.Namespace, pusher: Pusher, openids: list[str],
                            steps: list[dict[str, Any]]) -> None:
    """Each step's rate again, against the bare webhook reference: its CPU per push, and the hub's
    CPU per push as a share of it (1.0: the hub costs what verifying and parsing alone cost)."""
    extra = ["--token", pusher.token]
    if pusher.aes_key:
        extra += ["--aes-key", pusher.aes_key, "--app-id", pusher.app_id]
    with reference_server("webhook", *extra) as (ref_url, ref_pid):
        await wait_up(ref_url)
        for result in steps:
            rate = float(result["offered_per_s"])
            pushes = [pusher.push(pusher.xml("text", openids[i % len(openids)], content=f"reference {i}"),
                                  openids[i % len(openids)]) for i in range(int(rate * args.seconds))]
            cpu_before = cpu_seconds(ref_pid)
            ref = await step(ref_url, "reference", pushes, rate, args.connections)
            ref_cpu = round((cpu_seconds(ref_pid) - cpu_before) * 1000 / max(len(pushes), 1), 3)
            result["reference_cpu_ms_per_push"] = ref_cpu
            result["reference_accepted_per_s"] = ref["accepted_per_s"]
            result["reference_p99_ms"] = ref["p99_ms"]
            result["share_of_reference"] = share(result["hub_cpu_ms_per_push"], ref_cpu)
            print(json.dumps({"reference": result}), file=sys.stderr)
            await asyncio.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--safe", action="store_true", help="AES-encrypted pushes (safe mode)")
    parser.add_argument("--rates", default="250,500,1000,1500,2000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--pg", help="PostgreSQL URL (postgresql+asyncpg://...)")
    parser.add_argument("--redis", help="Redis URL")
    parser.add_argument("--no-drain", dest="drain", action="store_false",
                        help="the hub only accepts (CHANNELHUB_INBOX_DRAIN=0): the cost of answering alone")
    parser.add_argument("--profile", help="run the hub under cProfile, writing the stats here")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="skip the bare webhook reference measured after the hub's steps")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="chbench-"))
    port = free_port()
    db_url = (asyncio.run(create_pg_database(args.pg, f"bench_wechat_{os.getpid()}")) if args.pg
              else f"sqlite+aiosqlite:///{tmp / 'hub.db'}")
    env = {**os.environ, "CHANNELHUB_DATABASE_URL": db_url,
           "CHANNELHUB_PORT": str(port), "CHANNELHUB_SECRET_KEY": "bench-secret-key",
           "CHANNELHUB_LOG_LEVEL": "WARNING", "CHANNELHUB_QUEUE_NAMESPACE": f"chbench{os.getpid()}",
           # Pushes only: nothing would answer a media fetch or a reply here.
           "CHANNELHUB_WECHAT_API_BASE": "http://127.0.0.1:9", "CHANNELHUB_WECHAT_PREFETCH_MEDIA": "0"}
    if args.redis:
        env["CHANNELHUB_REDIS_URL"] = args.redis
    if not args.drain:
        env["CHANNELHUB_INBOX_DRAIN"] = "0"
    exe = [sys.executable, "-m", "channelhub.cli"]
    run([*exe, "migrate"], env)
    run([*exe, "tenant", "create", "--name", "Bench", "--domain", DOMAIN], env)
    run([*exe, "agent", "create", "--domain", DOMAIN, "--email", f"admin@{DOMAIN}", "--name", "Admin",
         "--password", PASSWORD, "--role", "admin"], env)
    serve = [*exe, "serve"]
    if args.profile:
        serve = [sys.executable, "-m", "cProfile", "-o", args.profile, "-m", "channelhub.cli", "serve"]
    proc = subprocess.Popen(serve, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(wait_up(url, proc))
        result = asyncio.run(bench(args, url, db_url, proc.pid))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
        if args.pg:
            asyncio.run(drop_pg_database(db_url))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
