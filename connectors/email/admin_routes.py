"""Mailboxes (admin) and the original of a received mail (agents).

Passwords are write-only: stored encrypted, read back as ``password_set``. Every change is
audited (which fields changed, never their values).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from connectors.email import store as email_store
from connectors.email.connector import EmailConnector
from connectors.email.schemas import (
    CreateMailboxBody,
    MailboxEnvelope,
    MailboxesEnvelope,
    OriginalEnvelope,
    UpdateMailboxBody,
)
from core.models import MAX_ID
from web.api import IntId, RouteTable
from web.http import HUB, body, int_param, principal_of
from web.schemas import Deleted

ADMIN_ROUTES = RouteTable("email")


def connector_of(request: web.Request) -> EmailConnector:
    conn = request.app[HUB].connectors[EmailConnector.kind]
    assert isinstance(conn, EmailConnector)
    return conn


def _changes(data: CreateMailboxBody | UpdateMailboxBody) -> dict[str, Any]:
    return data.model_dump(exclude_unset=True)


@ADMIN_ROUTES.route("GET", "/api/v1/email/mailboxes", summary="List the tenant's mailboxes (admin)",
                    response=MailboxesEnvelope)
async def list_mailboxes(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    async with hub.db.read(principal.tenant_id) as session:
        mailboxes = await email_store.list_mailboxes(session)
    return web.json_response({"mailboxes": mailboxes})


@ADMIN_ROUTES.route("POST", "/api/v1/email/mailboxes", summary="Add a support address (admin)",
                    body=CreateMailboxBody, response=MailboxEnvelope, status=201, errors=(409,))
async def create_mailbox(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    data = await body(request, CreateMailboxBody)
    async with hub.db.session(principal.tenant_id) as session:
        mailbox = await email_store.create_mailbox(session, hub.settings, principal.tenant_id, _changes(data),
                                                   actor_id=principal.agent_id, ip=request.remote)
    connector_of(request).forget()
    return web.json_response({"mailbox": mailbox}, status=201)


@ADMIN_ROUTES.route("GET", "/api/v1/email/mailboxes/{mailbox_id}", summary="One mailbox (admin)",
                    response=MailboxEnvelope, path_params={"mailbox_id": IntId(MAX_ID)})
async def get_mailbox(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    mailbox_id = int_param(request, "mailbox_id", limit=MAX_ID)
    async with hub.db.read(principal.tenant_id) as session:
        mailbox = await email_store.get_mailbox(session, mailbox_id)
    return web.json_response({"mailbox": mailbox})


@ADMIN_ROUTES.route("PATCH", "/api/v1/email/mailboxes/{mailbox_id}", summary="Change a mailbox (admin)",
                    body=UpdateMailboxBody, response=MailboxEnvelope, errors=(409,),
                    path_params={"mailbox_id": IntId(MAX_ID)})
async def update_mailbox(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    mailbox_id = int_param(request, "mailbox_id", limit=MAX_ID)
    data = await body(request, UpdateMailboxBody)
    async with hub.db.session(principal.tenant_id) as session:
        mailbox = await email_store.update_mailbox(session, hub.settings, mailbox_id, _changes(data),
                                                   actor_id=principal.agent_id, ip=request.remote)
    connector_of(request).forget()
    return web.json_response({"mailbox": mailbox})


@ADMIN_ROUTES.route("DELETE", "/api/v1/email/mailboxes/{mailbox_id}", summary="Remove a mailbox (admin)",
                    response=Deleted, path_params={"mailbox_id": IntId(MAX_ID)})
async def delete_mailbox(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    mailbox_id = int_param(request, "mailbox_id", limit=MAX_ID)
    async with hub.db.session(principal.tenant_id) as session:
        await email_store.delete_mailbox(session, mailbox_id, actor_id=principal.agent_id, ip=request.remote)
    connector_of(request).forget()
    return web.json_response({"deleted": mailbox_id})


@ADMIN_ROUTES.route("GET", "/api/v1/email/messages/{message_id}/original",
                    summary="A received mail as it came: whole text, sanitised HTML, headers",
                    response=OriginalEnvelope)
async def get_original(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    message_id = int_param(request, "message_id")
    return web.json_response({"original": await email_store.original(hub, principal, message_id)})
