"""Who may call what: docs/api.md's table of role x route, held against the code.

Every HTTP route the hub serves is in the table, and the table says what the route does: called
with a token of each role, a route a role may not use answers ``403 admin_only`` (before anything
is read or changed), and one it may use answers anything but 401 and 403. Routes for anyone take
no token at all (the registry says so).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import assert_error, op_id, op_key, operations, role_table
from tests.test_bad_input import Shop, _login, _path, shop, valid_bodies  # noqa: F401  (shop: the fixture)

ROLES = ("anyone", "agent", "supervisor", "admin", "owner")
_ROW = re.compile(r"^\| `(?P<method>[A-Z]+) (?P<path>[^`]+)` \| (?P<cells>.+) \|$")
# Routes that end the token they are called with: each call gets a token of its own.
_ENDS_TOKEN = {("POST", "/api/v1/auth/logout"), ("POST", "/api/v1/auth/logout-all"),
               ("PUT", "/api/v1/me/password")}


def table() -> dict[tuple[str, str], dict[str, bool]]:
    return role_table("api.md", ROLES)


def test_every_route_is_in_the_table_and_anyones_routes_take_no_token() -> None:
    rows = table()
    served = {op_key(op): op for op in operations()}
    assert set(rows) == set(served), (f"not in docs/api.md: {sorted(set(served) - set(rows))}; "
                                      f"no longer served: {sorted(set(rows) - set(served))}")
    for key, op in served.items():
        assert rows[key]["anyone"] == (not op.auth), f"{key}: the table and the registry disagree on sign-in"
        if op.auth:  # a role's access only narrows as roles go down
            assert rows[key]["owner"], key
            assert rows[key]["admin"] or not rows[key]["supervisor"], key
            assert rows[key]["supervisor"] or not rows[key]["agent"], key


@dataclass
class Staff:
    shop: Shop
    tokens: dict[str, str]

    async def token(self, role: str, key: tuple[str, str]) -> str:
        """The role's token; for a route that ends tokens (signing out, a new password), a token of
        a new agent of that role, so the others' tokens and passwords stay as they are."""
        if key not in _ENDS_TOKEN:
            return self.tokens[role]
        throwaway = await self.shop.info.add_agent(role=role)
        return await _login(self.shop.http, self.shop.domain, throwaway.email)


@pytest.fixture(scope="module")
async def staff(shop: Shop) -> AsyncIterator[Staff]:  # noqa: F811 - the fixture imported above
    supervisor = await shop.info.add_agent(role="supervisor")
    owner = await shop.info.add_agent(role="owner")
    tokens = {"agent": shop.agent_token, "admin": shop.admin_token,
              "supervisor": await _login(shop.http, shop.domain, supervisor.email),
              "owner": await _login(shop.http, shop.domain, owner.email)}
    yield Staff(shop, tokens)


def _signed_in_operations() -> list[Any]:
    return [op for op in operations() if op.auth]


@pytest.mark.parametrize("op", _signed_in_operations(), ids=op_id)
async def test_each_role_gets_what_the_table_says(staff: Staff, op: Any) -> None:
    allowed = table()[op_key(op)]
    s = staff.shop
    body = valid_bodies(s).get(op_key(op))
    kwargs: dict[str, Any] = {"body": body} if body is not None else {}
    if op.raw_body:
        kwargs = {"data": b"a file", "headers": {"Content-Type": "text/plain"}}
    path = _path(op, s)
    if op.path == "/api/v1/attachments":
        path += f"?name=roles-{uuid.uuid4().hex[:6]}.txt"
    # The roles without access first: their refusal must come before anything changes.
    refusal = ("owner_only" if not allowed["admin"] else "admin_only" if not allowed["supervisor"]
               else "supervisor_only")
    for role in sorted(ROLES[1:], key=lambda r: allowed[r]):
        reply = await s.call(op.method, path, token=await staff.token(role, op_key(op)), **kwargs)
        if allowed[role]:
            assert reply.status not in (401, 403), (role, reply)
        else:
            assert_error(reply, 403, refusal)
