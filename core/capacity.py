"""Agents' load: the count of open tickets assigned to each, kept in ``agents.load``.

Which slot a change of a ticket's assignee or of its status between open and not open takes or
frees is decided by core.transitions; it is made here (:func:`move_load`), in the same transaction
as the change, or for a routing batch by the router's conditional UPDATE (:func:`take_slots`,
one statement per distinct count of slots an agent gets in the batch). A slot is only ever
taken by one conditional UPDATE that checks capacity (and presence, for routing), so no agent goes
over capacity however many processes assign at once: on PostgreSQL the row lock serialises
competing UPDATEs and each re-checks the condition; SQLite writers are serialised by
``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from core.models import ACTIVE_STATUSES, Agent, Presence, Ticket, table_of
from core.transitions import Transition

# A transaction to run a statement in: an ORM session, or the Core connection of a hot path.
Executor = AsyncSession | AsyncConnection

_A = table_of(Agent)
_N = bindparam("n", type_=Integer)
# The router's conditional UPDATE: n slots more for each of the agents, where all n fit and the
# agent is still online and active (re-checked on the row, under its lock).
_TAKE_SLOTS = (
    update(_A)
    .where(_A.c.id.in_(bindparam("ids", expanding=True)), _A.c.load + _N <= _A.c.capacity,
           _A.c.status == Presence.ONLINE, _A.c.active.is_(True))
    .values(load=_A.c.load + _N, last_assigned_at=bindparam("now", type_=_A.c.last_assigned_at.type))
    .returning(_A.c.id, _A.c.channel_capacity)
)


async def lock_agents(session: Executor, agent_ids: list[int]) -> None:
    """Lock agents' rows in id order: every path that locks several agents does, so concurrent
    routing batches and transfers wait for each other instead of deadlocking."""
    if not agent_ids:
        return
    # SQLite has no row locks (its writers take turns for the whole transaction): nothing to do.
    bind = session if isinstance(session, AsyncConnection) else session.get_bind()
    if bind.dialect.name != "sqlite":
        await session.execute(select(Agent.id).where(Agent.id.in_(sorted(set(agent_ids))))
                              .order_by(Agent.id).with_for_update())


# Slots taken in a transaction for tickets not yet written back, by (agent, channel): a batch
# (core.ticket_writes) counts them in the per-channel check, which reads the tickets as stored.
Pending = dict[tuple[int, str], int]


async def move_load(session: AsyncSession, change: Transition, channel: str, *, pending: Pending | None = None) -> bool:
    """Make the capacity change a transition asks for: release its slot, then take its slot (room
    on ``channel`` too, and presence where it requires it). False when the slot to take was refused;
    a release is made all the same (the caller either applies the transition's ``if_refused`` or
    fails the transaction). Nothing to do costs no statement. With ``pending``, a slot taken is
    counted there and those counted before are counted as the agent's on that channel."""
    if change.release is not None:
        await release_slot(session, change.release)
    if change.take is None:
        return True
    key = (change.take, channel)
    taken = await take_slot(session, change.take, channel, require_online=change.require_online,
                            pending=pending.get(key, 0) if pending is not None else 0)
    if taken and pending is not None:
        pending[key] = pending.get(key, 0) + 1
    return taken


async def take_slot(session: AsyncSession, agent_id: int, channel: str, *, require_online: bool,
                    pending: int = 0) -> bool:
    """Raise the agent's load by one if they have room (and are online, when asked). Holds the
    agent's row lock until commit, so the per-channel check that follows is race-free; ``pending``
    tickets of theirs on ``channel`` not yet written count in it too."""
    stmt = (
        update(Agent)
        .where(Agent.id == agent_id, Agent.active.is_(True), Agent.load < Agent.capacity)
        .values(load=Agent.load + 1)
        .returning(Agent.channel_capacity)
    )
    if require_online:
        stmt = stmt.where(Agent.status == Presence.ONLINE)
    row = (await session.execute(stmt.execution_options(synchronize_session=False))).one_or_none()
    if row is None:
        return False
    cap = (row[0] or {}).get(channel)
    if cap is not None and await channel_load(session, agent_id, channel) + pending >= cap:
        await release_slot(session, agent_id)
        return False
    return True


async def take_slots(conn: Executor, wanted: Mapping[int, int], now: datetime) -> dict[int, dict[str, Any]]:
    """The router's slots for a whole batch: raise each agent's load by their count ``wanted``
    where all of it stays within capacity and the agent is still online and active (all of an
    agent's count or none). Locks the agents in id order first (:func:`lock_agents`), then one
    conditional UPDATE per distinct count: a batch spreads over many agents, so that is one
    statement or a few, each with the same compiled SQL. Returns the agents granted with their
    per-channel caps, which the caller checks under the row locks the UPDATE holds."""
    await lock_agents(conn, list(wanted))
    by_count: dict[int, list[int]] = defaultdict(list)
    for agent_id, n in wanted.items():
        by_count[n].append(agent_id)
    granted: dict[int, dict[str, Any]] = {}
    for n, ids in sorted(by_count.items()):
        for agent_id, caps in await conn.execute(_TAKE_SLOTS, {"n": n, "ids": ids, "now": now}):
            granted[agent_id] = caps or {}
    return granted


async def release_slot(session: AsyncSession, agent_id: int) -> None:
    await session.execute(
        update(Agent).where(Agent.id == agent_id, Agent.load > 0).values(load=Agent.load - 1)
        .execution_options(synchronize_session=False)
    )


async def channel_load(session: Executor, agent_id: int, channel: str) -> int:
    return int((await session.execute(
        select(func.count(Ticket.id)).where(
            Ticket.assignee_id == agent_id, Ticket.channel == channel, Ticket.status.in_(ACTIVE_STATUSES))
    )).scalar_one())


async def release_slots(session: Executor, agent_id: int, n: int) -> None:
    """Lower the agent's load by ``n``: the slots of the tickets an agent who left gave back, in one
    statement (the tickets were read assigned and open under their row locks)."""
    await session.execute(update(Agent).where(Agent.id == agent_id).values(load=Agent.load - n)
                          .execution_options(synchronize_session=False))
