"""The route registry: every HTTP route of the hub, with what the OpenAPI document needs.

Each module that serves routes (``admin_api/routes/*.py``, a channel's ``routes.py`` and
``admin_routes.py``) keeps its own :class:`RouteTable`, filled by decorators on its handlers. Nothing
is registered anywhere by importing a module: the composition root (``channelhub.app``) gathers the
tables of the admin API and of the channels it was given into one :class:`Api`, which adds them to
the aiohttp application and writes the OpenAPI document. The tests walk the same :class:`Api`, so
a route without a cross-tenant or bad-input case fails there.

Websocket endpoints are kept in the tables too (:meth:`RouteTable.websocket`), so they are served
the same way, but they are not operations: OpenAPI does not describe websockets, and their frames
are tested on the sockets themselves.

How a route describes itself (the OpenAPI document is written from this alone, and
``tests/test_openapi.py`` and ``make apicheck`` hold the handlers to it)::

    @ROUTES.route("POST", "/api/v1/tickets/{ticket_id}/messages", summary="...",
                  body=MessageBody,            # the JSON body's model (or raw_body=True for bytes)
                  response=MessageEnvelope,    # the JSON answer's model, pydantic ...
                  status=201,                  # ... and its status (200 unless said)
                  errors=(409,))               # errors beyond those the registry derives

- ``response``: the model of the success answer, on :class:`web.schemas.Out` (every key the
  handler writes, no other). Response models describe, they never build the answer; they live
  beside the request models (``admin_api/responses.py``, a channel's ``schemas.py``). A route that
  answers something other than JSON says ``media_type=`` instead (a stored file: ``"*/*"``, the
  widget: ``"application/javascript"``, a web-hook's ``"text/plain"``); a 204 says neither. One
  that answers JSON or a document by its ``?format=`` gives both, the documents' types in
  ``media_type`` separated by commas (billing's statements and invoices). A
  route that says nothing is listed as "Not described yet", and ``tests/test_openapi.py`` fails.
- Path parameters come from the path template: a ``*_id`` is an id from 1 to ``MAX_BIG_ID`` (as
  :func:`web.http.int_param` reads it); ``path_params={"rule_id": IntId(MAX_ID)}`` when the
  handler passes a smaller ``limit``, ``path_params={"key": WordId(MAX_KEY)}`` for
  :func:`web.http.word_param`'s textual ids. Any other name must be declared (else the module
  fails to import).
- ``query``: the query string, as a pydantic model (a field per parameter; description only, the
  handler still reads ``request.query`` itself) or a list of :class:`QueryParam`.
- Errors, all of the one shape :class:`Error` (``{"error": {"code", "message", "details"?}}``, as
  :func:`web.http.error_response` writes them), are derived: 404 (an unknown tenant, so also any
  id looked up) and 503 (overload) on every route; 401 and 403 on a signed-in one; 422 where there
  is a body or a parameter; 408 and 413 where there is a body. ``errors=`` adds the others the
  handler can answer: 400, 401 (a sign-in), 402 (what billing can refuse), 409, 415 (a file type
  refused), 429, 502.
- ``auth``: signed in with a bearer token (the default); ``auth=False`` routes have no security.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from core.models import MAX_BIG_ID
from web.schemas import WORD_ID_PATTERN

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SCHEMA_REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class IntId:
    """A path id read by :func:`web.http.int_param`: plain digits, 1 to ``limit``."""

    limit: int = MAX_BIG_ID

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": 1, "maximum": self.limit}


@dataclass(frozen=True)
class WordId:
    """A textual path id read by :func:`web.http.word_param`."""

    max_length: int

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "maxLength": self.max_length, "pattern": f"^{WORD_ID_PATTERN}$"}


PathParam = IntId | WordId


@dataclass(frozen=True)
class QueryParam:
    name: str
    schema: Mapping[str, Any]
    required: bool = False
    description: str = ""


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    message: str
    # A validation_error's refusals, one per field ({"loc", "msg", "type"}), or what else explains
    # the refusal as an object: what a 402 required, the e-mails a 409 found taken, the ids a 404
    # did not find.
    details: list[dict[str, Any]] | dict[str, Any] | None = None


class Error(BaseModel):
    """Every error answer of the API (web.http.error_response, web.http.domain_response)."""

    model_config = ConfigDict(extra="forbid")
    error: ErrorDetail


ERROR_TEXT = {
    400: "Malformed input (an empty upload, a push that is not the platform's XML)",
    401: "No token, or a bad, expired, revoked or foreign one; a wrong password",
    402: "The prepaid balance cannot pay for it; nothing was changed",
    403: "The caller's role does not allow it, or a web-hook's signature is wrong",
    404: "Unknown tenant (the Host), or an id that does not exist for the caller",
    408: "The request body stopped arriving",
    409: "The state does not allow it",
    413: "The request body or file is too large",
    415: "A file of a type the route does not take",
    422: "Malformed input: invalid JSON, a refused field (details), id or query parameter",
    429: "Too many attempts: try again after Retry-After seconds",
    502: "The channel's platform refused or failed",
    503: "Overloaded, the channel's platform is unreachable, or the subsystem (billing) is offline "
         "(subsystem_offline): nothing was done, try again after Retry-After seconds",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again",
                               "schema": {"type": "string", "pattern": "^[0-9]+$"}}}

_PATH_PARAM = re.compile(r"\{([^}/:]+)(?::[^}]*)?\}")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None
    auth: bool
    tag: str
    # A route whose body is not JSON but raw bytes: a file upload, a platform's XML push.
    raw_body: bool = False
    response: type[BaseModel] | None = None
    status: int = 200
    # The success answer's media type when it is not JSON ("*/*" for a file of any type).
    media_type: str | None = None
    query: type[BaseModel] | tuple[QueryParam, ...] | None = None
    path_params: Mapping[str, PathParam] = field(default_factory=dict)
    errors: tuple[int, ...] = ()

    @property
    def declared(self) -> bool:
        """Whether the route says what it answers (a model, a media type, or nothing at all: 204)."""
        return self.response is not None or self.media_type is not None or self.status == 204

    def path_parameters(self) -> dict[str, PathParam]:
        out: dict[str, PathParam] = {}
        for name in _PATH_PARAM.findall(self.path):
            if name in self.path_params:
                out[name] = self.path_params[name]
            elif name.endswith("_id"):
                out[name] = IntId()
            else:
                raise ValueError(f"{self.method} {self.path}: declare the path parameter {name!r} (path_params=)")
        unknown = set(self.path_params) - set(out)
        if unknown:
            raise ValueError(f"{self.method} {self.path}: no path parameter {sorted(unknown)[0]!r}")
        return out

    def query_parameters(self) -> list[QueryParam]:
        if self.query is None:
            return []
        if isinstance(self.query, tuple):
            return list(self.query)
        return _query_from_model(self.query)

    def error_statuses(self) -> list[int]:
        found = {404, 503, *self.errors}
        if self.auth:
            found |= {401, 403}
        if self.body is not None or self.raw_body:
            found |= {408, 413, 422}
        if self.path_parameters() or self.query is not None:
            found.add(422)
        return sorted(found)


def _query_from_model(model: type[BaseModel]) -> list[QueryParam]:
    schema = model.model_json_schema(ref_template=SCHEMA_REF)
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        # A query parameter is absent or a string: never null.
        options = [o for o in prop.pop("anyOf", []) if o.get("type") != "null"]
        if len(options) == 1:
            prop.update(options[0])
        elif options:
            prop["anyOf"] = options
        if prop.get("default") is None:
            prop.pop("default", None)
        description = prop.pop("description", "")
        prop.pop("title", None)
        out.append(QueryParam(name, prop, name in required, description))
    return out


@dataclass(frozen=True)
class SocketRoute:
    path: str
    handler: Handler
    summary: str


class RouteTable:
    """The routes of one module, under one OpenAPI tag. ``cors``: the routes are called from other
    sites' pages (the web chat widget), so every answer, errors included, allows any origin."""

    def __init__(self, tag: str, *, cors: bool = False) -> None:
        self.tag = tag
        self.cors = cors
        self.operations: list[Operation] = []
        self.sockets: list[SocketRoute] = []

    def route(
        self, method: str, path: str, *, summary: str, body: type[BaseModel] | None = None, auth: bool = True,
        raw_body: bool = False, tag: str | None = None, response: type[BaseModel] | None = None, status: int = 200,
        media_type: str | None = None, query: type[BaseModel] | Sequence[QueryParam] | None = None,
        path_params: Mapping[str, PathParam] | None = None, errors: Iterable[int] = (),
    ) -> Callable[[Handler], Handler]:
        """Register a handler; the keywords are described in this module's docstring."""
        query_params = query if query is None or isinstance(query, type) else tuple(query)

        def register(handler: Handler) -> Handler:
            op = Operation(method.upper(), path, handler, summary, body, auth, tag or self.tag, raw_body,
                           response=response, status=status, media_type=media_type, query=query_params,
                           path_params=dict(path_params or {}), errors=tuple(sorted(set(errors))))
            op.path_parameters()  # an undeclared path parameter fails here, at import
            self.operations.append(op)
            return handler

        return register

    def websocket(self, path: str, *, summary: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.sockets.append(SocketRoute(path, handler, summary))
            return handler

        return register


class Api:
    """The routes of one application: the union of the tables it was built from."""

    def __init__(self, tables: Iterable[RouteTable], *, customer_facing: Iterable[RouteTable] = ()) -> None:
        """``customer_facing``: the tables whose routes customers and platforms call (web-hooks, the
        widget); they are served for a suspended tenant too, so nothing a customer sends is lost."""
        self.tables = list(tables)
        self.operations: list[Operation] = [op for t in self.tables for op in t.operations]
        self.sockets: list[SocketRoute] = [s for t in self.tables for s in t.sockets]
        self.cors_paths: frozenset[str] = frozenset(
            path for t in self.tables if t.cors for path in [*(op.path for op in t.operations),
                                                               *(s.path for s in t.sockets)])
        self.customer_facing: frozenset[tuple[str, str]] = frozenset(
            (op.method, op.path) for t in customer_facing for op in t.operations)
        seen: set[tuple[str, str]] = set()
        for op in self.operations:
            if (op.method, op.path) in seen:
                raise ValueError(f"two routes for {op.method} {op.path}")
            seen.add((op.method, op.path))
        self._document: dict[str, Any] | None = None

    def add_to(self, app: web.Application) -> None:
        for op in self.operations:
            app.router.add_route(op.method, op.path, op.handler)
        for sock in self.sockets:
            app.router.add_get(sock.path, sock.handler)

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document (built once: the routes do not change while the app runs)."""
        if self._document is None:
            self._document = self._build()
        return self._document

    def _build(self) -> dict[str, Any]:
        # Every model in one pass, so that a model used by several routes (or nested in several)
        # is one schema, and two models of one name are told apart rather than overwritten.
        wanted: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [(Error, "serialization")]
        for op in self.operations:
            if op.body is not None:
                wanted.append((op.body, "validation"))
            if op.response is not None:
                wanted.append((op.response, "serialization"))
        refs, defs = models_json_schema(list(dict.fromkeys(wanted)), ref_template=SCHEMA_REF)
        schemas: dict[str, Any] = defs.get("$defs", {})
        error_ref = refs[(Error, "serialization")]

        paths: dict[str, Any] = {}
        op_ids: set[str] = set()
        for op in self.operations:
            op_id = op.handler.__name__
            if op_id in op_ids:
                op_id = f"{op_id}_{op.method.lower()}_{re.sub(r'[^A-Za-z0-9]+', '_', op.path).strip('_')}"
            op_ids.add(op_id)
            entry: dict[str, Any] = {"operationId": op_id, "summary": op.summary, "tags": [op.tag]}
            parameters = [
                {"name": name, "in": "path", "required": True, "schema": param.schema()}
                for name, param in op.path_parameters().items()
            ]
            for q in op.query_parameters():
                parameters.append({"name": q.name, "in": "query", "required": q.required, "schema": dict(q.schema),
                                   **({"description": q.description} if q.description else {})})
            if parameters:
                entry["parameters"] = parameters
            if op.body is not None:
                entry["requestBody"] = {"required": True,
                                        "content": {"application/json": {"schema": refs[(op.body, "validation")]}}}
            elif op.raw_body:
                entry["requestBody"] = {"required": True,
                                        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}
            responses: dict[str, Any] = {str(op.status): self._success(op, refs)}
            for status in op.error_statuses():
                responses[str(status)] = {
                    "description": ERROR_TEXT.get(status, "Error"),
                    "content": {"application/json": {"schema": error_ref}},
                    **({"headers": RETRY_AFTER} if status in (429, 503) else {}),
                }
            entry["responses"] = responses
            entry["security"] = [{"bearer": []}] if op.auth else []
            paths.setdefault(op.path, {})[op.method.lower()] = entry
        return {
            "openapi": "3.1.0",
            "info": {"title": "channelhub API", "version": "v1",
                     "description": "Errors are always {\"error\": {\"code\", \"message\", \"details\"?}} (the Error "
                                    "schema). Every request is served for the tenant of its Host."},
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            },
        }

    @staticmethod
    def _success(op: Operation, refs: Mapping[Any, Any]) -> dict[str, Any]:
        description = op.summary.split(":")[0] if op.summary else "Success"
        if op.response is not None:
            content: dict[str, Any] = {"application/json": {"schema": refs[(op.response, "serialization")]}}
            # A route that answers JSON or a document (?format=pdf, xlsx) lists the documents too.
            for kind in filter(None, (k.strip() for k in (op.media_type or "").split(","))):
                content[kind] = {"schema": {"type": "string", "format": "binary"}}
            return {"description": description, "content": content}
        if op.media_type == "*/*":
            # A file of whatever type it was stored with: its bytes, nothing to validate.
            return {"description": description, "content": {"*/*": {}}}
        if op.media_type is not None:
            # One type, or several by the route's ?format= (the audit log's exports: CSV or .xlsx).
            kinds = [k.strip() for k in op.media_type.split(",") if k.strip()]
            return {"description": description, "content": {
                kind: {"schema": {"type": "string"} if kind.startswith("text/") or "javascript" in kind
                       else {"type": "string", "format": "binary"}} for kind in kinds}}
        if op.status == 204:
            return {"description": description}
        # Not declared yet (tests/test_openapi.py fails on it): say so rather than guess.
        return {"description": "Not described yet"}
