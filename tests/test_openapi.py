"""The OpenAPI document (/api/v1/openapi.json) tells the truth.

- It is a valid OpenAPI 3.1 document, and every operation says what it answers: its success
  status with a schema (or a media type, or nothing for a 204), its parameters, and every error it
  can give, all of the one Error schema; bearer security exactly on the signed-in routes.
- Every route, called for real on the running test server the way a client would (a valid
  request, as the admin or anyone), answers a status the document lists for it, with a body that
  validates against the schema listed for that status (jsonschema, formats included).
- What schemathesis found (make apicheck) stays fixed: an explicit null in a PATCH body is a 422
  naming the field, not a NULL stored into a column that cannot hold one (a 500), and renaming a
  group onto another's name is a 409.

`make apicheck` (tests/apicheck.py) fuzzes the same document with schemathesis; this is the fast,
deterministic part that runs with the suite.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from pydantic import BaseModel

from channelhub.app import build_api
from core.models import MAX_BIG_ID, MAX_ID
from tests import test_bad_input as bad_input
from tests.support import PNG, Reply, assert_error, op_id, op_key, operations, undocumented
from tests.test_bad_input import Shop, _login, _path, valid_bodies
from web.api import Api, Operation, RouteTable
from web.schemas import WORD_ID_PATTERN

DOC = build_api().openapi()
# test_bad_input's tenant with one of everything (a fixture of this module's own).
shop = bad_input.shop


def schema_of(ref_or_schema: dict[str, Any]) -> dict[str, Any]:
    """A schema of the document, standalone: its $refs resolve against the document's components."""
    return {**ref_or_schema, "components": DOC["components"]}


def answer_for(op: Operation, status: int) -> dict[str, Any]:
    responses = DOC["paths"][op.path][op.method.lower()]["responses"]
    assert str(status) in responses, f"{op_id(op)} answered {status}, which the document does not list: " \
                                     f"{sorted(responses)}"
    return dict(responses[str(status)])


# --- the document ----------------------------------------------------------------------------
def test_the_names_of_states_are_the_models_own() -> None:
    """The answers' and filters' names of a tenant's status and a contract's state are the models'
    enums, every one of them (a purged tenant's statement once broke its schema)."""
    from typing import get_args

    from admin_api.schemas import ContractStateName, PriorityName, StatusName, TenantStatusName
    from core.models import ContractState, Priority, TenantStatus, TicketStatus

    for literal, enum in ((TenantStatusName, TenantStatus), (ContractStateName, ContractState),
                          (StatusName, TicketStatus), (PriorityName, Priority)):
        assert set(get_args(literal)) == {member.value for member in enum}, literal


def test_the_document_is_openapi_3_1() -> None:
    assert DOC["openapi"].startswith("3.1")
    validate_openapi(DOC)


async def test_the_served_document_is_the_one_described(shop: Shop) -> None:
    reply = await shop.call("GET", "/api/v1/openapi.json", token="")
    assert reply.status == 200, reply
    assert reply.body == DOC
    validate_openapi(reply.body)


