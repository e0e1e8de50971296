"""WeChat accounts (admin) and the customers' WeChat media (agents).

Secrets are write-only: they are stored encrypted and read back masked. Every change is audited
(which fields changed, never their values).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from connectors.wechat import store as wechat_store
from connectors.wechat.api import ApiError, PlatformUnavailable
from connectors.wechat.routes import connector_of
from connectors.wechat.schemas import (
    CreateWeChatAccountBody,
    UpdateWeChatAccountBody,
    WeChatAccountEnvelope,
    WeChatAccountsEnvelope,
)
from connectors.wechat.store import MAX_KEY, MAX_MEDIA_ID
from core.errors import DomainError, NotFound
from core.models import MAX_ID
from web.api import IntId, RouteTable, WordId
from web.http import HUB, body, int_param, principal_of, tenant_of, word_param
from web.schemas import Deleted

ADMIN_ROUTES = RouteTable("wechat")


@ADMIN_ROUTES.route("GET", "/api/v1/wechat/accounts", summary="List the tenant's WeChat accounts (admin)",
                    response=WeChatAccountsEnvelope)
async def list_accounts(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    async with hub.db.read(principal.tenant_id) as session:
        accounts = await wechat_store.list_accounts(session, hub.settings, tenant_of(request).domain)
    return web.json_response({"accounts": accounts})


@ADMIN_ROUTES.route("POST", "/api/v1/wechat/accounts", summary="Add an Official Account or WeCom kf account (admin)",
           body=CreateWeChatAccountBody, response=WeChatAccountEnvelope, status=201, errors=(409,))
async def create_account(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    data = await body(request, CreateWeChatAccountBody)
    async with hub.db.session(principal.tenant_id) as session:
        account = await wechat_store.create_account(
            session, hub.settings, principal.tenant_id, tenant_of(request).domain, kind=data.kind, name=data.name,
            app_id=str(data.app_id or data.corp_id), secret=data.secret, token=data.token, aes_key=data.aes_key,
            mode=data.mode, open_kfid=data.open_kfid, actor_id=principal.agent_id, ip=request.remote,
        )
    return web.json_response({"account": account}, status=201)


@ADMIN_ROUTES.route("GET", "/api/v1/wechat/accounts/{account_id}", summary="One WeChat account (admin)",
                    response=WeChatAccountEnvelope, path_params={"account_id": IntId(MAX_ID)})
async def get_account(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    account_id = int_param(request, "account_id", limit=MAX_ID)
    async with hub.db.read(principal.tenant_id) as session:
        account = await wechat_store.get_account(session, hub.settings, account_id, tenant_of(request).domain)
    return web.json_response({"account": account})


@ADMIN_ROUTES.route("PATCH", "/api/v1/wechat/accounts/{account_id}", summary="Change a WeChat account (admin)",
           body=UpdateWeChatAccountBody, response=WeChatAccountEnvelope, errors=(409,),
           path_params={"account_id": IntId(MAX_ID)})
async def update_account(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    account_id = int_param(request, "account_id", limit=MAX_ID)
    data = await body(request, UpdateWeChatAccountBody)
    changes: dict[str, Any] = data.model_dump(exclude_unset=True)
    if "corp_id" in changes:
        changes["app_id"] = changes.pop("corp_id")
    async with hub.db.session(principal.tenant_id) as session:
        account = await wechat_store.update_account(
            session, hub.settings, account_id, tenant_of(request).domain, changes, actor_id=principal.agent_id,
            ip=request.remote,
        )
    return web.json_response({"account": account})


@ADMIN_ROUTES.route("DELETE", "/api/v1/wechat/accounts/{account_id}", summary="Remove a WeChat account (admin)",
                    response=Deleted, path_params={"account_id": IntId(MAX_ID)})
async def delete_account(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request, admin=True)
    account_id = int_param(request, "account_id", limit=MAX_ID)
    async with hub.db.session(principal.tenant_id) as session:
        await wechat_store.delete_account(session, account_id, actor_id=principal.agent_id, ip=request.remote)
    return web.json_response({"deleted": account_id})


@ADMIN_ROUTES.route("GET", "/api/v1/wechat/media/{key}/{media_id}", summary="A customer's WeChat image, voice or video",
                    media_type="*/*", path_params={"key": WordId(MAX_KEY), "media_id": WordId(MAX_MEDIA_ID)})
async def get_media(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    principal = await principal_of(request)
    key = word_param(request, "key", max_length=MAX_KEY)
    media_id = word_param(request, "media_id", max_length=MAX_MEDIA_ID)
    account = await wechat_store.account_by_key(hub, principal.tenant_id, key)
    connector = connector_of(request)
    if account is None:
        raise NotFound("no such WeChat account", code="account_not_found")
    try:
        content_type, data = await connector.media(account, media_id)
    except ApiError as exc:
        raise NotFound(f"WeChat has no such media (errcode {exc.errcode})", code="media_not_found") from None
    except PlatformUnavailable:
        err = DomainError("WeChat is unreachable; try again", code="platform_unavailable")
        err.status = 503
        raise err from None
    return web.Response(body=data, content_type=content_type, headers={"Cache-Control": "private, max-age=86400"})
