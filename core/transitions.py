"""Ticket transitions: where a ticket stands for routing, and the rules that move it.

``routing_state`` says what the router makes of a ticket: ``pending`` (to be routed), ``queued``
(routed, nobody could take it yet), ``assigned`` (an agent has it) or ``idle`` (not active: solved
or closed). Every path that moves a ticket (ingest, the ticket flow, the router) goes through the
functions here, so each rule is stated once.
"""

from __future__ import annotations


class RoutingState:
    PENDING = "pending"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    IDLE = "idle"
