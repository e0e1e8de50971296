"""The hub: what one process holds — settings, database, bus, inbox, router, outbox, connectors.

Core builds none of the layers above it: the composition root (``channelhub.app``) hands the hub
its channels (``connectors.registry.CHANNELS``) and the router to use (``routing.router.Router``),
so core imports no channel and nothing of routing. There is one hub per process, on the process's
event loop: the web app, the inbox, the router and the outbox's delivery all share it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from core.auth import Principals, SessionWatch
from core.batching import LoopLag
from core.breakers import Breakers
from core.bus import Bus, make_bus
from core.channels import ChannelInfo, Connector
from core.config import Settings
from core.csat import Surveys
from core.db import Database
from core.events import tenant_topic
from core.exports import Exporter
from core.inbox import Inbox
from core.logins import LoginGuard
from core.outbox import Outbox
from core.tenancy import TenantResolver
from core.ticket_writes import TicketWrites

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from core.models import Customer, Ticket
    from core.serialize import CustomerRow, TicketRow

logger = logging.getLogger(__name__)


class RouterPort(Protocol):
    """What core asks of the router (routing.router.Router): rules at the door, and a nudge when a
    ticket waits or capacity was freed."""

    async def apply_rules(self, session: AsyncSession, ticket: Ticket | TicketRow,
                          customer: Customer | CustomerRow, text: str) -> object: ...

    async def rules_at_warning(self, session: AsyncSession, ticket: Ticket, customer: Customer,
                               target: str) -> Any: ...

    def signal(self, tenant_id: int, *, capacity: bool = True) -> None: ...

    async def release_agent(self, tenant_id: int, agent_id: int, *, removed: bool = False) -> int: ...

    def start(self) -> None: ...

    async def stop(self) -> None: ...


class Hub:
    def __init__(self, settings: Settings, channels: Sequence[ChannelInfo], *,
                 router: Callable[[Hub], RouterPort], bus: Bus | None = None) -> None:
        self.settings = settings
        self.db = Database(settings.database_url, pool_size=settings.db_pool_size,
                           pool_timeout=settings.db_pool_timeout)
        self.bus: Bus = bus if bus is not None else make_bus(settings.redis_url, settings.queue_namespace)
        self.channels: dict[str, ChannelInfo] = {c.kind: c for c in channels}
        # Tickets of live chats go back to routing when their agent drops (routing.router).
        self.live_channels = frozenset(c.kind for c in channels if c.live_chat)
        # How late this process's event loop runs: saturation, for the group commits' load shedding.
        self.loop_lag = LoopLag()
        self.connectors: dict[str, Connector] = {c.kind: c.connector(self) for c in channels}
        self.inbox = Inbox(self)
        self.logins = LoginGuard(settings)
        # Who a request's token is, trusted for a moment (core.auth).
        self.principals = Principals(self)
        # Which tenant a Host names (web.http), with a cache every tenant change clears here at once
        # and, over the bus, in the other processes (core.tenancy.announce_changed).
        self.tenants = TenantResolver(self.db)
        # The switches and circuit breakers of billing, statistics and reports (core.breakers):
        # consulted by those subsystems only, never on the messaging paths.
        self.breakers = Breakers(self.db, self.bus, settings)
        # The sessions of this process's agent sockets, re-checked together (core.auth).
        self.sessions = SessionWatch(self)
        self.outbox: Outbox = Outbox(self)
        # Agents' replies, notes, ticket changes and hand-made tickets, in group commits.
        self.ticket_writes = TicketWrites(self)
        # Satisfaction surveys (core.csat): sent after the solve commits, off its path.
        self.csat = Surveys(self)
        self.router: RouterPort = router(self)
        # Excel exports (core.exports): built one at a time in a process, off the messaging paths.
        self.exports = Exporter(self)
        # Whether this process takes what customers send (serve) or only delivers (worker).
        self.inbound = True

    async def start(self, *, inbound: bool = True) -> None:
        """Begin receiving from the bus and open the channels' long-lived links. A process that
        only delivers (``channelhub worker``) passes ``inbound=False``: it runs no listener and
        follows no mailbox (``Hub.inbound``, which connectors read in their ``start``)."""
        self.inbound = inbound
        await self.bus.start()
        self.breakers.watch()
        for connector in self.connectors.values():
            await connector.start()

    async def close(self) -> None:
        await self.csat.stop()
        for connector in self.connectors.values():
            try:
                await connector.stop()
            except Exception:
                logger.exception("connector %s failed to stop", connector.kind)
        await self.sessions.stop()
        self.breakers.close()
        await self.bus.close()
        await self.logins.close()
        await self.db.dispose()

    async def publish(self, tenant_id: int, events: list[dict[str, Any]]) -> None:
        """Publish events already committed to the database. Never raises: the bus logs a failure
        and has subscribers catch up from the events table (core.bus)."""
        if events:
            await self.bus.publish_many([(tenant_topic(tenant_id), e) for e in events])

    async def enqueue_delivery(self, outbox_ids: list[int]) -> None:
        await self.outbox.enqueue(outbox_ids)
