"""XMPP accounts (admin): client accounts and external components. Secrets are write-only: stored
encrypted, read back as ``secret_set``. Every change is audited (which fields changed, never their
values) and makes this process match its links to the accounts at once (the others within
``CHANNELHUB_XMPP_REFRESH_SECONDS``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from connectors.xmpp import store as xstore
from connectors.xmpp.connector import XmppConnector
from connectors.xmpp.schemas import AccountEnvelope, AccountsEnvelope, CreateAccountBody, UpdateAccountBody
from core.models import MAX_ID
from web.api import IntId, RouteTable
from web.http import HUB, body, int_param, principal_of
from web.schemas import Deleted

ADMIN_ROUTES = RouteTable("xmpp")


def connector_of(request: web.Request) -> XmppConnector:
    conn = request.app[HUB].connectors[XmppConnector.kind]
    assert isinstance(conn, XmppConnector)
    return conn


def _changes(data: CreateAccountBody | UpdateAccountBody) -> dict[str, Any]:
    return data.model_dump(exclude_unset=True)


ACCOUNT_ID = {"xmpp_account_id": IntId(MAX_ID)}


@ADMIN_ROUTES.route("GET", "/api/v1/xmpp/accounts", summary="List the tenant's XMPP accounts (admin)",
                    response=AccountsEnvelope)
async def list_accounts(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    async with hub.db.read(principal.tenant_id) as session:
        accounts = await xstore.list_accounts(session)
    return web.json_response({"accounts": accounts})


@ADMIN_ROUTES.route("POST", "/api/v1/xmpp/accounts", summary="Add a client account or a component (admin)",
                    body=CreateAccountBody, response=AccountEnvelope, status=201, errors=(409,))
async def create_account(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    data = await body(request, CreateAccountBody)
    async with hub.db.session(principal.tenant_id) as session:
        account = await xstore.create_account(session, hub.settings, principal.tenant_id, _changes(data),
                                              actor_id=principal.agent_id, ip=request.remote)
    connector_of(request).forget()
    return web.json_response({"account": account}, status=201)


@ADMIN_ROUTES.route("GET", "/api/v1/xmpp/accounts/{xmpp_account_id}", summary="One XMPP account (admin)",
                    response=AccountEnvelope, path_params=ACCOUNT_ID)
async def get_account(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    account_id = int_param(request, "xmpp_account_id", limit=MAX_ID)
    async with hub.db.read(principal.tenant_id) as session:
        account = await xstore.get_account(session, account_id)
    return web.json_response({"account": account})


@ADMIN_ROUTES.route("PATCH", "/api/v1/xmpp/accounts/{xmpp_account_id}", summary="Change an XMPP account (admin)",
                    body=UpdateAccountBody, response=AccountEnvelope, errors=(409,), path_params=ACCOUNT_ID)
async def update_account(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    account_id = int_param(request, "xmpp_account_id", limit=MAX_ID)
    data = await body(request, UpdateAccountBody)
    async with hub.db.session(principal.tenant_id) as session:
        account = await xstore.update_account(session, hub.settings, account_id, _changes(data),
                                              actor_id=principal.agent_id, ip=request.remote)
    connector_of(request).forget()
    return web.json_response({"account": account})


@ADMIN_ROUTES.route("DELETE", "/api/v1/xmpp/accounts/{xmpp_account_id}", summary="Remove an XMPP account (admin)",
                    response=Deleted, path_params=ACCOUNT_ID)
async def delete_account(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    account_id = int_param(request, "xmpp_account_id", limit=MAX_ID)
    async with hub.db.session(principal.tenant_id) as session:
        await xstore.delete_account(session, account_id, actor_id=principal.agent_id, ip=request.remote)
    connector_of(request).forget()
    return web.json_response({"deleted": account_id})
