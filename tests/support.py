"""Helpers shared by the tests that probe the edges: raw HTTP calls that keep the status and body
(the client library raises on errors and drops the body), raw websockets, the error-shape check,
and the routes of the API with their path parameters filled in."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from jsonschema import Draft202012Validator
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select

from channelhub.app import build_api
from core import billing
from core.db import Database, tenant_scoped_models
from core.models import LoginLog, Tenant
from core.statements import invoice_number
from web.api import Operation

_NO_BODY = object()


@dataclass
class Reply:
    status: int
    body: Any
    text: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.text[:300]!r})"


class Http:
    """Raw HTTP against one server: any Host, any token, any body (JSON or bytes)."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session

    async def __call__(
        self, method: str, path: str, *, host: str, token: str | None = None, json_body: Any = _NO_BODY,
        data: Any = None, headers: dict[str, str] | None = None,
    ) -> Reply:
        all_headers = {"Host": host, **(headers or {})}
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        if json_body is not _NO_BODY:
            data = json.dumps(json_body).encode()
        if data is not None:
            all_headers.setdefault("Content-Type", "application/json")
        async with self.session.request(method, self.base_url + path, data=data, headers=all_headers) as resp:
            text = await resp.text(errors="replace")
            try:
                body = json.loads(text) if text else None
            except ValueError:
                body = None
            return Reply(resp.status, body, text, resp.headers)

    async def ws(self, path: str, *, host: str) -> aiohttp.ClientWebSocketResponse:
        return await self.session.ws_connect(self.base_url + path, headers={"Host": host})


def assert_error(reply: Reply, status: int, code: str | None = None) -> dict[str, Any]:
    """The answer is ``status`` with exactly the documented error shape (and ``code`` when given)."""
    assert reply.status == status, reply
    assert isinstance(reply.body, dict) and set(reply.body) == {"error"}, reply
    error = reply.body["error"]
    assert isinstance(error, dict), reply
    assert {"code", "message"} <= set(error) <= {"code", "message", "details"}, reply
    assert isinstance(error["code"], str) and error["code"], reply
    assert isinstance(error["message"], str) and error["message"], reply
    if code is not None:
        assert error["code"] == code, reply
    return error


def assert_error_frame(frame: dict[str, Any], code: str | None = None) -> dict[str, Any]:
    """An error over a websocket: an ``error`` frame, or a failed ``result`` (when the frame had a ref)."""
    if frame.get("type") == "result":
        assert frame.get("ok") is False, frame
        error = frame["error"]
    else:
        assert frame.get("type") == "error", frame
        error = {k: v for k, v in frame.items() if k not in ("type", "ref", "client_id")}
    assert {"code", "message"} <= set(error) <= {"code", "message", "details"}, frame
    assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"], frame
    if code is not None:
        assert error["code"] == code, frame
    return error


async def next_frame(ws: aiohttp.ClientWebSocketResponse, *, skip: Callable[[dict[str, Any]], bool] | None = None,
                     wait: float = 5.0) -> dict[str, Any]:
    """The next JSON frame (skipping those ``skip`` matches, e.g. live events); fails on close."""
    async with asyncio.timeout(wait):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg.type} {msg.data!r}"
            frame: dict[str, Any] = json.loads(msg.data)
            if skip is None or not skip(frame):
                return frame


async def expect_closed(ws: aiohttp.ClientWebSocketResponse, wait: float = 5.0) -> None:
    async with asyncio.timeout(wait):
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                return
            assert msg.type != aiohttp.WSMsgType.ERROR, msg


def op_key(op: Operation) -> tuple[str, str]:
    return (op.method, op.path)


def op_id(op: Operation) -> str:
    return f"{op.method} {op.path}"


def operations() -> list[Operation]:
    """Every HTTP operation the test server serves (the admin API's and every channel's)."""
    return list(build_api().operations)


def fill(path: str, **params: Any) -> str:
    return path.format(**params)


