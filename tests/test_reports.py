"""Reports (#17, docs/reports.md): a hand-computed history through the HTTP API (JSON and .xlsx),
rollups rebuilt from the events equal the incremental ones after a random history, real actions
through the hub show up, and degraded statistics hold the rollups back without touching messaging.

The histories here are data: events rows inserted with chosen times. What is tested is the engine
(core.metrics, core.rollups) and the API that reads it."""

from __future__ import annotations

import io
import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import openpyxl
import pytest
from sqlalchemy import insert, update

from admin_api.client import HubError
from core import reports, rollups
from core.breakers import Actor
from core.db import Database
from core.metrics import INDEX, WIDTH, Clock, Ev, contribution, rows
from core.models import Event, Tenant, table_of
from tests.conftest import Server, TenantInfo, eventually, make_tenant
from web.http import HUB

SHANGHAI = ZoneInfo("Asia/Shanghai")
HOURS = {"timezone": "Asia/Shanghai", "weekly": {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
         "holidays": ["2026-03-09"]}
PERIOD = "from=2026-03-06&to=2026-03-10"


def local(day: int, hh: int, mm: int = 0) -> datetime:
    """A moment of March 2026 in Shanghai (UTC+8): 6 is a Friday, 7-8 the weekend, 9 a holiday."""
    return datetime(2026, 3, day, hh, mm, tzinfo=SHANGHAI).astimezone(UTC)


class History:
    """Events of one tenant's tickets, written as the hub writes them (kinds, payloads)."""

    def __init__(self, tenant_id: int) -> None:
        self.tenant_id = tenant_id
        self.rows: list[dict[str, Any]] = []

    def add(self, ticket_id: int, kind: str, at: datetime, *, status: str, agent: int | None, group: int | None,
            channel: str = "webchat", tags: tuple[str, ...] = (), previous: int | None = None,
            **payload: Any) -> None:
        ticket = {"id": ticket_id, "status": status, "channel": channel, "tags": list(tags), "group_id": group,
                  "assignee_id": agent, **payload.pop("ticket_extra", {})}
        self.rows.append({"tenant_id": self.tenant_id, "ticket_id": ticket_id, "kind": kind, "assignee_id": agent,
                          "previous_assignee_id": previous, "payload": {"ticket": ticket, **payload},
                          "created_at": at})

    def message(self, ticket_id: int, at: datetime, direction: str, author: int | None = None, **kw: Any) -> None:
        who = {"type": "customer", "id": 1} if direction == "inbound" else {"type": "agent", "id": author}
        self.add(ticket_id, "message.created", at, message={"direction": direction, "author": who}, **kw)

    def other(self, ticket_id: int, kind: str, at: datetime, payload: dict[str, Any]) -> None:
        """An event of another part (sla.breached, csat.rated): its own payload, no ticket in it."""
        self.rows.append({"tenant_id": self.tenant_id, "ticket_id": ticket_id, "kind": kind, "assignee_id": None,
                          "previous_assignee_id": None, "payload": payload, "created_at": at})

    async def write(self, db: Database) -> None:
        if self.rows:
            async with db.session(self.tenant_id) as session:
                await session.execute(insert(table_of(Event)), self.rows)
        self.rows = []


async def set_hours(db: Database, tenant_id: int, hours: dict[str, Any] | None) -> None:
    async with db.session() as session:
        await session.execute(update(Tenant).where(Tenant.id == tenant_id)
                              .values(routing={"business_hours": hours} if hours else {}))


def fixture_history(h: History, a: int, b: int, g: int, h_group: int) -> None:
    """Every figure below is worked out by hand in test_hand_computed_history_through_the_api."""
    # Ticket 1 (web chat, billing): the customer writes Friday 17:00; A gets it at 17:10 and hands it
    # to B at 17:20 (a transfer: A's); B's note is no reply; B answers on Tuesday 10:00 (first
    # response: B's, not A's); the customer writes at 11:00, B sets pending at 11:30, the customer
    # writes again at 13:00 (open again: the wait still runs from 11:00), B answers at 13:30; B
    # solves at 14:00; the customer writes at 15:00 (reopened), B answers at 15:20, solves at 16:00;
    # the customer rates it 5.
    t1 = dict(channel="webchat", tags=("billing",), group=g)
    h.add(1001, "ticket.created", local(6, 17), status="new", agent=None, **t1)
    h.message(1001, local(6, 17), "inbound", status="new", agent=None, **t1)
    h.add(1001, "ticket.assigned", local(6, 17, 10), status="new", agent=a, **t1)
    h.add(1001, "ticket.assigned", local(6, 17, 20), status="new", agent=b, previous=a,
          reason={"strategy": "transfer"}, **t1)
    h.message(1001, local(6, 17, 30), "note", b, status="new", agent=b, **t1)
    h.message(1001, local(10, 10), "outbound", b, status="open", agent=b, **t1)
    h.message(1001, local(10, 11), "inbound", status="open", agent=b, **t1)
    h.add(1001, "ticket.updated", local(10, 11, 30), status="pending", agent=b, **t1)
    h.message(1001, local(10, 13), "inbound", status="open", agent=b, **t1)
    h.message(1001, local(10, 13, 30), "outbound", b, status="open", agent=b, **t1)
    h.add(1001, "ticket.updated", local(10, 14), status="solved", agent=b, **t1)
    h.message(1001, local(10, 15), "inbound", status="open", agent=b, **t1)
    h.message(1001, local(10, 15, 20), "outbound", b, status="open", agent=b, **t1)
    h.add(1001, "ticket.updated", local(10, 16), status="solved", agent=b, **t1)
    h.other(1001, "csat.rated", local(10, 16, 5), {"survey_id": 1, "rating": 5, "comment": None, "agent_id": b,
                                                   "group_id": g})
    # Ticket 2: merged into ticket 1 on the holiday: counted nowhere.
    t2 = dict(channel="email", group=None)
    h.add(1002, "ticket.created", local(9, 10), status="new", agent=None, **t2)
    h.message(1002, local(9, 10), "inbound", status="new", agent=None, **t2)
    h.add(1002, "ticket.updated", local(9, 10, 30), status="closed", agent=None,
          ticket_extra={"merged_into_id": 1001}, **t2)
    # Ticket 3 (web chat, billing + vip), Saturday: A takes it at 12:05 and solves it at 12:35
    # without a reply (no first response); its first-response target was breached at 12:30; rated 2.
    t3 = dict(channel="webchat", tags=("billing", "vip"), group=g)
    h.add(1003, "ticket.created", local(7, 12), status="new", agent=None, **t3)
    h.message(1003, local(7, 12), "inbound", status="new", agent=None, **t3)
    h.add(1003, "ticket.assigned", local(7, 12, 5), status="new", agent=a, **t3)
    h.other(1003, "sla.breached", local(7, 12, 30), {"target": "first_response", "due_at": "x", "policy_id": 1,
                                                     "policy": "p", "agent_id": a, "group_id": g})
    h.add(1003, "ticket.updated", local(7, 12, 35), status="solved", agent=a, **t3)
    h.other(1003, "csat.rated", local(7, 12, 40), {"survey_id": 2, "rating": 2, "comment": "slow", "agent_id": a,
                                                   "group_id": g})
    # Ticket 4 (email), Tuesday 09:00: A gets it at 09:05, answers at 09:10, and hands it to group H
    # at 09:30 (a transfer: A's); it stays open.
    t4 = dict(channel="email", group=g)
    h.add(1004, "ticket.created", local(10, 9), status="new", agent=None, **t4)
    h.message(1004, local(10, 9), "inbound", status="new", agent=None, **t4)
    h.add(1004, "ticket.assigned", local(10, 9, 5), status="new", agent=a, **t4)
    h.message(1004, local(10, 9, 10), "outbound", a, status="open", agent=a, **t4)
    h.add(1004, "ticket.unassigned", local(10, 9, 30), status="open", agent=None, previous=a, channel="email",
          group=h_group, reason={"strategy": "transfer", "group_id": h_group})


def timed(count: int, mean: float | None, business: float | None) -> dict[str, Any]:
    return {"count": count, "mean": mean, "mean_business": business}


async def test_hand_computed_history_through_the_api(tenant: TenantInfo) -> None:
    db = Database(tenant.settings.database_url)
    try:
        g, h_group = await tenant.add_group("Billing"), await tenant.add_group("Hardware")
        a = (await tenant.add_agent(name="Ann")).id
        b = (await tenant.add_agent(name="Bo")).id
        boss = await tenant.add_agent(role="supervisor", name="Sue")
        await set_hours(db, tenant.id, HOURS)
        history = History(tenant.id)
        fixture_history(history, a, b, g, h_group)
        await history.write(db)
        client = await tenant.signed_in(boss, connect=False)
        report = (await client.api("GET", f"/api/v1/reports/agents?{PERIOD}"))["report"]
    finally:
        await db.dispose()

    assert report["period"] == {"from": "2026-03-06", "to": "2026-03-10", "timezone": "Asia/Shanghai"}
    totals, by_agent = report["totals"], {r["agent_id"]: r for r in report["rows"]}
    assert set(by_agent) == {a, b}
    assert by_agent[a]["agent_name"] == "Ann"
    # Received: tickets 1, 3, 4 (2 was merged). Assigned: 1 to A, 1 to B, 3 to A, 4 to A. Transferred:
    # 1 (A to B) and 4 (A to group H), both A's. Solved: 1 (B, Tuesday 16:00) and 3 (A). Reopened: 1,
    # B's (B had solved it).
    assert {k: totals[k] for k in ("received", "assigned", "transferred", "solved", "reopened", "reopen_rate")} == {
        "received": 3, "assigned": 4, "transferred": 2, "solved": 2, "reopened": 1, "reopen_rate": 0.5}
    # First response: ticket 1, Friday 17:00 to Tuesday 10:00 = 89 h = 320400 s wall; business:
    # Friday 17-18 and Tuesday 9-10 (weekend closed, Monday a holiday) = 7200 s; B's. Ticket 4:
    # 09:00 to 09:10 = 600 s (600 business), A's. Ticket 3 had no reply: not counted.
    assert totals["first_response"] == timed(2, (320400 + 600) / 2, (7200 + 600) / 2)
    # Next response: ticket 1, 11:00 to 13:30 (the pending in between does not restart the wait) =
    # 9000 s, and 15:00 to 15:20 = 1200 s, all in business hours; B's.
    assert totals["next_response"] == timed(2, 5100.0, 5100.0)
    # Resolution: ticket 1, Friday 17:00 to its last solve Tuesday 16:00 = 95 h = 342000 s; business
    # 1 h Friday + 7 h Tuesday = 28800 s. Ticket 3: 12:00 to 12:35 Saturday = 2100 s, 0 business.
    assert totals["resolution"] == timed(2, (342000 + 2100) / 2, 28800 / 2)
    # Handle (assigned and new/open): A on 1: 17:10-17:20 = 600; A on 3: 12:05-12:35 = 1800; A on 4:
    # 09:05-09:30 = 1500; B on 1: Friday 17:20 to Tuesday 11:30 (319200 + 5400) and 13:00-14:00 and
    # 15:00-16:00 = 331800 (pending and solved time is not handle time).
    assert totals["handle"] == {"count": 4, "total": 335700.0, "mean": 335700 / 4}
    # Status share, creation to the last status change: ticket 1 new 320400, open 5400 + 3600 +
    # 3600 = 12600, pending 5400, solved 3600 (14:00-15:00); ticket 3 new 2100; ticket 4 new 600
    # (to its reply; its last status change).
    whole = 323100 + 12600 + 5400 + 3600
    assert totals["status_share"] == {"new": 323100 / whole, "open": 12600 / whole, "pending": 5400 / whole,
                                      "solved": 3600 / whole}
    assert totals["csat"] == {"count": 2, "mean": 3.5, "satisfied": 0.5, "distribution": [0, 1, 0, 0, 1]}
    assert totals["sla_breaches"] == {"first_response": 1, "next_response": 0, "resolution": 0}

    ann, bo = by_agent[a]["metrics"], by_agent[b]["metrics"]
    # A first had tickets 1, 3 and 4: they count as received by A.
    assert {k: ann[k] for k in ("received", "assigned", "transferred", "solved", "reopened", "reopen_rate")} == {
        "received": 3, "assigned": 3, "transferred": 2, "solved": 1, "reopened": 0, "reopen_rate": 0.0}
    assert ann["first_response"] == timed(1, 600.0, 600.0)
    assert ann["next_response"] == timed(0, None, None)
    assert ann["resolution"] == timed(1, 2100.0, 0.0)
    assert ann["handle"] == {"count": 3, "total": 3900.0, "mean": 1300.0}
    # A's time: new only (600 on 1, 1800 on 3, 300 on 4 before the reply).
    assert ann["status_share"] == {"new": 1.0, "open": 0.0, "pending": 0.0, "solved": 0.0}
    assert ann["csat"] == {"count": 1, "mean": 2.0, "satisfied": 0.0, "distribution": [0, 1, 0, 0, 0]}
    assert ann["sla_breaches"]["first_response"] == 1
    assert {k: bo[k] for k in ("received", "assigned", "transferred", "solved", "reopened", "reopen_rate")} == {
        "received": 0, "assigned": 1, "transferred": 0, "solved": 1, "reopened": 1, "reopen_rate": 1.0}
    assert bo["first_response"] == timed(1, 320400.0, 7200.0)
    assert bo["next_response"] == timed(2, 5100.0, 5100.0)
    assert bo["resolution"] == timed(1, 342000.0, 28800.0)
    assert bo["handle"] == {"count": 1, "total": 331800.0, "mean": 331800.0}
    b_whole = 319200 + 12600 + 5400 + 3600
    assert bo["status_share"] == {"new": 319200 / b_whole, "open": 12600 / b_whole, "pending": 5400 / b_whole,
                                  "solved": 3600 / b_whole}
    assert bo["csat"] == {"count": 1, "mean": 5.0, "satisfied": 1.0, "distribution": [0, 0, 0, 0, 1]}

    # Filters. The vip tag: ticket 3 only. The email channel: ticket 4 only. Agent B: B's row.
    vip = (await client.api("GET", f"/api/v1/reports/agents?{PERIOD}&tag=vip"))["report"]["totals"]
    assert (vip["received"], vip["solved"], vip["resolution"]) == (1, 1, timed(1, 2100.0, 0.0))
    email = (await client.api("GET", f"/api/v1/reports/agents?{PERIOD}&channel=email"))["report"]["totals"]
    assert (email["received"], email["transferred"], email["first_response"]) == (1, 1, timed(1, 600.0, 600.0))
    only_b = (await client.api("GET", f"/api/v1/reports/agents?{PERIOD}&agent_id={b}"))["report"]
    assert only_b["totals"] == bo and [r["agent_id"] for r in only_b["rows"]] == [b]
    # The period: Tuesday alone has ticket 4's arrival, ticket 1's answers and solve, not its arrival.
    tuesday = (await client.api("GET", "/api/v1/reports/agents?from=2026-03-10&to=2026-03-10"))["report"]["totals"]
    assert (tuesday["received"], tuesday["solved"], tuesday["first_response"]["count"]) == (1, 1, 2)

    # Groups: everything happened while the tickets were in Billing (ticket 4 left for Hardware
    # after its last counted moment).
    groups = (await client.api("GET", f"/api/v1/reports/groups?{PERIOD}"))["report"]
    assert [(r["group_id"], r["group_name"]) for r in groups["rows"]] == [(g, "Billing")]
    assert groups["rows"][0]["metrics"] == groups["totals"] == totals

    # Demand: in Shanghai's time zone.
    demand = (await client.api("GET", f"/api/v1/reports/demand?{PERIOD}"))["report"]
    assert demand["received"] == 3
    assert demand["by_day"] == [{"date": "2026-03-0" + str(d), "received": n} for d, n in
                                ((6, 1), (7, 1), (8, 0), (9, 0))] + [{"date": "2026-03-10", "received": 1}]
    assert demand["by_hour"] == [1 if h in (9, 12, 17) else 0 for h in range(24)]
    assert demand["by_weekday"] == [0, 1, 0, 0, 1, 1, 0]
    assert demand["by_channel"] == [{"channel": "webchat", "received": 2}, {"channel": "email", "received": 1}]
    assert demand["by_tag"] == [{"tag": "billing", "received": 2}, {"tag": "vip", "received": 1}]

    # The same figures as a workbook.
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{tenant.server.url}/api/v1/reports/agents?{PERIOD}&format=xlsx",
                            headers={"Host": tenant.domain, "Authorization": f"Bearer {client.token}"}) as resp:
            assert resp.status == 200, await resp.text()
            data = await resp.read()
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    assert sheet is not None
    table = [[c.value for c in row] for row in sheet.iter_rows()]
    head = table[0]
    by_name = {r[head.index("agent_name")]: dict(zip(head, r, strict=True)) for r in table[1:]}
    assert by_name["Bo"]["first_response.mean_business"] == 7200
    assert by_name["Ann"]["handle.total"] == 3900
    assert by_name["total"]["received"] == 3 and by_name["total"]["csat.5"] == 1
    assert by_name["total"]["resolution.mean"] == (342000 + 2100) / 2


