"""Ticket transitions: where a ticket stands, and the one statement of each rule that moves it.

``routing_state`` says what the router makes of a ticket: ``pending`` (to be routed), ``queued``
(routed, nobody could take it yet), ``assigned`` (an agent has it) or ``idle`` (not active: solved
or closed). Every path that moves a ticket — ingest (a customer's message), the ticket flow (an
agent's or admin's action) and the router — asks a function here, so each rule is stated once.

The functions are pure: they read the ticket's fields and return a :class:`Transition`, the change
decided but not yet made — the fields to set, and the capacity change (``agents.load``) the caller
makes in the same transaction *before* applying it:

    change = transitions.assign(ticket, agent_id, now)
    if not await capacity.move_load(session, change, ticket.channel):
        raise Conflict(...)                  # or change.apply(ticket, granted=False) where allowed
    change.apply(ticket)

Capacity first, fields after: the per-channel check in :func:`core.capacity.take_slot` counts the
agent's open tickets in the database, so the ticket must not already be flushed as theirs (an ORM
session autoflushes before that count). The router commits the loads of a whole batch at once
(``Router._commit_loads``) and then applies each ticket's transition.

They work on the ORM :class:`core.models.Ticket` and on the plain :class:`core.serialize.TicketRow`
of the hot paths alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from core.errors import Conflict, InvalidInput
from core.models import ACTIVE_STATUSES, TicketStatus


class RoutingState:
    PENDING = "pending"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    IDLE = "idle"


class TicketState(Protocol):
    """What the transitions read of a ticket (both Ticket and TicketRow have it); they set the
    fields of :meth:`Transition.apply` (both have those too)."""

    @property
    def status(self) -> str: ...
    @property
    def assignee_id(self) -> int | None: ...
    @property
    def routing_state(self) -> str: ...
    @property
    def solved_at(self) -> datetime | None: ...
    @property
    def reopen_count(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of a ticket's state, decided: the fields to set, and the capacity change to make
    first, in the same transaction — take a slot of ``take`` (online only if ``require_online``),
    release one of ``release``."""

    fields: Mapping[str, Any]
    take: int | None = None
    release: int | None = None
    require_online: bool = False
    # Only where the slot may be refused without that being an error (a reopen): the fields to set
    # instead. Elsewhere a refused slot is the caller's error to raise.
    if_refused: Mapping[str, Any] | None = None

    def apply(self, ticket: Any, *, granted: bool = True) -> None:
        """Set the fields on the ticket: those for a slot ``granted`` (or none asked for), else
        :attr:`if_refused`."""
        if not granted and self.if_refused is None:
            raise ValueError("the slot this transition needs was refused; it cannot be applied")
        for name, value in (self.fields if granted else self.if_refused or {}).items():
            setattr(ticket, name, value)


class Reopener(StrEnum):
    CUSTOMER = "customer"  # their message on a solved ticket (core.ingest)
    AGENT = "agent"  # an agent, supervisor or admin sets it open again (core.tickets.update_ticket)


# --- status rules ---------------------------------------------------------------------------

# Which status may follow which. Closed is final: the customer's next message opens a new ticket
# (a closed one is not joinable, core.models.JOINABLE_STATUSES). Solved may only be reopened or
# closed; new is the untouched state, never returned to.
ALLOWED: Mapping[TicketStatus, frozenset[TicketStatus]] = {
    TicketStatus.NEW: frozenset({TicketStatus.OPEN, TicketStatus.PENDING, TicketStatus.SOLVED, TicketStatus.CLOSED}),
    TicketStatus.OPEN: frozenset({TicketStatus.PENDING, TicketStatus.SOLVED, TicketStatus.CLOSED}),
    TicketStatus.PENDING: frozenset({TicketStatus.OPEN, TicketStatus.SOLVED, TicketStatus.CLOSED}),
    TicketStatus.SOLVED: frozenset({TicketStatus.OPEN, TicketStatus.CLOSED}),
    TicketStatus.CLOSED: frozenset(),
}

