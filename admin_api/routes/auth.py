"""Sign-in and sign-out. Every attempt, failed ones too, goes to the login log."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from admin_api.responses import AgentEnvelope, LoginAnswer, Ok, TokenAnswer
from admin_api.schemas import LoginBody, PasswordBody
from core import auth
from core.audit import audit
from core.models import Presence
from core.presence import set_presence
from core.seats import profile
from core.serialize import agent_dict
from web.api import RouteTable
from web.http import HUB, bearer_token, body, principal_of, tenant_of

ROUTES = RouteTable("auth")


def client_ip(request: web.Request) -> str | None:
    return request.remote


@ROUTES.route("POST", "/api/v1/auth/login", summary="Sign in with e-mail and password; returns a bearer token "
           "(throttled: 429 with Retry-After after repeated failures)", body=LoginBody, auth=False,
           response=LoginAnswer, errors=(401, 429))
async def login(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    tenant = tenant_of(request)
    data = await body(request, LoginBody)
    token, agent = await hub.logins.sign_in(
        hub.db, tenant.id, data.email, data.password, ip=client_ip(request),
        user_agent=request.headers.get("User-Agent"), ttl=timedelta(hours=hub.settings.token_ttl_hours),
    )
    return web.json_response({"token": token, "agent": agent_dict(agent)})


@ROUTES.route("POST", "/api/v1/auth/logout", summary="Revoke this token, close its sockets and go offline",
           response=Ok)
async def logout(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    token = bearer_token(request)
    assert token is not None
    async with hub.db.session(principal.tenant_id) as session:
        await auth.revoke(session, principal.tenant_id, token)
    await auth.announce_revoked(hub, principal.tenant_id, principal.agent_id, token)
    await set_presence(hub, principal.tenant_id, principal.agent_id, Presence.OFFLINE)
    return web.json_response({"ok": True})


@ROUTES.route("POST", "/api/v1/auth/logout-all", summary="Sign out everywhere: revoke all the caller's tokens, "
           "close all their sockets on every process and go offline", response=Ok)
async def logout_all(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    async with hub.db.session(principal.tenant_id) as session:
        await auth.revoke_agent(session, principal.tenant_id, principal.agent_id)
        audit(session, tenant_id=principal.tenant_id, actor_type="agent", actor_id=principal.agent_id,
              action="agent.logout_all", target_type="agent", target_id=principal.agent_id, ip=client_ip(request))
    await auth.announce_revoked(hub, principal.tenant_id, principal.agent_id)
    await set_presence(hub, principal.tenant_id, principal.agent_id, Presence.OFFLINE)
    return web.json_response({"ok": True})


@ROUTES.route("PUT", "/api/v1/me/password", summary="Change the caller's password: ends all their sessions and "
           "returns a new token for this client", body=PasswordBody, response=TokenAnswer)
async def change_password(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    data = await body(request, PasswordBody)
    token = await hub.logins.change_password(
        hub.db, principal, data.current_password, data.new_password, ip=client_ip(request),
        ttl=timedelta(hours=hub.settings.token_ttl_hours),
    )
    await auth.announce_revoked(hub, principal.tenant_id, principal.agent_id)
    return web.json_response({"token": token})


@ROUTES.route("GET", "/api/v1/me", summary="The signed-in agent", response=AgentEnvelope)
async def me(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    return web.json_response({"agent": await profile(hub, principal)})
