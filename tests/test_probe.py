"""The prober (#15): `channelhub probe` checks each active tenant's service (its domain, a web chat
message in and back, the agent socket) and records what it saw; probe traffic leaves nothing
behind; its mark cannot be forged; and an outage of a real `channelhub serve` shows up in the
probe results with its length."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select

from channelhub.probe import Prober, Target
from core import availability, probes, tenants
from core.billing import Actor
from core.config import Settings
from core.db import Database
from core.models import (
    Customer,
    CustomerIdentity,
    Event,
    InboxItem,
    Message,
    OutboxItem,
    ProbeResult,
    SearchDoc,
    Ticket,
    utcnow,
)
from tests.conftest import TenantInfo, eventually, free_port, make_tenant, start_server
from tests.processes import HubProcess, child_env, spawn, spawn_serve, stop

INTERVAL = 0.5


async def _counts(settings: Settings, tenant_id: int) -> dict[str, int]:
    db = Database(settings.database_url)
    try:
        async with db.read() as session:
            return {model.__tablename__: int((await session.execute(
                select(func.count()).select_from(model).where(model.tenant_id == tenant_id))).scalar_one())
                for model in (Customer, CustomerIdentity, Ticket, Message, SearchDoc, Event, InboxItem, OutboxItem)}
    finally:
        await db.dispose()


async def _results(settings: Settings, tenant_id: int) -> list[Any]:
    db = Database(settings.database_url)
    try:
        async with db.read() as session:
            return list((await session.execute(
                select(ProbeResult.prober, ProbeResult.at, ProbeResult.ok, ProbeResult.cause)
                .where(ProbeResult.tenant_id == tenant_id).order_by(ProbeResult.at, ProbeResult.id))).all())
    finally:
        await db.dispose()


async def _hello_answer(url: str, domain: str, path: str, hello: dict[str, Any]) -> dict[str, Any]:
    """The hub's answer to ``hello`` on the socket at ``path``, and that the socket then closed."""
    ws_url = "ws" + url[len("http"):] + path
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, headers={"Host": domain}) as ws:
        await ws.send_json(hello)
        answer = await ws.receive_json(timeout=10)
        if answer.get("type") == "error" or answer.get("type") == "probe":
            closing = await ws.receive(timeout=10)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closing
        return dict(answer)


def _prober(settings: Settings, db: Database, url: str, domain: str, name: str = "test-prober") -> Prober:
    return Prober(replace(settings, probe_interval=INTERVAL), db, name=name, base_url=url, domains=[domain])


# --- probe traffic is invisible -------------------------------------------------------------------
async def test_probes_pass_and_leave_no_ticket_customer_event_or_search_doc(settings: Settings,
                                                                          tenant: TenantInfo) -> None:
    admin = await tenant.add_agent(role="admin")
    client = await tenant.signed_in(admin)  # online: a probe must not look like a visitor to it either
    before = await _counts(settings, tenant.id)  # the admin's presence is an event already
    db = Database(settings.database_url)
    try:
        prober = _prober(settings, db, tenant.server.url, tenant.domain)
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                done = await prober.round(http)
                assert [(p.tenant_id, p.ok, p.cause) for p in done] == [(tenant.id, True, None)]
    finally:
        await db.dispose()
    rows = await _results(settings, tenant.id)
    assert [(r.prober, r.ok) for r in rows] == [("test-prober", True)] * 3

    # Nothing of the probes anywhere: no customer, identity, ticket, message, search document,
    # event, inbox or outbox row; the admin's API shows nothing and their socket heard nothing.
    assert await _counts(settings, tenant.id) == before
    assert before == {**dict.fromkeys(before, 0), "events": before["events"]}
    assert (await client.api("GET", "/api/v1/tickets"))["tickets"] == []
    assert (await client.api("GET", "/api/v1/search?q=probe"))["results"] == []
    assert [e["kind"] for e in client.events if e["kind"] != "agent.presence"] == []

    # A customer right after is the tenant's first: ticket and customer number one.
    visitor = tenant.visitor()
    await visitor.connect()
    client_id = await visitor.send("hello after the probes")
    await visitor.wait_frame(lambda f: f.get("type") == "ack" and f["client_id"] == client_id)
    counts = await _counts(settings, tenant.id)
    assert (counts["customers"], counts["tickets"], counts["messages"]) == (1, 1, 1)


