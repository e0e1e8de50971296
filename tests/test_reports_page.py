"""The console's Reports page (issue #17) in a real headless Chromium, on activity made through the
real hub: customers write over web chat, agents answer, tag, transfer, solve and reopen. The page's
tiles, tables and charts (drawn by the vendored Chart.js) show exactly what the reports API answers
for the same filters (docs/reports.md; the page's query is read from the page and asked of the API),
in English and in Simplified Chinese, and at 390 px; the .xlsx downloads; a degraded reports
subsystem shows a notice rather than a broken page. Screenshots are kept (the `shots` fixture)."""

# ruff: noqa: RUF001 - Chinese is written with full-width punctuation; these are its texts.
from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest

from admin_api.client import AgentClient
from core.breakers import Actor
from tests.conftest import TenantInfo, eventually
from tests.test_browser import _agent_signs_in, browser, local_tenant, origin  # noqa: F401
from tests.test_console import catalogue
from web.http import HUB

pytestmark = pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="no Chromium at /usr/bin/chromium")

KINDS = ("agents", "groups", "demand")
SHARE_STATUSES = ("new", "open", "pending", "solved")
CHARTS = ("chart-by-day", "chart-by-hour", "chart-by-weekday", "chart-by-channel", "chart-status-share")
WEEKDAYS = {"en": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
            "zh-CN": ["周一", "周二", "周三", "周四", "周五", "周六", "周日"]}


# ---- the page's formatting, as a reader checks it (reports.js: duration, count, share, rating) --------
def js_round(x: float) -> int:
    return math.floor(x + 0.5)


