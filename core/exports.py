"""Excel exports (#16): a tenant's customers, tickets and, if asked, every message, or one
customer's data (a request under personal-data law), as an .xlsx file.

How an export runs:

* ``POST /api/v1/exports`` (or ``/customers/{id}/export``) inserts a row in ``exports``, queued.
* Every process that builds exports (``serve`` and ``worker``, unless
  ``CHANNELHUB_EXPORT_WORKER=0``) runs one :class:`Exporter`: it looks for queued rows each
  ``export_poll_interval`` seconds (at once when its own process queued one), claims one with a
  conditional UPDATE, and holds it by a lease it renews with each chunk's progress. A builder that
  dies leaves the lease to run out; the next process to look takes the export again (from the
  start: a half-written file is worth nothing), and after :data:`MAX_ATTEMPTS` it is failed. A
  process that stops cleanly hands its export back to the queue at once.
* One export at a time per process, whatever the tenant: the reads are chunks of
  :data:`CHUNK` rows by keyset (``id > last``), each in its own short read transaction
  (``hub.db.read``: SQLite's read engine, never the write lock), so an export never holds a
  transaction that writers wait for, and messaging goes on beside it.
* The file is written with xlsxwriter in ``constant_memory`` mode, on a thread (the event loop
  only reads): one row in memory per sheet, whatever the size. Measured on this machine, 200,000
  rows x 10 columns: xlsxwriter 12.3 s and 21 MB peak RSS, openpyxl's write-only mode 18.8 s and
  26 MB (the issue quotes 31-37 s for openpyxl on a quieter day). xlsxwriter also never makes a
  formula of a string written with ``write_string``, where openpyxl makes every string that starts
  with ``=`` a formula unless told otherwise. bench/export.py: 1,000,000 tickets (1,200,000 rows)
  in 114 s with a peak RSS of 77.5 MB.
* The file lands in ``CHANNELHUB_EXPORT_DIR`` (written as ``.part``, renamed when complete) and is
  deleted ``export_keep_hours`` after it was finished (the row stays, ``expired``). It is fetched
  by a signed link (:func:`download_path`): HMAC of tenant, export and expiry under the hub's secret
  key, valid ``export_link_seconds``, no sign-in needed.

Cells are safe in Excel: every text is written as a string cell (never a formula), and a text that
Excel would take for a formula if typed (starting with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return, after OWASP's CSV-injection guidance) also carries Excel's quote prefix, so
editing the cell does not make it one either. Chinese and every other text is kept as is (UTF-8
in the file; control characters are escaped as the format requires). Times are Excel date-times
in UTC, which every time column's header says.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xlsxwriter
from sqlalchemy import ColumnElement, Select, Text, and_, cast, exists, func, or_, select, update

from core import secrets
from core.audit import audit
from core.config import Settings
from core.db import Database
from core.errors import DomainError, NotFound
from core.models import (
    Agent,
    Customer,
    CustomerIdentity,
    Export,
    ExportState,
    Group,
    Message,
    Ticket,
    table_of,
    utcnow,
)

if TYPE_CHECKING:
    from xlsxwriter.format import Format
    from xlsxwriter.worksheet import Worksheet

    from core.hub import Hub

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SIGNING_PURPOSE = "export"
# Rows per read: each chunk is one short read transaction and, at most, two chunks are in memory
# (the one being written and the next being read).
CHUNK = 2000
# How long a claim holds without news from its builder; renewed with every chunk.
LEASE_SECONDS = 120
MAX_ATTEMPTS = 3
# Queued or running exports one tenant may have at once: a tenant cannot fill every process's queue.
MAX_ACTIVE_PER_TENANT = 3
# The longest text a cell holds (Excel's limit); longer texts are cut and marked.
MAX_CELL = 32767
RISKY_START = ("=", "+", "-", "@", "\t", "\r")
TIME_FORMAT = "yyyy-mm-dd hh:mm:ss"


class Gone(DomainError):
    status = 410
    code = "link_expired"


# --- filters ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Filters:
    """What a tenant export covers: tickets created from ``date_from`` to ``date_to`` (whole UTC days,
    both included), of these statuses and channels (empty: all). Customers are those with a ticket
    that matches (every customer when no filter is set); messages those of the matching tickets."""

    date_from: date | None = None
    date_to: date | None = None
    statuses: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    # One customer's data: that customer and those merged into it, all their tickets and messages.
    customer_id: int | None = None

    @property
    def any(self) -> bool:
        return bool(self.date_from or self.date_to or self.statuses or self.channels)

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.date_from.isoformat() if self.date_from else None,
                "to": self.date_to.isoformat() if self.date_to else None,
                "statuses": list(self.statuses), "channels": list(self.channels)}

    @classmethod
    def of(cls, stored: dict[str, Any], customer_id: int | None = None) -> Filters:
        return cls(date_from=date.fromisoformat(stored["from"]) if stored.get("from") else None,
                   date_to=date.fromisoformat(stored["to"]) if stored.get("to") else None,
                   statuses=tuple(stored.get("statuses") or ()), channels=tuple(stored.get("channels") or ()),
                   customer_id=customer_id)


T = table_of(Ticket)
C = table_of(Customer)
CI = table_of(CustomerIdentity)
M = table_of(Message)
E = table_of(Export)


def _customer_ids(tenant_id: int, customer_id: int) -> ColumnElement[bool]:
    """The customer asked for and those merged into it (their tickets moved with the merge, but a
    merged customer's own record and identities are theirs too)."""
    return and_(C.c.tenant_id == tenant_id, or_(C.c.id == customer_id, C.c.merged_into_id == customer_id))


def _ticket_conditions(tenant_id: int, f: Filters) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [T.c.tenant_id == tenant_id]
    if f.customer_id is not None:
        conds.append(T.c.customer_id.in_(select(C.c.id).where(_customer_ids(tenant_id, f.customer_id))))
    if f.date_from is not None:
        conds.append(T.c.created_at >= datetime.combine(f.date_from, time(), UTC))
    if f.date_to is not None:
        conds.append(T.c.created_at < datetime.combine(f.date_to + timedelta(days=1), time(), UTC))
    if f.statuses:
        conds.append(T.c.status.in_(f.statuses))
    if f.channels:
        conds.append(T.c.channel.in_(f.channels))
    return conds


def _customer_conditions(tenant_id: int, f: Filters) -> list[ColumnElement[bool]]:
    if f.customer_id is not None:
        return [_customer_ids(tenant_id, f.customer_id)]
    conds: list[ColumnElement[bool]] = [C.c.tenant_id == tenant_id]
    if f.any:
        conds.append(exists(select(T.c.id).where(T.c.customer_id == C.c.id, *_ticket_conditions(tenant_id, f))))
    return conds


def _message_conditions(tenant_id: int, f: Filters) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [M.c.tenant_id == tenant_id]
    if f.any or f.customer_id is not None:
        conds.append(M.c.ticket_id.in_(select(T.c.id).where(*_ticket_conditions(tenant_id, f))))
    return conds


# --- the sheets ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    header: str
    kind: str  # "int", "text", "time"
    width: float = 14


CUSTOMER_COLUMNS = (
    Column("Customer ID", "int", 12), Column("Name", "text", 24), Column("Email", "text", 28),
    Column("Identities", "text", 36), Column("Tags", "text", 18), Column("Attributes", "text", 30),
    Column("Created (UTC)", "time", 20), Column("Merged into", "int", 12),
)
TICKET_COLUMNS = (
    Column("Ticket ID", "int", 12), Column("Customer ID", "int", 12), Column("Customer", "text", 24),
    Column("Channel", "text", 10), Column("Subject", "text", 36), Column("Status", "text", 10),
    Column("Priority", "text", 10), Column("Group", "text", 16), Column("Assignee", "text", 18),
    Column("Tags", "text", 18), Column("Created (UTC)", "time", 20), Column("Updated (UTC)", "time", 20),
    Column("First response (UTC)", "time", 20), Column("Solved (UTC)", "time", 20),
    Column("Closed (UTC)", "time", 20),
)
MESSAGE_COLUMNS = (
    Column("Message ID", "int", 12), Column("Ticket ID", "int", 12), Column("Time (UTC)", "time", 20),
    Column("Direction", "text", 10), Column("Channel", "text", 10), Column("Author", "text", 18),
    Column("Text", "text", 60), Column("Attachments", "text", 24), Column("Delivery", "text", 10),
)
SHEETS = {"Customers": CUSTOMER_COLUMNS, "Tickets": TICKET_COLUMNS, "Messages": MESSAGE_COLUMNS}


def safe_text(value: str) -> str:
    return value if len(value) <= MAX_CELL else value[:MAX_CELL - 1] + "…"


class Sheet:
    """One worksheet being written row by row (xlsxwriter's constant_memory mode flushes each row
    as the next begins). Its methods run on the writer thread."""

    def __init__(self, book: Workbook, name: str, columns: Sequence[Column]) -> None:
        self.book = book
        self.ws: Worksheet = book.xl.add_worksheet(name)
        self.kinds = [c.kind for c in columns]
        self.row = 1
        bold = book.xl.add_format({"bold": True})
        for i, col in enumerate(columns):
            self.ws.set_column(i, i, col.width)
            self.ws.write_string(0, i, col.header, bold)
        self.ws.freeze_panes(1, 0)

    def write(self, rows: Iterable[Sequence[Any]]) -> int:
        ws, kinds, quoted, when = self.ws, self.kinds, self.book.quoted, self.book.when
        r = self.row
        for values in rows:
            for c, (kind, value) in enumerate(zip(kinds, values, strict=True)):
                if value is None or value == "":
                    continue
                if kind == "text":
                    text = safe_text(value)
                    ws.write_string(r, c, text, quoted if text.startswith(RISKY_START) else None)
                elif kind == "int":
                    ws.write_number(r, c, value)
                else:
                    ws.write_datetime(r, c, value.astimezone(UTC).replace(tzinfo=None), when)
            r += 1
        done = r - self.row
        self.row = r
        return done


class Workbook:
    def __init__(self, path: Path) -> None:
        # No string is ever read as a number, a formula or a link: text cells go through write_string.
        self.xl = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_formulas": False,
                                                  "strings_to_numbers": False, "strings_to_urls": False,
                                                  "tmpdir": str(path.parent)})
        self.quoted: Format = self.xl.add_format({"quote_prefix": True})
        self.when: Format = self.xl.add_format({"num_format": TIME_FORMAT})

    def sheet(self, name: str) -> Sheet:
        return Sheet(self, name, SHEETS[name])

    def close(self) -> None:
        self.xl.close()