@pytest.mark.parametrize("op", operations(), ids=op_id)
def test_every_operation_says_what_it_answers(op: Operation) -> None:
    assert op.declared, f"{op_id(op)}: declare response= (a model), media_type= or status=204 on its route"
    entry = DOC["paths"][op.path][op.method.lower()]
    success = entry["responses"][str(op.status)]
    if op.status == 204:
        assert "content" not in success
    else:
        content = dict(success["content"])
        if op.response is not None:
            assert content.pop("application/json")["schema"] == {
                "$ref": f"#/components/schemas/{op.response.__name__}"}
            # And the documents it can answer instead (?format=), as bytes.
            assert set(content) == {k.strip() for k in (op.media_type or "").split(",") if k.strip()}
            assert all(c == {"schema": {"type": "string", "format": "binary"}} for c in content.values())
        else:
            # One type, or several chosen by ?format= (the audit log's CSV or .xlsx exports).
            assert list(content) == [k.strip() for k in (op.media_type or "").split(",") if k.strip()]
    errors = {int(s) for s in entry["responses"] if int(s) >= 400}
    assert {404, 503} <= errors  # an unknown tenant; overload
    for status in errors:
        assert entry["responses"][str(status)]["content"] == {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    if op.auth:
        assert entry["security"] == [{"bearer": []}]
        assert {401, 403} <= errors
    else:
        assert entry["security"] == []
    if op.body is not None or op.raw_body:
        assert {408, 413, 422} <= errors
        assert entry["requestBody"]["required"] is True
    if "parameters" in entry:
        assert 422 in errors
    assert entry["operationId"] and entry["summary"]


def test_operation_ids_are_unique() -> None:
    ids = [op["operationId"] for path in DOC["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))


def test_path_parameters_are_bounded_as_the_handlers_read_them() -> None:
    params = {(path, p["name"]): p["schema"] for path, item in DOC["paths"].items() for op in item.values()
              for p in op.get("parameters", []) if p["in"] == "path"}
    assert params[("/api/v1/tickets/{ticket_id}", "ticket_id")] == {"type": "integer", "minimum": 1,
                                                                     "maximum": MAX_BIG_ID}
    assert params[("/api/v1/routing/rules/{rule_id}", "rule_id")]["maximum"] == MAX_ID
    assert params[("/api/v1/agents/{agent_id}", "agent_id")]["maximum"] == MAX_ID
    assert params[("/api/v1/customers/{customer_id}", "customer_id")]["maximum"] == MAX_BIG_ID
    key = params[("/wechat/oa/{key}", "key")]
    assert key["type"] == "string" and key["pattern"] == f"^{WORD_ID_PATTERN}$" and key["maxLength"] == 40
    # Every {name} of every path is a parameter of each of its operations.
    for path, item in DOC["paths"].items():
        for op in item.values():
            named = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert named == {part[1:-1] for part in path.split("/") if part.startswith("{")}, path


def test_query_parameters_are_described() -> None:
    query = {p["name"]: p for p in DOC["paths"]["/api/v1/tickets"]["get"]["parameters"]}
    assert set(query) == {"view", "status", "channel", "group_id", "tag", "priority", "assignee_id", "unassigned",
                          "before_id", "limit"}
    assert query["limit"]["schema"]["maximum"] == 500 and not query["limit"]["required"]
    upload = {p["name"]: p for p in DOC["paths"]["/api/v1/attachments"]["post"]["parameters"]}
    assert upload["name"]["required"] is True
    history = {p["name"]: p for p in DOC["paths"]["/webchat/history"]["get"]["parameters"]}
    assert history["visitor_id"]["required"] is True
    visitor_upload = {p["name"]: p for p in DOC["paths"]["/webchat/attachments"]["post"]["parameters"]}
    assert visitor_upload["visitor_id"]["required"] is True and visitor_upload["name"]["required"] is True
    assert set(DOC["paths"]["/webchat/attachments"]["post"]["responses"]) >= {"201", "413", "415", "429"}


def test_a_path_parameter_must_be_declared() -> None:
    table = RouteTable("test")
    register = table.route("GET", "/things/{slug}", summary="a thing", response=BaseModel)

    async def thing(request: Any) -> Any:
        raise NotImplementedError

    with pytest.raises(ValueError, match="declare the path parameter 'slug'"):
        register(thing)


def test_a_route_without_a_declared_answer_is_listed_as_such() -> None:
    table = RouteTable("test")

    @table.route("GET", "/things", summary="things")
    async def things(request: Any) -> Any:
        raise NotImplementedError

    [op] = table.operations
    assert not op.declared
    doc = Api([table]).openapi()
    assert doc["paths"]["/things"]["get"]["responses"]["200"] == {"description": "Not described yet"}


# --- real answers against the document ---------------------------------------------------------
# What a plain valid request cannot succeed at here: a web-hook needs the platform's signature,
# and the message is a web chat one, not a mail.
NOT_SUCCESS = {
    ("GET", "/wechat/oa/{key}"): 403, ("POST", "/wechat/oa/{key}"): 403,
    ("GET", "/wechat/kf/{key}"): 403, ("POST", "/wechat/kf/{key}"): 403,
    ("GET", "/api/v1/email/messages/{message_id}/original"): 404,
    ("POST", "/api/v1/tickets/{ticket_id}/claim"): 409,  # not_waiting: the ticket has its agent
    # The shop is shared: its deletion is asked with a wrong confirmation (tests/test_purge.py does it
    # for real, and tests/test_operator.py checks the purge's answer against the operator's document).
    ("POST", "/api/v1/tenant/delete"): 422,
}
# Routes that end the token they are called with: each gets a seat of its own.
ENDS_TOKEN = {("POST", "/api/v1/auth/logout"), ("POST", "/api/v1/auth/logout-all"), ("PUT", "/api/v1/me/password")}


def in_calling_order() -> list[Operation]:
    """Deletions last, so that the rest find what they look up."""
    return sorted(operations(), key=lambda op: op.method == "DELETE")


async def call_as_a_client(shop: Shop, op: Operation) -> Reply:
    key = op_key(op)
    token: str | None = shop.owner_token if op.auth else ""
    if key in ENDS_TOKEN:  # a seat of its own: signing out everywhere would sign the shop's admin out
        token = await _login(shop.http, shop.domain, (await shop.info.add_agent(role="admin")).email)
    path = _path(op, shop, key=shop.kf_key) if "/wechat/kf/" in op.path else _path(op, shop)
    if "{canned_id}" in op.path:
        # The shop's canned reply is the plain agent's own: to the owner it does not exist (404). A
        # tenant's one of the owner's, then.
        made = await shop.call("POST", "/api/v1/canned-replies", token=token, body={
            "scope": "tenant", "shortcut": f"t{uuid.uuid4().hex[:6]}", "title": "T", "text": "Hi {{agent.name}}"})
        assert made.status == 201, made
        path = _path(op, shop, canned_id=made.body["canned_reply"]["id"])
    if key == ("POST", "/api/v1/attachments"):
        return await shop.call("POST", path + "?name=invoice.pdf", token=token, data=b"%PDF-1.7 invoice",
                               headers={"Content-Type": "application/pdf"})
    if key == ("POST", "/webchat/attachments"):
        return await shop.call("POST", path + f"?visitor_id={shop.visitor_id}&name=label.png", token=token, data=PNG,
                               headers={"Content-Type": "image/png"})
    if key == ("GET", "/webchat/history"):
        path += f"?visitor_id={shop.visitor_id}"
    if key == ("GET", "/exports/{export_id}/file"):
        path = shop.export["download_url"]  # the signed link the export was given
    if key == ("GET", "/api/v1/search"):
        path += "?q=parcel"  # the shop's first customer's message
    if op.raw_body:
        return await shop.call(op.method, path, token=token, data=b"<xml></xml>", headers={"Content-Type": "text/xml"})
    body = valid_bodies(shop).get(key)
    if key == ("POST", "/api/v1/customers/{customer_id}/erase"):  # a customer of its own, erased for real
        made = await shop.call("POST", "/api/v1/tickets", token=token, body={"customer": {"name": "Gone"}, "text": "x"})
        assert made.status == 201, made
        customer_id = made.body["ticket"]["customer_id"]
        return await shop.call(op.method, _path(op, shop, customer_id=customer_id), token=token,
                               body={"confirm": str(customer_id)})
    if key == ("PUT", "/api/v1/routing/rules/order"):  # every rule, as the route wants, last first
        rules = (await shop.call("GET", "/api/v1/routing/rules")).body["rules"]
        body = {"ids": [r["id"] for r in reversed(rules)]}
    if key == ("PUT", "/api/v1/me/password"):
        body = {"current_password": "not the password", "new_password": "an0ther password"}  # keep the seat usable
    return await shop.call(op.method, path, token=token, body=body)


@pytest.mark.parametrize("op", in_calling_order(), ids=op_id)
async def test_real_answers_match_the_document(shop: Shop, op: Operation) -> None:
    reply = await call_as_a_client(shop, op)
    expected = NOT_SUCCESS.get(op_key(op), op.status)
    if op_key(op) == ("PUT", "/api/v1/me/password"):
        expected = 403  # wrong_password: the seat's password stays as the fixtures know it
    assert reply.status == expected, reply
    answer = answer_for(op, reply.status)
    content = answer.get("content")
    if content is None:
        assert reply.text == ""
        return
    received = reply.headers.get("Content-Type", "").split(";")[0].strip()
    media = received if received in content else next(iter(content))
    if media != "*/*":
        assert received == media, (received, list(content))
    if media == "application/json":
        problems = undocumented(op.method, op.path, reply.status, reply.body)
        assert not problems, (op_id(op), problems[:5], reply.body)


def test_a_listed_key_the_handler_does_not_write_would_fail() -> None:
    """The check above has teeth: a ticket missing a key, or with one more, is refused."""
    validator = Draft202012Validator(schema_of({"$ref": "#/components/schemas/TicketEnvelope"}))
    ticket = {"id": 1, "subject": None, "status": "open", "priority": "normal", "channel": "webchat", "tags": [],
              "group_id": None, "assignee_id": None, "customer_id": 2, "customer": None,
              "created_at": "2026-12-01T00:00:00+00:00", "updated_at": "2026-12-01T00:00:00+00:00",
              "last_message_at": None, "assigned_at": None, "first_response_at": None, "solved_at": None,
              "reopen_count": 0}
    assert validator.is_valid({"ticket": ticket})
    assert not validator.is_valid({"ticket": {k: v for k, v in ticket.items() if k != "reopen_count"}})
    assert not validator.is_valid({"ticket": {**ticket, "secret_column": 1}})


# --- what schemathesis found -------------------------------------------------------------------
NULLS_REFUSED = [
    ("PATCH", "/api/v1/groups/{group_id}", {"name": None}, "name"),
    ("PATCH", "/api/v1/groups/{group_id}", {"strategy": None}, "strategy"),
    ("PATCH", "/api/v1/routing/rules/{rule_id}", {"position": None}, "position"),
    ("PATCH", "/api/v1/routing/rules/{rule_id}", {"conditions": None}, "conditions"),
    ("PATCH", "/api/v1/agents/{agent_id}", {"capacity": None}, "capacity"),
    ("PATCH", "/api/v1/agents/{agent_id}", {"active": None}, "active"),
    ("PATCH", "/api/v1/customers/{customer_id}", {"tags": None}, "tags"),
    ("PATCH", "/api/v1/email/mailboxes/{mailbox_id}", {"name": None}, "name"),
    ("PATCH", "/api/v1/email/mailboxes/{mailbox_id}", {"plus_addressing": None}, "plus_addressing"),
    ("PATCH", "/api/v1/email/mailboxes/{mailbox_id}", {"imap": {"folder": None}}, "imap.folder"),
    ("PATCH", "/api/v1/email/mailboxes/{mailbox_id}", {"smtp": {"security": None}}, "smtp.security"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), NULLS_REFUSED,
                         ids=[f"{m} {p} {f}" for m, p, _, f in NULLS_REFUSED])
async def test_null_for_a_value_that_cannot_be_empty_is_refused(shop: Shop, method: str, path: str,
                                                                 body: dict[str, Any], field: str) -> None:
    reply = await shop.call(method, path.format(**shop.ids()), body=body)
    error = assert_error(reply, 422, "validation_error")
    assert [".".join(map(str, d["loc"])) for d in error["details"]] == [field]


async def test_null_still_clears_what_may_be_empty(shop: Shop) -> None:
    ids = shop.ids()
    other = (await shop.call("POST", "/api/v1/groups", body={"name": f"overflow {uuid.uuid4().hex[:6]}"})).body
    group = f"/api/v1/groups/{ids['group_id']}"
    set_overflow = await shop.call("PATCH", group, body={"overflow_group_id": other["group"]["id"],
                                                         "overflow_after_seconds": 60})
    assert set_overflow.status == 200, set_overflow
    cleared = await shop.call("PATCH", group, body={"overflow_group_id": None, "overflow_after_seconds": None})
    assert cleared.status == 200, cleared
    assert cleared.body["group"]["overflow_group_id"] is None
    customer = await shop.call("PATCH", f"/api/v1/customers/{ids['customer_id']}", body={"email": None})
    assert customer.status == 200 and customer.body["customer"]["email"] is None, customer
    created = await shop.call("POST", "/api/v1/email/mailboxes", body={
        "address": f"nulls-{uuid.uuid4().hex[:6]}@{shop.domain}", "smtp": {"host": "127.0.0.1", "port": 2525}})
    assert created.status == 201, created
    mailbox = await shop.call("PATCH", f"/api/v1/email/mailboxes/{created.body['mailbox']['id']}",
                              body={"smtp": {"host": None, "port": None}, "imap": None})
    assert mailbox.status == 200 and mailbox.body["mailbox"]["smtp"]["host"] is None, mailbox
    agent = await shop.call("PATCH", f"/api/v1/agents/{ids['agent_id']}", body={"group_ids": None})
    assert agent.status == 200 and agent.body["agent"]["group_ids"] == [ids["group_id"]], agent


async def test_renaming_a_group_onto_another_name_is_a_conflict(shop: Shop) -> None:
    taken = f"taken {uuid.uuid4().hex[:6]}"
    assert (await shop.call("POST", "/api/v1/groups", body={"name": taken})).status == 201
    reply = await shop.call("PATCH", f"/api/v1/groups/{shop.group_id}", body={"name": taken})
    assert_error(reply, 409, "group_exists")
    same = await shop.call("PATCH", f"/api/v1/groups/{shop.group_id}", body={"name": "Front desk"})
    assert same.status == 200, same  # its own name is no conflict
