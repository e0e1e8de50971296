"""The router: rules at the door, strategies per group, capacity, the queue, overflow, re-routing.

How a ticket moves:
- ``core.ingest`` (or a ticket made by hand) applies the tenant's rules (:meth:`Router.apply_rules`)
  and leaves the ticket ``pending``; after commit it signals the router.
- The router's loop (one per hub process) routes in batches: it claims waiting tickets with
  ``FOR UPDATE SKIP LOCKED`` (so processes never take the same ticket), highest priority then
  oldest first, chooses agents from a snapshot (routing.strategies, pure), and commits every choice
  at once with a conditional UPDATE of the agents' loads (``load + n <= capacity AND online``, one
  statement per distinct n: core.capacity.take_slots). An agent who filled up or went offline
  meanwhile fails the condition; those tickets stay waiting and the batch is retried. Under light
  load a batch is one ticket; under heavy load batches grow, which is what keeps the decision rate
  high. A batch is a fixed set of Core statements on plain rows (TicketRow, CustomerRow): the
  locked reads, the loads, one executemany UPDATE of the tickets, one INSERT each of the records
  and the events; no ORM unit of work.
- Tickets nobody can take become ``queued``; freeing capacity anywhere signals the router, which
  serves the queue in order. A queued ticket whose group overflows moves on at ``overflow_at``.
- Every decision is recorded (``assignment_records``): rule, strategy, candidates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Integer, String, bindparam, cast, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from core import transitions
from core.capacity import channel_load, release_slots, take_slots
from core.events import EventKind, EventLog
from core.models import (
    ACTIVE_STATUSES,
    PRIORITY_RANK,
    Agent,
    AgentGroup,
    AssignmentRecord,
    Customer,
    Group,
    Presence,
    Priority,
    RoutingRule,
    Tenant,
    Ticket,
    table_of,
    utcnow,
)
from core.schedule import BusinessHours
from core.serialize import CUSTOMER_ROW_FIELDS, CustomerRow, TicketRow, ticket_dict
from core.tasks import cancel_and_wait
from core.transitions import RoutingState
from routing.rules import RoutingContext, Rule, RuleMatch, compile_rule, evaluate
from routing.strategies import AgentState, Choice, GroupPolicy, TicketView, choose

if TYPE_CHECKING:
    from core.hub import Hub

logger = logging.getLogger(__name__)

BATCH = 500
RULES_TTL = 5.0
DEFAULT_OVERFLOW_SECONDS = 600
SWEEP_INTERVAL = 1.0
SNAPSHOT_TTL = 1.0
# However small the batches, the whole snapshot is read again once it is this old (seconds).
SNAPSHOT_MAX_AGE = 10.0
# A batch this small re-reads only its tickets' groups' agents when the snapshot has expired (the
# whole tenant's take a hundred milliseconds and more at ten thousand agents, far more than a
# decision made while quiet may take); a larger one re-reads them all.
SMALL_BATCH = 20
# Where a process announces that a tenant's rules or settings changed (routing.config.announce).
CONFIG_TOPIC = "routing-config"


@dataclass(frozen=True)
class TenantRouting:
    """A tenant's routing configuration, compiled; cached briefly per process."""

    rules: tuple[Rule, ...]
    default_group_id: int | None
    business_hours: BusinessHours | None
    offline_policy: str  # "reroute" or "keep"
    default_overflow_seconds: int | None  # None: tickets may wait without limit (the tenant chose so)


def parse_settings(raw: dict[str, Any]) -> tuple[int | None, BusinessHours | None, str, int | None]:
    hours = BusinessHours.parse(raw["business_hours"]) if raw.get("business_hours") else None
    unlimited = bool(raw.get("unlimited_wait", False))
    overflow = None if unlimited else int(raw.get("default_overflow_seconds") or DEFAULT_OVERFLOW_SECONDS)
    return raw.get("default_group_id"), hours, raw.get("offline_policy", "reroute"), overflow


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """What routing needs of a group, read once per snapshot."""

    id: int
    strategy: str
    sticky_days: int
    policy: GroupPolicy
    overflow_group_id: int | None
    overflow_after_seconds: int | None


