"""The HTTP edge shared by the admin API and the channels: JSON errors, tenancy by Host, the signed-in
agent, request bodies validated by pydantic schemas, and strict ids from paths and queries."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from datetime import date
from typing import Any, TypeVar, overload

import sqlalchemy.exc
from aiohttp import web
from pydantic import BaseModel, ValidationError

from core.auth import Principal
from core.errors import Busy, DomainError, Forbidden, InvalidInput, NotFound, RequestTimeout, TooLarge, UnknownTenant
from core.hub import Hub
from core.models import MAX_BIG_ID, TenantStatus
from core.tenancy import TenantRef, TenantResolver, normalize_host
from web.api import Api, Handler
from web.assets import is_customer_facing
from web.schemas import WORD_ID_PATTERN

logger = logging.getLogger(__name__)

HUB = web.AppKey("hub", Hub)
API = web.AppKey("api", Api)
RESOLVER = web.AppKey("resolver", TenantResolver)
TENANT = web.RequestKey("tenant", TenantRef)

M = TypeVar("M", bound=BaseModel)

# Paths served without a tenant, on any host (the operator's health, readiness and metrics: web/ops.py).
TENANTLESS = ("/healthz", "/readyz", "/metrics")


def error_response(status: int, code: str, message: str, details: Any = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return web.json_response({"error": body}, status=status)


# Overload below us: no database connection came free within the pool timeout (SQLAlchemy's
# "QueuePool limit ... reached"). Nothing was done, so the client may simply try again.
OVERLOAD = (sqlalchemy.exc.TimeoutError,)


def as_busy(exc: BaseException) -> Busy:
    """The domain error an overload becomes, at the HTTP and socket edges alike."""
    logger.warning("overloaded (%s): answering busy", type(exc).__name__)
    return Busy("the service is busy; try again shortly")


def domain_response(exc: DomainError) -> web.Response:
    """A domain error as its JSON answer; one that says when to try again (overload, throttling)
    carries Retry-After in whole seconds."""
    response = web.json_response({"error": exc.to_dict()}, status=exc.status)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return response


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await _errors_as_json(request, handler)
    resource = request.match_info.route.resource
    if resource is not None and resource.canonical in request.app[API].cors_paths:
        # A page on another site (the web chat widget) must be able to read our error answers too.
        response.headers.setdefault("Access-Control-Allow-Origin", "*")
    return response


async def _errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as exc:
        return domain_response(exc)
    except OVERLOAD as exc:
        return domain_response(as_busy(exc))
    except ConnectionResetError:
        # The client went away (aiohttp's "Cannot write to closing transport"): not an error of ours,
        # and there is no one left to answer.
        logger.debug("client went away during %s %s", request.method, request.path)
        raise
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "request_too_large", "the request body is too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        return error_response(exc.status, code, exc.reason or "error")
    except Exception:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "something went wrong on our side; it has been logged")


# The operator's API lives under this prefix, on the operator host only (admin_api/operator).
OPERATOR_PREFIX = "/operator/"


@web.middleware
async def tenancy_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Which tenant the request is for, by its Host; the operator host serves the operator's API
    and nothing else, and a tenant's domain never serves it. A suspended tenant's domains serve
    only what customers and platforms call (its agents get 403 ``tenant_suspended``), an ended
    one's and a purging one's nothing (403 ``tenant_ended``, ``tenant_purged``)."""
    if request.path in TENANTLESS:
        return await handler(request)
    operator_host = request.app[HUB].settings.operator_host
    on_operator_path = request.path.startswith(OPERATOR_PREFIX)
    if operator_host is not None and normalize_host(request.host) == operator_host:
        if not on_operator_path:
            raise NotFound("the operator host serves the operator API (/operator/v1/...) only",
                           code="not_found")
        return await handler(request)
    if on_operator_path:
        raise NotFound(f"{request.path} is not served here", code="not_found")
    tenant = request[TENANT] = await request.app[RESOLVER].resolve(request.host)
    if not tenant.active:
        route = request.match_info.route
        resource = route.resource
        served = tenant.status == TenantStatus.SUSPENDED and (
            (resource is not None and (route.method, resource.canonical) in request.app[API].customer_facing)
            or is_customer_facing(request.match_info.handler))
        if not served:
            if tenant.status in (TenantStatus.PURGING, TenantStatus.PURGED):
                raise Forbidden(f"the service for {tenant.domain} has ended and its data is being deleted",
                                code="tenant_purged")
            if tenant.status == TenantStatus.SUSPENDED:
                raise Forbidden(f"the service for {tenant.domain} is suspended; its customers' messages are still "
                                "received", code="tenant_suspended")
            raise Forbidden(f"the service for {tenant.domain} has ended", code="tenant_ended")
    return await handler(request)


def tenant_of(request: web.Request) -> TenantRef:
    tenant = request.get(TENANT)
    if tenant is None:
        raise UnknownTenant("no tenant for this request")
    return tenant


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def principal_of(request: web.Request, *, admin: bool = False, owner: bool = False) -> Principal:
    """The signed-in agent; ``admin``: an admin or the owner, ``owner``: the owner only."""
    hub = request.app[HUB]
    tenant = tenant_of(request)
    principal = await hub.principals.of(tenant.id, bearer_token(request))
    if owner and not principal.is_owner:
        raise Forbidden("this needs the owner role", code="owner_only")
    if admin and not principal.is_admin:
        raise Forbidden("this needs the admin role", code="admin_only")
    return principal


