#!/usr/bin/env python3
"""Email ingest through the hub's own SMTP receiver: N generated mails over several connections.

Starts one `channelhub serve` (SQLite in a temporary folder by default, or PostgreSQL with
``--pg URL``) with its SMTP receiver on a loopback port, makes a tenant with one support address,
then sends ``--messages`` mails (default 10,000) over ``--connections`` SMTP sessions at once, each
session sending its share one after another (as a relay delivers a queue). The mails are a
realistic mix, made up front so generating them costs the hub nothing:

- 55% short plain text (a few lines to a few KiB), 10% of them Chinese in GB18030;
- 25% multipart/alternative (plain + HTML, 5-20 KiB);
- 12% with a file (a 20-200 KiB PDF-like attachment);
- 8% replies to earlier mails of the run (In-Reply-To/References), which thread into their tickets;

from 2,000 different customers (so the flood limit, raised here, does not defer them).

Measured: mails per second answered 250, the time to 250 (p50/p95/p99), the serve process's CPU per
mail and peak RSS, and that every mail is stored exactly once (the inbound messages counted in
the database once every accepted mail is a ticket message, against the distinct Message-IDs sent). Afterwards the
bare reference (``bench/reference.py smtp-sink``: aiosmtpd taking every mail and keeping nothing)
is driven the same way, and the hub's figures are printed as a share of it.

Prints ONE JSON object on stdout (progress goes to stderr). Never part of the test run.

    python bench/email_ingest.py --messages 10000 --connections 8
    python bench/email_ingest.py --pg postgresql+asyncpg://postgres@127.0.0.1/chbench
"""

# ruff: noqa: RUF001 - Chinese mail is written with full-width punctuation.
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiosmtplib  # noqa: E402
from reference import cpu_seconds, free_port, reference_server, scratch_database, share, wait_up  # noqa: E402
from ticket_create import log, start_serve, stop_serve  # noqa: E402
from webchat_roundtrip import percentiles, prepare  # noqa: E402

from core.db import drop_pg_database  # noqa: E402
from core.models import utcnow  # noqa: E402

WORDS = ("order parcel invoice refund delivery address tracking number please thanks week broken "
         "replacement warranty account password login payment card receipt store help").split()
CHINESE = "您好，我的订单还没有收到，请帮我查一下物流信息。谢谢！发票抬头是公司名称。"


def _text(rng: random.Random, lines: int) -> str:
    return "\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))) for _ in range(lines))


def generate(count: int, to: str, seed: int = 7) -> list[tuple[str, str, bytes]]:
    """``count`` mails as (sender, Message-ID, bytes with CRLF), the mix described above."""
    rng = random.Random(seed)
    sent: list[tuple[str, str, str]] = []  # sender, Message-ID, subject: what replies answer
    out: list[tuple[str, str, bytes]] = []
    for i in range(count):
        msg = EmailMessage()
        roll = rng.random()
        if roll < 0.08 and sent:
            sender, parent, subject = rng.choice(sent)
            msg["Subject"] = f"Re: {subject}"
            msg["In-Reply-To"] = parent
            msg["References"] = parent
        else:
            sender = f"customer{rng.randint(1, 2000)}@customers.example.org"
            subject = f"Question {i}: {rng.choice(WORDS)} {rng.choice(WORDS)}"
            msg["Subject"] = subject
        msgid = f"<bench-{i}-{uuid.uuid4().hex[:8]}@customers.example.org>"
        msg["From"] = sender
        msg["To"] = to
        msg["Date"] = format_datetime(utcnow())
        msg["Message-ID"] = msgid
        # Below 0.08 a reply, then plain text to 0.63, multipart/alternative to 0.88, a file above.
        if roll < 0.63:
            if rng.random() < 0.10:
                msg.set_content(CHINESE * rng.randint(1, 20), charset="gb18030")
            else:
                msg.set_content(_text(rng, rng.randint(3, 60)))
        elif roll < 0.88:
            body = _text(rng, rng.randint(40, 160))
            msg.set_content(body)
            msg.add_alternative("<html><body>" + "".join(f"<p>{line}</p>" for line in body.splitlines())
                                + "</body></html>", subtype="html")
        else:
            msg.set_content(_text(rng, rng.randint(3, 20)))
            size = rng.randint(20_000, 200_000)
            msg.add_attachment(b"%PDF-1.4\n" + rng.randbytes(size), maintype="application", subtype="pdf",
                               filename=f"document-{i}.pdf")
        sent.append((sender, msgid, subject))
        out.append((sender, msgid, msg.as_bytes(policy=SMTP_POLICY)))
    return out


