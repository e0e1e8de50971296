"""The ``channelhub`` command: serve, worker, probe, migrate, backup, restore, purge, availability close,
audit verify, export, tenant create, agent create, group create, inbox, demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select

from core.billing import Actor
from core.config import Settings
from core.db import Database, migrate
from core.errors import DomainError

logger = logging.getLogger("channelhub")
# Who a command's changes are audited as: the operator, at the machine.
_CLI = Actor("operator")

DEMO_DOMAIN = "demo.localhost"
DEMO_PASSWORD = "demo-password"
DEMO_MAILBOX = f"support@{DEMO_DOMAIN}"
DEMO_OPERATOR_HOST = "operator.localhost"
DEMO_OPERATOR = ("operator@demo.localhost", "demo-operator-password")
DEMO_AGENTS = (
    ("alice@demo.localhost", "Alice (admin)", "admin"),
    ("bob@demo.localhost", "Bob", "agent"),
)


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


async def _with_db(settings: Settings, job: Callable[[Database], Awaitable[Any]]) -> Any:
    db = Database(settings.database_url)
    try:
        return await job(db)
    finally:
        await db.dispose()


async def _tenant_id(db: Database, domain: str) -> int:
    from core.models import TenantDomain
    from core.seats import clean_domain

    async with db.read() as session:
        tid = (await session.execute(select(TenantDomain.tenant_id)
                                     .where(TenantDomain.domain == clean_domain(domain)))).scalar()
    if tid is None:
        raise DomainError(f"no tenant at {domain}", code="unknown_tenant")
    return int(tid)


async def _ensure_demo(db: Database, settings: Settings) -> None:
    from connectors.email import store as email_store
    from connectors.email.models import EmailMailbox
    from connectors.email.settings import EmailSettings
    from core import seats, tenants
    from core.models import Agent, Tenant

    async with db.session() as session:
        tenant = (await session.execute(select(Tenant).where(Tenant.domain == DEMO_DOMAIN))).scalar_one_or_none()
        if tenant is None:
            tenant = await tenants.create(session, name="Demo", domains=[DEMO_DOMAIN])
        for email, name, role in DEMO_AGENTS:
            exists = (
                await session.execute(select(Agent.id).where(Agent.tenant_id == tenant.id, Agent.email == email))
            ).first()
            if not exists:
                await seats.create_agent(session, tenant.id, email=email, name=name, password=DEMO_PASSWORD,
                                         role=role, capacity=5)
        tenant_id = tenant.id
    # A support address, so mail sent to the receiver becomes tickets (replies need a relay: set
    # one with PATCH /api/v1/email/mailboxes/{id}).
    async with db.session(tenant_id) as session:
        if not (await session.execute(select(EmailMailbox.id).where(EmailMailbox.address == DEMO_MAILBOX))).first():
            await email_store.create_mailbox(session, settings, tenant_id, {"address": DEMO_MAILBOX,
                                                                            "name": "Demo support"},
                                             actor_id=None, ip=None)
    if settings.operator_host == DEMO_OPERATOR_HOST:
        await _ensure_demo_operator(db)
    operator_line = (f"  Operator API     http://{settings.operator_host}:{settings.port}/operator/v1/openapi.json "
                     f"({DEMO_OPERATOR[0]}, password: {DEMO_OPERATOR[1]})\n"
                     if settings.operator_host == DEMO_OPERATOR_HOST else "")
    smtp = settings.channel("email", EmailSettings)
    mail_line = (f"  Mail in          swaks --server 127.0.0.1:{smtp.smtp_port} --to {DEMO_MAILBOX} "
                 f"--from you@example.org\n") if smtp.smtp_port else ""
    base = f"http://{DEMO_DOMAIN}:{settings.port}"
    probe_line = (f"  Prober           CHANNELHUB_PROBE_SECRET=... channelhub probe --base-url "
                  f"http://127.0.0.1:{settings.port}   (the secret this hub has; docs/operator.md)\n"
                  if settings.probe_secret else "")
    print(f"""
