"""Deletion and retention (#16): a tenant's purge, asked for by its owner or the operator, walks
every table and leaves no row of the tenant (checked by walking the metadata) while another tenant
is untouched; a purge stopped in the middle resumes; a tenant whose term ran out unpaid is purged
7 days later unless it renews; one customer's personal data is erased on request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets as secrets_module
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select, update

from admin_api.client import AgentClient
from connectors.webchat.models import WebchatUpload
from connectors.wechat.models import WeChatMedia, WeChatReplyWindow
from connectors.xmpp.models import XmppAccount, XmppDelivery, XmppPeer
from core import billing, purge, rollups, secrets, sla, tenants
from core.config import Settings
from core.db import Database
from core.models import (
    Agent,
    AuditLog,
    Base,
    BillingContract,
    Customer,
    CustomerIdentity,
    Export,
    InboxItem,
    MaintenanceWindow,
    Message,
    ProbeResult,
    StoredAttachment,
    Tenant,
    TenantDomain,
    TenantPurge,
    Ticket,
    TicketParticipant,
)
from tests.conftest import PASSWORD, ROOT, Databases, Server, TenantInfo, eventually, make_tenant, start_server
from tests.support import Http, assert_error, assert_error_frame, next_frame, open_billing
from tests.test_operator import Desk, desk  # noqa: F401  (desk: the fixture)
from tests.test_sessions import closed_for_session
from tests.wechat.platform import StandIn, new_aes_key, new_app_id, new_openid
from web.http import HUB

PG_URL = os.environ.get("CHANNELHUB_TEST_DATABASE_URL")
PRICE = 36_500


async def login(http: Http, domain: str, email: str) -> str:
    reply = await http("POST", "/api/v1/auth/login", host=domain, json_body={"email": email, "password": PASSWORD})
    assert reply.status == 200, reply
    return str(reply.body["token"])


@dataclass
class Filled:
    """A tenant with data in every table real use reaches, and its people's tokens."""

    info: TenantInfo
    owner_token: str
    admin_token: str
    agent_token: str
    visitor_id: str
    secrets: dict[str, str]