async def test_reports_are_for_supervisors_and_check_their_input(tenant: TenantInfo) -> None:
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent, connect=False)
    with pytest.raises(HubError) as refused:
        await client.api("GET", "/api/v1/reports/agents")
    assert (refused.value.status, refused.value.code) == (403, "supervisor_only")
    boss = await tenant.signed_in(await tenant.add_agent(role="admin"), connect=False)
    for query, code in (("from=2026-03-10&to=2026-03-01", "invalid_period"), ("from=2026-13-01", "invalid_query"),
                        ("from=2020-01-01&to=2026-01-01", "invalid_period"), ("format=pdf", "invalid_query"),
                        ("group_id=x", "invalid_query")):
        with pytest.raises(HubError) as bad:
            await boss.api("GET", f"/api/v1/reports/demand?{query}")
        assert (bad.value.status, bad.value.code) == (422, code), query
    # The default period: the last 30 days, every one of them listed.
    demand = (await boss.api("GET", "/api/v1/reports/demand"))["report"]
    assert len(demand["by_day"]) == 30 and demand["period"]["timezone"] == "UTC"


# --- rollups rebuilt = rollups kept incrementally --------------------------------------------------
def random_history(h: History, rng: random.Random, tickets: int, agents: list[int], groups: list[int],
                   start: datetime, first_id: int = 1) -> None:
    """Tickets with random lives: arrivals, assignments, transfers, replies, notes, pending, solves,
    reopens, merges, ratings and breaches, at random moments over a few weeks."""
    channels, tag_pool = ("webchat", "email", "wechat"), ("a", "b", "c", "d")
    for n in range(tickets):
        tid = first_id + n
        at = start + timedelta(seconds=rng.randrange(0, 30 * 86400))
        attrs: dict[str, Any] = {"channel": rng.choice(channels), "tags": tuple(rng.sample(tag_pool, rng.randrange(3))),
                                 "group": rng.choice([None, *groups])}
        status, agent = "new", None
        h.add(tid, "ticket.created", at, status=status, agent=agent, **attrs)
        h.message(tid, at, "inbound", status=status, agent=agent, **attrs)
        for _ in range(rng.randrange(1, 12)):
            at += timedelta(seconds=rng.randrange(1, 3 * 86400))
            move = rng.random()
            if status == "closed":
                break
            if move < 0.2:
                new = rng.choice(agents)
                h.add(tid, "ticket.assigned", at, status=status, agent=new, previous=agent,
                      reason={"strategy": "transfer" if agent else "round_robin"}, **attrs)
                agent = new
            elif move < 0.25 and agent is not None:
                attrs["group"] = rng.choice(groups)
                h.add(tid, "ticket.unassigned", at, status=status, agent=None, previous=agent,
                      reason={"strategy": "transfer"}, **attrs)
                agent = None
            elif move < 0.45:
                if status in ("solved", "pending"):
                    status = "open"
                h.message(tid, at, "inbound", status=status, agent=agent, **attrs)
            elif move < 0.65 and agent is not None:
                status = "open" if status == "new" else status
                h.message(tid, at, rng.choice(("outbound", "outbound", "note")), agent, status=status, agent=agent,
                          **attrs)
            elif move < 0.75 and status in ("new", "open"):
                status = "pending"
                h.add(tid, "ticket.updated", at, status=status, agent=agent, **attrs)
            elif move < 0.88 and status != "solved":
                status = "solved"
                h.add(tid, "ticket.updated", at, status=status, agent=agent, **attrs)
            elif move < 0.92:
                attrs["tags"] = tuple(rng.sample(tag_pool, rng.randrange(3)))
                h.add(tid, "ticket.updated", at, status=status, agent=agent, **attrs)
            elif move < 0.95:
                h.other(tid, "csat.rated", at, {"rating": rng.randrange(1, 6), "agent_id": agent,
                                                "group_id": attrs["group"]})
            elif move < 0.98:
                h.other(tid, "sla.breached", at, {"target": rng.choice(("first_response", "next_response",
                                                                        "resolution")),
                                                  "agent_id": agent, "group_id": attrs["group"]})
            elif move < 0.99:
                status = "closed"
                h.add(tid, "ticket.updated", at, status=status, agent=agent, ticket_extra={"merged_into_id": 1},
                      **attrs)
            else:
                h.other(tid, "message.delivery", at, {"message_id": 1, "delivery_state": "sent"})


