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

Embedded mode: a StubBroker and worker threads in the serving process. With Redis configured: a
RedisBroker, and ``channelhub worker`` processes run the actor.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO
from sqlalchemy import or_, select, update

from connectors.base import Attachment, OutboundMessage
from core.config import Settings
from core.errors import DeliveryError
from core.events import EventKind, EventLog
from core.models import Agent, CustomerIdentity, DeliveryState, Message, OutboxItem, Ticket, utcnow

logger = logging.getLogger(__name__)

QUEUE = "outbox"
MAX_ATTEMPTS = 8
CLAIM_SECONDS = 60
# Dramatiq's own backoff between tries (ms); the row's attempts are the source of truth.
MIN_BACKOFF_MS = 500
MAX_BACKOFF_MS = 60_000

_lock = threading.Lock()
_broker: dramatiq.Broker | None = None
_actor: Any = None
_settings: Settings | None = None
_worker: dramatiq.Worker | None = None
# The hub each dramatiq event loop uses (engines and connections are bound to one loop).
_loop_hubs: dict[int, Any] = {}


class RetryLater(Exception):
    """Raised from the actor so dramatiq retries the delivery with backoff."""


def setup(settings: Settings) -> dramatiq.Broker:
    """Create the process's broker and actor once (dramatiq's broker is process-global)."""
    global _broker, _actor, _settings
    with _lock:
        _settings = settings
        if _broker is not None:
            return _broker
        broker: dramatiq.Broker
        if settings.redis_url:
            from dramatiq.brokers.redis import RedisBroker

            broker = RedisBroker(url=settings.redis_url, namespace=f"{settings.queue_namespace}-dramatiq")
        else:
            broker = StubBroker()
        broker.add_middleware(AsyncIO())
        dramatiq.set_broker(broker)
        _actor = dramatiq.actor(
            actor_name="channelhub.deliver",
            queue_name=QUEUE,
            broker=broker,
            max_retries=MAX_ATTEMPTS,
            min_backoff=MIN_BACKOFF_MS,
            max_backoff=MAX_BACKOFF_MS,
            # Any failure (a channel's, or the database's before the send) is tried again; the claim
            # on the row keeps a retry from overlapping a delivery still in progress.
            retry_when=lambda retries, exc: retries < MAX_ATTEMPTS,
        )(_deliver_actor)
        _broker = broker
        return broker


def start_worker(settings: Settings, *, threads: int | None = None) -> bool:
    """Start this process's worker threads; False when they were already running (not ours to stop)."""
    global _worker
    broker = setup(settings)
    with _lock:
        if _worker is not None:
            return False
        # A short worker_timeout keeps the Redis consumer's idle polling (and so latency) low.
        _worker = dramatiq.Worker(broker, worker_threads=threads or settings.worker_threads, worker_timeout=100)
        _worker.start()
        return True


def stop_worker() -> None:
    global _worker
    with _lock:
        worker, _worker = _worker, None
    if worker is None:
        return
    from dramatiq.asyncio import get_event_loop_thread

    loop_thread = get_event_loop_thread()
    if loop_thread is not None:
        for key, hub in list(_loop_hubs.items()):
            try:
                loop_thread.run_coroutine(hub.close())
            except Exception:
                logger.exception("closing the worker hub failed")
            _loop_hubs.pop(key, None)
    worker.stop(timeout=5000)


async def enqueue(settings: Settings, outbox_ids: list[int]) -> None:
    setup(settings)
    assert _actor is not None
    if isinstance(_broker, StubBroker):
        for oid in outbox_ids:
            _actor.send(oid)
        return
    # redis-py is blocking: keep it off the event loop.
    await asyncio.to_thread(lambda: [_actor.send(oid) for oid in outbox_ids])


async def _worker_hub() -> Any:
    from core.hub import Hub

    key = id(asyncio.get_running_loop())
    hub = _loop_hubs.get(key)
    if hub is None:
        assert _settings is not None, "outbox.setup() was not called"
        hub = Hub(_settings)
        _loop_hubs[key] = hub
    return hub


async def _deliver_actor(outbox_id: int) -> None:
    hub = await _worker_hub()
    outcome = await deliver(hub, outbox_id)
    if outcome == "retry":
        raise RetryLater(f"outbox {outbox_id} will be retried")


async def deliver(hub: Any, outbox_id: int) -> str:
    """Deliver one outbox row. Returns "sent", "retry", "failed" or "skipped" (not ours to send)."""
    now = utcnow()
    async with hub.db.session() as session:
        claimed = await session.execute(
            update(OutboxItem)
            .where(
                OutboxItem.id == outbox_id,
                or_(
                    OutboxItem.state == DeliveryState.PENDING,
                    (OutboxItem.state == DeliveryState.SENDING) & (OutboxItem.locked_until < now),
                ),
            )
            .values(state=DeliveryState.SENDING, attempts=OutboxItem.attempts + 1,
                    locked_until=now + timedelta(seconds=CLAIM_SECONDS))
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:
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
    connector = hub.connector(item.channel)
    error: DeliveryError | None = None
    channel_message_id: str | None = None
    if connector is None:
        error = DeliveryError(f"no connector for channel {item.channel!r}", retry=False, code="no_connector")
    elif identity is None:
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
    hub: Any, item: OutboxItem, message: Message, ticket: Ticket, channel_message_id: str | None,
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
    backoff = min(MIN_BACKOFF_MS * 2 ** (item.attempts - 1), MAX_BACKOFF_MS) / 1000
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


async def sweep(hub: Any, *, grace_seconds: float = 30.0, limit: int = 500) -> int:
    """Re-enqueue rows a crash or a lost queue message left behind; the claim keeps this harmless."""
    now = utcnow()
    async with hub.db.read() as session:
        ids = list(
            (
                await session.execute(
                    select(OutboxItem.id)
                    .where(
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
        await enqueue(hub.settings, ids)
    return len(ids)
