"""Engines, sessions and migrations, one code path for SQLite (embedded) and PostgreSQL.

SQLite: WAL journal, a busy timeout, and ``BEGIN IMMEDIATE`` for writing sessions so concurrent
writers queue up instead of failing half-way ("database is locked"). Reads use a second engine
with plain deferred transactions so they never wait for the write lock.

Tenant scoping: a session opened with ``tenant_id`` adds ``tenant_id = :tid`` to every ORM
query of a tenant-scoped model (``with_loader_criteria``), so a foreign row cannot be read or
changed through it whatever id is asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from core import models

logger = logging.getLogger(__name__)

ALEMBIC_DIR = Path(__file__).resolve().parent.parent / "alembic"

def tenant_scoped_models() -> tuple[type[models.TenantScoped], ...]:
    """Every model that holds tenant data: core's, and those of the channels imported so far."""
    return tuple(mapper.class_ for mapper in models.Base.registry.mappers
                 if issubclass(mapper.class_, models.TenantScoped))


@event.listens_for(Session, "do_orm_execute")
def _scope_to_tenant(state: ORMExecuteState) -> None:
    tenant_id = state.session.info.get("tenant_id")
    if tenant_id is None or not (state.is_select or state.is_update or state.is_delete):
        return
    # One option for every tenant-data model (they share the TenantScoped mixin); the lambda is
    # cached by SQLAlchemy with tenant_id as a bound parameter.
    state.statement = state.statement.options(
        with_loader_criteria(models.TenantScoped, lambda cls: cls.tenant_id == tenant_id, include_aliases=True)
    )


class WriteLock:
    """A first-come, first-served lock shared by every event loop (thread) of the process.

    SQLite has one writer at a time. Left to itself, a writer that finds the database locked
    sleeps in SQLite's busy handler (1, 2, 5 ... 100 ms) and polls, so under load a write waits
    far longer than the one before it takes, and whoever polls at the right moment wins. Queueing
    the process's writers here hands the database from one to the next the moment it is free.
    It must span loops: the embedded dramatiq worker writes from its own loop, and a per-loop
    ``asyncio.Lock`` would leave it to the busy handler, behind every writer of the web loop.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    async def acquire(self) -> None:
        with self._mutex:
            if not self._held:
                self._held = True
                return
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            with self._mutex:
                try:
                    self._waiters.remove((loop, waiter))
                    queued = True
                except ValueError:
                    queued = False
            # Handed over before the cancellation took: pass it on. (If the hand-over's callback
            # has not run yet, it finds the waiter cancelled and passes it on itself.)
            if not queued and waiter.done() and not waiter.cancelled():
                self.release()
            raise

    def release(self) -> None:
        with self._mutex:
            if not self._waiters:
                self._held = False
                return
            loop, waiter = self._waiters.popleft()
        # Still held: ownership passes straight to the next waiter, in its own loop.
        try:
            loop.call_soon_threadsafe(self._hand_over, waiter)
        except RuntimeError:  # that loop is closed: its waiter will never run
            self.release()

    def _hand_over(self, waiter: asyncio.Future[None]) -> None:
        if waiter.cancelled():
            self.release()
        else:
            waiter.set_result(None)


_write_locks: dict[str, WriteLock] = {}
_write_locks_guard = threading.Lock()


def write_lock(url: str) -> WriteLock:
    """The process's lock for one SQLite database file (every engine on it shares it)."""
    with _write_locks_guard:
        return _write_locks.setdefault(url, WriteLock())


class _InlineConnection(aiosqlite.Connection):
    """aiosqlite's connection, with each call made right away on the calling thread instead of
    being handed to the connection's own thread and back.

    The hand-over costs more than the work: about 0.15 ms of CPU per call on this machine against
    a few microseconds for the statement itself, and SQLAlchemy makes three or four calls per
    statement. The write engine uses it: its transactions are short, and the process's writers
    take turns on :class:`WriteLock` before ``BEGIN IMMEDIATE``, so a statement never waits for
    SQLite's lock while holding up the event loop (only another process writing to the same file
    could make it wait, up to the busy timeout). Reads, which can be long, keep aiosqlite's thread.
    """

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


