"""The operator's API, on its own host with its own accounts: tenants created, given domains,
billed, suspended, resumed and ended; every change audited; who may call what held to
docs/operator.md; a suspended tenant's agents refused while its customers' messages still land.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from channelhub.app import build_operator_api
from core import tenants
from core.config import Settings
from core.db import Database
from tests.conftest import OPERATOR_HOST, PASSWORD, ROOT, Server, TenantInfo, eventually, make_tenant
from tests.support import Http, Reply, assert_error, op_id, op_key, role_table, tenant_rows, undocumented
from tests.test_sessions import closed_for_session
from tests.wechat.conftest import make_oa_account
from tests.wechat.platform import StandIn, new_openid
from web.api import Operation
from web.http import HUB

OWNER_PASSWORD = "operator owner passphrase"
STAFF_PASSWORD = "operator staff passphrase"
ROLES = ("anyone", "support", "billing", "owner")
PRICE = 36_500  # 365.00 CNY per seat per year: 1.00 a day in a common year


def cli(settings: Settings, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHANNELHUB_DATABASE_URL": settings.database_url, "CHANNELHUB_LOG_LEVEL": "WARNING",
           "CHANNELHUB_OPERATOR_HOST": OPERATOR_HOST}
    env.pop("CHANNELHUB_REDIS_URL", None)
    return subprocess.run([sys.executable, "-m", "channelhub.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, input=stdin)


def unique_domain(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}.example.com"


@dataclass
class Desk:
    """The operator's side: raw HTTP, a token of each staff role."""

    http: Http
    server: Server
    tokens: dict[str, str]
    ids: dict[str, int]
    emails: dict[str, str]

    async def fresh_token(self, role: str) -> str:
        """A new token of the role's account (for a call that ends the token it is made with)."""
        return await sign_in_operator(self.http, self.emails[role],
                                      OWNER_PASSWORD if role == "owner" else STAFF_PASSWORD)

    async def call(self, method: str, path: str, *, role: str = "owner", token: str | None = None,
                   body: Any = None, host: str = OPERATOR_HOST) -> Reply:
        kwargs: dict[str, Any] = {} if body is None else {"json_body": body}
        return await self.http(method, path, host=host, token=token if token is not None else self.tokens.get(role),
                               **kwargs)

    async def tenant(self, *, contract: bool = False, top_up: int | None = None, owner: bool = True,
                     domains: int = 1) -> dict[str, Any]:
        body: dict[str, Any] = {"name": "上海某某科技有限公司", "domains": [unique_domain() for _ in range(domains)]}
        if contract:
            body["contract"] = {"price_per_seat_year": PRICE, "currency": "CNY",
                                "term_start": datetime.now(UTC).date().isoformat()}
        if top_up is not None:
            body["top_up"] = top_up
        if owner:
            body["owner"] = {"email": f"boss@{body['domains'][0]}", "name": "Boss", "password": PASSWORD}
        made = await self.call("POST", "/operator/v1/tenants", body=body)
        assert made.status == 201, made
        return dict(made.body["tenant"])


async def sign_in_operator(http: Http, email: str, password: str) -> str:
    reply = await http("POST", "/operator/v1/auth/login", host=OPERATOR_HOST,
                       json_body={"email": email, "password": password})
    assert reply.status == 200, reply
    return str(reply.body["token"])