async def fill(http: Http, info: TenantInfo, db: Database, wechat_api: StandIn) -> Filled:
    group = await info.add_group("Front desk")
    owner = await info.add_agent(role="owner")
    admin = await info.add_agent(role="admin", name="Ann Admin")
    agent = await info.add_agent(role="agent", group_ids=[group], name="Bob Agent")
    owner_token, admin_token = await login(http, info.domain, owner.email), await login(http, info.domain, admin.email)
    agent_token = await login(http, info.domain, agent.email)
    # A failed sign-in is kept in the login log too.
    assert (await http("POST", "/api/v1/auth/login", host=info.domain,
                       json_body={"email": admin.email, "password": "wrong password"})).status == 401

    async def call(method: str, path: str, body: Any = None, token: str = admin_token, **kw: Any) -> Any:
        reply = await http(method, path, host=info.domain, token=token,
                           **({"json_body": body} if body is not None else {}), **kw)
        assert reply.status in (200, 201), (path, reply)
        return reply.body

    # An SLA policy: the ticket below gets deadlines (ticket_sla, computed by the sweeper: here at once).
    await call("POST", "/api/v1/sla/policies", {"name": "Standard", "first_response": 3600, "resolution": 86400})
    # A visitor writes and uploads a file; an agent answers with a file, a note mentions a colleague.
    visitor = secrets_module.token_urlsafe(18)  # as the widget makes one
    upload = await http("POST", f"/webchat/attachments?visitor_id={visitor}&name=photo.png", host=info.domain,
                        data=b"\x89PNG\r\n\x1a\n" + b"0" * 32, headers={"Content-Type": "image/png"})
    assert upload.status == 201, upload
    first = await http("POST", "/webchat/messages", host=info.domain, json_body={
        "visitor_id": visitor, "client_id": "c1", "text": "My parcel never came", "name": "Milton",
        "email": "milton@example.com", "attachments": [upload.body["attachment"]["id"]]})
    assert first.status == 201, first
    ticket = (await call("GET", "/api/v1/tickets"))["tickets"][0]
    label = await call("POST", "/api/v1/attachments?name=label.pdf", token=agent_token, data=b"%PDF shipping label",
                       headers={"Content-Type": "application/pdf"})
    await call("POST", f"/api/v1/tickets/{ticket['id']}/messages", {
        "text": "Sorry, here is the label", "kind": "reply", "attachments": [label["attachment"]["id"]]})
    await call("POST", f"/api/v1/tickets/{ticket['id']}/messages", {
        "text": f"@[Bob Agent](agent:{agent.id}) please check", "kind": "note"})
    await call("POST", "/api/v1/routing/rules", {"name": "urgent", "conditions": {"text_contains": ["urgent"]},
                                                 "actions": {"priority": "urgent"}})
    await call("PUT", "/api/v1/webchat/settings", {"offline_message": {"en": "Away"}, "welcome": {"en": "Hi"}})
    await call("POST", "/api/v1/canned-replies", {"shortcut": "hi", "title": "Hi", "text": "Hello"})
    await call("POST", "/api/v1/macros", {"name": "Urgent", "actions": [{"type": "priority", "priority": "urgent"}]})
    # Satisfaction surveys (#17): the tenant's setting, and a second chat solved (its survey).
    await call("PUT", "/api/v1/settings/csat", {"enabled": True})
    thanks = await http("POST", "/webchat/messages", host=info.domain, json_body={"client_id": "c2", "text": "Thanks"})
    assert thanks.status == 201, thanks
    async with db.read(info.id) as session:
        solved = (await session.execute(select(Message.ticket_id).where(
            Message.id == thanks.body["message"]["id"]))).scalar_one()
    await call("POST", f"/api/v1/tickets/{solved}/solve")
    left = (await call("POST", "/api/v1/tickets", {"customer": {"name": "Left"}, "text": "left"}))["ticket"]
    right = (await call("POST", "/api/v1/tickets", {"customer": {"name": "Right"}, "text": "right"}))["ticket"]
    await call("POST", f"/api/v1/customers/{left['customer_id']}/merge", {"other_id": right["customer_id"]})
    # The channels' accounts, each with its secrets (stored encrypted).
    secrets = {"wechat": "s3cret-" + uuid.uuid4().hex, "smtp": "smtp-" + uuid.uuid4().hex,
               "xmpp": "xmpp-" + uuid.uuid4().hex}
    app_id = new_app_id()
    wechat = (await call("POST", "/api/v1/wechat/accounts", {
        "name": "Service", "app_id": app_id, "secret": secrets["wechat"], "token": "tok" + uuid.uuid4().hex[:10],
        "aes_key": new_aes_key(), "mode": "safe"}))["account"]
    wechat_api.secrets[app_id] = secrets["wechat"]
    await call("POST", "/api/v1/email/mailboxes", {
        "address": f"help@{info.domain}", "name": "Help",
        "smtp": {"host": "127.0.0.1", "port": 2525, "username": "help", "password": secrets["smtp"]}})
    await call("POST", "/api/v1/xmpp/accounts", {"kind": "client", "jid": f"help@xmpp.{info.domain}",
                                                 "secret": secrets["xmpp"]})
    openid, now = new_openid(), datetime.now(UTC)
    async with db.session(info.id) as session:  # rows as the channels, the prober and the operator keep them
        session.add(WeChatMedia(tenant_id=info.id, account_id=wechat["id"], media_id=f"M{uuid.uuid4().hex}",
                                content_type="image/jpeg", size=5, data=b"photo"))
        session.add(WeChatReplyWindow(account_id=wechat["id"], user_id=openid, tenant_id=info.id,
                                      opened_at=now, sent=1))
        xmpp = (await session.execute(select(XmppAccount.id).where(XmppAccount.tenant_id == info.id))).scalar_one()
        session.add(XmppPeer(tenant_id=info.id, account_id=xmpp, jid=f"c{uuid.uuid4().hex[:6]}@xmpp.example.org",
                             local_jid=f"help@xmpp.{info.domain}"))
        session.add(XmppDelivery(tenant_id=info.id, message_id=1, account_id=xmpp, stanza_id=uuid.uuid4().hex,
                                 to_jid="c@xmpp.example.org"))
        session.add(TicketParticipant(ticket_id=ticket["id"], channel="email", external_id="cc@example.com",
                                      tenant_id=info.id))
        # Every ticket's deadlines, as the shared server's SLA sweeper would make them (the same
        # rows whoever computes them): the counts are at rest before the purge compares them.
        every = (await session.execute(select(Ticket.id).where(Ticket.tenant_id == info.id))).scalars().all()
        await sla.recompute(session, info.id, every)
        session.add(InboxItem(tenant_id=info.id, channel="wechat", channel_message_id=uuid.uuid4().hex,
                              external_id=openid, state="failed", payload={}))
        session.add(ProbeResult(tenant_id=info.id, prober="test", at=now, ok=True, latency_ms=3))
        session.add(MaintenanceWindow(tenant_id=info.id, starts_at=now, ends_at=now + timedelta(hours=1),
                                      reason="upgrade"))
    await open_billing(db, info.id)
    # The reports' rollups and cursor (the test server keeps none in the background).
    assert await rollups.catch_up(db, info.id, settle=0) > 0
    return Filled(info, owner_token, admin_token, agent_token, visitor, secrets)