async def read_json(request: web.Request) -> Any:
    hub = request.app[HUB]
    if request.content_length is not None and request.content_length > hub.settings.max_request_bytes:
        raise TooLarge(f"request body over {hub.settings.max_request_bytes} bytes", code="request_too_large")
    try:
        async with asyncio.timeout(hub.settings.read_timeout):
            raw = await request.read()
    except TimeoutError:
        raise RequestTimeout(f"the body did not arrive within {hub.settings.read_timeout}s") from None
    if not raw:
        raise InvalidInput("a JSON body is required", code="invalid_json")
    data = parse_json(raw, "the body")
    check_strings(data)
    return data


async def read_file_body(request: web.Request, limit: int, *, code: str, what: str) -> bytes:
    """A raw body of at most ``limit`` bytes, read as it streams in (the app's JSON body limit does
    not apply): refused at once when its Content-Length says more, else as soon as it grows past.
    A large file may take long; what is bounded is the wait for each next chunk (read_timeout)."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"{what} is larger than {limit} bytes", code=code)
    timeout = request.app[HUB].settings.read_timeout
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            async with asyncio.timeout(timeout):
                chunk = await request.content.read(64 * 1024)
        except TimeoutError:
            raise RequestTimeout(f"{what} stopped arriving for {timeout}s") from None
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"{what} is larger than {limit} bytes", code=code)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: str | bytes, what: str) -> Any:
    """JSON from a request body or a websocket frame: whatever is wrong with it is invalid_json."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        # ValueError covers bad syntax and bad UTF-8; RecursionError comes from nesting deeper
        # than the parser's recursion limit ("[[[[..."), which fits easily in an allowed body.
        raise InvalidInput(f"{what} is not valid JSON", code="invalid_json") from None


# NUL, which PostgreSQL text cannot hold (SQLite can: the same input must not succeed on one
# database and fail with a 500 on the other), and unpaired surrogates, which are not UTF-8.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def check_strings(data: Any) -> None:
    """Refuse a decoded body or frame with a string (key or value) that cannot be stored."""
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            if _UNSTORABLE.search(value):
                raise InvalidInput(f"{where or 'body'}: text may not contain NUL characters or unpaired surrogates",
                                   code="invalid_text")
        elif isinstance(value, dict):
            for key, item in value.items():
                path = f"{where}.{key}" if where else str(key)
                stack.append((key, path))
                stack.append((item, path))
        elif isinstance(value, list):
            stack.extend((item, f"{where}.{i}" if where else str(i)) for i, item in enumerate(value))


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        first = details[0] if details else {"loc": [], "msg": "invalid"}
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInput(f"{where}: {first['msg']}", code="validation_error", details=details) from None


async def body(request: web.Request, model: type[M]) -> M:
    return validate(model, await read_json(request))


_INTEGER = re.compile(r"-?[0-9]+")


def strict_int(raw: str) -> int:
    """An integer written the plain way: an optional minus and ASCII digits. Python's int() also
    takes " 7", "+7", "7_0" and other scripts' digits ("٣"), so many spellings would name one
    ticket (and pass for a valid id in a log or a cache key)."""
    if not _INTEGER.fullmatch(raw):
        raise ValueError(f"not an integer: {raw!r}")
    return int(raw)


def int_param(request: web.Request, name: str, *, limit: int = MAX_BIG_ID) -> int:
    """A positive id from the path; ``limit`` is the largest its column holds (MAX_ID for INTEGER keys)."""
    raw = request.match_info.get(name, "")
    try:
        value = strict_int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer", code="invalid_id") from None
    if value <= 0 or value > limit:
        raise InvalidInput(f"{name} is out of range", code="invalid_id")
    return value


def query_value(request: web.Request, name: str) -> str | None:
    """A query parameter given at most once (a repeated one would be read one way here and another
    way by a proxy or a log); absent or empty: None."""
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise InvalidInput(f"{name} is given more than once", code="invalid_query")
    return values[0] if values and values[0] != "" else None


_QUERY_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def query_date(request: web.Request, name: str) -> date | None:
    """A day from the query string, written YYYY-MM-DD; absent or empty: None."""
    raw = query_value(request, name)
    if raw is None:
        return None
    try:
        if not _QUERY_DATE.fullmatch(raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a date written YYYY-MM-DD, not {raw[:40]!r}",
                           code="invalid_query") from None


@overload
def query_int(request: web.Request, name: str, default: int, *, lo: int, hi: int) -> int: ...
@overload
def query_int(request: web.Request, name: str, default: None, *, lo: int, hi: int) -> int | None: ...


def query_int(request: web.Request, name: str, default: int | None, *, lo: int, hi: int) -> int | None:
    """An integer from the query string, written the plain way and within [lo, hi]; absent or
    empty: ``default``."""
    raw = query_value(request, name)
    if raw is None:
        return default
    try:
        value = strict_int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer", code="invalid_query") from None
    if not lo <= value <= hi:
        raise InvalidInput(f"{name} must be between {lo} and {hi}", code="invalid_query")
    return value


_WORD_ID = re.compile(WORD_ID_PATTERN)


def word_param(request: web.Request, name: str, *, max_length: int) -> str:
    """A textual id from the path (a webhook key, a platform's media id): 1 to ``max_length``
    (what its column holds) letters, digits or ``_ . = + -``. Anything else names nothing and is
    refused before it reaches the database (NUL and overlong values fail there) or another API."""
    raw = request.match_info.get(name, "")
    if len(raw) > max_length or not _WORD_ID.fullmatch(raw):
        raise InvalidInput(f"{name} must be 1-{max_length} letters, digits, _ . = + or -", code="invalid_id")
    return raw