def summed(h_rows: list[dict[str, Any]], clock: Clock) -> dict[Any, tuple[int, ...]]:
    """The rollups straight from core.metrics: every ticket's contribution, added up."""
    by_ticket: dict[int, list[Ev]] = defaultdict(list)
    for i, r in enumerate(h_rows, 1):
        by_ticket[r["ticket_id"]].append(Ev(i, r["kind"], r["created_at"], r["assignee_id"], r["payload"]))
    out: dict[Any, list[int]] = {}
    for events in by_ticket.values():
        for key, values in rows(contribution(events, clock)).items():
            acc = out.setdefault(key, [0] * WIDTH)
            for i, v in enumerate(values):
                acc[i] += v
    return {k: tuple(v) for k, v in out.items() if any(v)}


async def _staffed(db: Database, tenant: TenantInfo, seed: int, agents: int, groups: int
                   ) -> tuple[random.Random, list[int], list[int]]:
    """The tenant on Shanghai's business hours, a random source, and its agents and groups."""
    await set_hours(db, tenant.id, HOURS)
    rng = random.Random(seed)
    return (rng, [(await tenant.add_agent()).id for _ in range(agents)],
            [await tenant.add_group(f"G{n}") for n in range(groups)])


async def _kept_in_batches(db: Database, h: History, rng: random.Random, lo: int, hi: int) -> list[dict[str, Any]]:
    """The history written in time order, and the rollups kept up with it in batches of lo..hi
    events; returns the rows written."""
    h.rows.sort(key=lambda r: r["created_at"])
    written = list(h.rows)
    await h.write(db)
    while await rollups.step(db, h.tenant_id, limit=rng.randrange(lo, hi), settle=0):
        pass
    return written