@dataclass(slots=True)
class Snapshot:
    """A tenant's online agents with room (by group too) and its groups. Read in full at first
    and every SNAPSHOT_MAX_AGE; in between, once ``until`` has passed, a batch of many tickets
    reads every online agent's load again (:meth:`reload`), one of a few tickets only its groups'
    agents' loads (:meth:`refresh`, ``group_until``): a full read of ten thousand agents takes over
    100 ms."""

    until: float
    agents: list[AgentState]
    by_group: dict[int, list[AgentState]]
    groups: dict[int, GroupInfo]
    group_until: dict[int, float] = field(default_factory=dict)
    by_id: dict[int, AgentState] = field(default_factory=dict)
    read_at: float = 0.0  # when it was read in full

    def __post_init__(self) -> None:
        self.by_id = {a.agent_id: a for a in self.agents}
        self.read_at = self.until - SNAPSHOT_TTL

    def _put_loads(self, loads: Sequence[Any]) -> set[int]:
        """Set the known agents' capacity and load from rows (id, capacity, load); their ids."""
        seen: set[int] = set()
        for agent_id, capacity, load in loads:
            state = self.by_id.get(agent_id)
            if state is not None:
                state.capacity, state.load = capacity, load
                seen.add(agent_id)
        return seen

    def reload(self, loads: Sequence[Any], gained: list[AgentState], until: float) -> None:
        """Put every online agent's capacity and load, just read, in place; those no longer online
        (not in ``loads``) leave, and ``gained`` (online with room, unknown until now) join."""
        known = self.by_id
        gone = known.keys() - self._put_loads(loads)
        if gone:
            self.agents = [a for a in self.agents if a.agent_id not in gone]
            for g, pool in self.by_group.items():
                self.by_group[g] = [a for a in pool if a.agent_id not in gone]
            for agent_id in gone:
                del known[agent_id]
        for s in gained:
            self.agents.append(s)
            known[s.agent_id] = s
            for g in s.groups:
                self.by_group.setdefault(g, []).append(s)
        self.until = until
        self.group_until.clear()

    def refresh(self, group_ids: list[int], loads: Sequence[Any], until: float) -> None:
        """Put the capacity and load just read of ``group_ids``' agents (those still online) in
        place; the others leave these groups' pools (and the rest at the next full read)."""
        online = self._put_loads(loads)
        for g in group_ids:
            self.by_group[g] = [a for a in self.by_group.get(g, ()) if a.agent_id in online]
            self.group_until[g] = until


# The batch's statements, built once (SQLAlchemy then finds each compiled form in its cache at once).
_T = table_of(Ticket)
_A = table_of(Agent)
_C = table_of(Customer)
_NT = len(fields(TicketRow))
# A waiting ticket of the tenant with its customer, oldest of the highest priority first, locked;
# those another process holds are skipped (it routes them).
_WAITING = (
    select(*(_T.c[f.name] for f in fields(TicketRow)), *(_C.c[name] for name in CUSTOMER_ROW_FIELDS))
    .join(_C, _C.c.id == _T.c.customer_id)
    .where(_T.c.tenant_id == bindparam("tenant_id"), _T.c.assignee_id.is_(None), _T.c.status.in_(ACTIVE_STATUSES))
    .order_by(_T.c.priority_rank.desc(), _T.c.created_at, _T.c.id)
    .with_for_update(of=_T, skip_locked=True)
)
_ONLINE_WITH_ROOM = (_A.c.active.is_(True), _A.c.status == Presence.ONLINE, _A.c.load < _A.c.capacity)
# Some agents again, by key (a small batch's groups, when the snapshot has expired).
_AGENTS_BY_ID = select(
    _A.c.id, _A.c.capacity, _A.c.load, _A.c.last_assigned_at, _A.c.skills, _A.c.channel_capacity,
).where(_A.c.tenant_id == bindparam("tenant_id"), _A.c.id.in_(bindparam("ids", expanding=True)), *_ONLINE_WITH_ROOM)
_LOADS_BY_ID = select(_A.c.id, _A.c.capacity, _A.c.load).where(
    _A.c.tenant_id == bindparam("tenant_id"), _A.c.id.in_(bindparam("ids", expanding=True)),
    _A.c.active.is_(True), _A.c.status == Presence.ONLINE)
_LOADS = select(_A.c.id, _A.c.capacity, _A.c.load).where(
    _A.c.tenant_id == bindparam("tenant_id"), _A.c.active.is_(True), _A.c.status == Presence.ONLINE)