async def test_a_probe_visitor_is_not_counted_and_its_typing_goes_nowhere(settings: Settings,
                                                                        tenant: TenantInfo) -> None:
    """The probe's socket takes only what a probe needs: no history, no typing, nothing stored."""
    at = utcnow()
    url = tenant.server.url
    ws_url = "ws" + url[len("http"):] + "/webchat/ws"
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, headers={"Host": tenant.domain}) as ws:
        await ws.send_json({"type": "hello", "probe": probes.mark(str(settings.probe_secret), tenant.id, at)})
        welcome = await ws.receive_json(timeout=10)
        assert welcome["type"] == "welcome" and welcome["probe"] is True and welcome["messages"] == []
        await ws.send_json({"type": "typing", "state": "composing"})
        refused = await ws.receive_json(timeout=10)
        assert (refused["type"], refused["code"]) == ("error", "unknown_type")
        # Attachments are never taken from a probe (nothing of it may be kept).
        await ws.send_json({"type": "message", "client_id": "p-1", "text": "x", "attachments": [1]})
        refused = await ws.receive_json(timeout=10)
        assert (refused["type"], refused["code"]) == ("error", "invalid_attachments")
        await ws.send_json({"type": "message", "client_id": "p-2", "text": "probe text"})
        frames = [await ws.receive_json(timeout=10), await ws.receive_json(timeout=10)]
        assert sorted(f["type"] for f in frames) == ["ack", "echo"]
        assert all(f["message"]["text"] == "probe text" and f["message"]["id"] == 0 for f in frames)
    assert (await _counts(settings, tenant.id))["customers"] == 0


# --- the mark ------------------------------------------------------------------------------------
async def test_forged_expired_foreign_and_malformed_probe_marks_are_refused(settings: Settings, tenant: TenantInfo,
                                                                           other_tenant: TenantInfo) -> None:
    secret = str(settings.probe_secret)
    now = utcnow()
    stale = now - timedelta(seconds=probes.MARK_TTL + 60)
    bad_marks: list[tuple[Any, str]] = [
        (probes.mark("not-the-secret", tenant.id, now), "invalid_probe"),  # forged
        (probes.mark(secret, tenant.id, stale), "invalid_probe"),  # expired
        (probes.mark(secret, tenant.id, now + timedelta(seconds=probes.MARK_TTL + 60)), "invalid_probe"),
        (probes.mark(secret, other_tenant.id, now), "invalid_probe"),  # another tenant's
        ({**probes.mark(secret, tenant.id, now), "at": int(now.timestamp()) + 1}, "invalid_probe"),  # tampered
        (True, "invalid_probe"),  # a visitor who says they are a probe
        ({"at": "soon", "signature": "x"}, "invalid_probe"),
        ({"at": int(now.timestamp())}, "invalid_probe"),
    ]
    for mark, code in bad_marks:
        for path in ("/webchat/ws", "/agent/ws"):
            answer = await _hello_answer(tenant.server.url, tenant.domain, path, {"type": "hello", "probe": mark})
            assert (answer["type"], answer["code"]) == ("error", code), (path, mark, answer)
    # The real mark is taken by both sockets.
    good = probes.mark(secret, tenant.id, now)
    assert await _hello_answer(tenant.server.url, tenant.domain, "/agent/ws",
                               {"type": "hello", "probe": good}) == {"type": "probe", "ok": True}
    # The HTTP fallback takes no probes at all: the field is unknown there.
    async with aiohttp.ClientSession() as http:
        async with http.post(tenant.server.url + "/webchat/messages", headers={"Host": tenant.domain},
                             json={"client_id": "c1", "text": "hi", "probe": good}) as resp:
            assert resp.status == 422
            assert (await resp.json())["error"]["code"] == "validation_error"
    # An agent hello with neither token nor mark is refused as before.
    answer = await _hello_answer(tenant.server.url, tenant.domain, "/agent/ws", {"type": "hello"})
    assert answer["code"] == "validation_error"
    assert await _counts(settings, tenant.id) == dict.fromkeys(
        ("customers", "customer_identities", "tickets", "messages", "search_docs", "events", "inbox", "outbox"), 0)


