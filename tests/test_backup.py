"""Backups and restore (#16), on SQLite and on PostgreSQL: a backup taken while the hub serves
comes back into a fresh, empty database exactly as the database was when it was taken (every
table, every row), with the key that decrypts the channel credentials; a backup taken while a
writer keeps writing is consistent; a non-empty target, a damaged file or a different key are
refused; old backups are pruned after 7 days; the schedule inside `serve` makes one backup for all
processes; and the restored hub serves."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, text

from core import backups, secrets
from core.config import Settings
from core.db import Database, migrate
from core.models import Base, Message, PeriodicJob, Ticket
from tests.conftest import PG_URL, ROOT, Databases, Server, TenantInfo, eventually, make_tenant, start_server
from tests.support import open_billing

pytestmark = pytest.mark.skipif(bool(PG_URL) and shutil.which("pg_dump") is None,
                                reason="PostgreSQL backups need pg_dump and pg_restore (postgresql-client)")

PDF = b"%PDF-1.4\n% a receipt\n" + bytes(range(256)) * 64
SMTP_PASSWORD = "smtp-password-kept-secret"


def hub_settings(base: Settings, url: str, folder: Path) -> Settings:
    """A hub of its own: its database, its key file (not CHANNELHUB_SECRET_KEY, so that the backup
    carries the key), the in-process bus (no shared Redis), no billing rounds writing meanwhile."""
    return replace(base, database_url=url, redis_url=None, embedded_worker=True, secret_key=None,
                   secret_key_file=str(folder / "secret.key"), billing_interval=0.0, backup_dir=str(folder / "backups"),
                   queue_namespace=f"chbk{uuid.uuid4().hex[:8]}")


async def migrated(settings: Settings) -> Settings:
    db = Database(settings.database_url)
    try:
        await migrate(db)
    finally:
        await db.dispose()
    return settings


async def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (ordered by primary key) and the schema revision."""
    db = Database(url)
    out: dict[str, list[tuple[Any, ...]]] = {}
    try:
        async with db.read() as session:
            for table in Base.metadata.sorted_tables:
                order = list(table.primary_key.columns) or list(table.columns)
                out[table.name] = [tuple(r) for r in (await session.execute(select(table).order_by(*order))).all()]
            out["alembic_version"] = [tuple(r) for r in (await session.execute(
                text("SELECT version_num FROM alembic_version"))).all()]
    finally:
        await db.dispose()
    return out


async def read_rows(url: str, stmt: Any) -> list[Any]:
    db = Database(url)
    try:
        async with db.read() as session:
            return list((await session.execute(stmt)).all())
    finally:
        await db.dispose()


async def stop(server: Server, *tenants: TenantInfo) -> None:
    for t in tenants:
        await t.close()
    await server.runner.cleanup()


async def fill(t: TenantInfo) -> dict[str, Any]:
    """Data of every kind, made as users make it: an admin, a web chat ticket with the customer's
    file and the agent's reply with a file, a ticket made by hand, an email mailbox with an SMTP
    password (encrypted at rest), a billing contract with its ledger."""
    admin = await t.add_agent(role="admin")
    client = await t.signed_in(admin)
    visitor = t.visitor()
    await visitor.connect()
    upload = await visitor.upload("photo.pdf", PDF, "application/pdf")
    await visitor.send("My parcel is lost", attachments=[upload["id"]])
    created = await client.wait_event(lambda e: e["kind"] == "message.created")
    ticket_id = created["ticket_id"]
    invoice = await client.upload("invoice.pdf", PDF[::-1], "application/pdf")
    await client.reply(ticket_id, "Here is the invoice", attachments=[invoice["id"]])
    by_hand = await client.api("POST", "/api/v1/tickets", {"text": "Phoned about a refund",
                                                          "customer": {"name": "Walk-in"}})
    mailbox = await client.api("POST", "/api/v1/email/mailboxes", {
        "address": f"help@{t.domain}", "name": "Help",
        "smtp": {"host": "127.0.0.1", "port": 2525, "username": "help", "password": SMTP_PASSWORD}})
    db = Database(t.settings.database_url)
    try:
        await open_billing(db, t.id)
    finally:
        await db.dispose()
    return {"admin": admin, "ticket_id": ticket_id, "by_hand": by_hand["ticket"]["id"],
            "invoice": invoice["id"], "mailbox": mailbox["mailbox"]["id"]}