channelhub is running in the embedded mode (database: {settings.database_url})

  Demo tenant      {base}
  Customer page    {base}/webchat/demo      (the web chat widget, one script tag)
  Agent console    {base}/console
  Agents           {DEMO_AGENTS[0][0]} (admin), {DEMO_AGENTS[1][0]} — password: {DEMO_PASSWORD}
  API              {base}/api/v1/openapi.json   (browse it: {base}/api/docs)
{operator_line}{mail_line}  Sign in by API   curl -s {base}/api/v1/auth/login -H 'Content-Type: application/json' \\
                        -d '{{"email": "{DEMO_AGENTS[1][0]}", "password": "{DEMO_PASSWORD}"}}'
{probe_line}""", flush=True)


async def _ensure_demo_operator(db: Database) -> None:
    from core import operators
    from core.models import OperatorAccount

    async with db.session() as session:
        if not (await session.execute(select(OperatorAccount.id).where(OperatorAccount.email == DEMO_OPERATOR[0]))
                ).first():
            await operators.create_account(session, email=DEMO_OPERATOR[0], name="Demo operator",
                                           password=DEMO_OPERATOR[1], role="owner", actor=_CLI)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from channelhub.app import create_app, limits
    from web import serving

    if args.demo and settings.operator_host is None:
        from dataclasses import replace

        settings = replace(settings, operator_host=DEMO_OPERATOR_HOST)
    if args.migrate or args.demo:
        asyncio.run(_with_db(settings, migrate))
    if args.demo:
        asyncio.run(_with_db(settings, lambda db: _ensure_demo(db, settings)))
    serving.run(create_app(settings), limits(settings), settings.host, settings.port)
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from channelhub.app import build_hub
    from core import outbox

    if not settings.redis_url:
        print("channelhub worker needs CHANNELHUB_REDIS_URL; in the embedded mode `serve` runs the worker",
              file=sys.stderr)
        return 2

    async def main() -> None:
        # One hub on this loop: dramatiq's worker threads hand each delivery over to it.
        hub = build_hub(settings)
        await hub.start(inbound=False)
        hub.outbox.start(worker=True, threads=args.threads)
        if settings.export_worker:
            hub.exports.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        logger.info("worker running (%s threads)", args.threads or settings.worker_threads)
        try:
            while not stop.is_set():
                try:
                    await outbox.sweep(hub)
                except Exception:
                    logger.exception("sweep failed")
                try:
                    await asyncio.wait_for(stop.wait(), timeout=settings.sweeper_interval)
                except TimeoutError:
                    pass
        finally:
            await hub.outbox.stop()
            await hub.exports.stop()
            await hub.close()

    asyncio.run(main())
    return 0


def cmd_probe(settings: Settings, args: argparse.Namespace) -> int:
    import os
    import socket

    from channelhub.probe import Prober

    if not settings.probe_secret:
        print("channelhub probe needs CHANNELHUB_PROBE_SECRET, the secret the hubs it probes are given: it marks "
              "probe traffic so that they store nothing of it", file=sys.stderr)
        return 2
    if args.interval is not None:
        from dataclasses import replace

        settings = replace(settings, probe_interval=args.interval)
    name = args.name or f"{socket.gethostname()}:{os.getpid()}"
    base = args.base_url or settings.probe_base_url
    if base is not None and not base.startswith(("http://", "https://")):
        print(f"channelhub probe: the base URL {base!r} must begin with http:// or https://", file=sys.stderr)
        return 2

    async def main() -> None:
        db = Database(settings.database_url, pool_size=2, pool_timeout=settings.probe_timeout)
        prober = Prober(settings, db, name=name, base_url=base, domains=args.domain)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        logger.info("prober %s probing every %g s (%s)", name, settings.probe_interval,
                    ", ".join(args.domain) if args.domain else "every active tenant")
        try:
            await prober.run(stop)
        finally:
            await db.dispose()

    asyncio.run(main())
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from alembic.util.exc import CommandError

    try:
        asyncio.run(_with_db(settings, lambda db: migrate(db, args.revision)))
    except CommandError as exc:
        print(f"channelhub: cannot migrate to {args.revision!r}: {exc} (try `head`, or a revision of "
              f"alembic/versions/)", file=sys.stderr)
        return 2
    print(f"database migrated to {args.revision}")
    return 0


def cmd_tenant_create(settings: Settings, args: argparse.Namespace) -> int:
    from core import tenants

    async def job(db: Database) -> tuple[int, list[str]]:
        async with db.session() as session:
            tenant = await tenants.create(session, name=args.name, domains=args.domain)
            return tenant.id, await tenants.domains_of(session, tenant.id)

    tid, domains = asyncio.run(_with_db(settings, job))
    print(f"tenant {tid} created at {', '.join(domains)}")
    return 0


def cmd_agent_create(settings: Settings, args: argparse.Namespace) -> int:
    from admin_api.schemas import CreateAgentBody
    from core import seats
    from web.http import validate

    # What the API refuses, the command refuses: the same model checks the same fields.
    data = validate(CreateAgentBody, {"email": args.email, "name": args.name, "password": args.password,
                                      "role": args.role, "capacity": args.capacity, "group_ids": args.group})

    async def job(db: Database) -> dict[str, Any]:
        tid = await _tenant_id(db, args.domain)
        async with db.session(tid) as session:
            return await seats.create_agent(session, tid, email=str(data.email), name=data.name,
                                            password=data.password, role=data.role, capacity=data.capacity,
                                            group_ids=data.group_ids)

    agent = asyncio.run(_with_db(settings, job))
    print(f"agent {agent['id']} ({agent['email']}, {agent['role']}) created")
    return 0


def _password(args: argparse.Namespace, minimum: int) -> str:
    """The new account's password: one line on standard input (--password-stdin), or typed twice."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        import getpass

        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise DomainError("the two passwords differ", code="password_mismatch")
    else:
        raise DomainError("give the password on standard input with --password-stdin", code="no_password")
    if len(password) < minimum:
        raise DomainError(f"the password needs at least {minimum} characters", code="weak_password")
    return password


