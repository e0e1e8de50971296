"""The router writes a batch's tickets back with one UPDATE of a fixed list of columns
(routing.router.ROUTED_FIELDS): every field the transitions it applies can set must be in it, or
a change would be made on the row in memory and never stored."""

from __future__ import annotations

from core import transitions
from core.models import TicketStatus
from core.transitions import RoutingState
from routing.router import ROUTED_FIELDS
from tests.test_transitions import NOW, row


def test_the_batch_update_writes_every_field_assign_and_queue_set() -> None:
    cases = [
        transitions.assign(row(), 7, NOW),
        transitions.assign(row(status=TicketStatus.OPEN, routing_state=RoutingState.QUEUED, queued_at=NOW), 7, NOW),
        transitions.queue(row(), NOW, NOW),
        transitions.queue(row(), NOW, None),
    ]
    for change in cases:
        assert change is not None
        assert set(change.fields) <= set(ROUTED_FIELDS), change.fields