# --- reading in chunks -----------------------------------------------------------------------------
Read = Callable[[], contextlib.AbstractAsyncContextManager[Any]]


async def _keyset(read: Read, stmt: Callable[[int], Select[Any]]) -> AsyncIterator[list[Any]]:
    """The rows of ``stmt(last_id)`` chunk by chunk, each chunk in a read transaction of its own."""
    last = 0
    while True:
        async with read() as session:
            rows = list((await session.execute(stmt(last))).all())
        if not rows:
            return
        yield rows
        if len(rows) < CHUNK:
            return
        last = rows[-1][0]


def _joined(raw: str | None) -> str:
    """A JSON list (read as its text: most are empty, and decoding every one cost a tenth of the
    export's time) as "a, b"."""
    if not raw or raw in ("[]", "null"):
        return ""
    values = json.loads(raw)
    return ", ".join(str(v) for v in values) if isinstance(values, list) else ""


def _json_text(column: Any) -> Any:
    return cast(column, Text)


async def _names(read: Read, tenant_id: int) -> tuple[dict[int, str], dict[int, str]]:
    async with read() as session:
        agents = {r.id: r.name for r in (await session.execute(
            select(Agent.id, Agent.name).where(Agent.tenant_id == tenant_id)))}
        groups = {r.id: r.name for r in (await session.execute(
            select(Group.id, Group.name).where(Group.tenant_id == tenant_id)))}
    return agents, groups