# What a customer's message can change of a ticket's state (:func:`customer_wrote`): core.ingest
# writes exactly these back for the tickets a batch joined.
CUSTOMER_WROTE_FIELDS = ("status", "assignee_id", "routing_state", "reopen_count", "solved_at")


def is_active(status: str) -> bool:
    """Whether a ticket in this status is being worked on: it occupies its agent's capacity, and
    without an agent it waits for one."""
    return status in ACTIVE_STATUSES


def holds_slot(ticket: TicketState) -> bool:
    """Whether the ticket occupies one of its assignee's slots (``agents.load`` counts it)."""
    return ticket.assignee_id is not None and is_active(ticket.status)


def check_status(current: str, wanted: str) -> TicketStatus:
    """The status asked for, if a ticket in ``current`` may take it (:data:`ALLOWED`)."""
    try:
        new = TicketStatus(wanted)
    except ValueError:
        raise InvalidInput(f"unknown status {wanted!r}", code="invalid_status") from None
    if new not in ALLOWED[TicketStatus(current)]:
        raise Conflict(f"a {current} ticket cannot become {new}", code="invalid_transition")
    return new


def is_reopen(current: str, new: str) -> bool:
    """Whether going from ``current`` to ``new`` is a reopen (not active → active: solved → open)."""
    return not is_active(current) and is_active(new)


# --- the transitions ------------------------------------------------------------------------

def new_ticket() -> dict[str, Any]:
    """The state a ticket starts in, made from a customer's first message or by hand: new,
    nobody's, waiting to be routed (a ticket made by hand for an agent is then :func:`assign`-ed)."""
    return {"status": TicketStatus.NEW, "routing_state": RoutingState.PENDING, "assignee_id": None,
            "assigned_at": None, "queued_at": None, "overflow_at": None, "solved_at": None, "closed_at": None,
            "reopen_count": 0}


def assign(ticket: TicketState, agent_id: int, now: datetime) -> Transition:
    """``agent_id`` becomes the assignee: the router's choice, an agent claiming or answering a
    waiting ticket, a transfer, a ticket made by hand for someone.

    An active ticket takes a slot of the new agent, and frees its previous assignee's (a transfer).
    The slot is taken whatever the agent's presence: a person chose them (themselves, or a colleague
    by name), so only capacity limits it. The router's own choices go to online agents only, and
    it takes their slots for a whole batch at once (``Router._commit_loads``). An inactive ticket
    (a solved one transferred) takes no slot and stays idle. Its overflow deadline is over: it no
    longer waits. ``queued_at`` stays: it says the ticket was served from the queue.
    """
    active = is_active(ticket.status)
    return Transition(
        {"assignee_id": agent_id, "assigned_at": now, "overflow_at": None,
         "routing_state": RoutingState.ASSIGNED if active else RoutingState.IDLE},
        take=agent_id if active else None,
        release=ticket.assignee_id if holds_slot(ticket) else None,
    )


def release(ticket: TicketState) -> Transition:
    """The assignee lets go and the ticket goes back to routing: an agent went offline (their chat
    tickets, unless the tenant keeps them), or it was transferred to a group (whose group the caller
    sets). Frees the agent's slot if the ticket held one; its wait starts afresh when the router
    queues it."""
    # Kept as it was: a solved ticket transferred to a group becomes pending too (not idle); the
    # router never picks it (it reads active tickets only) and a reopen routes it again.
    return Transition(
        {"assignee_id": None, "assigned_at": None, "queued_at": None, "routing_state": RoutingState.PENDING},
        release=ticket.assignee_id if holds_slot(ticket) else None,
    )


def queue(ticket: TicketState, now: datetime, overflow_at: datetime | None) -> Transition | None:
    """The router could place no agent on the ticket: it waits in its group's queue until
    ``overflow_at`` (None: without limit). None when it already waits there: looking at it again
    must not restart its wait, or it would never overflow."""
    if ticket.routing_state == RoutingState.QUEUED:
        return None
    return Transition({"routing_state": RoutingState.QUEUED, "queued_at": now, "overflow_at": overflow_at})