async def test_rollups_rebuilt_equal_the_incremental_ones(tenant: TenantInfo) -> None:
    db = Database(tenant.settings.database_url)
    try:
        rng, agents, groups = await _staffed(db, tenant, 17, 4, 3)
        start = datetime(2026, 2, 1, tzinfo=UTC)
        written: list[dict[str, Any]] = []
        # 10,000 tickets in five parts, each part's events interleaved in time order with the
        # next's; the rollups catch up in uneven batches after each part, so that many tickets'
        # histories are cut between batches.
        for part in range(5):
            h = History(tenant.id)
            random_history(h, rng, 2000, agents, groups, start, first_id=1 + part * 2000)
            # Later events of tickets already counted: continued histories across parts.
            for r in list(h.rows):
                if rng.random() < 0.05 and part:
                    old = rng.randrange(1, 1 + part * 2000)
                    h.message(old, r["created_at"] + timedelta(days=40), "inbound", status="open", agent=None,
                              channel="webchat", group=None)
            written += await _kept_in_batches(db, h, rng, 500, 4000)
        incremental = await rollups.read_rows(db, tenant.id)
        await rollups.rebuild(db, tenant.id, settle=0)
        rebuilt = await rollups.read_rows(db, tenant.id)
        assert len(written) > 60000
    finally:
        await db.dispose()
    assert incremental == rebuilt
    # And both are the sum of the tickets' contributions, computed here in one pass.
    assert rebuilt == summed(written, Clock.of(HOURS))