_AG = table_of(AgentGroup)
# By its primary key alone: with the tenant's id beside it SQLite reads the tenant's every
# membership through the tenant_id index. Only the memberships of the agents _AGENTS_BY_ID
# returns (of the tenant, read by the tenant's id) are kept.
_MEMBERS_BY_ID = select(_AG.c.agent_id, _AG.c.group_id).where(
    _AG.c.agent_id.in_(bindparam("ids", expanding=True)), _AG.c.group_id.in_(bindparam("groups", expanding=True)))
_LIMIT = bindparam("limit", type_=Integer)
_PENDING = _WAITING.where(_T.c.routing_state == RoutingState.PENDING).limit(_LIMIT)
# Queued ones of the groups given (those with an agent with room), or of no group (any agent).
_QUEUED = _WAITING.where(
    _T.c.routing_state == RoutingState.QUEUED,
    or_(_T.c.group_id.in_(bindparam("groups", expanding=True)), _T.c.group_id.is_(None)),
).limit(_LIMIT)
# What routing changes of a ticket: the fields of transitions.assign and transitions.queue, and
# updated_at (tests/test_routing_rows.py checks the list against the transitions).
ROUTED_FIELDS = ("assignee_id", "assigned_at", "routing_state", "queued_at", "overflow_at", "updated_at")
_UPDATE_TICKETS = (update(_T).where(_T.c.id == bindparam("_id"))
                   .values({name: bindparam(name, type_=_T.c[name].type) for name in ROUTED_FIELDS}))
_INSERT_RECORD = insert(table_of(AssignmentRecord))
_ANY_GROUP = GroupPolicy()


@dataclass
class BatchResult:
    examined: int = 0
    assigned: int = 0
    queued: int = 0
    conflicts: int = 0


