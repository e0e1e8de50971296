"""Configuring WeChat accounts over the admin API: secrets stored encrypted and shown masked, the
webhook URL to paste into the console, audit records, and clear 4xx answers."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from admin_api.client import HubError
from connectors.wechat.models import WeChatAccount
from core.db import Database
from core.models import AuditLog
from tests.conftest import TenantInfo
from tests.wechat.conftest import admin_of
from tests.wechat.platform import new_aes_key, new_app_id


async def test_account_lifecycle_masks_secrets_and_is_audited(tenant: TenantInfo, settings: Any) -> None:
    admin = await admin_of(tenant)
    secret, token, aes_key = "0123456789abcdef0123456789abcdef", "MyToken2024", new_aes_key()
    created = (await admin.api("POST", "/api/v1/wechat/accounts", {
        "name": "Service", "app_id": new_app_id(), "secret": secret, "token": token, "aes_key": aes_key,
        "mode": "safe"}))["account"]
    assert created["webhook_url"] == f"https://{tenant.domain}/wechat/oa/{created['key']}"
    assert created["secret"] == "****" + secret[-4:]
    assert created["aes_key"] == "****" + aes_key[-4:]
    assert created["token"] == "****"  # short secrets show nothing at all
    listed = (await admin.api("GET", "/api/v1/wechat/accounts"))["accounts"]
    assert [a["id"] for a in listed] == [created["id"]]
    dumped = repr(listed) + repr(created)
    assert secret not in dumped and token not in dumped and aes_key not in dumped

    # Stored encrypted: the clear values appear nowhere in the row.
    db = Database(settings.database_url)
    try:
        async with db.read(tenant.id) as session:
            row = (await session.execute(select(WeChatAccount))).scalar_one()
            stored = row.secret_enc + row.token_enc + (row.aes_key_enc or "")
            assert secret not in stored and token not in stored and aes_key not in stored
    finally:
        await db.dispose()

    updated = (await admin.api("PATCH", f"/api/v1/wechat/accounts/{created['id']}",
                               {"secret": "fedcba9876543210fedcba9876543210", "name": "Renamed"}))["account"]
    assert updated["name"] == "Renamed" and updated["secret"] == "****3210"
    await admin.api("DELETE", f"/api/v1/wechat/accounts/{created['id']}")
    assert (await admin.api("GET", "/api/v1/wechat/accounts"))["accounts"] == []

    db = Database(settings.database_url)
    try:
        async with db.read(tenant.id) as session:
            audits = (await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars().all()
    finally:
        await db.dispose()
    actions = [a.action for a in audits if a.action.startswith("wechat.")]
    assert actions == ["wechat.account.create", "wechat.account.update", "wechat.account.delete"]
    assert sorted(audits[-2].details["changed"]) == ["name", "secret"]
    assert "fedcba" not in repr([a.details for a in audits])


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"name": "x", "app_id": "wx1234567890abcdef", "secret": "s", "token": "tok", "mode": "safe"}, 422,
     "aes_key_required"),
    ({"name": "x", "app_id": "wx1234567890abcdef", "secret": "s", "token": "tok", "aes_key": "A" * 42 + "!",
      "mode": "safe"}, 422, "invalid_aes_key"),
    ({"name": "x", "app_id": "wx1234567890abcdef", "secret": "s", "token": "bad token!"}, 422, "invalid_token"),
    ({"name": "x", "secret": "s", "token": "tok"}, 422, "validation_error"),
    ({"name": "x", "app_id": "wx1234567890abcdef", "secret": "s", "token": "tok", "colour": "red"}, 422,
     "validation_error"),
    ({"kind": "kf", "name": "x", "corp_id": "ww1234567890", "secret": "s", "token": "tok",
      "aes_key": new_aes_key()}, 422, "open_kfid_required"),
])
async def test_bad_configuration_is_refused_clearly(tenant: TenantInfo, body: dict[str, Any], status: int,
                                                    code: str) -> None:
    admin = await admin_of(tenant)
    with pytest.raises(HubError) as err:
        await admin.api("POST", "/api/v1/wechat/accounts", body)
    assert (err.value.status, err.value.code) == (status, code)


async def test_only_admins_of_the_tenant_configure_accounts(tenant: TenantInfo, other_tenant: TenantInfo) -> None:
    admin = await admin_of(tenant)
    body = {"name": "x", "app_id": new_app_id(), "secret": "s", "token": "tok"}
    created = (await admin.api("POST", "/api/v1/wechat/accounts", body))["account"]
    with pytest.raises(HubError) as err:
        await admin.api("POST", "/api/v1/wechat/accounts", body)
    assert (err.value.status, err.value.code) == (409, "account_exists")
    agent = await tenant.signed_in(await tenant.add_agent(), connect=False)
    with pytest.raises(HubError) as err:
        await agent.api("GET", "/api/v1/wechat/accounts")
    assert err.value.status == 403
    stranger = await admin_of(other_tenant)
    assert (await stranger.api("GET", "/api/v1/wechat/accounts"))["accounts"] == []
    for method in ("GET", "DELETE"):
        with pytest.raises(HubError) as err:
            await stranger.api(method, f"/api/v1/wechat/accounts/{created['id']}")
        assert err.value.status == 404
