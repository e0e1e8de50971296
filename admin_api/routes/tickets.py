"""Tickets over HTTP: the same operations the agent gateway offers, for scripts and integrations."""

from __future__ import annotations

import re
from collections.abc import Iterable

from aiohttp import web

from admin_api.responses import CountsEnvelope, MessageEnvelope, TicketEnvelope, TicketsEnvelope, TicketWithMessages
from admin_api.schemas import CreateTicketBody, MessageBody, TicketQuery, TransferBody, UpdateTicketBody
from core import tickets
from core.errors import InvalidInput
from core.models import MAX_BIG_ID, MAX_ID, Priority
from core.tickets import MAX_TAG_LENGTH, VIEWS
from web.api import RouteTable
from web.http import HUB, body, int_param, principal_of, query_int, query_value

ROUTES = RouteTable("tickets")

_STATUSES = {"new", "open", "pending", "solved", "closed"}


_CHANNEL = re.compile(r"[a-z0-9_]{1,40}")


def _one_of(request: web.Request, name: str, allowed: Iterable[str]) -> str | None:
    value = query_value(request, name)
    if value is not None and value not in allowed:
        raise InvalidInput(f"{name} must be one of {', '.join(allowed)}", code="invalid_query")
    return value


@ROUTES.route("GET", "/api/v1/tickets", summary="List tickets the caller may see, newest first "
           "(?view=mine|unassigned|all|pending|solved&status=open,pending&channel=&group_id=&tag=&priority="
           "&assignee_id=&unassigned=1&before_id=&limit=)", query=TicketQuery, response=TicketsEnvelope)
async def list_tickets(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    status = [s for s in (query_value(request, "status") or "").split(",") if s]
    unknown = [s for s in status if s not in _STATUSES]
    if unknown:
        raise InvalidInput(f"unknown status {unknown[0]!r}", code="invalid_query")
    channel = query_value(request, "channel")
    if channel is not None and not _CHANNEL.fullmatch(channel):
        raise InvalidInput("channel must be a channel's name (1-40 of a-z, 0-9, _)", code="invalid_query")
    tag = query_value(request, "tag")
    if tag is not None:
        tag = tag.strip().lower()
        if not tag or len(tag) > MAX_TAG_LENGTH:
            raise InvalidInput(f"tag must be 1-{MAX_TAG_LENGTH} characters", code="invalid_query")
    rows = await tickets.list_tickets(
        hub, principal, view=_one_of(request, "view", VIEWS), status=status or None,
        assignee_id=query_int(request, "assignee_id", None, lo=1, hi=MAX_ID),
        unassigned=_one_of(request, "unassigned", ("1", "true", "0", "false")) in ("1", "true"),
        channel=channel, group_id=query_int(request, "group_id", None, lo=1, hi=MAX_ID), tag=tag,
        priority=_one_of(request, "priority", [p.value for p in Priority]),
        before_id=query_int(request, "before_id", None, lo=1, hi=MAX_BIG_ID),
        limit=query_int(request, "limit", 50, lo=1, hi=500) or 50,
    )
    return web.json_response({"tickets": rows})


# Before /api/v1/tickets/{ticket_id}, which would take "counts" for an id.
@ROUTES.route("GET", "/api/v1/tickets/counts", summary="How many tickets each view holds for the caller "
           "(mine, unassigned, pending, solved; all for supervisors and up), in one query", response=CountsEnvelope)
async def ticket_counts(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    return web.json_response({"counts": await tickets.view_counts(hub, principal)})


@ROUTES.route("POST", "/api/v1/tickets", summary="Create a ticket by hand", body=CreateTicketBody,
           response=TicketEnvelope, status=201, errors=(409,))
async def create_ticket(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    data = await body(request, CreateTicketBody)
    ticket = await tickets.create_ticket(
        hub, principal, text=data.text, subject=data.subject, customer_id=data.customer_id,
        customer_name=data.customer.name if data.customer else None,
        customer_email=str(data.customer.email) if data.customer and data.customer.email else None,
        channel=data.channel, assignee_id=data.assignee_id, group_id=data.group_id, priority=data.priority,
        tags=data.tags, client_id=data.client_id,
    )
    return web.json_response({"ticket": ticket}, status=201)


@ROUTES.route("GET", "/api/v1/tickets/{ticket_id}", summary="A ticket with its messages", response=TicketWithMessages)
async def get_ticket(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    return web.json_response(await tickets.get_ticket(hub, principal, int_param(request, "ticket_id")))


@ROUTES.route("PATCH", "/api/v1/tickets/{ticket_id}",
           summary="Change status (solve, reopen), priority, subject or tags", body=UpdateTicketBody,
           response=TicketEnvelope, errors=(409,))
async def update_ticket(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    ticket_id = int_param(request, "ticket_id")
    data = await body(request, UpdateTicketBody)
    ticket = await tickets.update_ticket(hub, principal, ticket_id, **data.model_dump(exclude_none=True))
    return web.json_response({"ticket": ticket})


@ROUTES.route("POST", "/api/v1/tickets/{ticket_id}/messages",
           summary="Reply to the customer (kind=reply, delivered through the outbox) or add an internal note,"
           " with uploaded attachments",
           body=MessageBody, response=MessageEnvelope, status=201, errors=(409,))
async def add_message(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    ticket_id = int_param(request, "ticket_id")
    data = await body(request, MessageBody)
    message = await tickets.add_message(hub, principal, ticket_id, data.text, note=data.kind == "note",
                                        attachment_ids=data.attachments, client_id=data.client_id)
    return web.json_response({"message": message}, status=201)


@ROUTES.route("POST", "/api/v1/tickets/{ticket_id}/transfer", summary="Transfer to an agent or a group",
           body=TransferBody, response=TicketEnvelope, errors=(409,))
async def transfer(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    ticket_id = int_param(request, "ticket_id")
    data = await body(request, TransferBody)
    ticket = await tickets.transfer(hub, principal, ticket_id, agent_id=data.agent_id, group_id=data.group_id)
    return web.json_response({"ticket": ticket})


async def _set_status(request: web.Request, status: str) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    ticket = await tickets.update_ticket(hub, principal, int_param(request, "ticket_id"), status=status)
    return web.json_response({"ticket": ticket})


@ROUTES.route("POST", "/api/v1/tickets/{ticket_id}/solve", summary="Mark solved", response=TicketEnvelope,
           errors=(409,))
async def solve(request: web.Request) -> web.Response:
    return await _set_status(request, "solved")


@ROUTES.route("POST", "/api/v1/tickets/{ticket_id}/reopen", summary="Reopen a solved ticket", response=TicketEnvelope,
           errors=(409,))
async def reopen(request: web.Request) -> web.Response:
    return await _set_status(request, "open")