def cmd_operator_create(settings: Settings, args: argparse.Namespace) -> int:
    """The operator's first owner (or any staff account), made on the machine: no one is signed in yet."""
    from core import operators

    password = _password(args, 12)

    async def job(db: Database) -> Any:
        async with db.session() as session:
            account = await operators.create_account(session, email=args.email, name=args.name, password=password,
                                                     role=args.role, actor=_CLI)
            return operators.account_dict(account)

    account = asyncio.run(_with_db(settings, job))
    where = f"on http://{settings.operator_host}/operator/v1/" if settings.operator_host else \
        "(set CHANNELHUB_OPERATOR_HOST to serve the operator API)"
    print(f"operator account {account['id']} ({account['email']}, {account['role']}) created; sign in {where}")
    return 0


def cmd_group_create(settings: Settings, args: argparse.Namespace) -> int:
    from core import seats

    async def job(db: Database) -> dict[str, Any]:
        tid = await _tenant_id(db, args.domain)
        async with db.session(tid) as session:
            return await seats.create_group(session, tid, name=args.name)

    group = asyncio.run(_with_db(settings, job))
    print(f"group {group['id']} ({group['name']}) created")
    return 0


def cmd_inbox(settings: Settings, args: argparse.Namespace) -> int:
    from core import inbox

    async def job(db: Database) -> tuple[int, dict[str, int], list[dict[str, Any]]]:
        retried = await inbox.retry_failed(db) if args.retry_failed else 0
        return retried, await inbox.counts(db), await inbox.failed(db)

    retried, counts, failed = asyncio.run(_with_db(settings, job))
    if args.retry_failed:
        print(f"{retried} failed message(s) put back in line")
    print(f"inbox: {counts['pending']} waiting, {counts['failed']} failed")
    for row in failed:
        print(f"  #{row['id']} tenant {row['tenant_id']} {row['channel']} {row['channel_message_id']} "
              f"received {row['received_at']:%Y-%m-%d %H:%M:%S} after {row['attempts']} attempts: {row['last_error']}")
    return 0


