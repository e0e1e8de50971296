"""The event bus: in-process in the embedded mode, Redis pub/sub across processes.

Topics are plain strings (``tenant:<id>`` for agent-facing events, ``visitor:<tenant>:<id>`` for a
web chat customer). State is always written to the database before it is published, so a
subscriber that misses a publication (it was reconnecting) catches up from the database.

Subscribers register a plain callable; it is always called on the event loop it subscribed from,
even when the publisher runs on another thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

Callback = Callable[[dict[str, Any]], None]


class Subscription:
    def __init__(self, bus: Bus, topic: str, callback: Callback, loop: asyncio.AbstractEventLoop) -> None:
        self.bus, self.topic, self.callback, self.loop = bus, topic, callback, loop

    def close(self) -> None:
        self.bus._remove(self)


class Bus:
    """Local fan-out shared by both kinds: who listens to which topic in this process."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._lock = threading.Lock()

    def subscribe(self, topic: str, callback: Callback) -> Subscription:
        sub = Subscription(self, topic, callback, asyncio.get_running_loop())
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
        for sub in subs:
            try:
                if sub.loop.is_closed():
                    sub.close()
                    continue
                sub.loop.call_soon_threadsafe(_safe_call, sub.callback, data)
            except RuntimeError:  # the loop closed between the check and the call
                sub.close()

    async def publish(self, topic: str, data: dict[str, Any]) -> None:
        raise NotImplementedError

    async def publish_many(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        for topic, data in items:
            await self.publish(topic, data)

    async def start(self) -> None:
        """Begin receiving from other processes (no-op for the in-process bus)."""

    async def close(self) -> None:
        """Stop receiving and release connections."""


def _safe_call(callback: Callback, data: dict[str, Any]) -> None:
    try:
        callback(data)
    except Exception:  # a faulty subscriber must not break the others
        logger.exception("bus subscriber failed")


class InProcessBus(Bus):
    """The embedded mode's bus, one per hub: everything that publishes (web app, inbox, router,
    outbox) runs on that hub."""

    async def publish(self, topic: str, data: dict[str, Any]) -> None:
        self._dispatch(topic, data)


class RedisBus(Bus):
    """All processes publish to and listen on one Redis channel; each dispatches locally by topic.

    One channel keeps the subscriber side simple and cheap (one connection, no per-visitor
    SUBSCRIBE churn); payloads are small JSON.
    """

    def __init__(self, url: str, namespace: str = "channelhub") -> None:
        super().__init__()
        self.url = url
        self.channel = f"{namespace}:bus"
        self._client: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def _redis(self) -> Any:
        if self._client is None:
            import redis.asyncio as aioredis

            self._client = aioredis.from_url(self.url)
        return self._client

    async def publish(self, topic: str, data: dict[str, Any]) -> None:
        await self._redis().publish(self.channel, json.dumps({"t": topic, "d": data}, default=str))

    async def publish_many(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        if not items:
            return
        async with self._redis().pipeline(transaction=False) as pipe:
            for topic, data in items:
                pipe.publish(self.channel, json.dumps({"t": topic, "d": data}, default=str))
            await pipe.execute()

    async def start(self) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="redis-bus-listener")
            await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def _listen(self) -> None:
        delay = 0.2
        while True:
            pubsub = self._redis().pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._ready.set()
                delay = 0.2
                async for item in pubsub.listen():
                    if item.get("type") != "message":
                        continue
                    try:
                        envelope = json.loads(item["data"])
                        self._dispatch(envelope["t"], envelope["d"])
                    except (ValueError, KeyError, TypeError):
                        logger.warning("dropped a malformed bus message")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Subscribers catch up from the database on their next reconnect or poll.
                logger.warning("redis bus connection lost (%s); reconnecting in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except (asyncio.CancelledError, Exception):
                pass
            self._listener = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def make_bus(redis_url: str | None, namespace: str = "channelhub") -> Bus:
    """A hub's bus: Redis pub/sub shared by all processes, or (embedded) one of its own."""
    if redis_url:
        return RedisBus(redis_url, namespace)
    return InProcessBus()
