"""An agent of tenant A can read or change nothing of tenant B, whatever id they try, on every
endpoint and over both websockets.

The HTTP part is driven by the route registry: every operation of the app's ``web.api.Api``
(``channelhub.app.build_api``), the channels' web-hooks included, must have an entry in ``CASES``
(how to call it with B's ids and what must come back), so a new route without
a cross-tenant check fails here. After each probe, every row of tenant B in the database is
compared with what it was before: "changes nothing" is checked on the stored data itself.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
import openpyxl
import pytest
from sqlalchemy import select

from admin_api.client import AgentClient, HubError
from admin_api.gateway import ACTIONS
from connectors.email.models import EmailMailbox
from connectors.wechat.models import WeChatAccount, WeChatMedia
from connectors.xmpp.models import XmppAccount
from core import availability, exports, sla, statements
from core.config import Settings
from core.db import Database
from core.models import (
    MAX_ID,
    Agent,
    AuditLog,
    CannedReply,
    CsatSettings,
    CsatSurvey,
    CustomerIdentity,
    Export,
    Group,
    InboxItem,
    LedgerEntry,
    LoginLog,
    Macro,
    Mention,
    Message,
    RoutingRule,
    StoredAttachment,
    Ticket,
)
from tests.conftest import PASSWORD, AgentInfo, Server, TenantInfo, eventually, make_tenant
from tests.email.support import mail as email_mail
from tests.email.support import send as smtp_send
from tests.support import (
    PNG,
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
from tests.wechat.conftest import KfAccount, make_kf_account
from tests.wechat.platform import (
    Push,
    Pusher,
    StandIn,
    new_aes_key,
    new_app_id,
    new_openid,
    oa_verification,
    wecom_callback,
    wecom_verification,
)
from web.api import Operation
from web.http import HUB

MISSING_TICKET = 10**12
MISSING_SMALL = MAX_ID  # agents, groups and rules have INTEGER (int4) keys
UNKNOWN_DOMAIN = "nobody-lives-here.example.com"
MISSING_KEY = "NoSuchWebhookKey0000000000"  # shaped like an account key (token_urlsafe(18))
MISSING_MEDIA = "MEDIA_no_such_media_anywhere"


# --- the world: two tenants with the same shape --------------------------------------------------
@dataclass
class Side:
    info: TenantInfo
    admin: AgentInfo
    agent: AgentInfo
    group_id: int
    group_name: str
    admin_token: str
    agent_token: str
    open_ticket: int  # web chat, assigned to the agent, with inbound, note and outbound messages
    solved_ticket: int
    customer_id: int
    visitor_id: str
    rule_id: int
    rule_name: str
    waiting_ticket: int  # in the group's queue: nobody is online
    wechat: dict[str, Any]  # an Official Account, as the admin API shows it
    media_id: str  # a customer's image, stored for that account
    attachment: dict[str, Any]  # a file the admin attached to the open ticket's reply
    file_path: str  # the signed link the web chat customer was given for it
    oa: Pusher  # signs and encrypts pushes for that Official Account, as the platform does
    kf: KfAccount  # a WeCom customer-service account, with its callback as WeCom sends it
    mailbox: dict[str, Any]  # a support address, as the admin API shows it
    mail_message_id: int  # a customer's mail to it, received over SMTP and made a ticket message
    invoice_number: str  # a billing contract, its ledger, and the invoice of its charge for seats
    xmpp: dict[str, Any] = field(default_factory=dict)  # an XMPP client account, as the admin API shows it
    # The agent workspace (#13): a customer merge, canned replies (the tenant's, the agent's own), a
    # macro, and a note mentioning the agent.
    workspace: dict[str, int] = field(default_factory=dict)
    # A picture the web chat visitor uploaded (not yet in a message), as the upload answered it.
    visitor_file: dict[str, Any] = field(default_factory=dict)
    # A finished Excel export (#16), as GET /api/v1/exports/{id} shows it, with its signed link.
    export: dict[str, Any] = field(default_factory=dict)
    # The satisfaction survey of the solved ticket (#17, core.csat): its token, the customer's link.
    csat_token: str = ""
    # An SLA policy (#17): the tickets after it have deadlines (ticket_sla rows).
    sla_policy_id: int = 0

    @property
    def attachment_id(self) -> int:
        return int(self.attachment["id"])

    @property
    def signature(self) -> str:
        return self.file_path.rsplit("/", 1)[1]

    @property
    def domain(self) -> str:
        return self.info.domain

    @property
    def account_id(self) -> int:
        return int(self.wechat["id"])

    @property
    def key(self) -> str:
        return str(self.wechat["key"])

    def ids(self) -> dict[str, int | str]:
        """This side's ids for every path parameter of the API."""
        return {"ticket_id": self.open_ticket, "rule_id": self.rule_id, "group_id": self.group_id,
                "agent_id": self.agent.id, "customer_id": self.customer_id, "account_id": self.account_id,
                "key": self.key, "media_id": self.media_id, "attachment_id": self.attachment_id,
                "signature": self.signature, "mailbox_id": self.mailbox["id"], "message_id": self.mail_message_id,
                "invoice_number": self.invoice_number, "xmpp_account_id": self.xmpp["id"],
                "merge_id": self.workspace["merge_id"], "canned_id": self.workspace["canned_id"],
                "macro_id": self.workspace["macro_id"], "export_id": self.export["id"], "token": self.csat_token,
                "policy_id": self.sla_policy_id}


@dataclass
class World:
    a: Side
    b: Side
    http: Http
    db: Database
    server: Server
    wechat_api: StandIn

    async def call(self, method: str, path: str, *, side: Side | None = None, host: str | None = None,
                   token: str | None = None, body: Any = None, push: Push | None = None) -> Reply:
        """As A's admin on A's domain unless told otherwise. ``push``: what the WeChat platform
        sends, its signed query string and its XML body."""
        side = side or self.a
        kwargs: dict[str, Any] = {} if body is None else {"json_body": body}
        if push is not None:
            path += "?" + urlencode(push.query)
            kwargs.update(data=push.body or None, headers={"Content-Type": "text/xml"})
        return await self.http(method, path, host=host or side.domain,
                               token=token if token is not None else side.admin_token, **kwargs)


async def _login(http: Http, domain: str, email: str) -> str:
    reply = await http("POST", "/api/v1/auth/login", host=domain, json_body={"email": email, "password": PASSWORD})
    assert reply.status == 200, reply
    return str(reply.body["token"])


async def _customer_writes(http: Http, domain: str, text: str, name: str) -> str:
    reply = await http("POST", "/webchat/messages", host=domain,
                       json_body={"client_id": uuid.uuid4().hex, "text": text, "name": name})
    assert reply.status == 201, reply
    return str(reply.body["visitor_id"])


async def _ticket_of(http: Http, side_domain: str, token: str, text: str) -> dict[str, Any]:
    reply = await http("GET", "/api/v1/tickets", host=side_domain, token=token)
    assert reply.status == 200, reply
    for ticket in reply.body["tickets"]:
        detail = await http("GET", f"/api/v1/tickets/{ticket['id']}", host=side_domain, token=token)
        if any(m["text"] == text for m in detail.body["messages"]):
            return dict(ticket)
    raise AssertionError(f"no ticket with {text!r}")


async def _all_delivered(http: Http, domain: str, token: str, ticket_id: int) -> bool:
    detail = await http("GET", f"/api/v1/tickets/{ticket_id}", host=domain, token=token)
    return all(m["delivery_state"] == "sent" for m in detail.body["messages"] if m["direction"] == "outbound")


async def _routed(db: Database, tenant_id: int) -> bool:
    """No ticket of the tenant is waiting for the (background) router to look at it."""
    async with db.read() as session:
        pending = (await session.execute(select(Ticket.id).where(
            Ticket.tenant_id == tenant_id, Ticket.routing_state == "pending"))).first()
    return pending is None


def wechat_body(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "app_id": new_app_id(), "secret": "s3cret" + new_app_id(), "token": "tok" + name,
            "aes_key": new_aes_key(), "mode": "safe", **extra}


async def _wechat_account(http: Http, db: Database, wechat_api: StandIn, t: TenantInfo, token: str,
                          name: str) -> tuple[dict[str, Any], str, Pusher]:
    """An Official Account made through the admin API, a customer's image kept for it (as the
    connector keeps it after fetching it once; the platform's media ids are per account), and
    the platform's side of its pushes."""
    body = wechat_body(name)
    made = await http("POST", "/api/v1/wechat/accounts", host=t.domain, token=token, json_body=body)
    assert made.status == 201, made
    wechat_api.secrets[body["app_id"]] = body["secret"]
    media_id = f"MEDIA_{name}_{uuid.uuid4().hex[:12]}"
    async with db.session(t.id) as session:
        data = f"{name}'s customer photo".encode()
        session.add(WeChatMedia(tenant_id=t.id, account_id=made.body["account"]["id"], media_id=media_id,
                                content_type="image/jpeg", size=len(data), data=data))
    return dict(made.body["account"]), media_id, Pusher(body["app_id"], body["token"], body["aes_key"], body["mode"])


async def build_side(settings: Settings, server: Server, http: Http, db: Database, wechat_api: StandIn,
                     name: str, *, seats: int) -> Side:
    t = await make_tenant(settings, server, name=name)
    group_name = f"{name} support"
    group_id = await t.add_group(group_name)
    admin = await t.add_agent(role="admin", name=f"{name} admin")
    agent = await t.add_agent(role="agent", name=f"{name} agent", group_ids=[group_id])
    admin_token = await _login(http, t.domain, admin.email)
    agent_token = await _login(http, t.domain, agent.email)

    first = f"Hello from a customer of {name}"
    visitor_id = await _customer_writes(http, t.domain, first, f"{name} customer")
    ticket = await _ticket_of(http, t.domain, admin_token, first)
    open_id = int(ticket["id"])
    attachment = await _upload(http, t.domain, admin_token, f"{name} invoice.pdf", f"{name}'s invoice".encode())
    for method, path, body in [
        ("POST", f"/api/v1/tickets/{open_id}/transfer", {"agent_id": agent.id}),
        ("POST", f"/api/v1/tickets/{open_id}/messages", {"text": f"{name} internal note", "kind": "note"}),
        ("POST", f"/api/v1/tickets/{open_id}/messages", {"text": f"{name} answers", "kind": "reply",
                                                         "attachments": [attachment["id"]]}),
    ]:
        reply = await http(method, path, host=t.domain, token=admin_token, json_body=body)
        assert reply.status in (200, 201), reply

    second = f"Another customer of {name}"
    await _customer_writes(http, t.domain, second, f"{name} customer two")
    solved = await _ticket_of(http, t.domain, admin_token, second)
    reply = await http("POST", f"/api/v1/tickets/{solved['id']}/solve", host=t.domain, token=admin_token)
    assert reply.status == 200, reply

    # Routing configuration, and a ticket left waiting in the group's queue.
    rule_name = f"{name} refunds"
    rule = await http("POST", "/api/v1/routing/rules", host=t.domain, token=admin_token, json_body={
        "name": rule_name, "conditions": {"text_contains": ["refund"]}, "actions": {"priority": "high"}})
    assert rule.status == 201, rule
    policy = await http("POST", "/api/v1/sla/policies", host=t.domain, token=admin_token, json_body={
        "name": f"{name} SLA", "first_response": 3600, "resolution": 86400})
    assert policy.status == 201, policy
    reply = await http("PUT", "/api/v1/routing/settings", host=t.domain, token=admin_token,
                       json_body={"default_group_id": group_id})
    assert reply.status == 200, reply
    third = f"A refund, please ({name})"
    await _customer_writes(http, t.domain, third, f"{name} customer three")
    waiting = await _ticket_of(http, t.domain, admin_token, third)

    # Replies are delivered and tickets routed in the background; wait, so the rows are at rest
    # when they are compared.
    await eventually(lambda: _all_delivered(http, t.domain, admin_token, open_id))
    await eventually(lambda: _routed(db, t.id))
    wechat, media_id, oa = await _wechat_account(http, db, wechat_api, t, admin_token, name)
    kf = await make_kf_account(t, wechat_api)
    history = await http("GET", f"/webchat/history?visitor_id={visitor_id}", host=t.domain)
    [file_path] = [a["url"] for m in history.body["messages"] for a in m["attachments"]]
    mailbox, mail_message_id = await _mailbox_with_mail(http, server, t, admin_token, name)
    invoice = await open_billing(db, t.id, seats=seats)
    await _probed(db, t.id, down=f"{name} is down" if seats == 3 else None)
    xmpp = await http("POST", "/api/v1/xmpp/accounts", host=t.domain, token=admin_token, json_body={
        "kind": "client", "jid": f"help@xmpp.{t.domain}", "secret": f"{name} xmpp secret", "name": f"{name} chat"})
    assert xmpp.status == 201, xmpp
    workspace = await _workspace(http, db, t, admin_token, agent_token, name, agent)
    words = await http("PUT", "/api/v1/webchat/settings", host=t.domain, token=admin_token, json_body={
        "offline_message": {"en": f"{name} is away", "zh-CN": f"{name} 暂时不在"},
        "welcome": {"en": f"Hi from {name}"}})
    assert words.status == 200, words
    visitor_file = await _visitor_upload(http, t.domain, visitor_id, f"{name} photo.png")
    export = await _export_done(http, t.domain, admin_token, "/api/v1/exports", {})
    # The SLA sweeper has computed the deadlines of every ticket so far: rows at rest.
    await sla.sweep(server.app[HUB], read_seconds=None)
    return Side(t, admin, agent, group_id, group_name, admin_token, agent_token, open_id, int(solved["id"]),
                int(ticket["customer_id"]), visitor_id, int(rule.body["rule"]["id"]), rule_name, int(waiting["id"]),
                wechat, media_id, attachment, file_path, oa, kf, mailbox, mail_message_id, invoice,
                dict(xmpp.body["account"]), workspace, visitor_file, export,
                sla_policy_id=int(policy.body["policy"]["id"]))


async def _export_done(http: Http, domain: str, token: str, path: str, body: Any) -> dict[str, Any]:
    """An export started at ``path`` and waited for (rows at rest before they are compared)."""
    made = await http("POST", path, host=domain, token=token, **({} if body is None else {"json_body": body}))
    assert made.status == 202, made

    async def done() -> dict[str, Any] | None:
        got = await http("GET", f"/api/v1/exports/{made.body['export']['id']}", host=domain, token=token)
        return dict(got.body["export"]) if got.body["export"]["state"] == "done" else None

    return dict(await eventually(done))


async def _export_cells(w: World, export: dict[str, Any]) -> list[Any]:
    """Every cell of an export's file, fetched by its signed link on A's domain."""
    async with w.http.session.get(w.server.url + export["download_url"], headers={"Host": w.a.domain}) as resp:
        assert resp.status == 200, resp.status
        data = await resp.read()
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    try:
        return [v for sheet in book.worksheets for row in sheet.iter_rows(values_only=True) for v in row]
    finally:
        book.close()