def _sqlite_engine(url: str, *, immediate: bool, pool: dict[str, Any]) -> AsyncEngine:
    parsed = make_url(url)
    database = parsed.database or ":memory:"
    if database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    else:
        pool = {}  # one connection per thread: nothing to size
    if immediate:
        def connector() -> sqlite3.Connection:
            return sqlite3.connect(database, timeout=30, check_same_thread=False)

        async def inline() -> aiosqlite.Connection:
            return await _InlineConnection(connector, iter_chunk_size=64)

        engine = create_async_engine(url, async_creator=inline, **pool)
    else:
        engine = create_async_engine(url, connect_args={"timeout": 30}, **pool)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the driver so our BEGIN is the one that counts.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        # Checkpoints are the only writes that wait for the disk (fsync); made by whichever commit
        # crosses the threshold, they would stall the event loop, up to seconds on a busy disk.
        # The Checkpointer thread makes them instead.
        cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Checkpointer:
    """Copies SQLite's write-ahead log into the database file from a thread of its own.

    With ``synchronous=NORMAL`` a commit only appends to the log (durable against a crash of the
    process, as ``kill -9``; a power cut can lose the last commits), and the checkpoint is the one
    step that waits for the disk. PASSIVE checkpoints never wait for readers or writers; once a
    checkpoint has caught up, the next writer starts the log over, so it stays small."""

    INTERVAL = 0.5

    def __init__(self, path: str) -> None:
        self.path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sqlite checkpointer {path}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self.INTERVAL):
                try:
                    if conn is None:
                        conn = sqlite3.connect(self.path, timeout=5, check_same_thread=False)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:
                    logger.debug("checkpoint of %s failed: %s", self.path, exc)
        finally:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class Database:
    """The engines and session factories of one process (or one dramatiq event loop)."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10, pool_timeout: float = 30.0) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # A request that finds every connection taken waits pool_timeout, then fails with
        # sqlalchemy.exc.TimeoutError, which the HTTP and socket edges answer as busy (503).
        pool: dict[str, Any] = {"pool_size": pool_size, "max_overflow": pool_size, "pool_timeout": pool_timeout}
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, immediate=True, pool=pool)
            self.read_engine = _sqlite_engine(url, immediate=False, pool=pool)
        else:
            self.engine = create_async_engine(url, echo=echo, pool_pre_ping=True, **pool)
            self.read_engine = self.engine
        self._writer = async_sessionmaker(self.engine, expire_on_commit=False)
        self._reader = async_sessionmaker(self.read_engine, expire_on_commit=False)
        self._write_lock = write_lock(url) if self.is_sqlite else None
        database = make_url(url).database if self.is_sqlite else None
        self._checkpointer = Checkpointer(database) if database and database != ":memory:" else None

    @asynccontextmanager
    async def session(self, tenant_id: int | None = None) -> AsyncIterator[AsyncSession]:
        """A writing transaction: committed on success, rolled back on any error."""
        lock = self._write_lock
        if lock is not None:
            await lock.acquire()
        try:
            async with self._writer() as session:
                session.info["tenant_id"] = tenant_id
                async with session.begin():
                    yield session
        finally:
            if lock is not None:
                lock.release()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A writing transaction without an ORM session, for Core statements on hot paths (a
        third cheaper than a session's). Nothing scopes it to a tenant: it is for tables the
        caller addresses by key (the inbox), never for a request's reads."""
        lock = self._write_lock
        if lock is not None:
            await lock.acquire()
        try:
            async with self.engine.begin() as conn:
                yield conn
        finally:
            if lock is not None:
                lock.release()

    @asynccontextmanager
    async def read(self, tenant_id: int | None = None) -> AsyncIterator[AsyncSession]:
        """A read-only transaction (never takes SQLite's write lock)."""
        async with self._reader() as session:
            session.info["tenant_id"] = tenant_id
            async with session.begin():
                yield session

    async def dispose(self) -> None:
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.stop)
            self._checkpointer = None
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


async def migrate(db: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with alembic, the only way the schema changes."""
    from alembic import command

    cfg = alembic_config(db.url)

    def _upgrade(sync_conn: Any) -> None:
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(_upgrade)
    logger.info("database at %s", revision)


async def _pg_admin(url: str) -> Any:
    import asyncpg

    parsed = make_url(url)
    return await asyncpg.connect(host=parsed.host, port=parsed.port or 5432, user=parsed.username,
                                 password=parsed.password, database="postgres")


async def create_pg_database(url: str, name: str) -> str:
    """A new, empty PostgreSQL database ``name`` on the server of ``url`` (replacing one of that
    name); returns its URL. For test runs and benchmarks, which each want a clean database."""
    admin = await _pg_admin(url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def drop_pg_database(url: str) -> None:
    admin = await _pg_admin(url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    finally:
        await admin.close()
