"""The hub: what one process (or one worker event loop) holds — database, bus, router, connectors."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from core.bus import Bus, make_bus
from core.config import Settings
from core.db import Database
from core.events import tenant_topic
from core.inbox import Inbox
from routing.router import Router

if TYPE_CHECKING:
    from connectors.base import Connector

logger = logging.getLogger(__name__)


class Hub:
    def __init__(self, settings: Settings) -> None:
        from connectors.registry import build_connectors

        self.settings = settings
        self.db = Database(settings.database_url, pool_size=settings.db_pool_size)
        self.bus: Bus = make_bus(settings.redis_url, settings.queue_namespace)
        self.connectors: dict[str, Connector] = build_connectors(self)
        self.router = Router(self)
        self.inbox = Inbox(self)

    async def start(self) -> None:
        await self.bus.start()
        for connector in self.connectors.values():
            await connector.start()

    async def close(self) -> None:
        for connector in self.connectors.values():
            try:
                await connector.stop()
            except Exception:
                logger.exception("connector %s failed to stop", connector.kind)
        await self.bus.close()
        await self.db.dispose()

    def connector(self, kind: str) -> Connector | None:
        found = self.connectors.get(kind)
        if found is None:
            # A channel registered after this hub was built (connectors.registry.register).
            from connectors.registry import connector_class

            cls = connector_class(kind)
            if cls is not None:
                found = self.connectors[kind] = cls(self)
        return found

    async def publish(self, tenant_id: int, events: list[dict[str, Any]]) -> None:
        """Publish events already committed to the database."""
        if events:
            await self.bus.publish_many([(tenant_topic(tenant_id), e) for e in events])

    async def enqueue_delivery(self, outbox_ids: list[int]) -> None:
        from core.outbox import enqueue

        await enqueue(self.settings, outbox_ids)