async def _probed(db: Database, tenant_id: int, *, down: str | None) -> None:
    """The last hour's probes of the tenant (availability, #15): up throughout, or 10 minutes down
    with the cause ``down``."""
    now = datetime.now(UTC)
    start = max(now - timedelta(hours=1), now.replace(day=1, hour=0, minute=0, second=0, microsecond=0))
    probes = []
    for i in range(int((now - start) / timedelta(seconds=30))):
        failed = down is not None and i < 20
        probes.append(availability.Probe(tenant_id, "x-tenant", start + i * timedelta(seconds=30), not failed,
                                         down if failed else None))
    async with db.session() as session:
        await availability.record(session, probes)


async def _visitor_upload(http: Http, domain: str, visitor_id: str, name: str, data: bytes = PNG) -> dict[str, Any]:
    reply = await http("POST", "/webchat/attachments?" + urlencode({"visitor_id": visitor_id, "name": name}),
                       host=domain, data=data, headers={"Content-Type": "image/png"})
    assert reply.status == 201, reply
    return dict(reply.body["attachment"])


async def _workspace(http: Http, db: Database, t: TenantInfo, admin_token: str, agent_token: str, name: str,
                     agent: AgentInfo) -> dict[str, int]:
    """Two customers (of tickets made by hand) merged, canned replies, a macro, a mention."""
    async def call(method: str, path: str, body: Any, token: str = admin_token) -> dict[str, Any]:
        reply = await http(method, path, host=t.domain, token=token, json_body=body)
        assert reply.status in (200, 201), reply
        return dict(reply.body)

    left = (await call("POST", "/api/v1/tickets", {"customer": {"name": f"{name} left"}, "text": "left"}))["ticket"]
    right = (await call("POST", "/api/v1/tickets", {"customer": {"name": f"{name} right"}, "text": "right"}))["ticket"]
    # Solved, so they wait in no queue (the tests of live events count on the agent's free capacity).
    for ticket in (left, right):
        await call("PATCH", f"/api/v1/tickets/{ticket['id']}", {"status": "solved"})
    merge = await call("POST", f"/api/v1/customers/{left['customer_id']}/merge", {"other_id": right["customer_id"]})
    canned = await call("POST", "/api/v1/canned-replies", {"scope": "tenant", "shortcut": f"{name.lower()}-hello",
                                                           "title": f"{name} hello", "text": "Hi {{customer.name}}"})
    await call("POST", "/api/v1/canned-replies", {"shortcut": "mine", "title": f"{name} own", "text": "mine"},
               token=agent_token)
    macro = await call("POST", "/api/v1/macros", {"name": f"{name} macro", "actions": [
        {"type": "add_tags", "tags": [f"{name.lower()}-macro"]}]})
    await call("POST", f"/api/v1/tickets/{left['id']}/messages", {"kind": "note",
                                                               "text": f"@[{agent.name}](agent:{agent.id}) look"})
    await eventually(lambda: _routed(db, t.id))
    return {"merge_id": int(merge["merge"]["id"]), "canned_id": int(canned["canned_reply"]["id"]),
            "macro_id": int(macro["macro"]["id"]), "left_customer": int(left["customer_id"]),
            "right_customer": int(right["customer_id"]), "left_ticket": int(left["id"])}


async def _mailbox_with_mail(http: Http, server: Server, t: TenantInfo, token: str, name: str
                             ) -> tuple[dict[str, Any], int]:
    """A support address, and a customer's mail to it over the hub's own SMTP receiver."""
    made = await http("POST", "/api/v1/email/mailboxes", host=t.domain, token=token,
                      json_body={"address": f"help@{t.domain}", "name": f"{name} help"})
    assert made.status == 201, made
    subject = f"Mail for {name}"
    raw = email_mail(sender=f"buyer@{name.lower()}-customers.example.org", to=f"help@{t.domain}", subject=subject,
                     text=f"Where is my {name} order?")
    code, _ = await smtp_send(server.smtp_port, raw, mail_from=f"buyer@{name.lower()}-customers.example.org",
                              rcpt=[f"help@{t.domain}"])
    assert code == 250
    async def made_ticket() -> dict[str, Any] | None:
        try:
            return await _ticket_of(http, t.domain, token, f"Where is my {name} order?")
        except AssertionError:
            return None

    mailed = await eventually(made_ticket)
    detail = await http("GET", f"/api/v1/tickets/{mailed['id']}", host=t.domain, token=token)
    return dict(made.body["mailbox"]), int(detail.body["messages"][0]["id"])


async def _upload(http: Http, domain: str, token: str, name: str, data: bytes) -> dict[str, Any]:
    reply = await http("POST", "/api/v1/attachments?" + urlencode({"name": name}), host=domain, token=token,
                       data=data, headers={"Content-Type": "application/pdf"})
    assert reply.status == 201, reply
    return dict(reply.body["attachment"])


@pytest.fixture(scope="module")
async def world(settings: Settings, server: Server, wechat_api: StandIn) -> AsyncIterator[World]:
    db = Database(settings.database_url)
    async with aiohttp.ClientSession() as session:
        http = Http(server.url, session)
        # Different seats, so the two tenants' billing differs in every figure.
        a = await build_side(settings, server, http, db, wechat_api, "Acme", seats=2)
        b = await build_side(settings, server, http, db, wechat_api, "Globex", seats=3)
        w = World(a, b, http, db, server, wechat_api)
        for side in (a, b):
            side.csat_token = await _survey_token(w, side)
        yield w
        await a.info.close()
        await b.info.close()
    await db.dispose()


# --- the oracle -----------------------------------------------------------------------------------
async def ids_of(db: Database, model: Any, tenant_id: int) -> set[int]:
    async with db.read() as session:
        return set((await session.execute(select(model.id).where(model.tenant_id == tenant_id))).scalars())


def assert_not_found(reply: Reply, code: str) -> None:
    assert_error(reply, 404, code)