async def send_all(port: int, mails: list[tuple[str, str, bytes]], to: str, connections: int,
                   pid: int) -> dict[str, Any]:
    """Every mail over ``connections`` sessions at once; the figures of the run."""
    latencies: list[float] = []
    counts = {"accepted": 0, "deferred": 0, "refused": 0, "errors": 0}
    errors: list[str] = []
    queue: asyncio.Queue[tuple[str, str, bytes]] = asyncio.Queue()
    for m in mails:
        queue.put_nowait(m)

    async def session() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=120)
        await client.connect()
        try:
            while True:
                try:
                    sender, _, raw = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                started = time.perf_counter()
                try:
                    await client.sendmail(sender, [to], raw)
                except aiosmtplib.SMTPResponseException as exc:
                    counts["deferred" if 400 <= exc.code < 500 else "refused"] += 1
                    if len(errors) < 10:
                        errors.append(f"{exc.code} {exc.message}")
                    continue
                except aiosmtplib.SMTPException as exc:
                    counts["errors"] += 1
                    if len(errors) < 10:
                        errors.append(repr(exc))
                    await client.connect()
                    continue
                latencies.append(time.perf_counter() - started)
                counts["accepted"] += 1
        finally:
            try:
                await client.quit()
            except aiosmtplib.SMTPException:
                pass

    cpu_before = cpu_seconds(pid)
    started = time.monotonic()
    await asyncio.gather(*(session() for _ in range(connections)))
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(pid) - cpu_before
    return {"seconds": round(elapsed, 2), "messages_per_s": round(counts["accepted"] / elapsed, 1), **counts,
            "time_to_250": percentiles(latencies), "cpu_percent_of_one_core": round(cpu / elapsed * 100, 1),
            "cpu_ms_per_message": round(cpu * 1000 / max(counts["accepted"], 1), 3), "errors_seen": errors}


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


async def make_mailbox(url: str, domain: str) -> str:
    from sqlalchemy import select

    from connectors.email import store
    from core.config import Settings
    from core.db import Database
    from core.models import Tenant

    db = Database(url)
    try:
        async with db.read() as session:
            tenant_id = (await session.execute(select(Tenant.id).where(Tenant.domain == domain))).scalar_one()
        async with db.session(tenant_id) as session:
            made = await store.create_mailbox(session, Settings(database_url=url), tenant_id,
                                              {"address": f"support@{domain}", "name": "Bench support"},
                                              actor_id=None, ip=None)
        return str(made["address"])
    finally:
        await db.dispose()


async def stored_counts(url: str) -> tuple[int, int]:
    """(inbound email messages, those with a distinct Message-ID): equal when nothing is stored twice."""
    from sqlalchemy import distinct, func, select

    from core.db import Database
    from core.models import Message

    db = Database(url)
    try:
        async with db.read() as session:
            row = (await session.execute(
                select(func.count(Message.id), func.count(distinct(Message.channel_message_id)))
                .where(Message.channel == "email", Message.direction == "inbound"))).one()
            return int(row[0]), int(row[1])
    finally:
        await db.dispose()