class Router:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._config: dict[int, tuple[float, TenantRouting]] = {}
        # The online agents with room, per tenant, reused by consecutive batches for a moment. Safe
        # because it is only a guess: the conditional capacity UPDATE decides, a failed guess drops
        # the snapshot, and anything that frees capacity or changes agents drops it too.
        self._snapshots: dict[int, Snapshot] = {}
        self._wanted: set[int] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    # --- configuration --------------------------------------------------------------------
    async def config(self, session: AsyncSession, tenant_id: int) -> TenantRouting:
        hit = self._config.get(tenant_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        raw = (await session.execute(select(Tenant.routing).where(Tenant.id == tenant_id))).scalar_one_or_none() or {}
        rows = (await session.execute(
            select(RoutingRule).where(RoutingRule.tenant_id == tenant_id, RoutingRule.enabled.is_(True))
            .order_by(RoutingRule.position, RoutingRule.id)
        )).scalars().all()
        rules = []
        for r in rows:
            try:
                rules.append(compile_rule(r.id, r.name, r.conditions, r.actions))
            except Exception:  # validated on the way in; a bad stored rule must not stop routing
                logger.exception("routing rule %s of tenant %s does not compile; skipped", r.id, tenant_id)
        default_group, hours, offline, overflow = parse_settings(raw)
        cfg = TenantRouting(tuple(rules), default_group, hours, offline, overflow)
        self._config[tenant_id] = (time.monotonic() + RULES_TTL, cfg)
        return cfg

    def forget(self, tenant_id: int) -> None:
        """Drop the cached configuration (after a change; other processes expire theirs in seconds)."""
        self._config.pop(tenant_id, None)
        self._snapshots.pop(tenant_id, None)

    async def apply_rules(
        self, session: AsyncSession, ticket: Ticket | TicketRow, customer: Customer | CustomerRow, text: str
    ) -> RuleMatch:
        """Set a new ticket's group, priority, tags and required skills from the first matching rule."""
        cfg = await self.config(session, ticket.tenant_id)
        ctx = RoutingContext(
            channel=ticket.channel, text=text, priority=ticket.priority,
            customer_tags=frozenset(str(t).casefold() for t in (customer.tags or [])),
            customer_attributes=dict(customer.attributes or {}), now=utcnow(), business_hours=cfg.business_hours,
        )
        match = evaluate(cfg.rules, ctx, cfg.default_group_id)
        a = match.actions
        if a.group_id is not None and ticket.group_id is None:
            ticket.group_id = a.group_id
        if a.priority is not None:
            ticket.priority = a.priority
            ticket.priority_rank = PRIORITY_RANK[Priority(a.priority)]
        if a.add_tags:
            ticket.tags = list(dict.fromkeys([*(ticket.tags or []), *a.add_tags]))
        if a.required_skills:
            ticket.required_skills = dict(a.required_skills)
        ticket.routing_rule = match.rule
        return match

    async def rules_at_warning(self, session: AsyncSession, ticket: Ticket, customer: Customer,
                               target: str) -> RuleMatch | None:
        """The first rule on SLA warnings (routing.rules: the ``sla`` condition) that matches the
        ticket as it is now, its deadline for ``target`` being near; None if none does."""
        cfg = await self.config(session, ticket.tenant_id)
        ctx = RoutingContext(
            channel=ticket.channel, text=ticket.subject or "", priority=ticket.priority,
            customer_tags=frozenset(str(t).casefold() for t in (customer.tags or [])),
            customer_attributes=dict(customer.attributes or {}), now=utcnow(), business_hours=cfg.business_hours,
            sla_warning=target,
        )
        match = evaluate((r for r in cfg.rules if r.at_warning), ctx, None)
        return match if match.rule is not None else None

    # --- the loop -------------------------------------------------------------------------
    def signal(self, tenant_id: int, *, capacity: bool = True) -> None:
        """Something changed (a ticket waits; with ``capacity``, agents or their load changed too):
        route this tenant soon."""
        if capacity:
            self._snapshots.pop(tenant_id, None)
        self._wanted.add(tenant_id)
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            # Another process changed a tenant's rules or settings: drop our copy.
            self._config_sub = self.hub.bus.subscribe(CONFIG_TOPIC, lambda d: self.forget(int(d["tenant_id"])))
            self._task = asyncio.create_task(self._run(), name="router")
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="router-sweeper")

    async def stop(self) -> None:
        if getattr(self, "_config_sub", None) is not None:
            self._config_sub.close()
        await cancel_and_wait(self._task, self._sweeper)
        self._task = self._sweeper = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            tenants, self._wanted = self._wanted, set()
            for tenant_id in tenants:
                try:
                    await self.route_tenant(tenant_id)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("routing tenant %s failed; retrying soon", tenant_id)
                    asyncio.get_running_loop().call_later(1.0, self.signal, tenant_id)

    async def _sweep_loop(self) -> None:
        """Pick up what no signal announced: other processes' leftovers, overflow deadlines."""
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                await self.overflow_due()
                async with self.hub.db.read() as session:
                    tenants = (await session.execute(
                        select(Ticket.tenant_id).where(Ticket.routing_state == RoutingState.PENDING).distinct()
                    )).scalars().all()
                for tenant_id in tenants:
                    self.signal(tenant_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("router sweep failed")

    async def route_tenant(self, tenant_id: int) -> BatchResult:
        """Route until nothing routable is left for the tenant."""
        total = BatchResult()
        while True:
            result = await self.route_batch(tenant_id)
            total.examined += result.examined
            total.assigned += result.assigned
            total.queued += result.queued
            total.conflicts += result.conflicts
            # Go on while work was done; stop when only unroutable tickets remain.
            if result.assigned == 0 and result.conflicts == 0 and result.queued == 0:
                return total
            if result.examined < BATCH and result.conflicts == 0:
                return total

    # --- one batch ------------------------------------------------------------------------
    async def _agents(
        self, conn: AsyncConnection, tenant_id: int, only: tuple[list[int], list[int]] | None = None
    ) -> tuple[list[AgentState], dict[int, list[AgentState]]]:
        """The tenant's online agents with room, and by group; with ``only`` (agent ids, group
        ids), those of these agents, with their memberships of these groups (read by key)."""
        a, ag = _A, table_of(AgentGroup)
        rows: Sequence[Any]
        members: Sequence[Any]
        extras: dict[int, Any]
        if only is None:
            online = (a.c.tenant_id == tenant_id, *_ONLINE_WITH_ROOM)
            rows = (await conn.execute(
                select(a.c.id, a.c.capacity, a.c.load, a.c.last_assigned_at).where(*online))).all()
            if not rows:
                return [], {}
            members = (await conn.execute(
                select(ag.c.agent_id, ag.c.group_id).join(a, a.c.id == ag.c.agent_id).where(*online))).all()
            # Skills and per-channel caps are rare: read (and decode) them only where they are set.
            extras = {r[0]: r for r in (await conn.execute(
                select(a.c.id, a.c.skills, a.c.channel_capacity).where(
                    *online, or_(cast(a.c.skills, String) != "{}", cast(a.c.channel_capacity, String) != "{}"))
            )).all()}
        else:
            ids, group_ids = only
            if not ids:
                return [], {}
            rows = (await conn.execute(_AGENTS_BY_ID, {"tenant_id": tenant_id, "ids": ids})).all()
            members = (await conn.execute(_MEMBERS_BY_ID, {"ids": ids, "groups": group_ids})).all()
            extras = {r[0]: (r[0], r[4], r[5]) for r in rows}
        memberships: dict[int, set[int]] = defaultdict(set)
        for agent_id, group_id in members:
            memberships[agent_id].add(group_id)
        if only is not None:
            found = {r[0] for r in rows}
            memberships = defaultdict(set, {k: v for k, v in memberships.items() if k in found})
        states = []
        for r in rows:
            extra = extras.get(r[0])
            states.append(AgentState(
                r[0], r[1], r[2], r[3], frozenset(memberships.get(r[0], ())),
                {k: int(v) for k, v in (extra[1] or {}).items()} if extra else {},
                {k: int(v) for k, v in (extra[2] or {}).items()} if extra else {}))
        capped = [s.agent_id for s in states if s.channel_capacity]
        if capped:
            by_id = {s.agent_id: s for s in states}
            for assignee, channel, n in (await conn.execute(
                select(_T.c.assignee_id, _T.c.channel, func.count(_T.c.id))
                .where(_T.c.tenant_id == tenant_id, _T.c.assignee_id.in_(capped),
                       _T.c.status.in_(ACTIVE_STATUSES))
                .group_by(_T.c.assignee_id, _T.c.channel)
            )).all():
                if assignee is not None:
                    by_id[assignee].channel_load[channel] = int(n)
        by_group: dict[int, list[AgentState]] = defaultdict(list)
        for s in states:
            for g in s.groups:
                by_group[g].append(s)
        return states, by_group

    async def _snapshot(self, conn: AsyncConnection, tenant_id: int) -> Snapshot:
        agents, by_group = await self._agents(conn, tenant_id)
        snap = Snapshot(time.monotonic() + SNAPSHOT_TTL, agents, by_group, await self._groups(conn, tenant_id))
        self._snapshots[tenant_id] = snap
        return snap

    @staticmethod
    async def _groups(conn: AsyncConnection, tenant_id: int) -> dict[int, GroupInfo]:
        g = table_of(Group)
        return {r[0]: GroupInfo(r[0], r[1], r[2], GroupPolicy(r[1], r[3]), r[4], r[5]) for r in await conn.execute(
            select(g.c.id, g.c.strategy, g.c.sticky_days, g.c.sticky_fallback, g.c.overflow_group_id,
                   g.c.overflow_after_seconds).where(g.c.tenant_id == tenant_id))}

    async def _sticky(self, session: AsyncSession, tickets: list[TicketRow],
                      groups: dict[int, GroupInfo]) -> dict[int, int]:
        """For tickets of sticky groups: the agent who last served the customer within the group's days."""
        want: dict[int, int] = {}
        for t in tickets:
            g = groups.get(t.group_id) if t.group_id is not None else None
            if g is not None and g.strategy == "sticky":
                want[t.customer_id] = max(want.get(t.customer_id, 0), g.sticky_days)
        if not want:
            return {}
        since = utcnow() - timedelta(days=max(want.values()))
        rows = (await session.execute(
            select(Ticket.customer_id, Ticket.assignee_id, func.max(Ticket.assigned_at))
            .where(Ticket.customer_id.in_(list(want)), Ticket.assignee_id.is_not(None), Ticket.assigned_at >= since)
            .group_by(Ticket.customer_id, Ticket.assignee_id)
        )).all()
        best: dict[int, tuple[datetime, int]] = {}
        for customer_id, agent_id, at in rows:
            if at is None or agent_id is None or at < utcnow() - timedelta(days=want[customer_id]):
                continue
            if customer_id not in best or at > best[customer_id][0]:
                best[customer_id] = (at, agent_id)
        return {cid: agent for cid, (_at, agent) in best.items()}

    async def route_batch(self, tenant_id: int, limit: int = BATCH) -> BatchResult:
        """Route one batch of the tenant's waiting tickets, in a fixed number of Core statements on
        plain rows (no ORM unit of work): the batch's tickets with their customers (locked, skipping
        those another process holds), the agents' loads (one conditional UPDATE per distinct count),
        the tickets (one executemany UPDATE), their assignment records and their events (one
        multi-row INSERT each)."""
        result = BatchResult()
        now = utcnow()
        async with self.hub.db.session(tenant_id) as session:
            conn = await session.connection()
            snap = self._snapshots.get(tenant_id)
            if snap is None:
                snap = await self._snapshot(conn, tenant_id)
            agents, by_group, groups = snap.agents, snap.by_group, snap.groups
            # New tickets always get a look (to be routed or queued).
            tickets = [(TicketRow(*r[:_NT]), CustomerRow(*r[_NT:])) for r in await conn.execute(
                _PENDING, {"tenant_id": tenant_id, "limit": limit})]
            # Waiting ones only where an agent has room, and no more than that room can take, so the
            # queue is not re-read in full on every signal, and tickets nobody can take never crowd
            # out those somebody can.
            # (Counted only as far as it matters: ten thousand agents are many to add up per ticket.)
            free = 0
            for a in agents:
                if a.load < a.capacity:
                    free += a.capacity - a.load
                    if 2 * free >= limit:
                        break
            if free > 0:
                servable = [g for g, pool in by_group.items()
                            if pool and g in groups and groups[g].strategy != "manual"]
                queued = await conn.execute(_QUEUED, {"tenant_id": tenant_id, "groups": servable,
                                                      "limit": min(limit, max(2 * free, 10))})
                tickets.extend((TicketRow(*r[:_NT]), CustomerRow(*r[_NT:])) for r in queued)
                tickets.sort(key=lambda tc: (-tc[0].priority_rank, tc[0].created_at, tc[0].id))
            result.examined = len(tickets)
            if not tickets:
                return result
            mono = time.monotonic()
            if snap.until <= mono:
                if mono - snap.read_at >= SNAPSHOT_MAX_AGE:
                    snap = await self._snapshot(conn, tenant_id)
                elif len(tickets) > SMALL_BATCH or any(t.group_id is None for t, _c in tickets):
                    # Every online agent's load again: integers only, a tenth of a full read. Agents
                    # who found room since are read in full, by key.
                    loads = (await conn.execute(_LOADS, {"tenant_id": tenant_id})).all()
                    gained = [r[0] for r in loads if r[0] not in snap.by_id and r[2] < r[1]]
                    states: list[AgentState] = []
                    if gained:
                        states, _fresh = await self._agents(conn, tenant_id, (gained, list(groups)))
                    snap.reload(loads, states, mono + SNAPSHOT_TTL)
                else:
                    # The loads of the agents these groups had with room are read again by key (and
                    # who left); agents who joined or found room since wait for the next full read
                    # (a larger batch, a change of capacity here, or SNAPSHOT_MAX_AGE).
                    stale = sorted({t.group_id for t, _c in tickets if t.group_id is not None
                                    and snap.group_until.get(t.group_id, snap.until) <= mono})
                    if stale:
                        ids = sorted({a.agent_id for g in stale for a in by_group.get(g, ())})
                        fresh: Sequence[Any] = []
                        if ids:
                            fresh = (await conn.execute(_LOADS_BY_ID, {"tenant_id": tenant_id, "ids": ids})).all()
                        snap.refresh(stale, fresh, mono + SNAPSHOT_TTL)
                agents, by_group, groups = snap.agents, snap.by_group, snap.groups
            cfg = await self.config(session, tenant_id)
            sticky = await self._sticky(session, [t for t, _c in tickets], groups)

            choices: list[tuple[TicketRow, CustomerRow, Choice]] = []
            for ticket, customer in tickets:
                group = groups.get(ticket.group_id) if ticket.group_id is not None else None
                policy = group.policy if group else _ANY_GROUP
                pool = by_group.get(ticket.group_id, []) if ticket.group_id is not None else agents
                view = TicketView(ticket.id, ticket.channel, ticket.group_id,
                                  {k: int(v) for k, v in ticket.required_skills.items()} if ticket.required_skills
                                  else {}, sticky.get(ticket.customer_id))
                choice = choose(view, policy, pool)
                if choice.agent_id is not None:
                    next(a for a in pool if a.agent_id == choice.agent_id).take(ticket.channel, now)
                choices.append((ticket, customer, choice))

            granted = await self._commit_loads(conn, choices, now)
            log = EventLog(session)
            changed: list[dict[str, Any]] = []
            records: list[dict[str, Any]] = []
            for ticket, customer, choice in choices:
                base = {"tenant_id": tenant_id, "ticket_id": ticket.id, "group_id": ticket.group_id,
                        "rule": ticket.routing_rule, "strategy": choice.strategy, "candidates": choice.considered,
                        "created_at": now}
                if choice.agent_id is not None and granted.get(choice.agent_id, 0) > 0:
                    granted[choice.agent_id] -= 1
                    # The slot is the one _commit_loads took above, for the whole batch at once.
                    transitions.assign(ticket, choice.agent_id, now).apply(ticket)
                    ticket.updated_at = now
                    result.assigned += 1
                    records.append({"outcome": "assigned", "agent_id": choice.agent_id, "detail": {}, **base})
                    log.add(EventKind.TICKET_ASSIGNED, tenant_id=tenant_id, ticket=ticket, payload={
                        "ticket": ticket_dict(ticket, customer),
                        "reason": {"rule": ticket.routing_rule, "strategy": choice.strategy,
                                   "candidates": len(choice.considered),
                                   "from_queue": ticket.queued_at is not None}})
                elif choice.agent_id is not None:
                    result.conflicts += 1  # the agent filled up or left meanwhile: try again
                    self._snapshots.pop(tenant_id, None)
                    continue
                elif (waits := transitions.queue(ticket, now, self._overflow_at(ticket, groups, cfg, now))) is not None:
                    waits.apply(ticket)
                    result.queued += 1
                    records.append({"outcome": "queued", "agent_id": None, "detail": {"note": choice.note}, **base})
                    log.add(EventKind.TICKET_QUEUED, tenant_id=tenant_id, ticket=ticket, payload={
                        "ticket": ticket_dict(ticket, customer),
                        "reason": {"rule": ticket.routing_rule, "strategy": choice.strategy, "note": choice.note}})
                else:
                    continue  # it already waits in its queue: nothing to write
                changed.append({"_id": ticket.id, **{name: getattr(ticket, name) for name in ROUTED_FIELDS}})
            if changed:
                await conn.execute(_UPDATE_TICKETS, changed)
            if records:
                await conn.execute(_INSERT_RECORD, records)
            events = await log.flush()
        await self.hub.publish(tenant_id, events)
        return result

    async def _commit_loads(self, conn: AsyncConnection, choices: list[tuple[TicketRow, CustomerRow, Choice]],
                            now: datetime) -> dict[int, int]:
        """Raise every chosen agent's load at once, only where it stays within capacity and the agent
        is still online. Returns how many tickets each agent was granted."""
        wanted: dict[int, int] = defaultdict(int)
        channels: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for ticket, _c, choice in choices:
            if choice.agent_id is not None:
                wanted[choice.agent_id] += 1
                channels[choice.agent_id][ticket.channel] += 1
        if not wanted:
            return {}
        rows = await take_slots(conn, wanted, now)
        granted = {agent_id: wanted[agent_id] for agent_id in rows}
        # Per-channel caps, checked under the row locks the UPDATE now holds.
        for agent_id, caps in rows.items():
            for channel, n in channels[agent_id].items():
                cap = (caps or {}).get(channel)
                if cap is None:
                    continue
                current = await channel_load(conn, agent_id, channel)
                over = current + n - int(cap)
                if over > 0:
                    await release_slots(conn, agent_id, over)
                    granted[agent_id] -= over
        return granted

    @staticmethod
    def _overflow_at(ticket: TicketRow, groups: dict[int, GroupInfo], cfg: TenantRouting,
                     now: datetime) -> datetime | None:
        group = groups.get(ticket.group_id) if ticket.group_id is not None else None
        if group is not None and group.overflow_group_id and group.overflow_after_seconds is not None:
            return now + timedelta(seconds=group.overflow_after_seconds)
        if ticket.group_id is None or cfg.default_overflow_seconds is None:
            return None  # waits for any agent of the tenant, or the tenant chose to wait without limit
        return now + timedelta(seconds=cfg.default_overflow_seconds)

    # --- an agent who left ----------------------------------------------------------------
    async def release_agent(self, tenant_id: int, agent_id: int, *, removed: bool = False) -> int:
        """Send an offline agent's open chat tickets back to routing, unless the tenant keeps them;
        ``removed``: the seat is gone, and every open ticket of theirs goes back, whatever the
        channel and the tenant's policy."""
        reason = "seat removed" if removed else "agent went offline"
        async with self.hub.db.session(tenant_id) as session:
            cfg = await self.config(session, tenant_id)
            if cfg.offline_policy == "keep" and not removed:
                return 0
            channels = () if removed else (Ticket.channel.in_(self.hub.live_channels),)
            rows = (await session.execute(
                select(Ticket, Customer).join(Customer, Customer.id == Ticket.customer_id)
                .where(Ticket.assignee_id == agent_id, Ticket.status.in_(ACTIVE_STATUSES), *channels)
                .order_by(Ticket.priority_rank.desc(), Ticket.created_at)
                .with_for_update(of=Ticket)
            )).all()
            if not rows:
                return 0
            now = utcnow()
            log = EventLog(session)
            freed = 0
            for ticket, customer in rows:
                change = transitions.release(ticket)
                if change.release == agent_id:
                    freed += 1
                change.apply(ticket)
                ticket.updated_at = now
                session.add(AssignmentRecord(tenant_id=tenant_id, ticket_id=ticket.id, outcome="unassigned",
                                             agent_id=agent_id, group_id=ticket.group_id, rule=ticket.routing_rule,
                                             strategy=None, candidates=[], detail={"reason": reason}))
                log.add(EventKind.TICKET_UNASSIGNED, tenant_id=tenant_id, ticket=ticket, previous_assignee_id=agent_id,
                        payload={"ticket": ticket_dict(ticket, customer),
                                 "reason": {"seat_removed" if removed else "agent_offline": agent_id}})
            # Every ticket read holds a slot of the agent's (assigned to them, open): one UPDATE.
            await release_slots(session, agent_id, freed)
            await session.flush()
            events = await log.flush()
        await self.hub.publish(tenant_id, events)
        self.signal(tenant_id)
        return len(rows)

    # --- overflow -------------------------------------------------------------------------
    async def overflow_due(self) -> int:
        """Move queued tickets whose wait ran out to the next group (or to any agent)."""
        now = utcnow()
        moved_by_tenant: dict[int, list[dict[str, Any]]] = defaultdict(list)
        async with self.hub.db.session() as session:
            rows = (await session.execute(
                select(Ticket, Customer).join(Customer, Customer.id == Ticket.customer_id)
                .where(Ticket.routing_state == RoutingState.QUEUED, Ticket.overflow_at <= now,
                       Ticket.assignee_id.is_(None))
                .order_by(Ticket.overflow_at).limit(BATCH)
                .with_for_update(of=Ticket, skip_locked=True)
            )).all()
            if not rows:
                return 0
            group_ids = {t.group_id for t, _c in rows if t.group_id is not None}
            groups = {g.id: g for g in (await session.execute(select(Group).where(Group.id.in_(group_ids))))
                      .scalars().all()}
            logs: dict[int, EventLog] = {}
            for ticket, customer in rows:
                cfg = await self.config(session, ticket.tenant_id)
                group = groups.get(ticket.group_id) if ticket.group_id is not None else None
                if group is not None and group.overflow_group_id and group.overflow_after_seconds is not None:
                    target: int | None = group.overflow_group_id
                elif cfg.default_group_id is not None and cfg.default_group_id != ticket.group_id:
                    target = cfg.default_group_id
                else:
                    target = None  # any online agent of the tenant
                previous = ticket.group_id
                transitions.requeue(ticket, target, now).apply(ticket)
                ticket.updated_at = now
                session.add(AssignmentRecord(tenant_id=ticket.tenant_id, ticket_id=ticket.id, outcome="overflowed",
                                             group_id=target, rule=ticket.routing_rule, strategy=None, candidates=[],
                                             detail={"from_group_id": previous, "to_group_id": target}))
                log = logs.setdefault(ticket.tenant_id, EventLog(session))
                log.add(EventKind.TICKET_OVERFLOWED, tenant_id=ticket.tenant_id, ticket=ticket, payload={
                    "ticket": ticket_dict(ticket, customer), "from_group_id": previous, "to_group_id": target})
            await session.flush()
            for tenant_id, log in logs.items():
                moved_by_tenant[tenant_id] = await log.flush()
        for tenant_id, events in moved_by_tenant.items():
            await self.hub.publish(tenant_id, events)
            self.signal(tenant_id)
        return len(rows)