async def count_rows(read: Read, tenant_id: int, f: Filters, include_messages: bool) -> int:
    async with read() as session:
        total = await session.scalar(select(func.count()).select_from(C).where(*_customer_conditions(tenant_id, f)))
        total = (total or 0) + (await session.scalar(
            select(func.count()).select_from(T).where(*_ticket_conditions(tenant_id, f))) or 0)
        if include_messages:
            total += await session.scalar(
                select(func.count()).select_from(M).where(*_message_conditions(tenant_id, f))) or 0
    return int(total)


async def customer_rows(read: Read, tenant_id: int, f: Filters) -> AsyncIterator[list[tuple[Any, ...]]]:
    conds = _customer_conditions(tenant_id, f)

    def stmt(last: int) -> Select[Any]:
        return (select(C.c.id, C.c.name, C.c.email, _json_text(C.c.tags).label("tags"), C.c.attributes,
                       C.c.created_at, C.c.merged_into_id)
                .where(C.c.id > last, *conds).order_by(C.c.id).limit(CHUNK))

    async for rows in _keyset(read, stmt):
        ids = [r.id for r in rows]
        identities: dict[int, list[str]] = {}
        async with read() as session:
            for r in await session.execute(
                    select(CI.c.customer_id, CI.c.channel, CI.c.external_id)
                    .where(CI.c.tenant_id == tenant_id, CI.c.customer_id.in_(ids)).order_by(CI.c.id)):
                identities.setdefault(r.customer_id, []).append(f"{r.channel}: {r.external_id}")
        yield [(r.id, r.name, r.email, "; ".join(identities.get(r.id, ())), _joined(r.tags),
                json.dumps(r.attributes, ensure_ascii=False) if r.attributes else None, r.created_at,
                r.merged_into_id) for r in rows]


