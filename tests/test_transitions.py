"""The ticket transitions of core.transitions, as pure functions on plain rows (no database): which
fields each sets, and which capacity change it asks its caller to make. The end-to-end tests
(test_ticket_flow, test_assignment, test_routing, test_inbox, test_webchat_e2e) drive the same
rules through the API, the router and ingest."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core import transitions
from core.errors import Conflict, InvalidInput
from core.models import Ticket, TicketStatus
from core.serialize import TicketRow
from core.transitions import Reopener, RoutingState, Transition

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
AGENT, OTHER = 7, 8


def row(**fields: Any) -> TicketRow:
    """A ticket as core.ingest holds it, fresh from :func:`transitions.new_ticket` unless told."""
    base: dict[str, Any] = dict(
        id=1, tenant_id=1, customer_id=1, identity_id=1, channel="webchat", subject="hello", priority="normal",
        priority_rank=1, tags=[], required_skills={}, routing_rule=None, group_id=None, created_at=T0,
        updated_at=T0, last_message_at=T0, first_response_at=None, **transitions.new_ticket())
    base.update(fields)
    return TicketRow(**base)


def assigned(**fields: Any) -> TicketRow:
    return row(**{"status": TicketStatus.OPEN, "assignee_id": AGENT, "assigned_at": T0,
                  "routing_state": RoutingState.ASSIGNED, **fields})


def solved(**fields: Any) -> TicketRow:
    return assigned(**{"status": TicketStatus.SOLVED, "solved_at": T0, "routing_state": RoutingState.IDLE, **fields})


def changed(before: TicketRow, after: TicketRow) -> dict[str, Any]:
    old, new = asdict(before), asdict(after)
    return {name: new[name] for name in new if new[name] != old[name]}


def applied(ticket: TicketRow, change: Transition, *, granted: bool = True) -> dict[str, Any]:
    """Apply to a copy; what it changed."""
    after = TicketRow(**asdict(ticket))
    change.apply(after, granted=granted)
    return changed(ticket, after)


# --- a new ticket -----------------------------------------------------------------------------

def test_a_new_ticket_is_nobodys_and_waits_to_be_routed() -> None:
    t = row()
    assert (t.status, t.routing_state, t.assignee_id, t.reopen_count) == (TicketStatus.NEW, RoutingState.PENDING,
                                                                          None, 0)
    assert not transitions.holds_slot(t)


# --- assign -----------------------------------------------------------------------------------

def test_assigning_a_waiting_ticket_takes_a_slot_whatever_the_agents_presence() -> None:
    t = row(routing_state=RoutingState.QUEUED, queued_at=T0, overflow_at=NOW)
    change = transitions.assign(t, AGENT, NOW)
    assert (change.take, change.release, change.require_online) == (AGENT, None, False)
    # Served from the queue: queued_at stays to say so; the overflow deadline is over.
    assert applied(t, change) == {"assignee_id": AGENT, "assigned_at": NOW, "overflow_at": None,
                                  "routing_state": RoutingState.ASSIGNED}


def test_a_transfer_between_agents_moves_the_slot() -> None:
    change = transitions.assign(assigned(), OTHER, NOW)
    assert (change.take, change.release) == (OTHER, AGENT)


def test_a_solved_ticket_changes_hands_without_capacity_and_stays_idle() -> None:
    t = solved()
    change = transitions.assign(t, OTHER, NOW)
    assert (change.take, change.release) == (None, None)
    assert applied(t, change) == {"assignee_id": OTHER, "assigned_at": NOW}  # routing_state stays idle


def test_a_transition_whose_slot_was_refused_cannot_be_applied_unless_it_says_how() -> None:
    with pytest.raises(ValueError):
        transitions.assign(row(), AGENT, NOW).apply(row(), granted=False)


# --- release ----------------------------------------------------------------------------------

def test_releasing_frees_the_slot_and_sends_the_ticket_back_to_routing() -> None:
    t = assigned(queued_at=T0)
    change = transitions.release(t)
    assert (change.take, change.release) == (None, AGENT)
    assert applied(t, change) == {"assignee_id": None, "assigned_at": None, "queued_at": None,
                                  "routing_state": RoutingState.PENDING}


def test_releasing_a_ticket_that_holds_no_slot_frees_none() -> None:
    assert transitions.release(row(routing_state=RoutingState.QUEUED)).release is None
    assert transitions.release(solved()).release is None


# --- queue and overflow -----------------------------------------------------------------------

def test_a_ticket_nobody_can_take_is_queued_with_its_overflow_deadline() -> None:
    t = row()
    change = transitions.queue(t, NOW, NOW + timedelta(minutes=10))
    assert change is not None and (change.take, change.release) == (None, None)
    assert applied(t, change) == {"routing_state": RoutingState.QUEUED, "queued_at": NOW,
                                  "overflow_at": NOW + timedelta(minutes=10)}


def test_a_queued_ticket_looked_at_again_keeps_its_place_and_deadline() -> None:
    assert transitions.queue(row(routing_state=RoutingState.QUEUED, queued_at=T0, overflow_at=NOW), NOW,
                             NOW + timedelta(hours=1)) is None


def test_overflow_moves_a_queued_ticket_to_the_next_group_to_be_routed_there() -> None:
    t = row(group_id=3, routing_state=RoutingState.QUEUED, queued_at=T0, overflow_at=NOW)
    change = transitions.requeue(t, 4, NOW)
    assert (change.take, change.release) == (None, None)
    assert applied(t, change) == {"group_id": 4, "routing_state": RoutingState.PENDING, "queued_at": NOW,
                                  "overflow_at": None}
    assert applied(t, transitions.requeue(t, None, NOW))["group_id"] is None  # any agent of the tenant


# --- status -----------------------------------------------------------------------------------

@pytest.mark.parametrize("current", list(TicketStatus))
@pytest.mark.parametrize("wanted", list(TicketStatus))
def test_which_status_may_follow_which(current: TicketStatus, wanted: TicketStatus) -> None:
    allowed = {
        TicketStatus.NEW: {"open", "pending", "solved", "closed"},
        TicketStatus.OPEN: {"pending", "solved", "closed"},
        TicketStatus.PENDING: {"open", "solved", "closed"},
        TicketStatus.SOLVED: {"open", "closed"},
        TicketStatus.CLOSED: set(),
    }
    if wanted in allowed[current]:
        assert transitions.check_status(current, wanted) == wanted
    else:
        with pytest.raises(Conflict) as caught:
            transitions.check_status(current, wanted)
        assert caught.value.code == "invalid_transition"


def test_an_unknown_status_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as caught:
        transitions.check_status("open", "done")
    assert caught.value.code == "invalid_status"


def test_solving_frees_the_slot_keeps_the_agent_and_makes_the_ticket_idle() -> None:
    t = assigned(overflow_at=NOW)
    change = transitions.set_status(t, TicketStatus.SOLVED, NOW)
    assert (change.take, change.release) == (None, AGENT)
    assert applied(t, change) == {"status": TicketStatus.SOLVED, "solved_at": NOW, "routing_state": RoutingState.IDLE,
                                  "overflow_at": None}


def test_solving_a_waiting_ticket_takes_it_out_of_the_queue() -> None:
    t = row(routing_state=RoutingState.QUEUED, queued_at=T0)
    change = transitions.set_status(t, TicketStatus.SOLVED, NOW)
    assert change.release is None
    assert applied(t, change)["routing_state"] == RoutingState.IDLE


def test_closing_an_open_ticket_counts_it_solved_then_and_frees_the_slot() -> None:
    t = assigned()
    change = transitions.set_status(t, TicketStatus.CLOSED, NOW)
    assert change.release == AGENT
    assert applied(t, change) == {"status": TicketStatus.CLOSED, "closed_at": NOW, "solved_at": NOW,
                                  "routing_state": RoutingState.IDLE}


def test_closing_a_solved_ticket_keeps_when_it_was_solved_and_frees_nothing() -> None:
    t = solved()
    change = transitions.set_status(t, TicketStatus.CLOSED, NOW)
    assert change.release is None
    assert applied(t, change) == {"status": TicketStatus.CLOSED, "closed_at": NOW}


def test_between_active_statuses_only_the_status_changes() -> None:
    t = assigned()
    change = transitions.set_status(t, TicketStatus.PENDING, NOW)
    assert (change.take, change.release) == (None, None)
    assert applied(t, change) == {"status": TicketStatus.PENDING}


def test_a_reopen_is_not_a_plain_status_change() -> None:
    assert transitions.is_reopen(TicketStatus.SOLVED, TicketStatus.OPEN)
    assert not transitions.is_reopen(TicketStatus.PENDING, TicketStatus.OPEN)
    with pytest.raises(ValueError):
        transitions.set_status(solved(), TicketStatus.OPEN, NOW)


# --- reopen -----------------------------------------------------------------------------------

def test_a_customers_reopen_keeps_the_agent_only_if_they_are_online_with_room() -> None:
    t = solved()
    change = transitions.reopen(t, by=Reopener.CUSTOMER)
    assert (change.take, change.release, change.require_online) == (AGENT, None, True)
    assert applied(t, change) == {"status": TicketStatus.OPEN, "reopen_count": 1, "solved_at": None,
                                  "routing_state": RoutingState.ASSIGNED}
    # Refused (offline, away or full): back to routing. assigned_at is left as it was.
    assert applied(t, change, granted=False) == {"status": TicketStatus.OPEN, "reopen_count": 1, "solved_at": None,
                                                 "assignee_id": None, "routing_state": RoutingState.PENDING}


def test_an_agents_reopen_keeps_the_agent_within_capacity_whatever_their_presence() -> None:
    change = transitions.reopen(solved(reopen_count=2), by=Reopener.AGENT)
    assert (change.take, change.require_online) == (AGENT, False)
    assert change.fields["reopen_count"] == 3


def test_a_reopened_ticket_without_an_agent_goes_to_routing() -> None:
    t = solved(assignee_id=None, assigned_at=None)
    change = transitions.reopen(t, by=Reopener.AGENT)
    assert (change.take, change.release) == (None, None)
    assert applied(t, change)["routing_state"] == RoutingState.PENDING


def test_only_a_solved_ticket_reopens() -> None:
    for status in (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.CLOSED):
        with pytest.raises(ValueError):
            transitions.reopen(row(status=status), by=Reopener.AGENT)


# --- messages ---------------------------------------------------------------------------------

def test_a_customers_message_reopens_a_solved_ticket_and_opens_a_pending_one() -> None:
    reopened = transitions.customer_wrote(solved(), NOW)
    assert reopened is not None and reopened.take == AGENT and reopened.require_online
    again = transitions.customer_wrote(assigned(status=TicketStatus.PENDING), NOW)
    assert again is not None and dict(again.fields) == {"status": TicketStatus.OPEN} and again.take is None
    assert transitions.customer_wrote(row(), NOW) is None
    assert transitions.customer_wrote(assigned(), NOW) is None


@pytest.mark.parametrize("ticket", [solved(), solved(assignee_id=None), assigned(status=TicketStatus.PENDING)])
@pytest.mark.parametrize("granted", [True, False])
def test_a_customers_message_changes_only_what_ingest_writes_back(ticket: TicketRow, granted: bool) -> None:
    change = transitions.customer_wrote(ticket, NOW)
    assert change is not None
    if not granted and change.if_refused is None:
        return
    assert set(applied(ticket, change, granted=granted)) <= set(transitions.CUSTOMER_WROTE_FIELDS)


def test_an_agents_reply_opens_a_new_ticket_and_moves_no_other() -> None:
    opened = transitions.agent_replied(row(), NOW)
    assert opened is not None and dict(opened.fields) == {"status": TicketStatus.OPEN}
    for status in (TicketStatus.OPEN, TicketStatus.PENDING, TicketStatus.SOLVED):
        assert transitions.agent_replied(assigned(status=status), NOW) is None


# --- the ORM ticket ---------------------------------------------------------------------------

def test_the_same_transitions_apply_to_the_orm_ticket() -> None:
    ticket = Ticket(tenant_id=1, customer_id=1, channel="webchat", **transitions.new_ticket())  # not in a session
    transitions.assign(ticket, AGENT, NOW).apply(ticket)
    transitions.set_status(ticket, TicketStatus.SOLVED, NOW).apply(ticket)
    change = transitions.reopen(ticket, by=Reopener.CUSTOMER)
    change.apply(ticket, granted=False)
    assert (ticket.status, ticket.assignee_id, ticket.routing_state, ticket.reopen_count) == (
        TicketStatus.OPEN, None, RoutingState.PENDING, 1)