async def tenant_rows(db: Database, tenant_id: int) -> dict[str, list[dict[str, Any]]]:
    """Every stored row of a tenant, table by table: the oracle for "nothing changed" and "nothing
    accepted was lost". Sign-in attempts are left out: a refused one is rightly recorded."""
    out: dict[str, list[dict[str, Any]]] = {}
    async with db.read() as session:
        tenant = await session.get(Tenant, tenant_id)
        assert tenant is not None
        out["tenants"] = [{"name": tenant.name, "domain": tenant.domain, "status": tenant.status}]
        for model in tenant_scoped_models():
            table: Any = model
            if model is LoginLog:
                continue
            columns = [c.key for c in sa_inspect(model).column_attrs]
            rows = (await session.execute(select(table).where(table.tenant_id == tenant_id))).scalars().all()
            out[model.__tablename__] = sorted(({c: getattr(r, c) for c in columns} for r in rows), key=repr)
    return out


async def open_billing(db: Database, tenant_id: int, *, seats: int = 2) -> str:
    """A billing contract for the tenant (from today, 365.00 CNY a seat-year), a top-up and a
    charge for ``seats`` seats, as the operator would make them: the charge's invoice number.
    (From today: seats added later in the tests are charged for the term that is running.)"""
    now = datetime.now(UTC)
    operator = billing.Actor("operator", 1)
    async with db.session() as session:
        await billing.open_contract(session, tenant_id, price_per_seat_year=36_500, currency="CNY",
                                    term_start=now.date(), now=now, actor=operator)
        await billing.top_up(session, tenant_id, 1000 * 36_500, now=now, actor=operator, reference="test")
        charge = await billing.charge_for_seats(session, tenant_id, seats, now=now, actor=operator)
        await session.flush()
        return invoice_number(tenant_id, charge.id)


_DOCS = Path(__file__).resolve().parent.parent / "docs"
_ROLE_ROW = re.compile(r"^\| `(?P<method>[A-Z]+) (?P<path>[^`]+)` \| (?P<cells>.+) \|$")


def role_table(doc: str, roles: tuple[str, ...]) -> dict[tuple[str, str], dict[str, bool]]:
    """A document's "Who may call what" table (docs/api.md, docs/operator.md): for each operation,
    which of ``roles`` (the table's columns, in order) may call it."""
    text = (_DOCS / doc).read_text(encoding="utf-8")
    section = text.split("## Who may call what", 1)[1].split("\n## ", 1)[0]
    rows: dict[tuple[str, str], dict[str, bool]] = {}
    for line in section.splitlines():
        found = _ROLE_ROW.match(line.strip())
        if found is None:
            continue
        cells = [c.strip() for c in found["cells"].split("|")]
        assert len(cells) == len(roles) and set(cells) <= {"yes", "—"}, line
        key = (found["method"], found["path"])
        assert key not in rows, f"{key} is in the table twice"
        rows[key] = {role: cell == "yes" for role, cell in zip(roles, cells, strict=True)}
    return rows


def undocumented(method: str, path: str, status: int, body: Any, doc: dict[str, Any] | None = None) -> list[str]:
    """How an answer of ``method path`` (the path template) with ``status`` and JSON ``body`` departs
    from the OpenAPI document: the status unlisted, or the body not of the schema listed for it
    (jsonschema, formats included). Empty when the document tells the truth."""
    doc = doc or openapi_document()
    responses = doc["paths"][path][method.lower()]["responses"]
    if str(status) not in responses:
        return [f"{method} {path}: {status} is not among the documented {sorted(responses)}"]
    schema = responses[str(status)].get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return [f"{method} {path}: {status} documents no JSON body"]
    validator = Draft202012Validator({**schema, "components": doc["components"]},
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}" for e in validator.iter_errors(body)]


_DOCUMENT: dict[str, Any] = {}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document the test server serves (built once)."""
    if not _DOCUMENT:
        _DOCUMENT.update(build_api().openapi())
    return _DOCUMENT


# A real 2x2 PNG (a picture a browser decodes: thumbnails, uploads).
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000002000000020802000000fdd49a730000001049444154789c63f8cfc0"
    "00440c100a001fee03fd8b5f14d40000000049454e44ae426082")