def duration(seconds: float | None, words: dict[str, str]) -> str:
    if seconds is None:
        return "—"
    s = js_round(seconds)
    if s < 60:
        return words["report.dur_s"].format(s=s)
    m = js_round(s / 60)
    if m < 60:
        return words["report.dur_min"].format(m=m)
    h = m // 60
    if h < 24:
        return words["report.dur_h_min"].format(h=h, m=f"{m % 60:02d}")
    return words["report.dur_d_h"].format(d=h // 24, h=f"{h % 24:02d}")


def count(n: int | None) -> str:
    return "—" if n is None else f"{n:,}"


def share(x: float | None) -> str:
    if x is None:
        return "—"
    pct = js_round(x * 1000) / 10
    return f"{pct:g}%"


def rating(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def test_durations_read_as_people_write_them() -> None:
    en = catalogue("en")
    assert [duration(x, en) for x in (None, 0, 42.4, 59.6, 90, 3599, 3900, 86399, 90000 + 7200)] == [
        "—", "0 s", "42 s", "1 min", "2 min", "1 h 00 min", "1 h 05 min", "1 d 00 h", "1 d 03 h"]
    assert duration(3900, catalogue("zh-CN")) == "1 小时 05 分钟"


# ---- what the API says, in the shape the page is read in ---------------------------------------------
def columns(m: dict[str, Any], words: dict[str, str]) -> dict[str, list[Any]]:
    """A table row (reports.js columns()): each column's raw value and its text."""
    def timed(metric: str, field: str) -> list[Any]:
        return [m[metric][field], duration(m[metric][field], words)]
    breaches = sum(m["sla_breaches"].values())
    return {
        **{k: [m[k], count(m[k])] for k in ("received", "assigned", "solved", "transferred")},
        "reopen_rate": [m["reopen_rate"], share(m["reopen_rate"])],
        "first_response": timed("first_response", "mean"),
        "first_response_business": timed("first_response", "mean_business"),
        "next_response": timed("next_response", "mean"),
        "resolution": timed("resolution", "mean"),
        "resolution_business": timed("resolution", "mean_business"),
        "handle": timed("handle", "mean"),
        "csat": [m["csat"]["mean"], rating(m["csat"]["mean"])],
        "sla_breaches": [breaches, count(breaches)],
    }


def expected(reports: dict[str, Any], lang: str) -> dict[str, Any]:
    words = catalogue(lang)
    totals = reports["agents"]["totals"]
    csat = totals["csat"]
    demand = reports["demand"]
    return {
        "tiles": {
            "received": [totals["received"], count(totals["received"])],
            "solved": [totals["solved"], count(totals["solved"])],
            "first_response": [totals["first_response"]["mean"], duration(totals["first_response"]["mean"], words)],
            "first_response_business": [totals["first_response"]["mean_business"],
                                        duration(totals["first_response"]["mean_business"], words)],
            "resolution": [totals["resolution"]["mean"], duration(totals["resolution"]["mean"], words)],
            "reopen_rate": [totals["reopen_rate"], share(totals["reopen_rate"])],
            "csat": [csat["mean"],
                     "—" if csat["mean"] is None else words["report.of_five"].format(x=rating(csat["mean"]))],
        },
        "agents": {**{r["agent_name"]: columns(r["metrics"], words) for r in reports["agents"]["rows"]},
                   "__total": columns(totals, words)} if reports["agents"]["rows"] else {},
        "groups": {**{(r["group_name"] if r["group_name"] is not None else words["report.no_group"]):
                      columns(r["metrics"], words) for r in reports["groups"]["rows"]},
                   "__total": columns(reports["groups"]["totals"], words)} if reports["groups"]["rows"] else {},
        "charts": {
            "chart-by-day": [len(demand["by_day"]), [d["received"] for d in demand["by_day"]]],
            "chart-by-hour": [[str(h) for h in range(24)], demand["by_hour"]],
            "chart-by-weekday": [WEEKDAYS[lang], demand["by_weekday"]],
            "chart-by-channel": [[words.get(f"channel.{c['channel']}", c["channel"]) for c in demand["by_channel"]],
                                 [c["received"] for c in demand["by_channel"]]],
            "chart-status-share": [[words[f"status.{s}"] for s in SHARE_STATUSES],
                                   [totals["status_share"][s] for s in SHARE_STATUSES]],
        },
    }


# ---- what the page shows ------------------------------------------------------------------------------
READ_PAGE = """() => {
  const val = (el) => JSON.parse(el.dataset.value);
  const tiles = {};
  for (const el of document.querySelectorAll('#report-tiles [data-tile]')) {
    const v = el.querySelector('.figure-value');
    tiles[el.dataset.tile] = [val(v), v.textContent.trim()];
  }
  const table = (id) => {
    const out = {};
    for (const tr of document.querySelectorAll(`#${id} tr[data-row]`)) {
      const cells = [...tr.querySelectorAll('td')];
      out[tr.dataset.row] = Object.fromEntries(cells.map((td) => [td.dataset.col, [val(td), td.textContent.trim()]]));
    }
    return out;
  };
  const charts = {};
  for (const canvas of document.querySelectorAll('.report-chart canvas')) {
    const chart = globalThis.Chart && globalThis.Chart.getChart(canvas);
    const id = canvas.closest('figure').id;
    // The days' labels are the browser's short dates: their number is compared.
    const labels = chart && (id === 'chart-by-day' ? chart.data.labels.length : chart.data.labels);
    charts[id] = chart ? [labels, chart.data.datasets[0].data] : null;
  }
  return { tiles, agents: table('report-agents'), groups: table('report-groups'), charts };
}"""

# The page has shown what it asked for, and every chart is drawn.
SETTLED = """() => {
  const page = document.getElementById('reports-page');
  if (!page || page.getAttribute('aria-busy') !== 'false' || page.dataset.query !== page.dataset.want) return false;
  const canvases = [...document.querySelectorAll('.report-chart canvas')];
  return canvases.length === COUNT && !!globalThis.Chart && canvases.every((c) => globalThis.Chart.getChart(c));
}""".replace("COUNT", str(len(CHARTS)))


async def settled(page: Any) -> str:
    """Waits until the page shows the data of the query it asked for, its charts drawn; that query."""
    await page.wait_for_function(SETTLED, timeout=15000)
    return str(await page.get_attribute("#reports-page", "data-query"))


async def api_reports(client: AgentClient, query: str) -> dict[str, Any]:
    return {k: (await client.api("GET", f"/api/v1/reports/{k}{query}"))["report"] for k in KINDS}


async def page_matches_api(page: Any, client: AgentClient, lang: str) -> tuple[str, dict[str, Any]]:
    query = await settled(page)
    reports = await api_reports(client, query)
    shown = await page.evaluate(READ_PAGE)
    want = expected(reports, lang)
    assert shown["tiles"] == want["tiles"]
    assert shown["agents"] == want["agents"]
    assert shown["groups"] == want["groups"]
    assert shown["charts"] == want["charts"]
    return query, reports


# ---- activity through the real hub --------------------------------------------------------------------
async def activity(t: TenantInfo) -> tuple[Any, Any, AgentClient]:
    """Three customers write over web chat; two agents of a group answer, one ticket is tagged,
    transferred and solved by the colleague, one solved, reopened and solved again, one left open.
    Returns the supervisor, the agent, and the supervisor's client (which sees every event)."""
    group = await t.add_group("售后 After-sales")
    li = await t.add_agent(name="Li Na", role="supervisor", group_ids=[group])
    wang = await t.add_agent(name="王芳", group_ids=[group])
    clients = {li.id: await t.signed_in(li), wang.id: await t.signed_in(wang)}
    watcher = clients[li.id]
    tickets: list[tuple[int, int, Any]] = []
    for i, text in enumerate(("Where is my parcel?", "我的发票在哪里？", "Can I change my address?")):
        visitor = t.visitor()
        await visitor.connect(name=f"Customer {i + 1}")
        await visitor.send(text)
        known = {x[0] for x in tickets}
        got = await watcher.wait_event(lambda e: e["kind"] == "ticket.assigned" and e["ticket_id"] not in known)  # noqa: B023
        tickets.append((got["ticket_id"], got["ticket"]["assignee_id"], visitor))

    def other(agent_id: int) -> int:
        return wang.id if agent_id == li.id else li.id

    (t1, a1, v1), (t2, a2, v2), _third = tickets
    await clients[a1].reply(t1, "Let me check.")
    await clients[a1].action("tags", ticket_id=t1, add=["vip"])
    await clients[a1].transfer(t1, agent_id=other(a1))
    await clients[other(a1)].reply(t1, "It ships today.")
    await clients[other(a1)].set_status(t1, "solved")
    await clients[a2].reply(t2, "发票已经发到您的邮箱。")
    await clients[a2].set_status(t2, "solved")
    await clients[a2].set_status(t2, "open")
    await clients[a2].set_status(t2, "solved")
    await v1.wait_message(lambda m: m["direction"] == "outbound")
    await v2.wait_message(lambda m: m["direction"] == "outbound")

    # The reports have caught up with it all (rollups may follow the events a moment later).
    async def caught_up() -> bool:
        r = (await watcher.api("GET", "/api/v1/reports/agents"))["report"]["totals"]
        return bool(r["received"] == 3 and r["reopened"] == 1 and r["transferred"] >= 1)

    await eventually(caught_up, timeout=20)
    return li, wang, watcher


async def test_the_reports_page_shows_the_apis_numbers(browser: Any, local_tenant: TenantInfo,  # noqa: F811
                                                       shots: Path) -> None:
    t = local_tenant
    li, wang, client = await activity(t)
    base = origin(t)
    en, zh = catalogue("en"), catalogue("zh-CN")

    # A supervisor opens the Reports page from the console's header: the last 30 days by default.
    ctx, page = await _agent_signs_in(browser, base, li.email, viewport={"width": 1280, "height": 1000})
    await page.click("#reports-open")
    query, reports = await page_matches_api(page, client, "en")
    assert query == ""
    assert reports["agents"]["totals"]["received"] == 3
    assert {x["tag"] for x in reports["demand"]["by_tag"]} == {"vip"}
    await page.screenshot(path=str(shots / "reports-en.png"), full_page=True)

    # Filters: the last 7 days, web chat only, tag vip: the page asks the API exactly that.
    await page.click(".report-filters .quick [data-days='7']")
    await page.select_option("#report-channel", "webchat")
    await page.fill("#report-tag", "vip")
    await page.press("#report-tag", "Enter")
    await page.wait_for_function("() => document.getElementById('reports-page').dataset.want.includes('tag=vip')")
    query, reports = await page_matches_api(page, client, "en")
    assert "channel=webchat" in query and "from=" in query and "tag=vip" in query, query
    assert reports["agents"]["totals"]["received"] == 1
    frm, to = reports["agents"]["period"]["from"], reports["agents"]["period"]["to"]
    assert len(reports["demand"]["by_day"]) == 7 and reports["demand"]["by_day"][0]["date"] == frm, (frm, to)

    # An .xlsx of each report downloads (a workbook: a zip).
    for kind in KINDS:
        async with page.expect_download() as got:
            await page.click(f"#report-downloads [data-download='{kind}']")
        download = await got.value
        data = await asyncio.to_thread(Path(await download.path()).read_bytes)
        assert data[:2] == b"PK", (kind, data[:40])
        assert download.suggested_filename == f"report-{kind}-{frm}-{to}.xlsx"

    # In Simplified Chinese: the same numbers, every word from the catalogue, the charts' too.
    await page.click("#report-clear")
    await page.select_option("#lang", "zh-CN")
    await page.wait_for_selector(f"#reports-page h2:has-text('{zh['report.title']}')")
    query, reports = await page_matches_api(page, client, "zh-CN")
    assert "channel=" not in query and "tag=" not in query
    shown = await page.inner_text("#reports-page")
    leftover = [v for k, v in en.items() if len(v) > 3 and v in shown and v != zh[k]]
    assert not leftover, leftover
    await page.screenshot(path=str(shots / "reports-zh.png"), full_page=True)
    await ctx.close()

    # At 390 px, one agent's figures: nothing wider than the screen but the tables, which scroll.
    ctx, page = await _agent_signs_in(browser, base, li.email, viewport={"width": 390, "height": 844},
                                      is_mobile=True, has_touch=True)
    await page.click("#reports-open")
    await settled(page)
    await page.select_option("#report-agent", str(wang.id))
    await page.wait_for_function("() => document.getElementById('reports-page').dataset.want.includes('agent_id=')")
    query, _ = await page_matches_api(page, client, "en")
    assert f"agent_id={wang.id}" in query
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    widths = await page.evaluate("[...document.querySelectorAll('.report-chart canvas')]"
                                 ".map((c) => c.getBoundingClientRect().right)")
    assert widths and max(widths) <= 390, widths
    scroll = await page.evaluate("(() => { const el = document.querySelector('.table-scroll'); "
                                 "return el ? [el.scrollWidth, el.clientWidth] : null; })()")
    assert scroll and scroll[0] > scroll[1] and scroll[1] <= 390, scroll
    await page.screenshot(path=str(shots / "reports-390.png"), full_page=True)
    await ctx.close()


async def test_a_degraded_reports_subsystem_shows_a_notice(browser: Any, local_tenant: TenantInfo,  # noqa: F811
                                                           shots: Path) -> None:
    t = local_tenant
    boss = await t.add_agent(name="Li Na", role="supervisor")
    breakers = t.server.app[HUB].breakers
    ctx, page = await _agent_signs_in(browser, origin(t), boss.email, viewport={"width": 900, "height": 760})
    await breakers.switch("reports", enabled=False, reason="reports maintenance", actor=Actor("operator", None))
    try:
        await page.click("#reports-open")
        notice = await page.wait_for_selector("#reports-offline")
        assert await notice.inner_text() == catalogue("en")["report.offline"]
        assert await page.locator("#report-tiles").count() == 0
        await page.screenshot(path=str(shots / "reports-offline.png"))
        # The rest of the console still works: back to the tickets.
        await page.click("#reports-close")
        await page.wait_for_selector("#tickets")
    finally:
        await breakers.switch("reports", enabled=True, reason="done", actor=Actor("operator", None))
    await ctx.close()
