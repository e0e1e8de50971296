# ruff: noqa: RUF001 - Chinese is written with full-width punctuation; these are its texts.
"""Satisfaction surveys (core.csat) over the web chat widget's socket and the hosted rating page:
sent once on solve, never twice, never for spam, tied to the agent and group at the solve, answered
once, refused clearly when the rating is bad; the tenant's setting turns them off."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from admin_api.client import AgentClient, HubError, VisitorClient
from core.db import Database
from core.models import AuditLog, CsatSurvey, Event
from tests import test_browser, test_widget
from tests.conftest import TenantInfo, eventually
from tests.support import Http, assert_error


async def _chat(tenant: TenantInfo, agent_client: AgentClient, text: str = "my kettle leaks"
                ) -> tuple[VisitorClient, int]:
    visitor = tenant.visitor()
    await visitor.connect()
    await visitor.send(text)
    event = await agent_client.wait_event(lambda e: e["kind"] == "message.created"
                                          and e["message"]["text"] == text)
    return visitor, int(event["ticket_id"])


async def _surveys(tenant: TenantInfo, ticket_id: int) -> list[CsatSurvey]:
    db = Database(tenant.settings.database_url)
    try:
        async with db.read(tenant.id) as session:
            return list((await session.execute(select(CsatSurvey).where(CsatSurvey.ticket_id == ticket_id))).scalars())
    finally:
        await db.dispose()


async def _card(visitor: VisitorClient) -> str:
    frame = await visitor.wait_frame(lambda f: f.get("type") == "csat")
    return str(frame["survey"]["token"])


def _cards(visitor: VisitorClient) -> list[dict[str, Any]]:
    return [f for f in visitor.frames if f.get("type") == "csat"]


async def test_widget_survey_once_rated_and_shown_to_the_agent(tenant: TenantInfo) -> None:
    group = await tenant.add_group("Kettles")
    li = await tenant.add_agent(name="Li", group_ids=[group])
    zhao = await tenant.add_agent(name="Zhao", group_ids=[group])
    boss = await tenant.add_agent(role="supervisor")
    cli = await tenant.signed_in(li)
    cboss = await tenant.signed_in(boss)
    visitor, tid = await _chat(tenant, cboss)
    await cboss.api("POST", f"/api/v1/tickets/{tid}/transfer", {"agent_id": li.id})
    await cli.api("POST", f"/api/v1/tickets/{tid}/messages", {"text": "A new one is on its way."})
    await cli.api("POST", f"/api/v1/tickets/{tid}/solve")
    token = await _card(visitor)

    # Solved, reopened, solved again: still the one survey.
    await cli.api("PATCH", f"/api/v1/tickets/{tid}", {"status": "open"})
    await cli.api("POST", f"/api/v1/tickets/{tid}/solve")
    # Moved to another agent afterwards: the rating still counts for Li and the group at the solve.
    await cboss.api("PATCH", f"/api/v1/tickets/{tid}", {"status": "open"})
    await cboss.api("POST", f"/api/v1/tickets/{tid}/transfer", {"agent_id": zhao.id})
    rows = await _surveys(tenant, tid)
    assert len(rows) == 1 and rows[0].agent_id == li.id and rows[0].state == "sent"
    assert len(_cards(visitor)) == 1

    # Bad ratings are refused with a clear error on the socket.
    for n, bad in enumerate((0, 6, "five", 4.5, True)):
        await visitor.ws.send_json({"type": "csat", "token": token, "rating": bad})
        errors = await eventually(lambda: _errors(visitor, n + 1))  # noqa: B023
        assert errors[-1]["code"] == "invalid_rating", errors
    await visitor.ws.send_json({"type": "csat", "token": token, "rating": 4, "comment": "  quick, thanks  "})
    await visitor.wait_frame(lambda f: f.get("type") == "csat_done")
    rated = await cboss.wait_event(lambda e: e["kind"] == "csat.rated")
    assert rated["ticket_id"] == tid
    assert {k: rated[k] for k in ("survey_id", "rating", "comment", "agent_id", "group_id")} == {
        "survey_id": rows[0].id, "rating": 4, "comment": "quick, thanks", "agent_id": li.id,
        "group_id": rows[0].group_id}
    # Once: the same token again is refused.
    await visitor.ws.send_json({"type": "csat", "token": token, "rating": 5})
    err = await visitor.wait_frame(lambda f: f.get("type") == "error" and f.get("code") == "survey_answered")
    assert "answered" in err["message"]
    detail = await cboss.api("GET", f"/api/v1/tickets/{tid}")
    assert detail["csat"]["rating"] == 4 and detail["csat"]["agent_id"] == li.id
    assert "token" not in detail["csat"]


async def _errors(visitor: VisitorClient, at_least: int) -> list[dict[str, Any]] | None:
    errors = [f for f in visitor.frames if f.get("type") == "error"]
    return errors if len(errors) >= at_least else None


async def test_a_reconnecting_visitor_sees_an_unanswered_survey(tenant: TenantInfo) -> None:
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    visitor, tid = await _chat(tenant, client)
    await client.api("POST", f"/api/v1/tickets/{tid}/messages", {"text": "Done."})
    await visitor.close()
    await client.api("POST", f"/api/v1/tickets/{tid}/solve")
    await eventually(lambda: _sent(tenant, tid))
    again = tenant.visitor(visitor.visitor_id)
    await again.connect()
    token = await _card(again)
    await again.ws.send_json({"type": "csat", "token": token, "rating": 5})
    await again.wait_frame(lambda f: f.get("type") == "csat_done")
    # Answered: the next visit shows no card.
    await again.close()
    third = tenant.visitor(visitor.visitor_id)
    await third.connect()
    await third.send("one more question")
    await third.wait_frame(lambda f: f.get("type") == "ack")
    assert _cards(third) == []


async def _sent(tenant: TenantInfo, tid: int) -> bool:
    rows = await _surveys(tenant, tid)
    return bool(rows) and rows[0].state == "sent"


async def test_no_survey_for_spam_or_when_turned_off(tenant: TenantInfo) -> None:
    admin = await tenant.add_agent(role="admin")
    client = await tenant.signed_in(admin)
    visitor, tid = await _chat(tenant, client, "cheap watches")
    await client.api("PATCH", f"/api/v1/tickets/{tid}", {"add_tags": ["spam"], "status": "solved"})
    # The tenant turns surveys off (audited), then another chat is solved.
    assert (await client.api("GET", "/api/v1/settings/csat"))["settings"] == {"enabled": True}
    assert (await client.api("PUT", "/api/v1/settings/csat", {"enabled": False}))["settings"] == {"enabled": False}
    visitor2, tid2 = await _chat(tenant, client, "where is my order")
    await client.api("POST", f"/api/v1/tickets/{tid2}/solve")
    # Back on: a third one is asked.
    await client.api("PUT", "/api/v1/settings/csat", {"enabled": True})
    visitor3, tid3 = await _chat(tenant, client, "thanks for the help")
    await client.api("POST", f"/api/v1/tickets/{tid3}/solve")
    await _card(visitor3)
    assert await _surveys(tenant, tid) == [] and await _surveys(tenant, tid2) == []
    assert _cards(visitor) == [] and _cards(visitor2) == []
    db = Database(tenant.settings.database_url)
    try:
        async with db.read(tenant.id) as session:
            actions = list((await session.execute(select(AuditLog.details).where(
                AuditLog.action == "csat_settings.update").order_by(AuditLog.id))).scalars())
    finally:
        await db.dispose()
    assert actions == [{"enabled": {"from": True, "to": False}}, {"enabled": {"from": False, "to": True}}]
    agent = await tenant.add_agent()
    with pytest.raises(HubError) as err:
        await (await tenant.signed_in(agent, connect=False)).api("PUT", "/api/v1/settings/csat", {"enabled": False})
    assert err.value.status == 403


async def test_two_solves_at_once_make_one_survey(tenant: TenantInfo) -> None:
    agent = await tenant.add_agent()
    boss = await tenant.add_agent(role="supervisor")
    ca, cb = await tenant.signed_in(agent), await tenant.signed_in(boss)
    visitor, tid = await _chat(tenant, ca)
    await ca.api("POST", f"/api/v1/tickets/{tid}/messages", {"text": "Sorted."})
    results = await asyncio.gather(ca.api("POST", f"/api/v1/tickets/{tid}/solve"),
                                   cb.api("PATCH", f"/api/v1/tickets/{tid}", {"status": "solved"}),
                                   return_exceptions=True)
    assert all(not isinstance(r, BaseException) for r in results), results
    await _card(visitor)
    assert len(await _surveys(tenant, tid)) == 1
    await asyncio.sleep(0.2)  # a second survey, if one were sent, would have reached the socket by now
    assert len(_cards(visitor)) == 1


BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


async def test_hosted_page_rates_once(tenant: TenantInfo) -> None:
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    visitor, tid = await _chat(tenant, client)
    await client.api("POST", f"/api/v1/tickets/{tid}/solve")
    token = await _card(visitor)
    async with aiohttp.ClientSession() as session:
        http = Http(tenant.server.url, session)
        page = await http("GET", f"/csat/{token}?rating=4", host=tenant.domain)
        assert page.status == 200 and 'data-value="4" aria-pressed="true"' in page.text
        assert "How did we do?" in page.text
        zh = await http("GET", f"/csat/{token}", host=tenant.domain, headers={"Accept-Language": "zh-CN,zh;q=0.9"})
        assert "请为本次服务评分" in zh.text
        unknown = await http("GET", "/csat/nosuchtoken", host=tenant.domain, headers=BROWSER)
        assert unknown.status == 404 and "not valid" in unknown.text
        assert_error(await http("GET", "/csat/nosuchtoken", host=tenant.domain), 404, "survey_not_found")
        for bad in (0, 6, "5", None):
            assert_error(await http("POST", f"/csat/{token}", host=tenant.domain, json_body={"rating": bad}), 422,
                         "validation_error")
        assert_error(await http("POST", "/csat/nosuchtoken", host=tenant.domain, json_body={"rating": 3}), 404,
                     "survey_not_found")
        done = await http("POST", f"/csat/{token}", host=tenant.domain, json_body={"rating": 2, "comment": "slow"})
        assert done.status == 200 and done.body["survey"]["rating"] == 2 and "token" not in done.body["survey"]
        assert_error(await http("POST", f"/csat/{token}", host=tenant.domain, json_body={"rating": 5}), 409,
                     "survey_answered")
        used = await http("GET", f"/csat/{token}", host=tenant.domain, headers=BROWSER)
        assert used.status == 409 and "already" in used.text
        assert_error(await http("GET", f"/csat/{token}", host=tenant.domain), 409, "survey_answered")
        # Another tenant's domain does not know the token.
        assert (await http("GET", f"/csat/{token}", host="nowhere.example")).status == 404
    db = Database(tenant.settings.database_url)
    try:
        async with db.read(tenant.id) as session:
            n = (await session.execute(select(func.count()).select_from(Event).where(
                Event.kind == "csat.rated", Event.ticket_id == tid))).scalar_one()
    finally:
        await db.dispose()
    assert n == 1


async def test_hosted_page_is_rate_limited(tenant: TenantInfo) -> None:
    async with aiohttp.ClientSession() as session:
        http = Http(tenant.server.url, session)
        statuses = [(await http("GET", "/csat/nosuchtoken", host=tenant.domain)).status for _ in range(61)]
        assert statuses[:60] == [404] * 60
        assert statuses[60] == 429
        assert (await http("POST", "/csat/nosuchtoken", host=tenant.domain, json_body={"rating": 3})).status == 429


# --- in Chromium: the widget's rating card, and the hosted page ---------------------------------------------
browser = test_browser.browser
local_tenant = test_browser.local_tenant


async def test_the_widget_rating_card_in_both_languages(browser: Any, local_tenant: TenantInfo, shots: Path) -> None:
    agent = await local_tenant.add_agent(name="王芳")
    client = await local_tenant.signed_in(agent)
    base = test_widget.origin(local_tenant)
    zh = test_widget.catalogue("zh-CN")
    ctx, page = await test_widget._open_chat(browser, f"{base}/webchat/demo", locale="zh-CN")
    await page.fill("#chw-input", "水壶漏水了")
    await page.press("#chw-input", "Enter")
    created = await client.wait_event(lambda e: e["kind"] == "message.created" and e["message"]["text"] == "水壶漏水了")
    tid = created["ticket_id"]
    await client.api("POST", f"/api/v1/tickets/{tid}/messages", {"text": "已为您换新。"})
    await client.api("POST", f"/api/v1/tickets/{tid}/solve")
    await page.wait_for_selector(f"#chw-survey:has-text('{zh['csat.title']}')")
    # Sending without stars is said on the card; then four stars and a comment.
    await page.click(".chw-survey-send")
    await page.wait_for_selector(f".chw-survey-error:has-text('{zh['csat.pick']}')")
    await page.click(".chw-star[data-value='4']")
    await page.fill("#chw-survey-comment", "很快，谢谢")
    await page.screenshot(path=str(shots / "widget-rating-zh.png"))
    await page.click(".chw-survey-send")
    await page.wait_for_selector(f"#chw-survey:has-text('{zh['csat.thanks']}')")
    await page.screenshot(path=str(shots / "widget-rated-zh.png"))
    rated = await client.wait_event(lambda e: e["kind"] == "csat.rated")
    assert (rated["rating"], rated["comment"], rated["agent_id"]) == (4, "很快，谢谢", agent.id)
    await ctx.close()

    # In English, a visitor who left before the survey came sees it when they come back.
    en = test_widget.catalogue("en")
    ctx, page = await test_widget._open_chat(browser, f"{base}/webchat/demo", locale="en-US")
    await page.fill("#chw-input", "Where is my parcel?")
    await page.press("#chw-input", "Enter")
    created = await client.wait_event(lambda e: e["kind"] == "message.created"
                                      and e["message"]["text"] == "Where is my parcel?")
    await client.api("POST", f"/api/v1/tickets/{created['ticket_id']}/messages", {"text": "It's on its way."})
    await page.close()
    await client.api("POST", f"/api/v1/tickets/{created['ticket_id']}/solve")
    await eventually(lambda: _sent(local_tenant, created["ticket_id"]))
    page = await ctx.new_page()
    await page.goto(f"{base}/webchat/demo")
    await page.click("#chw-launcher")
    await page.wait_for_selector(f"#chw-survey:has-text('{en['csat.title']}')")
    await page.click(".chw-star[data-value='5']")
    await page.screenshot(path=str(shots / "widget-rating-en.png"))
    await page.click(".chw-survey-send")
    await page.wait_for_selector(f"#chw-survey:has-text('{en['csat.thanks']}')")
    await ctx.close()


async def test_the_hosted_page_in_chromium(browser: Any, local_tenant: TenantInfo, shots: Path) -> None:
    agent = await local_tenant.add_agent()
    client = await local_tenant.signed_in(agent)
    visitor, tid = await _chat(local_tenant, client)
    await client.api("POST", f"/api/v1/tickets/{tid}/solve")
    token = await _card(visitor)
    ctx = await browser.new_context(locale="zh-CN")
    page = await ctx.new_page()
    await page.goto(f"{test_widget.origin(local_tenant)}/csat/{token}?rating=2")
    await page.wait_for_selector(".star.lit[data-value='2']")
    await page.click(".star[data-value='5']")
    await page.fill("#comment", "非常满意")
    await page.screenshot(path=str(shots / "hosted-page-zh.png"))
    await page.click(".send")
    await page.wait_for_selector(".thanks:has-text('感谢您的反馈')")
    await page.screenshot(path=str(shots / "hosted-page-thanks-zh.png"))
    await page.reload()
    await page.wait_for_selector(".note:has-text('您已经评过分了')")
    await ctx.close()
    [row] = await _surveys(local_tenant, tid)
    assert (row.rating, row.comment) == (5, "非常满意")

    # The agent sees the rating under the conversation.
    ctx, console = await test_browser._agent_signs_in(browser, test_widget.origin(local_tenant), agent.email)
    console.set_default_timeout(10_000)
    await console.click("button.view[data-view='solved']")
    ticket = console.locator("#tickets li.ticket").first
    await ticket.click()
    await console.wait_for_selector("#thread .csat-line[data-rating='5']:has-text('rated this 5 of 5')")
    await console.wait_for_selector("#thread .csat-line:has-text('非常满意')")
    await console.screenshot(path=str(shots / "console-rating.png"))
    await ctx.close()