async def test_a_hub_without_the_secret_refuses_probes_and_the_prober_will_not_start(
        settings: Settings, tenant: TenantInfo, tmp_path: Path) -> None:
    unsecured = await start_server(replace(settings, probe_secret=None))
    try:
        mark = probes.mark(str(settings.probe_secret), tenant.id, utcnow())
        for path in ("/webchat/ws", "/agent/ws"):
            answer = await _hello_answer(unsecured.url, tenant.domain, path, {"type": "hello", "probe": mark})
            assert (answer["type"], answer["code"]) == ("error", "probes_disabled"), answer
            assert "CHANNELHUB_PROBE_SECRET" in answer["message"]
    finally:
        await unsecured.runner.cleanup()
    env = child_env(replace(settings, probe_secret=None), "unused", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "channelhub.cli", "probe", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 2
    assert b"CHANNELHUB_PROBE_SECRET" in err


# --- what is probed ------------------------------------------------------------------------------
async def test_only_active_tenants_are_probed_and_a_failed_check_is_named(settings: Settings,
                                                                        tenant: TenantInfo) -> None:
    db = Database(settings.database_url)
    suspended = await make_tenant(settings, tenant.server, name="Suspended")
    try:
        async with db.session() as session:
            await tenants.suspend(session, suspended.id, now=utcnow(), actor=Actor("operator"), ip=None)
        prober = Prober(settings, db, name="t", base_url=tenant.server.url, domains=[tenant.domain, suspended.domain])
        assert await prober.load_targets() == [Target(tenant.id, tenant.domain)]
        async with aiohttp.ClientSession() as http:
            # A domain no tenant is served on answers 404: the first check fails, named.
            probe = await prober.check(http, Target(tenant.id, f"nobody-{uuid.uuid4().hex[:8]}.example.org"))
            assert (probe.ok, probe.cause) == (False, "domain: HTTP 404")
            # A port nothing listens on.
            away = Prober(settings, db, name="t", base_url=f"http://127.0.0.1:{free_port()}")
            probe = await away.check(http, Target(tenant.id, tenant.domain))
            assert (probe.ok, probe.cause) == (False, "domain: connection refused")
            # The hub refuses the mark (another secret): the web chat check names the refusal.
            wrong = Prober(replace(settings, probe_secret="another"), db, name="t", base_url=tenant.server.url)
            probe = await wrong.check(http, Target(tenant.id, tenant.domain))
            assert not probe.ok and probe.cause is not None
            assert probe.cause.startswith("webchat: refused: invalid_probe"), probe.cause
    finally:
        await db.dispose()


# --- THE outage test: a real `channelhub serve`, stopped and started again ----------------------------
async def _spawn_prober(settings: Settings, workdir: Path, name: str, url: str, domain: str) -> HubProcess:
    env = child_env(settings, "unused", None)
    return await spawn(name, ["probe", "--name", name, "--base-url", url, "--interval", str(INTERVAL),
                              "--domain", domain], env, workdir)


def _outages(rows: list[Any]) -> list[tuple[datetime, datetime, list[str]]]:
    """Runs of failed probes, each as (first failure, first success after it, the causes)."""
    runs: list[tuple[datetime, datetime, list[str]]] = []
    start: datetime | None = None
    causes: list[str] = []
    for r in rows:
        if not r.ok:
            if start is None:
                start, causes = r.at, []
            causes.append(r.cause)
        elif start is not None:
            runs.append((start, r.at, causes))
            start = None
    assert start is None, "the prober still saw the hub down at the end"
    return runs


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


async def test_an_outage_of_a_real_serve_appears_with_its_length_to_each_of_two_probers(
        settings: Settings, tenant: TenantInfo, tmp_path: Path) -> None:
    port = free_port()
    namespace = f"{settings.queue_namespace}-{uuid.uuid4().hex[:8]}"
    hub = await spawn_serve(settings, tmp_path, "serve-1", port=port, namespace=namespace)
    names = ("prober-a", "prober-b")
    probers = [await _spawn_prober(settings, tmp_path, n, hub.url, tenant.domain) for n in names]
    try:
        async def ok_after(since: datetime, count: int) -> bool:
            rows = await _results(settings, tenant.id)
            for n in names:
                seen = [r for r in rows if r.prober == n and r.ok and _aware(r.at) > since]
                if len(seen) < count:
                    return False
            return True

        started = utcnow()
        await eventually(lambda: ok_after(started - timedelta(minutes=1), 3), timeout=60, interval=0.2)

        # The hub dies and is down for a while; then it comes back on the same port and database.
        down_at = utcnow()
        hub.proc.send_signal(signal.SIGKILL)
        await hub.proc.wait()
        await stop(hub)
        await asyncio.sleep(4)
        hub = await spawn_serve(settings, tmp_path, "serve-2", port=port, namespace=namespace)
        up_at = utcnow()
        await eventually(lambda: ok_after(up_at, 3), timeout=60, interval=0.2)
    finally:
        for p in probers:
            await stop(p)
        await stop(hub)
    for p in probers:  # a prober stops cleanly on SIGTERM
        assert p.proc.returncode == 0, p.output()

    rows = await _results(settings, tenant.id)
    expected = (up_at - down_at).total_seconds()
    for n in names:
        mine = [r for r in rows if r.prober == n]
        outages = _outages(mine)
        assert len(outages) == 1, (n, outages)
        first_failure, back, causes = outages[0]
        span = (_aware(back) - _aware(first_failure)).total_seconds()
        # The probes' cadence bounds the error at each end: within about two intervals.
        assert abs(span - expected) <= 2 * INTERVAL + 0.25, (n, span, expected, causes)
        assert all(c.split(":")[0] in ("domain", "webchat", "agent socket") for c in causes), causes
        assert "domain: connection refused" in causes, causes
    # Two probers, two names, each with its own record of the same tenant.
    assert {r.prober for r in rows} == set(names)
    # And the availability report, which merges the probers, shows that one outage with its length.
    db = Database(settings.database_url)
    try:
        async with db.read() as session:
            report = await availability.month_report(
                session, tenant.id, availability.parse_month(down_at.strftime("%Y-%m"), utcnow()),
                now=utcnow() + timedelta(seconds=2), interval=timedelta(seconds=INTERVAL))
    finally:
        await db.dispose()
    [incident] = report["incidents"]
    assert abs(incident["minutes"] * 60 - expected) <= 2 * INTERVAL + 0.25, (incident, expected)
    assert incident["cause"].split(":")[0] in ("domain", "webchat", "agent socket"), incident
    assert not incident["counted"]  # seconds, not the 5 minutes that count


async def test_a_prober_outlives_its_database(settings: Settings, tenant: TenantInfo, tmp_path: Path) -> None:
    """A database the prober cannot reach: the round probes the tenants it knew, keeps the results,
    and writes them once it can."""
    good = Database(settings.database_url)
    gone = Database(f"sqlite+aiosqlite:///{tmp_path / 'no-such-folder' / 'hub.db'}")
    try:
        prober = _prober(settings, good, tenant.server.url, tenant.domain, name="outliving")
        async with aiohttp.ClientSession() as http:
            await prober.round(http)  # knows the tenant now
            prober.db = gone
            lost = await prober.round(http)  # neither reads nor writes: no exception
            assert [p.ok for p in lost] == [True]
            assert len(prober.pending) == 1
            prober.db = good
            await prober.round(http)
        assert not prober.pending
        rows = await _results(settings, tenant.id)
        assert [(r.prober, r.ok) for r in rows] == [("outliving", True)] * 3
    finally:
        await good.dispose()
        await gone.dispose()
