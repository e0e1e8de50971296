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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
        raw_body: bool = False, tag: str | None = None,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.operations.append(Operation(method.upper(), path, handler, summary, body, auth, tag or self.tag,
                                             raw_body))
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

    def add_to(self, app: web.Application) -> None:
        for op in self.operations:
            app.router.add_route(op.method, op.path, op.handler)
        for sock in self.sockets:
            app.router.add_get(sock.path, sock.handler)

    def openapi(self) -> dict[str, Any]:
        paths: dict[str, Any] = {}
        schemas: dict[str, Any] = {}
        for op in self.operations:
            entry: dict[str, Any] = {
                "summary": op.summary,
                "tags": [op.tag],
                "responses": {"default": {"description": "JSON; errors are {\"error\": {\"code\", \"message\"}}"}},
            }
            if op.auth:
                entry["security"] = [{"bearer": []}]
            if op.body is not None:
                schema = op.body.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, sub in schema.pop("$defs", {}).items():
                    schemas[name] = sub
                schemas[op.body.__name__] = schema
                entry["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}},
                }
            elif op.raw_body:
                entry["requestBody"] = {"required": True,
                                        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}
            paths.setdefault(op.path, {})[op.method.lower()] = entry
        return {
            "openapi": "3.1.0",
            "info": {"title": "channelhub API", "version": "v1"},
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            },
        }
