"""The inbox: web-hook channels store what arrives first and make tickets of it after.

A web-hook has to answer fast (WeChat gives up on an answer after 5 s and pushes again), while
turning a message into a ticket takes a transaction of its own. So a web-hook hands its messages
to :meth:`Inbox.accept`, which lands them in the ``inbox`` table and returns once they are
committed: durable, and answered in milliseconds. The web-hook then says "success".

- **Group commit.** One writer task per process lands everything that arrived while the previous
  commit was in flight in one multi-row INSERT, so a thousand pushes a second cost a few dozen
  transactions, not a thousand. ``ON CONFLICT DO NOTHING`` on (tenant, channel, channel message
  id) makes a retry that arrives while the first try waits land once.
- **Drain.** A drainer task per process takes the oldest waiting rows (``FOR UPDATE SKIP LOCKED``,
  so processes never take the same rows), ingests them in batches with :func:`core.ingest.ingest_in`
  and deletes them in the same transaction: a message becomes a ticket message exactly once, and
  a crash at any point leaves it in the inbox for the next drain (every process polls, so rows a
  dead process landed are drained by the others). Ingest stays idempotent for a push retried
  after its first try was drained.
- **Live channels** (web chat: the customer's socket waits for its ack, which carries the stored
  message and its id) skip the landing row: :meth:`Inbox.ingest` hands each message to a second
  group commit that makes ticket messages of everything that arrived meanwhile in one transaction,
  with the same :func:`core.ingest.ingest_in` as the drain. The ack follows the commit, so what was
  acknowledged is durable; a message that cannot be ingested is refused to its sender, who still
  has it, rather than set aside.
- **Load shedding.** Both group commits (core.batching) refuse new messages with
  :class:`core.errors.Busy` once the oldest waiting one has waited ``settings.busy_after``: the
  web-hook answers 503 (WeChat pushes again), the socket sends ``busy`` and the widget resends.
- **Nothing is lost, nothing blocks.** A batch that fails is retried a row at a time; a row that
  keeps failing is retried with backoff and, after ``MAX_ATTEMPTS``, set aside as ``failed`` with
  its error for an operator (``channelhub inbox``), instead of holding up everything behind it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from core.batching import GroupCommit
from core.channels import Attachment, InboundMessage
from core.ingest import IngestResult, after_commit, check_message, ingest_many, ingest_scoped
from core.models import InboxItem, InboxState, table_of, utcnow
from core.tasks import cancel_and_wait

if TYPE_CHECKING:
    from core.db import Database
    from core.hub import Hub

logger = logging.getLogger(__name__)

# Rows ingested per drain transaction: large enough that the per-transaction cost is shared out,
# small enough that the transaction is short. On SQLite it holds the one write lock (web-hooks
# wait for it to land theirs) and, its statements running on the event loop, the loop itself:
# 100 rows are about 30 ms.
DRAIN_BATCH = 100
# Deliveries (a push, a callback's messages) landed per group commit at the most.
LAND_BATCH = 1000
# Live messages ingested per group commit at the most: on SQLite a batch holds the write lock and,
# its statements running on the event loop, the loop itself (about 0.3 ms a message).
LIVE_BATCH = 200
# How long the writer lets a group gather after its first message: a transaction costs about as
# much CPU as answering three pushes, so at a thousand pushes a second committing each on its own
# would cost more than everything else. A few milliseconds on every answer buy a batch of several.
LAND_LINGER = 0.004
# How often every process looks for rows it was not told about (landed by another process, or
# left by a crash, or due for another attempt).
POLL_SECONDS = 1.0
MAX_ATTEMPTS = 8
# After a quiet spell the drainer waits this long for more to land before it starts: at a few
# hundred pushes a second, one transaction per landed push would cost more than the pushes.
DRAIN_LINGER = 0.02

_KEY = ("tenant_id", "channel", "channel_message_id")


def encode(msg: InboundMessage) -> dict[str, Any]:
    """The parts of a message the inbox row's own columns do not hold."""
    return {
        "text": msg.text,
        "attachments": [a.to_dict() for a in msg.attachments],
        "customer_name": msg.customer_name, "customer_email": msg.customer_email, "subject": msg.subject,
        "customer_attributes": dict(msg.customer_attributes),
        **({"answers": list(msg.answers)} if msg.answers else {}),
        **({"ticket_refs": list(msg.ticket_refs)} if msg.ticket_refs else {}),
        **({"join_open": False} if not msg.join_open else {}),
        **({"participants": list(msg.participants)} if msg.participants else {}),
        **({"probe": True} if msg.probe else {}),
    }


