"""WeChat fixtures: an admin, and accounts made through the admin API the way a tenant's admin makes
them. The loopback stand-in for the WeChat APIs (``wechat_api``) is in tests/conftest.py: the
cross-tenant and bad-input tests use it too."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from admin_api.client import AgentClient
from tests.conftest import Server, TenantInfo
from tests.wechat.platform import (
    Push,
    Pusher,
    StandIn,
    new_aes_key,
    new_app_id,
    wecom_callback,
    wecom_verification,
)


@dataclass
class OaAccount:
    id: int
    key: str
    app_id: str
    secret: str
    pusher: Pusher
    info: dict[str, Any]
    tenant: TenantInfo

    @property
    def path(self) -> str:
        return f"/wechat/oa/{self.key}"

    async def deliver(self, push: Push, *, host: str | None = None, server: Server | None = None) -> tuple[int, str]:
        async with aiohttp.ClientSession() as http, http.post(
            (server or self.tenant.server).url + self.path, params=push.query, data=push.body,
            headers={"Host": host or self.tenant.domain, "Content-Type": "text/xml"},
        ) as resp:
            return resp.status, await resp.text()


async def admin_of(tenant: TenantInfo) -> AgentClient:
    admin = next((a for a in tenant.agents if a.role == "admin"), None) or await tenant.add_agent(role="admin")
    return await tenant.signed_in(admin, connect=False)


async def make_oa_account(tenant: TenantInfo, wechat_api: StandIn, *, mode: str = "plain") -> OaAccount:
    client = await admin_of(tenant)
    app_id, secret, token = new_app_id(), "s3cret" + new_app_id(), "tok" + new_app_id()[2:12]
    aes_key = new_aes_key() if mode != "plain" else None
    body: dict[str, Any] = {"kind": "oa", "name": "Acme service", "app_id": app_id, "secret": secret,
                            "token": token, "mode": mode}
    if aes_key:
        body["aes_key"] = aes_key
    info = (await client.api("POST", "/api/v1/wechat/accounts", body))["account"]
    wechat_api.secrets[app_id] = secret
    return OaAccount(info["id"], info["key"], app_id, secret, Pusher(app_id, token, aes_key, mode), info, tenant)


@pytest.fixture(params=["plain", "compat", "safe"])
async def oa_account(request: Any, server: Server, tenant: TenantInfo, wechat_api: StandIn) -> OaAccount:
    return await make_oa_account(tenant, wechat_api, mode=request.param)


@pytest.fixture
async def plain_account(server: Server, tenant: TenantInfo, wechat_api: StandIn) -> OaAccount:
    return await make_oa_account(tenant, wechat_api, mode="plain")


@pytest.fixture
async def safe_account(server: Server, tenant: TenantInfo, wechat_api: StandIn) -> OaAccount:
    return await make_oa_account(tenant, wechat_api, mode="safe")


@dataclass
class KfAccount:
    """A WeCom customer-service account made through the admin API, and its callback as WeCom sends it."""

    info: dict[str, Any]
    corp_id: str
    open_kfid: str
    token: str
    aes_key: str
    tenant: TenantInfo

    @property
    def key(self) -> str:
        return str(self.info["key"])

    @property
    def url(self) -> str:
        return self.tenant.server.url + f"/wechat/kf/{self.key}"

    def push(self, sync_token: str, *, timestamp: str | None = None) -> Push:
        return wecom_callback(self.corp_id, self.token, self.aes_key, sync_token, self.open_kfid, timestamp=timestamp)

    def verification(self, echo: str) -> Push:
        return wecom_verification(self.corp_id, self.token, self.aes_key, echo)

    async def callback(self, sync_token: str, *, timestamp: str | None = None) -> tuple[int, str]:
        push = self.push(sync_token, timestamp=timestamp)
        async with aiohttp.ClientSession() as http, http.post(self.url, params=push.query, data=push.body,
                                                              headers={"Host": self.tenant.domain}) as resp:
            return resp.status, await resp.text()


async def make_kf_account(tenant: TenantInfo, wechat_api: StandIn) -> KfAccount:
    admin = await admin_of(tenant)
    corp_id, open_kfid = "ww" + secrets.token_hex(8), "wk" + secrets.token_hex(8)
    token, aes_key, secret = "kfTok" + secrets.token_hex(4), new_aes_key(), "kfsecret" + secrets.token_hex(8)
    info = (await admin.api("POST", "/api/v1/wechat/accounts", {
        "kind": "kf", "name": "WeCom service", "corp_id": corp_id, "secret": secret, "token": token,
        "aes_key": aes_key, "open_kfid": open_kfid}))["account"]
    wechat_api.secrets[corp_id] = secret
    return KfAccount(info, corp_id, open_kfid, token, aes_key, tenant)
