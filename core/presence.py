"""Agent presence: online / away / offline, kept alive by heartbeats over the agent gateway.

The state lives in the database so every hub process sees it; each process runs the reaper, which
takes agents offline when no process has heard from them within the heartbeat timeout.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from core.errors import InvalidInput
from core.events import EventKind, EventLog
from core.models import Agent, Presence, utcnow

if TYPE_CHECKING:
    from core.hub import Hub

logger = logging.getLogger(__name__)


async def set_presence(
    hub: Hub, tenant_id: int, agent_id: int, status: str, *, unless_seen_since: datetime | None = None
) -> None:
    """Change an agent's presence. With ``unless_seen_since`` (the reaper), nothing changes when
    the agent was heard from after that time: a heartbeat that raced the reaper wins."""
    try:
        new = Presence(status)
    except ValueError:
        raise InvalidInput(f"presence must be one of {[p.value for p in Presence]}", code="invalid_presence") from None
    async with hub.db.session(tenant_id) as session:
        agent = (
            await session.execute(select(Agent).where(Agent.id == agent_id).with_for_update())
        ).scalar_one()
        old = agent.status
        if unless_seen_since is not None and agent.last_seen_at and agent.last_seen_at >= unless_seen_since:
            return
        if unless_seen_since is None:
            agent.last_seen_at = utcnow()
        events = []
        if old != new:
            agent.status = new
            log = EventLog(session)
            log.add(EventKind.AGENT_PRESENCE, tenant_id=tenant_id, assignee_id=agent_id,
                    payload={"agent_id": agent_id, "status": new.value, "previous": old})
            await session.flush()
            events = await log.flush()
    await hub.publish(tenant_id, events)
    if old == new:
        return
    if new == Presence.ONLINE:
        hub.router.signal(tenant_id)
    elif new == Presence.OFFLINE:
        # Separate transaction after the presence change: tickets are locked before the agent, as
        # everywhere else.
        await hub.router.release_agent(tenant_id, agent_id)


async def heartbeat(hub: Hub, tenant_id: int, agent_id: int) -> None:
    async with hub.db.session(tenant_id) as session:
        await session.execute(
            update(Agent).where(Agent.id == agent_id).values(last_seen_at=utcnow())
            .execution_options(synchronize_session=False)
        )


async def reap(hub: Hub) -> int:
    """Take offline every agent no process has heard from within the heartbeat timeout."""
    cutoff = utcnow() - timedelta(seconds=hub.settings.heartbeat_timeout)
    async with hub.db.read() as session:
        stale = (
            await session.execute(
                select(Agent.id, Agent.tenant_id).where(
                    Agent.status != Presence.OFFLINE, Agent.last_seen_at < cutoff
                )
            )
        ).all()
    for agent_id, tenant_id in stale:
        logger.info("agent %s missed heartbeats; offline", agent_id)
        await set_presence(hub, tenant_id, agent_id, Presence.OFFLINE, unless_seen_since=cutoff)
    return len(stale)
