"""Choosing an agent: pure functions over a snapshot of online agents with room, kept apart from
committing the choice (routing.router), which re-checks capacity atomically.

Strategies, chosen per group:
- ``round_robin``: the agent whose last assignment is oldest (self-healing: no cursor to lose);
- ``least_busy``: fewest open tickets, ties to the agent idle longest;
- ``skills``: only agents whose skill levels cover the ticket's required skills, then least busy;
- ``sticky``: the agent who last served this customer, if online with room, else the group's
  fallback strategy;
- ``manual``: nobody is chosen; the ticket waits in the group's queue for an agent to claim it.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

_NEVER = datetime.min.replace(tzinfo=UTC)
STRATEGIES = ("round_robin", "least_busy", "skills", "sticky", "manual")
MAX_RECORDED = 5
MAX_EXCLUDED = 5


@dataclass
class AgentState:
    """One online agent as the router sees it for the length of one batch."""

    agent_id: int
    capacity: int
    load: int
    last_assigned_at: datetime | None
    groups: frozenset[int] = frozenset()
    skills: dict[str, int] = field(default_factory=dict)
    channel_capacity: dict[str, int] = field(default_factory=dict)
    channel_load: dict[str, int] = field(default_factory=dict)

    def room_for(self, channel: str) -> bool:
        if self.load >= self.capacity:
            return False
        cap = self.channel_capacity.get(channel)
        return cap is None or self.channel_load.get(channel, 0) < cap

    def covers(self, required: dict[str, int]) -> bool:
        return all(self.skills.get(skill, 0) >= level for skill, level in required.items())

    def take(self, channel: str, when: datetime) -> None:
        self.load += 1
        self.channel_load[channel] = self.channel_load.get(channel, 0) + 1
        self.last_assigned_at = when

    def view(self, note: str | None = None) -> dict[str, Any]:
        row: dict[str, Any] = {"agent_id": self.agent_id, "load": self.load, "capacity": self.capacity}
        if note:
            row["excluded"] = note
        return row


@dataclass(frozen=True)
class TicketView:
    ticket_id: int
    channel: str
    group_id: int | None
    required_skills: dict[str, int]
    sticky_agent_id: int | None = None


@dataclass(frozen=True)
class GroupPolicy:
    strategy: str = "least_busy"
    sticky_fallback: str = "least_busy"


@dataclass(frozen=True)
class Choice:
    agent_id: int | None
    strategy: str
    considered: list[dict[str, Any]]
    note: str | None = None


def choose(ticket: TicketView, policy: GroupPolicy, agents: list[AgentState]) -> Choice:
    """Pick an agent for ``ticket`` among ``agents`` (the online agents of its group, or of the tenant)."""
    strategy = policy.strategy
    if strategy == "manual":
        return Choice(None, "manual", [], "waits for an agent of the group to claim it")
    excluded: list[dict[str, Any]] = []
    group_id, channel, required = ticket.group_id, ticket.channel, ticket.required_skills
    check_skills = strategy == "skills" or bool(required)
    # How the pool is ranked, known before it is built (sticky falls back to its fallback's order).
    ranking = policy.sticky_fallback if strategy == "sticky" else strategy
    by_turn = ranking == "round_robin"
    # The router calls this once per ticket over the ticket's whole group: the common case (no
    # per-channel caps, no skills) is kept to a comparison or two per agent, and each agent that
    # can take the ticket goes straight in as its ranking key, a plain tuple that sorts in C: round
    # robin by the oldest last assignment, least busy by load first; the agent's id, unique, last
    # before the agent, so ties never compare agents.
    pool: list[tuple[Any, ...]] = []
    for agent in agents:
        if group_id is not None and group_id not in agent.groups:
            continue
        if agent.load >= agent.capacity or (agent.channel_capacity and not agent.room_for(channel)):
            if len(excluded) < MAX_EXCLUDED:
                excluded.append(agent.view("at capacity"))
            continue
        if check_skills and not agent.covers(required):
            if len(excluded) < MAX_EXCLUDED:
                excluded.append(agent.view("missing skills"))
            continue
        if by_turn:
            pool.append((agent.last_assigned_at or _NEVER, agent.agent_id, agent))
        else:
            pool.append((agent.load, agent.last_assigned_at or _NEVER, agent.agent_id, agent))
    if strategy == "sticky":
        sticky = next((k[-1] for k in pool if k[-1].agent_id == ticket.sticky_agent_id), None)
        if sticky is not None:
            return Choice(sticky.agent_id, "sticky", [sticky.view(), *excluded])
        strategy = policy.sticky_fallback if policy.sticky_fallback != "sticky" else "least_busy"
        if strategy == "manual":
            return Choice(None, "manual", excluded, "the last agent is not available; waits to be claimed")
    if not pool:
        return Choice(None, strategy, excluded, "no online agent with room")
    # The best few are what a person asking "why Li?" wants to see; the rest is noise (and cost).
    ranked = sorted(pool)[:MAX_RECORDED] if len(pool) <= 256 else heapq.nsmallest(MAX_RECORDED, pool)
    best = [k[-1] for k in ranked]
    return Choice(best[0].agent_id, strategy, [a.view() for a in best] + excluded)
