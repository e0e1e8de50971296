"""Test fixtures: a real database (SQLite by default; PostgreSQL + Redis when
``CHANNELHUB_TEST_DATABASE_URL`` / ``CHANNELHUB_TEST_REDIS_URL`` are set), migrated with alembic,
and a real hub server on a loopback port. Each test makes its own tenants, which isolates it."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy.engine import make_url

from admin_api.client import AgentClient, VisitorClient
from channelhub.app import create_app, limits
from connectors.email.settings import EmailSettings
from connectors.registry import CHANNELS
from connectors.wechat.settings import WeChatSettings
from connectors.xmpp.settings import XmppSettings
from core import seats, tenants
from core.config import Settings
from core.db import Database, create_pg_database, drop_pg_database, migrate
from tests.servers import free_port
from tests.wechat.platform import StandIn
from web import serving
from web.channels import ChannelSpec

PG_URL = os.environ.get("CHANNELHUB_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("CHANNELHUB_TEST_REDIS_URL")
PASSWORD = "correct horse battery"
OPERATOR_HOST = "operator.test"


# The loopback stand-in for the WeChat APIs (tests/wechat/platform.py) listens here; every hub the
# tests build (the server's, those of the multi-process tests) is configured with it.
WECHAT_API_PORT = free_port()


async def new_database(name: str, folder: Path, *, migrated: bool = False) -> str:
    """A new, empty database of its own (an SQLite file in ``folder``, or a PostgreSQL database
    named after the test server's and ``name``), migrated to the head if asked; returns its URL.
    Drop a PostgreSQL one with ``drop_pg_database`` (the ``fresh`` fixture does)."""
    if PG_URL:
        url = await create_pg_database(PG_URL, f"{make_url(PG_URL).database or 'channelhub'}_{name}_{os.getpid()}")
    else:
        url = f"sqlite+aiosqlite:///{folder / name}.db"
    if migrated:
        db = Database(url)
        await migrate(db)
        await db.dispose()
    return url


Databases = Callable[..., Awaitable[str]]


@pytest.fixture
async def fresh(tmp_path: Path) -> AsyncIterator[Databases]:
    """Makes new databases for one test (``await fresh(name, migrated=False)``: see
    :func:`new_database`), for a process of the test's own that must not see the shared server's
    tenants (a serve running retention, or a backup's restore), and drops them after."""
    made: list[str] = []

    async def make(name: str, *, migrated: bool = False) -> str:
        url = await new_database(name, tmp_path, migrated=migrated)
        made.append(url)
        return url

    yield make
    if PG_URL:
        for url in made:
            await drop_pg_database(url)


@pytest.fixture(scope="session")
async def settings(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Settings]:
    url = await new_database("hub", tmp_path_factory.mktemp("db"), migrated=True)
    s = Settings(
        database_url=url,
        redis_url=REDIS_URL,
        embedded_worker=True,
        queue_namespace=f"chtest{os.getpid()}",
        sweeper_interval=2.0,
        # The tests' server shares its event loop with the tests' clients, whose work (hashing,
        # big files) can make it run late: only the load-shedding tests shed load.
        busy_after=5.0,
        # Small enough to test the limit quickly, still above max_request_bytes and WeChat's voice limit.
        max_attachment_bytes=3 * 1024 * 1024,
        secret_key="channelhub-test-secret-key",
        # Probe traffic (core.probes, tests/test_probe.py) is taken by every test server.
        probe_secret="channelhub-test-probe-secret",
        # The operator's API (tests/test_operator.py) is served on this host of every test server.
        operator_host=OPERATOR_HOST,
        # No background purges or retention in the shared server: tests/test_purge.py runs them
        # itself (retention would delete other tests' tenants whose clocks moved far ahead).
        purge_interval=0,
        # Nor background rounds of the reports' rollups: a tenant's rows would change under the tests
        # that compare them (test_cross_tenant); a report catches its tenant's rollups up itself.
        reports_interval=0,
        # Nor SLA sweeps: the tests sweep when they mean to (core.sla.sweep), with their own clocks;
        # tests/test_sla.py has a server of its own that sweeps by itself.
        sla_interval=0,
        # Excel exports (core.exports) land in the run's own folder, not the checkout's ./var.
        export_dir=str(tmp_path_factory.mktemp("exports")),
        channels={"wechat": WeChatSettings(api_base=f"http://127.0.0.1:{WECHAT_API_PORT}/oa",
                                           wecom_api_base=f"http://127.0.0.1:{WECHAT_API_PORT}/qy")},
    )
    yield s
    if PG_URL:
        await drop_pg_database(url)


@dataclass
class Server:
    url: str
    port: int
    settings: Settings
    runner: serving.GuardedRunner
    app: web.Application
    # The server's own SMTP receiver (the email channel), on loopback.
    smtp_port: int = 0


async def start_server(settings: Settings, channels: Sequence[ChannelSpec] = CHANNELS, *,
                       imap: bool = False, xmpp: bool = False, bind: str = "127.0.0.1") -> Server:
    """A hub server on loopback with its own SMTP receiver port. It follows IMAP mailboxes only with
    ``imap``: every hub reads every tenant's mailboxes, and the IMAP tests' own followers would
    otherwise compete for their leases."""
    port, smtp_port = free_port(), free_port()
    email = settings.channels.get("email") or EmailSettings()
    assert isinstance(email, EmailSettings)
    email = replace(email, smtp_host="127.0.0.1", smtp_port=smtp_port, imap_follow=imap)
    # XMPP accounts are connected only with ``xmpp``, for the same reason (their leases).
    xmpp_settings = settings.channels.get("xmpp") or XmppSettings()
    assert isinstance(xmpp_settings, XmppSettings)
    xmpp_settings = replace(xmpp_settings, connect=xmpp)
    own = replace(settings, port=port, channels={**settings.channels, "email": email, "xmpp": xmpp_settings})
    app = create_app(own, channels)
    # The runner `channelhub serve` uses, with its limits on slow and stuck clients.
    runner = await serving.start(app, limits(settings), bind, port, shutdown_timeout=2)
    return Server(f"http://127.0.0.1:{port}", port, own, runner, app, smtp_port)


@pytest.fixture(scope="session")
async def wechat_api() -> AsyncIterator[StandIn]:
    """The loopback stand-in for the WeChat and WeCom APIs, on WECHAT_API_PORT."""
    stand_in = StandIn()
    runner = web.AppRunner(stand_in.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", WECHAT_API_PORT).start()
    yield stand_in
    await runner.cleanup()


@pytest.fixture(scope="session")
async def server(settings: Settings) -> AsyncIterator[Server]:
    srv = await start_server(settings)
    yield srv
    await srv.runner.cleanup()


@dataclass
class AgentInfo:
    id: int
    email: str
    name: str
    role: str


@dataclass
class TenantInfo:
    """A tenant made for one test, with helpers to act in it the way users do."""

    id: int
    domain: str
    server: Server
    settings: Settings
    agents: list[AgentInfo] = field(default_factory=list)
    _clients: list[Any] = field(default_factory=list)

    async def add_agent(self, *, role: str = "agent", capacity: int = 5, name: str | None = None,
                        group_ids: list[int] | None = None) -> AgentInfo:
        n = len(self.agents) + 1
        email = f"agent{n}@{self.domain}"
        db = Database(self.settings.database_url)
        try:
            async with db.session(self.id) as session:
                agent = await seats.create_agent(session, self.id, email=email, name=name or f"Agent {n}",
                                                 password=PASSWORD, role=role, capacity=capacity,
                                                 group_ids=group_ids)
        finally:
            await db.dispose()
        info = AgentInfo(agent["id"], email, agent["name"], role)
        self.agents.append(info)
        return info

    async def add_group(self, name: str) -> int:
        db = Database(self.settings.database_url)
        try:
            async with db.session(self.id) as session:
                return int((await seats.create_group(session, self.id, name=name))["id"])
        finally:
            await db.dispose()

    def agent_client(self, server: Server | None = None) -> AgentClient:
        client = AgentClient((server or self.server).url, host=self.domain)
        self._clients.append(client)
        return client

    async def signed_in(self, agent: AgentInfo, *, connect: bool = True, server: Server | None = None) -> AgentClient:
        client = self.agent_client(server)
        await client.login(agent.email, PASSWORD)
        if connect:
            await client.connect()
        return client

    def visitor(self, visitor_id: str | None = None, server: Server | None = None) -> VisitorClient:
        client = VisitorClient((server or self.server).url, host=self.domain, visitor_id=visitor_id)
        self._clients.append(client)
        return client

    async def close(self) -> None:
        for client in self._clients:
            await client.close()


async def make_tenant(
    settings: Settings, server: Server, name: str = "Acme", suffix: str = "example.com"
) -> TenantInfo:
    domain = f"t{uuid.uuid4().hex[:12]}.{suffix}"
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            tenant = await tenants.create(session, name=name, domains=[domain])
            tid = tenant.id
    finally:
        await db.dispose()
    return TenantInfo(tid, domain, server, settings)


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Path:
    """Where a browser test keeps its screenshots, as artefacts of the run: var/screenshots/<test>
    (or $CHANNELHUB_SCREENSHOTS/<test>), kept after the run for a person to look at."""
    base = Path(os.environ.get("CHANNELHUB_SCREENSHOTS") or ROOT / "var" / "screenshots")
    folder = base / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:120]
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def tenant(settings: Settings, server: Server) -> AsyncIterator[TenantInfo]:
    t = await make_tenant(settings, server)
    yield t
    await t.close()


@pytest.fixture
async def other_tenant(settings: Settings, server: Server) -> AsyncIterator[TenantInfo]:
    t = await make_tenant(settings, server, name="Globex")
    yield t
    await t.close()


async def eventually(check: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll an async predicate until it returns something truthy (for state reached asynchronously)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)


ROOT = Path(__file__).resolve().parent.parent


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """An aiosqlite connection left open (an engine a test never disposed) keeps its worker thread,
    which is not a daemon: the interpreter would wait for it for ever after the summary (CI saw a
    finished run hang so). Stop those threads, as ``Connection.stop`` would, without a loop."""
    import gc

    import aiosqlite.core

    _RUN_STATUS["status"] = int(exitstatus)

    sentinel = getattr(aiosqlite.core, "_STOP_RUNNING_SENTINEL", None)
    for obj in gc.get_objects():
        if not isinstance(obj, aiosqlite.core.Connection) or not obj._running:
            continue
        obj._running = False

        def close_and_stop(conn: Any = obj) -> Any:
            if conn._connection is not None:
                conn._connection.close()
                conn._connection = None
            return sentinel

        obj._tx.put_nowait((None, close_and_stop))


# A run that hangs must fail with the threads' stacks in its log, not wait until CI's limit (CI ran
# out of its 90 minutes once and printed nothing of the suites). Three guards:
# - pytest-timeout (pyproject's ``timeout``) fails one test that runs too long, with its stacks;
# - CHANNELHUB_TEST_SESSION_LIMIT (seconds; .ci/run sets it) dumps every thread's stack and ends
#   the whole run when it is exceeded, whatever hangs (faulthandler's watchdog is a C thread);
# - once the run is over, the process gets a minute to exit; then the threads that keep it alive
#   are dumped and it exits with the run's own status.
_RUN_STATUS = {"status": 1}


def _children() -> list[int]:
    """The processes this one started that still run (from /proc; none elsewhere)."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir() if Path("/proc/self/stat").exists() else ():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces and parentheses. A zombie is gone.
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) == me and state != "Z":
                found.append(int(entry.name))
    return found


def _stop_children() -> None:
    """A test that failed half-way may have left a process of its own running (a serve that never
    answered, a mail or XMPP server): it would outlive the run. Say so, and stop them."""
    import signal

    left = _children()
    if not left:
        return
    sys.stderr.write(f"\nprocesses the tests left running, stopped now: {left}\n")
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _children():
        time.sleep(0.1)
    for pid in _children():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def pytest_configure(config: pytest.Config) -> None:
    limit = os.environ.get("CHANNELHUB_TEST_SESSION_LIMIT")
    if limit:
        faulthandler.dump_traceback_later(float(limit), exit=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    if os.environ.get("CHANNELHUB_TEST_SESSION_LIMIT"):
        faulthandler.cancel_dump_traceback_later()
    status = _RUN_STATUS["status"]
    _stop_children()

    def exit_guard() -> None:
        time.sleep(60)
        sys.stderr.write("\nthe test run is over but the process has not exited after 60 s; its threads:\n")
        faulthandler.dump_traceback(all_threads=True)
        sys.stderr.flush()
        os._exit(status)

    threading.Thread(target=exit_guard, name="exit-guard", daemon=True).start()