@pytest.fixture(scope="module")
async def desk(settings: Settings, server: Server) -> AsyncIterator[Desk]:
    email = f"owner-{uuid.uuid4().hex[:8]}@operator.example"
    made = cli(settings, "operator", "create", "--email", email, "--name", "Olga Owner", "--password-stdin",
               stdin=OWNER_PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    assert "created" in made.stdout and OPERATOR_HOST in made.stdout, made.stdout
    async with aiohttp.ClientSession() as session:
        http = Http(server.url, session)
        tokens = {"owner": await sign_in_operator(http, email, OWNER_PASSWORD)}
        emails = {"owner": email}
        ids = {}
        for role in ("billing", "support"):
            staff_email = f"{role}-{uuid.uuid4().hex[:8]}@operator.example"
            reply = await http("POST", "/operator/v1/accounts", host=OPERATOR_HOST, token=tokens["owner"],
                               json_body={"email": staff_email, "name": role.title(), "password": STAFF_PASSWORD,
                                          "role": role})
            assert reply.status == 201, reply
            ids[role] = reply.body["account"]["id"]
            emails[role] = staff_email
            tokens[role] = await sign_in_operator(http, staff_email, STAFF_PASSWORD)
        yield Desk(http, server, tokens, ids, emails)


# --- the host and the accounts ------------------------------------------------------------------
async def test_the_operator_api_is_served_on_the_operator_host_only(desk: Desk, settings: Settings) -> None:
    t = await make_tenant(settings, desk.server)
    admin = await t.add_agent(role="admin")
    agent_token = (await desk.http("POST", "/api/v1/auth/login", host=t.domain,
                                   json_body={"email": admin.email, "password": PASSWORD})).body["token"]
    # Not on a tenant's domain, with any token; and no tenant route on the operator host.
    assert_error(await desk.call("GET", "/operator/v1/tenants", host=t.domain), 404, "not_found")
    assert_error(await desk.call("POST", "/operator/v1/auth/login", host=t.domain, token="",
                                 body={"email": "x@y.z", "password": OWNER_PASSWORD}), 404, "not_found")
    assert_error(await desk.call("GET", "/api/v1/me", token=agent_token), 404, "not_found")
    assert_error(await desk.call("GET", "/api/v1/tickets"), 404, "not_found")
    # Neither side's token works on the other's host.
    assert_error(await desk.call("GET", "/operator/v1/me", token=agent_token), 401, "invalid_token")
    assert_error(await desk.http("GET", "/api/v1/me", host=t.domain, token=desk.tokens["owner"]), 401,
                 "invalid_token")
    me = await desk.call("GET", "/operator/v1/me")
    assert me.status == 200 and me.body["account"]["role"] == "owner", me
    doc = await desk.call("GET", "/operator/v1/openapi.json", token="")
    assert doc.status == 200 and all(p.startswith("/operator/v1/") for p in doc.body["paths"]), doc
    assert "/operator/v1/tenants" not in (await desk.http("GET", "/api/v1/openapi.json", host=t.domain)).text


async def test_operator_sign_in_is_throttled_and_audited(desk: Desk) -> None:
    email = f"victim-{uuid.uuid4().hex[:6]}@operator.example"
    made = await desk.call("POST", "/operator/v1/accounts", body={"email": email, "name": "V", "role": "support",
                                                                  "password": STAFF_PASSWORD})
    assert made.status == 201, made
    for _ in range(5):
        assert_error(await desk.call("POST", "/operator/v1/auth/login", token="",
                                     body={"email": email, "password": "wrong password!"}), 401, "invalid_credentials")
    throttled = await desk.call("POST", "/operator/v1/auth/login", token="",
                                body={"email": email, "password": STAFF_PASSWORD})
    assert_error(throttled, 429, "login_throttled")
    assert int(throttled.headers["Retry-After"]) > 0
    trail = (await desk.call("GET", "/operator/v1/audit?limit=1000")).body["entries"]
    assert [e["details"]["reason"] for e in trail if e["action"] == "operator.login_failed"
            and e["target_id"] == email] == ["bad_credentials"] * 5
    assert all(e["ip"] == "127.0.0.1" for e in trail if e["target_id"] == email)


async def test_staff_accounts_keep_an_owner_and_lose_their_sessions_when_changed(desk: Desk) -> None:
    email = f"temp-{uuid.uuid4().hex[:6]}@operator.example"
    made = await desk.call("POST", "/operator/v1/accounts", body={"email": email, "name": "Temp", "role": "billing",
                                                                  "password": STAFF_PASSWORD})
    token = await sign_in_operator(desk.http, email, STAFF_PASSWORD)
    assert (await desk.call("GET", "/operator/v1/me", token=token)).status == 200
    changed = await desk.call("PATCH", f"/operator/v1/accounts/{made.body['account']['id']}", body={"role": "support"})
    assert changed.status == 200 and changed.body["account"]["role"] == "support", changed
    assert_error(await desk.call("GET", "/operator/v1/me", token=token), 401, "invalid_token")
    assert_error(await desk.call("POST", "/operator/v1/accounts", body={"email": email, "name": "Again",
                                                                        "role": "owner", "password": STAFF_PASSWORD}),
                 409, "account_exists")
    me = (await desk.call("GET", "/operator/v1/me")).body["account"]
    # The only owner can neither demote nor deactivate themselves.
    owners = [a for a in (await desk.call("GET", "/operator/v1/accounts")).body["accounts"]
              if a["role"] == "owner" and a["active"]]
    if owners == [me]:
        assert_error(await desk.call("PATCH", f"/operator/v1/accounts/{me['id']}", body={"active": False}),
                     409, "last_owner")


def test_the_cli_refuses_a_weak_or_missing_password(settings: Settings) -> None:
    weak = cli(settings, "operator", "create", "--email", "w@operator.example", "--name", "W", "--password-stdin",
               stdin="short\n")
    assert weak.returncode != 0 and "12 characters" in weak.stderr, weak
    none = cli(settings, "operator", "create", "--email", "w@operator.example", "--name", "W", stdin="")
    assert none.returncode != 0 and "--password-stdin" in none.stderr, none


# --- tenants ------------------------------------------------------------------------------------
async def test_a_billed_tenant_is_created_with_its_owner_on_several_domains(desk: Desk) -> None:
    tenant = await desk.tenant(contract=True, top_up=10 * PRICE, domains=2)
    first, second = tenant["domains"]
    assert tenant["domain"] == first and tenant["status"] == "active" and tenant["seats_in_use"] == 1
    # The owner's seat was charged at once, prorated from today to the term's end.
    billing = (await desk.call("GET", f"/operator/v1/tenants/{tenant['id']}/billing", role="support")).body
    kinds = [(e["kind"], e["seats"]) for e in billing["entries"]]
    assert kinds == [("top_up", 0), ("charge", 1)], billing
    assert billing["balance"] == sum(e["amount"] for e in billing["entries"]) == billing["entries"][-1]["balance_after"]
    assert billing["seats_paid"] == billing["seats_in_use"] == 1
    # The owner signs in on either domain, and is the owner.
    for domain in (first, second):
        reply = await desk.http("POST", "/api/v1/auth/login", host=domain,
                                json_body={"email": f"boss@{first}", "password": PASSWORD})
        assert reply.status == 200 and reply.body["agent"]["role"] == "owner", reply
    # Audited with who, when, from where and what.
    trail = (await desk.call("GET", f"/operator/v1/audit?tenant_id={tenant['id']}")).body["entries"]
    [create] = [e for e in trail if e["action"] == "tenant.create"]
    assert create["actor_type"] == "operator" and create["ip"] == "127.0.0.1"
    assert create["details"]["domains"] == [first, second] and create["details"]["top_up"] == 10 * PRICE
    assert datetime.fromisoformat(create["at"]) > datetime.now(UTC) - timedelta(minutes=1)


async def test_a_tenant_that_cannot_pay_for_its_owner_is_not_created(desk: Desk, settings: Settings) -> None:
    domain = unique_domain()
    body = {"name": "Short", "domains": [domain], "top_up": 1,
            "contract": {"price_per_seat_year": PRICE, "currency": "CNY",
                         "term_start": datetime.now(UTC).date().isoformat()},
            "owner": {"email": f"o@{domain}", "name": "O", "password": PASSWORD}}
    assert_error(await desk.call("POST", "/operator/v1/tenants", body=body), 402, "insufficient_balance")
    # Nothing was made: the domain is free, and serves no one.
    assert_error(await desk.http("GET", "/webchat/widget.js", host=domain), 404, "unknown_tenant")
    made = await desk.call("POST", "/operator/v1/tenants", body={**body, "top_up": PRICE})
    assert made.status == 201, made


async def test_domains_are_unique_added_and_removed_at_once(desk: Desk) -> None:
    a = await desk.tenant()
    b = await desk.tenant(owner=False)
    taken = await desk.call("POST", "/operator/v1/tenants", body={"name": "Copycat", "domains": [a["domain"]]})
    assert_error(taken, 409, "domain_taken")
    assert_error(await desk.call("POST", f"/operator/v1/tenants/{b['id']}/domains", role="support",
                                 body={"domains": [a["domain"].upper()]}), 409, "domain_taken")
    extra = unique_domain("x")
    added = await desk.call("POST", f"/operator/v1/tenants/{a['id']}/domains", role="support",
                            body={"domains": [extra]})
    assert added.status == 200 and added.body["tenant"]["domains"] == [a["domain"], extra], added
    owner = f"boss@{a['domain']}"
    assert (await desk.http("POST", "/api/v1/auth/login", host=extra,
                            json_body={"email": owner, "password": PASSWORD})).status == 200
    assert_error(await desk.call("DELETE", f"/operator/v1/tenants/{a['id']}/domains/{a['domain']}", role="support"),
                 409, "primary_domain")
    primary = await desk.call("PATCH", f"/operator/v1/tenants/{a['id']}", role="support",
                              body={"primary_domain": extra})
    assert primary.status == 200 and primary.body["tenant"]["domain"] == extra, primary
    removed = await desk.call("DELETE", f"/operator/v1/tenants/{a['id']}/domains/{a['domain']}", role="support")
    assert removed.status == 200 and removed.body["tenant"]["domains"] == [extra], removed
    assert_error(await desk.http("POST", "/api/v1/auth/login", host=a["domain"],
                                 json_body={"email": owner, "password": PASSWORD}), 404, "unknown_tenant")
    # Another tenant's id changes nothing of this one.
    assert_error(await desk.call("DELETE", f"/operator/v1/tenants/{b['id']}/domains/{extra}", role="support"),
                 404, "domain_not_found")
    assert_error(await desk.call("POST", "/operator/v1/tenants/999999/suspend", role="support", body={}),
                 404, "tenant_not_found")
    for bad in (["not a domain"], ["-x.example.com"], [""], ["a" * 254]):
        assert_error(await desk.call("POST", f"/operator/v1/tenants/{a['id']}/domains", role="support",
                                     body={"domains": bad}), 422)


async def test_a_suspended_tenants_agents_are_refused_and_its_customers_still_land(
        desk: Desk, settings: Settings, wechat_api: StandIn) -> None:
    made = await desk.tenant()
    t = TenantInfo(made["id"], made["domain"], desk.server, settings)
    agent = await t.add_agent(role="admin")
    oa = await make_oa_account(t, wechat_api, mode="safe")
    client = await t.signed_in(agent)
    token = client.token
    assert token is not None

    suspended = await desk.call("POST", f"/operator/v1/tenants/{t.id}/suspend", role="support",
                                body={"reason": "unpaid invoice"})
    assert suspended.status == 200 and suspended.body["tenant"]["status"] == "suspended", suspended
    # The open socket is closed, a new one refused; the API and sign-in answer 403 with the reason.
    await closed_for_session(client, timeout=5.0)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await desk.http.ws("/agent/ws", host=t.domain)
    assert refused.value.status == 403
    for method, path, body in (("GET", "/api/v1/tickets", None), ("GET", "/api/v1/me", None),
                               ("POST", "/api/v1/auth/login", {"email": agent.email, "password": PASSWORD})):
        assert_error(await desk.http(method, path, host=t.domain, token=token,
                                     **({"json_body": body} if body else {})), 403, "tenant_suspended")
    # What customers send is still taken in: the web chat and the WeChat web-hook.
    chat = await desk.http("POST", "/webchat/messages", host=t.domain,
                           json_body={"client_id": "while-suspended", "text": "anyone there?", "name": "Wei"})
    assert chat.status == 201, chat
    status, text = await oa.deliver(oa.pusher.message("text", new_openid(), content="微信 还在吗"))
    assert (status, text) == (200, "success")
    # The widget still loads: its loader, its modules and catalogues, the vendored library; the
    # console does not.
    for path in ("/webchat/widget.js", "/webchat/app.mjs", "/webchat/locales/zh-CN.json", "/vendor/preact.mjs"):
        served = await desk.http("GET", path, host=t.domain)
        assert served.status == 200 and served.headers.get("Access-Control-Allow-Origin") == "*", (path, served)
    assert_error(await desk.http("GET", "/console/app.js", host=t.domain), 403, "tenant_suspended")

    resumed = await desk.call("POST", f"/operator/v1/tenants/{t.id}/resume", role="support")
    assert resumed.status == 200 and resumed.body["tenant"]["status"] == "active", resumed
    # Nothing was lost: both messages are tickets, and the old token works again.

    async def texts() -> set[str]:
        tickets = await desk.http("GET", "/api/v1/tickets", host=t.domain, token=token)
        assert tickets.status == 200, tickets
        out = set()
        for ticket in tickets.body["tickets"]:
            detail = await desk.http("GET", f"/api/v1/tickets/{ticket['id']}", host=t.domain, token=token)
            out |= {m["text"] for m in detail.body["messages"]}
        return out

    await eventually(lambda: _has(texts, {"anyone there?", "微信 还在吗"}))
    trail = (await desk.call("GET", f"/operator/v1/audit?tenant_id={t.id}")).body["entries"]
    actions = [(e["action"], e["actor_id"]) for e in trail]
    assert ("tenant.suspend", desk.ids["support"]) in actions and ("tenant.resume", desk.ids["support"]) in actions
    [suspend] = [e for e in trail if e["action"] == "tenant.suspend"]
    assert suspend["details"]["before"]["status"] == "active" and suspend["details"]["reason"] == "unpaid invoice"


async def _has(read: Any, wanted: set[str]) -> bool:
    return wanted <= await read()


async def test_ending_a_tenant_needs_its_contract_ended_and_then_serves_nothing(desk: Desk) -> None:
    billed = await desk.tenant(contract=True, top_up=PRICE)
    assert_error(await desk.call("POST", f"/operator/v1/tenants/{billed['id']}/end"), 409, "contract_running")
    too_soon = (datetime.now(UTC).date() + timedelta(days=10)).isoformat()
    assert_error(await desk.call("POST", f"/operator/v1/tenants/{billed['id']}/notice", role="billing",
                                 body={"ends_on": too_soon}), 422, "notice_too_short")
    unbilled = await desk.tenant()
    ended = await desk.call("POST", f"/operator/v1/tenants/{unbilled['id']}/end")
    assert ended.status == 200 and ended.body["tenant"]["status"] == "ended", ended
    for method, path in (("GET", "/webchat/widget.js"), ("POST", "/api/v1/auth/login")):
        assert_error(await desk.http(method, path, host=unbilled["domain"], json_body={}), 403, "tenant_ended")
    assert_error(await desk.call("POST", f"/operator/v1/tenants/{unbilled['id']}/resume", role="support"),
                 409, "tenant_ended")


async def test_a_lapsed_tenant_is_suspended_and_a_top_up_and_renewal_resume_it(desk: Desk) -> None:
    tenant = await desk.tenant(contract=True, top_up=PRICE)
    hub = desk.server.app[HUB]
    year_later = datetime.now(UTC) + timedelta(days=367)
    outcomes = await tenants.run_due(hub, now=year_later)
    assert outcomes.get("suspended", 0) >= 1, outcomes
    reply = await desk.http("GET", "/api/v1/me", host=tenant["domain"], token="x")
    assert_error(reply, 403, "tenant_suspended")
    # Resuming by hand is refused while the term is unpaid, with what is owed.
    refused = assert_error(await desk.call("POST", f"/operator/v1/tenants/{tenant['id']}/resume", role="support"),
                           402, "term_lapsed")
    assert refused["details"]["required"] == PRICE
    top = await desk.call("POST", f"/operator/v1/tenants/{tenant['id']}/top-ups", role="billing",
                          body={"amount": PRICE, "reference": "wire 2027-001"})
    assert top.status == 201 and top.body["entry"]["kind"] == "top_up", top
    assert isinstance(top.body["entry"]["id"], int), top  # schemathesis found it null (no flush)
    renewed = await desk.call("POST", f"/operator/v1/tenants/{tenant['id']}/renew", role="billing")
    # The renewal runs on today's date, which is still inside the first term: nothing is due yet.
    assert renewed.status == 200 and renewed.body["outcome"] == "not_due", renewed
    outcomes = await tenants.run_due(hub, now=year_later)
    assert outcomes.get("renewed", 0) >= 1, outcomes
    got = (await desk.call("GET", f"/operator/v1/tenants/{tenant['id']}")).body["tenant"]
    assert got["status"] == "active" and got["suspended_by"] is None, got
    assert_error(await desk.http("GET", "/api/v1/me", host=tenant["domain"], token="x"), 401, "invalid_token")


async def test_money_moves_only_as_whole_minor_units(desk: Desk) -> None:
    tenant = await desk.tenant(contract=True, top_up=PRICE)
    path = f"/operator/v1/tenants/{tenant['id']}/top-ups"
    for amount in (1.5, "100", 0, -5, True, 10**16):
        assert_error(await desk.call("POST", path, role="billing", body={"amount": amount}), 422)
    comp = await desk.call("POST", f"/operator/v1/tenants/{tenant['id']}/compensations", role="billing",
                           body={"minutes": 60, "note": "outage 2026-12-01"})
    assert comp.status == 201 and comp.body["entry"]["kind"] == "compensation", comp
    billing = (await desk.call("GET", f"/operator/v1/tenants/{tenant['id']}/billing")).body
    assert billing["balance"] == sum(e["amount"] for e in billing["entries"])
    assert all(isinstance(e["amount"], int) for e in billing["entries"])


# --- who may call what ----------------------------------------------------------------------------
def operator_table() -> dict[tuple[str, str], dict[str, bool]]:
    return role_table("operator.md", ROLES)


def operator_operations() -> list[Operation]:
    return list(build_operator_api().operations)


OPERATOR_DOC = build_operator_api().openapi()


def test_the_operator_document_is_openapi_and_describes_every_route() -> None:
    from openapi_spec_validator import validate as validate_openapi

    validate_openapi(OPERATOR_DOC)
    for op in operator_operations():
        assert op.declared, op_id(op)
        entry = OPERATOR_DOC["paths"][op.path][op.method.lower()]
        assert entry["security"] == ([{"bearer": []}] if op.auth else [])


def test_every_operator_route_is_in_the_table() -> None:
    rows = operator_table()
    served = {op_key(op): op for op in operator_operations()}
    assert set(rows) == set(served), (sorted(set(served) - set(rows)), sorted(set(rows) - set(served)))
    for key, op in served.items():
        assert rows[key]["anyone"] == (not op.auth), key
        if op.auth:
            assert rows[key]["owner"], key


def _bodies(desk: Desk, tenant: dict[str, Any]) -> dict[tuple[str, str], Any]:
    today = datetime.now(UTC).date()
    return {
        ("POST", "/operator/v1/auth/login"): {"email": "nobody@operator.example", "password": "x"},
        ("POST", "/operator/v1/accounts"): {"email": f"n-{uuid.uuid4().hex[:6]}@operator.example", "name": "N",
                                           "password": STAFF_PASSWORD, "role": "support"},
        ("PATCH", "/operator/v1/accounts/{account_id}"): {"name": "Support"},
        ("POST", "/operator/v1/tenants"): {"name": "N", "domains": [unique_domain()]},
        ("PATCH", "/operator/v1/tenants/{tenant_id}"): {"name": "Renamed"},
        ("POST", "/operator/v1/tenants/{tenant_id}/domains"): {"domains": [unique_domain("d")]},
        ("POST", "/operator/v1/tenants/{tenant_id}/suspend"): {"reason": "roles"},
        ("PUT", "/operator/v1/tenants/{tenant_id}/contract"): {"price_per_seat_year": PRICE, "currency": "CNY",
                                                              "term_start": today.isoformat()},
        ("PATCH", "/operator/v1/tenants/{tenant_id}/contract"): {"price_per_seat_year": 40_000},
        ("POST", "/operator/v1/tenants/{tenant_id}/top-ups"): {"amount": 100},
        ("POST", "/operator/v1/tenants/{tenant_id}/compensations"): {"minutes": 1},
        ("POST", "/operator/v1/tenants/{tenant_id}/notice"): {"ends_on": (today + timedelta(days=31)).isoformat()},
        ("POST", "/operator/v1/tenants/{tenant_id}/purge"): {"confirm": tenant["domain"]},
        # Switching on what is on changes nothing (statistics, which no other test switches).
        ("PUT", "/operator/v1/subsystems/{name}"): {"enabled": True, "reason": "role check"},
        ("POST", "/operator/v1/maintenance"): {"start": "2099-01-01T00:00:00Z", "end": "2099-01-01T01:00:00Z",
                                               "reason": "roles", "tenant_id": tenant["id"]},
    }


def _filled(op: Operation, desk: Desk, tenant: dict[str, Any]) -> str:
    domain = tenant["domains"][-1]
    # No such maintenance window: a role allowed to withdraw one is answered 404 window_not_found.
    return op.path.format(tenant_id=tenant["id"], account_id=desk.ids["support"], domain=domain,
                          invoice_number="000001-00000001", name="statistics", window_id=2**31 - 1)


@pytest.mark.parametrize("op", [op for op in operator_operations() if op.auth], ids=op_id)
async def test_each_operator_role_gets_what_the_table_says(desk: Desk, op: Operation) -> None:
    allowed = operator_table()[op_key(op)]
    for role in sorted(ROLES[1:], key=lambda r: allowed[r]):
        # A tenant of its own for each call: suspending, ending or billing one changes it.
        tenant = await desk.tenant(owner=False, domains=2)
        body = _bodies(desk, tenant).get(op_key(op))
        token = await desk.fresh_token(role) if op.path == "/operator/v1/auth/logout" else None
        reply = await desk.call(op.method, _filled(op, desk, tenant), role=role, body=body, token=token)
        if allowed[role]:
            assert reply.status not in (401, 403), (role, reply)
        else:
            assert_error(reply, 403, "operator_role")
        # Whatever it answered, the operator's OpenAPI document says so, with that shape.
        if reply.headers.get("Content-Type", "").startswith("application/json"):
            problems = undocumented(op.method, op.path, reply.status, reply.body, OPERATOR_DOC)
            assert not problems, (role, op_id(op), problems[:3])
    assert_error(await desk.call(op.method, _filled(op, desk, tenant), token=""), 401)


@pytest.mark.parametrize("op", [op for op in operator_operations() if op.body is not None], ids=op_id)
async def test_operator_bodies_are_strict(desk: Desk, settings: Settings, op: Operation) -> None:
    tenant = await desk.tenant(owner=False, domains=2)
    valid = _bodies(desk, tenant)[op_key(op)]
    db = Database(settings.database_url)
    try:
        before = await tenant_rows(db, tenant["id"])
        path = _filled(op, desk, tenant)
        for bad in ({**valid, "surprise": 1}, [], "x", None):
            kwargs: dict[str, Any] = {"data": b"null"} if bad is None else {"json_body": bad}
            reply = await desk.http(op.method, path, host=OPERATOR_HOST, token=desk.tokens["owner"], **kwargs)
            assert_error(reply, 422)
        assert_error(await desk.http(op.method, path, host=OPERATOR_HOST, token=desk.tokens["owner"],
                                     data=b"{not json"), 422, "invalid_json")
        assert await tenant_rows(db, tenant["id"]) == before
    finally:
        await db.dispose()


async def test_days_are_calendar_days_written_plainly(desk: Desk) -> None:
    tenant = await desk.tenant(owner=False)
    path = f"/operator/v1/tenants/{tenant['id']}/contract"
    for day in ("2026-02-30", "2026-1-1", "20260101", 20260101, "2026-01-01T00:00:00", ""):
        error = assert_error(await desk.call("PUT", path, role="billing",
                                             body={"price_per_seat_year": PRICE, "currency": "CNY",
                                                   "term_start": day}), 422, "validation_error")
        assert error["message"].startswith("term_start"), error
    assert date.fromisoformat("2024-02-29")  # a leap day is a day
    ok = await desk.call("PUT", path, role="billing", body={"price_per_seat_year": PRICE, "currency": "CNY",
                                                            "term_start": "2024-02-29"})
    assert ok.status == 200 and ok.body["tenant"]["contract"]["term_end"] == "2025-02-28", ok  # one_year_after


async def test_a_new_price_applies_from_the_next_renewal_and_each_invoice_keeps_its_own(desk: Desk) -> None:
    tenant = await desk.tenant(contract=True, top_up=PRICE + 40_000)
    path = f"/operator/v1/tenants/{tenant['id']}"
    for bad in (-1, 1.5, "40000", True, 10**13):
        assert_error(await desk.call("PATCH", path + "/contract", role="billing",
                                     body={"price_per_seat_year": bad}), 422)
    changed = await desk.call("PATCH", path + "/contract", role="billing", body={"price_per_seat_year": 40_000})
    contract = changed.body["tenant"]["contract"]
    assert (contract["price_per_seat_year"], contract["next_price_per_seat_year"]) == (PRICE, 40_000), changed
    outcomes = await tenants.run_due(desk.server.app[HUB], now=datetime.now(UTC) + timedelta(days=367))
    assert outcomes.get("renewed", 0) >= 1, outcomes
    contract = (await desk.call("GET", path)).body["tenant"]["contract"]
    assert (contract["price_per_seat_year"], contract["next_price_per_seat_year"]) == (40_000, None), contract
    invoices = (await desk.call("GET", path + "/billing/invoices")).body["invoices"]
    prices = []
    for summary in invoices:
        one = await desk.call("GET", f"{path}/billing/invoices/{summary['number']}")
        assert one.status == 200, one
        prices.append(one.body["invoice"]["lines"][0]["price_per_seat_year"]["minor"])
    assert prices == [PRICE, 40_000], invoices
    trail = (await desk.call("GET", f"/operator/v1/audit?tenant_id={tenant['id']}")).body["entries"]
    [reprice] = [e for e in trail if e["action"] == "tenant.contract.reprice"]
    assert reprice["details"]["next_price_per_seat_year"] == 40_000 and reprice["actor_id"] == desk.ids["billing"]