def tenant_tables() -> list[Any]:
    return [t for t in Base.metadata.sorted_tables if "tenant_id" in t.c]


async def counts(db: Database, tenant_id: int) -> dict[str, int]:
    """The tenant's rows in every table that has a tenant_id column (the channels' included)."""
    async with db.read() as session:
        return {t.name: int(await session.scalar(select(func.count()).select_from(t).where(
            t.c.tenant_id == tenant_id)) or 0) for t in tenant_tables()}


async def secrets_left(db: Database, settings: Settings, values: list[str]) -> list[str]:
    """Where any of the values is still stored (the channels keep their secrets encrypted)."""
    found: list[str] = []
    async with db.read() as session:
        for table in tenant_tables():
            for column in [c for c in table.c if c.name.endswith("_enc")]:
                for stored in (await session.execute(select(column).where(column.is_not(None)))).scalars():
                    try:
                        clear = secrets.decrypt(settings, stored)
                    except Exception:
                        continue
                    if clear in values:
                        found.append(f"{table.name}.{column.name}")
    return found


@pytest.fixture
async def http(server: Server) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession() as session:
        yield Http(server.url, session)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url)
    yield database
    await database.dispose()


# --- the owner's purge ----------------------------------------------------------------------------------
async def test_the_owners_purge_leaves_no_row_of_the_tenant_and_the_other_untouched(
        server: Server, settings: Settings, http: Http, db: Database, wechat_api: StandIn) -> None:
    a = await fill(http, await make_tenant(settings, server, name="Acme"), db, wechat_api)
    b = await fill(http, await make_tenant(settings, server, name="Globex"), db, wechat_api)
    # An Excel export of A's: a file beside the database, which the purge removes too.
    started = await http("POST", "/api/v1/exports", host=a.info.domain, token=a.owner_token,
                         json_body={"include_messages": True})
    assert started.status == 202, started

    async def export_done() -> bool:
        got = await http("GET", f"/api/v1/exports/{started.body['export']['id']}", host=a.info.domain,
                         token=a.owner_token)
        return bool(got.body["export"]["state"] == "done")

    await eventually(export_done)
    async with db.read() as session:
        [export_file] = (await session.execute(select(Export.file_name).where(Export.tenant_id == a.info.id))).scalars()
    export_path = Path(settings.export_dir) / export_file
    assert export_path.exists()
    a_before, b_before = await counts(db, a.info.id), await counts(db, b.info.id)
    empty = sorted(name for name, n in a_before.items() if n == 0)
    # Real use reached nearly every table; the few it did not are named, so a new table is noticed.
    assert set(empty) <= {"availability_months", "email_originals", "wechat_tokens", "wechat_uploads", "outbox"}, empty
    assert await secrets_left(db, settings, list(a.secrets.values())) != []
    live = AgentClient(server.url, host=a.info.domain)
    live.token = a.admin_token
    await live.connect()
    visitor = await http.ws("/webchat/ws", host=a.info.domain)
    await visitor.send_json({"type": "hello", "visitor_id": a.visitor_id})
    assert (await next_frame(visitor))["type"] == "welcome"

    path = "/api/v1/tenant/delete"
    assert_error(await http("POST", path, host=a.info.domain, token=a.admin_token, json_body={
        "confirm": a.info.domain}), 403, "owner_only")
    for wrong in (b.info.domain, "acme", a.info.domain + ".evil.example"):
        assert_error(await http("POST", path, host=a.info.domain, token=a.owner_token, json_body={"confirm": wrong}),
                     422, "confirmation_mismatch")
    async with db.read() as session:  # refused: nothing began
        assert (await session.get(Tenant, a.info.id)).status == "active"  # type: ignore[union-attr]
        assert (await session.execute(select(TenantPurge.id).where(
            TenantPurge.purged_tenant_id == a.info.id))).first() is None
    asked = await http("POST", path, host=a.info.domain, token=a.owner_token,
                       json_body={"confirm": a.info.domain.upper()})
    assert asked.status == 202, asked
    assert asked.body["purge"]["state"] == "requested" and asked.body["purge"]["reason"] == "owner", asked

    # From now on the tenant is refused everywhere, and its agents' sockets are closed.
    await closed_for_session(live, timeout=5.0)
    await live.close()
    assert_error(await http("GET", "/api/v1/me", host=a.info.domain, token=a.owner_token), 403, "tenant_purged")
    assert_error(await http("POST", "/webchat/messages", host=a.info.domain, json_body={
        "visitor_id": a.visitor_id, "client_id": "late", "text": "hello?"}), 403, "tenant_purged")
    # A visitor's socket opened before takes nothing more either.
    await visitor.send_json({"type": "message", "client_id": "late", "text": "still there?"})
    assert_error_frame(await next_frame(visitor, skip=lambda f: f.get("type") != "error"), "tenant_purged")
    await visitor.close()

    hub = server.app[HUB]
    steps: list[dict[str, Any]] = []
    assert await purge.run(hub, a.info.id, chunk=5, on_progress=steps.append) == "done"
    assert len(steps) > len(tenant_tables())  # small chunks: many short transactions

    after = await counts(db, a.info.id)
    assert not export_path.exists()
    assert {name: n for name, n in after.items() if n} == {}, after
    async with db.read() as session:
        tombstone = await session.get(Tenant, a.info.id)
        assert tombstone is not None and (tombstone.status, tombstone.name) == ("purged", "")
        assert a.info.domain not in tombstone.domain
        assert (await session.execute(select(TenantDomain).where(TenantDomain.domain == a.info.domain))).first() is None
        trail = list((await session.execute(select(AuditLog).where(
            AuditLog.target_type == "tenant", AuditLog.target_id == str(a.info.id)).order_by(AuditLog.id))).scalars())
        done = (await session.execute(select(TenantPurge).where(TenantPurge.purged_tenant_id == a.info.id))
                ).scalar_one()
    assert await secrets_left(db, settings, list(a.secrets.values())) == []
    assert await secrets_left(db, settings, list(b.secrets.values())) != []
    assert await counts(db, b.info.id) == b_before
    # The request and the completion are in the operator's trail, which outlives the tenant.
    actions = [(e.action, e.tenant_id, e.actor_type) for e in trail]
    assert ("tenant.purge.request", None, "agent") in actions and ("tenant.purge.done", None, "system") in actions
    request_row = next(e for e in trail if e.action == "tenant.purge.request")
    # Its running contract ended today with a refund; what is left is recorded for the operator.
    assert request_row.details["contract"]["state"] == "ended" and request_row.details["contract"]["balance"] > 0
    assert done.state == "done" and done.rows_deleted >= sum(a_before.values()) and done.finished_at is not None
    # The domain is unknown now, and free for another tenant.
    assert_error(await http("GET", "/api/v1/me", host=a.info.domain, token=a.owner_token), 404, "unknown_tenant")
    async with db.session() as session:
        again = await tenants.create(session, name="Acme again", domains=[a.info.domain])
    assert again.id != a.info.id
    await b.info.close()


