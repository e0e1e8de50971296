"""The agent workspace's views (GET /api/v1/tickets?view=...), filters and live counts
(GET /api/v1/tickets/counts), for an agent and for a supervisor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.conftest import PASSWORD, AgentInfo, Server, TenantInfo
from tests.support import Http, assert_error


@dataclass
class Desk:
    """A team and its tickets:

    - ``mine``: agent's, high priority, tagged vip (by hand);
    - ``theirs``: the colleague's, pending, in the agent's group;
    - ``queued``: waiting in the agent's group;
    - ``chat``: a web chat waiting in the tenant-wide queue;
    - ``done``: agent's, solved;
    - ``elsewhere``: waiting in a group the agent is not in;
    - ``closed``: agent's, closed (in no view).
    """

    t: TenantInfo
    http: Http
    agent: AgentInfo
    colleague: AgentInfo
    group: int
    other_group: int
    tokens: dict[str, str]
    ids: dict[str, int]

    async def get(self, who: str, path: str) -> Any:
        reply = await self.http("GET", path, host=self.t.domain, token=self.tokens[who])
        assert reply.status == 200, reply
        return reply.body

    async def listed(self, who: str, query: str) -> set[str]:
        names = {v: k for k, v in self.ids.items()}
        body = await self.get(who, f"/api/v1/tickets?{query}")
        return {names.get(t["id"], f"other {t['id']}") for t in body["tickets"]}


async def _login(http: Http, t: TenantInfo, email: str) -> str:
    reply = await http("POST", "/api/v1/auth/login", host=t.domain, json_body={"email": email, "password": PASSWORD})
    assert reply.status == 200, reply
    return str(reply.body["token"])


@pytest.fixture
async def desk(server: Server, tenant: TenantInfo) -> AsyncIterator[Desk]:
    async with aiohttp.ClientSession() as session:
        http = Http(server.url, session)
        group = await tenant.add_group("Billing")
        other_group = await tenant.add_group("Sales")
        agent = await tenant.add_agent(group_ids=[group], name="Agent")
        colleague = await tenant.add_agent(group_ids=[group], name="Colleague")
        boss = await tenant.add_agent(role="supervisor", name="Boss")
        tokens = {"agent": await _login(http, tenant, agent.email),
                  "colleague": await _login(http, tenant, colleague.email),
                  "boss": await _login(http, tenant, boss.email)}

        async def made(**body: Any) -> int:
            reply = await http("POST", "/api/v1/tickets", host=tenant.domain, token=tokens["boss"],
                               json_body={"customer": {"name": "Customer"}, "text": "a call", **body})
            assert reply.status == 201, reply
            return int(reply.body["ticket"]["id"])

        async def patch(ticket_id: int, **body: Any) -> None:
            reply = await http("PATCH", f"/api/v1/tickets/{ticket_id}", host=tenant.domain, token=tokens["boss"],
                               json_body=body)
            assert reply.status == 200, reply

        ids = {"mine": await made(assignee_id=agent.id, priority="high", tags=["VIP"]),
               "theirs": await made(assignee_id=colleague.id, group_id=group),
               "queued": await made(group_id=group, tags=["refund"])}
        chat = await http("POST", "/webchat/messages", host=tenant.domain,
                          json_body={"client_id": "c1", "text": "hello from the web"})
        assert chat.status == 201, chat
        listed = await http("GET", "/api/v1/tickets?channel=webchat", host=tenant.domain, token=tokens["boss"])
        [ids["chat"]] = [int(t["id"]) for t in listed.body["tickets"]]
        ids["done"] = await made(assignee_id=agent.id)
        ids["elsewhere"] = await made(group_id=other_group, priority="high")
        ids["closed"] = await made(assignee_id=agent.id)
        await patch(ids["theirs"], status="pending")
        await patch(ids["done"], status="solved")
        await patch(ids["closed"], status="closed")
        yield Desk(tenant, http, agent, colleague, group, other_group, tokens, ids)


async def test_views_and_counts_of_an_agent(desk: Desk) -> None:
    assert await desk.listed("agent", "view=mine") == {"mine"}
    assert await desk.listed("agent", "view=unassigned") == {"queued", "chat"}
    # Pending and solved within what the agent may see: their colleague's pending ticket is not.
    assert await desk.listed("agent", "view=pending") == set()
    assert await desk.listed("agent", "view=solved") == {"done"}
    assert await desk.listed("colleague", "view=pending") == {"theirs"}
    refused = await desk.http("GET", "/api/v1/tickets?view=all", host=desk.t.domain, token=desk.tokens["agent"])
    assert_error(refused, 403, "supervisor_only")
    counts = (await desk.get("agent", "/api/v1/tickets/counts"))["counts"]
    assert counts == {"mine": 1, "unassigned": 2, "pending": 0, "solved": 1}
    # Without a view: as before (own and visible waiting ones, closed included).
    assert await desk.listed("agent", "") == {"mine", "queued", "chat", "done", "closed"}


async def test_views_and_counts_of_a_supervisor(desk: Desk) -> None:
    assert await desk.listed("boss", "view=mine") == set()
    assert await desk.listed("boss", "view=unassigned") == {"queued", "chat", "elsewhere"}
    assert await desk.listed("boss", "view=all") == {"mine", "theirs", "queued", "chat", "elsewhere"}
    assert await desk.listed("boss", "view=pending") == {"theirs"}
    assert await desk.listed("boss", "view=solved") == {"done"}
    counts = (await desk.get("boss", "/api/v1/tickets/counts"))["counts"]
    assert counts == {"mine": 0, "unassigned": 3, "all": 5, "pending": 1, "solved": 1}
    # The counts follow the tickets: the console reads them again on ticket events.
    reply = await desk.http("POST", f"/api/v1/tickets/{desk.ids['queued']}/claim", host=desk.t.domain,
                            token=desk.tokens["agent"])
    assert reply.status == 200, reply
    agent_counts = (await desk.get("agent", "/api/v1/tickets/counts"))["counts"]
    assert (agent_counts["mine"], agent_counts["unassigned"]) == (2, 1)
    assert (await desk.get("boss", "/api/v1/tickets/counts"))["counts"]["unassigned"] == 2


async def test_filters_combine_with_views_and_each_other(desk: Desk) -> None:
    assert await desk.listed("boss", "channel=webchat") == {"chat"}
    assert await desk.listed("boss", "view=all&channel=manual") == {"mine", "theirs", "queued", "elsewhere"}
    assert await desk.listed("boss", f"group_id={desk.group}") == {"theirs", "queued"}
    assert await desk.listed("boss", f"view=unassigned&group_id={desk.group}") == {"queued"}
    assert await desk.listed("boss", "tag=vip") == {"mine"}
    assert await desk.listed("boss", "tag=VIP") == {"mine"}
    assert await desk.listed("boss", "tag=refund&view=unassigned") == {"queued"}
    assert await desk.listed("boss", "tag=nothing") == set()
    assert await desk.listed("boss", "priority=high") == {"mine", "elsewhere"}
    assert await desk.listed("boss", "priority=high&view=unassigned") == {"elsewhere"}
    assert await desk.listed("boss", f"assignee_id={desk.colleague.id}") == {"theirs"}
    assert await desk.listed("boss", f"assignee_id={desk.agent.id}&view=solved") == {"done"}
    assert await desk.listed("boss", "view=all&status=pending") == {"theirs"}
    assert await desk.listed("boss", "status=closed") == {"closed"}
    # An agent's filters stay within what they may see.
    assert await desk.listed("agent", "priority=high") == {"mine"}
    assert await desk.listed("agent", f"assignee_id={desk.colleague.id}") == set()
    # Pages: newest first, by before_id.
    first = await desk.get("boss", "/api/v1/tickets?view=all&limit=2")
    ids = [t["id"] for t in first["tickets"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 2
    rest = await desk.get("boss", f"/api/v1/tickets?view=all&before_id={ids[-1]}")
    assert len(rest["tickets"]) == 3 and not {t["id"] for t in rest["tickets"]} & set(ids)


async def test_bad_view_and_filter_parameters(desk: Desk) -> None:
    for query in ("view=bogus", "view=", "view=mine&view=all", "view=Mine", "priority=bogus",
                  "priority=high&priority=low",
                  "channel=Web%20Chat", "channel=" + "a" * 41, "tag=" + "t" * 65, "tag=%20", "tag=a&tag=b",
                  "group_id=0", "group_id=x", f"group_id={2**31}", "unassigned=maybe", "status=open&status=new",
                  "channel=a&channel=b"):
        reply = await desk.http("GET", f"/api/v1/tickets?{query}", host=desk.t.domain, token=desk.tokens["boss"])
        if query == "view=":  # empty is absent: no view
            assert reply.status == 200, reply
            continue
        assert_error(reply, 422, "invalid_query")
    assert_error(await desk.http("GET", "/api/v1/tickets/counts", host=desk.t.domain), 401, "unauthorized")