# --- how to call each operation with B's ids --------------------------------------------------------
Probe = Callable[[World], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    probe: Probe
    # A body valid in shape, for the checks every operation gets (A's token on B's domain, any
    # token on an unknown domain); the path is the operation's own, filled with B's ids.
    body: Callable[[World], Any] | None = None


async def probe_login(w: World) -> None:
    creds_a = {"email": w.a.admin.email, "password": PASSWORD}
    creds_b = {"email": w.b.admin.email, "password": PASSWORD}
    assert_error(await w.call("POST", "/api/v1/auth/login", host=w.b.domain, token="", body=creds_a),
                 401, "bad_credentials")
    assert_error(await w.call("POST", "/api/v1/auth/login", host=w.a.domain, token="", body=creds_b),
                 401, "bad_credentials")
    # The same credentials signed in at home when the world was built: the refusals are about tenancy.


def probe_sign_out(path: str) -> Probe:
    async def probe(w: World) -> None:
        # Signing out on B's domain neither works nor revokes anything: the token still works at home.
        assert_error(await w.call("POST", path, host=w.b.domain), 401, "invalid_token")
        assert_error(await w.call("POST", path, host=w.a.domain, token=w.b.admin_token), 401, "invalid_token")
        assert (await w.call("GET", "/api/v1/me")).status == 200
        assert (await w.call("GET", "/api/v1/me", side=w.b)).status == 200
    return probe


async def probe_password(w: World) -> None:
    # A's token on B's domain, and B's token on A's, change no one's password (the rows are compared).
    change = {"current_password": PASSWORD, "new_password": "an0ther password"}
    assert_error(await w.call("PUT", "/api/v1/me/password", host=w.b.domain, body=change), 401, "invalid_token")
    assert_error(await w.call("PUT", "/api/v1/me/password", host=w.a.domain, token=w.b.admin_token, body=change),
                 401, "invalid_token")
    assert (await w.call("GET", "/api/v1/me", side=w.b)).status == 200


async def probe_me(w: World) -> None:
    me = await w.call("GET", "/api/v1/me")
    assert me.status == 200 and me.body["agent"]["id"] == w.a.admin.id, me
    assert_error(await w.call("GET", "/api/v1/me", host=w.b.domain), 401, "invalid_token")


async def probe_presence(w: World) -> None:
    assert_error(await w.call("PUT", "/api/v1/me/presence", host=w.b.domain, body={"status": "online"}),
                 401, "invalid_token")
    assert_error(await w.call("PUT", "/api/v1/me/presence", token=w.b.agent_token, body={"status": "online"}),
                 401, "invalid_token")


async def probe_list_agents(w: World) -> None:
    reply = await w.call("GET", "/api/v1/agents")
    assert reply.status == 200, reply
    listed = {a["id"] for a in reply.body["agents"]}
    assert listed == await ids_of(w.db, Agent, w.a.info.id)
    assert not listed & await ids_of(w.db, Agent, w.b.info.id)
    assert not {g for a in reply.body["agents"] for g in a["group_ids"]} & {w.b.group_id}


async def probe_create_agent(w: World) -> None:
    def new(**extra: Any) -> dict[str, Any]:
        return {"email": f"new-{uuid.uuid4().hex[:8]}@{w.a.domain}", "name": "New", "password": PASSWORD, **extra}

    assert_not_found(await w.call("POST", "/api/v1/agents", body=new(group_ids=[w.b.group_id])), "group_not_found")
    assert_not_found(await w.call("POST", "/api/v1/agents", body=new(group_ids=[w.a.group_id, w.b.group_id])),
                     "group_not_found")
    # B's e-mail means nothing in A: no conflict, and the new seat (in A's group) is A's.
    made = await w.call("POST", "/api/v1/agents", body={**new(group_ids=[w.a.group_id]), "email": w.b.agent.email})
    assert made.status == 201 and made.body["agent"]["group_ids"] == [w.a.group_id], made
    assert made.body["agent"]["id"] in await ids_of(w.db, Agent, w.a.info.id)


async def probe_create_agents(w: World) -> None:
    def new(**extra: Any) -> dict[str, Any]:
        return {"email": f"new-{uuid.uuid4().hex[:8]}@{w.a.domain}", "name": "New", "password": PASSWORD, **extra}

    # One of B's groups anywhere in the batch refuses it whole: nothing is added.
    before = await ids_of(w.db, Agent, w.a.info.id)
    assert_not_found(await w.call("POST", "/api/v1/agents/batch",
                                  body={"agents": [new(), new(group_ids=[w.b.group_id])]}), "group_not_found")
    assert await ids_of(w.db, Agent, w.a.info.id) == before
    # B's e-mails mean nothing in A.
    made = await w.call("POST", "/api/v1/agents/batch", body={"agents": [
        {**new(group_ids=[w.a.group_id]), "email": w.b.admin.email}, new()]})
    assert made.status == 201, made
    assert {a["id"] for a in made.body["agents"]} <= await ids_of(w.db, Agent, w.a.info.id)


async def probe_remove_agents(w: World) -> None:
    spare = await w.a.info.add_agent(role="agent")
    path = "/api/v1/agents/batch-remove"
    for ids in ([w.b.agent.id], [w.b.admin.id], [spare.id, w.b.agent.id], [MISSING_SMALL]):
        assert_not_found(await w.call("POST", path, body={"agent_ids": ids}), "agent_not_found")
    # Nothing of the refused batches was applied: A's seat is still there, and goes now.
    ok = await w.call("POST", path, body={"agent_ids": [spare.id]})
    assert ok.status == 200 and ok.body["removed"] == [spare.id], ok


async def probe_notice(w: World) -> None:
    # Only an owner gives notice, and only on their own tenant's contract (the path names none).
    ends_on = (datetime.now(UTC).date() + timedelta(days=40)).isoformat()
    assert_error(await w.call("POST", "/api/v1/billing/notice", body={"ends_on": ends_on}), 403, "owner_only")
    owner = await w.a.info.add_agent(role="owner")
    token = await _login(w.http, w.a.domain, owner.email)
    assert_error(await w.call("POST", "/api/v1/billing/notice", token=token, host=w.b.domain,
                              body={"ends_on": ends_on}), 401, "invalid_token")


async def probe_delete_tenant(w: World) -> None:
    # Only an owner deletes, and only their own tenant (the path names none; the confirmation is
    # the tenant's own primary domain: another tenant's is a mismatch).
    assert_error(await w.call("POST", "/api/v1/tenant/delete", body={"confirm": w.a.domain}), 403, "owner_only")
    owner = await w.a.info.add_agent(role="owner")
    token = await _login(w.http, w.a.domain, owner.email)
    assert_error(await w.call("POST", "/api/v1/tenant/delete", token=token, body={"confirm": w.b.domain}), 422,
                 "confirmation_mismatch")
    assert_error(await w.call("POST", "/api/v1/tenant/delete", token=token, host=w.b.domain,
                              body={"confirm": w.b.domain}), 401, "invalid_token")


async def probe_erase_customer(w: World) -> None:
    # B's customers are missing customers to A, whatever is typed to confirm.
    b_ids = [w.b.customer_id, w.b.workspace["left_customer"]]
    for confirm in ("0", str(w.b.customer_id)):
        await _not_found_like_a_missing(w, "POST", "/api/v1/customers/{}/erase", b_ids, MISSING_TICKET,
                                        "customer_not_found", {"confirm": confirm})
    assert_error(await w.call("POST", f"/api/v1/customers/{w.a.customer_id}/erase",
                              body={"confirm": str(w.b.customer_id)}), 422, "confirmation_mismatch")


async def probe_list_groups(w: World) -> None:
    reply = await w.call("GET", "/api/v1/groups")
    assert reply.status == 200, reply
    listed = {g["id"] for g in reply.body["groups"]}
    assert listed == await ids_of(w.db, Group, w.a.info.id)
    assert w.b.group_id not in listed and w.b.group_name not in {g["name"] for g in reply.body["groups"]}


async def probe_create_group(w: World) -> None:
    # A name B uses is free in A (and its use in B is not revealed by a conflict).
    made = await w.call("POST", "/api/v1/groups", body={"name": w.b.group_name})
    assert made.status == 201, made
    assert made.body["group"]["id"] in await ids_of(w.db, Group, w.a.info.id)


async def probe_list_tickets(w: World) -> None:
    b_tickets = await ids_of(w.db, Ticket, w.b.info.id)
    a_tickets = await ids_of(w.db, Ticket, w.a.info.id)
    for query in ("", "?status=new,open,pending,solved,closed", f"?assignee_id={w.b.agent.id}",
                  f"?before_id={max(b_tickets) + 1}", "?unassigned=1", "?view=all", "?view=unassigned",
                  "?view=solved", "?view=pending", "?view=mine", f"?group_id={w.b.group_id}", "?channel=webchat",
                  "?channel=email", "?priority=high"):
        reply = await w.call("GET", "/api/v1/tickets" + query)
        assert reply.status == 200, reply
        listed = {t["id"] for t in reply.body["tickets"]}
        assert listed <= a_tickets and not listed & b_tickets, (query, listed)
    everything = await w.call("GET", "/api/v1/tickets")
    assert {w.a.open_ticket, w.a.solved_ticket} <= {t["id"] for t in everything.body["tickets"]}
    assert (await w.call("GET", f"/api/v1/tickets?assignee_id={w.b.agent.id}")).body["tickets"] == []
    assert (await w.call("GET", f"/api/v1/tickets?group_id={w.b.group_id}")).body["tickets"] == []


async def probe_create_ticket(w: World) -> None:
    base = {"text": "Called about an invoice"}
    new_customer = {"customer": {"name": "Walk-in"}}
    cases = [
        ({**base, "customer_id": w.b.customer_id}, "customer_not_found"),
        ({**base, "customer_id": w.b.customer_id, "channel": "webchat"}, "customer_not_found"),
        ({**base, **new_customer, "assignee_id": w.b.agent.id}, "agent_not_found"),
        ({**base, **new_customer, "group_id": w.b.group_id}, "group_not_found"),
        ({**base, "customer_id": w.a.customer_id, "assignee_id": w.b.agent.id}, "agent_not_found"),
        ({**base, "customer_id": w.a.customer_id, "group_id": w.b.group_id}, "group_not_found"),
    ]
    before = await ids_of(w.db, Ticket, w.a.info.id)
    for body, code in cases:
        assert_not_found(await w.call("POST", "/api/v1/tickets", body=body), code)
    assert await ids_of(w.db, Ticket, w.a.info.id) == before, "a refused ticket was stored"
    # The same bodies with A's own ids are accepted: the refusals above are about tenancy.
    ok = await w.call("POST", "/api/v1/tickets", body={**base, "customer_id": w.a.customer_id, "channel": "webchat",
                                                        "assignee_id": w.a.agent.id, "group_id": w.a.group_id})
    assert ok.status == 201, ok
    assert ok.body["ticket"]["customer_id"] == w.a.customer_id


async def _not_found_like_a_missing(w: World, method: str, template: str, b_ids: list[Any], missing: Any,
                                    code: str, body: Any = None, token: str | None = None, host: str | None = None,
                                    push: Push | None = None) -> None:
    """B's ids answer exactly as an id that exists nowhere: nothing to tell them apart."""
    absent = await w.call(method, template.format(missing), body=body, token=token, host=host, push=push)
    assert_not_found(absent, code)
    for b_id in b_ids:
        reply = await w.call(method, template.format(b_id), body=body, token=token, host=host, push=push)
        assert_not_found(reply, code)
        assert reply.body["error"]["message"] == absent.body["error"]["message"].replace(str(missing), str(b_id))


async def _not_found_like_a_missing_ticket(w: World, method: str, suffix: str, body: Any = None) -> None:
    await _not_found_like_a_missing(w, method, "/api/v1/tickets/{}" + suffix,
                                    [w.b.open_ticket, w.b.solved_ticket, w.b.waiting_ticket], MISSING_TICKET,
                                    "ticket_not_found", body)


async def probe_get_ticket(w: World) -> None:
    await _not_found_like_a_missing_ticket(w, "GET", "")
    # B's own agent, on A's domain with B's token, gets nothing either.
    assert_error(await w.call("GET", f"/api/v1/tickets/{w.b.open_ticket}", token=w.b.agent_token),
                 401, "invalid_token")
    ok = await w.call("GET", f"/api/v1/tickets/{w.a.open_ticket}")
    assert ok.status == 200 and len(ok.body["messages"]) == 3, ok


async def probe_update_ticket(w: World) -> None:
    for body in ({"status": "pending"}, {"status": "closed"}, {"priority": "urgent"}, {"tags": ["x"]},
                 {"add_tags": ["vip"]}, {"remove_tags": ["x"]}, {"subject": "mine now"}):
        await _not_found_like_a_missing_ticket(w, "PATCH", "", body)
    ok = await w.call("PATCH", f"/api/v1/tickets/{w.a.open_ticket}", body={"priority": "high"})
    assert ok.status == 200 and ok.body["ticket"]["priority"] == "high", ok


async def probe_add_message(w: World) -> None:
    for kind in ("reply", "note"):
        await _not_found_like_a_missing_ticket(w, "POST", "/messages", {"text": "hi from A", "kind": kind})
        await _not_found_like_a_missing_ticket(w, "POST", "/messages", {"kind": kind,
                                                                        "attachments": [w.a.attachment_id]})
    # B's file on A's own ticket is a file that exists nowhere, and nothing is stored.
    path = f"/api/v1/tickets/{w.a.open_ticket}/messages"
    before = await ids_of(w.db, Message, w.a.info.id)
    for kind in ("reply", "note"):
        absent = await w.call("POST", path, body={"kind": kind, "attachments": [MISSING_TICKET]})
        assert_not_found(absent, "attachment_not_found")
        for ids in ([w.b.attachment_id], [w.a.attachment_id, w.b.attachment_id]):
            reply = await w.call("POST", path, body={"text": "with B's file", "kind": kind, "attachments": ids})
            assert_not_found(reply, "attachment_not_found")
            assert reply.body["error"]["message"] == absent.body["error"]["message"].replace(
                str(MISSING_TICKET), str(w.b.attachment_id))
    assert await ids_of(w.db, Message, w.a.info.id) == before
    ok = await w.call("POST", f"/api/v1/tickets/{w.a.open_ticket}/messages", body={"text": "A's note", "kind": "note"})
    assert ok.status == 201, ok


async def probe_transfer(w: World) -> None:
    for target in ({"agent_id": w.a.agent.id}, {"group_id": w.a.group_id}, {"agent_id": w.b.agent.id},
                   {"group_id": w.b.group_id}):
        await _not_found_like_a_missing_ticket(w, "POST", "/transfer", target)
    path = f"/api/v1/tickets/{w.a.open_ticket}/transfer"
    assert_not_found(await w.call("POST", path, body={"agent_id": w.b.agent.id}), "agent_not_found")
    assert_not_found(await w.call("POST", path, body={"agent_id": w.b.admin.id}), "agent_not_found")
    assert_not_found(await w.call("POST", path, body={"group_id": w.b.group_id}), "group_not_found")
    detail = await w.call("GET", f"/api/v1/tickets/{w.a.open_ticket}")
    assert detail.body["ticket"]["assignee_id"] == w.a.agent.id
    assert detail.body["ticket"]["group_id"] in (None, w.a.group_id)
    ok = await w.call("POST", path, body={"agent_id": w.a.agent.id})
    assert ok.status == 200, ok


async def probe_solve(w: World) -> None:
    await _not_found_like_a_missing_ticket(w, "POST", "/solve")
    ok = await w.call("POST", f"/api/v1/tickets/{w.a.open_ticket}/solve")
    assert ok.status == 200 and ok.body["ticket"]["status"] == "solved", ok
    back = await w.call("POST", f"/api/v1/tickets/{w.a.open_ticket}/reopen")
    assert back.status == 200 and back.body["ticket"]["status"] == "open", back


async def probe_reopen(w: World) -> None:
    await _not_found_like_a_missing_ticket(w, "POST", "/reopen")
    ok = await w.call("POST", f"/api/v1/tickets/{w.a.solved_ticket}/reopen")
    assert ok.status == 200 and ok.body["ticket"]["status"] == "open", ok
    back = await w.call("POST", f"/api/v1/tickets/{w.a.solved_ticket}/solve")
    assert back.status == 200, back


async def probe_list_rules(w: World) -> None:
    reply = await w.call("GET", "/api/v1/routing/rules")
    assert reply.status == 200, reply
    listed = {r["id"] for r in reply.body["rules"]}
    assert w.a.rule_id in listed and listed <= await ids_of(w.db, RoutingRule, w.a.info.id)
    assert w.b.rule_id not in listed and w.b.rule_name not in {r["name"] for r in reply.body["rules"]}


async def probe_create_rule(w: World) -> None:
    def rule(**actions: Any) -> dict[str, Any]:
        return {"name": f"rule {uuid.uuid4().hex[:6]}", "actions": actions}

    assert_not_found(await w.call("POST", "/api/v1/routing/rules", body=rule(group_id=w.b.group_id)),
                     "group_not_found")
    # B's rule name is free in A.
    made = await w.call("POST", "/api/v1/routing/rules", body={**rule(group_id=w.a.group_id), "name": w.b.rule_name})
    assert made.status == 201, made
    await w.call("DELETE", f"/api/v1/routing/rules/{made.body['rule']['id']}")


async def probe_get_rule(w: World) -> None:
    await _not_found_like_a_missing(w, "GET", "/api/v1/routing/rules/{}", [w.b.rule_id], MISSING_SMALL,
                                    "rule_not_found")
    assert (await w.call("GET", f"/api/v1/routing/rules/{w.a.rule_id}")).status == 200


async def probe_update_rule(w: World) -> None:
    for body in ({"enabled": False}, {"name": "taken over"}, {"actions": {"group_id": w.a.group_id}}):
        await _not_found_like_a_missing(w, "PATCH", "/api/v1/routing/rules/{}", [w.b.rule_id], MISSING_SMALL,
                                        "rule_not_found", body)
    path = f"/api/v1/routing/rules/{w.a.rule_id}"
    assert_not_found(await w.call("PATCH", path, body={"actions": {"group_id": w.b.group_id}}), "group_not_found")
    assert (await w.call("PATCH", path, body={"enabled": True})).status == 200


async def probe_delete_rule(w: World) -> None:
    await _not_found_like_a_missing(w, "DELETE", "/api/v1/routing/rules/{}", [w.b.rule_id], MISSING_SMALL,
                                    "rule_not_found")
    made = await w.call("POST", "/api/v1/routing/rules", body={"name": "short-lived", "actions": {"priority": "low"}})
    assert made.status == 201, made
    assert (await w.call("DELETE", f"/api/v1/routing/rules/{made.body['rule']['id']}")).status == 200


async def probe_reorder_rules(w: World) -> None:
    mine = sorted(await ids_of(w.db, RoutingRule, w.a.info.id))
    for ids in ([w.b.rule_id], [*mine, w.b.rule_id], [w.b.rule_id, *mine[1:]]):
        assert_error(await w.call("PUT", "/api/v1/routing/rules/order", body={"ids": ids}), 422, "invalid_order")
    ok = await w.call("PUT", "/api/v1/routing/rules/order", body={"ids": mine})
    assert ok.status == 200 and [r["id"] for r in ok.body["rules"]] == mine, ok


async def probe_get_settings(w: World) -> None:
    reply = await w.call("GET", "/api/v1/routing/settings")
    assert reply.status == 200 and reply.body["settings"]["default_group_id"] == w.a.group_id, reply


async def probe_put_settings(w: World) -> None:
    assert_not_found(await w.call("PUT", "/api/v1/routing/settings", body={"default_group_id": w.b.group_id}),
                     "group_not_found")
    ok = await w.call("PUT", "/api/v1/routing/settings", body={"default_group_id": w.a.group_id})
    assert ok.status == 200, ok


async def probe_update_group(w: World) -> None:
    for body in ({"name": "taken over"}, {"strategy": "round_robin"}, {"clear_overflow": True}):
        await _not_found_like_a_missing(w, "PATCH", "/api/v1/groups/{}", [w.b.group_id], MISSING_SMALL,
                                        "group_not_found", body)
    path = f"/api/v1/groups/{w.a.group_id}"
    assert_not_found(await w.call("PATCH", path, body={"overflow_group_id": w.b.group_id,
                                                       "overflow_after_seconds": 60}), "group_not_found")
    assert (await w.call("PATCH", path, body={"strategy": "least_busy"})).status == 200


async def probe_set_members(w: World) -> None:
    await _not_found_like_a_missing(w, "PUT", "/api/v1/groups/{}/members", [w.b.group_id], MISSING_SMALL,
                                    "group_not_found", {"agent_ids": [w.a.agent.id]})
    path = f"/api/v1/groups/{w.a.group_id}/members"
    for agent_ids in ([w.b.agent.id], [w.a.agent.id, w.b.admin.id]):
        assert_not_found(await w.call("PUT", path, body={"agent_ids": agent_ids}), "agent_not_found")
    ok = await w.call("PUT", path, body={"agent_ids": [w.a.agent.id]})
    assert ok.status == 200 and ok.body["agent_ids"] == [w.a.agent.id], ok


async def probe_update_agent(w: World) -> None:
    for body in ({"capacity": 1}, {"active": False}, {"role": "admin"}, {"group_ids": [w.a.group_id]}):
        await _not_found_like_a_missing(w, "PATCH", "/api/v1/agents/{}", [w.b.agent.id, w.b.admin.id],
                                        MISSING_SMALL, "agent_not_found", body)
    path = f"/api/v1/agents/{w.a.agent.id}"
    assert_not_found(await w.call("PATCH", path, body={"group_ids": [w.b.group_id]}), "group_not_found")
    ok = await w.call("PATCH", path, body={"group_ids": [w.a.group_id]})
    assert ok.status == 200 and ok.body["agent"]["group_ids"] == [w.a.group_id], ok


async def probe_get_customer(w: World) -> None:
    await _not_found_like_a_missing(w, "GET", "/api/v1/customers/{}", [w.b.customer_id], MISSING_TICKET,
                                    "customer_not_found")
    ok = await w.call("GET", f"/api/v1/customers/{w.a.customer_id}")
    assert ok.status == 200 and ok.body["customer"]["identities"] == [
        {"channel": "webchat", "external_id": w.a.visitor_id}], ok


async def probe_update_customer(w: World) -> None:
    for body in ({"tags": ["vip"]}, {"name": "taken over"}, {"attributes": {"vip": True}}):
        await _not_found_like_a_missing(w, "PATCH", "/api/v1/customers/{}", [w.b.customer_id], MISSING_TICKET,
                                        "customer_not_found", body)
    assert (await w.call("PATCH", f"/api/v1/customers/{w.a.customer_id}", body={"tags": ["regular"]})).status == 200


async def probe_ticket_counts(w: World) -> None:
    # A's admin sees every ticket of A: the counts are A's tickets by status, none of B's.
    async with w.db.read() as session:
        rows = (await session.execute(select(Ticket.status, Ticket.assignee_id, Ticket.routing_state).where(
            Ticket.tenant_id == w.a.info.id))).all()
    unsolved = [r for r in rows if r.status in ("new", "open", "pending")]
    expected = {"mine": sum(1 for r in unsolved if r.assignee_id == w.a.admin.id),
                "unassigned": sum(1 for r in unsolved if r.assignee_id is None
                                  and r.routing_state in ("pending", "queued")),
                "all": len(unsolved), "pending": sum(1 for r in rows if r.status == "pending"),
                "solved": sum(1 for r in rows if r.status == "solved")}
    reply = await w.call("GET", "/api/v1/tickets/counts")
    assert reply.status == 200 and reply.body["counts"] == expected, (reply, expected)
    agent = await w.call("GET", "/api/v1/tickets/counts", token=w.a.agent_token)
    assert agent.status == 200 and "all" not in agent.body["counts"], agent


async def probe_search(w: World) -> None:
    a_tickets, b_tickets = await ids_of(w.db, Ticket, w.a.info.id), await ids_of(w.db, Ticket, w.b.info.id)
    # Every text of B's (its customers' messages, names and mail, its agents' notes and answers, its
    # visitor's id) finds nothing in A; A's own do.
    for token in (w.a.admin_token, w.a.agent_token):
        for q in ("globex", "Globex customer", "Where is my Globex order", "Globex internal note", w.b.visitor_id,
                  "globex-customers.example.org"):
            reply = await w.call("GET", "/api/v1/search?" + urlencode({"q": q}), token=token)
            assert reply.status == 200 and reply.body["results"] == [], (q, reply)
    mine = await w.call("GET", "/api/v1/search?q=acme")
    assert mine.status == 200 and mine.body["results"], mine
    assert {r["ticket_id"] for r in mine.body["results"]} <= a_tickets
    # A cursor past all of B's documents still reads only A's.
    reply = await w.call("GET", f"/api/v1/search?q=customer&before={10**12}&limit=50")
    assert reply.status == 200, reply
    found = {r["ticket_id"] for r in reply.body["results"]}
    assert found and found <= a_tickets and not found & b_tickets
    assert "Globex" not in json.dumps(reply.body)


async def probe_queue(w: World) -> None:
    b_tickets = await ids_of(w.db, Ticket, w.b.info.id)
    b_queue = await w.call("GET", "/api/v1/queue", side=w.b)
    assert w.b.waiting_ticket in {t["id"] for t in b_queue.body["queue"]}, "B's own queue shows its ticket"
    for query in ("", f"?group_id={w.a.group_id}", f"?group_id={w.b.group_id}"):
        reply = await w.call("GET", "/api/v1/queue" + query)
        assert reply.status == 200, reply
        assert not {t["id"] for t in reply.body["queue"]} & b_tickets, query
    assert w.a.waiting_ticket in {t["id"] for t in (await w.call("GET", "/api/v1/queue")).body["queue"]}
    assert (await w.call("GET", f"/api/v1/queue?group_id={w.b.group_id}")).body["queue"] == []


async def probe_claim(w: World) -> None:
    await _not_found_like_a_missing_ticket(w, "POST", "/claim")
    assert_not_found(await w.call("POST", f"/api/v1/tickets/{w.b.waiting_ticket}/claim", token=w.a.agent_token),
                     "ticket_not_found")


async def probe_routing_history(w: World) -> None:
    await _not_found_like_a_missing_ticket(w, "GET", "/routing")
    ok = await w.call("GET", f"/api/v1/tickets/{w.a.waiting_ticket}/routing")
    assert ok.status == 200 and ok.body["decisions"], ok


# --- email mailboxes and originals -----------------------------------------------------------------------------
async def probe_list_mailboxes(w: World) -> None:
    reply = await w.call("GET", "/api/v1/email/mailboxes")
    assert reply.status == 200, reply
    assert {m["id"] for m in reply.body["mailboxes"]} == await ids_of(w.db, EmailMailbox, w.a.info.id)
    assert w.b.mailbox["address"] not in json.dumps(reply.body)


async def probe_create_mailbox(w: World) -> None:
    # An address is one mailbox of the whole hub (a mail's recipient names its tenant): B's is
    # taken, and saying so names nothing of B.
    taken = await w.call("POST", "/api/v1/email/mailboxes", body={"address": w.b.mailbox["address"]})
    error = assert_error(taken, 409, "address_taken")
    assert w.b.domain.split(".")[0] not in error["message"].replace(w.b.mailbox["address"], "")
    made = await w.call("POST", "/api/v1/email/mailboxes", body={"address": f"sales@{w.a.domain}"})
    assert made.status == 201, made
    assert made.body["mailbox"]["id"] in await ids_of(w.db, EmailMailbox, w.a.info.id)
    assert (await w.call("DELETE", f"/api/v1/email/mailboxes/{made.body['mailbox']['id']}")).status == 200


async def probe_get_mailbox(w: World) -> None:
    await _not_found_like_a_missing(w, "GET", "/api/v1/email/mailboxes/{}", [w.b.mailbox["id"]], MISSING_SMALL,
                                    "mailbox_not_found")
    ok = await w.call("GET", f"/api/v1/email/mailboxes/{w.a.mailbox['id']}")
    assert ok.status == 200 and ok.body["mailbox"]["address"] == w.a.mailbox["address"], ok


async def probe_update_mailbox(w: World) -> None:
    for body in ({"name": "taken over"}, {"active": False}, {"smtp": {"host": "evil.example.com", "password": "x"}},
                 {"imap": {"host": "evil.example.com", "username": "u", "password": "p"}}):
        await _not_found_like_a_missing(w, "PATCH", "/api/v1/email/mailboxes/{}", [w.b.mailbox["id"]],
                                        MISSING_SMALL, "mailbox_not_found", body)
    ok = await w.call("PATCH", f"/api/v1/email/mailboxes/{w.a.mailbox['id']}", body={"name": "Acme help"})
    assert ok.status == 200 and ok.body["mailbox"]["name"] == "Acme help", ok


async def probe_delete_mailbox(w: World) -> None:
    await _not_found_like_a_missing(w, "DELETE", "/api/v1/email/mailboxes/{}", [w.b.mailbox["id"]], MISSING_SMALL,
                                    "mailbox_not_found")


async def probe_mail_original(w: World) -> None:
    for token in (w.a.admin_token, w.a.agent_token):
        await _not_found_like_a_missing(w, "GET", "/api/v1/email/messages/{}/original", [w.b.mail_message_id],
                                        MISSING_TICKET, "original_not_found", token=token)
    ok = await w.call("GET", f"/api/v1/email/messages/{w.a.mail_message_id}/original", token=w.a.agent_token)
    assert ok.status == 200 and "Where is my Acme order?" in ok.body["original"]["text"], ok


# --- XMPP accounts ---------------------------------------------------------------------------------------------
async def probe_list_xmpp_accounts(w: World) -> None:
    reply = await w.call("GET", "/api/v1/xmpp/accounts")
    assert reply.status == 200, reply
    assert {a["id"] for a in reply.body["accounts"]} == await ids_of(w.db, XmppAccount, w.a.info.id)
    assert w.b.xmpp["jid"] not in json.dumps(reply.body) and "secret" not in json.dumps(reply.body).replace(
        "secret_set", "")


async def probe_create_xmpp_account(w: World) -> None:
    # A JID is one account of the whole hub: B's is taken, and saying so names nothing else of B.
    taken = await w.call("POST", "/api/v1/xmpp/accounts", body={"kind": "client", "jid": w.b.xmpp["jid"],
                                                                "secret": "x"})
    error = assert_error(taken, 409, "jid_taken")
    assert w.b.info.domain not in error["message"].replace(w.b.xmpp["jid"], "")
    made = await w.call("POST", "/api/v1/xmpp/accounts", body={"kind": "component", "jid": f"chat.{w.a.domain}",
                                                               "secret": "x"})
    assert made.status == 201, made
    assert made.body["account"]["id"] in await ids_of(w.db, XmppAccount, w.a.info.id)
    assert (await w.call("DELETE", f"/api/v1/xmpp/accounts/{made.body['account']['id']}")).status == 200


async def probe_get_xmpp_account(w: World) -> None:
    await _not_found_like_a_missing(w, "GET", "/api/v1/xmpp/accounts/{}", [w.b.xmpp["id"]], MISSING_SMALL,
                                    "xmpp_account_not_found")
    ok = await w.call("GET", f"/api/v1/xmpp/accounts/{w.a.xmpp['id']}")
    assert ok.status == 200 and ok.body["account"]["jid"] == w.a.xmpp["jid"], ok


async def probe_update_xmpp_account(w: World) -> None:
    for body in ({"name": "taken over"}, {"active": False}, {"host": "evil.example.com", "secret": "x"}):
        await _not_found_like_a_missing(w, "PATCH", "/api/v1/xmpp/accounts/{}", [w.b.xmpp["id"]], MISSING_SMALL,
                                        "xmpp_account_not_found", body)
    ok = await w.call("PATCH", f"/api/v1/xmpp/accounts/{w.a.xmpp['id']}", body={"name": "Acme chat"})
    assert ok.status == 200 and ok.body["account"]["name"] == "Acme chat", ok


async def probe_delete_xmpp_account(w: World) -> None:
    await _not_found_like_a_missing(w, "DELETE", "/api/v1/xmpp/accounts/{}", [w.b.xmpp["id"]], MISSING_SMALL,
                                    "xmpp_account_not_found")


# --- WeChat accounts and media ------------------------------------------------------------------------------
async def probe_list_wechat_accounts(w: World) -> None:
    reply = await w.call("GET", "/api/v1/wechat/accounts")
    assert reply.status == 200, reply
    listed = reply.body["accounts"]
    assert {a["id"] for a in listed} == await ids_of(w.db, WeChatAccount, w.a.info.id)
    assert w.a.account_id in {a["id"] for a in listed}
    assert not {a["id"] for a in listed} & await ids_of(w.db, WeChatAccount, w.b.info.id)
    shown = json.dumps(listed)
    assert w.b.key not in shown and w.b.wechat["app_id"] not in shown and w.b.domain not in shown


async def probe_create_wechat_account(w: World) -> None:
    # B's AppID is free in A: no conflict reveals that B uses it, and the account made is A's.
    body = wechat_body("Mine", app_id=w.b.wechat["app_id"])
    made = await w.call("POST", "/api/v1/wechat/accounts", body=body)
    assert made.status == 201, made
    account = made.body["account"]
    assert account["id"] in await ids_of(w.db, WeChatAccount, w.a.info.id)
    assert account["key"] != w.b.key and account["webhook_url"].startswith(f"https://{w.a.domain}/")
    assert (await w.call("DELETE", f"/api/v1/wechat/accounts/{account['id']}")).status == 200


async def probe_get_wechat_account(w: World) -> None:
    await _not_found_like_a_missing(w, "GET", "/api/v1/wechat/accounts/{}", [w.b.account_id], MISSING_SMALL,
                                    "account_not_found")
    ok = await w.call("GET", f"/api/v1/wechat/accounts/{w.a.account_id}")
    assert ok.status == 200 and ok.body["account"]["key"] == w.a.key, ok


async def probe_update_wechat_account(w: World) -> None:
    for body in ({"name": "taken over"}, {"active": False}, {"secret": "stolen-secret"}, {"token": "mine123"},
                 {"aes_key": new_aes_key()}, {"mode": "plain", "aes_key": None}, {"app_id": new_app_id()}):
        await _not_found_like_a_missing(w, "PATCH", "/api/v1/wechat/accounts/{}", [w.b.account_id], MISSING_SMALL,
                                        "account_not_found", body)
    ok = await w.call("PATCH", f"/api/v1/wechat/accounts/{w.a.account_id}", body={"name": "Acme service"})
    assert ok.status == 200 and ok.body["account"]["name"] == "Acme service", ok


async def probe_delete_wechat_account(w: World) -> None:
    await _not_found_like_a_missing(w, "DELETE", "/api/v1/wechat/accounts/{}", [w.b.account_id], MISSING_SMALL,
                                    "account_not_found")
    made = await w.call("POST", "/api/v1/wechat/accounts", body=wechat_body("Shortlived"))
    assert made.status == 201, made
    assert (await w.call("DELETE", f"/api/v1/wechat/accounts/{made.body['account']['id']}")).status == 200


async def probe_wechat_media(w: World) -> None:
    for token in (w.a.admin_token, w.a.agent_token):
        # B's account key (with B's media id, or any) is no account at all in A...
        for media_id in (w.b.media_id, MISSING_MEDIA):
            await _not_found_like_a_missing(w, "GET", "/api/v1/wechat/media/{}/" + media_id, [w.b.key], MISSING_KEY,
                                            "account_not_found", token=token)
        # ...and B's media id under A's own account is a media id that exists nowhere.
        await _not_found_like_a_missing(w, "GET", f"/api/v1/wechat/media/{w.a.key}/{{}}", [w.b.media_id],
                                        MISSING_MEDIA, "media_not_found", token=token)
    ok = await w.call("GET", f"/api/v1/wechat/media/{w.a.key}/{w.a.media_id}", token=w.a.agent_token)
    assert ok.status == 200 and ok.text == "Acme's customer photo", ok


async def probe_upload(w: World) -> None:
    made = await _upload(w.http, w.a.domain, w.a.agent_token, w.b.attachment["name"], b"A's own file")
    assert made["id"] in await ids_of(w.db, StoredAttachment, w.a.info.id)
    assert made["id"] not in await ids_of(w.db, StoredAttachment, w.b.info.id)
    ok = await w.http("GET", made["url"], host=w.a.domain, token=w.a.agent_token)
    assert (ok.status, ok.text) == (200, "A's own file"), ok


async def probe_billing(w: World) -> None:
    reply = await w.call("GET", "/api/v1/billing")
    assert reply.status == 200, reply
    async with w.db.read(w.a.info.id) as session:
        mine = await statements.summary(session, w.a.info.id)
    async with w.db.read(w.b.info.id) as session:
        theirs = await statements.summary(session, w.b.info.id)
    # A's contract, and not B's (their seats and balances differ: the probes before added A's seats).
    assert reply.body["contract"] == mine.as_dict() != theirs.as_dict(), reply


async def probe_ledger(w: World) -> None:
    b_entries = await ids_of(w.db, LedgerEntry, w.b.info.id)
    for query in ("", f"?after_id={min(b_entries) - 1}", "?limit=500"):
        reply = await w.call("GET", "/api/v1/billing/ledger" + query)
        assert reply.status == 200, reply
        listed = {e["id"] for e in reply.body["entries"]}
        assert listed <= await ids_of(w.db, LedgerEntry, w.a.info.id) and not listed & b_entries, (query, listed)
    assert (await w.call("GET", "/api/v1/billing/ledger")).body["entries"], "A's own ledger is listed"


async def probe_statement(w: World) -> None:
    b_entries = await ids_of(w.db, LedgerEntry, w.b.info.id)
    reply = await w.call("GET", "/api/v1/billing/statement")
    assert reply.status == 200, reply
    st = reply.body["statement"]
    assert st["tenant"]["domain"] == w.a.domain and st["entries"]
    assert not {e["id"] for e in st["entries"]} & b_entries
    mine = {None, *await _invoices_of(w, w.a)}
    assert all(e["invoice"] in mine for e in st["entries"])
    for fmt in ("pdf", "xlsx"):
        async with w.http.session.get(f"{w.http.base_url}/api/v1/billing/statement?format={fmt}", headers={
                "Host": w.a.domain, "Authorization": f"Bearer {w.a.admin_token}"}) as document:
            data = await document.read()
            assert document.status == 200 and data, fmt
        assert w.b.domain.encode() not in data and w.b.invoice_number.encode() not in data, fmt


async def probe_list_invoices(w: World) -> None:
    reply = await w.call("GET", "/api/v1/billing/invoices")
    assert reply.status == 200, reply
    numbers = [i["number"] for i in reply.body["invoices"]]
    assert w.a.invoice_number in numbers and numbers == await _invoices_of(w, w.a), numbers


async def _invoices_of(w: World, side: Side) -> list[str]:
    """The side's invoice numbers: one per charge in its ledger (the probes before added A's seats)."""
    async with w.db.read() as session:
        charges = (await session.execute(select(LedgerEntry.id).where(
            LedgerEntry.tenant_id == side.info.id, LedgerEntry.kind == "charge").order_by(LedgerEntry.id))).scalars()
        return [statements.invoice_number(side.info.id, entry_id) for entry_id in charges]


async def probe_get_invoice(w: World) -> None:
    # B's number on A's domain is an invoice that exists nowhere, in every format; so is B's entry
    # id under A's tenant number.
    b_entry = statements.parse_invoice_number(w.b.invoice_number)
    assert b_entry is not None
    missing = statements.invoice_number(w.a.info.id, 10**12)
    for suffix in ("", "?format=pdf", "?format=xlsx"):
        await _not_found_like_a_missing(w, "GET", "/api/v1/billing/invoices/{}" + suffix,
                                        [w.b.invoice_number, statements.invoice_number(w.a.info.id, b_entry[1])],
                                        missing, "invoice_not_found")
    ok = await w.call("GET", f"/api/v1/billing/invoices/{w.a.invoice_number}")
    assert ok.status == 200 and ok.body["invoice"]["buyer"]["domain"] == w.a.domain, ok


def _log_probe(model: Any, path: str) -> Probe:
    """A's log lists A's rows and never B's, whatever page is asked for; so does its CSV export."""
    async def probe(w: World) -> None:
        mine, theirs = await ids_of(w.db, model, w.a.info.id), await ids_of(w.db, model, w.b.info.id)
        assert mine and theirs, "both tenants have rows (the world was built through the API)"
        for query in ("", f"?before_id={max(theirs) + 1}", "?limit=500"):
            reply = await w.call("GET", path + query)
            assert reply.status == 200, reply
            listed = {e["id"] for e in reply.body["entries"]}
            assert listed and listed <= mine and not listed & theirs, (query, listed)
        async with w.http.session.get(f"{w.http.base_url}{path}/export?format=csv", headers={
                "Host": w.a.domain, "Authorization": f"Bearer {w.a.admin_token}"}) as exported:
            lines = (await exported.read()).decode("utf-8-sig").splitlines()[1:]
            assert exported.status == 200 and lines
        assert {int(line.split(",")[0]) for line in lines} <= mine
    return probe


async def probe_availability(w: World) -> None:
    # In the last hour B was down for 10 minutes while A was up throughout: A's report shows A's.
    now = datetime.now(UTC)
    for query in ("", f"?month={now:%Y-%m}"):
        reply = await w.call("GET", "/api/v1/availability" + query)
        assert reply.status == 200, reply
        got = reply.body["availability"]
        assert got["tenant_id"] == w.a.info.id and got["downtime_minutes"] == 0 and not got["incidents"], got
        assert "Globex" not in reply.text
    async with w.db.read() as session:
        theirs = await availability.month_report(session, w.b.info.id, date(now.year, now.month, 1), now=now,
                                                 interval=timedelta(seconds=30))
    assert theirs["incidents"][0]["cause"] == "Globex is down"


async def probe_reports(w: World) -> None:
    # A's reports name A's agents and groups only; filtered on B's agent or group, they are empty.
    from core import rollups

    await rollups.catch_up(w.db, w.a.info.id, settle=0)
    for kind in ("agents", "groups", "demand"):
        reply = await w.call("GET", f"/api/v1/reports/{kind}")
        assert reply.status == 200, reply
        assert "Globex" not in reply.text and w.b.agent.name not in reply.text
        report = reply.body["report"]
        if kind == "agents":
            assert {r["agent_id"] for r in report["rows"]} <= {w.a.admin.id, w.a.agent.id}, report["rows"]
            assert report["totals"]["received"] > 0
        elif kind == "groups":
            assert {r["group_id"] for r in report["rows"]} <= {None, w.a.group_id}, report["rows"]
        for query in (f"agent_id={w.b.agent.id}", f"group_id={w.b.group_id}"):
            theirs = (await w.call("GET", f"/api/v1/reports/{kind}?{query}")).body["report"]
            assert theirs.get("rows", []) == [] and (theirs.get("totals") or theirs)["received"] == 0, theirs
# --- SLA policies and the breach report (#17) -------------------------------------------------------
async def probe_list_sla_policies(w: World) -> None:
    reply = await w.call("GET", "/api/v1/sla/policies")
    assert reply.status == 200, reply
    listed = {p["id"] for p in reply.body["policies"]}
    assert w.a.sla_policy_id in listed and w.b.sla_policy_id not in listed and "Globex" not in reply.text


async def probe_create_sla_policy(w: World) -> None:
    # B's policy name is free in A.
    made = await w.call("POST", "/api/v1/sla/policies", body={"name": "Globex SLA", "resolution": 86400})
    assert made.status == 201, made
    await w.call("DELETE", f"/api/v1/sla/policies/{made.body['policy']['id']}")


async def probe_get_sla_policy(w: World) -> None:
    await _not_found_like_a_missing(w, "GET", "/api/v1/sla/policies/{}", [w.b.sla_policy_id], MISSING_SMALL,
                                    "sla_policy_not_found")
    assert (await w.call("GET", f"/api/v1/sla/policies/{w.a.sla_policy_id}")).status == 200


async def probe_update_sla_policy(w: World) -> None:
    await _not_found_like_a_missing(w, "PATCH", "/api/v1/sla/policies/{}", [w.b.sla_policy_id], MISSING_SMALL,
                                    "sla_policy_not_found", {"enabled": False})
    ok = await w.call("PATCH", f"/api/v1/sla/policies/{w.a.sla_policy_id}", body={"enabled": True})
    assert ok.status == 200, ok


async def probe_delete_sla_policy(w: World) -> None:
    await _not_found_like_a_missing(w, "DELETE", "/api/v1/sla/policies/{}", [w.b.sla_policy_id], MISSING_SMALL,
                                    "sla_policy_not_found")
    made = await w.call("POST", "/api/v1/sla/policies", body={"name": "short-lived SLA", "resolution": 60})
    assert (await w.call("DELETE", f"/api/v1/sla/policies/{made.body['policy']['id']}")).status == 200


async def probe_sla_report(w: World) -> None:
    reply = await w.call("GET", f"/api/v1/reports/sla?agent_id={w.b.admin.id}")
    assert reply.status == 200, reply
    assert reply.body["report"]["agents"] == [] and "Globex" not in reply.text


async def probe_start_export(w: World) -> None:
    export = await _export_done(w.http, w.a.domain, w.a.admin_token, "/api/v1/exports", {"include_messages": True})
    cells = await _export_cells(w, export)
    # A's customers and messages, none of B's.
    assert "Acme customer three" in cells and "A refund, please (Acme)" in cells
    assert not [c for c in cells if isinstance(c, str) and "Globex" in c]
    assert export["id"] not in await ids_of(w.db, Export, w.b.info.id)


async def probe_customer_export(w: World) -> None:
    await _not_found_like_a_missing(w, "POST", "/api/v1/customers/{}/export", [w.b.customer_id], MISSING_TICKET,
                                    "customer_not_found")
    export = await _export_done(w.http, w.a.domain, w.a.admin_token, f"/api/v1/customers/{w.a.customer_id}/export",
                                None)
    cells = await _export_cells(w, export)
    assert w.a.customer_id in cells and not [c for c in cells if isinstance(c, str) and "Globex" in c]


async def probe_list_exports(w: World) -> None:
    reply = await w.call("GET", "/api/v1/exports")
    assert reply.status == 200, reply
    listed = {e["id"] for e in reply.body["exports"]}
    assert w.a.export["id"] in listed and listed <= await ids_of(w.db, Export, w.a.info.id), listed


async def probe_get_export(w: World) -> None:
    await _not_found_like_a_missing(w, "GET", "/api/v1/exports/{}", [w.b.export["id"]], MISSING_TICKET,
                                    "export_not_found")
    ok = await w.call("GET", f"/api/v1/exports/{w.a.export['id']}")
    assert ok.status == 200 and ok.body["export"]["state"] == "done", ok


async def probe_export_file(w: World) -> None:
    # B's link on A's domain, and A's id with B's signature and expiry: an export that exists nowhere.
    b_query = w.b.export["download_url"].split("?", 1)[1]
    for path in (w.b.export["download_url"], f"/exports/{w.a.export['id']}/file?{b_query}"):
        assert_not_found(await w.http("GET", path, host=w.a.domain), "export_not_found")
    async with w.http.session.get(w.server.url + w.a.export["download_url"], headers={"Host": w.a.domain}) as resp:
        assert resp.status == 200 and resp.content_type == exports.CONTENT_TYPE


async def probe_get_attachment(w: World) -> None:
    for token in (w.a.admin_token, w.a.agent_token):
        await _not_found_like_a_missing(w, "GET", "/api/v1/attachments/{}", [w.b.attachment_id], MISSING_TICKET,
                                        "attachment_not_found", token=token)
    ok = await w.call("GET", f"/api/v1/attachments/{w.a.attachment_id}", token=w.a.agent_token)
    assert (ok.status, ok.text) == (200, "Acme's invoice"), ok


async def probe_public_file(w: World) -> None:
    # B's customer's link on A's domain, and any mix of the two tenants' ids and signatures, is a
    # file that exists nowhere.
    for path in (w.b.file_path, f"/files/{w.a.attachment_id}/{w.b.signature}",
                 f"/files/{w.b.attachment_id}/{w.a.signature}"):
        attachment_id = path.split("/")[2]
        absent = await w.http("GET", f"/files/{MISSING_TICKET}/{path.rsplit('/', 1)[1]}", host=w.a.domain)
        assert_not_found(absent, "attachment_not_found")
        reply = await w.http("GET", path, host=w.a.domain)
        assert_not_found(reply, "attachment_not_found")
        assert reply.body["error"]["message"] == absent.body["error"]["message"].replace(str(MISSING_TICKET),
                                                                                         attachment_id)
    ok = await w.http("GET", w.a.file_path, host=w.a.domain)
    assert (ok.status, ok.text) == (200, "Acme's invoice"), ok


# --- satisfaction surveys (#17, core.csat) ---------------------------------------------------------------------
async def _survey_token(w: World, side: Side) -> str:
    # Made with the solve, in its transaction.
    async with w.db.read(side.info.id) as session:
        return str((await session.execute(select(CsatSurvey.token).where(
            CsatSurvey.ticket_id == side.solved_ticket))).scalar_one())


async def probe_csat_page(w: World) -> None:
    # B's customer's link on A's domain is a survey that exists nowhere: the same page as a made-up one.
    theirs = await w.http("GET", f"/csat/{await _survey_token(w, w.b)}", host=w.a.domain)
    assert_not_found(theirs, "survey_not_found")
    absent = await w.http("GET", "/csat/madeup", host=w.a.domain)
    assert theirs.body == absent.body
    ok = await w.http("GET", f"/csat/{await _survey_token(w, w.a)}", host=w.a.domain)
    assert ok.status == 200, ok


async def probe_csat_answer(w: World) -> None:
    token = await _survey_token(w, w.b)
    assert_not_found(await w.http("POST", f"/csat/{token}", host=w.a.domain, json_body={"rating": 1}),
                     "survey_not_found")
    async with w.db.read(w.b.info.id) as session:
        assert (await session.execute(select(CsatSurvey.rating).where(CsatSurvey.token == token))).scalar_one() is None


async def probe_csat_settings(w: World) -> None:
    # A turns its surveys off and on: its own setting, B's untouched (checked by the caller's rows too).
    try:
        off = await w.call("PUT", "/api/v1/settings/csat", body={"enabled": False})
        assert off.body == {"settings": {"enabled": False}}, off
        assert (await w.call("GET", "/api/v1/settings/csat")).body == {"settings": {"enabled": False}}
    finally:
        assert (await w.call("PUT", "/api/v1/settings/csat", body={"enabled": True})).status == 200
    async with w.db.read(w.b.info.id) as session:
        theirs = await session.execute(select(CsatSettings).where(CsatSettings.tenant_id == w.b.info.id))
        assert theirs.first() is None


# --- the web chat widget and its HTTP fallback ----------------------------------------------------------------
def probe_served_alike(method: str, path: str, status: int, content_type: str | None = None) -> Probe:
    """A part of web chat that is the same for every tenant (the widget, its demo page, the CORS
    preflights): served alike on both domains, to any site, with nothing of the other tenant in
    it. (A domain no tenant has gets nothing: checked for every operation.)"""
    async def probe(w: World) -> None:
        replies = []
        for side, other in ((w.a, w.b), (w.b, w.a)):
            reply = await w.http(method, path, host=side.domain, headers={"Origin": "https://shop.example.org"})
            assert reply.status == status, reply
            assert reply.headers.get("Access-Control-Allow-Origin") == "*", reply.headers
            if content_type is not None:
                assert reply.headers.get("Content-Type", "").startswith(content_type), reply.headers
            if method == "OPTIONS":
                assert {"GET", "POST"} <= {m.strip() for m in reply.headers["Access-Control-Allow-Methods"].split(",")}
            assert other.domain not in reply.text and other.key not in reply.text, reply
            replies.append(reply.text)
        assert replies[0] == replies[1]

    return probe


async def _webchat_client_id(db: Database, side: Side) -> str:
    """The client id of the first message side's visitor wrote (its channel message id is
    ``visitor_id:client_id``)."""
    async with db.read() as session:
        first = (await session.execute(select(Message.channel_message_id).where(
            Message.tenant_id == side.info.id, Message.channel == "webchat", Message.direction == "inbound",
            Message.channel_message_id.startswith(f"{side.visitor_id}:")).order_by(Message.id))).scalars().first()
    assert first is not None
    return first.split(":", 1)[1]


async def probe_post_message(w: World) -> None:
    a, b = w.a, w.b
    watcher = b.info.visitor(b.visitor_id)  # B's visitor, online at home
    await watcher.connect()
    b_messages = await ids_of(w.db, Message, b.info.id)
    # B's visitor id on A's domain, with the client id of B's visitor's own first message: were
    # messages told apart by visitor and client id alone, this would be B's message coming back.
    body = {"visitor_id": b.visitor_id, "client_id": await _webchat_client_id(w.db, b),
            "text": "Written with Globex's visitor id on Acme", "name": "Not Globex's customer"}
    made = await w.http("POST", "/webchat/messages", host=a.domain, json_body=body)
    assert made.status == 201 and made.body["visitor_id"] == b.visitor_id, made
    message = made.body["message"]
    assert message["text"] == body["text"] and message["id"] not in b_messages, made
    assert message["id"] in await ids_of(w.db, Message, a.info.id)
    # Sent again, it is the same message of A's, never one of B's.
    again = await w.http("POST", "/webchat/messages", host=a.domain, json_body={**body, "text": "edited"})
    assert again.status in (200, 201) and again.body["message"] == message, again

    # It is A's conversation, with A's own customer of that visitor id.
    ticket = await _ticket_of(w.http, a.domain, a.admin_token, body["text"])
    assert ticket["id"] in await ids_of(w.db, Ticket, a.info.id) and ticket["customer_id"] != b.customer_id
    async with w.db.read() as session:
        identities = (await session.execute(select(CustomerIdentity.tenant_id, CustomerIdentity.customer_id).where(
            CustomerIdentity.channel == "webchat", CustomerIdentity.external_id == b.visitor_id))).all()
    assert sorted(identities) == sorted([(a.info.id, ticket["customer_id"]), (b.info.id, b.customer_id)])

    # B's visitor, connected on B's domain, was told nothing of it.
    assert watcher.ws is not None
    await watcher.ws.send_json({"type": "ping"})
    await watcher.wait_frame(lambda f: f.get("type") == "pong")
    assert not any("Acme" in json.dumps(f) for f in watcher.frames), watcher.frames
    await watcher.close()


async def probe_visitor_upload(w: World) -> None:
    """B's visitor id on A's domain uploads A's file (kept as A's, whose link opens on A's domain
    only); and a message on A's domain may name only files that visitor uploaded there: B's visitor's
    file, A's agent's file and A's other visitor's file are all not found, like a missing id."""
    a, b = w.a, w.b
    made = await _visitor_upload(w.http, a.domain, b.visitor_id, "photo.png")
    assert made["id"] in await ids_of(w.db, StoredAttachment, a.info.id)
    assert made["id"] not in await ids_of(w.db, StoredAttachment, b.info.id)
    assert made["url"].startswith(f"/files/{made['id']}/"), made
    assert (await w.http("GET", made["url"], host=a.domain)).status == 200
    assert_not_found(await w.http("GET", made["url"], host=b.domain), "attachment_not_found")
    for visitor_id, ids in ((b.visitor_id, [b.visitor_file["id"]]), (a.visitor_id, [b.visitor_file["id"]]),
                            (a.visitor_id, [a.attachment_id]), (a.visitor_id, [made["id"]]),
                            (b.visitor_id, [made["id"], MISSING_TICKET])):
        reply = await w.http("POST", "/webchat/messages", host=a.domain, json_body={
            "visitor_id": visitor_id, "client_id": uuid.uuid4().hex, "text": "", "attachments": ids})
        assert_not_found(reply, "attachment_not_found")
    sent = await w.http("POST", "/webchat/messages", host=a.domain, json_body={
        "visitor_id": b.visitor_id, "client_id": uuid.uuid4().hex, "text": "", "attachments": [made["id"]]})
    assert sent.status == 201, sent
    assert [f["url"] for f in sent.body["message"]["attachments"]] == [made["url"]], sent


async def probe_get_webchat_settings(w: World) -> None:
    reply = await w.call("GET", "/api/v1/webchat/settings")
    assert reply.status == 200 and reply.body["offline_message"]["en"] == "Acme is away", reply
    assert "Globex" not in json.dumps(reply.body, ensure_ascii=False), reply


async def probe_put_webchat_settings(w: World) -> None:
    reply = await w.call("PUT", "/api/v1/webchat/settings", body={"offline_message": {"en": "Acme is out"}})
    assert reply.status == 200 and reply.body["offline_message"] == {"en": "Acme is out"}, reply
    assert reply.body["welcome"] == {"en": "Hi from Acme"}, reply


async def probe_history(w: World) -> None:
    a_messages, b_messages = await ids_of(w.db, Message, w.a.info.id), await ids_of(w.db, Message, w.b.info.id)
    # B's visitor id on A's domain reads nothing of B's (only what was written with it on A, if
    # anything), from the start or from just before any of B's messages.
    for since in (0, *(m - 1 for m in sorted(b_messages))):
        away = await w.http("GET", f"/webchat/history?visitor_id={w.b.visitor_id}&since={since}", host=w.a.domain)
        assert away.status == 200, away
        assert {m["id"] for m in away.body["messages"]} <= a_messages, away
    # A's visitor id on B's domain has written nothing there.
    for since in (0, *(m - 1 for m in sorted(a_messages))):
        away = await w.http("GET", f"/webchat/history?visitor_id={w.a.visitor_id}&since={since}", host=w.b.domain)
        assert (away.status, away.body) == (200, {"messages": []}), away
    home = await w.http("GET", f"/webchat/history?visitor_id={w.a.visitor_id}", host=w.a.domain)
    assert home.status == 200, home
    assert {m["id"] for m in home.body["messages"]} <= a_messages
    texts = [m["text"] for m in home.body["messages"]]
    assert texts[0] == "Hello from a customer of Acme" and "Acme answers" in texts, texts
    assert [at["url"] for m in home.body["messages"] for at in m["attachments"]] == [w.a.file_path]


# --- the WeChat web-hooks ------------------------------------------------------------------------------------
def _unsigned(push: Push) -> Push:
    return Push({}, push.body)


def _tampered(push: Push, field: str) -> Push:
    return Push({**push.query, field: "0" * 40}, push.body)


async def _no_account_on_the_other_domain(w: World, method: str, route: str, pushes: Callable[[Side], list[Push]],
                                          keys: Callable[[Side], list[str]]) -> None:
    """B's account keys on A's domain, and A's on B's, answer exactly as a key that exists
    nowhere, whether the call is signed for that account, tampered with or not signed at all."""
    for owner, host in ((w.b, w.a.domain), (w.a, w.b.domain)):
        for push in pushes(owner):
            await _not_found_like_a_missing(w, method, route, keys(owner), MISSING_KEY, "account_not_found",
                                            host=host, push=push)


async def _refused_at_home(w: World, method: str, path: str, pushes: list[tuple[Push, str]]) -> None:
    """At A's own account, calls made with B's credentials (or a mix of A's and B's) are refused."""
    for push, code in pushes:
        assert_error(await w.call(method, path, push=push), 403, code)


async def _inbox_drained(w: World, tenant_id: int) -> bool:
    return not await ids_of(w.db, InboxItem, tenant_id)


async def _inbound_texts(w: World, tenant_id: int) -> list[str]:
    async with w.db.read() as session:
        return list((await session.execute(select(Message.body).where(
            Message.tenant_id == tenant_id, Message.direction == "inbound").order_by(Message.id))).scalars())


async def probe_oa_verify(w: World) -> None:
    a, b = w.a, w.b
    await _no_account_on_the_other_domain(
        w, "GET", "/wechat/oa/{}",
        lambda s: [oa_verification(s.oa.token, "4711"), _tampered(oa_verification(s.oa.token, "4711"), "signature"),
                   _unsigned(oa_verification(s.oa.token, "4711"))],
        lambda s: [s.key, s.kf.key])
    await _refused_at_home(w, "GET", f"/wechat/oa/{a.key}", [
        (oa_verification(b.oa.token, "4711"), "invalid_signature"),  # signed with B's token
    ])
    ok = await w.call("GET", f"/wechat/oa/{a.key}", push=oa_verification(a.oa.token, "4711"))
    assert (ok.status, ok.text) == (200, "4711"), ok


async def probe_oa_push(w: World) -> None:
    a, b = w.a, w.b
    openid = new_openid()
    await eventually(lambda: _inbox_drained(w, a.info.id))
    a_before = await _inbound_texts(w, a.info.id)

    def pushes(s: Side) -> list[Push]:
        signed = s.oa.message("text", openid, content=f"a push for the account at {s.domain}")
        return [signed, _tampered(signed, "signature"), _tampered(signed, "msg_signature"), _unsigned(signed)]

    await _no_account_on_the_other_domain(w, "POST", "/wechat/oa/{}", pushes, lambda s: [s.key, s.kf.key])
    xml = a.oa.xml("text", openid, content="mixed credentials")
    await _refused_at_home(w, "POST", f"/wechat/oa/{a.key}", [
        (b.oa.push(xml, openid), "invalid_signature"),  # B's push, replayed at A's URL
        (Pusher(a.oa.app_id, a.oa.token, b.oa.aes_key, "safe").push(xml, openid), "invalid_encryption"),
        (Pusher(b.oa.app_id, a.oa.token, a.oa.aes_key, "safe").push(xml, openid), "invalid_encryption"),
    ])
    assert await ids_of(w.db, InboxItem, a.info.id) == set() and await _inbound_texts(w, a.info.id) == a_before

    ok = await w.call("POST", f"/wechat/oa/{a.key}", push=a.oa.message("text", openid, content="A's WeChat customer"))
    assert (ok.status, ok.text) == (200, "success"), ok
    await eventually(lambda: _inbox_drained(w, a.info.id))
    assert await _inbound_texts(w, a.info.id) == [*a_before, "A's WeChat customer"]


async def probe_kf_verify(w: World) -> None:
    a, b = w.a, w.b

    def pushes(s: Side) -> list[Push]:
        good = s.kf.verification("kf-echo")
        return [good, _tampered(good, "msg_signature"), _unsigned(good)]

    await _no_account_on_the_other_domain(w, "GET", "/wechat/kf/{}", pushes, lambda s: [s.kf.key, s.key])
    await _refused_at_home(w, "GET", f"/wechat/kf/{a.kf.key}", [
        (b.kf.verification("kf-echo"), "invalid_signature"),
        (wecom_verification(a.kf.corp_id, a.kf.token, b.kf.aes_key, "kf-echo"), "invalid_encryption"),
        (wecom_verification(b.kf.corp_id, a.kf.token, a.kf.aes_key, "kf-echo"), "invalid_encryption"),
    ])
    ok = await w.call("GET", f"/wechat/kf/{a.kf.key}", push=a.kf.verification("kf-echo"))
    assert (ok.status, ok.text) == (200, "kf-echo"), ok


async def probe_kf_callback(w: World) -> None:
    a, b = w.a, w.b
    sync_token = "SYNC_" + uuid.uuid4().hex

    async def pulls() -> list[dict[str, Any]]:
        return [c for c in w.wechat_api.sync_calls if c.get("token") == sync_token]

    def pushes(s: Side) -> list[Push]:
        good = s.kf.push(sync_token)
        return [good, _tampered(good, "msg_signature"), _unsigned(good)]

    await _no_account_on_the_other_domain(w, "POST", "/wechat/kf/{}", pushes, lambda s: [s.kf.key, s.key])
    await _refused_at_home(w, "POST", f"/wechat/kf/{a.kf.key}", [
        (b.kf.push(sync_token), "invalid_signature"),
        (wecom_callback(a.kf.corp_id, a.kf.token, b.kf.aes_key, sync_token, a.kf.open_kfid), "invalid_encryption"),
        (wecom_callback(b.kf.corp_id, a.kf.token, a.kf.aes_key, sync_token, b.kf.open_kfid), "invalid_encryption"),
    ])
    # A refused callback pulls nothing, for anyone (a pull for B's account would move B's cursor);
    # A's own callback pulls for A's account only.
    assert await pulls() == []
    ok = await w.call("POST", f"/wechat/kf/{a.kf.key}", push=a.kf.push(sync_token))
    assert (ok.status, ok.text) == (200, "success"), ok
    assert {c["open_kfid"] for c in await eventually(pulls)} == {a.kf.open_kfid}


# --- the agent workspace (#13) -------------------------------------------------------------------------------
async def _body_ids_like_missing(w: World, method: str, path: str, make: Callable[[Any], Any], b_ids: list[int],
                                 code: str) -> None:
    """B's ids in a body answer exactly as an id that exists nowhere."""
    absent = await w.call(method, path, body=make(MISSING_TICKET))
    assert_not_found(absent, code)
    for b_id in b_ids:
        reply = await w.call(method, path, body=make(b_id))
        assert_not_found(reply, code)
        assert reply.body["error"]["message"] == absent.body["error"]["message"].replace(str(MISSING_TICKET), str(b_id))


async def probe_customer_tickets(w: World) -> None:
    await _not_found_like_a_missing(w, "GET", "/api/v1/customers/{}/tickets",
                                    [w.b.customer_id, w.b.workspace["left_customer"]], MISSING_TICKET,
                                    "customer_not_found")
    ok = await w.call("GET", f"/api/v1/customers/{w.a.customer_id}/tickets")
    assert ok.status == 200 and w.a.open_ticket in {t["id"] for t in ok.body["tickets"]}, ok
    assert not {t["id"] for t in ok.body["tickets"]} & await ids_of(w.db, Ticket, w.b.info.id)


async def probe_merge_customers(w: World) -> None:
    a_left, a_right = w.a.workspace["left_customer"], w.a.workspace["right_customer"]
    b_ids = [w.b.customer_id, w.b.workspace["left_customer"], w.b.workspace["right_customer"]]
    for other in (w.a.customer_id, a_left):
        await _not_found_like_a_missing(w, "POST", "/api/v1/customers/{}/merge", b_ids, MISSING_TICKET,
                                        "customer_not_found", {"other_id": other})
    for kept in (w.a.customer_id, a_left):
        await _body_ids_like_missing(w, "POST", f"/api/v1/customers/{kept}/merge", lambda i: {"other_id": i}, b_ids,
                                     "customer_not_found")
    customer = await w.call("GET", f"/api/v1/customers/{w.a.customer_id}")
    assert customer.body["customer"]["merged_into_id"] is None
    # A's own merged customer is refused as merged, not as missing.
    assert_error(await w.call("POST", f"/api/v1/customers/{a_left}/merge", body={"other_id": a_right}), 409,
                 "customer_merged")


async def probe_list_merges(w: World) -> None:
    await _not_found_like_a_missing(w, "GET", "/api/v1/customers/{}/merges",
                                    [w.b.workspace["left_customer"], w.b.workspace["right_customer"]], MISSING_TICKET,
                                    "customer_not_found")
    ok = await w.call("GET", f"/api/v1/customers/{w.a.workspace['left_customer']}/merges")
    assert ok.status == 200 and [m["id"] for m in ok.body["merges"]] == [w.a.workspace["merge_id"]], ok


async def probe_undo_merge(w: World) -> None:
    await _not_found_like_a_missing(w, "POST", "/api/v1/customers/merges/{}/undo", [w.b.workspace["merge_id"]],
                                    MISSING_TICKET, "merge_not_found")
    # A's own merge undoes, and is made again for the probes after this one.
    ok = await w.call("POST", f"/api/v1/customers/merges/{w.a.workspace['merge_id']}/undo")
    assert ok.status == 200, ok
    again = await w.call("POST", f"/api/v1/customers/{w.a.workspace['left_customer']}/merge",
                         body={"other_id": w.a.workspace["right_customer"]})
    assert again.status == 201, again


async def probe_merge_tickets(w: World) -> None:
    b_tickets = [w.b.open_ticket, w.b.solved_ticket, w.b.waiting_ticket, w.b.workspace["left_ticket"]]
    await _not_found_like_a_missing(w, "POST", "/api/v1/tickets/{}/merge", b_tickets, MISSING_TICKET,
                                    "ticket_not_found", {"other_ticket_id": w.a.open_ticket})
    await _body_ids_like_missing(w, "POST", f"/api/v1/tickets/{w.a.open_ticket}/merge",
                                 lambda i: {"other_ticket_id": i}, b_tickets, "ticket_not_found")
    detail = await w.call("GET", f"/api/v1/tickets/{w.a.open_ticket}")
    assert detail.body["ticket"]["merged_into_id"] is None and detail.body["ticket"]["status"] != "closed"


async def probe_split(w: World) -> None:
    b_messages = sorted(await ids_of(w.db, Message, w.b.info.id))
    for b_ticket in (w.b.open_ticket, w.b.solved_ticket):
        path = f"/api/v1/tickets/{b_ticket}/messages/{b_messages[0]}/split"
        assert_not_found(await w.call("POST", path, body={}), "ticket_not_found")
    await _not_found_like_a_missing(w, "POST", f"/api/v1/tickets/{{}}/messages/{b_messages[0]}/split",
                                    [w.b.open_ticket], MISSING_TICKET, "ticket_not_found", {})
    await _not_found_like_a_missing(w, "POST", f"/api/v1/tickets/{w.a.open_ticket}/messages/{{}}/split",
                                    b_messages[:5], MISSING_TICKET, "message_not_found", {"following": True})


async def probe_list_canned(w: World) -> None:
    b_canned = await ids_of(w.db, CannedReply, w.b.info.id)
    for query in ("", "?q=globex", "?q=/globex", "?q=Hi", "?q=mine"):
        for token in (w.a.admin_token, w.a.agent_token):
            reply = await w.call("GET", "/api/v1/canned-replies" + query, token=token)
            assert reply.status == 200, reply
            listed = {c["id"] for c in reply.body["canned_replies"]}
            assert not listed & b_canned and listed <= await ids_of(w.db, CannedReply, w.a.info.id), query
    everything = await w.call("GET", "/api/v1/canned-replies")
    assert w.a.workspace["canned_id"] in {c["id"] for c in everything.body["canned_replies"]}


async def probe_create_canned(w: World) -> None:
    # B's shortcut is free in A (and B's use of it is not revealed by a conflict).
    made = await w.call("POST", "/api/v1/canned-replies", body={"scope": "tenant", "shortcut": "globex-hello",
                                                                 "title": "x", "text": "y"})
    assert made.status == 201 and made.body["canned_reply"]["id"] in await ids_of(w.db, CannedReply, w.a.info.id)
    assert (await w.call("DELETE", f"/api/v1/canned-replies/{made.body['canned_reply']['id']}")).status == 200


async def probe_update_canned(w: World) -> None:
    b_canned = sorted(await ids_of(w.db, CannedReply, w.b.info.id))
    for body in ({"title": "taken over"}, {"shortcut": "mine"}, {"text": "{{customer.email}}"}):
        await _not_found_like_a_missing(w, "PATCH", "/api/v1/canned-replies/{}", b_canned, MISSING_TICKET,
                                        "canned_not_found", body)
    ok = await w.call("PATCH", f"/api/v1/canned-replies/{w.a.workspace['canned_id']}", body={"title": "Acme hi"})
    assert ok.status == 200, ok


async def probe_delete_canned(w: World) -> None:
    await _not_found_like_a_missing(w, "DELETE", "/api/v1/canned-replies/{}",
                                    sorted(await ids_of(w.db, CannedReply, w.b.info.id)), MISSING_TICKET,
                                    "canned_not_found")


async def probe_render_canned(w: World) -> None:
    b_canned = sorted(await ids_of(w.db, CannedReply, w.b.info.id))
    a_canned = w.a.workspace["canned_id"]
    await _not_found_like_a_missing(w, "POST", f"/api/v1/tickets/{{}}/canned-replies/{a_canned}/render",
                                    [w.b.open_ticket, w.b.waiting_ticket], MISSING_TICKET, "ticket_not_found")
    await _not_found_like_a_missing(w, "POST", f"/api/v1/tickets/{w.a.open_ticket}/canned-replies/{{}}/render",
                                    b_canned, MISSING_TICKET, "canned_not_found")
    ok = await w.call("POST", f"/api/v1/tickets/{w.a.open_ticket}/canned-replies/{a_canned}/render")
    assert ok.status == 200 and ok.body["text"] == "Hi Acme customer", ok


async def probe_list_macros(w: World) -> None:
    reply = await w.call("GET", "/api/v1/macros", token=w.a.agent_token)
    assert reply.status == 200, reply
    listed = {m["id"] for m in reply.body["macros"]}
    assert listed == await ids_of(w.db, Macro, w.a.info.id) and "Globex" not in json.dumps(reply.body)


async def probe_create_macro(w: World) -> None:
    assert_not_found(await w.call("POST", "/api/v1/macros", body={"name": "to B", "actions": [
        {"type": "group", "group_id": w.b.group_id}]}), "group_not_found")
    made = await w.call("POST", "/api/v1/macros", body={"name": "Globex macro", "actions": [
        {"type": "priority", "priority": "low"}]})
    assert made.status == 201, made
    assert (await w.call("DELETE", f"/api/v1/macros/{made.body['macro']['id']}")).status == 200


async def probe_update_macro(w: World) -> None:
    for body in ({"name": "taken over"}, {"actions": [{"type": "group", "group_id": w.a.group_id}]}):
        await _not_found_like_a_missing(w, "PATCH", "/api/v1/macros/{}", [w.b.workspace["macro_id"]],
                                        MISSING_TICKET, "macro_not_found", body)
    assert_not_found(await w.call("PATCH", f"/api/v1/macros/{w.a.workspace['macro_id']}", body={"actions": [
        {"type": "group", "group_id": w.b.group_id}]}), "group_not_found")


async def probe_delete_macro(w: World) -> None:
    await _not_found_like_a_missing(w, "DELETE", "/api/v1/macros/{}", [w.b.workspace["macro_id"]], MISSING_TICKET,
                                    "macro_not_found")


async def probe_apply_macro(w: World) -> None:
    a_macro, b_macro = w.a.workspace["macro_id"], w.b.workspace["macro_id"]
    await _not_found_like_a_missing(w, "POST", f"/api/v1/tickets/{{}}/macros/{a_macro}",
                                    [w.b.open_ticket, w.b.waiting_ticket], MISSING_TICKET, "ticket_not_found")
    await _not_found_like_a_missing(w, "POST", f"/api/v1/tickets/{w.a.open_ticket}/macros/{{}}", [b_macro],
                                    MISSING_TICKET, "macro_not_found")
    ok = await w.call("POST", f"/api/v1/tickets/{w.a.workspace['left_ticket']}/macros/{a_macro}")
    assert ok.status == 200 and "acme-macro" in ok.body["ticket"]["tags"], ok


async def probe_my_mentions(w: World) -> None:
    reply = await w.call("GET", "/api/v1/me/mentions", token=w.a.agent_token)
    assert reply.status == 200, reply
    assert {m["id"] for m in reply.body["mentions"]} <= await ids_of(w.db, Mention, w.a.info.id)
    assert reply.body["mentions"] and "Globex" not in json.dumps(reply.body)


async def probe_read_mentions(w: World) -> None:
    b_mentions = sorted(await ids_of(w.db, Mention, w.b.info.id))
    assert b_mentions
    for token in (w.a.agent_token, w.a.admin_token):
        reply = await w.call("POST", "/api/v1/me/mentions/read", token=token, body={"ids": b_mentions})
        assert reply.status == 200 and reply.body["marked"] == 0, reply


CASES: dict[tuple[str, str], Case] = {
    ("POST", "/api/v1/auth/login"): Case(probe_login,
                                         lambda w: {"email": w.a.admin.email, "password": PASSWORD}),
    ("POST", "/api/v1/auth/logout"): Case(probe_sign_out("/api/v1/auth/logout")),
    ("POST", "/api/v1/auth/logout-all"): Case(probe_sign_out("/api/v1/auth/logout-all")),
    ("PUT", "/api/v1/me/password"): Case(probe_password,
                                         lambda w: {"current_password": PASSWORD, "new_password": "an0ther password"}),
    ("GET", "/api/v1/me"): Case(probe_me),
    ("PUT", "/api/v1/me/presence"): Case(probe_presence, lambda w: {"status": "online"}),
    ("GET", "/api/v1/agents"): Case(probe_list_agents),
    ("POST", "/api/v1/agents"): Case(probe_create_agent,
                                     lambda w: {"email": f"x@{w.b.domain}", "name": "X", "password": PASSWORD}),
    ("PATCH", "/api/v1/agents/{agent_id}"): Case(probe_update_agent, lambda w: {"capacity": 1}),
    ("POST", "/api/v1/agents/batch"): Case(probe_create_agents, lambda w: {"agents": [
        {"email": f"x-{uuid.uuid4().hex[:8]}@{w.b.domain}", "name": "X", "password": PASSWORD}]}),
    ("POST", "/api/v1/billing/notice"): Case(probe_notice, lambda w: {"ends_on": "2099-01-01"}),
    ("POST", "/api/v1/agents/batch-remove"): Case(probe_remove_agents, lambda w: {"agent_ids": [w.b.agent.id]}),
    ("GET", "/api/v1/groups"): Case(probe_list_groups),
    ("POST", "/api/v1/groups"): Case(probe_create_group, lambda w: {"name": "Intruders"}),
    ("PATCH", "/api/v1/groups/{group_id}"): Case(probe_update_group, lambda w: {"name": "Intruders"}),
    ("PUT", "/api/v1/groups/{group_id}/members"): Case(probe_set_members, lambda w: {"agent_ids": [w.a.agent.id]}),
    ("GET", "/api/v1/tickets"): Case(probe_list_tickets),
    ("GET", "/api/v1/tickets/counts"): Case(probe_ticket_counts),
    ("GET", "/api/v1/search"): Case(probe_search),
    ("POST", "/api/v1/tickets"): Case(probe_create_ticket, lambda w: {"text": "x", "customer_id": w.b.customer_id}),
    ("GET", "/api/v1/tickets/{ticket_id}"): Case(probe_get_ticket),
    ("PATCH", "/api/v1/tickets/{ticket_id}"): Case(probe_update_ticket, lambda w: {"status": "closed"}),
    ("POST", "/api/v1/tickets/{ticket_id}/messages"): Case(probe_add_message,
                                                           lambda w: {"text": "x", "attachments": [w.a.attachment_id]}),
    ("POST", "/api/v1/tickets/{ticket_id}/transfer"): Case(probe_transfer, lambda w: {"agent_id": w.a.agent.id}),
    ("POST", "/api/v1/tickets/{ticket_id}/solve"): Case(probe_solve),
    ("POST", "/api/v1/tickets/{ticket_id}/reopen"): Case(probe_reopen),
    ("POST", "/api/v1/tickets/{ticket_id}/claim"): Case(probe_claim),
    ("GET", "/api/v1/tickets/{ticket_id}/routing"): Case(probe_routing_history),
    ("GET", "/api/v1/queue"): Case(probe_queue),
    ("GET", "/api/v1/routing/rules"): Case(probe_list_rules),
    ("POST", "/api/v1/routing/rules"): Case(probe_create_rule,
                                            lambda w: {"name": "mine now", "actions": {"priority": "low"}}),
    ("GET", "/api/v1/routing/rules/{rule_id}"): Case(probe_get_rule),
    ("PATCH", "/api/v1/routing/rules/{rule_id}"): Case(probe_update_rule, lambda w: {"enabled": False}),
    ("DELETE", "/api/v1/routing/rules/{rule_id}"): Case(probe_delete_rule),
    ("PUT", "/api/v1/routing/rules/order"): Case(probe_reorder_rules, lambda w: {"ids": [w.b.rule_id]}),
    ("GET", "/api/v1/routing/settings"): Case(probe_get_settings),
    ("PUT", "/api/v1/routing/settings"): Case(probe_put_settings, lambda w: {"unlimited_wait": True}),
    ("GET", "/api/v1/customers/{customer_id}"): Case(probe_get_customer),
    ("PATCH", "/api/v1/customers/{customer_id}"): Case(probe_update_customer, lambda w: {"tags": ["x"]}),
    ("GET", "/api/v1/wechat/accounts"): Case(probe_list_wechat_accounts),
    ("POST", "/api/v1/wechat/accounts"): Case(probe_create_wechat_account,
                                              lambda w: wechat_body("Intruder", app_id=w.b.wechat["app_id"])),
    ("GET", "/api/v1/wechat/accounts/{account_id}"): Case(probe_get_wechat_account),
    ("PATCH", "/api/v1/wechat/accounts/{account_id}"): Case(probe_update_wechat_account,
                                                            lambda w: {"name": "taken over", "active": False}),
    ("DELETE", "/api/v1/wechat/accounts/{account_id}"): Case(probe_delete_wechat_account),
    ("GET", "/api/v1/wechat/media/{key}/{media_id}"): Case(probe_wechat_media),
    ("POST", "/api/v1/attachments"): Case(probe_upload),
    ("GET", "/api/v1/attachments/{attachment_id}"): Case(probe_get_attachment),
    ("GET", "/files/{attachment_id}/{signature}"): Case(probe_public_file),
    ("GET", "/webchat/widget.js"): Case(probe_served_alike("GET", "/webchat/widget.js", 200, "application/javascript")),
    ("GET", "/webchat/demo"): Case(probe_served_alike("GET", "/webchat/demo", 200, "text/html")),
    ("OPTIONS", "/webchat/history"): Case(probe_served_alike("OPTIONS", "/webchat/history", 204)),
    ("OPTIONS", "/webchat/messages"): Case(probe_served_alike("OPTIONS", "/webchat/messages", 204)),
    ("OPTIONS", "/webchat/attachments"): Case(probe_served_alike("OPTIONS", "/webchat/attachments", 204)),
    ("POST", "/webchat/attachments"): Case(probe_visitor_upload),
    ("GET", "/api/v1/webchat/settings"): Case(probe_get_webchat_settings),
    ("PUT", "/api/v1/webchat/settings"): Case(probe_put_webchat_settings,
                                              lambda w: {"offline_message": {"en": "taken over"}}),
    ("POST", "/webchat/messages"): Case(probe_post_message,
                                        lambda w: {"visitor_id": w.b.visitor_id, "client_id": "c1", "text": "Hello?"}),
    ("GET", "/webchat/history"): Case(probe_history),
    ("GET", "/api/v1/email/mailboxes"): Case(probe_list_mailboxes),
    ("POST", "/api/v1/email/mailboxes"): Case(probe_create_mailbox, lambda w: {"address": f"x@{w.a.domain}"}),
    ("GET", "/api/v1/email/mailboxes/{mailbox_id}"): Case(probe_get_mailbox),
    ("PATCH", "/api/v1/email/mailboxes/{mailbox_id}"): Case(probe_update_mailbox, lambda w: {"name": "x"}),
    ("DELETE", "/api/v1/email/mailboxes/{mailbox_id}"): Case(probe_delete_mailbox),
    ("GET", "/api/v1/email/messages/{message_id}/original"): Case(probe_mail_original),
    ("GET", "/api/v1/xmpp/accounts"): Case(probe_list_xmpp_accounts),
    ("POST", "/api/v1/xmpp/accounts"): Case(probe_create_xmpp_account,
                                            lambda w: {"kind": "client", "jid": f"x@{w.a.domain}", "secret": "x"}),
    ("GET", "/api/v1/xmpp/accounts/{xmpp_account_id}"): Case(probe_get_xmpp_account),
    ("PATCH", "/api/v1/xmpp/accounts/{xmpp_account_id}"): Case(probe_update_xmpp_account, lambda w: {"name": "x"}),
    ("DELETE", "/api/v1/xmpp/accounts/{xmpp_account_id}"): Case(probe_delete_xmpp_account),
    ("GET", "/api/v1/billing"): Case(probe_billing),
    ("GET", "/api/v1/billing/ledger"): Case(probe_ledger),
    ("GET", "/api/v1/billing/statement"): Case(probe_statement),
    ("GET", "/api/v1/billing/invoices"): Case(probe_list_invoices),
    ("GET", "/api/v1/billing/invoices/{invoice_number}"): Case(probe_get_invoice),
    ("GET", "/api/v1/availability"): Case(probe_availability),
    ("GET", "/api/v1/reports/agents"): Case(probe_reports),
    ("GET", "/api/v1/reports/groups"): Case(probe_reports),
    ("GET", "/api/v1/reports/demand"): Case(probe_reports),
    ("GET", "/csat/{token}"): Case(probe_csat_page),
    ("POST", "/csat/{token}"): Case(probe_csat_answer, lambda w: {"rating": 3}),
    ("GET", "/api/v1/settings/csat"): Case(probe_csat_settings),
    ("PUT", "/api/v1/settings/csat"): Case(probe_csat_settings, lambda w: {"enabled": True}),
    ("GET", "/api/v1/sla/policies"): Case(probe_list_sla_policies),
    ("POST", "/api/v1/sla/policies"): Case(probe_create_sla_policy, lambda w: {"name": "x", "resolution": 60}),
    ("GET", "/api/v1/sla/policies/{policy_id}"): Case(probe_get_sla_policy),
    ("PATCH", "/api/v1/sla/policies/{policy_id}"): Case(probe_update_sla_policy, lambda w: {"enabled": False}),
    ("DELETE", "/api/v1/sla/policies/{policy_id}"): Case(probe_delete_sla_policy),
    ("GET", "/api/v1/reports/sla"): Case(probe_sla_report),
    ("GET", "/api/v1/audit"): Case(_log_probe(AuditLog, "/api/v1/audit")),
    ("GET", "/api/v1/audit/export"): Case(_log_probe(AuditLog, "/api/v1/audit")),
    ("GET", "/api/v1/logins"): Case(_log_probe(LoginLog, "/api/v1/logins")),
    ("GET", "/api/v1/logins/export"): Case(_log_probe(LoginLog, "/api/v1/logins")),
    ("POST", "/api/v1/exports"): Case(probe_start_export, lambda w: {"include_messages": True}),
    ("POST", "/api/v1/customers/{customer_id}/export"): Case(probe_customer_export),
    ("GET", "/api/v1/exports"): Case(probe_list_exports),
    ("GET", "/api/v1/exports/{export_id}"): Case(probe_get_export),
    ("GET", "/exports/{export_id}/file"): Case(probe_export_file),
    ("GET", "/wechat/oa/{key}"): Case(probe_oa_verify),
    ("POST", "/wechat/oa/{key}"): Case(probe_oa_push),
    ("GET", "/wechat/kf/{key}"): Case(probe_kf_verify),
    ("POST", "/wechat/kf/{key}"): Case(probe_kf_callback),
    ("GET", "/api/v1/customers/{customer_id}/tickets"): Case(probe_customer_tickets),
    ("POST", "/api/v1/customers/{customer_id}/merge"): Case(probe_merge_customers,
                                                            lambda w: {"other_id": w.a.customer_id}),
    ("GET", "/api/v1/customers/{customer_id}/merges"): Case(probe_list_merges),
    ("POST", "/api/v1/customers/merges/{merge_id}/undo"): Case(probe_undo_merge),
    ("POST", "/api/v1/tickets/{ticket_id}/merge"): Case(probe_merge_tickets,
                                                        lambda w: {"other_ticket_id": w.a.open_ticket}),
    ("POST", "/api/v1/tickets/{ticket_id}/messages/{message_id}/split"): Case(probe_split, lambda w: {}),
    ("GET", "/api/v1/canned-replies"): Case(probe_list_canned),
    ("POST", "/api/v1/canned-replies"): Case(probe_create_canned,
                                             lambda w: {"shortcut": "x", "title": "x", "text": "x"}),
    ("PATCH", "/api/v1/canned-replies/{canned_id}"): Case(probe_update_canned, lambda w: {"title": "x"}),
    ("DELETE", "/api/v1/canned-replies/{canned_id}"): Case(probe_delete_canned),
    ("POST", "/api/v1/tickets/{ticket_id}/canned-replies/{canned_id}/render"): Case(probe_render_canned),
    ("GET", "/api/v1/macros"): Case(probe_list_macros),
    ("POST", "/api/v1/macros"): Case(probe_create_macro,
                                     lambda w: {"name": "x", "actions": [{"type": "priority", "priority": "low"}]}),
    ("PATCH", "/api/v1/macros/{macro_id}"): Case(probe_update_macro, lambda w: {"name": "x"}),
    ("DELETE", "/api/v1/macros/{macro_id}"): Case(probe_delete_macro),
    ("POST", "/api/v1/tickets/{ticket_id}/macros/{macro_id}"): Case(probe_apply_macro),
    ("GET", "/api/v1/me/mentions"): Case(probe_my_mentions),
    ("POST", "/api/v1/me/mentions/read"): Case(probe_read_mentions, lambda w: {"all": True}),
    ("POST", "/api/v1/tenant/delete"): Case(probe_delete_tenant, lambda w: {"confirm": "nothing.example"}),
    ("POST", "/api/v1/customers/{customer_id}/erase"): Case(probe_erase_customer, lambda w: {"confirm": "0"}),
}


def test_every_operation_has_a_cross_tenant_case() -> None:
    routes = {op_key(op) for op in operations()}
    assert routes, "no routes registered"
    missing = sorted(routes - set(CASES))
    assert not missing, f"operations without a cross-tenant check (add them to CASES): {missing}"
    stale = sorted(set(CASES) - routes)
    assert not stale, f"CASES for routes that no longer exist: {stale}"


@pytest.mark.parametrize("op", operations(), ids=op_id)
async def test_operation_reaches_nothing_of_another_tenant(world: World, op: Operation) -> None:
    case = CASES.get(op_key(op))
    if case is None:
        pytest.fail(f"{op_id(op)} has no cross-tenant case in CASES")
    b_before = await tenant_rows(world.db, world.b.info.id)
    path = op.path.format(**world.b.ids())
    body = case.body(world) if case.body is not None else None

    # Whatever the route, another tenant's domain or an unknown one gives nothing.
    unknown = await world.call(op.method, path, host=UNKNOWN_DOMAIN, body=body)
    assert_error(unknown, 404, "unknown_tenant")
    if op.auth:
        assert_error(await world.call(op.method, path, host=world.b.domain, body=body), 401, "invalid_token")
        assert_error(await world.call(op.method, path, host=world.b.domain, token=world.a.agent_token, body=body),
                     401, "invalid_token")

    await case.probe(world)

    assert await tenant_rows(world.db, world.b.info.id) == b_before, f"{op_id(op)} changed tenant B's data"


async def test_openapi_document_lists_exactly_the_checked_operations(world: World) -> None:
    reply = await world.call("GET", "/api/v1/openapi.json")
    assert reply.status == 200, reply
    documented = {(m.upper(), p) for p, ops in reply.body["paths"].items() for m in ops}
    assert documented == set(CASES)


# --- the agent websocket ------------------------------------------------------------------------------
async def test_agent_socket_refuses_a_token_of_another_tenant(world: World) -> None:
    for token, domain in ((world.a.admin_token, world.b.domain), (world.b.agent_token, world.a.domain)):
        ws = await world.http.ws("/agent/ws", host=domain)
        await ws.send_json({"type": "hello", "token": token})
        assert_error_frame(await next_frame(ws), "invalid_token")
        await expect_closed(ws)
    # On a domain no tenant has, there is no socket at all, and the refusal is JSON.
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await world.http.ws("/agent/ws", host=UNKNOWN_DOMAIN)
    assert refused.value.status == 404
    assert_error(await world.call("GET", "/agent/ws", host=UNKNOWN_DOMAIN), 404, "unknown_tenant")


def _ws_fields(w: World) -> dict[str, list[dict[str, Any]]]:
    """For every gateway action, the fields that go with a ticket id."""
    return {
        "reply": [{"text": "hello from A"}],
        "note": [{"text": "A's note"}],
        "status": [{"status": "pending"}, {"status": "closed"}, {"status": "open"}],
        "priority": [{"priority": "urgent"}],
        "tags": [{"tags": ["a"]}, {"add": ["b"]}, {"remove": ["x"]}],
        "transfer": [{"agent_id": w.a.agent.id}, {"group_id": w.a.group_id}, {"agent_id": w.b.agent.id},
                     {"group_id": w.b.group_id}],
        "get_ticket": [{}],
        "claim": [{}],
        "typing": [{"state": "composing"}, {"state": "paused"}],
        "viewing": [{"state": "viewing"}, {"state": "left"}],
    }


async def _connected(w: World, side: Side, *, since: int | None = None) -> AgentClient:
    client = side.info.agent_client()
    client.token = side.admin_token
    client.last_event_id = since
    await client.connect()
    return client


async def test_agent_socket_actions_on_other_tenants_tickets_fail(world: World) -> None:
    fields = _ws_fields(world)
    assert set(fields) == set(ACTIONS), "every gateway action needs cross-tenant frames here"
    b_before = await tenant_rows(world.db, world.b.info.id)
    client = await _connected(world, world.a, since=0)

    # What a connecting client is owed (snapshot and replayed events) is A's only.
    assert client.welcome is not None
    a_tickets = await ids_of(world.db, Ticket, world.a.info.id)
    a_agents = await ids_of(world.db, Agent, world.a.info.id)
    assert {t["id"] for t in client.welcome["tickets"]} <= a_tickets
    assert client.welcome["events"], "since=0 replays the recent events of A"
    for event in client.welcome["events"]:
        assert event["ticket_id"] in a_tickets | {None}, event
        if event["kind"] == "agent.presence":
            assert event["agent_id"] in a_agents, event

    for kind, variants in fields.items():
        for extra in variants:
            for ticket_id in (world.b.open_ticket, world.b.solved_ticket, world.b.waiting_ticket):
                with pytest.raises(HubError) as failed:
                    await client.action(kind, ticket_id=ticket_id, **extra)
                assert failed.value.code == "ticket_not_found", (kind, extra, failed.value)
    for extra, code in (({"agent_id": world.b.agent.id}, "agent_not_found"),
                        ({"group_id": world.b.group_id}, "group_not_found")):
        with pytest.raises(HubError) as failed:
            await client.action("transfer", ticket_id=world.a.open_ticket, **extra)
        assert failed.value.code == code, failed.value
    # Frames without a ref get an error frame, not silence.
    await client.send_frame({"type": "get_ticket", "ticket_id": world.b.open_ticket})
    await eventually(lambda: _has_error(client, "ticket_not_found"))

    mine = await client.action("get_ticket", ticket_id=world.a.open_ticket)
    assert mine["ticket"]["id"] == world.a.open_ticket
    await client.disconnect()
    assert await tenant_rows(world.db, world.b.info.id) == b_before


async def _has_error(client: AgentClient, code: str) -> bool:
    return any(e.get("code") == code for e in client.errors)


async def test_events_of_another_tenant_never_reach_a_connected_client(world: World) -> None:
    a, b = world.a, world.b
    watcher = await _connected(world, a)  # A's admin sees everything of A
    b_client = b.info.agent_client()
    b_client.token = b.agent_token
    await b_client.connect()
    try:
        # B's customer writes, B's agent answers, the answer is delivered: all of it live in B.
        b_visitor = b.info.visitor()
        await b_visitor.connect(name="B's customer")
        await b_visitor.send("B's secret order")
        created = await b_client.wait_event(
            lambda e: e["kind"] == "message.created" and e["message"]["text"] == "B's secret order")
        b_ticket = created["ticket_id"]
        # Routing runs in the background: the ticket reaches B's only online agent soon after.
        await b_client.wait_event(lambda e: e["kind"] == "ticket.assigned" and e["ticket_id"] == b_ticket
                                  and e["assignee_id"] == b.agent.id)
        await b_client.reply(b_ticket, "B's secret answer")
        await b_visitor.wait_message(lambda m: m["direction"] == "outbound")
        await b_client.wait_event(lambda e: e["kind"] == "message.delivery" and e["ticket_id"] == b_ticket)
        await b_client.set_status(b_ticket, "pending")
        await b_client.wait_event(lambda e: e["kind"] == "ticket.updated" and e["ticket_id"] == b_ticket)

        # A marker in A, published after all of B's: once A's client has it, B's would have come first.
        a_visitor = a.info.visitor()
        await a_visitor.connect()
        await a_visitor.send("A's marker")
        await watcher.wait_event(lambda e: e["kind"] == "message.created" and e["message"]["text"] == "A's marker")
    finally:
        # Leave B's agent offline again, as the other tests of this module expect.
        await b_client.disconnect()
        await world.call("PUT", "/api/v1/me/presence", side=b, token=b.agent_token, body={"status": "offline"})

    b_event_ids = {e["id"] for e in b_client.events}
    assert b_ticket in {e["ticket_id"] for e in b_client.events}, "B's own client got B's events"
    a_tickets = await ids_of(world.db, Ticket, a.info.id)
    for event in watcher.events:
        assert event["id"] not in b_event_ids, event
        assert event["ticket_id"] in a_tickets | {None}, event
        assert event.get("agent_id") != b.agent.id, event
        assert "secret" not in json.dumps(event), event
    assert not watcher.errors


# --- the web chat side -----------------------------------------------------------------------------------
async def test_a_visitor_id_of_one_tenant_sees_nothing_on_another(world: World) -> None:
    a, b = world.a, world.b
    first = await world.http("POST", "/webchat/messages", host=a.domain,
                             json_body={"client_id": "m1", "text": "A's private question"})
    assert first.status == 201, first
    vid = first.body["visitor_id"]

    # History over HTTP and over the socket: all on A, nothing on B.
    home = await world.http("GET", f"/webchat/history?visitor_id={vid}", host=a.domain)
    assert [m["text"] for m in home.body["messages"]] == ["A's private question"]
    away = await world.http("GET", f"/webchat/history?visitor_id={vid}", host=b.domain)
    assert away.status == 200 and away.body["messages"] == [], away

    on_a = a.info.visitor(vid)
    assert [m["text"] for m in (await on_a.connect())["messages"]] == ["A's private question"]
    on_b = b.info.visitor(vid)
    welcome = await on_b.connect()
    assert welcome["visitor_id"] == vid and welcome["messages"] == []

    # A's agent answers: the visitor on A gets it; the same id on B does not.
    ticket = await _ticket_of(world.http, a.domain, a.admin_token, "A's private question")
    answer = await world.call("POST", f"/api/v1/tickets/{ticket['id']}/messages", body={"text": "A's private answer"})
    assert answer.status == 201, answer
    await on_a.wait_message(lambda m: m["text"] == "A's private answer")
    assert on_b.ws is not None
    await on_b.ws.send_json({"type": "ping"})
    await on_b.wait_frame(lambda f: f.get("type") == "pong")
    assert not any("private" in json.dumps(f) for f in on_b.frames), on_b.frames

    # Writing as that id on B starts B's own conversation; A's ticket does not grow.
    await on_b.send("Hello B")
    await on_b.wait_frame(lambda f: f.get("type") == "ack")
    a_detail = await world.call("GET", f"/api/v1/tickets/{ticket['id']}")
    assert [m["text"] for m in a_detail.body["messages"]] == ["A's private question", "A's private answer"]
    assert not any(m["text"] == "Hello B" for m in on_a.messages.values())
    b_ticket = await _ticket_of(world.http, b.domain, b.admin_token, "Hello B")
    assert b_ticket["id"] in await ids_of(world.db, Ticket, b.info.id)
    assert b_ticket["customer_id"] != ticket["customer_id"]
    b_detail = await world.call("GET", f"/api/v1/tickets/{b_ticket['id']}", side=b)
    assert [m["text"] for m in b_detail.body["messages"]] == ["Hello B"]