async def test_statistics_degraded_the_rollups_wait_and_catch_up(settings: Any, server: Server) -> None:
    """Statistics switched off: a visitor's chat and the agent's reply go on, the rollups do not
    move; switched on, they catch up and equal a rebuild; the report shows the chat."""
    tenant = await make_tenant(settings, server)
    db = Database(settings.database_url)
    hub = server.app[HUB]
    try:
        boss = await tenant.signed_in(await tenant.add_agent(role="admin"), connect=False)
        agent = await tenant.add_agent()
        desk = await tenant.signed_in(agent)
        await rollups.catch_up(db, tenant.id, settle=0)
        async with db.read(tenant.id) as session:
            assert await rollups.lag(session, tenant.id) == 0
        await hub.breakers.switch("statistics", enabled=False, reason="test", actor=Actor("auto"))
        try:
            visitor = tenant.visitor()
            await visitor.connect()
            await visitor.send("my order is late")
            event = await desk.wait_event(lambda e: e.get("kind") == "ticket.assigned")
            ticket_id = event["ticket_id"]
            await desk.reply(ticket_id, "on its way")
            await visitor.wait_message(lambda m: m.get("text") == "on its way")
            await desk.set_status(ticket_id, "solved")
            # The report answers, from rollups that did not move.
            today = (await boss.api("GET", "/api/v1/reports/agents"))["report"]["totals"]
            assert today["received"] == 0
            async with db.read(tenant.id) as session:
                assert await rollups.lag(session, tenant.id) > 0
        finally:
            await hub.breakers.switch("statistics", enabled=True, reason="test", actor=Actor("auto"))

        async def caught_up() -> dict[str, Any] | None:
            totals = (await boss.api("GET", "/api/v1/reports/agents"))["report"]["totals"]
            return totals if totals["solved"] == 1 else None
        totals = await eventually(caught_up, timeout=30)
        assert totals["received"] == 1 and totals["first_response"]["count"] == 1
        kept = await rollups.read_rows(db, tenant.id)
        await rollups.rebuild(db, tenant.id, settle=0)
        assert await rollups.read_rows(db, tenant.id) == kept
    finally:
        await db.dispose()
        await tenant.close()


