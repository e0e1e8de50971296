"""The agent workspace over HTTP (#13): the customer panel's history, customer merges and their undo,
ticket merges and splits, canned replies, macros and mentions. docs/api.md, "The agent workspace"."""

from __future__ import annotations

from aiohttp import web

from admin_api.responses import (
    CannedRendered,
    CannedRepliesEnvelope,
    CannedReplyEnvelope,
    CustomerMerged,
    CustomerMerges,
    CustomerMergeUndone,
    CustomerTickets,
    MacroApplied,
    MacroEnvelope,
    MacrosEnvelope,
    MentionsPage,
    MentionsRead,
    TicketsMerged,
    TicketSplit,
)
from admin_api.schemas import (
    CannedBody,
    CannedPatch,
    CannedQuery,
    CustomerMergeBody,
    CustomerTicketsQuery,
    MacroBody,
    MacroPatch,
    MentionsQuery,
    MentionsReadBody,
    SplitBody,
    TicketMergeBody,
)
from core import canned, macros, mentions, merges
from core.errors import InvalidInput
from core.models import MAX_BIG_ID
from web.api import RouteTable
from web.http import HUB, body, int_param, principal_of, query_int, query_value
from web.schemas import Deleted

ROUTES = RouteTable("workspace")


# --- customers ---------------------------------------------------------------------------------------
@ROUTES.route("GET", "/api/v1/customers/{customer_id}/tickets", tag="customers",
              summary="The customer's tickets on every channel, newest first (?before_id=&limit=), each with "
              "whether the caller may open it", response=CustomerTickets, query=CustomerTicketsQuery)
async def customer_tickets(request: web.Request) -> web.Response:
    p = await principal_of(request)
    customer_id = int_param(request, "customer_id")
    return web.json_response(await merges.customer_tickets(
        request.app[HUB], p, customer_id, before_id=query_int(request, "before_id", None, lo=1, hi=MAX_BIG_ID),
        limit=query_int(request, "limit", 50, lo=1, hi=200)))


@ROUTES.route("POST", "/api/v1/customers/{customer_id}/merge", body=CustomerMergeBody, tag="customers",
              summary="Merge another customer into this one: identities and tickets move here (undo with "
              "/api/v1/customers/merges/{merge_id}/undo)", response=CustomerMerged, status=201, errors=(409,))
async def merge_customers(request: web.Request) -> web.Response:
    p = await principal_of(request)
    customer_id = int_param(request, "customer_id")
    data = await body(request, CustomerMergeBody)
    result = await merges.merge_customers(request.app[HUB], p, customer_id, data.other_id, request.remote)
    return web.json_response(result, status=201)


@ROUTES.route("GET", "/api/v1/customers/{customer_id}/merges", tag="customers",
              summary="The merges into this customer and of it into another, newest first",
              response=CustomerMerges)
async def list_merges(request: web.Request) -> web.Response:
    p = await principal_of(request)
    return web.json_response({"merges": await merges.list_merges(request.app[HUB], p,
                                                                 int_param(request, "customer_id"))})


@ROUTES.route("POST", "/api/v1/customers/merges/{merge_id}/undo", tag="customers",
              summary="Undo a customer merge: what it moved goes back (409 undo_conflict when that can no longer "
              "be done exactly)", response=CustomerMergeUndone, errors=(409,))
async def undo_merge(request: web.Request) -> web.Response:
    p = await principal_of(request)
    merge_id = int_param(request, "merge_id")
    return web.json_response(await merges.undo_customer_merge(request.app[HUB], p, merge_id, request.remote))


# --- tickets -----------------------------------------------------------------------------------------
@ROUTES.route("POST", "/api/v1/tickets/{ticket_id}/merge", body=TicketMergeBody, tag="tickets",
              summary="Merge another ticket of the same customer into this one: its messages move here, it is "
              "closed and points here", response=TicketsMerged, errors=(409,))
async def merge_tickets(request: web.Request) -> web.Response:
    p = await principal_of(request)
    ticket_id = int_param(request, "ticket_id")
    data = await body(request, TicketMergeBody)
    return web.json_response(await merges.merge_tickets(request.app[HUB], p, ticket_id, data.other_ticket_id,
                                                        request.remote))


@ROUTES.route("POST", "/api/v1/tickets/{ticket_id}/messages/{message_id}/split", body=SplitBody, tag="tickets",
              summary="Move a message (with following: it and every later one) into a new ticket of the same "
              "customer, routed as new", response=TicketSplit, status=201, errors=(409,))
async def split(request: web.Request) -> web.Response:
    p = await principal_of(request)
    ticket_id = int_param(request, "ticket_id")
    message_id = int_param(request, "message_id")
    data = await body(request, SplitBody)
    result = await merges.split_ticket(request.app[HUB], p, ticket_id, message_id, following=data.following,
                                       subject=data.subject, ip=request.remote)
    return web.json_response(result, status=201)


# --- canned replies ----------------------------------------------------------------------------------
@ROUTES.route("GET", "/api/v1/canned-replies", tag="canned replies",
              summary="The canned replies the caller may use, the tenant's and their own (?q=&limit=)",
              response=CannedRepliesEnvelope, query=CannedQuery)
async def list_canned(request: web.Request) -> web.Response:
    p = await principal_of(request)
    q = query_value(request, "q")
    if q is not None and len(q) > 200:
        raise InvalidInput("q is at most 200 characters", code="invalid_query")
    rows = await canned.list_canned(request.app[HUB], p, q=q, limit=query_int(request, "limit", 50, lo=1, hi=200))
    return web.json_response({"canned_replies": rows})


@ROUTES.route("POST", "/api/v1/canned-replies", body=CannedBody, tag="canned replies",
              summary="Add a canned reply: personal (anyone) or the tenant's (admin)", response=CannedReplyEnvelope,
              status=201, errors=(409,))