# --- the operator's purge, stopped in the middle and resumed ---------------------------------------------
async def test_a_purge_stopped_in_the_middle_resumes_where_it_was(
        desk: Desk, settings: Settings, db: Database, wechat_api: StandIn) -> None:  # noqa: F811
    server = desk.server
    a = await fill(desk.http, await make_tenant(settings, server, name="Acme"), db, wechat_api)
    b = await make_tenant(settings, server, name="Bystander")
    await b.add_agent(role="admin")
    b_before = await counts(db, b.id)
    path = f"/operator/v1/tenants/{a.info.id}/purge"
    assert_error(await desk.call("POST", path, role="support", body={"confirm": a.info.domain}), 403,
                 "operator_role")
    assert_error(await desk.call("POST", path, body={"confirm": "someone-else.example"}), 422,
                 "confirmation_mismatch")
    asked = await desk.call("POST", path, body={"confirm": a.info.domain})
    assert asked.status == 202 and asked.body["purge"]["reason"] == "operator", asked
    # Asked again while it runs: the same purge.
    again = await desk.call("POST", path, body={"confirm": a.info.domain})
    assert again.status == 202 and again.body["purge"]["requested_at"] == asked.body["purge"]["requested_at"]
    got = (await desk.call("GET", f"/operator/v1/tenants/{a.info.id}")).body["tenant"]
    assert got["status"] == "purging", got
    assert_error(await desk.call("POST", f"/operator/v1/tenants/{a.info.id}/resume", role="support"), 409,
                 "tenant_purged")

    hub = server.app[HUB]
    now = datetime.now(UTC)
    # The first process dies after a few chunks (its lease is left as a crash leaves it).
    assert await purge.run(hub, a.info.id, chunk=3, owner="first", clock=lambda: now, max_chunks=6) == "stopped"
    progress = (await desk.call("GET", path, role="support")).body["purge"]
    assert progress["state"] == "running" and progress["chunks"] == 6 and progress["rows_deleted"] > 0, progress
    assert progress["table"] is not None
    left = sum((await counts(db, a.info.id)).values())
    assert left > 0
    # Another process finds it held while the lease runs; once it ran out, it takes over.
    assert await purge.run(hub, a.info.id, chunk=3, owner="second", clock=lambda: now) == "busy"
    later = now + timedelta(seconds=purge.LEASE_SECONDS + 1)
    assert await purge.unfinished(hub, later) == [a.info.id] or a.info.id in await purge.unfinished(hub, later)
    assert await purge.run(hub, a.info.id, chunk=50, owner="second", clock=lambda: later) == "done"
    finished = (await desk.call("GET", path)).body["purge"]
    assert finished["state"] == "done" and finished["chunks"] > 6, finished
    # Resuming deleted each row once: the count is every row the tenant had.
    assert finished["rows_deleted"] == progress["rows_deleted"] + left
    assert {n: c for n, c in (await counts(db, a.info.id)).items() if c} == {}
    assert await counts(db, b.id) == b_before
    trail = (await desk.call("GET", f"/operator/v1/audit?tenant_id={a.info.id}&limit=100")).body["entries"]
    assert {"tenant.purge.request", "tenant.purge.done"} <= {e["action"] for e in trail}, trail
    # A purge that is done stays done.
    assert await purge.run(hub, a.info.id) == "done"