async def ticket_rows(read: Read, tenant_id: int, f: Filters, agents: dict[int, str],
                      groups: dict[int, str]) -> AsyncIterator[list[tuple[Any, ...]]]:
    conds = _ticket_conditions(tenant_id, f)

    def stmt(last: int) -> Select[Any]:
        return (select(T.c.id, T.c.customer_id, C.c.name, T.c.channel, T.c.subject, T.c.status, T.c.priority,
                       T.c.group_id, T.c.assignee_id, _json_text(T.c.tags).label("tags"), T.c.created_at,
                       T.c.updated_at,
                       T.c.first_response_at, T.c.solved_at, T.c.closed_at)
                .join(C, C.c.id == T.c.customer_id).where(T.c.id > last, *conds).order_by(T.c.id).limit(CHUNK))

    async for rows in _keyset(read, stmt):
        yield [(r.id, r.customer_id, r.name, r.channel, r.subject, r.status, r.priority,
                groups.get(r.group_id) if r.group_id else None, agents.get(r.assignee_id) if r.assignee_id else None,
                _joined(r.tags), r.created_at, r.updated_at, r.first_response_at, r.solved_at, r.closed_at)
               for r in rows]


def _attachment_names(attachments: Any) -> str:
    if not isinstance(attachments, list):
        return ""
    return ", ".join(str(a.get("name", "")) if isinstance(a, dict) else str(a) for a in attachments)


async def message_rows(read: Read, tenant_id: int, f: Filters,
                       agents: dict[int, str]) -> AsyncIterator[list[tuple[Any, ...]]]:
    conds = _message_conditions(tenant_id, f)

    def stmt(last: int) -> Select[Any]:
        return (select(M.c.id, M.c.ticket_id, M.c.created_at, M.c.direction, M.c.channel, M.c.author_agent_id,
                       M.c.body, M.c.attachments, M.c.delivery_state)
                .where(M.c.id > last, *conds).order_by(M.c.id).limit(CHUNK))

    async for rows in _keyset(read, stmt):
        yield [(r.id, r.ticket_id, r.created_at, r.direction, r.channel,
                "customer" if r.direction == "inbound" else agents.get(r.author_agent_id) or None,
                r.body, _attachment_names(r.attachments), r.delivery_state) for r in rows]