async def create_canned(request: web.Request) -> web.Response:
    p = await principal_of(request)
    data = await body(request, CannedBody)
    made = await canned.create(request.app[HUB], p, scope=data.scope, shortcut=data.shortcut, title=data.title,
                               text=data.text)
    return web.json_response({"canned_reply": made}, status=201)


@ROUTES.route("PATCH", "/api/v1/canned-replies/{canned_id}", body=CannedPatch, tag="canned replies",
              summary="Change a canned reply: your own, or the tenant's (admin)", response=CannedReplyEnvelope,
              errors=(409,))
async def update_canned(request: web.Request) -> web.Response:
    p = await principal_of(request)
    canned_id = int_param(request, "canned_id")
    data = await body(request, CannedPatch)
    changed = await canned.update(request.app[HUB], p, canned_id, data.model_dump(exclude_unset=True))
    return web.json_response({"canned_reply": changed})


@ROUTES.route("DELETE", "/api/v1/canned-replies/{canned_id}", tag="canned replies",
              summary="Remove a canned reply: your own, or the tenant's (admin)", response=Deleted)
async def delete_canned(request: web.Request) -> web.Response:
    p = await principal_of(request)
    canned_id = int_param(request, "canned_id")
    await canned.delete(request.app[HUB], p, canned_id)
    return web.json_response({"deleted": canned_id})


@ROUTES.route("POST", "/api/v1/tickets/{ticket_id}/canned-replies/{canned_id}/render", tag="canned replies",
              summary="A canned reply's text with its placeholders filled in for the ticket", response=CannedRendered)
async def render_canned(request: web.Request) -> web.Response:
    p = await principal_of(request)
    ticket_id = int_param(request, "ticket_id")
    canned_id = int_param(request, "canned_id")
    return web.json_response(await canned.render_for_ticket(request.app[HUB], p, ticket_id, canned_id))


# --- macros ------------------------------------------------------------------------------------------
@ROUTES.route("GET", "/api/v1/macros", tag="macros", summary="The tenant's macros", response=MacrosEnvelope)
async def list_macros(request: web.Request) -> web.Response:
    p = await principal_of(request)
    return web.json_response({"macros": await macros.list_macros(request.app[HUB], p)})


@ROUTES.route("POST", "/api/v1/macros", body=MacroBody, tag="macros", summary="Add a macro (admin)",
              response=MacroEnvelope, status=201, errors=(409,))
async def create_macro(request: web.Request) -> web.Response:
    p = await principal_of(request, admin=True)
    data = await body(request, MacroBody)
    made = await macros.create(request.app[HUB], p, name=data.name, description=data.description,
                               actions=[a.model_dump() for a in data.actions], ip=request.remote)
    return web.json_response({"macro": made}, status=201)


@ROUTES.route("PATCH", "/api/v1/macros/{macro_id}", body=MacroPatch, tag="macros", summary="Change a macro (admin)",
              response=MacroEnvelope, errors=(409,))
async def update_macro(request: web.Request) -> web.Response:
    p = await principal_of(request, admin=True)
    macro_id = int_param(request, "macro_id")
    data = await body(request, MacroPatch)
    changes = data.model_dump(exclude_unset=True)
    if data.actions is not None:
        changes["actions"] = [a.model_dump() for a in data.actions]
    return web.json_response({"macro": await macros.update(request.app[HUB], p, macro_id, changes, request.remote)})


@ROUTES.route("DELETE", "/api/v1/macros/{macro_id}", tag="macros", summary="Remove a macro (admin)",
              response=Deleted)
async def delete_macro(request: web.Request) -> web.Response:
    p = await principal_of(request, admin=True)
    macro_id = int_param(request, "macro_id")
    await macros.delete(request.app[HUB], p, macro_id, request.remote)
    return web.json_response({"deleted": macro_id})


@ROUTES.route("POST", "/api/v1/tickets/{ticket_id}/macros/{macro_id}", tag="macros",
              summary="Apply a macro to the ticket: all its actions at once, or none", response=MacroApplied,
              errors=(409, 413))
async def apply_macro(request: web.Request) -> web.Response:
    p = await principal_of(request)
    ticket_id = int_param(request, "ticket_id")
    macro_id = int_param(request, "macro_id")
    return web.json_response(await macros.apply(request.app[HUB], p, ticket_id, macro_id))


# --- mentions ----------------------------------------------------------------------------------------
@ROUTES.route("GET", "/api/v1/me/mentions", tag="mentions",
              summary="The notes that mention the caller, unread first (?unread=1&before_id=&limit=)",
              response=MentionsPage, query=MentionsQuery)
async def my_mentions(request: web.Request) -> web.Response:
    p = await principal_of(request)
    unread = query_value(request, "unread")
    if unread not in (None, "0", "1", "true", "false"):
        raise InvalidInput("unread is 1 or 0", code="invalid_query")
    return web.json_response(await mentions.my_mentions(
        request.app[HUB], p, unread_only=unread in ("1", "true"),
        before_id=query_int(request, "before_id", None, lo=1, hi=MAX_BIG_ID),
        limit=query_int(request, "limit", 50, lo=1, hi=200)))


@ROUTES.route("POST", "/api/v1/me/mentions/read", body=MentionsReadBody, tag="mentions",
              summary="Mark the caller's mentions read: {\"ids\": [...]} or {\"all\": true}", response=MentionsRead)
async def read_mentions(request: web.Request) -> web.Response:
    p = await principal_of(request)
    data = await body(request, MentionsReadBody)
    return web.json_response(await mentions.mark_read(request.app[HUB], p, None if data.all else data.ids))