async def test_a_purge_stopped_with_its_process_is_handed_on_at_once(
        server: Server, settings: Settings, db: Database) -> None:
    hub = server.app[HUB]
    t = await make_tenant(settings, server)
    async with db.session() as session:
        session.add_all([Customer(tenant_id=t.id, name=f"c{i}") for i in range(20)])
        await purge.request(session, t.id, confirm=t.domain, actor=tenants.CLI, reason="operator",
                            now=datetime.now(UTC))
    # A serve shutting down cancels its purge between two chunks (pause: room for the cancel).
    task = asyncio.create_task(purge.run(hub, t.id, chunk=1, owner="stopping", pause=0.05))

    async def begun() -> bool:
        return int((await purge.progress(hub, t.id))["chunks"]) >= 2
    await eventually(begun)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # It let the lease go: the next process takes it on without waiting for the lease to run out.
    assert t.id in await purge.unfinished(hub, datetime.now(UTC))
    assert await purge.run(hub, t.id, owner="next") == "done"
    assert sum((await counts(db, t.id)).values()) == 0


# --- retention: 7 days after the term ran out unpaid --------------------------------------------------
def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


async def lapsed_tenant(server: Server, db: Database) -> tuple[int, datetime]:
    """A billed tenant that paid exactly one year for its owner and did not renew: suspended by the
    billing round on the day its term ended. That day's midnight."""
    start = datetime.now(UTC).date()
    domain = f"r{uuid.uuid4().hex[:10]}.example.com"
    async with db.session() as session:
        tenant = await tenants.create(session, name="Lapsing", domains=[domain], now=datetime.now(UTC),
                                      terms=tenants.Terms(PRICE, "CNY", start), top_up=PRICE,
                                      owner=tenants.Owner(f"boss@{domain}", "Boss", PASSWORD))
        tid = tenant.id
        contract = await billing.contract_of(session, tid)
        assert contract is not None
        term_end = midnight(contract.term_end)
    hub = server.app[HUB]
    async with db.session() as session:
        renewal = await billing.renew(session, tid, now=term_end + timedelta(hours=1))
    assert renewal.outcome == "suspended", renewal
    await tenants.announce_changed(hub, tid)
    return tid, term_end