# --- building a file -------------------------------------------------------------------------------
Progress = Callable[[int, int], Awaitable[None]]


@dataclass
class Spec:
    tenant_id: int
    filters: Filters = field(default_factory=Filters)
    include_messages: bool = False


async def build(db: Database, spec: Spec, path: Path, progress: Progress | None = None) -> int:
    """Write the export to ``path`` (replaced when complete); returns the rows written. ``progress``
    is awaited after each chunk with (rows done, rows in all)."""
    tenant_id, f = spec.tenant_id, spec.filters

    def read() -> contextlib.AbstractAsyncContextManager[Any]:
        return db.read(tenant_id)

    total = await count_rows(read, tenant_id, f, spec.include_messages)
    agents, groups = await _names(read, tenant_id)
    part = path.with_name(path.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    book = await asyncio.to_thread(Workbook, part)
    done = 0
    try:
        sources: list[tuple[str, AsyncIterator[list[tuple[Any, ...]]]]] = [
            ("Customers", customer_rows(read, tenant_id, f)),
            ("Tickets", ticket_rows(read, tenant_id, f, agents, groups))]
        if spec.include_messages:
            sources.append(("Messages", message_rows(read, tenant_id, f, agents)))
        if progress is not None:
            await progress(0, total)
        for name, chunks in sources:
            sheet = await asyncio.to_thread(book.sheet, name)
            writing: asyncio.Future[int] | None = None
            # The next chunk is read while the previous one is written on the thread.
            async for rows in chunks:
                if writing is not None:
                    done += await writing
                    if progress is not None:
                        await progress(done, max(total, done))
                writing = asyncio.ensure_future(asyncio.to_thread(sheet.write, rows))
            if writing is not None:
                done += await writing
                if progress is not None:
                    await progress(done, max(total, done))
        await asyncio.to_thread(book.close)
        part.replace(path)
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(book.close)
        part.unlink(missing_ok=True)
        raise
    return done


# --- the exports table -----------------------------------------------------------------------------
def file_path(settings: Settings, name: str) -> Path:
    return Path(settings.export_dir) / name


def _signed(tenant_id: int, export_id: int, expires: int) -> str:
    return f"{tenant_id}:{export_id}:{expires}"


def download_path(settings: Settings, tenant_id: int, export_id: int, expires: int) -> str:
    sig = secrets.sign(settings, SIGNING_PURPOSE, _signed(tenant_id, export_id, expires))
    return f"/exports/{export_id}/file?expires={expires}&signature={sig}"


def as_dict(settings: Settings, row: Export, now: datetime) -> dict[str, Any]:
    url = link_expires = None
    if row.state == ExportState.DONE and row.expires_at is not None and row.expires_at > now:
        until = min(now + timedelta(seconds=settings.export_link_seconds), row.expires_at)
        expires = int(until.timestamp())
        url = download_path(settings, row.tenant_id, row.id, expires)
        link_expires = datetime.fromtimestamp(expires, UTC)
    return {
        "id": row.id, "state": row.state, "customer_id": row.customer_id,
        "filters": Filters.of(row.filters).as_dict(), "include_messages": row.include_messages,
        "rows_done": row.rows_done, "rows_total": row.rows_total,
        "progress": (min(row.rows_done / row.rows_total, 1.0) if row.rows_total else
                     (1.0 if row.state == ExportState.DONE else 0.0)),
        "size": row.size, "error": row.error, "agent_id": row.agent_id,
        "created_at": row.created_at.isoformat(), "started_at": row.started_at.isoformat() if row.started_at else None,
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        "download_url": url, "download_expires_at": link_expires.isoformat() if link_expires else None,
    }


async def request(hub: Hub, tenant_id: int, agent_id: int | None, filters: Filters, include_messages: bool,
                  *, now: datetime, ip: str | None = None) -> dict[str, Any]:
    """Queue an export (409 ``too_many_exports`` past :data:`MAX_ACTIVE_PER_TENANT`). Taking a
    tenant's data out is audited: who, when, from where, and what (the filters)."""
    from core.errors import Conflict

    async with hub.db.session(tenant_id) as session:
        if filters.customer_id is not None and await session.get(Customer, filters.customer_id) is None:
            raise NotFound(f"customer {filters.customer_id} not found", code="customer_not_found")
        active = await session.scalar(select(func.count()).select_from(E).where(
            E.c.tenant_id == tenant_id, E.c.state.in_((ExportState.QUEUED, ExportState.RUNNING))))
        if (active or 0) >= MAX_ACTIVE_PER_TENANT:
            raise Conflict(f"{MAX_ACTIVE_PER_TENANT} exports are already queued or running; wait for one to finish",
                           code="too_many_exports")
        row = Export(tenant_id=tenant_id, agent_id=agent_id, customer_id=filters.customer_id,
                     filters=filters.as_dict(), include_messages=include_messages, state=ExportState.QUEUED,
                     created_at=now)
        session.add(row)
        await session.flush()
        audit(session, tenant_id=tenant_id, actor_type="agent" if agent_id is not None else "system",
              actor_id=agent_id, action="export.customer" if filters.customer_id is not None else "export.create",
              target_type="export", target_id=row.id,
              details={"filters": filters.as_dict(), "include_messages": include_messages}, ip=ip)
    hub.exports.wake()
    return as_dict(hub.settings, row, now)


async def get(hub: Hub, tenant_id: int, export_id: int, *, now: datetime) -> dict[str, Any]:
    async with hub.db.read(tenant_id) as session:
        row = await session.get(Export, export_id)
        if row is None:
            raise NotFound(f"export {export_id} not found", code="export_not_found")
        return as_dict(hub.settings, row, now)


async def listing(hub: Hub, tenant_id: int, *, now: datetime, limit: int = 50) -> list[dict[str, Any]]:
    async with hub.db.read(tenant_id) as session:
        rows = (await session.scalars(select(Export).order_by(Export.id.desc()).limit(limit))).all()
        return [as_dict(hub.settings, r, now) for r in rows]


@dataclass(frozen=True)
class File:
    path: Path
    name: str


async def signed_file(hub: Hub, tenant_id: int, export_id: int, expires: int, signature: str, *,
                      now: datetime) -> File:
    """The file of a signed link: a wrong signature is an export that does not exist (404), a
    right one past its time is 410 ``link_expired``."""
    missing = NotFound(f"export {export_id} not found", code="export_not_found")
    if not secrets.verify(hub.settings, SIGNING_PURPOSE, _signed(tenant_id, export_id, expires), signature):
        raise missing
    if expires <= now.timestamp():
        raise Gone("this download link has expired: ask for the export again for a new link")
    async with hub.db.read(tenant_id) as session:
        row = await session.get(Export, export_id)
    if row is None:
        raise missing
    if row.state == ExportState.EXPIRED or (row.expires_at is not None and row.expires_at <= now):
        raise Gone("this export's file has been deleted: export again", code="export_expired")
    if row.state != ExportState.DONE or not row.file_name:
        raise missing
    path = file_path(hub.settings, row.file_name)
    if not path.exists():
        raise Gone("this export's file is no longer on this server: export again", code="export_expired")
    stamp = (row.finished_at or row.created_at).strftime("%Y%m%d")
    who = f"customer-{row.customer_id}-" if row.customer_id else ""
    return File(path, f"channelhub-{who}export-{row.id}-{stamp}.xlsx")


# --- the builder of each process -------------------------------------------------------------------
class Exporter:
    """Builds the queued exports of every tenant, one at a time, in this process (module docstring)."""

    def __init__(self, hub: Hub, clock: Callable[[], datetime] = utcnow) -> None:
        self.hub = hub
        self.clock = clock
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_purge: datetime | None = None

    def start(self) -> None:
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="exporter")

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.hub.settings.export_poll_interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.purge()
                while await self.run_one():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("export round failed")

    async def claim(self) -> Export | None:
        now = self.clock()
        claimable = or_(E.c.state == ExportState.QUEUED,
                        and_(E.c.state == ExportState.RUNNING, E.c.lease_until < now))
        async with self.hub.db.read() as session:
            candidates = list((await session.scalars(select(E.c.id).where(claimable).order_by(E.c.id).limit(5))).all())
        for export_id in candidates:
            async with self.hub.db.connection() as conn:
                taken = await conn.execute(update(E).where(E.c.id == export_id, claimable).values(
                    state=ExportState.RUNNING, claimed_by=self.name, lease_until=now + timedelta(seconds=LEASE_SECONDS),
                    attempts=E.c.attempts + 1, started_at=now, rows_done=0))
            if taken.rowcount != 1:
                continue  # another process took it first
            async with self.hub.db.read() as session:
                row = await session.get(Export, export_id)
            if row is None:
                continue
            if row.attempts > MAX_ATTEMPTS:
                await self._finish(row.id, state=ExportState.FAILED,
                                   error=f"the export was interrupted {MAX_ATTEMPTS} times; ask for it again")
                continue
            return row
        return None

    async def run_one(self) -> bool:
        row = await self.claim()
        if row is None:
            return False
        name = f"export-{row.tenant_id}-{row.id}-{uuid.uuid4().hex[:8]}.xlsx"
        path = file_path(self.hub.settings, name)
        spec = Spec(row.tenant_id, Filters.of(row.filters, row.customer_id), row.include_messages)
        logger.info("export %s of tenant %s: building", row.id, row.tenant_id)

        async def progress(done: int, total: int) -> None:
            now = self.clock()
            async with self.hub.db.connection() as conn:
                held = await conn.execute(update(E).where(E.c.id == row.id, E.c.claimed_by == self.name).values(
                    rows_done=done, rows_total=total, lease_until=now + timedelta(seconds=LEASE_SECONDS)))
            if held.rowcount != 1:
                raise LostClaim(row.id)

        try:
            done = await build(self.hub.db, spec, path, progress)
        except asyncio.CancelledError:
            # Stopping: hand it back at once, for this process's next start or another process.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._release(row.id))
            raise
        except LostClaim:
            logger.warning("export %s: its claim was taken over; leaving it", row.id)
            return True
        except Exception as exc:
            logger.exception("export %s failed", row.id)
            await self._finish(row.id, state=ExportState.FAILED, error=f"the export failed: {type(exc).__name__}")
            return True
        now = self.clock()
        await self._finish(row.id, state=ExportState.DONE, file_name=name, size=path.stat().st_size,
                           rows_done=done, rows_total=done, finished_at=now,
                           expires_at=now + timedelta(hours=self.hub.settings.export_keep_hours))
        logger.info("export %s of tenant %s: %s rows", row.id, row.tenant_id, done)
        return True

    async def _finish(self, export_id: int, **values: Any) -> None:
        async with self.hub.db.connection() as conn:
            await conn.execute(update(E).where(E.c.id == export_id, E.c.claimed_by == self.name).values(
                claimed_by=None, lease_until=None, **values))

    async def _release(self, export_id: int) -> None:
        async with self.hub.db.connection() as conn:
            await conn.execute(update(E).where(E.c.id == export_id, E.c.claimed_by == self.name).values(
                state=ExportState.QUEUED, claimed_by=None, lease_until=None, rows_done=0,
                attempts=E.c.attempts - 1))

    async def purge(self) -> int:
        """Delete the files past their time (at most once a minute); their rows become ``expired``."""
        now = self.clock()
        if self._last_purge is not None and now - self._last_purge < timedelta(minutes=1):
            return 0
        self._last_purge = now
        async with self.hub.db.read() as session:
            due = (await session.execute(select(E.c.id, E.c.file_name).where(
                E.c.state == ExportState.DONE, E.c.expires_at <= now))).all()
        for export_id, name in due:
            if name:
                file_path(self.hub.settings, name).unlink(missing_ok=True)
            async with self.hub.db.connection() as conn:
                await conn.execute(update(E).where(E.c.id == export_id, E.c.state == ExportState.DONE)
                                   .values(state=ExportState.EXPIRED))
        return len(due)


class LostClaim(Exception):
    """Another process took the export over (this one's lease ran out): stop writing it."""
