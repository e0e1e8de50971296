"""Choosing an agent: pure functions over candidates, kept apart from committing the choice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Candidate:
    agent_id: int
    capacity: int
    load: int
    last_assigned_at: datetime | None

    @property
    def free(self) -> int:
        return self.capacity - self.load


def least_busy(candidates: list[Candidate]) -> list[Candidate]:
    """Candidates with room, best first: fewest open tickets, then the one idle longest."""
    with_room = [c for c in candidates if c.free > 0]
    return sorted(with_room, key=lambda c: (c.load, c.last_assigned_at or _NEVER, c.agent_id))
