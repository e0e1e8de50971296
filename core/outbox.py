"""Outbound delivery: the outbox row written with the reply, a dramatiq actor that delivers it.

* The reply and its outbox row are stored in one transaction (core.tickets); after commit the row
  id is enqueued.
* The actor claims the row with one conditional UPDATE (pending, or a claim that expired), so two
  workers never send the same row; it calls the channel's connector outside any transaction and
  records the outcome.
* A retryable failure puts the row back to pending and raises, so dramatiq retries it with backoff;
  a final failure (or a permanent one, such as a closed reply window) marks the message failed and
  tells the agent why through an event.
* The sweeper re-enqueues rows that a crash left behind.

Embedded mode: deliveries are tasks on the hub's own loop (:class:`Outbox`). With Redis configured:
a RedisBroker, and ``channelhub worker`` processes run the actor, handing each delivery to their
hub's loop.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import dramatiq
from sqlalchemy import or_, select, update

from core.channels import Attachment, OutboundMessage
from core.config import Settings
from core.errors import DeliveryError
from core.events import EventKind, EventLog
from core.models import Agent, CustomerIdentity, DeliveryState, Direction, Message, OutboxItem, Ticket, utcnow

if TYPE_CHECKING:
    from core.hub import Hub

logger = logging.getLogger(__name__)

QUEUE = "outbox"
MAX_ATTEMPTS = 8
CLAIM_SECONDS = 60
# Dramatiq's own backoff between tries (ms); the row's attempts are the source of truth.
MIN_BACKOFF_MS = 500
MAX_BACKOFF_MS = 60_000

class RetryLater(Exception):
    """Raised from the dramatiq actor so dramatiq retries the delivery with backoff."""


def backoff_seconds(attempt: int) -> float:
    """How long to wait before try ``attempt + 1`` (attempt counts from 1)."""
    return min(MIN_BACKOFF_MS << max(attempt - 1, 0), MAX_BACKOFF_MS) / 1000


class Outbox:
    """One per hub: hands outbox rows to delivery and runs the deliveries this process takes.

    Embedded mode (no Redis): the queue is this hub's own event loop. A row is delivered by a task
    right after its reply commits, at most ``worker_threads`` at once, and a retry is scheduled on
    the loop after its backoff; the sweeper re-enqueues what a crash left in the table.

    With Redis: a dramatiq ``RedisBroker`` carries the row ids to whichever process runs workers
    (``channelhub worker``, or ``serve`` with ``CHANNELHUB_EMBEDDED_WORKER=1``). The actor runs on
    a dramatiq worker thread and hands the delivery over to this hub's loop, so a process still
    has one hub, one set of engines and one loop; dramatiq keeps the retries and their backoff.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.settings: Settings = hub.settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max(self.settings.worker_threads, 1))
        self._worker: dramatiq.Worker | None = None
        self._broker: dramatiq.Broker | None = None
        self._enqueue_failing = False
        self._actor: Any = None
        if self.settings.redis_url:
            from dramatiq.brokers.redis import RedisBroker

            self._broker = RedisBroker(url=self.settings.redis_url,  # type: ignore[no-untyped-call]
                                       namespace=f"{self.settings.queue_namespace}-dramatiq")
            self._actor = dramatiq.actor(
                actor_name="channelhub.deliver",
                queue_name=QUEUE,
                broker=self._broker,
                max_retries=MAX_ATTEMPTS,
                min_backoff=MIN_BACKOFF_MS,
                max_backoff=MAX_BACKOFF_MS,
                # Any failure (a channel's, or the database's before the send) is tried again; the claim
                # on the row keeps a retry from overlapping a delivery still in progress.
                retry_when=lambda retries, exc: retries < MAX_ATTEMPTS,
            )(self._deliver_on_hub_loop)

    def start(self, *, worker: bool, threads: int | None = None) -> None:
        """Begin taking deliveries in this process: always in the embedded mode; with Redis only
        when ``worker`` (dramatiq worker threads consuming the shared queue)."""
        self._loop = asyncio.get_running_loop()
        if worker and self._broker is not None and self._worker is None:
            # A short worker_timeout keeps the Redis consumer's idle polling (and so latency) low.
            self._worker = dramatiq.Worker(self._broker, worker_threads=threads or self.settings.worker_threads,
                                           worker_timeout=100)
            self._worker.start()

    async def stop(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            # Its threads may be waiting on this loop: stop them from another thread.
            await asyncio.to_thread(worker.stop, 5000)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._broker is not None:
            await asyncio.to_thread(self._broker.close)

    async def enqueue(self, outbox_ids: list[int]) -> None:
        if self._broker is None:
            for oid in outbox_ids:
                self._spawn(oid, 0.0, 1)
            return
        # redis-py is blocking: keep it off the event loop.
        actor = self._actor
        try:
            await asyncio.to_thread(lambda: [actor.send(oid) for oid in outbox_ids])
        except Exception as exc:
            # The rows are committed, pending: the sweeper enqueues them again once Redis answers.
            # Never a failure of the request that stored them; logged once per outage.
            if not self._enqueue_failing:
                self._enqueue_failing = True
                logger.warning("outbox enqueue failed (%s); the sweeper will take the rows", exc)
            return
        if self._enqueue_failing:
            self._enqueue_failing = False
            logger.info("outbox enqueues again")

    # --- embedded: tasks on the hub's loop ---------------------------------------------------------
    def _spawn(self, outbox_id: int, delay: float, attempt: int) -> None:
        task = asyncio.get_running_loop().create_task(self._run(outbox_id, delay, attempt),
                                                      name=f"deliver-{outbox_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, outbox_id: int, delay: float, attempt: int) -> None:
        if delay:
            await asyncio.sleep(delay)
        try:
            async with self._slots:
                outcome = await deliver(self.hub, outbox_id)
        except Exception:
            # The database failed before the channel was called: the row is still claimable.
            logger.warning("delivery of outbox %s failed; retrying", outbox_id, exc_info=True)
            outcome = "retry"
        if outcome == "retry" and attempt < MAX_ATTEMPTS:
            self._spawn(outbox_id, backoff_seconds(attempt), attempt + 1)

    # --- with Redis: dramatiq's worker threads hand over to the hub's loop -------------------------
    def _deliver_on_hub_loop(self, outbox_id: int) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            raise RetryLater("this process's hub is not running")
        future = asyncio.run_coroutine_threadsafe(deliver(self.hub, outbox_id), loop)
        try:
            # A delivery that outlasts its claim is taken over by another try anyway.
            outcome = future.result(timeout=2 * CLAIM_SECONDS)
        except TimeoutError:
            future.cancel()
            raise RetryLater(f"outbox {outbox_id} took longer than its claim; retrying") from None
        if outcome == "retry":
            raise RetryLater(f"outbox {outbox_id} will be retried")


async def deliver(hub: Hub, outbox_id: int) -> str:
    """Deliver one outbox row. Returns "sent", "retry", "failed" or "skipped": another process holds
    it, or it is of a channel this hub does not serve (a process delivers only for its own channels;
    one that serves the channel takes the row, from the queue or the sweeper)."""
    now = utcnow()
    async with hub.db.session() as session:
        claimed = await session.execute(
            update(OutboxItem)
            .where(
                OutboxItem.id == outbox_id,
                OutboxItem.channel.in_(list(hub.connectors)),
                or_(
                    OutboxItem.state == DeliveryState.PENDING,
                    (OutboxItem.state == DeliveryState.SENDING) & (OutboxItem.locked_until < now),
                ),
            )
            .values(state=DeliveryState.SENDING, attempts=OutboxItem.attempts + 1,
                    locked_until=now + timedelta(seconds=CLAIM_SECONDS))
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            return "skipped"
        row = (
            await session.execute(
                select(OutboxItem, Message, Ticket, CustomerIdentity, Agent)
                .join(Message, Message.id == OutboxItem.message_id)
                .join(Ticket, Ticket.id == Message.ticket_id)
                .outerjoin(CustomerIdentity, CustomerIdentity.id == Ticket.identity_id)
                .outerjoin(Agent, Agent.id == Message.author_agent_id)
                .where(OutboxItem.id == outbox_id)
            )
        ).one()
    item, message, ticket, identity, agent = row
    connector = hub.connectors[item.channel]  # the claim took only rows of our channels
    error: DeliveryError | None = None
    channel_message_id: str | None = None
    if identity is None:
        error = DeliveryError("the ticket has no customer identity to send to", retry=False, code="no_identity")
    else:
        out = OutboundMessage(
            tenant_id=item.tenant_id, channel=item.channel, external_id=identity.external_id, text=message.body,
            message_id=message.id, ticket_id=ticket.id,
            attachments=tuple(Attachment(**a) for a in (message.attachments or [])),
            author_name=agent.name if agent else None, created_at=message.created_at,
        )
        try:
            channel_message_id = await connector.send(out)
        except DeliveryError as exc:
            error = exc
        except Exception as exc:  # a connector bug or network trouble: worth another try
            logger.warning("delivery of outbox %s raised %r", outbox_id, exc)
            error = DeliveryError(f"{type(exc).__name__}: {exc}", retry=True)
    # The channel has answered: recording that must not be lost to a passing database error, or the
    # sweeper would send the reply again once the claim runs out.
    for attempt in range(5):
        try:
            return await _record(hub, item, message, ticket, channel_message_id, error)
        except Exception:
            if attempt == 4:
                raise
            logger.warning("recording the delivery of outbox %s failed; trying again", outbox_id, exc_info=True)
            await asyncio.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


async def _record(
    hub: Hub, item: OutboxItem, message: Message, ticket: Ticket, channel_message_id: str | None,
    error: DeliveryError | None,
) -> str:
    now = utcnow()
    final = error is None or not error.retry or item.attempts >= MAX_ATTEMPTS
    if error is None:
        state, outcome = DeliveryState.SENT, "sent"
    elif final:
        state, outcome = DeliveryState.FAILED, "failed"
    else:
        state, outcome = DeliveryState.PENDING, "retry"
    backoff = backoff_seconds(item.attempts)
    async with hub.db.session(item.tenant_id) as session:
        await session.execute(
            update(OutboxItem).where(OutboxItem.id == item.id).values(
                state=state, locked_until=None, sent_at=now if error is None else None,
                last_error=None if error is None else f"{error.code}: {error.message}"[:2000],
                next_attempt_at=now + timedelta(seconds=backoff),
            ).execution_options(synchronize_session=False)
        )
        if final:
            await session.execute(
                update(Message).where(Message.id == message.id).values(
                    delivery_state=state, channel_message_id=channel_message_id, sent_at=now if error is None else None
                ).execution_options(synchronize_session=False)
            )
            log = EventLog(session)
            payload: dict[str, Any] = {"message_id": message.id, "delivery_state": state.value,
                                       "channel_message_id": channel_message_id}
            if error is not None:
                payload["error"] = {"code": error.code, "message": error.message}
            log.add(EventKind.MESSAGE_DELIVERY, tenant_id=item.tenant_id, ticket=ticket, payload=payload)
            await session.flush()
            events = await log.flush()
        else:
            events = []
    if error is not None:
        logger.info("outbox %s: %s (%s)", item.id, outcome, error.code)
    await hub.publish(item.tenant_id, events)
    return outcome


async def sweep(hub: Hub, *, grace_seconds: float = 30.0, limit: int = 500) -> int:
    """Re-enqueue rows a crash or a lost queue message left behind; the claim keeps this harmless."""
    now = utcnow()
    async with hub.db.read() as session:
        ids = list(
            (
                await session.execute(
                    select(OutboxItem.id)
                    .where(
                        OutboxItem.channel.in_(list(hub.connectors)),
                        or_(
                            (OutboxItem.state == DeliveryState.PENDING)
                            & (OutboxItem.next_attempt_at < now - timedelta(seconds=grace_seconds)),
                            (OutboxItem.state == DeliveryState.SENDING) & (OutboxItem.locked_until < now),
                        )
                    )
                    .order_by(OutboxItem.id)
                    .limit(limit)
                )
            ).scalars()
        )
    if ids:
        logger.info("sweeper re-enqueues %d outbox rows", len(ids))
        await hub.outbox.enqueue(ids)
    return len(ids)


async def mark_failed_after_send(hub: Hub, tenant_id: int, message_id: int, error: DeliveryError) -> bool:
    """A reply the channel took and later reported undeliverable (an e-mail bounce): the message is
    marked failed and its agent told why, as for a delivery that failed outright. Returns whether
    such a reply was found (another tenant's id, or an inbound message, is not one)."""
    async with hub.db.session(tenant_id) as session:
        row = (await session.execute(
            select(Message, Ticket).join(Ticket, Ticket.id == Message.ticket_id)
            .where(Message.id == message_id, Message.direction == Direction.OUTBOUND).with_for_update(of=Message)
        )).one_or_none()
        if row is None:
            return False
        message, ticket = row
        await session.execute(
            update(Message).where(Message.id == message_id).values(delivery_state=DeliveryState.FAILED)
            .execution_options(synchronize_session=False))
        await session.execute(
            update(OutboxItem).where(OutboxItem.message_id == message_id)
            .values(state=DeliveryState.FAILED, last_error=f"{error.code}: {error.message}"[:2000])
            .execution_options(synchronize_session=False))
        log = EventLog(session)
        log.add(EventKind.MESSAGE_DELIVERY, tenant_id=tenant_id, ticket=ticket,
                payload={"message_id": message.id, "delivery_state": DeliveryState.FAILED.value,
                         "channel_message_id": message.channel_message_id,
                         "error": {"code": error.code, "message": error.message}})
        events = await log.flush()
    await hub.publish(tenant_id, events)
    return True