async def wait_smtp(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit("the server exited during start-up")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise SystemExit(f"nothing listens on {port}")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="chbench-email-"))
    pg_url: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_file = (workdir / "serve.log").open("wb")
    try:
        database_url, pg_url = await scratch_database(args.pg, workdir, "email")
        domain = f"bench-{uuid.uuid4().hex[:8]}.example.com"
        await prepare(database_url, domain, 1, 10)
        to = await make_mailbox(database_url, domain)
        log(f"generating {args.messages} mails")
        mails = generate(args.messages, to)
        total_bytes = sum(len(m[2]) for m in mails)
        port, smtp_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHANNELHUB_")}
        env.update({"CHANNELHUB_DATABASE_URL": database_url, "CHANNELHUB_PORT": str(port),
                    "CHANNELHUB_HOST": "127.0.0.1", "CHANNELHUB_LOG_LEVEL": args.log_level,
                    "CHANNELHUB_SMTP_HOST": "127.0.0.1", "CHANNELHUB_SMTP_PORT": str(smtp_port),
                    "CHANNELHUB_EMAIL_FLOOD_LIMIT": "1000000", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
        proc = start_serve(env, workdir, log_file)
        await wait_up(f"http://127.0.0.1:{port}", proc, timeout=60)
        await wait_smtp(smtp_port, proc)
        log(f"hub up (pid {proc.pid}); sending {len(mails)} mails ({total_bytes / 1e6:.1f} MB) over "
            f"{args.connections} connections")
        hub = await send_all(smtp_port, mails, to, args.connections, proc.pid)
        sent_at = time.monotonic()
        # The inbox drains right behind the receiver; wait until every accepted mail is a message.
        stored = distinct = 0
        while time.monotonic() - sent_at < args.drain_timeout:
            stored, distinct = await stored_counts(database_url)
            if stored >= hub["accepted"]:
                break
            await asyncio.sleep(0.5)
        drained_after = round(time.monotonic() - sent_at, 2)
        rss = peak_rss_mb(proc.pid)
    finally:
        stop_serve(proc)
        log_file.close()
        if pg_url:
            await drop_pg_database(pg_url)
    result: dict[str, Any] = {
        "database": "postgresql" if args.pg else "sqlite", "messages": len(mails),
        "megabytes": round(total_bytes / 1e6, 1), "connections": args.connections,
        "messages_per_s": hub["messages_per_s"], "time_to_250_p99_ms": hub["time_to_250"]["p99_ms"],
        "peak_rss_mb": rss, "hub": hub, "stored": stored, "distinct_message_ids_stored": distinct,
        "every_message_stored_once": stored == distinct == hub["accepted"] == len(mails),
        "tickets_made_within_s": drained_after, "load_average_1m_at_start": round(os.getloadavg()[0], 2),
    }
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        result["workdir"] = str(workdir)
    if not args.no_reference:
        log("measuring the reference (bench/reference.py smtp-sink)")
        with reference_server("smtp-sink") as (ref_url, ref_pid):
            ref_port = int(ref_url.rsplit(":", 1)[1])
            await wait_smtp(ref_port)
            ref = await send_all(ref_port, mails, to, args.connections, ref_pid)
        result["reference"] = {"kind": "aiosmtpd taking every mail, keeping nothing", **ref}
        result["share_of_reference"] = {
            "throughput": share(ref["messages_per_s"], hub["messages_per_s"]),
            "cpu": share(hub["cpu_ms_per_message"], ref["cpu_ms_per_message"]),
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000, help="mails to send (default 10000)")
    parser.add_argument("--connections", type=int, default=8, help="SMTP sessions at once (default 8)")
    parser.add_argument("--pg", metavar="URL", help="PostgreSQL server (postgresql+asyncpg://...) instead of SQLite")
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="how long to wait for the tickets")
    parser.add_argument("--log-level", default="WARNING", help="the hub's log level (default WARNING)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (hub log, SQLite file)")
    parser.add_argument("--no-reference", action="store_true", help="skip the bare reference")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