# --- the grains: every coarser grain is the finest rows summed; reports read them exactly -----------
def naive_grains(finest: dict[Any, tuple[int, ...]]) -> dict[Any, tuple[int, ...]]:
    """Every grain straight from the finest rows, one row at a time (not core.rollups' cascade)."""
    out: dict[Any, list[int]] = {}
    for (day, agent, group, channel, tag), values in finest.items():
        for mask in range(16):
            if not mask & 1 and tag != "":
                continue  # a grain without the tag sums the every-ticket rows
            dims = (tag if mask & 1 else "", channel if mask & 2 else "", group if mask & 4 else 0,
                    agent if mask & 8 else 0)
            for grain, at in ((mask, day), (mask + 16, day.replace(day=1))):
                _accumulate(out, (grain, *dims, at), values)
    return {k: tuple(v) for k, v in out.items() if any(v)}


def naive_report(finest: dict[Any, tuple[int, ...]], by: str, f: reports.Filters) -> dict[Any, list[int]]:
    """A report's sums per agent, group, channel or tag straight from the finest rows."""
    out: dict[Any, list[int]] = {}
    for (day, agent, group, channel, tag), values in finest.items():
        if not f.start <= day <= f.end or (f.channel is not None and channel != f.channel):
            continue
        if (f.group_id is not None and group != f.group_id) or (f.agent_id is not None and agent != f.agent_id):
            continue
        if by == "tag":
            if tag == "" or (f.tag is not None and tag != f.tag):
                continue
        elif tag != (f.tag or ""):
            continue
        key = {"agent": agent, "group": group, "channel": channel, "tag": tag, "hour": None, "day": day}[by]
        _accumulate(out, key, values)
    return out


