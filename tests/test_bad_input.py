"""Every kind of bad input gets a clear error, and nothing accepted before is lost.

HTTP errors must have exactly the shape {"error": {"code", "message"[, "details"]}}; websocket
errors are an ``error`` frame (or a failed ``result`` when the frame had a ref) and the socket stays
open. After each refusal, every stored row of the tenant is compared with what it was before: the
bad input changed nothing and took nothing away.

The per-route tables are checked against the route registry, so a new route with a body must say
here what a valid and a badly typed body look like.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from sqlalchemy import select

from connectors.webchat.settings import WebchatSettings
from connectors.wechat.models import WeChatMedia
from connectors.wechat.settings import WeChatSettings
from core.config import Settings
from core.db import Database
from core.models import MAX_BIG_ID, MAX_ID, CsatSurvey, Message
from tests.conftest import PASSWORD, AgentInfo, Server, TenantInfo, eventually, make_tenant
from tests.support import (
    Http,
    Reply,
    assert_error,
    assert_error_frame,
    expect_closed,
    next_frame,
    op_id,
    op_key,
    open_billing,
    operations,
    tenant_rows,
)
from tests.wechat.conftest import make_kf_account
from tests.wechat.platform import StandIn, new_aes_key, new_app_id
from web.api import Operation
from web.http import HUB

MISSING_TICKET = 10**12
# Each id in a path: the error for an id that exists nowhere, and the largest its column holds.
ID_PARAMS = {
    "ticket_id": ("ticket_not_found", MAX_BIG_ID),
    "customer_id": ("customer_not_found", MAX_BIG_ID),
    "agent_id": ("agent_not_found", MAX_ID),
    "group_id": ("group_not_found", MAX_ID),
    "rule_id": ("rule_not_found", MAX_ID),
    "account_id": ("account_not_found", MAX_ID),
    "attachment_id": ("attachment_not_found", MAX_BIG_ID),
    "mailbox_id": ("mailbox_not_found", MAX_ID),
    "message_id": ("original_not_found", MAX_BIG_ID),
    "xmpp_account_id": ("xmpp_account_not_found", MAX_ID),
    "merge_id": ("merge_not_found", MAX_BIG_ID),
    "canned_id": ("canned_not_found", MAX_BIG_ID),
    "macro_id": ("macro_not_found", MAX_BIG_ID),
    "export_id": ("export_not_found", MAX_BIG_ID),
    "policy_id": ("sla_policy_not_found", MAX_ID),
}
# Where one route's id of the same name is missing with another code.
ID_PARAMS_BY_ROUTE = {
    (("POST", "/api/v1/tickets/{ticket_id}/messages/{message_id}/split"), "message_id"): "message_not_found",
}
# Each textual id in a path (a WeChat account's webhook key, a WeChat media id): the error for one
# that exists nowhere, and the longest its column holds.
WORD_PARAMS = {
    "key": ("account_not_found", 40),
    "media_id": ("media_not_found", 255),
    "signature": ("attachment_not_found", 64),  # of a customer's link to a file
    "invoice_number": ("invoice_not_found", 40),  # 000042-00001234 (core.statements.invoice_number)
    "token": ("survey_not_found", 64),  # of a satisfaction survey's link (core.csat)
}
BAD_WORDS = ["has%20space", "%00", "nul%00x", "%D9%A3", "caf%C3%A9", "a;b", "a%22b", "a%3Cb%3E", "~tilde", "a,b"]
DEEP = "[" * 100_000  # nesting deeper than any parser's recursion limit


def _is_event(frame: dict[str, Any]) -> bool:
    return frame.get("type") == "event"


def _short(value: Any) -> str | None:
    return value[:24] if isinstance(value, str) else None


@dataclass
class Shop:
    """One tenant with an admin, a plain agent and a ticket that already holds a conversation."""

    info: TenantInfo
    http: Http
    db: Database
    settings: Settings
    admin: AgentInfo
    agent: AgentInfo
    # A seat the tests may remove (POST /api/v1/agents/batch-remove).
    spare: AgentInfo
    group_id: int
    admin_token: str
    agent_token: str
    revoked_token: str
    # The tenant's owner, who may call every route (the calls here use it unless told otherwise).
    owner_token: str
    ticket_id: int
    visitor_id: str
    customer_id: int
    rule_id: int
    wechat: dict[str, Any]  # an Official Account, as the admin API shows it
    media_id: str  # a customer's image, kept for that account
    attachment: dict[str, Any]  # a file attached to the agent's reply
    file_path: str  # the customer's signed link to it
    kf_key: str  # a WeCom customer-service account's web-hook key
    mailbox: dict[str, Any]  # a support address, as the admin API shows it
    message_id: int  # the customer's first message
    invoice_number: str  # of the charge for the tenant's seats (a billing contract and its ledger)
    xmpp: dict[str, Any] = dataclass_field(default_factory=dict)  # an XMPP client account, as the API shows it
    # The agent workspace (#13): a customer merge, the agent's own canned reply, a macro, and the ids
    # the valid bodies name (another customer to merge, another ticket of the shop's customer).
    workspace: dict[str, int] = dataclasses.field(default_factory=dict)
    # A finished Excel export (#16), as GET /api/v1/exports/{id} shows it (with its signed link).
    export: dict[str, Any] = dataclasses.field(default_factory=dict)
    # A satisfaction survey sent for a second chat, solved (#17): its token.
    csat_token: str = ""
    # An SLA policy (#17), as the admin API shows it.
    sla_policy: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def domain(self) -> str:
        return self.info.domain

    def ids(self) -> dict[str, int | str]:
        return {"ticket_id": self.ticket_id, "customer_id": self.customer_id, "agent_id": self.agent.id,
                "group_id": self.group_id, "rule_id": self.rule_id, "account_id": self.wechat["id"],
                "key": self.wechat["key"], "media_id": self.media_id, "attachment_id": self.attachment["id"],
                "signature": self.file_path.rsplit("/", 1)[1], "mailbox_id": self.mailbox["id"],
                "message_id": self.message_id, "invoice_number": self.invoice_number,
                "xmpp_account_id": self.xmpp["id"], "merge_id": self.workspace["merge_id"],
                "canned_id": self.workspace["canned_id"], "macro_id": self.workspace["macro_id"],
                "export_id": self.export["id"], "token": self.csat_token, "policy_id": self.sla_policy["id"]}

    async def call(self, method: str, path: str, *, token: str | None = None, body: Any = None,
                   data: Any = None, headers: dict[str, str] | None = None) -> Reply:
        kwargs: dict[str, Any] = {"data": data, "headers": headers}
        if body is not None:
            kwargs["json_body"] = body
        return await self.http(method, path, host=self.domain, token=token if token is not None else self.owner_token,
                               **kwargs)

    async def rows(self) -> dict[str, list[dict[str, Any]]]:
        return await tenant_rows(self.db, self.info.id)

    async def texts(self, ticket_id: int | None = None) -> list[str]:
        detail = await self.call("GET", f"/api/v1/tickets/{ticket_id or self.ticket_id}")
        assert detail.status == 200, detail
        return [m["text"] for m in detail.body["messages"]]


async def _login(http: Http, domain: str, email: str) -> str:
    reply = await http("POST", "/api/v1/auth/login", host=domain, json_body={"email": email, "password": PASSWORD})
    assert reply.status == 200, reply
    return str(reply.body["token"])


@pytest.fixture(scope="module")
async def shop(settings: Settings, server: Server, wechat_api: StandIn) -> AsyncIterator[Shop]:
    db = Database(settings.database_url)
    info = await make_tenant(settings, server, name="Initech")
    group_id = await info.add_group("Front desk")
    admin = await info.add_agent(role="admin")
    agent = await info.add_agent(role="agent", group_ids=[group_id])
    spare = await info.add_agent(role="agent")
    async with aiohttp.ClientSession() as session:
        http = Http(server.url, session)
        admin_token = await _login(http, info.domain, admin.email)
        agent_token = await _login(http, info.domain, agent.email)
        revoked = await _login(http, info.domain, admin.email)
        assert (await http("POST", "/api/v1/auth/logout", host=info.domain, token=revoked)).status == 200
        owner_token = await _login(http, info.domain, (await info.add_agent(role="owner")).email)

        first = await http("POST", "/webchat/messages", host=info.domain,
                           json_body={"client_id": "first", "text": "My parcel never came", "name": "Milton"})
        assert first.status == 201, first
        tickets = (await http("GET", "/api/v1/tickets", host=info.domain, token=admin_token)).body["tickets"]
        ticket_id = tickets[0]["id"]
        label = await http("POST", "/api/v1/attachments?name=label.pdf", host=info.domain, token=agent_token,
                           data=b"%PDF shipping label", headers={"Content-Type": "application/pdf"})
        assert label.status == 201, label
        for body in ({"text": "Sorry, sending another", "kind": "reply",
                      "attachments": [label.body["attachment"]["id"]]}, {"text": "check stock", "kind": "note"}):
            reply = await http("POST", f"/api/v1/tickets/{ticket_id}/messages", host=info.domain, token=admin_token,
                               json_body=body)
            assert reply.status == 201, reply
        rule = await http("POST", "/api/v1/routing/rules", host=info.domain, token=admin_token,
                          json_body={"name": "urgent words", "conditions": {"text_contains": ["urgent"]},
                                     "actions": {"priority": "urgent"}})
        assert rule.status == 201, rule
        wechat_body = _wechat_body()
        account = await http("POST", "/api/v1/wechat/accounts", host=info.domain, token=admin_token,
                             json_body=wechat_body)
        assert account.status == 201, account
        wechat_api.secrets[wechat_body["app_id"]] = wechat_body["secret"]
        media_id = f"MEDIA_{uuid.uuid4().hex}"
        async with db.session(info.id) as session:  # as the connector keeps it after fetching it once
            session.add(WeChatMedia(tenant_id=info.id, account_id=account.body["account"]["id"], media_id=media_id,
                                    content_type="image/jpeg", size=5, data=b"photo"))
        # A media id the hub does not keep is asked of the platform, with the account's access token:
        # fetch that token now, so its cache (a row when there is no Redis) is at rest for the tests.
        missing = await http("GET", f"/api/v1/wechat/media/{account.body['account']['key']}/MEDIA_none",
                             host=info.domain, token=agent_token)
        assert_error(missing, 404, "media_not_found")
        history = await http("GET", f"/webchat/history?visitor_id={first.body['visitor_id']}", host=info.domain)
        [file_path] = [a["url"] for m in history.body["messages"] for a in m["attachments"]]
        kf = await make_kf_account(info, wechat_api)
        mailbox = await http("POST", "/api/v1/email/mailboxes", host=info.domain, token=admin_token,
                             json_body={"address": f"help@{info.domain}", "name": "Initech help"})
        assert mailbox.status == 201, mailbox
        invoice = await open_billing(db, info.id)
        workspace = await _workspace(http, info.domain, admin_token, agent_token, tickets[0]["customer_id"])
        s = Shop(info, http, db, server.app[HUB].settings, admin, agent, spare, group_id, admin_token, agent_token,
                 revoked, owner_token,
                 ticket_id, first.body["visitor_id"], tickets[0]["customer_id"], rule.body["rule"]["id"],
                 account.body["account"], media_id, label.body["attachment"], file_path, kf.key,
                 mailbox.body["mailbox"], first.body["message"]["id"], invoice, workspace=workspace)
        xmpp = await http("POST", "/api/v1/xmpp/accounts", host=info.domain, token=admin_token, json_body={
            "kind": "client", "jid": f"help@xmpp.{info.domain}", "secret": "xmpp secret"})
        assert xmpp.status == 201, xmpp
        s.xmpp = dict(xmpp.body["account"])
        # Disabled: the background SLA sweeper then writes no deadlines for the shop's tickets while
        # the tests compare its rows before and after a refused request.
        policy = await http("POST", "/api/v1/sla/policies", host=info.domain, token=admin_token,
                            json_body={"name": "Standard", "first_response": 3600, "resolution": 86400,
                                       "enabled": False})
        assert policy.status == 201, policy
        s.sla_policy = dict(policy.body["policy"])
        export = await http("POST", "/api/v1/exports", host=info.domain, token=admin_token, json_body={})
        assert export.status == 202, export

        async def exported() -> dict[str, Any] | None:
            got = await s.call("GET", f"/api/v1/exports/{export.body['export']['id']}")
            return dict(got.body["export"]) if got.body["export"]["state"] == "done" else None

        s.export = await eventually(exported)

        async def delivered() -> bool:
            detail = await s.call("GET", f"/api/v1/tickets/{ticket_id}")
            return all(m["delivery_state"] == "sent" for m in detail.body["messages"] if m["direction"] == "outbound")

        await eventually(delivered)
        s.csat_token = await _survey(http, db, info, admin_token)
        yield s
    await info.close()
    await db.dispose()


async def _survey(http: Http, db: Database, info: TenantInfo, admin_token: str) -> str:
    """A satisfaction survey (#17, core.csat), sent: a second visitor's chat, solved. Its token."""
    chat = await http("POST", "/webchat/messages", host=info.domain, json_body={"client_id": "rate", "text": "Thanks!"})
    assert chat.status == 201, chat
    async with db.read(info.id) as session:
        ticket_id = (await session.execute(select(Message.ticket_id).where(
            Message.id == chat.body["message"]["id"]))).scalar_one()
    solved = await http("POST", f"/api/v1/tickets/{ticket_id}/solve", host=info.domain, token=admin_token)
    assert solved.status == 200, solved

    async def sent() -> str | None:  # at rest before the tests compare the tenant's rows
        async with db.read(info.id) as session:
            row = (await session.execute(select(CsatSurvey.token, CsatSurvey.state).where(
                CsatSurvey.ticket_id == ticket_id))).one_or_none()
        return row.token if row is not None and row.state == "sent" else None

    return str(await eventually(sent))


async def _workspace(http: Http, domain: str, admin_token: str, agent_token: str, customer_id: int) -> dict[str, int]:
    async def call(path: str, body: Any, token: str = admin_token) -> dict[str, Any]:
        reply = await http("POST", path, host=domain, token=token, json_body=body)
        assert reply.status == 201, reply
        return dict(reply.body)

    left = (await call("/api/v1/tickets", {"customer": {"name": "Left"}, "text": "left"}))["ticket"]
    right = (await call("/api/v1/tickets", {"customer": {"name": "Right"}, "text": "right"}))["ticket"]
    spare = (await call("/api/v1/tickets", {"customer": {"name": "Spare"}, "text": "spare"}))["ticket"]
    second = (await call("/api/v1/tickets", {"customer_id": customer_id, "text": "second ticket"}))["ticket"]
    # Solved, so they wait in no queue: an agent coming online would be given them, and the tests
    # compare every row before and after.
    for ticket in (left, right, spare, second):
        solved = await http("PATCH", f"/api/v1/tickets/{ticket['id']}", host=domain, token=admin_token,
                            json_body={"status": "solved"})
        assert solved.status == 200, solved
    merge = await call(f"/api/v1/customers/{left['customer_id']}/merge", {"other_id": right["customer_id"]})
    canned = await call("/api/v1/canned-replies", {"shortcut": "own", "title": "Own", "text": "Hi"}, agent_token)
    macro = await call("/api/v1/macros", {"name": "Prioritise", "actions": [{"type": "priority", "priority": "high"}]})
    return {"merge_id": merge["merge"]["id"], "canned_id": canned["canned_reply"]["id"],
            "macro_id": macro["macro"]["id"], "spare_customer": spare["customer_id"], "second_ticket": second["id"]}


def _wechat_body(**extra: Any) -> dict[str, Any]:
    return {"name": "Initech service", "app_id": new_app_id(), "secret": "s3cret-" + uuid.uuid4().hex,
            "token": "tok" + uuid.uuid4().hex[:10], "aes_key": new_aes_key(), "mode": "safe", **extra}


def _path(op: Operation, shop: Shop, **override: Any) -> str:
    return op.path.format(**{**shop.ids(), **override})


# --- per-route tables ------------------------------------------------------------------------------
def valid_bodies(shop: Shop) -> dict[tuple[str, str], dict[str, Any]]:
    """A body each route accepts (it is only ever sent spoiled here)."""
    return {
        ("POST", "/api/v1/auth/login"): {"email": shop.admin.email, "password": PASSWORD},
        ("PUT", "/api/v1/me/presence"): {"status": "away"},
        ("PUT", "/api/v1/me/password"): {"current_password": PASSWORD, "new_password": "an0ther password"},
        ("POST", "/api/v1/agents"): {"email": f"n-{uuid.uuid4().hex[:6]}@{shop.domain}", "name": "N",
                                     "password": PASSWORD},
        ("POST", "/api/v1/agents/batch"): {"agents": [{"email": f"b-{uuid.uuid4().hex[:6]}@{shop.domain}",
                                                       "name": "B", "password": PASSWORD}]},
        ("POST", "/api/v1/agents/batch-remove"): {"agent_ids": [shop.spare.id]},
        ("POST", "/api/v1/groups"): {"name": f"group {uuid.uuid4().hex[:6]}"},
        ("POST", "/api/v1/billing/notice"): {"ends_on": (datetime.now(UTC).date() + timedelta(days=31)).isoformat()},
        ("POST", "/api/v1/tickets"): {"text": "Phoned in", "customer": {"name": "Walk-in"}},
        ("PATCH", "/api/v1/tickets/{ticket_id}"): {"priority": "urgent"},
        ("POST", "/api/v1/tickets/{ticket_id}/messages"): {"text": "hello", "kind": "note"},
        ("POST", "/api/v1/tickets/{ticket_id}/transfer"): {"agent_id": shop.agent.id},
        ("POST", "/api/v1/routing/rules"): {"name": f"rule {uuid.uuid4().hex[:6]}", "actions": {"priority": "high"}},
        ("PATCH", "/api/v1/routing/rules/{rule_id}"): {"enabled": False},
        ("PUT", "/api/v1/routing/rules/order"): {"ids": [shop.rule_id]},
        ("POST", "/api/v1/sla/policies"): {"name": f"sla {uuid.uuid4().hex[:6]}", "first_response": 600,
                                              "enabled": False},
        ("PATCH", "/api/v1/sla/policies/{policy_id}"): {"enabled": False},
        ("PUT", "/api/v1/routing/settings"): {"offline_policy": "keep"},
        ("PATCH", "/api/v1/groups/{group_id}"): {"strategy": "round_robin"},
        ("PUT", "/api/v1/groups/{group_id}/members"): {"agent_ids": [shop.agent.id]},
        ("PATCH", "/api/v1/agents/{agent_id}"): {"capacity": 3},
        ("PATCH", "/api/v1/customers/{customer_id}"): {"tags": ["vip"]},
        ("POST", "/api/v1/wechat/accounts"): _wechat_body(),
        ("PATCH", "/api/v1/wechat/accounts/{account_id}"): {"name": "Renamed", "mode": "compat"},
        ("POST", "/api/v1/email/mailboxes"): {"address": f"help-{uuid.uuid4().hex[:6]}@{shop.domain}",
                                              "name": "Initech help", "smtp": {"host": "127.0.0.1", "port": 2525}},
        ("PATCH", "/api/v1/email/mailboxes/{mailbox_id}"): {"name": "Renamed", "plus_addressing": True},
        ("POST", "/api/v1/xmpp/accounts"): {"kind": "client", "jid": f"c-{uuid.uuid4().hex[:6]}@{shop.domain}",
                                            "secret": "pw", "host": "127.0.0.1", "port": 5222},
        ("PATCH", "/api/v1/xmpp/accounts/{xmpp_account_id}"): {"name": "Renamed", "muc_rooms": []},
        ("POST", "/api/v1/customers/{customer_id}/merge"): {"other_id": shop.workspace["spare_customer"]},
        ("POST", "/api/v1/tickets/{ticket_id}/merge"): {"other_ticket_id": shop.workspace["second_ticket"]},
        ("POST", "/api/v1/tickets/{ticket_id}/messages/{message_id}/split"): {"following": False},
        ("POST", "/api/v1/canned-replies"): {"shortcut": f"s{uuid.uuid4().hex[:6]}", "title": "T",
                                             "text": "Hello {{customer.name|there}}"},
        ("PATCH", "/api/v1/canned-replies/{canned_id}"): {"title": "Renamed"},
        ("POST", "/api/v1/macros"): {"name": f"m{uuid.uuid4().hex[:6]}",
                                     "actions": [{"type": "priority", "priority": "high"}]},
        ("PATCH", "/api/v1/macros/{macro_id}"): {"description": "renamed"},
        ("POST", "/api/v1/me/mentions/read"): {"all": True},
        ("POST", "/api/v1/exports"): {"from": "2026-01-01", "to": "2026-01-31", "statuses": ["open"],
                                      "channels": ["webchat"], "include_messages": True},
        ("POST", "/webchat/messages"): {"visitor_id": shop.visitor_id, "client_id": f"c-{uuid.uuid4().hex[:8]}",
                                        "text": "Any news?", "name": "Milton", "email": "milton@example.com",
                                        "language": "en-GB"},
        ("POST", "/csat/{token}"): {"rating": 5, "comment": "Quick and kind"},
        ("PUT", "/api/v1/settings/csat"): {"enabled": False},
        ("PUT", "/api/v1/webchat/settings"): {"offline_message": {"en": "We are away", "zh-CN": "我们暂时不在"},
                                              "welcome": {"en": "Hello!"}},
        # Valid in shape, never the right confirmation: the role matrix sends these for real.
        ("POST", "/api/v1/tenant/delete"): {"confirm": "not-this-tenant.example"},
        ("POST", "/api/v1/customers/{customer_id}/erase"): {"confirm": "0"},
    }


def badly_typed(shop: Shop) -> dict[tuple[str, str], list[tuple[dict[str, Any], str]]]:
    """Bodies with a wrong type or value, each with the field the error must name."""
    v = valid_bodies(shop)
    agents, tickets = v[("POST", "/api/v1/agents")], v[("POST", "/api/v1/tickets")]
    wechat = v[("POST", "/api/v1/wechat/accounts")]
    no_app_id = {k: val for k, val in wechat.items() if k != "app_id"}
    webchat = v[("POST", "/webchat/messages")]
    mailbox = v[("POST", "/api/v1/email/mailboxes")]
    xmpp = v[("POST", "/api/v1/xmpp/accounts")]

    def without(body: dict[str, Any], field: str) -> dict[str, Any]:
        return {k: val for k, val in body.items() if k != field}

    return {
        ("POST", "/api/v1/auth/login"): [
            ({"email": 5, "password": PASSWORD}, "email"),
            ({"email": shop.admin.email, "password": [PASSWORD]}, "password"),
            ({"email": shop.admin.email}, "password"),
        ],
        ("PUT", "/api/v1/me/password"): [
            ({"current_password": PASSWORD}, "new_password"),
            ({"current_password": PASSWORD, "new_password": 12345678}, "new_password"),
            ({"current_password": None, "new_password": "an0ther password"}, "current_password"),
            ({"current_password": PASSWORD, "new_password": ""}, "new_password"),
        ],
        ("PUT", "/api/v1/me/presence"): [({"status": "busy"}, "status"), ({"status": 1}, "status"),
                                         ({"status": None}, "status")],
        ("POST", "/api/v1/agents"): [
            ({**agents, "email": "not-an-address"}, "email"),
            ({**agents, "capacity": "five"}, "capacity"),
            ({**agents, "capacity": True}, "capacity"),
            ({**agents, "capacity": -1}, "capacity"),
            ({**agents, "role": "boss"}, "role"),
            ({**agents, "group_ids": str(shop.group_id)}, "group_ids"),
            ({**agents, "group_ids": [True]}, "group_ids"),
            ({**agents, "group_ids": [2**40]}, "group_ids"),
            ({**agents, "password": "short"}, "password"),
        ],
        ("POST", "/api/v1/agents/batch"): [
            ({"agents": []}, "agents"), ({"agents": agents}, "agents"), ({"agents": [agents] * 101}, "agents"),
            ({"agents": [{**agents, "email": "not-an-address"}]}, "agents.0.email"),
            ({"agents": [agents, {**agents, "capacity": "five"}]}, "agents.1.capacity"), ({}, "agents"),
        ],
        ("POST", "/api/v1/agents/batch-remove"): [
            ({"agent_ids": []}, "agent_ids"), ({"agent_ids": [shop.spare.id] * 101}, "agent_ids"),
            ({"agent_ids": [str(shop.spare.id)]}, "agent_ids"), ({"agent_ids": [True]}, "agent_ids"),
            ({"agent_ids": [2**31]}, "agent_ids"), ({"agent_ids": shop.spare.id}, "agent_ids"), ({}, "agent_ids"),
        ],
        ("POST", "/api/v1/groups"): [({"name": 5}, "name"), ({"name": ""}, "name"), ({"name": None}, "name")],
        ("POST", "/api/v1/billing/notice"): [
            ({"ends_on": "2027-02-30"}, "ends_on"), ({"ends_on": "2027-1-1"}, "ends_on"),
            ({"ends_on": 20270101}, "ends_on"), ({"ends_on": "2027-01-01T00:00:00"}, "ends_on"), ({}, "ends_on"),
        ],
        ("POST", "/api/v1/tickets"): [
            ({**tickets, "text": 5}, "text"),
            ({**tickets, "text": ""}, "text"),
            ({"text": "x", "customer_id": "abc"}, "customer_id"),
            ({"text": "x", "customer_id": True}, "customer_id"),
            ({"text": "x", "customer_id": 2**64}, "customer_id"),
            ({**tickets, "tags": "a,b"}, "tags"),
            ({**tickets, "tags": [1]}, "tags"),
            ({**tickets, "priority": 3}, "priority"),
            ({**tickets, "assignee_id": True}, "assignee_id"),
            ({**tickets, "assignee_id": 2**40}, "assignee_id"),
            ({**tickets, "group_id": str(shop.group_id)}, "group_id"),
            ({**tickets, "customer": {"name": 5}}, "customer.name"),
            ({**tickets, "customer": {"email": "nope"}}, "customer.email"),
            ({"text": "x"}, "body"),  # neither customer_id nor customer
        ],
        ("PATCH", "/api/v1/tickets/{ticket_id}"): [
            ({"status": ["solved"]}, "status"), ({"status": "done"}, "status"), ({"priority": True}, "priority"),
            ({"tags": "x"}, "tags"), ({"subject": 7}, "subject"), ({"subject": ""}, "subject"),
            ({"add_tags": [None]}, "add_tags"),
        ],
        ("POST", "/api/v1/tickets/{ticket_id}/messages"): [
            ({"text": 5}, "text"), ({"text": None}, "text"), ({"text": ""}, "text"), ({"kind": "note"}, "text"),
            ({"text": "x", "kind": "shout"}, "kind"),
            ({"text": "", "attachments": []}, "text"), ({"attachments": [], "kind": "note"}, "text"),
            ({"text": "x", "attachments": str(shop.attachment["id"])}, "attachments"),
            ({"text": "x", "attachments": [True]}, "attachments"), ({"text": "x", "attachments": [0]}, "attachments"),
            ({"text": "x", "attachments": [str(shop.attachment["id"])]}, "attachments"),
            ({"text": "x", "attachments": [2**63]}, "attachments"),
            ({"text": "x", "attachments": [1.5]}, "attachments"),
            ({"text": "x", "attachments": [shop.attachment["id"]] * 11}, "attachments"),
        ],
        ("POST", "/api/v1/tickets/{ticket_id}/transfer"): [
            ({"agent_id": "abc"}, "agent_id"), ({"agent_id": str(shop.agent.id)}, "agent_id"),
            ({"agent_id": True}, "agent_id"), ({"agent_id": 1.5}, "agent_id"), ({"agent_id": 0}, "agent_id"),
            ({"agent_id": 2**31}, "agent_id"), ({"agent_id": 2**63}, "agent_id"), ({"group_id": 2**40}, "group_id"),
            ({}, "body"), ({"agent_id": shop.agent.id, "group_id": shop.group_id}, "body"),
        ],
        ("POST", "/api/v1/routing/rules"): [
            ({"name": 5, "actions": {"priority": "high"}}, "name"), ({"name": "r"}, "actions"),
            ({"name": "r", "actions": "high"}, "actions"), ({"name": "r", "actions": {}, "enabled": "yes"}, "enabled"),
            ({"name": "r", "actions": {}, "position": -1}, "position"),
            ({"name": "r", "actions": {}, "position": True}, "position"),
        ],
        ("PATCH", "/api/v1/routing/rules/{rule_id}"): [
            ({"enabled": "no"}, "enabled"), ({"position": "1"}, "position"), ({"name": ""}, "name"),
            ({"conditions": []}, "conditions"),
        ],
        ("POST", "/api/v1/sla/policies"): [
            ({"name": "s", "first_response": -5}, "first_response"), ({"name": "s", "resolution": 0}, "resolution"),
            ({"name": "s", "resolution": "60"}, "resolution"), ({"name": "s", "resolution": 10**9}, "resolution"),
            ({"name": "s", "resolution": 60, "priorities": ["critical"]}, "priorities"),
            ({"name": "s", "resolution": 60, "escalate_priority": "asap"}, "escalate_priority"),
            ({"name": "", "resolution": 60}, "name"), ({"resolution": 60}, "name"),
        ],
        ("PATCH", "/api/v1/sla/policies/{policy_id}"): [
            ({"enabled": "no"}, "enabled"), ({"first_response": -1}, "first_response"), ({"name": None}, "name"),
            ({"channels": [""]}, "channels"),
        ],
        ("PUT", "/api/v1/routing/rules/order"): [
            ({"ids": str(shop.rule_id)}, "ids"), ({"ids": [True]}, "ids"), ({"ids": []}, "ids"),
            ({"ids": [2**40]}, "ids"),
        ],
        ("PUT", "/api/v1/routing/settings"): [
            ({"default_group_id": True}, "default_group_id"), ({"default_group_id": 2**40}, "default_group_id"),
            ({"offline_policy": "drop"}, "offline_policy"),
            ({"default_overflow_seconds": 5}, "default_overflow_seconds"),
            ({"unlimited_wait": "yes"}, "unlimited_wait"),
        ],
        ("PATCH", "/api/v1/groups/{group_id}"): [
            ({"strategy": "random"}, "strategy"), ({"sticky_days": 0}, "sticky_days"),
            ({"overflow_group_id": str(shop.group_id)}, "overflow_group_id"),
            ({"overflow_group_id": 2**40, "overflow_after_seconds": 60}, "overflow_group_id"),
            ({"clear_overflow": "yes"}, "clear_overflow"),
        ],
        ("PUT", "/api/v1/groups/{group_id}/members"): [
            ({"agent_ids": str(shop.agent.id)}, "agent_ids"), ({"agent_ids": [True]}, "agent_ids"),
            ({"agent_ids": [2**40]}, "agent_ids"), ({}, "agent_ids"),
        ],
        ("PATCH", "/api/v1/agents/{agent_id}"): [
            ({"capacity": True}, "capacity"), ({"role": "boss"}, "role"), ({"skills": {"english": "high"}}, "skills"),
            ({"channel_capacity": {"webchat": True}}, "channel_capacity"), ({"group_ids": [2**40]}, "group_ids"),
            ({"active": "yes"}, "active"),
        ],
        ("PATCH", "/api/v1/customers/{customer_id}"): [
            ({"email": "nope"}, "email"), ({"tags": "vip"}, "tags"), ({"tags": [1]}, "tags"),
            ({"attributes": "vip"}, "attributes"), ({"name": 5}, "name"),
        ],
        ("POST", "/api/v1/wechat/accounts"): [
            ({**wechat, "name": 5}, "name"), ({**wechat, "name": ""}, "name"), ({**wechat, "name": "n" * 201}, "name"),
            ({**wechat, "kind": "mp"}, "kind"), ({**wechat, "mode": "secure"}, "mode"), ({**wechat, "mode": 1}, "mode"),
            ({**wechat, "app_id": 12345678}, "app_id"), ({**wechat, "app_id": "wx"}, "app_id"),
            ({**wechat, "app_id": "wx" + "0" * 63}, "app_id"), ({**wechat, "secret": ["s"]}, "secret"),
            ({**wechat, "secret": ""}, "secret"), ({**wechat, "token": "t"}, "token"),
            ({**wechat, "token": 123}, "token"),
            ({**wechat, "aes_key": wechat["aes_key"][:42]}, "aes_key"), ({**wechat, "aes_key": 5}, "aes_key"),
            ({**wechat, "aes_key": wechat["aes_key"] + "="}, "aes_key"), ({**wechat, "open_kfid": True}, "open_kfid"),
            ({k: val for k, val in wechat.items() if k != "secret"}, "secret"),
            (no_app_id, "body"), ({**wechat, "corp_id": "ww" + new_app_id()}, "body"),
        ],
        ("PATCH", "/api/v1/wechat/accounts/{account_id}"): [
            ({"name": 5}, "name"), ({"name": ""}, "name"), ({"active": "yes"}, "active"), ({"active": 1}, "active"),
            ({"mode": "secure"}, "mode"), ({"aes_key": "short"}, "aes_key"), ({"aes_key": ["x"]}, "aes_key"),
            ({"token": 123}, "token"), ({"token": "t"}, "token"), ({"secret": ""}, "secret"),
            ({"app_id": "x"}, "app_id"),
            ({"open_kfid": 5}, "open_kfid"),
        ],
        ("POST", "/api/v1/email/mailboxes"): [
            ({**mailbox, "address": "nope"}, "address"), ({**mailbox, "address": 5}, "address"),
            (without(mailbox, "address"), "address"), ({**mailbox, "name": ""}, "name"),
            ({**mailbox, "plus_addressing": "yes"}, "plus_addressing"), ({**mailbox, "smtp": {"port": 0}}, "smtp"),
            ({**mailbox, "smtp": {"security": "ssl"}}, "smtp"), ({**mailbox, "smtp": "127.0.0.1"}, "smtp"),
            ({**mailbox, "imap": {"host": 5}}, "imap"), ({**mailbox, "imap": {"host": "a b"}}, "imap"),
            ({**mailbox, "imap": {"folder": ""}}, "imap"), ({**mailbox, "pop3": {}}, "pop3"),
        ],
        ("PATCH", "/api/v1/email/mailboxes/{mailbox_id}"): [
            ({"name": 5}, "name"), ({"active": "yes"}, "active"), ({"smtp": {"port": 70000}}, "smtp"),
            ({"imap": {"folder": ""}}, "imap"), ({"smtp": "host"}, "smtp"), ({"address": "x@y.example"}, "address"),
        ],
        ("POST", "/api/v1/xmpp/accounts"): [
            ({**xmpp, "kind": "bot"}, "kind"), (without(xmpp, "kind"), "kind"), ({**xmpp, "jid": 5}, "jid"),
            (without(xmpp, "jid"), "jid"), ({**xmpp, "secret": ""}, "secret"), (without(xmpp, "secret"), "secret"),
            ({**xmpp, "port": 0}, "port"), ({**xmpp, "host": "a b"}, "host"), ({**xmpp, "security": "ssl"}, "security"),
            ({**xmpp, "muc_rooms": "room@muc.example.com"}, "muc_rooms"), ({**xmpp, "muc_rooms": [5]}, "muc_rooms"),
            ({**xmpp, "password": "x"}, "password"),
        ],
        ("PATCH", "/api/v1/xmpp/accounts/{xmpp_account_id}"): [
            ({"name": 5}, "name"), ({"active": "yes"}, "active"), ({"port": 70000}, "port"),
            ({"secret": ""}, "secret"), ({"jid": "x@y.example"}, "jid"), ({"kind": "component"}, "kind"),
        ],
        ("POST", "/api/v1/customers/{customer_id}/merge"): [
            ({"other_id": str(shop.customer_id)}, "other_id"), ({"other_id": True}, "other_id"),
            ({"other_id": 0}, "other_id"), ({"other_id": 2**63}, "other_id"), ({}, "other_id"),
        ],
        ("POST", "/api/v1/tickets/{ticket_id}/merge"): [
            ({"other_ticket_id": "5"}, "other_ticket_id"), ({"other_ticket_id": 1.5}, "other_ticket_id"),
            ({"other_ticket_id": -1}, "other_ticket_id"), ({}, "other_ticket_id"),
        ],
        ("POST", "/api/v1/tickets/{ticket_id}/messages/{message_id}/split"): [
            ({"following": "yes"}, "following"), ({"following": 1}, "following"), ({"subject": ""}, "subject"),
            ({"subject": 5}, "subject"),
        ],
        ("POST", "/api/v1/canned-replies"): [
            ({"shortcut": 5, "title": "t", "text": "x"}, "shortcut"), ({"shortcut": "s", "title": "", "text": "x"},
                                                                       "title"),
            ({"shortcut": "s", "title": "t", "text": None}, "text"), ({"shortcut": "s", "title": "t"}, "text"),
            ({"scope": "global", "shortcut": "s", "title": "t", "text": "x"}, "scope"),
        ],
        ("PATCH", "/api/v1/canned-replies/{canned_id}"): [
            ({"title": 5}, "title"), ({"shortcut": ""}, "shortcut"), ({"text": ["x"]}, "text"),
        ],
        ("POST", "/api/v1/macros"): [
            ({"name": "m", "actions": []}, "actions"), ({"name": "m", "actions": [{"type": "shout"}]}, "actions"),
            ({"name": "m", "actions": [{"type": "status", "status": "done"}]}, "actions"),
            ({"name": "m", "actions": [{"type": "group", "group_id": "1"}]}, "actions"),
            ({"name": "m", "actions": [{"type": "reply"}]}, "actions"),
            ({"name": "", "actions": [{"type": "priority", "priority": "low"}]}, "name"), ({"name": "m"}, "actions"),
        ],
        ("PATCH", "/api/v1/macros/{macro_id}"): [
            ({"name": 5}, "name"), ({"actions": []}, "actions"), ({"description": 5}, "description"),
            ({"actions": [{"type": "add_tags", "tags": []}]}, "actions"),
        ],
        ("POST", "/api/v1/me/mentions/read"): [
            ({}, "body"), ({"ids": []}, "ids"), ({"ids": ["1"]}, "ids"), ({"all": "yes"}, "all"),
            ({"ids": [1], "all": True}, "body"), ({"ids": [0]}, "ids"),
        ],
        ("POST", "/api/v1/exports"): [
            ({"from": "2026-02-30"}, "from"), ({"to": "2026-1-1"}, "to"), ({"from": 20260101}, "from"),
            ({"to": "2026-01-01T00:00:00"}, "to"), ({"statuses": ["bogus"]}, "statuses"),
            ({"statuses": "open"}, "statuses"), ({"statuses": ["open"] * 6}, "statuses"),
            ({"channels": ["Web Chat"]}, "channels"), ({"channels": [5]}, "channels"),
            ({"include_messages": "yes"}, "include_messages"), ({"include_messages": 1}, "include_messages"),
            ({"from": "2026-02-02", "to": "2026-02-01"}, "body"), ({"bogus": 1}, "bogus"),
        ],
        ("POST", "/csat/{token}"): [
            ({"rating": 0}, "rating"), ({"rating": 6}, "rating"), ({"rating": "5"}, "rating"),
            ({"rating": 4.5}, "rating"), ({"rating": True}, "rating"), ({}, "rating"), ({"rating": None}, "rating"),
            ({"rating": 3, "comment": 5}, "comment"), ({"rating": 3, "comment": "x" * 2001}, "comment"),
        ],
        ("PUT", "/api/v1/settings/csat"): [({"enabled": "yes"}, "enabled"), ({"enabled": 1}, "enabled"),
                                           ({}, "enabled"), ({"enabled": None}, "enabled")],
        ("POST", "/webchat/messages"): [
            ({**webchat, "text": 5}, "text"), ({**webchat, "text": None}, "text"),
            ({**webchat, "text": ["hi"]}, "text"), (without(webchat, "text"), "text"),
            ({**webchat, "client_id": 5}, "client_id"), ({**webchat, "client_id": None}, "client_id"),
            (without(webchat, "client_id"), "client_id"),
            ({**webchat, "visitor_id": 5}, "visitor_id"), ({**webchat, "visitor_id": [shop.visitor_id]}, "visitor_id"),
            ({**webchat, "name": ["Milton"]}, "name"), ({**webchat, "name": 5}, "name"),
            ({**webchat, "email": 5}, "email"), ({**webchat, "email": {"address": "m@example.com"}}, "email"),
            ({**webchat, "language": True}, "language"), ({**webchat, "language": ["en"]}, "language"),
            ({**webchat, "attachments": 5}, "attachments"), ({**webchat, "attachments": ["5"]}, "attachments"),
            ({**webchat, "attachments": [0]}, "attachments"), ({**webchat, "attachments": [True]}, "attachments"),
            ({**webchat, "attachments": [2**63]}, "attachments"), ({**webchat, "attachments": [1] * 11}, "attachments"),
            ({**webchat, "text": "", "attachments": []}, "text"),
        ],
        ("PUT", "/api/v1/webchat/settings"): [
            ({"offline_message": "away"}, "offline_message"), ({"offline_message": None}, "offline_message"),
            ({"offline_message": {"en": ""}}, "offline_message"), ({"offline_message": {"en": 5}}, "offline_message"),
            ({"offline_message": {"not a language": "x"}}, "offline_message"),
            ({"offline_message": {"en": "x" * 2001}}, "offline_message"),
            ({"welcome": ["hi"]}, "welcome"), ({"welcome": {f"x{i:02d}": "x" for i in range(21)}}, "welcome"),
        ],
        ("POST", "/api/v1/tenant/delete"): [
            ({"confirm": 5}, "confirm"), ({"confirm": ""}, "confirm"), ({"confirm": "d" * 256}, "confirm"),
            ({"confirm": ["x"]}, "confirm"), ({}, "confirm"),
        ],
        ("POST", "/api/v1/customers/{customer_id}/erase"): [
            ({"confirm": 5}, "confirm"), ({"confirm": ""}, "confirm"), ({"confirm": None}, "confirm"), ({}, "confirm"),
        ],
    }


def _names(error: dict[str, Any], field: str) -> bool:
    """The message starts with the field's dotted path ("tags:", "tags.0:", "customer.name:")."""
    message = str(error["message"])
    return message.startswith(f"{field}:") or message.startswith(f"{field}.")


def body_operations() -> list[Operation]:
    return [op for op in operations() if op.body is not None]


def id_operations() -> list[Operation]:
    return [op for op in operations() if "{" in op.path]


def path_params(op: Operation) -> list[str]:
    return [part[1:-1] for part in op.path.split("/") if part.startswith("{")]


async def test_tables_cover_every_route_with_a_body(shop: Shop) -> None:
    with_body = {op_key(op) for op in body_operations()}
    assert set(valid_bodies(shop)) == with_body
    assert set(badly_typed(shop)) == with_body


# --- HTTP bodies -------------------------------------------------------------------------------------
INVALID_JSON = [b"{not json", b"", b"   ", b'{"text": "a"', b"\xff\xfe{}", b"{'text': 'single quotes'}",
                DEEP.encode(), b'{"text": "a"} trailing']


@pytest.mark.parametrize("op", body_operations(), ids=op_id)
async def test_invalid_json_body(shop: Shop, op: Operation) -> None:
    before = await shop.rows()
    for raw in INVALID_JSON:
        assert_error(await shop.call(op.method, _path(op, shop), data=raw), 422, "invalid_json")
    assert await shop.rows() == before


async def test_invalid_json_body_on_webchat(shop: Shop) -> None:
    before = await shop.rows()
    for raw in INVALID_JSON:
        assert_error(await shop.call("POST", "/webchat/messages", data=raw), 422, "invalid_json")
    assert await shop.rows() == before


@pytest.mark.parametrize("op", body_operations(), ids=op_id)
async def test_unknown_field_is_refused_and_named(shop: Shop, op: Operation) -> None:
    before = await shop.rows()
    valid = valid_bodies(shop)[op_key(op)]
    error = assert_error(await shop.call(op.method, _path(op, shop), body={**valid, "surprise": 1}),
                         422, "validation_error")
    assert "surprise" in error["message"], error
    assert ["surprise"] in [d["loc"] for d in error["details"]], error
    # Nothing of the otherwise valid body was applied.
    assert await shop.rows() == before


async def test_unknown_nested_field_is_named(shop: Shop) -> None:
    error = assert_error(await shop.call("POST", "/api/v1/tickets", body={"text": "x", "customer": {"phone": "1"}}),
                         422, "validation_error")
    assert "customer.phone" in error["message"], error


async def test_unknown_field_on_webchat(shop: Shop) -> None:
    before = await shop.rows()
    reply = await shop.call("POST", "/webchat/messages",
                            body={"visitor_id": shop.visitor_id, "client_id": "x1", "text": "hi", "surprise": 1})
    error = assert_error(reply, 422, "validation_error")
    assert "surprise" in error["message"], error
    assert await shop.rows() == before


@pytest.mark.parametrize("op", body_operations(), ids=op_id)
async def test_wrong_types_and_values(shop: Shop, op: Operation) -> None:
    before = await shop.rows()
    for body, field in badly_typed(shop)[op_key(op)]:
        reply = await shop.call(op.method, _path(op, shop), body=body)
        error = assert_error(reply, 422, "validation_error")
        assert _names(error, field), (body, error)
    for not_an_object in ([], ["text"], "text", 5, True):
        reply = await shop.call(op.method, _path(op, shop), data=json.dumps(not_an_object).encode())
        assert_error(reply, 422, "validation_error")
    reply = await shop.call(op.method, _path(op, shop), data=b"null")
    assert_error(reply, 422)
    assert await shop.rows() == before


async def test_wrong_types_on_webchat(shop: Shop) -> None:
    before = await shop.rows()
    good = {"visitor_id": shop.visitor_id, "client_id": "typed", "text": "hi"}
    for body, field in (({**good, "text": 5}, "text"), ({**good, "client_id": 5}, "client_id"),
                        ({**good, "visitor_id": 5}, "visitor_id"), ({**good, "name": ["Milton"]}, "name"),
                        ({**good, "email": 5}, "email")):
        error = assert_error(await shop.call("POST", "/webchat/messages", body=body), 422, "validation_error")
        assert _names(error, field), (body, error)
    not_objects: list[Any] = [[], "text", 5]
    for not_an_object in not_objects:
        assert_error(await shop.call("POST", "/webchat/messages", data=json.dumps(not_an_object).encode()), 422)
    assert await shop.rows() == before


@pytest.mark.parametrize("text", ["nul \u0000 inside", "lone \ud800 surrogate"], ids=["nul", "surrogate"])
async def test_text_that_cannot_be_stored_is_refused(shop: Shop, text: str) -> None:
    """NUL characters (PostgreSQL text cannot hold them) and unpaired surrogates (not UTF-8) are
    refused the same way on both databases, in every string of a body."""
    before = await shop.rows()
    raw = json.dumps({"text": text, "kind": "note"}).encode()  # ensure_ascii keeps them as \\u escapes
    assert_error(await shop.call("POST", f"/api/v1/tickets/{shop.ticket_id}/messages", data=raw), 422, "invalid_text")
    raw = json.dumps({"text": "fine", "customer": {"name": text}}).encode()
    assert_error(await shop.call("POST", "/api/v1/tickets", data=raw), 422, "invalid_text")
    raw = json.dumps({"tags": [text]}).encode()
    assert_error(await shop.call("PATCH", f"/api/v1/tickets/{shop.ticket_id}", data=raw), 422, "invalid_text")
    raw = json.dumps({"email": text, "password": "x"}).encode()
    assert_error(await shop.call("POST", "/api/v1/auth/login", data=raw), 422, "invalid_text")
    raw = json.dumps({"client_id": "nul1", "text": text}).encode()
    assert_error(await shop.call("POST", "/webchat/messages", data=raw), 422, "invalid_text")
    assert await shop.rows() == before


# --- sizes -----------------------------------------------------------------------------------------------
def _texts_at_limit(shop: Shop) -> tuple[str, str]:
    """Text of exactly the limit in UTF-8 bytes (two-byte characters), and one byte more."""
    limit = shop.settings.max_message_bytes
    exact = "é" * (limit // 2) + "a" * (limit % 2)
    assert len(exact.encode()) == limit
    return exact, exact + "a"


async def test_message_text_size_limit_over_http(shop: Shop) -> None:
    exact, over = _texts_at_limit(shop)
    path = f"/api/v1/tickets/{shop.ticket_id}/messages"
    before = await shop.rows()
    for kind in ("reply", "note"):
        assert_error(await shop.call("POST", path, body={"text": over, "kind": kind}), 413, "message_too_large")
    assert_error(await shop.call("POST", "/api/v1/tickets", body={"text": over, "customer": {"name": "Big"}}),
                 413, "message_too_large")
    assert_error(await shop.call("POST", "/webchat/messages", body={"visitor_id": shop.visitor_id, "client_id": "big",
                                                                   "text": over}), 413, "message_too_large")
    assert await shop.rows() == before

    texts = await shop.texts()
    ok = await shop.call("POST", path, body={"text": exact, "kind": "note"})
    assert ok.status == 201, ok
    ok = await shop.call("POST", "/webchat/messages", body={"visitor_id": shop.visitor_id, "client_id": "exact",
                                                            "text": exact})
    assert ok.status == 201, ok
    assert await shop.texts() == [*texts, exact, exact]


async def test_request_body_over_the_limit(shop: Shop) -> None:
    limit = shop.settings.max_request_bytes
    huge = json.dumps({"text": "a" * limit, "kind": "note"}).encode()
    assert len(huge) > limit
    before = await shop.rows()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(huge), 64 * 1024):
            yield huge[i:i + 64 * 1024]

    for path in (f"/api/v1/tickets/{shop.ticket_id}/messages", "/api/v1/tickets", "/webchat/messages"):
        # With a Content-Length, and chunked (no length announced: the limit holds while reading).
        assert_error(await shop.call("POST", path, data=huge), 413, "request_too_large")
        assert_error(await shop.call("POST", path, data=chunks()), 413, "request_too_large")
    assert await shop.rows() == before
    assert (await shop.call("GET", f"/api/v1/tickets/{shop.ticket_id}")).status == 200


# --- raw bodies (files, the platform's XML pushes) ----------------------------------------------------------
@dataclass(frozen=True)
class RawBody:
    """Where a route whose body is raw bytes, not JSON, takes one (its path filled in), the most it
    takes, and what an empty and an oversized body get."""

    path: str
    limit: int
    empty: tuple[int, str]
    too_large: str


def _visitor_upload_limit(shop: Shop) -> int:
    """What a web chat visitor may upload: their own limit, never more than agents'."""
    return min(shop.settings.channel("webchat", WebchatSettings).max_upload_bytes, shop.settings.max_attachment_bytes)


def raw_bodies(shop: Shop) -> dict[tuple[str, str], RawBody]:
    push_limit = shop.settings.channel("wechat", WeChatSettings).max_push_bytes
    return {
        ("POST", "/api/v1/attachments"): RawBody("/api/v1/attachments?name=x.pdf", shop.settings.max_attachment_bytes,
                                                 (400, "empty_attachment"), "attachment_too_large"),
        ("POST", "/webchat/attachments"): RawBody(f"/webchat/attachments?visitor_id={shop.visitor_id}&name=x.png",
                                                  _visitor_upload_limit(shop),
                                                  (400, "empty_attachment"), "attachment_too_large"),
        ("POST", "/wechat/oa/{key}"): RawBody(f"/wechat/oa/{shop.wechat['key']}", push_limit, (400, "invalid_xml"),
                                              "push_too_large"),
        ("POST", "/wechat/kf/{key}"): RawBody(f"/wechat/kf/{shop.kf_key}", push_limit, (400, "invalid_xml"),
                                              "push_too_large"),
    }


def raw_body_operations() -> list[Operation]:
    return [op for op in operations() if op.raw_body]


async def _chunked(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """``data`` sent in chunks, with no Content-Length: a limit must hold while reading."""
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def test_raw_body_table_covers_every_raw_body_route(shop: Shop) -> None:
    assert set(raw_bodies(shop)) == {op_key(op) for op in raw_body_operations()}


@pytest.mark.parametrize("op", raw_body_operations(), ids=op_id)
async def test_raw_body_empty_or_over_the_limit(shop: Shop, op: Operation) -> None:
    raw = raw_bodies(shop)[op_key(op)]
    headers = {"Content-Type": "application/octet-stream"}
    before = await shop.rows()
    assert_error(await shop.call(op.method, raw.path, data=b"", headers=headers), *raw.empty)
    big = b"<" * (raw.limit + 1)
    # Told by its Content-Length, and found while reading a chunked body.
    for data in (big, _chunked(big)):
        assert_error(await shop.call(op.method, raw.path, data=data, headers=headers), 413, raw.too_large)
    assert await shop.rows() == before


# --- ids, tokens, roles, routes, queries ---------------------------------------------------------------------
BAD_IDS = ["abc", "1.5", "0", "-3", "1e3", "9" * 30, "1_0", "+1", "%201", "%D9%A3", "0x10"]


@pytest.mark.parametrize("op", id_operations(), ids=op_id)
async def test_ids_in_the_path(shop: Shop, op: Operation) -> None:
    before = await shop.rows()
    body = valid_bodies(shop).get(op_key(op))
    for param in path_params(op):
        if param in WORD_PARAMS:
            missing_code, longest = WORD_PARAMS[param]
            for bad in [*BAD_WORDS, "A" * (longest + 1), "A" * 4000]:
                reply = await shop.call(op.method, _path(op, shop, **{param: bad}), body=body)
                assert_error(reply, 422, "invalid_id")
            # The longest one the column holds is a valid id that exists nowhere.
            reply = await shop.call(op.method, _path(op, shop, **{param: "A" * longest}), body=body)
            assert_error(reply, 404, missing_code)
            continue
        assert param in ID_PARAMS, f"{op_id(op)}: say in ID_PARAMS or WORD_PARAMS what {param} is"
        missing_code, largest = ID_PARAMS[param]
        missing_code = ID_PARAMS_BY_ROUTE.get((op_key(op), param), missing_code)
        for bad in [*BAD_IDS, str(largest + 1)]:
            reply = await shop.call(op.method, _path(op, shop, **{param: bad}), body=body)
            assert_error(reply, 422, "invalid_id")
        # The largest id the column holds is a valid id that exists nowhere.
        assert_error(await shop.call(op.method, _path(op, shop, **{param: largest}), body=body), 404, missing_code)
    assert await shop.rows() == before


@pytest.mark.parametrize("op", [op for op in operations() if op.auth], ids=op_id)
async def test_bearer_token_missing_or_invalid(shop: Shop, op: Operation) -> None:
    before = await shop.rows()
    path = _path(op, shop)
    body = valid_bodies(shop).get(op_key(op))
    for headers, code in (({}, "unauthorized"), ({"Authorization": "Bearer"}, "unauthorized"),
                          ({"Authorization": "Bearer    "}, "unauthorized"),
                          ({"Authorization": "Basic YWRtaW46YWRtaW4="}, "unauthorized"),
                          ({"Authorization": shop.admin_token}, "unauthorized"),
                          ({"Authorization": "Bearer not-a-token"}, "invalid_token"),
                          ({"Authorization": f"Bearer {shop.admin_token}x"}, "invalid_token"),
                          ({"Authorization": f"Bearer {shop.revoked_token}"}, "invalid_token")):
        kwargs: dict[str, Any] = {"json_body": body} if body is not None else {}
        reply = await shop.http(op.method, path, host=shop.domain, headers=headers, **kwargs)
        assert_error(reply, 401, code)
    assert await shop.rows() == before


async def test_a_refused_password_change_changes_nothing(shop: Shop) -> None:
    before = await shop.rows()
    assert_error(await shop.call("PUT", "/api/v1/me/password",
                                 body={"current_password": PASSWORD, "new_password": "short"}), 422, "weak_password")
    assert_error(await shop.call("PUT", "/api/v1/me/password",
                                 body={"current_password": "not it", "new_password": "an0ther password"}),
                 403, "wrong_password")
    assert await shop.rows() == before
    assert (await shop.call("GET", "/api/v1/me")).status == 200  # the session goes on


ADMIN_ONLY = [
    ("POST", "/api/v1/agents"), ("PATCH", "/api/v1/agents/{agent_id}"), ("POST", "/api/v1/groups"),
    ("PATCH", "/api/v1/groups/{group_id}"), ("PUT", "/api/v1/groups/{group_id}/members"),
    ("POST", "/api/v1/routing/rules"), ("PATCH", "/api/v1/routing/rules/{rule_id}"),
    ("DELETE", "/api/v1/routing/rules/{rule_id}"), ("PUT", "/api/v1/routing/rules/order"),
    ("PUT", "/api/v1/routing/settings"), ("GET", "/api/v1/wechat/accounts"), ("POST", "/api/v1/wechat/accounts"),
    ("GET", "/api/v1/wechat/accounts/{account_id}"), ("PATCH", "/api/v1/wechat/accounts/{account_id}"),
    ("DELETE", "/api/v1/wechat/accounts/{account_id}"), ("GET", "/api/v1/billing"), ("GET", "/api/v1/billing/ledger"),
    ("GET", "/api/v1/billing/statement"), ("GET", "/api/v1/billing/invoices"),
    ("GET", "/api/v1/billing/invoices/{invoice_number}"), ("GET", "/api/v1/availability"),
    ("GET", "/api/v1/audit"), ("GET", "/api/v1/audit/export"), ("GET", "/api/v1/logins"),
    ("GET", "/api/v1/logins/export"),
    ("POST", "/api/v1/exports"), ("GET", "/api/v1/exports"), ("GET", "/api/v1/exports/{export_id}"),
    ("POST", "/api/v1/customers/{customer_id}/export"),
    ("POST", "/api/v1/sla/policies"), ("PATCH", "/api/v1/sla/policies/{policy_id}"),
    ("DELETE", "/api/v1/sla/policies/{policy_id}"),
]


async def test_only_admins_manage_seats_groups_and_routing(shop: Shop) -> None:
    before = await shop.rows()
    v = valid_bodies(shop)
    ops = {op_key(op): op for op in operations()}
    for key in ADMIN_ONLY:
        reply = await shop.call(key[0], _path(ops[key], shop), token=shop.agent_token, body=v.get(key))
        assert_error(reply, 403, "admin_only")
    assert await shop.rows() == before


async def test_rule_actions_with_an_id_out_of_range(shop: Shop) -> None:
    before = await shop.rows()
    for group_id in (2**31, 2**63, True, "1"):
        actions = {"group_id": group_id}
        reply = await shop.call("POST", "/api/v1/routing/rules", body={"name": "far", "actions": actions})
        assert_error(reply, 422, "invalid_rule")
        reply = await shop.call("PATCH", f"/api/v1/routing/rules/{shop.rule_id}", body={"actions": actions})
        assert_error(reply, 422, "invalid_rule")
    assert await shop.rows() == before


async def test_unknown_route_and_method_answer_json(shop: Shop) -> None:
    assert_error(await shop.call("GET", "/api/v1/nothing-here"), 404, "not_found")
    assert_error(await shop.call("DELETE", f"/api/v1/tickets/{shop.ticket_id}"), 405, "method_not_allowed")
    assert_error(await shop.call("GET", "/api/v1/auth/login"), 405, "method_not_allowed")


async def test_bad_query_parameters(shop: Shop) -> None:
    for query in ("limit=abc", "limit=0", "limit=501", "limit=1.5", "status=bogus", "status=open,bogus",
                  "assignee_id=abc", "assignee_id=0", f"assignee_id={2**31}", f"assignee_id={2**62}",
                  "before_id=-1", "before_id=x", "limit=1_0", "view=bogus", "view=mine&view=mine", "priority=x",
                  "status=open&status=new", "group_id=0", f"group_id={2**31}", "channel=%00", "tag=" + "x" * 65,
                  "unassigned=2"):
        assert_error(await shop.call("GET", f"/api/v1/tickets?{query}"), 422, "invalid_query")
    assert_error(await shop.call("GET", "/api/v1/tickets?view=all", token=shop.agent_token), 403, "supervisor_only")
    for query in ("", "q=", "q=%00", "q=%E3%80%82", "q=" + "x" * 201, "q=a&q=a", "q=a&limit=0", "q=a&limit=51",
                  "q=a&limit=1.5", "q=a&before=0", f"q=a&before={2**63}", "q=a&before=%D9%A3"):
        assert_error(await shop.call("GET", f"/api/v1/search?{query}"), 422, "invalid_query")
    for query in ("group_id=abc", "group_id=0", f"group_id={2**31}", "limit=0", "limit=1001", "limit=+5"):
        assert_error(await shop.call("GET", f"/api/v1/queue?{query}"), 422, "invalid_query")
    for query, code in (("", "invalid_visitor"), ("visitor_id=short", "invalid_visitor"),
                        (f"visitor_id={shop.visitor_id}&since=abc", "invalid_query"),
                        (f"visitor_id={shop.visitor_id}&since={10**30}", "invalid_query")):
        assert_error(await shop.call("GET", f"/webchat/history?{query}"), 422, code)
    for path, queries in (
        ("/api/v1/billing/ledger", ("limit=0", "limit=501", "limit=x", "after_id=0", f"after_id={2**63}")),
        ("/api/v1/billing/invoices", ("limit=0", "limit=1.5", "after_id=-1", "after_id=%D9%A3")),
        ("/api/v1/billing/statement", ("from=2026-02-30", "from=20260101", "to=x", "format=doc", "format=",
                                       "from=2026-01-01&from=2026-01-02")),
        (f"/api/v1/billing/invoices/{shop.invoice_number}", ("format=csv", "format=pdf&format=pdf")),
        ("/api/v1/availability", ("month=2026-13", "month=2026-1", "month=1999-12", "month=x", "month=2026-01-01",
                                  "month=%D9%A3%D9%A3%D9%A3%D9%A3-01", "month=2026-01&month=2026-02",
                                  "month=9999-01")),
        ("/api/v1/audit", ("limit=0", "limit=501", "before_id=0", f"before_id={2**63}", "from=yesterday",
                           "to=2026-13-01", "from=" + "1" * 41, "actor_type=robot", "actor_id=0",
                           f"actor_id={2**31}", "action=" + "x" * 81, "target_id=" + "x" * 81,
                           "action=a&action=b")),
        ("/api/v1/audit/export", ("format=pdf", "format=csv&format=csv", "from=x", "actor_id=-1")),
        ("/api/v1/logins", ("limit=x", "outcome=maybe", "agent_id=%D9%A3", "email=" + "x" * 321, "to=x")),
        ("/api/v1/logins/export", ("format=json", "outcome=ok", "ip=" + "1" * 65)),
        *((f"/api/v1/reports/{kind}", ("from=2026-02-30", "from=20260101", "to=x", "to=%D9%A3", "format=pdf",
                                       "format=json&format=xlsx", "group_id=0", f"group_id={2**31}", "agent_id=x",
                                       "tag=" + "x" * 65, "channel=" + "x" * 41, "from=2026-01-01&from=2026-01-02"))
          for kind in ("agents", "groups", "demand")),
    ):
        for query in queries:
            reply = await shop.call("GET", f"{path}?{query}")
            if query != "format=":
                assert_error(reply, 422, "invalid_query")
            else:  # an empty format is the default, JSON
                assert reply.status == 200, reply
    assert_error(await shop.call("GET", "/api/v1/billing/statement?from=2026-02-01&to=2026-01-01"), 422,
                 "invalid_period")
    assert_error(await shop.call("GET", "/api/v1/billing/statement?from=2020-01-01&to=2026-01-01"), 422,
                 "period_too_long")
    for kind in ("agents", "groups", "demand"):
        for query in ("from=2026-02-01&to=2026-01-01", "from=2020-01-01&to=2026-01-01"):
            assert_error(await shop.call("GET", f"/api/v1/reports/{kind}?{query}"), 422, "invalid_period")
    ok = await shop.call("GET", f"/webchat/history?visitor_id={shop.visitor_id}&since=-5")
    assert ok.status == 200 and ok.body["messages"][0]["text"] == "My parcel never came", ok


# --- web chat over HTTP: visitor and client ids, duplicates -----------------------------------------------
async def test_bad_visitor_and_client_ids_on_webchat_post(shop: Shop) -> None:
    before = await shop.rows()
    good = {"visitor_id": shop.visitor_id, "client_id": "c-ok", "text": "hi"}
    for body, code in (({**good, "visitor_id": "short"}, "invalid_visitor"),
                       ({**good, "visitor_id": "has spaces in it, sixteen+"}, "invalid_visitor"),
                       ({**good, "visitor_id": "x" * 65}, "invalid_visitor"),
                       ({**good, "client_id": "has space"}, "invalid_client_id"),
                       ({**good, "client_id": "x" * 101}, "invalid_client_id"),
                       ({**good, "client_id": ""}, "invalid_client_id"),
                       ({**good, "text": "   "}, "empty_text")):
        assert_error(await shop.call("POST", "/webchat/messages", body=body), 422, code)
    error = assert_error(await shop.call("POST", "/webchat/messages", body={"visitor_id": shop.visitor_id,
                                                                            "text": "hi"}), 422)
    assert "client_id" in error["message"], error
    assert await shop.rows() == before


async def test_duplicate_client_id_returns_the_first_message(shop: Shop) -> None:
    client_id = f"dup-{uuid.uuid4().hex[:8]}"
    first = await shop.call("POST", "/webchat/messages",
                            body={"visitor_id": shop.visitor_id, "client_id": client_id, "text": "once"})
    assert first.status == 201, first
    after_first = await shop.rows()
    again = await shop.call("POST", "/webchat/messages",
                            body={"visitor_id": shop.visitor_id, "client_id": client_id, "text": "once, edited"})
    assert again.status in (200, 201), again
    assert again.body["message"] == first.body["message"]
    assert await shop.rows() == after_first
    assert (await shop.texts()).count("once") == 1
    assert "once, edited" not in await shop.texts()

    # The same client id over the socket (a widget that fell back to HTTP, then reconnected).
    ws = await _visitor_socket(shop)
    await ws.send_json({"type": "message", "client_id": client_id, "text": "once, by socket"})
    ack = await next_frame(ws)
    assert ack["type"] == "ack" and ack["client_id"] == client_id and ack["message"] == first.body["message"], ack
    await ws.send_json({"type": "message", "client_id": client_id, "text": "and again"})
    assert (await next_frame(ws))["message"] == first.body["message"]
    await ws.close()
    assert await shop.rows() == after_first


# --- the agent websocket -----------------------------------------------------------------------------------
async def _agent_socket(shop: Shop) -> aiohttp.ClientWebSocketResponse:
    ws = await shop.http.ws("/agent/ws", host=shop.domain)
    await ws.send_json({"type": "hello", "token": shop.admin_token})
    welcome = await next_frame(ws)
    assert welcome["type"] == "welcome", welcome
    return ws


async def _still_open(ws: aiohttp.ClientWebSocketResponse) -> None:
    await ws.send_json({"type": "ping"})
    assert (await next_frame(ws, skip=_is_event))["type"] == "pong"


async def _send_raw(ws: aiohttp.ClientWebSocketResponse, frame: Any) -> None:
    if isinstance(frame, bytes):
        await ws.send_bytes(frame)
    elif isinstance(frame, str):
        await ws.send_str(frame)
    else:
        await ws.send_str(json.dumps(frame))


async def test_agent_socket_malformed_frames(shop: Shop) -> None:
    ws = await _agent_socket(shop)
    before = await shop.rows()
    t = shop.ticket_id
    frames: list[tuple[Any, str]] = [
        ("not json", "invalid_json"),
        (DEEP, "invalid_json"),
        ("[1, 2]", "invalid_frame"),
        ('"hello"', "invalid_frame"),
        ("null", "invalid_frame"),
        (b"\x00\x01binary", "invalid_frame"),
        ({"type": "explode"}, "unknown_type"),
        ({"no": "type"}, "unknown_type"),
        ({"type": "reply", "text": "x"}, "invalid_ticket_id"),
        ({"type": "reply", "ticket_id": str(t), "text": "x"}, "invalid_ticket_id"),
        ({"type": "reply", "ticket_id": True, "text": "x"}, "invalid_ticket_id"),
        ({"type": "reply", "ticket_id": -1, "text": "x"}, "invalid_ticket_id"),
        ({"type": "reply", "ticket_id": 1.5, "text": "x"}, "invalid_ticket_id"),
        ({"type": "get_ticket", "ticket_id": 2**63}, "invalid_ticket_id"),
        ({"type": "get_ticket", "ticket_id": MISSING_TICKET}, "ticket_not_found"),
        ({"type": "reply", "ticket_id": t}, "empty_text"),
        ({"type": "reply", "ticket_id": t, "text": 5}, "empty_text"),
        ({"type": "note", "ticket_id": t, "text": "   "}, "empty_text"),
        ({"type": "note", "ticket_id": t, "text": "nul \u0000"}, "invalid_text"),
        ({"type": "note", "ticket_id": t, "text": "lone \ud800"}, "invalid_text"),
        ({"type": "status", "ticket_id": t, "status": "exploded"}, "invalid_status"),
        ({"type": "status", "ticket_id": t}, "invalid_status"),
        ({"type": "priority", "ticket_id": t, "priority": "meh"}, "invalid_priority"),
        ({"type": "tags", "ticket_id": t, "add": "x"}, "invalid_tag"),
        ({"type": "tags", "ticket_id": t, "add": [5]}, "invalid_tag"),
        ({"type": "transfer", "ticket_id": t}, "transfer_target"),
        ({"type": "transfer", "ticket_id": t, "agent_id": "x"}, "invalid_id"),
        ({"type": "transfer", "ticket_id": t, "agent_id": True}, "invalid_id"),
        ({"type": "transfer", "ticket_id": t, "agent_id": 2**31}, "invalid_id"),
        ({"type": "transfer", "ticket_id": t, "group_id": 2**63}, "invalid_id"),
        ({"type": "presence", "status": "busy"}, "invalid_presence"),
        ({"type": "typing", "ticket_id": t, "state": "dancing"}, "invalid_typing_state"),
        ({"type": "typing", "ticket_id": "x"}, "invalid_ticket_id"),
        ({"type": "typing", "ticket_id": MISSING_TICKET}, "ticket_not_found"),
        ({"type": "viewing", "ticket_id": t, "state": "staring"}, "invalid_viewing_state"),
        ({"type": "viewing", "ticket_id": MISSING_TICKET}, "ticket_not_found"),
    ]
    for frame, code in frames:
        await _send_raw(ws, frame)
        assert_error_frame(await next_frame(ws, skip=_is_event), code)
        await _still_open(ws)
        # With a ref, the failure is the result of that request.
        if isinstance(frame, dict):
            await ws.send_json({**frame, "ref": "r1"})
            result = await next_frame(ws, skip=_is_event)
            assert result.get("ref") == "r1", result
            assert_error_frame(result, code)
    assert await shop.rows() == before

    # The socket still does real work, and the conversation is whole.
    await ws.send_json({"type": "get_ticket", "ticket_id": t, "ref": "ok"})
    result = await next_frame(ws, skip=_is_event)
    assert result["ok"] is True and result["ref"] == "ok", result
    assert [m["text"] for m in result["data"]["messages"]] == await shop.texts()
    await ws.close()


async def test_agent_socket_message_too_large(shop: Shop) -> None:
    exact, over = _texts_at_limit(shop)
    ws = await _agent_socket(shop)
    before = await shop.rows()
    texts = await shop.texts()
    for kind in ("reply", "note"):
        await ws.send_json({"type": kind, "ticket_id": shop.ticket_id, "text": over, "ref": kind})
        result = await next_frame(ws, skip=_is_event)
        assert result["ref"] == kind
        assert_error_frame(result, "message_too_large")
        await _still_open(ws)
    assert await shop.rows() == before
    await ws.send_json({"type": "note", "ticket_id": shop.ticket_id, "text": exact, "ref": "fits"})
    result = await next_frame(ws, skip=_is_event)
    assert result["ok"] is True and result["data"]["message"]["text"] == exact, result
    assert await shop.texts() == [*texts, exact]
    await ws.close()


@pytest.mark.parametrize("first,code", [
    ({"type": "ping"}, "hello_required"),
    ({"type": "reply", "ticket_id": 1, "text": "x"}, "hello_required"),
    ("[]", "hello_required"),
    ("not json", "invalid_json"),
    (DEEP, "invalid_json"),
    (b"binary hello", "hello_required"),
    ({"type": "hello"}, "validation_error"),
    ({"type": "hello", "token": 5}, "validation_error"),
    ({"type": "hello", "token": "not-a-token"}, "invalid_token"),
    ({"type": "hello", "token": "TOKEN", "since": -1}, "validation_error"),
    ({"type": "hello", "token": "TOKEN", "since": "5"}, "validation_error"),
    ({"type": "hello", "token": "TOKEN", "since": 2**63}, "validation_error"),
    ({"type": "hello", "token": "REVOKED"}, "invalid_token"),
], ids=_short)
async def test_agent_socket_hello_first_and_valid(shop: Shop, first: Any, code: str) -> None:
    if isinstance(first, dict) and first.get("token") in ("TOKEN", "REVOKED"):
        first = {**first, "token": shop.admin_token if first["token"] == "TOKEN" else shop.revoked_token}
    before = await shop.rows()
    ws = await shop.http.ws("/agent/ws", host=shop.domain)
    await _send_raw(ws, first)
    assert_error_frame(await next_frame(ws), code)
    await expect_closed(ws)
    assert await shop.rows() == before


# --- the web chat websocket ----------------------------------------------------------------------------------
async def _visitor_socket(shop: Shop) -> aiohttp.ClientWebSocketResponse:
    ws = await shop.http.ws("/webchat/ws", host=shop.domain)
    await ws.send_json({"type": "hello", "visitor_id": shop.visitor_id})
    welcome = await next_frame(ws)
    assert welcome["type"] == "welcome" and welcome["messages"], welcome
    return ws


async def test_webchat_socket_malformed_frames(shop: Shop) -> None:
    ws = await _visitor_socket(shop)
    before = await shop.rows()
    _, over = _texts_at_limit(shop)
    frames: list[tuple[Any, str, str | None]] = [
        ("not json", "invalid_json", None),
        (DEEP, "invalid_json", None),
        ("[1]", "invalid_frame", None),
        ("42", "invalid_frame", None),
        (b"\x00binary", "invalid_frame", None),
        ({"type": "explode"}, "unknown_type", None),
        ({"type": "message", "text": "no client id"}, "invalid_client_id", None),
        ({"type": "message", "client_id": "has space", "text": "x"}, "invalid_client_id", None),
        ({"type": "message", "client_id": 5, "text": "x"}, "invalid_client_id", None),
        ({"type": "message", "client_id": "x" * 101, "text": "x"}, "invalid_client_id", None),
        ({"type": "message", "client_id": "w1"}, "empty_text", "w1"),
        ({"type": "message", "client_id": "w2", "text": 5}, "empty_text", "w2"),
        ({"type": "message", "client_id": "w3", "text": "  "}, "empty_text", "w3"),
        ({"type": "message", "client_id": "w4", "text": over}, "message_too_large", "w4"),
        ({"type": "message", "client_id": "w5", "text": "nul \u0000"}, "invalid_text", "w5"),
        ({"type": "message", "client_id": "w6", "text": "lone \ud800"}, "invalid_text", "w6"),
    ]
    for frame, code, client_id in frames:
        await _send_raw(ws, frame)
        error = await next_frame(ws)
        assert_error_frame(error, code)
        if client_id is not None:
            assert error.get("client_id") == client_id, error
        await ws.send_json({"type": "ping"})
        assert (await next_frame(ws))["type"] == "pong"
    assert await shop.rows() == before

    texts = await shop.texts()
    await ws.send_json({"type": "message", "client_id": "w-ok", "text": "after all that"})
    ack = await next_frame(ws)
    assert ack["type"] == "ack" and ack["client_id"] == "w-ok", ack
    assert await shop.texts() == [*texts, "after all that"]
    await ws.close()


@pytest.mark.parametrize("first,code", [
    ({"type": "message", "client_id": "a", "text": "x"}, "hello_required"),
    ("[]", "hello_required"),
    ("not json", "invalid_json"),
    (DEEP, "invalid_json"),
    (b"binary hello", "hello_required"),
    ({"type": "hello", "visitor_id": "short"}, "invalid_visitor"),
    ({"type": "hello", "visitor_id": 12345678901234567890}, "invalid_visitor"),
    ({"type": "hello", "visitor_id": "has spaces but long enough"}, "invalid_visitor"),
    ({"type": "hello", "since": -1}, "invalid_since"),
    ({"type": "hello", "since": "5"}, "invalid_since"),
    ({"type": "hello", "since": True}, "invalid_since"),
    ({"type": "hello", "since": 10**30}, "invalid_since"),
], ids=_short)
async def test_webchat_socket_hello_first_and_valid(shop: Shop, first: Any, code: str) -> None:
    before = await shop.rows()
    ws = await shop.http.ws("/webchat/ws", host=shop.domain)
    await _send_raw(ws, first)
    assert_error_frame(await next_frame(ws), code)
    await expect_closed(ws)
    assert await shop.rows() == before


# --- WeChat accounts: values the console would not accept --------------------------------------------------
async def test_wechat_configuration_the_platform_would_refuse(shop: Shop) -> None:
    """Well-typed values that WeChat would not accept get their own clear code, on create and change,
    and nothing is stored; the account and its media are served as before."""
    before = await shop.rows()
    good = _wechat_body()
    path = f"/api/v1/wechat/accounts/{shop.wechat['id']}"
    bad_keys = ["A" * 42 + "!", "=" * 43, " " * 43, "é" * 43, "A" * 41 + "=="]
    for aes_key in bad_keys:
        assert_error(await shop.call("POST", "/api/v1/wechat/accounts", body={**good, "aes_key": aes_key}),
                     422, "invalid_aes_key")
        assert_error(await shop.call("PATCH", path, body={"aes_key": aes_key}), 422, "invalid_aes_key")
    for body, code in (({**good, "aes_key": None}, "aes_key_required"),
                       ({**good, "mode": "compat", "aes_key": None}, "aes_key_required"),
                       ({**good, "token": "bad token!"}, "invalid_token"),
                       ({**good, "token": "tök"}, "invalid_token"),
                       ({**good, "app_id": "wx 1234 5678"}, "invalid_app_id"),
                       ({**good, "kind": "kf", "app_id": None, "corp_id": "ww1234567890"}, "open_kfid_required"),
                       ({**good, "app_id": shop.wechat["app_id"]}, "account_exists")):
        reply = await shop.call("POST", "/api/v1/wechat/accounts", body=body)
        assert_error(reply, 409 if code == "account_exists" else 422, code)
    for body, code in (({"aes_key": None}, "aes_key_required"), ({"token": "bad token!"}, "invalid_token"),
                       ({"app_id": "wx/1234"}, "invalid_app_id"), ({"name": "nul \u0000"}, "invalid_text")):
        assert_error(await shop.call("PATCH", path, data=json.dumps(body).encode()), 422, code)
    assert await shop.rows() == before
    shown = await shop.call("GET", path)
    assert shown.status == 200 and shown.body["account"] == shop.wechat, shown
    media = await shop.call("GET", f"/api/v1/wechat/media/{shop.wechat['key']}/{shop.media_id}",
                            token=shop.agent_token)
    assert media.status == 200 and media.text == "photo", media


# --- attachments --------------------------------------------------------------------------------------------
async def test_visitor_uploads_that_are_refused_store_nothing(shop: Shop) -> None:
    limit = _visitor_upload_limit(shop)
    before = await shop.rows()

    async def upload(query: str, data: Any, content_type: str = "image/png") -> Reply:
        reply = await shop.call("POST", "/webchat/attachments" + query, token="", data=data,
                                headers={"Content-Type": content_type})
        assert reply.headers.get("Access-Control-Allow-Origin") == "*", reply.headers
        return reply

    ok = f"?visitor_id={shop.visitor_id}&name=x.png"
    for query in ("?name=x.png", "?visitor_id=short&name=x.png", f"?visitor_id={shop.visitor_id}x%20y&name=x.png"):
        assert_error(await upload(query, b"png"), 422, "invalid_visitor")
    for query in (f"?visitor_id={shop.visitor_id}", f"?visitor_id={shop.visitor_id}&name=%20",
                  f"?visitor_id={shop.visitor_id}&name="):
        assert_error(await upload(query, b"png"), 422, "invalid_attachment_name")
    for content_type in ("text/html", "image/svg+xml", "application/javascript", "application/octet-stream",
                         "application/x-msdownload", ""):
        error = assert_error(await upload(ok, b"<script>alert(1)</script>", content_type), 415, "unsupported_type")
        assert "pictures" in error["message"], error
    assert_error(await upload(ok, b"png", "image/"), 422, "invalid_content_type")
    # Over the visitor's limit (lower than agents'), whatever the type; by Content-Length and while reading.
    big = b"x" * (limit + 1)
    assert limit <= shop.settings.max_attachment_bytes
    for content_type in ("image/png", "text/html"):
        assert_error(await upload(ok, big, content_type), 413, "attachment_too_large")
    assert_error(await upload(ok, _chunked(big)), 413, "attachment_too_large")
    assert_error(await upload(ok, b""), 400, "empty_attachment")
    assert await shop.rows() == before


async def test_uploads_that_are_refused_store_nothing(shop: Shop) -> None:
    limit = shop.settings.max_attachment_bytes
    before = await shop.rows()

    async def upload(query: str, data: Any, content_type: str = "application/pdf") -> Reply:
        return await shop.call("POST", "/api/v1/attachments" + query, token=shop.agent_token, data=data,
                               headers={"Content-Type": content_type})

    for query in ("", "?name=", "?name=%20%20", "?name=" + "a" * 201, "?name=a/b.pdf", "?name=..%5Cb.pdf",
                  "?name=%2Fetc%2Fpasswd", "?name=..", "?name=nul%00.pdf", "?name=tab%09.pdf"):
        assert_error(await upload(query, b"%PDF"), 422, "invalid_attachment_name")
    for content_type in ("pdf", "image/", "/png", "image/png/x", "a" * 97 + "/pdf", "image/pn g"):
        assert_error(await upload("?name=x.pdf", b"%PDF", content_type), 422, "invalid_content_type")
    assert_error(await upload("?name=empty.pdf", b""), 400, "empty_attachment")

    big = b"x" * (limit + 1)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 256 * 1024):
            yield big[i:i + 256 * 1024]

    # Told by its Content-Length, and found while reading a chunked body.
    assert_error(await upload("?name=big.pdf", big), 413, "attachment_too_large")
    assert_error(await upload("?name=big.pdf", chunks()), 413, "attachment_too_large")

    # A reply or note naming a file that does not exist stores nothing, even beside one that does.
    path = f"/api/v1/tickets/{shop.ticket_id}/messages"
    for kind in ("reply", "note"):
        for ids in ([MISSING_TICKET], [shop.attachment["id"], MISSING_TICKET]):
            reply = await shop.call("POST", path, body={"text": "see file", "kind": kind, "attachments": ids})
            error = assert_error(reply, 404, "attachment_not_found")
            assert str(MISSING_TICKET) in error["message"], error
    assert await shop.rows() == before

    # Exactly the limit, with no type given and any name a person would give (the body limit of
    # JSON requests does not apply).
    exact = await upload("?name=" + quote("Lieferschein März (1).bin"), b"y" * limit, "")
    assert exact.status == 201, exact
    assert (exact.body["attachment"]["size"], exact.body["attachment"]["content_type"]) == (
        limit, "application/octet-stream")
    assert exact.body["attachment"]["name"] == "Lieferschein März (1).bin"