async def test_a_tenant_left_unpaid_is_purged_seven_days_after_its_term_unless_it_renews(
        server: Server, db: Database) -> None:
    hub = server.app[HUB]
    lapsing, term_end = await lapsed_tenant(server, db)
    renewing, _ = await lapsed_tenant(server, db)
    ids = [lapsing, renewing]
    day = timedelta(days=1)
    # Day 6: still kept, both.
    assert await purge.retention_round(hub, now=term_end + 6 * day + timedelta(hours=23), tenant_ids=ids) == []
    # The second pays on day 6; the billing round renews it and resumes it.
    async with db.session() as session:
        await billing.top_up(session, renewing, PRICE, now=term_end + 6 * day, actor=billing.Actor("operator", 1))
        assert (await billing.renew(session, renewing, now=term_end + 6 * day)).outcome == "renewed"
    # Day 7: the unpaid one goes, the renewed one stays.
    assert await purge.retention_round(hub, now=term_end + 7 * day, tenant_ids=ids) == [lapsing]
    async with db.read() as session:
        assert (await session.get(Tenant, lapsing)).status == "purging"  # type: ignore[union-attr]
        assert (await session.get(Tenant, renewing)).status == "active"  # type: ignore[union-attr]
    assert await purge.run(hub, lapsing, clock=lambda: term_end + 7 * day) == "done"
    assert sum((await counts(db, lapsing)).values()) == 0
    progress = await purge.progress(hub, lapsing)
    assert progress["reason"] == "retention" and progress["requested_by"] == {"type": "system", "id": None}
    # Much later the renewed one is still there: it is active.
    assert await purge.retention_round(hub, now=term_end + 60 * day, tenant_ids=ids) == []
    assert sum((await counts(db, renewing)).values()) > 0


async def test_an_ended_tenant_without_a_contract_is_purged_seven_days_after_it_ended(
        server: Server, settings: Settings, db: Database) -> None:
    hub = server.app[HUB]
    t = await make_tenant(settings, server)
    ended_at = datetime.now(UTC)
    async with db.session() as session:
        await tenants.end(session, t.id, now=ended_at, actor=tenants.CLI, ip=None)
    assert await purge.retention_round(hub, now=ended_at + timedelta(days=6), tenant_ids=[t.id]) == []
    assert await purge.retention_round(hub, now=ended_at + timedelta(days=7), tenant_ids=[t.id]) == [t.id]
    assert await purge.run(hub, t.id) == "done"


