"""Sign-in and sign-out. Every attempt, failed ones too, goes to the login log."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from admin_api.schemas import LoginBody
from core import auth
from core.errors import Unauthorized
from core.models import Presence
from core.presence import set_presence
from core.seats import profile
from core.serialize import agent_dict
from web.api import RouteTable
from web.http import HUB, bearer_token, body, principal_of, tenant_of

ROUTES = RouteTable("auth")


def client_ip(request: web.Request) -> str | None:
    return request.remote


@ROUTES.route("POST", "/api/v1/auth/login", summary="Sign in with e-mail and password; returns a bearer token",
           body=LoginBody, auth=False)
async def login(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    tenant = tenant_of(request)
    data = await body(request, LoginBody)
    error: Unauthorized | None = None
    # The log row must survive a failed attempt, so the failure is raised after the commit.
    async with hub.db.session(tenant.id) as session:
        try:
            token, agent = await auth.login(
                session, tenant.id, data.email, data.password, ip=client_ip(request),
                user_agent=request.headers.get("User-Agent"), ttl=timedelta(hours=hub.settings.token_ttl_hours),
            )
        except Unauthorized as exc:
            error = exc
    if error is not None:
        raise error
    return web.json_response({"token": token, "agent": agent_dict(agent)})


@ROUTES.route("POST", "/api/v1/auth/logout", summary="Revoke this token and go offline")
async def logout(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    token = bearer_token(request)
    assert token is not None
    async with hub.db.session(principal.tenant_id) as session:
        await auth.revoke(session, principal.tenant_id, token)
    await set_presence(hub, principal.tenant_id, principal.agent_id, Presence.OFFLINE)
    return web.json_response({"ok": True})


@ROUTES.route("GET", "/api/v1/me", summary="The signed-in agent")
async def me(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    return web.json_response({"agent": await profile(hub, principal)})