def cmd_availability_close(settings: Settings, args: argparse.Namespace) -> int:
    """Close the months that are over now (as every `serve` process does each billing interval):
    their figures kept and, below 99.9 %, the tenant compensated once."""
    from datetime import UTC, datetime, timedelta

    from core import availability

    async def job(db: Database) -> dict[str, int]:
        return await availability.close_all(db, interval=timedelta(seconds=settings.probe_interval),
                                            now=datetime.now(UTC), tenant_ids=args.tenant or None)

    outcomes = asyncio.run(_with_db(settings, job))
    print("availability: " + (", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(outcomes.items()))
                              or "no month to close"))
    return 1 if outcomes.get("failed") else 0


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    """One backup now (from cron, or by hand), then the directory pruned to --keep-days."""
    from datetime import UTC, datetime

    from core import backups

    where = args.dir or settings.backup_dir
    keep = settings.backup_keep_days if args.keep_days is None else args.keep_days
    if keep < 1:
        print("channelhub backup: --keep-days must be at least 1", file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    try:
        path = asyncio.run(backups.backup(settings, where, now=now))
    except backups.BackupError as exc:
        print(f"channelhub backup: {exc.message} ({exc.code})", file=sys.stderr)
        return 2
    backups.prune(where, keep, now=now)
    print(path)
    return 0


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    from alembic.script import ScriptDirectory

    from core import backups
    from core.db import alembic_config

    try:
        done = asyncio.run(backups.restore(settings, args.file))
    except backups.BackupError as exc:
        print(f"channelhub restore: {exc.message} ({exc.code})", file=sys.stderr)
        return 2
    manifest = done.manifest
    print(f"restored {args.file}: a backup of {manifest['created_at']} (channelhub {manifest['hub_version']}, "
          f"schema {manifest['alembic_revision']})")
    if done.key_written is not None:
        print(f"the backup's secret key was written to {done.key_written}")
    for warning in done.warnings:
        print(f"warning: {warning}")
    head = ScriptDirectory.from_config(alembic_config(settings.database_url)).get_current_head()
    if manifest["alembic_revision"] != head:
        print(f"the schema is older than this channelhub's ({head}): run `channelhub migrate` before serving")
    return 0

def cmd_purge(settings: Settings, args: argparse.Namespace) -> int:
    """Delete all of a tenant's data (as the operator's purge route does), confirmed with its
    primary domain, and run the purge to its end here, its progress on stderr. A purge already
    asked for (or interrupted) is resumed."""
    from channelhub.app import build_hub
    from core import purge
    from core.models import utcnow
    from core.tenants import CLI

    def show(step: dict[str, Any]) -> None:
        print(f"purge: {step['table']}: -{step['deleted']} ({step['rows_deleted']} rows so far)", file=sys.stderr)

    async def main() -> str:
        hub = build_hub(settings)
        await hub.start(inbound=False)
        try:
            async with hub.db.session() as session:
                await purge.request(session, args.tenant, confirm=args.confirm, actor=CLI, reason="operator",
                                    now=utcnow())
            await purge.announced(hub, args.tenant)
            while (state := await purge.run(hub, args.tenant, chunk=args.chunk, on_progress=show)) == "busy":
                # Another process holds it (a serve's round, or a run that died and whose lease has
                # not run out yet): wait and try again.
                print("purge: another process works on it; waiting", file=sys.stderr)
                await asyncio.sleep(purge.LEASE_SECONDS / 4)
            return state
        finally:
            await hub.close()

    state = asyncio.run(main())
    print(f"purge of tenant {args.tenant}: {state}")
    return 0 if state == "done" else 1


def cmd_audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    """Recompute the audit chains' hashes: 0 when every chain asked for is whole, 1 naming the first
    broken row of each chain that is not."""
    from core import audit

    wanted: list[int | None] | None = [None] if args.operator else (args.tenant or None)
    results = asyncio.run(_with_db(settings, lambda db: audit.verify(db, wanted)))
    broken = 0
    for name, count, problem in results:
        if problem is None:
            print(f"{name}: {count} row(s), chain intact")
        else:
            broken += 1
            print(f"BROKEN {problem}", file=sys.stderr)
    if not results:
        print("no audit rows yet")
    print(f"audit verify: {len(results)} chain(s) checked, {broken} broken")
    return 1 if broken else 0


def cmd_reports_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    """Make the report rollups again from the events (core.rollups.rebuild): one tenant's, or
    every tenant's."""
    from core import rollups
    from core.models import Tenant, TenantDomain

    async def job(db: Database) -> list[tuple[int, int, float]]:
        import time

        async with db.read() as session:
            if args.domain:
                found = await session.scalar(select(TenantDomain.tenant_id)
                                             .where(TenantDomain.domain == args.domain.strip().lower()))
                if found is None:
                    raise DomainError(f"no tenant at {args.domain}", code="unknown_tenant")
                tenant_ids = [found]
            else:
                tenant_ids = list((await session.execute(select(Tenant.id).order_by(Tenant.id))).scalars())
        done = []
        for tenant_id in tenant_ids:
            started = time.monotonic()
            events = await rollups.rebuild(db, tenant_id)
            done.append((tenant_id, events, time.monotonic() - started))
        return done

    for tenant_id, events, seconds in asyncio.run(_with_db(settings, job)):
        print(f"tenant {tenant_id}: rollups rebuilt from {events} events in {seconds:.1f} s")
    return 0


def _day(raw: str) -> Any:
    from datetime import date

    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day (YYYY-MM-DD): {raw!r}") from None


class _Bar:
    """A progress bar on standard error: one line redrawn with a carriage return (at most every
    tenth of a second, and once at the end)."""

    WIDTH = 30

    def __init__(self, stream: Any) -> None:
        import time

        self.stream = stream
        self.clock = time.monotonic
        self.started = self.last = self.clock()

    async def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if done < total and now - self.last < 0.1:
            return
        self.last = now
        part = done / total if total else 1.0
        filled = int(part * self.WIDTH)
        rate = done / max(now - self.started, 1e-9)
        self.stream.write(f"\rexport [{'#' * filled}{'.' * (self.WIDTH - filled)}] {part:6.1%} "
                          f"{done}/{total} rows, {rate:,.0f} rows/s")
        self.stream.flush()


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    """Write a tenant's export (or one customer's) to a file here, with a progress bar: the same
    sheets as `POST /api/v1/exports` builds in the background (core.exports)."""
    from pathlib import Path

    from core import exports
    from core.models import Customer, TicketStatus

    out = Path(args.out)
    if out.suffix.lower() != ".xlsx":
        print("channelhub export: --out must name an .xlsx file", file=sys.stderr)
        return 2
    if out.parent and not out.parent.is_dir():
        print(f"channelhub export: no such folder: {out.parent}", file=sys.stderr)
        return 2
    statuses = tuple(args.status)
    if bad := [s for s in statuses if s not in set(TicketStatus)]:
        print(f"channelhub export: unknown status {bad[0]!r} (one of: {', '.join(TicketStatus)})", file=sys.stderr)
        return 2
    if args.date_from and args.date_to and args.date_from > args.date_to:
        print("channelhub export: --from is after --to", file=sys.stderr)
        return 2
    bar = _Bar(sys.stderr)

    async def job(db: Database) -> int:
        from core.models import TenantDomain

        # Not _tenant_id: core.seats imports core.auth, whose argon2 timing hash takes 64 MB for a
        # moment at import, more than the whole export holds (bench/export.py measures this process).
        async with db.read() as session:
            tenant_id = await session.scalar(select(TenantDomain.tenant_id)
                                             .where(TenantDomain.domain == args.domain.strip().lower()))
        if tenant_id is None:
            raise DomainError(f"no tenant at {args.domain}", code="unknown_tenant")
        if args.customer is not None:
            async with db.read(tenant_id) as session:
                if await session.get(Customer, args.customer) is None:
                    raise DomainError(f"no customer {args.customer} at {args.domain}", code="customer_not_found")
        spec = exports.Spec(tenant_id, exports.Filters(args.date_from, args.date_to, statuses, tuple(args.channel),
                                                       customer_id=args.customer),
                            include_messages=args.messages or args.customer is not None)
        return await exports.build(db, spec, out, bar)

    try:
        rows = asyncio.run(_with_db(settings, job))
    except DomainError as exc:
        print(f"\nchannelhub export: {exc.message} ({exc.code})", file=sys.stderr)
        return 2
    sys.stderr.write("\n")
    print(f"{out}: {rows} rows")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="channelhub", description="channelhub customer-service hub")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the HTTP API, websockets and channels")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--migrate", action="store_true", help="migrate the database first")
    serve.add_argument("--demo", action="store_true", help="migrate, create the demo tenant and print its URLs")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run dramatiq workers for outbound delivery (needs Redis)")
    worker.add_argument("--threads", type=int)
    worker.set_defaults(func=cmd_worker)

    probe = sub.add_parser("probe", help="probe every active tenant's service and record its availability")
    probe.add_argument("--name", help="this prober's name in the results (default: host:pid)")
    probe.add_argument("--base-url", help="where the hub answers (e.g. http://127.0.0.1:8080: requests carry the "
                       "tenant's domain as Host), or a URL with {domain}; default CHANNELHUB_PROBE_BASE_URL, else "
                       "http://<domain>")
    probe.add_argument("--interval", type=float, help="seconds between rounds (default CHANNELHUB_PROBE_INTERVAL)")
    probe.add_argument("--domain", action="append", default=[],
                       help="probe only the tenant at this domain (repeatable; default: every active tenant)")
    probe.set_defaults(func=cmd_probe)

    mig = sub.add_parser("migrate", help="bring the database schema up to date")
    mig.add_argument("revision", nargs="?", default="head")
    mig.set_defaults(func=cmd_migrate)

    tenant = sub.add_parser("tenant", help="manage tenants").add_subparsers(dest="action", required=True)
    tc = tenant.add_parser("create", help="create a tenant served at its own domain")
    tc.add_argument("--name", required=True)
    tc.add_argument("--domain", required=True, action="append", help="a domain it is served on (repeatable; the "
                    "first is its primary one)")
    tc.set_defaults(func=cmd_tenant_create)

    agent = sub.add_parser("agent", help="manage agents (seats)").add_subparsers(dest="action", required=True)
    ac = agent.add_parser("create", help="create an agent in a tenant")
    ac.add_argument("--domain", required=True, help="the tenant's domain")
    ac.add_argument("--email", required=True)
    ac.add_argument("--name", required=True)
    ac.add_argument("--password", required=True)
    ac.add_argument("--role", default="agent", choices=["owner", "admin", "supervisor", "agent"])
    ac.add_argument("--capacity", type=int, default=5)
    ac.add_argument("--group", type=int, action="append", default=[], help="group id (repeatable)")
    ac.set_defaults(func=cmd_agent_create)

    box = sub.add_parser("inbox", help="what web-hook channels accepted and is not yet a ticket; failed messages")
    box.add_argument("--retry-failed", action="store_true", help="put messages that failed back in line")
    box.set_defaults(func=cmd_inbox)

    op = sub.add_parser("operator", help="the operator's staff accounts").add_subparsers(dest="action",
                                                                                           required=True)
    oc = op.add_parser("create", help="create an operator account (the first owner, to begin with)")
    oc.add_argument("--email", required=True)
    oc.add_argument("--name", required=True)
    oc.add_argument("--role", default="owner", choices=["owner", "billing", "support"])
    oc.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    oc.set_defaults(func=cmd_operator_create)

    avail = sub.add_parser("availability", help="the availability promise (#15)").add_subparsers(
        dest="action", required=True)
    close = avail.add_parser("close", help="close the months that are over and compensate those below 99.9 %% "
                             "(every serve process does it each billing interval)")
    close.add_argument("--tenant", type=int, action="append", default=[], help="only this tenant id (repeatable)")
    close.set_defaults(func=cmd_availability_close)

    bk = sub.add_parser("backup", help="take a backup now (consistent while the hub serves) and prune old ones")
    bk.add_argument("--dir", help="where to write it (default CHANNELHUB_BACKUP_DIR, ./var/backups)")
    bk.add_argument("--keep-days", type=int, help="delete this command's backups older than this many days from "
                    "the directory, keeping the newest (default CHANNELHUB_BACKUP_KEEP_DAYS, 7)")
    bk.set_defaults(func=cmd_backup)

    rs = sub.add_parser("restore", help="bring a backup back into the configured database, which must be empty")
    rs.add_argument("file", help="a channelhub-<time>.chbk file")
    rs.set_defaults(func=cmd_restore)

    purge = sub.add_parser("purge", help="delete all of a tenant's data (#16), in chunks; resumes an interrupted one")
    purge.add_argument("--tenant", type=int, required=True, help="the tenant's id")
    purge.add_argument("--confirm", required=True, help="the tenant's primary domain, typed")
    purge.add_argument("--chunk", type=int, default=None, help="rows per transaction (CHANNELHUB_PURGE_CHUNK)")
    purge.set_defaults(func=cmd_purge)


    aud = sub.add_parser("audit", help="the audit log (#16)").add_subparsers(dest="action", required=True)
    av = aud.add_parser("verify", help="recompute the audit log's hash chains; exit 1 naming the first broken "
                        "row of each broken chain")
    which = av.add_mutually_exclusive_group()
    which.add_argument("--tenant", type=int, action="append", default=[], help="only this tenant's chain "
                       "(repeatable; default: every chain)")
    which.add_argument("--operator", action="store_true", help="only the operator's chain")
    av.set_defaults(func=cmd_audit_verify)

    export = sub.add_parser("export", help="write a tenant's customers, tickets and messages to an .xlsx file")
    export.add_argument("--domain", required=True, help="the tenant's domain")
    export.add_argument("--out", required=True, help="the .xlsx file to write")
    export.add_argument("--from", dest="date_from", type=_day, help="tickets created on or after this day (UTC)")
    export.add_argument("--to", dest="date_to", type=_day, help="tickets created on or before this day (UTC)")
    export.add_argument("--status", action="append", default=[], help="only tickets of this status (repeatable)")
    export.add_argument("--channel", action="append", default=[], help="only tickets of this channel (repeatable)")
    export.add_argument("--messages", action="store_true", help="add a sheet with every message")
    export.add_argument("--customer", type=int, help="one customer's data only (their tickets and messages)")
    export.set_defaults(func=cmd_export)

    rep = sub.add_parser("reports", help="the reports' rollups (#17)").add_subparsers(dest="action", required=True)
    rb = rep.add_parser("rebuild", help="make the report rollups again from the events (after a change of the "
                        "business hours the hub does it by itself)")
    rb.add_argument("--domain", help="only this tenant (default: every tenant)")
    rb.set_defaults(func=cmd_reports_rebuild)

    group = sub.add_parser("group", help="manage groups").add_subparsers(dest="action", required=True)
    gc = group.add_parser("create", help="create a group in a tenant")
    gc.add_argument("--domain", required=True)
    gc.add_argument("--name", required=True)
    gc.set_defaults(func=cmd_group_create)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    overrides = {k: v for k, v in (("host", getattr(args, "host", None)), ("port", getattr(args, "port", None))) if v}
    if overrides:
        from dataclasses import replace

        settings = replace(settings, **overrides)
    _setup_logging(settings)
    try:
        return int(args.func(settings, args))
    except DomainError as exc:
        print(f"channelhub: {exc.message} ({exc.code})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