async def test_restore_brings_back_every_table_as_it_was_at_the_backup(settings: Settings, fresh: Databases,
                                                                       tmp_path: Path) -> None:
    src = await migrated(hub_settings(settings, await fresh("src"), tmp_path / "src"))
    server = await start_server(src)
    t = await make_tenant(src, server)
    made = await fill(t)
    writer = await t.signed_in(made["admin"], connect=False)

    # A backup while a writer keeps making tickets (each one a ticket and its first message in
    # one transaction), one after another: what it holds must be consistent.
    written: list[int] = []
    backup_done = asyncio.Event()

    async def write() -> None:
        n = 0
        while True:
            n += 1
            made_ticket = await writer.api("POST", "/api/v1/tickets", {"text": f"order {n}",
                                                                      "customer": {"name": f"Buyer {n}"}})
            written.append(made_ticket["ticket"]["id"])
            if backup_done.is_set() and len(written) >= after_backup + 3:
                return
            await asyncio.sleep(0)

    after_backup = 10**9
    task = asyncio.create_task(write())
    await eventually(lambda: _true(len(written) >= 5))
    busy = await backups.backup(src, tmp_path / "busy")
    after_backup = len(written)
    backup_done.set()
    await asyncio.wait_for(task, 60)

    # The quiet backup: the server stopped (nothing writes, not even presence), then the rows as
    # they are and the backup of them.
    await stop(server, t)
    at_backup = await snapshot(src.database_url)
    quiet = await backups.backup(src, tmp_path / "quiet")
    assert quiet.name.startswith("channelhub-") and quiet.suffix == ".chbk"
    assert list(listing(quiet.parent)) == [quiet.name]  # no temporary file left behind

    # More writes after the backup.
    server = await start_server(src)
    t.server = server
    later = await t.signed_in(made["admin"], connect=False)
    await later.api("POST", "/api/v1/tickets", {"text": "after the backup", "customer": {"name": "Late"}})
    await stop(server, t)
    assert await snapshot(src.database_url) != at_backup

    # Restored into a fresh database, with a key file that does not exist yet: every table equals
    # the state at the backup, and the key is put back.
    dest = hub_settings(settings, await fresh("restored"), tmp_path / "restored")
    done = await backups.restore(dest, quiet)
    assert done.key_written == Path(dest.secret_key_file)
    assert secrets.key_fingerprint(dest) == secrets.key_fingerprint(src)
    restored = await snapshot(dest.database_url)
    assert restored.keys() == at_backup.keys()
    for name in at_backup:
        assert restored[name] == at_backup[name], name
    assert at_backup["attachments"] and at_backup["billing_ledger"] and at_backup["email_mailboxes"]

    # The channel credentials decrypt with the restored key.
    from connectors.email.models import EmailMailbox

    [(encrypted,)] = await read_rows(dest.database_url, select(EmailMailbox.smtp_password_enc)
                                     .where(EmailMailbox.id == made["mailbox"]))
    assert encrypted and SMTP_PASSWORD not in encrypted
    assert secrets.decrypt(dest, encrypted) == SMTP_PASSWORD

    # The restored hub serves: the ticket, its messages and the attachment's bytes, and it writes.
    server = await start_server(dest)
    t.server, t.settings = server, dest
    agent = await t.signed_in(made["admin"], connect=False)
    detail = await agent.api("GET", f"/api/v1/tickets/{made['ticket_id']}")
    assert [m["text"] for m in detail["messages"]][:2] == ["My parcel is lost", "Here is the invoice"]
    async with aiohttp.ClientSession() as http, http.get(
            f"{server.url}/api/v1/attachments/{made['invoice']}",
            headers={"Host": t.domain, "Authorization": f"Bearer {agent.token}"}) as r:
        assert (r.status, await r.read()) == (200, PDF[::-1])
    new = await agent.api("POST", "/api/v1/tickets", {"text": "after the restore", "customer": {"name": "New"}})
    assert new["ticket"]["id"] > max(row[0] for row in at_backup["tickets"])
    await stop(server, t)

    # The backup taken while writing: restored, it is consistent (every message's ticket is there,
    # every ticket has its first message) and holds a prefix of what the writer wrote.
    dest2 = hub_settings(settings, await fresh("busy"), tmp_path / "restored2")
    await backups.restore(dest2, busy)
    ticket_ids = {tid for (tid,) in await read_rows(dest2.database_url, select(Ticket.id))}
    message_tickets = {tid for (tid,) in await read_rows(dest2.database_url, select(Message.ticket_id))}
    assert message_tickets <= ticket_ids
    assert ticket_ids <= message_tickets
    kept = [tid for tid in written if tid in ticket_ids]
    assert kept == written[:len(kept)]
    assert 5 <= len(kept) < len(written)
    if not PG_URL:
        db = Database(dest2.database_url)
        try:
            async with db.read() as session:
                assert (await session.execute(text("PRAGMA foreign_key_check"))).all() == []
                assert (await session.execute(text("PRAGMA integrity_check"))).scalar() == "ok"
        finally:
            await db.dispose()


