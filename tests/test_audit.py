"""Audit and login logs (#16): every admin, operator and agent change is in the audit log (the routes
walked one by one, with the documented exceptions), every sign-in in the login log; both read with
filters and paging and exported as CSV and .xlsx, formula-safe; the audit log is a hash chain that
``channelhub audit verify`` checks (a changed or removed row breaks it, found by the real command),
and the database itself refuses to change or remove rows of either log, except a purged tenant's.
"""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import io
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import openpyxl
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from core import operators
from core.billing import Actor
from core.config import Settings
from core.db import Database
from core.models import AppendOnly, AuditLog, LoginLog
from tests.conftest import OPERATOR_HOST, PASSWORD, ROOT, Server, TenantInfo, make_tenant
from tests.support import Http, Reply, assert_error, op_id, op_key, operations
from tests.test_bad_input import Shop, _path, shop, valid_bodies  # noqa: F401 (shop: the fixture)

OPERATOR_PASSWORD = "operator audit passphrase"
MUTATING = ("POST", "PUT", "PATCH", "DELETE")

# The mutating routes that write no audit row, and why (docs/api.md, "The audit and login logs").
NOT_AUDITED: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/auth/login"): "sign-in: the login log",
    ("POST", "/api/v1/auth/logout"): "ends the caller's own token (its revoked_at); sign-in is in the login log",
    ("PUT", "/api/v1/me/presence"): "the agent's presence: not a change of anything configured",
    ("POST", "/api/v1/me/mentions/read"): "the agent's own read marks",
    ("POST", "/api/v1/attachments"): "an upload for a message: its row names the uploader",
    ("POST", "/api/v1/tickets/{ticket_id}/canned-replies/{canned_id}/render"): "changes nothing",
    ("POST", "/api/v1/tickets"): "ticket work: the ticket's events",
    ("PATCH", "/api/v1/tickets/{ticket_id}"): "ticket work: the ticket's events",
    ("POST", "/api/v1/tickets/{ticket_id}/messages"): "ticket work: the ticket's events",
    ("POST", "/api/v1/tickets/{ticket_id}/transfer"): "ticket work: the ticket's events",
    ("POST", "/api/v1/tickets/{ticket_id}/solve"): "ticket work: the ticket's events",
    ("POST", "/api/v1/tickets/{ticket_id}/reopen"): "ticket work: the ticket's events",
    ("POST", "/api/v1/tickets/{ticket_id}/claim"): "ticket work: the ticket's events",
    ("POST", "/webchat/messages"): "a customer's message, not an admin's change",
    ("POST", "/webchat/attachments"): "a customer's file",
    ("POST", "/csat/{token}"): "a customer's rating: the ticket's csat.rated event",
    ("POST", "/wechat/oa/{key}"): "the platform's push",
    ("POST", "/wechat/kf/{key}"): "the platform's push",
    ("POST", "/api/v1/tenant/delete"): "the tenant's own purge: audited in the operator's trail, which outlives "
                                       "the tenant (tests/test_purge.py)",
}


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHANNELHUB_DATABASE_URL": settings.database_url, "CHANNELHUB_LOG_LEVEL": "WARNING"}
    env.pop("CHANNELHUB_REDIS_URL", None)
    return subprocess.run([sys.executable, "-m", "channelhub.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def _migration() -> Any:
    """The revision that made the triggers: the tests take them away and put them back with its SQL."""
    path = ROOT / "alembic" / "versions" / "0016a_audit_chain.py"
    spec = importlib.util.spec_from_file_location("audit_chain_migration", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MIGRATION = _migration()


class TriggersOff:
    """The append-only triggers dropped for the block (to tamper as someone with the database's
    keys would), and made again after it."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def __aenter__(self) -> None:
        async with self.db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                for table in ("audit_log", "login_log"):
                    await conn.exec_driver_sql(f"DROP TRIGGER {table}_append_only ON {table}")
            else:
                for name in ("audit_log_no_update", "audit_log_no_delete"):
                    await conn.exec_driver_sql(f"DROP TRIGGER {name}")
                for name in ("login_log_no_update", "login_log_no_delete"):
                    await conn.exec_driver_sql(f"DROP TRIGGER {name}")

    async def __aexit__(self, *_: Any) -> None:
        async with self.db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                for stmt in MIGRATION.PG_TRIGGERS:
                    if "append_only BEFORE UPDATE" in stmt:
                        await conn.exec_driver_sql(stmt)
            else:
                for stmt in MIGRATION.SQLITE_TRIGGERS:
                    await conn.exec_driver_sql(stmt)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url)
    yield database
    await database.dispose()


async def audit_count(db: Database, tenant_id: int | None) -> int:
    scope = AuditLog.tenant_id.is_(None) if tenant_id is None else AuditLog.tenant_id == tenant_id
    async with db.read() as session:
        return int((await session.execute(select(func.count()).select_from(AuditLog).where(scope))).scalar_one())


async def audit_rows(db: Database, tenant_id: int | None) -> list[AuditLog]:
    scope = AuditLog.tenant_id.is_(None) if tenant_id is None else AuditLog.tenant_id == tenant_id
    async with db.read() as session:
        return list((await session.execute(select(AuditLog).where(scope).order_by(AuditLog.id))).scalars())


async def _login(http: Http, domain: str, email: str, password: str = PASSWORD, *, agent: str = "pytest") -> Reply:
    return await http("POST", "/api/v1/auth/login", host=domain, json_body={"email": email, "password": password},
                      headers={"User-Agent": agent})


async def _token(http: Http, domain: str, email: str) -> str:
    reply = await _login(http, domain, email)
    assert reply.status == 200, reply
    return str(reply.body["token"])


@pytest.fixture
async def http(server: Server) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession() as session:
        yield Http(server.url, session)


@pytest.fixture
async def staffed(settings: Settings, server: Server) -> AsyncIterator[tuple[TenantInfo, dict[str, Any]]]:
    """A tenant with an owner, an admin and an agent."""
    t = await make_tenant(settings, server, name="审计测试")
    people = {"owner": await t.add_agent(role="owner"), "admin": await t.add_agent(role="admin"),
              "agent": await t.add_agent(role="agent")}
    yield t, people
    await t.close()


# --- coverage: every mutating route writes an audit row, or is allowed not to ---------------------------------
def test_the_allow_list_names_only_real_mutating_routes() -> None:
    served = {op_key(op) for op in operations() if op.method in MUTATING}
    assert set(NOT_AUDITED) <= served, sorted(set(NOT_AUDITED) - served)


def test_the_agent_sockets_actions_are_ticket_work() -> None:
    """The agent gateway's actions are ticket work (recorded in the ticket's events) or reads and
    live signals: a new one must be put here knowingly, or audited."""
    from admin_api.gateway import ACTIONS

    ticket_work = {"reply", "note", "status", "priority", "tags", "transfer", "claim"}
    nothing_stored = {"get_ticket", "typing", "viewing"}
    assert set(ACTIONS) <= ticket_work | nothing_stored, sorted(set(ACTIONS) - ticket_work - nothing_stored)


async def test_every_admin_and_agent_change_is_audited(shop: Shop) -> None:  # noqa: F811
    """Each mutating route of the tenant's API not in NOT_AUDITED, called as users do: one more row
    in the tenant's chain, by the caller; and no password or secret in any of them."""
    v = valid_bodies(shop)
    ops = [op for op in operations() if op.method in MUTATING and op_key(op) not in NOT_AUDITED]
    # The calls that end the caller's sessions go last; removals after everything else.
    erase = ("POST", "/api/v1/customers/{customer_id}/erase")
    last = {erase: 1.5, ("PUT", "/api/v1/me/password"): 2, ("POST", "/api/v1/auth/logout-all"): 3}
    ops.sort(key=lambda op: last.get(op_key(op), 1 if op.method == "DELETE" else 0))
    token = shop.owner_token
    missing: list[str] = []
    failed: list[tuple[str, Reply]] = []
    for op in ops:
        key = op_key(op)
        if key in last:  # the admin's sessions, not the owner's, which the module's other tests use
            token = token if key == ("POST", "/api/v1/auth/logout-all") else shop.admin_token
        body = v.get(key)
        if key == ("PUT", "/api/v1/routing/rules/order"):  # every rule, as they are now
            rules = await shop.call("GET", "/api/v1/routing/rules")
            body = {"ids": [r["id"] for r in rules.body["rules"]][::-1]}
        before = await audit_count(shop.db, shop.info.id)
        # The shop's canned reply is the agent's own.
        caller = shop.agent_token if key[1] == "/api/v1/canned-replies/{canned_id}" else token
        path = _path(op, shop)
        if key == erase:  # confirmed by typing the customer's id
            body = {"confirm": path.split("/")[4]}
        reply = await shop.call(op.method, path, token=caller, body=body)
        if reply.status not in (200, 201, 202, 204):
            failed.append((op_id(op), reply))
            continue
        if key == ("PUT", "/api/v1/me/password"):
            token = reply.body["token"]
        if await audit_count(shop.db, shop.info.id) <= before:
            missing.append(op_id(op))
    assert not failed, failed
    assert not missing, f"changes without an audit row: {missing}"
    rows = await audit_rows(shop.db, shop.info.id)
    assert all(r.actor_type in ("agent", "operator", "system") for r in rows)
    written = " ".join(str(r.details) for r in rows)
    secrets = [PASSWORD, "an0ther password", shop.wechat.get("secret") or "", "xmpp secret"]
    assert not [s for s in secrets if s and s in written], "a secret in the audit log"
    assert "Hello {{customer.name|there}}" not in written, "a canned reply's text in the audit log"


@pytest.fixture
async def operator_token(settings: Settings, server: Server, http: Http) -> str:
    email = f"audit-{uuid.uuid4().hex[:8]}@operator.example"
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            await operators.create_account(session, email=email, name="Audit owner", password=OPERATOR_PASSWORD,
                                           role="owner", actor=Actor("operator"))
    finally:
        await db.dispose()
    reply = await http("POST", "/operator/v1/auth/login", host=OPERATOR_HOST,
                       json_body={"email": email, "password": OPERATOR_PASSWORD})
    assert reply.status == 200, reply
    return str(reply.body["token"])


async def test_every_operator_change_is_audited(settings: Settings, server: Server, http: Http,
                                                operator_token: str, db: Database) -> None:
    from channelhub.app import build_operator_api

    today = datetime.now(UTC).date()

    async def call(method: str, path: str, body: Any = None, token: str = operator_token) -> Reply:
        kwargs: dict[str, Any] = {} if body is None else {"json_body": body}
        return await http(method, path, host=OPERATOR_HOST, token=token, **kwargs)

    async def tenant(contract: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"name": "Audited", "domains": [f"o{uuid.uuid4().hex[:10]}.example.com",
                                                                f"p{uuid.uuid4().hex[:10]}.example.com"]}
        if contract:
            body["contract"] = {"price_per_seat_year": 36_500, "currency": "CNY", "term_start": today.isoformat()}
        made = await call("POST", "/operator/v1/tenants", body)
        assert made.status == 201, made
        return dict(made.body["tenant"])

    async def count() -> int:
        async with db.read() as session:
            return int((await session.execute(select(func.count()).select_from(AuditLog))).scalar_one())

    missing = []
    for op in build_operator_api().operations:
        if op.method not in MUTATING:
            continue
        key = op_key(op)
        contract = key[1].startswith("/operator/v1/tenants/{tenant_id}/") and any(
            word in key[1] for word in ("contract", "top-ups", "compensations", "notice", "renew"))
        t = await tenant(contract=contract and key != ("PUT", "/operator/v1/tenants/{tenant_id}/contract"))
        ids = {"tenant_id": t["id"], "domain": t["domains"][-1], "name": "reports", "window_id": 0,
               "account_id": 0}
        bodies: dict[tuple[str, str], Any] = {
            ("POST", "/operator/v1/auth/login"): {"email": "nobody@operator.example", "password": "x"},
            ("POST", "/operator/v1/accounts"): {"email": f"n-{uuid.uuid4().hex[:6]}@operator.example", "name": "N",
                                               "password": OPERATOR_PASSWORD, "role": "support"},
            ("PATCH", "/operator/v1/accounts/{account_id}"): {"name": "Renamed"},
            ("POST", "/operator/v1/tenants"): {"name": "N", "domains": [f"n{uuid.uuid4().hex[:10]}.example.com"]},
            ("PATCH", "/operator/v1/tenants/{tenant_id}"): {"name": "Renamed"},
            ("POST", "/operator/v1/tenants/{tenant_id}/domains"): {
                "domains": [f"d{uuid.uuid4().hex[:10]}.example.com"]},
            ("POST", "/operator/v1/tenants/{tenant_id}/suspend"): {"reason": "audit"},
            ("PUT", "/operator/v1/tenants/{tenant_id}/contract"): {"price_per_seat_year": 36_500, "currency": "CNY",
                                                                  "term_start": today.isoformat()},
            ("PATCH", "/operator/v1/tenants/{tenant_id}/contract"): {"price_per_seat_year": 40_000},
            ("POST", "/operator/v1/tenants/{tenant_id}/top-ups"): {"amount": 100},
            ("POST", "/operator/v1/tenants/{tenant_id}/compensations"): {"minutes": 1},
            ("POST", "/operator/v1/tenants/{tenant_id}/notice"): {"ends_on": (today + timedelta(days=31)).isoformat()},
            ("PUT", "/operator/v1/subsystems/{name}"): {"enabled": False, "reason": "audit walk"},
            ("POST", "/operator/v1/maintenance"): {"start": "2099-01-01T00:00:00Z", "end": "2099-01-01T01:00:00Z",
                                                   "reason": "audit", "tenant_id": t["id"]},
            ("POST", "/operator/v1/tenants/{tenant_id}/purge"): {"confirm": t["domains"][0]},
        }
        token = operator_token
        if key == ("POST", "/operator/v1/tenants/{tenant_id}/resume"):
            assert (await call("POST", f"/operator/v1/tenants/{t['id']}/suspend", {"reason": "x"})).status == 200
        if key == ("DELETE", "/operator/v1/maintenance/{window_id}"):
            window = await call("POST", "/operator/v1/maintenance", bodies[("POST", "/operator/v1/maintenance")])
            assert window.status == 201, window
            ids["window_id"] = window.body["window"]["id"]
        if key == ("PATCH", "/operator/v1/accounts/{account_id}"):
            made = await call("POST", "/operator/v1/accounts", bodies[("POST", "/operator/v1/accounts")])
            ids["account_id"] = made.body["account"]["id"]
        if key == ("POST", "/operator/v1/auth/logout"):
            account = bodies[("POST", "/operator/v1/accounts")]
            assert (await call("POST", "/operator/v1/accounts", account)).status == 201
            signed = await http("POST", "/operator/v1/auth/login", host=OPERATOR_HOST,
                                json_body={"email": account["email"], "password": OPERATOR_PASSWORD})
            token = signed.body["token"]
        before = await count()
        reply = await call(op.method, op.path.format(**ids), bodies.get(key), token=token)
        if key != ("POST", "/operator/v1/auth/login"):
            assert reply.status in (200, 201, 202, 204), (op_id(op), reply)
        if await count() <= before:
            missing.append(op_id(op))
        if key == ("PUT", "/operator/v1/subsystems/{name}"):
            assert (await call("PUT", "/operator/v1/subsystems/reports", {"enabled": True, "reason": "back"})
                    ).status == 200
    assert not missing, f"operator changes without an audit row: {missing}"


# --- the chain and `channelhub audit verify` ------------------------------------------------------------------
async def _changes(http: Http, t: TenantInfo, token: str, n: int) -> list[int]:
    """``n`` audited changes (new groups) made by an admin through the API; the groups' ids."""
    ids = []
    for i in range(n):
        reply = await http("POST", "/api/v1/groups", host=t.domain, token=token,
                           json_body={"name": f"组 {i} {uuid.uuid4().hex[:6]}"})
        assert reply.status == 201, reply
        ids.append(reply.body["group"]["id"])
    return ids


async def test_every_chain_verifies_and_concurrent_changes_stay_linked(
        settings: Settings, http: Http, staffed: tuple[TenantInfo, dict[str, Any]], db: Database) -> None:
    t, people = staffed
    token = await _token(http, t.domain, people["admin"].email)
    # Changes at once, from many requests: each chain's rows are still linked one after the other.
    await asyncio.gather(*(_changes(http, t, token, 3) for _ in range(6)))
    rows = await audit_rows(db, t.id)
    assert len(rows) >= 18 + 3  # and the three agents' creation
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    done = cli(settings, "audit", "verify")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert f"tenant {t.id}: {len(rows)} row(s), chain intact" in done.stdout
    assert "operator:" in done.stdout and "0 broken" in done.stdout


async def test_a_changed_row_breaks_audit_verify(settings: Settings, http: Http,
                                                 staffed: tuple[TenantInfo, dict[str, Any]], db: Database) -> None:
    t, people = staffed
    await _changes(http, t, await _token(http, t.domain, people["admin"].email), 4)
    rows = await audit_rows(db, t.id)
    assert cli(settings, "audit", "verify", "--tenant", str(t.id)).returncode == 0
    victim = rows[len(rows) // 2]
    async with TriggersOff(db), db.engine.begin() as conn:
        await conn.execute(text("UPDATE audit_log SET details = :d WHERE id = :id"),
                           {"d": '{"name": "not what happened"}', "id": victim.id})
    done = cli(settings, "audit", "verify", "--tenant", str(t.id))
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"tenant {t.id}: row {victim.id}: its fields do not match its hash" in done.stderr, done.stderr
    assert "1 broken" in done.stdout
    # Only that chain is broken: the operator's still verifies.
    assert cli(settings, "audit", "verify", "--operator").returncode == 0


async def test_a_row_removed_from_a_chain_breaks_audit_verify(
        settings: Settings, http: Http, staffed: tuple[TenantInfo, dict[str, Any]], db: Database) -> None:
    t, people = staffed
    await _changes(http, t, await _token(http, t.domain, people["admin"].email), 4)
    rows = await audit_rows(db, t.id)
    gone, after = rows[3], rows[4]
    async with TriggersOff(db), db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": gone.id})
    done = cli(settings, "audit", "verify", "--tenant", str(t.id))
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"row {after.id}: its prev_hash is not the hash of row {rows[2].id}" in done.stderr, done.stderr


async def test_the_newest_row_removed_breaks_audit_verify(
        settings: Settings, http: Http, staffed: tuple[TenantInfo, dict[str, Any]], db: Database) -> None:
    t, people = staffed
    await _changes(http, t, await _token(http, t.domain, people["admin"].email), 2)
    newest = (await audit_rows(db, t.id))[-1]
    async with TriggersOff(db), db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": newest.id})
    done = cli(settings, "audit", "verify", "--tenant", str(t.id))
    assert done.returncode == 1 and f"the head names row {newest.id}" in done.stderr, done.stderr


# --- append-only, for everyone -------------------------------------------------------------------------------
async def _refused(db: Database, sql: str, **params: Any) -> None:
    with pytest.raises(DBAPIError, match="append-only"):
        async with db.engine.begin() as conn:
            await conn.execute(text(sql), params)


async def test_the_database_refuses_to_change_or_remove_log_rows(
        http: Http, staffed: tuple[TenantInfo, dict[str, Any]], db: Database) -> None:
    t, people = staffed
    await _changes(http, t, await _token(http, t.domain, people["admin"].email), 1)
    assert (await _login(http, t.domain, people["agent"].email, "wrong password")).status == 401
    for table in ("audit_log", "login_log"):
        await _refused(db, f"UPDATE {table} SET ip = '10.6.6.6' WHERE tenant_id = :t", t=t.id)
        await _refused(db, f"DELETE FROM {table} WHERE tenant_id = :t", t=t.id)
    # The operator's rows (no tenant) never go.
    await _refused(db, "UPDATE audit_log SET action = 'x' WHERE tenant_id IS NULL")
    await _refused(db, "DELETE FROM audit_log WHERE tenant_id IS NULL")
    # The ORM says so before the database is asked.
    with pytest.raises(AppendOnly):
        async with db.session(t.id) as session:
            row = (await session.execute(select(AuditLog).where(AuditLog.tenant_id == t.id))).scalars().first()
            assert row is not None
            row.action = "x"
    with pytest.raises(AppendOnly):
        async with db.session(t.id) as session:
            await session.execute(select(LoginLog).where(LoginLog.tenant_id == t.id).limit(1))
            from sqlalchemy import delete

            await session.execute(delete(LoginLog).where(LoginLog.tenant_id == t.id))
    assert await audit_count(db, t.id) >= 4


async def test_a_purged_tenants_log_rows_may_go(
        settings: Settings, server: Server, http: Http, db: Database) -> None:
    t = await make_tenant(settings, server, name="Leaving")
    admin = await t.add_agent(role="admin")
    await _changes(http, t, await _token(http, t.domain, admin.email), 2)
    assert (await _login(http, t.domain, admin.email, "wrong password")).status == 401
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE tenants SET status = 'purging' WHERE id = :t"), {"t": t.id})
    # Still never changed...
    await _refused(db, "UPDATE audit_log SET ip = '10.6.6.6' WHERE tenant_id = :t", t=t.id)
    # ... but removed with the tenant, and the other chains stay whole.
    async with db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_log WHERE tenant_id = :t"), {"t": t.id})
        await conn.execute(text("DELETE FROM login_log WHERE tenant_id = :t"), {"t": t.id})
    assert await audit_count(db, t.id) == 0
    async with db.engine.begin() as conn:  # the purge ends with the tenant's row (no tenant is left purging)
        await conn.execute(text("DELETE FROM tenants WHERE id = :t"), {"t": t.id})
    # A tenant whose row goes takes the rest with it (ON DELETE CASCADE), agents and heads too.
    other = await make_tenant(settings, server, name="Gone")
    gone_admin = await other.add_agent(role="admin")
    await _changes(http, other, await _token(http, other.domain, gone_admin.email), 1)
    async with db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM tenants WHERE id = :t"), {"t": other.id})
    assert await audit_count(db, other.id) == 0
    done = cli(settings, "audit", "verify", "--operator")
    assert done.returncode == 0, done.stderr
    await t.close()
    await other.close()


# --- reading and exporting ---------------------------------------------------------------------------------
async def _get(http: Http, t: TenantInfo, token: str, path: str) -> Reply:
    return await http("GET", path, host=t.domain, token=token)


async def _download(http: Http, host: str, token: str, path: str) -> tuple[int, str, bytes]:
    async with http.session.get(http.base_url + path, headers={"Host": host, "Authorization": f"Bearer {token}"}
                                ) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


async def test_owners_and_admins_read_the_audit_log_with_filters_and_paging(
        http: Http, staffed: tuple[TenantInfo, dict[str, Any]], db: Database) -> None:
    t, people = staffed
    admin_token = await _token(http, t.domain, people["admin"].email)
    owner_token = await _token(http, t.domain, people["owner"].email)
    groups = await _changes(http, t, admin_token, 5)
    agent_id = people["agent"].id
    assert (await http("PATCH", f"/api/v1/agents/{agent_id}", host=t.domain, token=owner_token,
                       json_body={"capacity": 7})).status == 200
    everything = [r.id for r in reversed(await audit_rows(db, t.id))]
    # A page at a time, newest first, to the end.
    seen: list[int] = []
    path = "/api/v1/audit?limit=2"
    while True:
        page = await _get(http, t, owner_token, path)
        assert page.status == 200, page
        seen += [e["id"] for e in page.body["entries"]]
        if page.body["next_before_id"] is None:
            break
        path = f"/api/v1/audit?limit=2&before_id={page.body['next_before_id']}"
    assert seen == everything
    # Filters: an action's beginning, the actor, the target, the time.
    made = (await _get(http, t, admin_token, "/api/v1/audit?action=group.")).body["entries"]
    assert [e["target_id"] for e in made] == [str(g) for g in reversed(groups)]
    assert all(e["actor_id"] == people["admin"].id and e["action"] == "group.create" for e in made)
    update = (await _get(http, t, admin_token, f"/api/v1/audit?actor_id={people['owner'].id}")).body["entries"]
    assert [e["action"] for e in update] == ["agent.update"]
    assert update[0]["details"]["before"]["capacity"] == 5 and update[0]["details"]["after"]["capacity"] == 7
    one = (await _get(http, t, admin_token, f"/api/v1/audit?target_type=group&target_id={groups[2]}")).body
    assert [e["target_id"] for e in one["entries"]] == [str(groups[2])] and one["next_before_id"] is None
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    assert (await _get(http, t, admin_token, f"/api/v1/audit?from={later}")).body["entries"] == []
    assert len((await _get(http, t, admin_token, f"/api/v1/audit?to={later}")).body["entries"]) == len(everything)
    # An agent may not read it; bad filters are refused plainly.
    assert_error(await _get(http, t, await _token(http, t.domain, people["agent"].email), "/api/v1/audit"),
                 403, "admin_only")
    for query in ("limit=501", "limit=0", "before_id=0", "from=yesterday", "actor_type=robot", "actor_id=x",
                  "action=" + "x" * 81, "format=pdf"):
        path = "/api/v1/audit/export" if query.startswith("format") else "/api/v1/audit"
        assert_error(await _get(http, t, admin_token, f"{path}?{query}"), 422, "invalid_query")


async def test_failed_sign_ins_are_in_the_login_log_with_address_agent_and_outcome(
        http: Http, staffed: tuple[TenantInfo, dict[str, Any]]) -> None:
    t, people = staffed
    assert (await _login(http, t.domain, people["agent"].email, "wrong password", agent="Firefox 火狐")).status == 401
    assert (await _login(http, t.domain, f"nobody@{t.domain}", "whatever", agent="curl/8")).status == 401
    admin_token = await _token(http, t.domain, people["admin"].email)
    rows = (await _get(http, t, admin_token, "/api/v1/logins")).body["entries"]
    assert [(r["email"], r["outcome"], r["user_agent"]) for r in rows] == [
        (people["admin"].email, "success", "pytest"), (f"nobody@{t.domain}", "unknown_user", "curl/8"),
        (people["agent"].email, "bad_password", "Firefox 火狐")]
    assert all(r["ip"] == "127.0.0.1" and r["at"] for r in rows)
    assert rows[2]["agent_id"] == people["agent"].id and rows[1]["agent_id"] is None
    failed = (await _get(http, t, admin_token, "/api/v1/logins?outcome=bad_password")).body
    assert [r["email"] for r in failed["entries"]] == [people["agent"].email]
    mine = (await _get(http, t, admin_token, f"/api/v1/logins?agent_id={people['agent'].id}&limit=1")).body
    assert len(mine["entries"]) == 1 and mine["next_before_id"] is None
    assert_error(await _get(http, t, admin_token, "/api/v1/logins?outcome=maybe"), 422, "invalid_query")


async def test_exports_are_csv_and_xlsx_formula_safe_and_keep_chinese(
        http: Http, staffed: tuple[TenantInfo, dict[str, Any]]) -> None:
    t, people = staffed
    admin_token = await _token(http, t.domain, people["admin"].email)
    # Text anyone may write, which a spreadsheet would run as a formula.
    evil = "=HYPERLINK(\"http://evil.example\",\"click\")"
    assert (await _login(http, t.domain, people["agent"].email, "wrong", agent=evil)).status == 401
    assert (await _login(http, t.domain, people["agent"].email, "wrong", agent="@SUM(1+1)")).status == 401
    assert (await http("POST", "/api/v1/groups", host=t.domain, token=admin_token,
                       json_body={"name": "客服一组"})).status == 201

    status, kind, data = await _download(http, t.domain, admin_token, "/api/v1/logins/export?format=csv")
    assert status == 200 and kind.startswith("text/csv"), (status, kind)
    assert data.startswith(b"\xef\xbb\xbf")
    table = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    agents = [r["user_agent"] for r in table]
    assert "'" + evil in agents and "'@SUM(1+1)" in agents and evil not in agents
    assert {r["outcome"] for r in table} == {"success", "bad_password"}

    status, kind, data = await _download(http, t.domain, admin_token, "/api/v1/audit/export?format=csv&action=group")
    assert status == 200
    [row] = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert row["action"] == "group.create" and "客服一组" in row["details"]
    assert row["actor_id"] == str(people["admin"].id)

    status, kind, data = await _download(http, t.domain, admin_token, "/api/v1/logins/export?format=xlsx")
    assert status == 200 and kind == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    assert sheet is not None
    cells = list(sheet.iter_rows(values_only=False))
    heading = [c.value for c in cells[0]]
    col = heading.index("user_agent")
    evil_cells = [r[col] for r in cells[1:] if r[col].value == evil]
    assert evil_cells and all(c.data_type == "s" for c in evil_cells)  # text, never a formula
    status, _, data = await _download(http, t.domain, admin_token, "/api/v1/audit/export?format=xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    assert sheet is not None
    assert any("客服一组" in str(c) for r in sheet.iter_rows(values_only=True) for c in r)
    # Admins only.
    status, _, _ = await _download(http, t.domain, await _token(http, t.domain, people["agent"].email),
                                   "/api/v1/audit/export")
    assert status == 403


async def test_the_operator_exports_its_trail(http: Http, operator_token: str) -> None:
    name = "=cmd|' /C calc'!A0"
    made = await http("POST", "/operator/v1/tenants", host=OPERATOR_HOST, token=operator_token,
                      json_body={"name": name, "domains": [f"x{uuid.uuid4().hex[:10]}.example.com"]})
    assert made.status == 201, made
    tid = made.body["tenant"]["id"]
    status, kind, data = await _download(http, OPERATOR_HOST, operator_token,
                                         f"/operator/v1/audit/export?format=csv&tenant_id={tid}")
    assert status == 200 and kind.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert [r["action"] for r in rows] == ["tenant.create"] and rows[0]["target_id"] == str(tid)
    status, kind, data = await _download(http, OPERATOR_HOST, operator_token,
                                         f"/operator/v1/audit/export?format=xlsx&tenant_id={tid}&action=tenant.")
    assert status == 200
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    assert sheet is not None and sheet.max_row == 2
    status, _, _ = await _download(http, OPERATOR_HOST, operator_token, "/operator/v1/audit/export?format=doc")
    assert status == 422


# --- the migration: rows written before the chain get their hashes, in id order -----------------------------
async def test_the_migration_chains_the_rows_already_written(tmp_path: Any) -> None:
    from core import audit
    from core.db import create_pg_database, drop_pg_database, migrate
    from tests.conftest import PG_URL

    url = (await create_pg_database(PG_URL, f"channelhub_chain_{os.getpid()}") if PG_URL
           else f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    old = Database(url)
    try:
        await migrate(old, "0015v")
        async with old.engine.begin() as conn:
            await conn.execute(text("INSERT INTO tenants (name, domain, status, routing, created_at) "
                                    "VALUES ('Old', 'old.example.com', 'active', '{}', :at)"),
                               {"at": datetime.now(UTC)})
            tid = (await conn.execute(text("SELECT id FROM tenants"))).scalar_one()
            for i, tenant_id in enumerate((None, tid, tid, None, tid)):
                await conn.execute(text(
                    "INSERT INTO audit_log (tenant_id, actor_type, actor_id, action, target_type, target_id, "
                    "details, ip, created_at) VALUES (:t, 'agent', 1, :a, 'group', :g, :d, '127.0.0.1', :at)"),
                    {"t": tenant_id, "a": f"group.create{i}", "g": str(i), "d": '{"name": "组", "n": [1, 2]}',
                     "at": datetime(2026, 1, 1, 8, 0, i, 123456, tzinfo=UTC)})
        await migrate(old)
        results = await audit.verify(old)
        assert [(name, count, broken) for name, count, broken in results] == [
            ("operator", 2, None), (f"tenant {tid}", 3, None)]
        # New rows go on from the backfilled head.
        async with old.session(tid) as session:
            audit.audit(session, tenant_id=tid, actor_type="agent", actor_id=1, action="group.update")
        assert [c for _, c, b in await audit.verify(old, [tid]) if b is None] == [4]
    finally:
        await old.dispose()
        if PG_URL:
            await drop_pg_database(url)
