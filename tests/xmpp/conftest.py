"""XMPP fixtures: a real prosody on loopback (tests/xmpp/prosody.py), a hub that connects the
tenants' XMPP accounts, and a tenant with its account made through the admin API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from admin_api.client import AgentClient
from connectors.xmpp.settings import XmppSettings
from core.config import Settings
from tests.conftest import Server, TenantInfo, eventually, make_tenant, start_server
from tests.xmpp.prosody import Prosody, skip_without_prosody

SUPPORT_USER, SUPPORT_PASSWORD = "support", 'xmpp-"pass\\word'
CUSTOMERS = {f"customer{n}": "pw" for n in range(1, 6)}


@pytest.fixture
async def prosody() -> AsyncIterator[Prosody]:
    skip_without_prosody()
    server = Prosody({SUPPORT_USER: SUPPORT_PASSWORD, **CUSTOMERS}, tls=True)
    await server.start()
    yield server
    await server.close()


def xmpp_settings(**kw: Any) -> XmppSettings:
    return XmppSettings(**{"lease_seconds": 3.0, "backoff_seconds": 0.2, "max_backoff_seconds": 1.0,
                           "ack_timeout": 5.0, "refresh_seconds": 1.0, **kw})


@pytest.fixture
async def xmpp_server(settings: Settings) -> AsyncIterator[Server]:
    srv = await start_server(replace(settings, channels={**settings.channels, "xmpp": xmpp_settings()}), xmpp=True)
    yield srv
    await srv.runner.cleanup()


@dataclass
class Desk:
    """A tenant with an XMPP account and its admin signed in (and connected to the gateway)."""

    tenant: TenantInfo
    admin: AgentClient
    account: dict[str, Any]

    async def tickets(self) -> list[dict[str, Any]]:
        return list((await self.admin.api("GET", "/api/v1/tickets"))["tickets"])

    async def ticket(self, ticket_id: int) -> dict[str, Any]:
        return dict(await self.admin.api("GET", f"/api/v1/tickets/{ticket_id}"))

    async def ticket_with(self, text: str, timeout: float = 15.0) -> dict[str, Any]:
        async def find() -> dict[str, Any] | None:
            for t in await self.tickets():
                detail = await self.ticket(t["id"])
                if any(text in m["text"] for m in detail["messages"]):
                    return detail
            return None
        return dict(await eventually(find, timeout=timeout))

    async def connected(self, timeout: float = 20.0) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            acc = (await self.admin.api("GET", f"/api/v1/xmpp/accounts/{self.account['id']}"))["account"]
            return acc if acc["status"]["connected"] else None
        return dict(await eventually(check, timeout=timeout, interval=0.1))

    async def deactivate(self) -> None:
        await self.admin.api("PATCH", f"/api/v1/xmpp/accounts/{self.account['id']}", {"active": False})


async def make_desk(server: Server, prosody: Prosody, *, component: bool = False) -> Desk:
    tenant = await make_tenant(server.settings, server)
    admin_info = await tenant.add_agent(role="admin")
    admin = await tenant.signed_in(admin_info)
    if component:
        body = {"kind": "component", "jid": prosody.component, "secret": prosody.component_secret,
                "host": prosody.host, "port": prosody.component_port, "security": "none", "name": "Acme"}
    else:
        body = {"kind": "client", "jid": prosody.jid(SUPPORT_USER), "secret": SUPPORT_PASSWORD,
                "host": prosody.host, "port": prosody.c2s_port, "security": "none", "name": "Acme"}
    account = (await admin.api("POST", "/api/v1/xmpp/accounts", body))["account"]
    return Desk(tenant, admin, account)
