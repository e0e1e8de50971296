"""The event bus: in-process in the embedded mode, Redis pub/sub across processes.

Topics are plain strings (``tenant:<id>`` for agent-facing events, ``visitor:<tenant>:<id>`` for a
web chat customer). State is always written to the database before it is published, so a
subscriber that misses a publication (it was reconnecting) catches up from the database.

Subscribers register a plain callable; it is always called on the event loop it subscribed from,
even when the publisher runs on another thread.

The bus may lose publications (Redis stopped, a connection dropped), but it never strands an event:
- a publication that fails is logged (once per outage) and never raises to the publisher, whose
  state is committed already; it is still dispatched to this process's subscribers;
- whenever a subscriber may have missed something, the bus calls the subscription's ``catch_up``
  (a coroutine function, given the earliest time something may have been missed), and the
  subscriber reads what it missed from the database by id: when the listener reconnects after
  losing Redis, and when another process announces (once Redis answers again) that its
  publications failed. Catch-ups are coalesced per subscription and run a few at a time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from core.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

Callback = Callable[[dict[str, Any]], None]
# Reads what may have been missed since the given time (from the database, by id).
CatchUp = Callable[[datetime], Awaitable[None]]

# A catch-up costs a database read: this many run at once per event loop, the rest wait their turn.
CATCH_UP_CONCURRENCY = 8
# The control topic on which a process announces, once Redis answers again, that some of its
# publications failed; every process then has its subscribers catch up.
RESYNC_TOPIC = "bus:resync"


class Subscription:
    def __init__(self, bus: Bus, topic: str, callback: Callback, loop: asyncio.AbstractEventLoop,
                 catch_up: CatchUp | None = None) -> None:
        self.bus, self.topic, self.callback, self.loop = bus, topic, callback, loop
        self.catch_up = catch_up
        self._task: asyncio.Task[None] | None = None
        self._pending: datetime | None = None  # the earliest time of a gap not yet caught up
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.bus._remove(self)
        if self._task is not None:
            self._task.cancel()

    def missed(self, since: datetime) -> None:
        """Something may have been missed since ``since``: catch up (on the subscriber's loop)."""
        if self.catch_up is None or self.closed:
            return
        self._pending = since if self._pending is None else min(self._pending, since)
        if self._task is None or self._task.done():
            self._task = self.loop.create_task(self._catch_up(), name=f"bus-catch-up {self.topic}")

    async def _catch_up(self) -> None:
        assert self.catch_up is not None
        attempt = 0
        while self._pending is not None and not self.closed:
            since, self._pending = self._pending, None
            try:
                async with self.bus._catch_up_slots(self.loop):
                    await self.catch_up(since)
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database blinked too: try again (bounded), the gap is still there.
                attempt += 1
                logger.warning("catch-up of %s failed (attempt %d)", self.topic, attempt, exc_info=True)
                if attempt >= 5:
                    return
                self._pending = since if self._pending is None else min(self._pending, since)
                await asyncio.sleep(0.2 * 2 ** attempt)


class Bus:
    """Local fan-out shared by both kinds: who listens to which topic in this process."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._lock = threading.Lock()
        # Per event loop (subscribers live on the hub's loop; a semaphore serves one loop).
        self._slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    def subscribe(self, topic: str, callback: Callback, *, catch_up: CatchUp | None = None) -> Subscription:
        """Call ``callback`` with each publication on ``topic``; and ``catch_up`` whenever this
        subscriber may have missed some (see the module's doc)."""
        sub = Subscription(self, topic, callback, asyncio.get_running_loop(), catch_up)
        with self._lock:
            self._subs[topic].add(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.topic)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.topic]

    def _dispatch(self, topic: str, data: dict[str, Any]) -> None:
        with self._lock:
            subs = list(self._subs.get(topic, ()))
        if not subs:
            return
        # One callback per loop, calling each of its subscribers in turn: a tenant's topic has a
        # subscriber per agent socket, and a loop callback apiece cost more than most of them.
        by_loop: dict[asyncio.AbstractEventLoop, list[Callback]] = {}
        for sub in subs:
            if sub.loop.is_closed():
                sub.close()
            else:
                by_loop.setdefault(sub.loop, []).append(sub.callback)
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for loop, callbacks in by_loop.items():
            try:
                if loop is here:
                    # The usual case (the hub's own loop): no wake-up through its self-pipe.
                    loop.call_soon(_call_each, callbacks, data)
                else:
                    loop.call_soon_threadsafe(_call_each, callbacks, data)
            except RuntimeError:  # the loop closed between the check and the call
                for sub in subs:
                    if sub.loop is loop:
                        sub.close()

    def _catch_up_slots(self, loop: asyncio.AbstractEventLoop) -> asyncio.Semaphore:
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(CATCH_UP_CONCURRENCY)
        return slots

    def _missed(self, since: datetime) -> None:
        """Every local subscriber may have missed what was published since ``since``."""
        with self._lock:
            subs = [sub for topic_subs in self._subs.values() for sub in topic_subs]
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub.missed, since)
            except RuntimeError:  # its loop closed
                sub.close()

    async def publish(self, topic: str, data: dict[str, Any]) -> None:
        await self.publish_many([(topic, data)])

    async def publish_many(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Publish; never raises (what is published is committed already, see the module's doc)."""
        if items:
            await self._send(items)

    async def _send(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Begin receiving from other processes (no-op for the in-process bus)."""

    async def check(self, timeout: float) -> None:
        """Raise if this process would not hear what other processes publish now (readiness,
        web/ops.py). The in-process bus has no other processes: always fine."""

    async def close(self) -> None:
        """Stop receiving and release connections."""


def _call_each(callbacks: list[Callback], data: dict[str, Any]) -> None:
    for callback in callbacks:
        try:
            callback(data)
        except Exception:  # a faulty subscriber must not break the others
            logger.exception("bus subscriber failed")


class InProcessBus(Bus):
    """The embedded mode's bus, one per hub: everything that publishes (web app, inbox, router,
    outbox) runs on that hub."""

    async def _send(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        for topic, data in items:
            self._dispatch(topic, data)


class RedisBus(Bus):
    """All processes publish to and listen on one Redis channel; each dispatches locally by topic.

    One channel keeps the subscriber side simple and cheap (one connection, no per-visitor
    SUBSCRIBE churn); payloads are small JSON.

    Losing Redis: a failed publication is dispatched locally and the bus is "down"; while it is,
    publications go only to local subscribers (no request waits on a dead Redis), and a task
    probes Redis until it answers, then announces the gap on :data:`RESYNC_TOPIC`. The listener
    reconnects with backoff; once subscribed again it has local subscribers catch up from when
    it lost the connection. Its connection does not retry by itself, so no loss goes unnoticed.

    Publishing: every publication of the process joins one queue, and one task sends whatever
    queued while its previous round trip was in flight as one pipeline. A thousand sockets
    publishing at once cost a few round trips on one connection, not a thousand round trips on
    as many pooled connections (the pool has a hundred; past that redis-py refuses, and the bus
    would count Redis as down and have every subscriber catch up). ``publish`` returns once the
    publication is queued, in order.
    """

    # Publications sent per round trip at the most.
    PUBLISH_BATCH = 1000
    # A queue this long means Redis is not keeping up: count it as down (subscribers catch up).
    MAX_OUTGOING = 100_000

    def __init__(self, url: str, namespace: str = "channelhub", *, retry_delay: float = 0.2,
                 max_retry_delay: float = 2.0) -> None:
        super().__init__()
        self.url = url
        self.channel = f"{namespace}:bus"
        self.retry_delay, self.max_retry_delay = retry_delay, max_retry_delay
        self._client: Any = None
        self._listen_client: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._down_since: datetime | None = None  # publications are failing since then
        self._recovery: asyncio.Task[None] | None = None
        self._outgoing: deque[tuple[str, dict[str, Any]]] = deque()
        self._outgoing_ready = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None
        # The listener's subscription while it is subscribed (None while it reconnects), and the
        # readiness checks' PINGs waiting for their PONG through it (:meth:`check`).
        self._pubsub: Any = None
        self._pongs: dict[str, asyncio.Future[None]] = {}

    def _redis(self) -> Any:
        if self._client is None:
            import redis.asyncio as aioredis

            # Bounded: a Redis that does not answer must not hold a request up for long.
            self._client = aioredis.from_url(self.url, socket_connect_timeout=2.0, socket_timeout=5.0)
        return self._client

    def _envelope(self, topic: str, data: dict[str, Any]) -> str:
        return json.dumps({"t": topic, "d": data}, default=str)

    async def _send(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        if self._down_since is not None:
            # Redis is down: this process's subscribers get it now; the others catch up (the
            # events are rows already), told by the announcement the recovery task makes.
            self._dispatch_here(items)
            return
        self._outgoing.extend(items)
        if len(self._outgoing) > self.MAX_OUTGOING:
            self._went_down(RuntimeError(f"{len(self._outgoing)} publications waiting"))
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.get_running_loop().create_task(self._publish_loop(),
                                                                     name="redis-bus-publisher")
        self._outgoing_ready.set()

    def _dispatch_here(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        for topic, data in items:
            self._dispatch(topic, data)

    async def _publish_loop(self) -> None:
        while True:
            await self._outgoing_ready.wait()
            self._outgoing_ready.clear()
            while self._outgoing:
                batch = [self._outgoing.popleft() for _ in range(min(len(self._outgoing), self.PUBLISH_BATCH))]
                if self._down_since is not None:
                    self._dispatch_here(batch)
                    continue
                try:
                    async with self._redis().pipeline(transaction=False) as pipe:
                        for topic, data in batch:
                            pipe.publish(self.channel, self._envelope(topic, data))
                        await pipe.execute()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._went_down(exc)
                    self._dispatch_here(batch)

    def _went_down(self, exc: BaseException) -> None:
        if self._down_since is not None:
            return
        # Once per outage, not once per publication.
        logger.warning("redis bus publish failed (%s); events stay in the events table and subscribers "
                       "catch up when it answers again", exc)
        self._down_since = datetime.now(UTC)
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.get_running_loop().create_task(self._recover(), name="redis-bus-recovery")

    async def _recover(self) -> None:
        delay = self.retry_delay
        while self._down_since is not None:
            await asyncio.sleep(delay)
            since = self._down_since
            try:
                await self._redis().publish(self.channel, self._envelope(RESYNC_TOPIC, {"since": since.isoformat()}))
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = min(delay * 2, self.max_retry_delay)
                continue
            self._down_since = None
            logger.info("redis bus publishes again (it failed for %.1fs)",
                           (datetime.now(UTC) - since).total_seconds())
            # Our own announcement comes back through the listener, which tells local subscribers.

    async def ping(self) -> None:
        """A PING through the publishing connection pool (readiness: Redis answers)."""
        await self._redis().ping()

    async def check(self, timeout: float) -> None:
        """The listener's own connection carries messages: a PING sent on the subscribed
        connection comes back as a PONG through the listener, in order behind any publication
        still unread. A listener that is reconnecting, or whose connection went quiet (a dead
        peer that never closed it), fails here though a fresh PING on another connection would
        pass. Publications that fail (other processes do not hear this one) fail it too."""
        if self._down_since is not None:
            raise ConnectionError(f"bus publications are failing since {self._down_since.isoformat()} "
                                  "(other processes catch up once Redis answers)")
        pubsub = self._pubsub
        connection = getattr(pubsub, "connection", None)
        if pubsub is None or connection is None or not connection.is_connected:
            raise ConnectionError("the bus listener is not subscribed (reconnecting to Redis)")
        token = uuid.uuid4().hex
        waiter = self._pongs[token] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await pubsub.ping(token)
                await waiter
        except TimeoutError:
            raise TimeoutError(f"the bus listener did not hear its PING back within {timeout}s") from None
        finally:
            self._pongs.pop(token, None)

    def _pong(self, data: bytes | str) -> None:
        token = data.decode() if isinstance(data, bytes) else data
        waiter = self._pongs.get(token)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_message(self, raw: bytes | str) -> None:
        try:
            envelope = json.loads(raw)
            topic, data = envelope["t"], envelope["d"]
            if topic == RESYNC_TOPIC:
                self._missed(datetime.fromisoformat(data["since"]))
            else:
                self._dispatch(topic, data)
        except (ValueError, KeyError, TypeError):
            logger.warning("dropped a malformed bus message")

    async def start(self) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="redis-bus-listener")
            await asyncio.wait_for(self._ready.wait(), timeout=10)

    def _listener_redis(self) -> Any:
        if self._listen_client is None:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # No silent reconnection: redis-py would re-subscribe by itself after a short blink, and
            # what was published meanwhile would be missed without anyone knowing.
            self._listen_client = aioredis.from_url(self.url, retry=Retry(NoBackoff(), 0),
                                                    socket_connect_timeout=2.0)
        return self._listen_client

    async def _listen(self) -> None:
        delay = self.retry_delay
        lost_at: datetime | None = None
        while True:
            pubsub = self._listener_redis().pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._pubsub = pubsub
                self._ready.set()
                delay = self.retry_delay
                if lost_at is not None:
                    logger.info("redis bus listener subscribed again; subscribers catch up")
                    self._missed(lost_at)
                    lost_at = None
                async for item in pubsub.listen():
                    kind = item.get("type")
                    if kind == "message":
                        self._on_message(item["data"])
                    elif kind == "pong":
                        self._pong(item["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._pubsub = None  # not ready while it waits to reconnect
                if lost_at is None:
                    lost_at = datetime.now(UTC)
                    logger.warning("redis bus connection lost (%s); reconnecting", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)
            finally:
                self._pubsub = None
                try:
                    await pubsub.aclose()
                except Exception:
                    pass

    async def close(self) -> None:
        # What was published is sent before the connection closes (briefly: Redis may be gone).
        for _ in range(200):
            if not self._outgoing or self._publisher is None or self._publisher.done():
                break
            await asyncio.sleep(0.01)
        await cancel_and_wait(self._listener, self._recovery, self._publisher)
        self._listener = self._recovery = self._publisher = None
        for client in (self._client, self._listen_client):
            if client is not None:
                await client.aclose()
        self._client = self._listen_client = None


def make_bus(redis_url: str | None, namespace: str = "channelhub") -> Bus:
    """A hub's bus: Redis pub/sub shared by all processes, or (embedded) one of its own."""
    if redis_url:
        return RedisBus(redis_url, namespace)
    return InProcessBus()