async def _true(value: bool) -> bool:
    return value


def flipped(path: Path, dest: Path) -> Path:
    """A copy of the file with one byte flipped, in the middle (the database's part)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    dest.write_bytes(bytes(data))
    return dest


def put(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)


def listing(folder: Path) -> dict[str, str]:
    """The files of a folder (hidden ones too: a temporary file left behind would show), by name;
    small text files with their content."""
    if not folder.is_dir():
        return {}
    return {p.name: (p.read_text() if p.stat().st_size < 100 and p.suffix != ".chbk" else "") for p in folder.iterdir()}


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANNELHUB_")}
    env.update({"CHANNELHUB_DATABASE_URL": settings.database_url, "CHANNELHUB_LOG_LEVEL": "WARNING",
                "CHANNELHUB_SECRET_KEY_FILE": settings.secret_key_file, "CHANNELHUB_BACKUP_DIR": settings.backup_dir})
    return subprocess.run([sys.executable, "-m", "channelhub.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


async def test_cli_backs_up_restores_and_refuses(settings: Settings, fresh: Databases, tmp_path: Path) -> None:
    src = await migrated(hub_settings(settings, await fresh("clisrc"), tmp_path / "src"))
    domain = f"bk{uuid.uuid4().hex[:8]}.example.com"
    assert run_cli(src, "tenant", "create", "--name", "Backed Up", "--domain", domain).returncode == 0
    secrets.encrypt(src, "makes the key file")
    made = run_cli(src, "backup")
    assert made.returncode == 0, made.stderr
    path = Path(made.stdout.strip())
    assert path.parent == Path(src.backup_dir) and backups.taken_at(path) is not None
    manifest = backups.verify(path)
    assert manifest["database"] == ("postgresql" if PG_URL else "sqlite")
    assert manifest["secret_key"]["source"] == "file"
    assert set(manifest["members"]) == {backups.PG_MEMBER if PG_URL else backups.SQLITE_MEMBER, backups.KEY_MEMBER}

    dest = hub_settings(settings, await fresh("clidest"), tmp_path / "dest")
    done = run_cli(dest, "restore", str(path))
    assert done.returncode == 0, done.stderr
    assert "restored" in done.stdout and dest.secret_key_file in done.stdout
    assert (await snapshot(dest.database_url))["tenant_domains"] == (await snapshot(src.database_url))["tenant_domains"]

    # A non-empty target: refused, nothing changed.
    again = run_cli(dest, "restore", str(path))
    assert again.returncode == 2 and "not empty" in again.stderr, again.stderr
    # A damaged file: one byte flipped, in the database's part.
    damaged = flipped(path, tmp_path / "damaged.chbk")
    other = hub_settings(settings, await fresh("clidamaged"), tmp_path / "other")
    bad = run_cli(other, "restore", str(damaged))
    assert bad.returncode == 2 and "backup_corrupt" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr
    not_a_backup = tmp_path / "notes.chbk"
    not_a_backup.write_text("hello")
    assert run_cli(other, "restore", str(not_a_backup)).returncode == 2
    assert run_cli(other, "restore", str(tmp_path / "missing.chbk")).returncode == 2
    # Another key already where the key file goes: refused, the key is not overwritten.
    put(Path(other.secret_key_file), "another key")
    wrong_key = run_cli(other, "restore", str(path))
    assert wrong_key.returncode == 2 and "key_mismatch" in wrong_key.stderr, wrong_key.stderr
    assert listing(Path(other.secret_key_file).parent) == {"secret.key": "another key"}
    # Nothing was restored by the refusals.
    empty = (backups._sqlite_objects(Path(other.database_url.split("///", 1)[1])) if not PG_URL
             else await backups._pg_objects(other.database_url))
    assert empty == 0


def forged(path: Path, dest: Path, **changes: Any) -> Path:
    """A copy of a backup whose manifest says something else (its hashes still right)."""
    import io
    import json
    import tarfile

    with tarfile.open(path, "r:*") as src, tarfile.open(dest, "w") as out:
        for member in src.getmembers():
            fh = src.extractfile(member)
            assert fh is not None
            data = fh.read()
            if member.name == backups.MANIFEST:
                data = json.dumps({**json.loads(data), **changes}).encode()
                member.size = len(data)
            out.addfile(member, io.BytesIO(data))
    return dest


async def test_restore_refuses_what_this_hub_cannot_use(settings: Settings, fresh: Databases,
                                                        tmp_path: Path) -> None:
    src = await migrated(hub_settings(settings, await fresh("refsrc"), tmp_path / "src"))
    secrets.encrypt(src, "a channel password")  # the key file is made
    path = await backups.backup(src, tmp_path / "b")
    dest = hub_settings(settings, await fresh("refdest"), tmp_path / "dest")
    other_kind = "sqlite" if PG_URL else "postgresql"
    cases = [
        (forged(path, tmp_path / "kind.chbk", database=other_kind), "wrong_database_kind", f"a {other_kind} database"),
        (forged(path, tmp_path / "new.chbk", alembic_revision="9999z", hub_version="9.0"), "backup_too_new", "9.0"),
        (forged(path, tmp_path / "format.chbk", format_version=99), "backup_format", "format 99"),
        (forged(path, tmp_path / "members.chbk", members={}), "backup_corrupt", "unexpected member"),
    ]
    for file, code, words in cases:
        with pytest.raises(backups.BackupError) as refused:
            await backups.restore(dest, file)
        assert refused.value.code == code and words in refused.value.message, (code, refused.value.message)
    # The key: CHANNELHUB_SECRET_KEY set to another key than the backup's key file.
    with pytest.raises(backups.BackupError) as refused:
        await backups.restore(replace(dest, secret_key="another key"), path)
    assert refused.value.code == "key_mismatch"
    # None of it wrote anything: the untouched backup still restores.
    await backups.restore(dest, path)
    assert await snapshot(dest.database_url) == await snapshot(src.database_url)


def test_prune_keeps_seven_days(tmp_path: Path) -> None:
    now = datetime(2026, 12, 10, 2, 0, tzinfo=UTC)
    for days in range(12):
        (tmp_path / backups.file_name(now - timedelta(days=days))).write_bytes(b"x")
    (tmp_path / backups.file_name(now - timedelta(days=9), 1)).write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not ours")
    (tmp_path / "channelhub-old.chbk").write_text("not our name")
    gone = backups.prune(tmp_path, 7, now=now)
    assert sorted(p.name for p in gone) == sorted(
        [backups.file_name(now - timedelta(days=d)) for d in (8, 9, 10, 11)] + [
            backups.file_name(now - timedelta(days=9), 1)])
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([backups.file_name(now - timedelta(days=d)) for d in range(8)]
                          + ["notes.txt", "channelhub-old.chbk"])
    # The newest is kept, however old.
    assert backups.prune(tmp_path, 7, now=now + timedelta(days=100)) and \
        [p.name for p in tmp_path.iterdir() if backups.taken_at(p)] == [backups.file_name(now)]


async def test_schedule_makes_one_backup_among_processes(settings: Settings, fresh: Databases,
                                                         tmp_path: Path) -> None:
    src = await migrated(replace(hub_settings(settings, await fresh("sched"), tmp_path / "src"),
                                 backup_interval=86400.0))
    clock = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
    db1, db2 = Database(src.database_url), Database(src.database_url)
    try:
        first = await asyncio.gather(backups.scheduled(db1, src, owner="hub1", clock=lambda: clock),
                                     backups.scheduled(db2, src, owner="hub2", clock=lambda: clock))
        made = [p for p in first if p is not None]
        assert len(made) == 1 and made[0].name == "channelhub-20261207T020000Z.chbk"
        # Not due again within the interval, whoever asks.
        later = clock + timedelta(hours=23)
        assert await backups.scheduled(db2, src, owner="hub2", clock=lambda: later) is None
        next_day = clock + timedelta(days=1)
        path = await backups.scheduled(db2, src, owner="hub2", clock=lambda: next_day)
        assert path is not None and path.name == "channelhub-20261208T020000Z.chbk"
        # Eight days on: the one of the first day is pruned.
        week = clock + timedelta(days=8)
        assert await backups.scheduled(db1, src, owner="hub1", clock=lambda: week) is not None
        assert sorted(listing(Path(src.backup_dir))) == [
            "channelhub-20261208T020000Z.chbk", "channelhub-20261215T020000Z.chbk"]
        [(holder, last)] = await read_rows(src.database_url, select(PeriodicJob.holder, PeriodicJob.last_done_at)
                                           .where(PeriodicJob.name == "backup"))
        assert (holder, last) == (None, week)
    finally:
        await db1.dispose()
        await db2.dispose()


async def test_serve_runs_the_schedule(settings: Settings, fresh: Databases, tmp_path: Path) -> None:
    src = await migrated(replace(hub_settings(settings, await fresh("serve"), tmp_path / "src"),
                                 backup_interval=86400.0))
    server = await start_server(src)
    try:
        folder = Path(src.backup_dir)
        await eventually(lambda: _true(any(backups.taken_at(Path(name)) for name in listing(folder))), timeout=30)
        [name] = [name for name in listing(folder) if backups.taken_at(Path(name))]
        assert backups.verify(folder / name)["alembic_revision"] is not None
    finally:
        await server.runner.cleanup()


@pytest.mark.skipif(not PG_URL or shutil.which("pg_basebackup") is None,
                    reason="the hot standby recipe needs PostgreSQL and pg_basebackup")
def test_standby_base_backup_recipe(tmp_path: Path) -> None:
    """docs/operations.md's hot standby starts from `pg_basebackup -R`: against the test server it
    makes a data directory that starts as a standby of it (standby.signal, primary_conninfo). The
    server must accept replication connections from here (a `host replication` line in
    pg_hba.conf, as Debian's default cluster has); where it does not, the test is skipped. The
    standby itself is not started (PostgreSQL will not run as root, as CI does)."""
    assert PG_URL
    target = tmp_path / "standby"
    env = backups.pg_env(PG_URL)
    result = subprocess.run(["pg_basebackup", "--pgdata", str(target), "--wal-method=stream", "--checkpoint=fast",
                             "--write-recovery-conf", "--no-password", "--progress"], env=env, capture_output=True,
                            text=True, timeout=300)
    if result.returncode != 0 and ("pg_hba.conf" in result.stderr or "replication" in result.stderr):
        pytest.skip(f"the server refuses replication connections here: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr
    assert (target / "PG_VERSION").exists() and (target / "standby.signal").exists()
    assert "primary_conninfo" in (target / "postgresql.auto.conf").read_text()


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


def _free_ports(n: int) -> int:
    """The first of ``n`` consecutive free loopback ports."""
    import random
    import socket

    for _ in range(100):
        first = random.randrange(20000, 60000)
        try:
            with contextlib.ExitStack() as stack:
                for port in range(first, first + n):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise AssertionError("no free ports")


@pytest.mark.skipif(not PG_URL or _postgres_bin() is None,
                    reason="a PostgreSQL run, with PostgreSQL's server programs (initdb) installed")
def test_postgresql_recipe_on_a_private_cluster() -> None:
    """The hot standby and WAL archiving recipe of docs/operations.md, on a throw-away cluster of
    our own (tests/pg_recipe.sh): the shared server is not touched."""
    import pwd
    import tempfile

    bin_dir = _postgres_bin()
    assert bin_dir is not None
    as_root = os.geteuid() == 0
    if as_root:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("PostgreSQL does not run as root, and there is no postgres user to run it as")
    work = Path(tempfile.mkdtemp(prefix="channelhub-pg-recipe-"))
    try:
        if as_root:
            os.chown(work, user.pw_uid, user.pw_gid)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "BIN": str(bin_dir), "D": str(work),
               "PORT": str(_free_ports(3))}
        # The script is read from stdin: the postgres user may not be allowed into the checkout (a
        # clone in a private temporary folder, as CI's can be).
        argv = ["bash", "-s"]
        if as_root:
            argv = ["runuser", "-u", "postgres", "--", "env", *(f"{k}={v}" for k, v in env.items()), *argv]
        result = subprocess.run(argv, env=env, input=(ROOT / "tests" / "pg_recipe.sh").read_text(),
                                capture_output=True, text=True, timeout=300, cwd=work)
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        assert "standby in recovery: t, rows: 2" in out, out
        assert "walreceiver|streaming" in out, out
        # Recovered to the moment before the DELETE: the three rows; the primary has none left.
        assert ": one,two,three; primary now: 0 rows" in out, out
        # The archive kept from where the base backup starts: nothing older, that segment kept.
        [(segment, oldest)] = re.findall(r"after cleanup to (\w+): \d+, oldest (\w+)", out)
        assert segment and oldest == segment, out
    finally:
        shutil.rmtree(work, ignore_errors=True)