def requeue(ticket: TicketState, group_id: int | None, now: datetime) -> Transition:
    """A queued ticket waited until its overflow deadline: it moves on to ``group_id`` (None: any
    agent of the tenant) to be routed there, its wait in the new group timed from now."""
    return Transition({"group_id": group_id, "routing_state": RoutingState.PENDING, "queued_at": now,
                       "overflow_at": None})


def set_status(ticket: TicketState, new: TicketStatus, now: datetime) -> Transition:
    """Any change of status but a reopen (:func:`reopen`): solve, close, pending, open again.

    Solving records when; closing records when, and counts as solved then if it was not before.
    Leaving the active statuses (solve, close) frees the agent's slot, ends any wait in the queue
    and makes the ticket idle for routing; the agent stays its assignee (their solved ticket comes
    back to them on a reopen). Between active statuses nothing but the status changes.
    """
    if is_reopen(ticket.status, new):
        raise ValueError(f"{ticket.status} → {new} is a reopen: use transitions.reopen")
    fields: dict[str, Any] = {"status": new}
    if new == TicketStatus.SOLVED:
        fields["solved_at"] = now
    if new == TicketStatus.CLOSED:
        fields["closed_at"] = now
        fields["solved_at"] = ticket.solved_at or now
    release_from = None
    if is_active(ticket.status) and not is_active(new):
        release_from = ticket.assignee_id
        fields["routing_state"] = RoutingState.IDLE
        fields["overflow_at"] = None
    return Transition(fields, release=release_from)


def reopen(ticket: TicketState, *, by: Reopener) -> Transition:
    """Solved → open: back to the agent who had it if they have room (the slot is taken with
    ``require_online`` as below), else — or without an agent — back to routing.

    Who reopens decides whether the agent must be online:
    - a customer (their message on a solved ticket) is waiting for an answer now. An offline or
      away agent would leave them unanswered, so the ticket stays with its agent only if they are
      online, and goes back to routing otherwise;
    - an agent, supervisor or admin (setting the status) is acting now and chose to take the ticket
      up again: their own ticket, or a colleague's, stays with its agent within capacity, whatever
      the agent's presence — the person reopening it is the one who will see to it.
    """
    if ticket.status != TicketStatus.SOLVED:
        raise ValueError(f"only a solved ticket reopens, not a {ticket.status} one")
    # Kept as it was: assigned_at and queued_at stay as they were (core.ingest writes back only
    # CUSTOMER_WROTE_FIELDS), also when the ticket goes back to routing.
    opened = {"status": TicketStatus.OPEN, "reopen_count": ticket.reopen_count + 1, "solved_at": None}
    to_routing = {**opened, "assignee_id": None, "routing_state": RoutingState.PENDING}
    if ticket.assignee_id is None:
        return Transition(to_routing)
    return Transition({**opened, "routing_state": RoutingState.ASSIGNED}, take=ticket.assignee_id,
                      require_online=by is Reopener.CUSTOMER, if_refused=to_routing)


def customer_wrote(ticket: TicketState, now: datetime) -> Transition | None:
    """A customer's message on their ticket: a solved one reopens (:func:`reopen`), a pending one
    (waiting on the customer) is open again; a new or open one does not move (None)."""
    if ticket.status == TicketStatus.SOLVED:
        return reopen(ticket, by=Reopener.CUSTOMER)
    if ticket.status == TicketStatus.PENDING:
        return set_status(ticket, TicketStatus.OPEN, now)
    return None


def agent_replied(ticket: TicketState, now: datetime) -> Transition | None:
    """An agent's reply to the customer: a new ticket is open from then on; any other status stays
    (a pending one still waits on the customer, a solved one stays solved). None: no change."""
    if ticket.status == TicketStatus.NEW:
        return set_status(ticket, TicketStatus.OPEN, now)
    return None