def decode(tenant_id: int, channel: str, channel_message_id: str, external_id: str, received_at: datetime,
           payload: dict[str, Any]) -> InboundMessage:
    return InboundMessage(
        tenant_id=tenant_id, channel=channel, external_id=external_id, text=payload["text"],
        channel_message_id=channel_message_id, received_at=received_at,
        attachments=tuple(Attachment.from_dict(a) for a in payload.get("attachments") or ()),
        customer_name=payload.get("customer_name"), customer_email=payload.get("customer_email"),
        subject=payload.get("subject"), customer_attributes=dict(payload.get("customer_attributes") or {}),
        answers=tuple(payload.get("answers") or ()), ticket_refs=tuple(payload.get("ticket_refs") or ()),
        join_open=bool(payload.get("join_open", True)), participants=tuple(payload.get("participants") or ()),
        probe=bool(payload.get("probe", False)),
    )


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(2 ** attempts, 600))


class Inbox:
    """One per hub process: the two group commits (landing, live ingest) and the drainer."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        busy_after, lag = hub.settings.busy_after, hub.loop_lag
        self.lander: GroupCommit[list[InboundMessage], list[bool]] = GroupCommit(
            "inbox landing", self._land_many, linger=LAND_LINGER, max_batch=LAND_BATCH, busy_after=busy_after,
            loop_lag=lag)
        self.live: GroupCommit[InboundMessage, IngestResult] = GroupCommit(
            "live ingest", partial(ingest_many, hub), max_batch=LIVE_BATCH, busy_after=busy_after, loop_lag=lag)
        self._drain_wake = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self.hub.loop_lag.start()
        self.lander.start()
        self.live.start()
        if self._drainer is None and self.hub.settings.inbox_drain:
            self._drainer = asyncio.create_task(self._drain_loop(), name="inbox drainer")

    async def stop(self) -> None:
        """Write what was accepted (its senders are waiting for the answer), then stop draining."""
        await asyncio.gather(self.lander.stop(), self.live.stop(), self.hub.loop_lag.stop())
        drainer, self._drainer = self._drainer, None
        await cancel_and_wait(drainer)

    # --- accepting ----------------------------------------------------------------------------
    async def accept(self, msgs: Sequence[InboundMessage]) -> list[bool]:
        """Store messages durably before the channel is answered. Returns, per message, whether it
        is new to the inbox (False for a retry of one still waiting there). Bad messages are
        refused here, with the error ingest would give, so the channel hears of it."""
        for m in msgs:
            check_message(m, self.hub.settings.max_message_bytes)
        if not msgs:
            return []
        return await self.lander.submit(list(msgs))

    async def ingest(self, msg: InboundMessage) -> IngestResult:
        """A live channel's message made a ticket message in the next group commit; returns once
        it is committed."""
        check_message(msg, self.hub.settings.max_message_bytes)
        return await self.live.submit(msg)

    async def set_aside(self, msg: InboundMessage, error: str) -> None:
        """Keep a message a channel could not read in the failed set, for an operator (``channelhub
        inbox``): stored, never ingested unless retried by hand. Idempotent like :meth:`accept`."""
        row = {"tenant_id": msg.tenant_id, "channel": msg.channel, "channel_message_id": msg.channel_message_id,
               "external_id": msg.external_id, "payload": encode(msg), "received_at": msg.received_at,
               "next_attempt_at": msg.received_at, "state": InboxState.FAILED, "attempts": 0,
               "last_error": error[:2000]}
        async with self.hub.db.connection() as conn:
            await conn.execute(self._insert(), [row])

    def wake(self) -> None:
        """Have the drainer look now (after messages were landed with :meth:`land_in`)."""
        self._drain_wake.set()

    async def _land_many(self, deliveries: list[list[InboundMessage]]) -> list[list[bool]]:
        flags = await self._land([m for msgs in deliveries for m in msgs])
        self._drain_wake.set()
        out, at = [], 0
        for msgs in deliveries:
            out.append(flags[at:at + len(msgs)])
            at += len(msgs)
        return out

    def _insert(self) -> Any:
        # The table, not the mapped class: a Core INSERT skips the ORM's per-row bulk machinery.
        table = table_of(InboxItem)
        return ((sqlite_insert if self.hub.db.is_sqlite else pg_insert)(table)
                .on_conflict_do_nothing(index_elements=list(_KEY))
                .returning(table.c.tenant_id, table.c.channel, table.c.channel_message_id))

    async def _land(self, msgs: list[InboundMessage]) -> list[bool]:
        async with self.hub.db.connection() as conn:
            return await self.land_in(conn, msgs)

    async def land_in(self, conn: AsyncConnection, msgs: Sequence[InboundMessage]) -> list[bool]:
        """Land messages in the caller's transaction (a channel that stores its own rows with them,
        all or nothing: e-mail's originals and files); checked as :meth:`accept` checks them. Call
        :meth:`wake` after the commit. Returns, per message, whether it is new to the inbox."""
        for m in msgs:
            check_message(m, self.hub.settings.max_message_bytes)
        rows: dict[tuple[int, str, str], dict[str, Any]] = {}
        for m in msgs:
            key = (m.tenant_id, m.channel, m.channel_message_id)
            if key not in rows:
                rows[key] = {"tenant_id": m.tenant_id, "channel": m.channel, "channel_message_id": m.channel_message_id,
                             "external_id": m.external_id, "payload": encode(m), "received_at": m.received_at,
                             "next_attempt_at": m.received_at, "state": InboxState.PENDING, "attempts": 0}
        landed = {(r[0], r[1], r[2]) for r in await conn.execute(self._insert(), list(rows.values()))}
        flags = []
        for m in msgs:
            key = (m.tenant_id, m.channel, m.channel_message_id)
            flags.append(key in landed)
            landed.discard(key)  # a second copy in the same batch is not new
        return flags

    # --- draining -----------------------------------------------------------------------------
    async def _drain_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._drain_wake.wait(), POLL_SECONDS)
            except TimeoutError:
                pass
            self._drain_wake.clear()
            await asyncio.sleep(DRAIN_LINGER)
            try:
                # A full batch means more may wait; between two, let the web-hooks (and their
                # group commit) in.
                while await self.drain_once() >= DRAIN_BATCH:  # noqa: ASYNC110
                    await asyncio.sleep(0)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("inbox: drain failed; trying again in %s s", POLL_SECONDS)

    async def drain_once(self, limit: int = DRAIN_BATCH) -> int:
        """Ingest up to ``limit`` waiting rows; returns how many were taken."""
        claimed: list[int] = []
        for attempt in range(3):
            try:
                return await self._drain(limit, claimed)
            except IntegrityError:
                # A first message of a new customer raced another process's: the retry finds it.
                if attempt < 2:
                    continue
            except Exception:
                if not claimed:
                    raise  # nothing was read: the database itself is in trouble
                logger.exception("inbox: a batch of %d failed; taking its rows one at a time", len(claimed))
            break
        # One row that cannot be ingested must not hold up the others.
        for item_id in list(claimed):
            try:
                await self._drain(1, [], only=item_id)
            except Exception as exc:
                await self._failed(item_id, exc)
        return len(claimed)

    async def _drain(self, limit: int, claimed: list[int], *, only: int | None = None) -> int:
        claimed.clear()
        done: list[tuple[int, list[IngestResult], list[dict[str, Any]]]] = []
        async with self.hub.db.session() as session:
            stmt = (select(InboxItem.id, InboxItem.tenant_id, InboxItem.channel, InboxItem.channel_message_id,
                           InboxItem.external_id, InboxItem.received_at, InboxItem.payload)
                    .where(InboxItem.state == InboxState.PENDING)
                    .order_by(InboxItem.id).limit(limit).with_for_update(skip_locked=True))
            stmt = stmt.where(InboxItem.id == only) if only is not None else stmt.where(
                InboxItem.next_attempt_at <= utcnow())
            rows = (await session.execute(stmt)).all()
            if not rows:
                return 0
            claimed.extend(r.id for r in rows)
            by_tenant: dict[int, list[InboundMessage]] = defaultdict(list)
            for r in rows:
                by_tenant[r.tenant_id].append(decode(r.tenant_id, r.channel, r.channel_message_id, r.external_id,
                                                     r.received_at, r.payload))
            for tenant_id, msgs in by_tenant.items():
                results, events = await ingest_scoped(session, self.hub, tenant_id, msgs)
                done.append((tenant_id, results, events))
            await session.execute(delete(InboxItem).where(InboxItem.id.in_(claimed)))
        for tenant_id, results, events in done:
            await after_commit(self.hub, tenant_id, results, events)
        return len(rows)

    async def _failed(self, item_id: int, exc: Exception) -> None:
        # The row's id only: its text is the customer's and stays out of the logs.
        async with self.hub.db.session() as session:
            attempts = (await session.execute(
                select(InboxItem.attempts).where(InboxItem.id == item_id).with_for_update())).scalar_one_or_none()
            if attempts is None:
                return
            attempts += 1
            state = InboxState.FAILED if attempts >= MAX_ATTEMPTS else InboxState.PENDING
            await session.execute(
                update(InboxItem).where(InboxItem.id == item_id)
                .values(attempts=attempts, state=state, last_error=f"{type(exc).__name__}: {exc}"[:2000],
                        next_attempt_at=utcnow() + backoff(attempts))
                .execution_options(synchronize_session=False))
        log = logger.error if state == InboxState.FAILED else logger.warning
        log("inbox: row %s failed (attempt %d of %d): %s", item_id, attempts, MAX_ATTEMPTS, type(exc).__name__)


# --- for operators (``channelhub inbox``) --------------------------------------------------------


async def counts(db: Database) -> dict[str, int]:
    async with db.read() as session:
        rows = (await session.execute(select(InboxItem.state, func.count()).group_by(InboxItem.state))).all()
    return {InboxState.PENDING: 0, InboxState.FAILED: 0, **{state: int(n) for state, n in rows}}


async def failed(db: Database, limit: int = 100) -> list[dict[str, Any]]:
    """Rows set aside, oldest first: where they came from and why they failed (not their text)."""
    async with db.read() as session:
        rows = (await session.execute(
            select(InboxItem.id, InboxItem.tenant_id, InboxItem.channel, InboxItem.channel_message_id,
                   InboxItem.received_at, InboxItem.attempts, InboxItem.last_error)
            .where(InboxItem.state == InboxState.FAILED).order_by(InboxItem.id).limit(limit))).all()
    return [dict(r._mapping) for r in rows]


async def retry_failed(db: Database) -> int:
    """Put the rows set aside back in line (after their cause was mended); the drainers take them
    within a poll."""
    async with db.session() as session:
        result = await session.execute(
            update(InboxItem).where(InboxItem.state == InboxState.FAILED)
            .values(state=InboxState.PENDING, attempts=0, next_attempt_at=utcnow())
            .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)