async def test_every_grain_is_the_finest_summed_and_reports_read_them_exactly(tenant: TenantInfo) -> None:
    """A random history over three months, kept in uneven batches: every grain (daily and monthly)
    equals the finest rows summed, kept and rebuilt alike; and the reports under every kind of
    filter and period (whole months, days around them, no whole month) equal sums of the finest
    rows."""
    db = Database(tenant.settings.database_url)
    try:
        rng, agents, groups = await _staffed(db, tenant, 1717, 3, 2)
        for part in range(3):
            h = History(tenant.id)
            random_history(h, rng, 600, agents, groups, datetime(2026, 1 + part, 20, tzinfo=UTC),
                           first_id=1 + part * 600)
            await _kept_in_batches(db, h, rng, 300, 2000)
        kept = await rollups.read_grains(db, tenant.id)
        await rollups.rebuild(db, tenant.id, settle=0)
        rebuilt = await rollups.read_grains(db, tenant.id)
        finest = await rollups.read_rows(db, tenant.id)
        assert kept == rebuilt == naive_grains(finest)
        assert {k[0] for k in rebuilt} == set(range(32))

        clock = Clock.of(HOURS)
        d = datetime(2026, 1, 1).date()
        periods = [(d.replace(month=2, day=1), d.replace(month=3, day=31)),
                   (d.replace(month=1, day=25), d.replace(month=4, day=10)),
                   (d.replace(month=2, day=3), d.replace(month=2, day=20)),
                   (d.replace(month=1, day=1), d.replace(month=6, day=30)),
                   (d.replace(month=2, day=1), d.replace(month=3, day=15))]
        async with db.read(tenant.id) as session:
            for start, end in periods:
                for channel, group, agent, tag in [(None, None, None, None), ("email", None, None, None),
                                                   (None, groups[0], None, None), (None, None, agents[1], None),
                                                   (None, None, None, "b"), ("webchat", groups[1], None, "a"),
                                                   ("wechat", groups[0], agents[0], "c")]:
                    f = reports.Filters(start, end, channel=channel, group_id=group, agent_id=agent, tag=tag)
                    by_agent = naive_report(finest, "agent", f)
                    got = await reports.agents_report(session, tenant.id, f, clock)
                    assert got["totals"] == reports.metrics(_summed_values(by_agent.values()))
                    assert {r["agent_id"]: r["metrics"] for r in got["rows"]} == {
                        a: reports.metrics(v) for a, v in by_agent.items() if a}
                    by_group = naive_report(finest, "group", f)
                    got = await reports.groups_report(session, tenant.id, f, clock)
                    assert {r["group_id"]: r["metrics"] for r in got["rows"]} == {
                        g or None: reports.metrics(v) for g, v in by_group.items()}
                    demand = await reports.demand_report(session, tenant.id, f, clock)
                    received = INDEX["received"]
                    per_day = {k: v[received] for k, v in naive_report(finest, "day", f).items()}
                    assert {date.fromisoformat(x["date"]): x["received"] for x in demand["by_day"] if x["received"]
                            } == {k: n for k, n in per_day.items() if n}
                    hours = naive_report(finest, "hour", f).get(None, [0] * WIDTH)
                    assert demand["by_hour"] == [hours[INDEX[f"h{h:02d}"]] for h in range(24)]
                    assert {x["channel"]: x["received"] for x in demand["by_channel"]} == {
                        c: v[received] for c, v in naive_report(finest, "channel", f).items() if v[received]}
                    assert {x["tag"]: x["received"] for x in demand["by_tag"]} == {
                        t: v[received] for t, v in naive_report(finest, "tag", f).items() if v[received]}
    finally:
        await db.dispose()


def _summed_values(found: Any) -> list[int]:
    out: dict[None, list[int]] = {}
    for values in found:
        _accumulate(out, None, values)
    return out.get(None, [0] * WIDTH)


def _accumulate(out: dict[Any, list[int]], key: Any, values: Any) -> None:
    acc = out.setdefault(key, [0] * WIDTH)
    for i, v in enumerate(values):
        acc[i] += v


def test_packed_counter_vectors_add_exactly() -> None:
    """core.rollups sums counter vectors packed into one integer: differences (negative counters)
    and large millisecond sums read back exactly, and a vector less itself is 0."""
    rng = random.Random(5)
    for _ in range(500):
        vectors = [[rng.randrange(-2**50, 2**50) for _ in range(WIDTH)] for _ in range(rng.randrange(1, 6))]
        assert rollups.unpack(sum(rollups.pack(v) for v in vectors)) == tuple(map(sum, zip(*vectors, strict=True)))
        assert rollups.pack(vectors[0]) - rollups.pack(vectors[0]) == 0