# --- the command line, and the serve's background task ---------------------------------------------------
def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHANNELHUB_DATABASE_URL": settings.database_url, "CHANNELHUB_LOG_LEVEL": "WARNING"}
    env.pop("CHANNELHUB_REDIS_URL", None)
    return subprocess.run([sys.executable, "-m", "channelhub.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


async def test_channelhub_purge_runs_one_to_its_end(server: Server, settings: Settings, http: Http,
                                                    db: Database, wechat_api: StandIn) -> None:
    a = await fill(http, await make_tenant(settings, server), db, wechat_api)
    refused = await asyncio.to_thread(cli, settings, "purge", "--tenant", str(a.info.id), "--confirm", "wrong.example")
    assert refused.returncode == 1 and "confirmation_mismatch" in refused.stderr, refused
    done = await asyncio.to_thread(cli, settings, "purge", "--tenant", str(a.info.id), "--confirm", a.info.domain,
                                   "--chunk", "10")
    assert done.returncode == 0, done.stderr
    assert f"purge of tenant {a.info.id}: done" in done.stdout
    assert "purge: messages:" in done.stderr  # progress, table by table
    assert sum((await counts(db, a.info.id)).values()) == 0


async def test_serve_purges_in_the_background_what_retention_and_requests_ask(
        settings: Settings, fresh: Databases) -> None:
    # A database of its own: a serve running retention would purge other tests' tenants.
    own_database = await fresh("purge", migrated=True)
    own = replace(settings, database_url=own_database, purge_interval=0.2, purge_chunk=4)
    db = Database(own_database)
    srv = await start_server(own)
    try:
        now = datetime.now(UTC)
        async with db.session() as session:
            lapsed_domain = f"l{uuid.uuid4().hex[:8]}.example.com"
            lapsed = await tenants.create(session, name="Lapsed", domains=[lapsed_domain], now=now, top_up=PRICE,
                                          terms=tenants.Terms(PRICE, "CNY", now.date()),
                                          owner=tenants.Owner(f"boss@{lapsed_domain}", "Boss", PASSWORD))
            asked = await tenants.create(session, name="Asked", domains=[f"a{uuid.uuid4().hex[:8]}.example.com"],
                                         now=now)
            kept = await tenants.create(session, name="Kept", domains=[f"k{uuid.uuid4().hex[:8]}.example.com"], now=now)
            ids = (lapsed.id, asked.id, kept.id)
            domain = asked.domain
        async with db.session() as session:
            # Its term ended 8 days ago, unpaid: as the billing round left it then.
            await session.execute(update(BillingContract).where(BillingContract.tenant_id == ids[0]).values(
                term_start=(now - timedelta(days=373)).date(), term_end=(now - timedelta(days=8)).date(),
                lapsed_at=now - timedelta(days=8)))
            await session.execute(update(Tenant).where(Tenant.id == ids[0]).values(
                status="suspended", suspended_by="billing", status_changed_at=now - timedelta(days=8)))
        async with db.session() as session:
            for tid in ids:
                session.add(Customer(tenant_id=tid, name="Someone"))
            await purge.request(session, ids[1], confirm=domain, actor=billing.Actor("operator", 1),
                                reason="operator", now=now)

        async def gone() -> bool:
            async with db.read() as session:
                statuses = (await session.execute(select(Tenant.status).where(Tenant.id.in_(ids[:2])))).scalars()
                return set(statuses) == {"purged"}
        await eventually(gone, timeout=30.0)
        async with db.read() as session:
            assert (await session.get(Tenant, ids[2])).status == "active"  # type: ignore[union-attr]
            reasons = {t: r for t, r in await session.execute(select(TenantPurge.purged_tenant_id, TenantPurge.reason))}
        assert reasons == {ids[0]: "retention", ids[1]: "operator"}
        assert sum((await counts(db, ids[2])).values()) > 0
    finally:
        await srv.runner.cleanup()
        await db.dispose()


# --- one customer's erasure ---------------------------------------------------------------------------
async def test_one_customers_erasure_leaves_the_tenants_other_customers(
        server: Server, settings: Settings, http: Http, db: Database, wechat_api: StandIn) -> None:
    a = await fill(http, await make_tenant(settings, server), db, wechat_api)
    info = a.info
    # A second visitor, whose data must stay.
    other = await http("POST", "/webchat/messages", host=info.domain, json_body={
        "client_id": "o1", "text": "Where is my order?", "name": "Olga"})
    assert other.status == 201, other
    async with db.read(info.id) as session:
        milton = (await session.execute(select(CustomerIdentity.customer_id).where(
            CustomerIdentity.external_id == a.visitor_id))).scalar_one()
        olga = (await session.execute(select(CustomerIdentity.customer_id).where(
            CustomerIdentity.external_id == other.body["visitor_id"]))).scalar_one()
        milton_tickets = list((await session.execute(select(Ticket.id).where(Ticket.customer_id == milton))).scalars())
        files = list((await session.execute(select(Message.attachments).where(
            Message.ticket_id.in_(milton_tickets)))).scalars())
    attachment_ids = [f["id"] for fs in files for f in fs if "id" in f]
    assert len(attachment_ids) == 2  # the visitor's upload and the agent's label
    # What the XMPP channel would keep of a customer of its own.
    async with db.session(info.id) as session:
        account = (await session.execute(select(XmppAccount.id).where(XmppAccount.tenant_id == info.id))).scalar_one()
        jabber = Customer(tenant_id=info.id, name="Jabber")
        session.add(jabber)
        await session.flush()
        jid = f"jabber-{uuid.uuid4().hex[:6]}@xmpp.example.org"
        session.add(CustomerIdentity(tenant_id=info.id, customer_id=jabber.id, channel="xmpp", external_id=jid))
        session.add(XmppPeer(tenant_id=info.id, account_id=account, jid=jid, local_jid=f"help@xmpp.{info.domain}"))
        jabber_id = jabber.id
    olga_before = await customer_rows(db, info.id, olga)
    others_before = await counts(db, info.id)

    path = f"/api/v1/customers/{milton}/erase"
    assert_error(await http("POST", path, host=info.domain, token=a.agent_token, json_body={"confirm": str(milton)}),
                 403, "admin_only")
    assert_error(await http("POST", path, host=info.domain, token=a.admin_token, json_body={"confirm": str(olga)}),
                 422, "confirmation_mismatch")
    assert await counts(db, info.id) == others_before
    erased = await http("POST", path, host=info.domain, token=a.admin_token, json_body={"confirm": str(milton)})
    assert erased.status == 200, erased
    deleted = erased.body["deleted"]
    assert deleted["customers"] == 1 and deleted["tickets"] == len(milton_tickets) and deleted["attachments"] == 2
    assert "webchat_uploads" in deleted, deleted  # the channel's table was walked

    assert_error(await http("GET", f"/api/v1/customers/{milton}", host=info.domain, token=a.admin_token), 404,
                 "customer_not_found")
    async with db.read(info.id) as session:
        assert (await session.execute(select(Ticket.id).where(Ticket.id.in_(milton_tickets)))).first() is None
        assert (await session.execute(select(Message.id).where(Message.ticket_id.in_(milton_tickets)))).first() is None
        assert (await session.execute(select(StoredAttachment.id).where(
            StoredAttachment.id.in_(attachment_ids)))).first() is None
        assert (await session.execute(select(CustomerIdentity.id).where(
            CustomerIdentity.external_id == a.visitor_id))).first() is None
        assert (await session.execute(select(WebchatUpload.attachment_id).where(
            WebchatUpload.visitor_id == a.visitor_id))).first() is None
        entry = (await session.execute(select(AuditLog).where(AuditLog.action == "customer.erase"))).scalar_one()
    assert "Milton" not in str(entry.details) and "milton@" not in str(entry.details) and entry.actor_type == "agent"
    assert await customer_rows(db, info.id, olga) == olga_before
    history = await http("GET", f"/webchat/history?visitor_id={a.visitor_id}", host=info.domain)
    assert history.status == 200 and history.body["messages"] == [], history

    # An XMPP customer: what the channel kept of their address goes with them.
    assert (await http("POST", f"/api/v1/customers/{jabber_id}/erase", host=info.domain, token=a.owner_token,
                       json_body={"confirm": str(jabber_id)})).body["deleted"]["xmpp_peers"] == 1
    async with db.read(info.id) as session:
        assert (await session.execute(select(XmppPeer.id).where(XmppPeer.jid == jid))).first() is None
    # The agents' loads are what their open tickets say.
    async with db.read(info.id) as session:
        for agent in (await session.execute(select(Agent).where(Agent.tenant_id == info.id))).scalars():
            open_ = await session.scalar(select(func.count()).select_from(Ticket).where(
                Ticket.assignee_id == agent.id, Ticket.status.in_(("new", "open", "pending"))))
            assert agent.load == open_, (agent.id, agent.load, open_)


async def customer_rows(db: Database, tenant_id: int, customer_id: int) -> dict[str, Any]:
    async with db.read(tenant_id) as session:
        customer = await session.get(Customer, customer_id)
        assert customer is not None
        tickets = [(t, st) for t, st in await session.execute(select(Ticket.id, Ticket.status).where(
            Ticket.customer_id == customer_id).order_by(Ticket.id))]
        messages = [(m, b) for m, b in await session.execute(select(Message.id, Message.body).where(
            Message.ticket_id.in_([t for t, _ in tickets])).order_by(Message.id))]
        identities = list((await session.execute(select(CustomerIdentity.external_id).where(
            CustomerIdentity.customer_id == customer_id))).scalars())
    return {"name": customer.name, "tickets": tickets, "messages": messages, "identities": identities}

