"""The agent console as a team uses it, in a real headless Chromium: views with live counts and
filters, transfer by name through a picker (both agents' lists update at once), tags and priority
edited in place, keyboard shortcuts, Simplified Chinese under a zh-CN browser (every word from the
catalogues), and the two-pane layout at 390 px. Screenshots go to the test's tmp_path."""

# ruff: noqa: RUF001 - Chinese is written with full-width punctuation; these are its texts.
from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core import availability
from core.availability import Probe
from core.db import Database
from tests.conftest import ROOT, TenantInfo, eventually
from tests.test_browser import _agent_signs_in, _customer_writes, browser, local_tenant, origin  # noqa: F401

pytestmark = pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="no Chromium at /usr/bin/chromium")

LOCALES = ROOT / "admin_api" / "static" / "console" / "locales"


def catalogue(lang: str) -> dict[str, str]:
    return dict(json.loads((LOCALES / f"{lang}.json").read_text(encoding="utf-8")))


def test_the_catalogues_have_the_same_keys_and_the_code_uses_only_those() -> None:
    en, zh = catalogue("en"), catalogue("zh-CN")
    assert set(en) == set(zh)
    assert all(v.strip() for v in [*en.values(), *zh.values()])
    code = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "admin_api" / "static" / "console").glob("*.js"))
    used = set(re.findall(r"\bt\('([a-z_]+\.[a-z_]+)'", code))
    used |= {f"{prefix}.{name}" for prefix, names in (
        ("status", "new open pending solved closed"), ("priority", "low normal high urgent"),
        ("views", "mine unassigned all pending solved"), ("presence", "online away"),
        ("conn", "connected reconnecting"), ("channel", "webchat wechat email xmpp manual")) for name in names.split()}
    assert used <= set(en), sorted(used - set(en))


async def test_views_transfer_by_name_tags_priority_and_shortcuts(browser: Any, local_tenant: TenantInfo,  # noqa: F811
                                                                  tmp_path: Path, shots: Path) -> None:
    t = local_tenant
    group = await t.add_group("售后 After-sales")
    li = await t.add_agent(name="Li Na", role="supervisor")
    wang = await t.add_agent(name="王芳")
    base = origin(t)
    li_ctx, li_page = await _agent_signs_in(browser, base, li.email)
    wang_ctx, wang_page = await _agent_signs_in(browser, base, wang.email)
    shop_ctx, _shop = await _customer_writes(browser, base, "Where is my parcel?")

    # The ticket went to one of them; whoever has it sees it under Mine, with its count.
    async def holder() -> Any:
        for page in (li_page, wang_page):
            if await page.locator("#tickets li.ticket").count():
                return page
        return None

    page = await eventually(holder)
    other = wang_page if page is li_page else li_page
    other_name = "王芳" if page is li_page else "Li Na"
    await page.wait_for_selector("#views [data-count='mine']:has-text('1')")
    await page.locator("#tickets li.ticket").first.click()
    await page.wait_for_selector("#thread .msg-inbound:has-text('Where is my parcel?')")

    # Priority and tags in place.
    await page.select_option("#ticket-priority", "urgent")
    await page.wait_for_selector("#tickets li.ticket .priority-urgent")
    await page.fill("#tag-input", "vip")
    await page.press("#tag-input", "Enter")
    await page.wait_for_selector("#ticket-tags .tag:has-text('vip')")
    await page.screenshot(path=str(shots / "console-ticket.png"))

    # Transfer through the picker, by name; nobody sees "#id" or "agent 7" afterwards.
    await page.click("#transfer-open")
    await page.fill("#transfer-filter", other_name[:2])
    await page.screenshot(path=str(shots / "console-transfer.png"))
    await page.click(f"#transfer-picker .pick-agent:has-text('{other_name}')")
    await page.wait_for_selector(f"#ticket-info:has-text('{other_name}')")
    await other.wait_for_selector("#views [data-count='mine']:has-text('1')")
    await other.locator("#tickets li.ticket").first.click()
    await other.wait_for_selector("#ticket-info:has-text('assigned to you')")
    await other.wait_for_selector("#ticket-tags .tag:has-text('vip')")
    # (The line starts with the ticket's own "#<id>", which may equal an agent's id.)
    info = (await other.inner_text("#ticket-info")).split("·", 1)[1]
    assert "#" + str(t.agents[-1].id) not in info and f"agent {t.agents[-1].id}" not in info, info

    # Shortcuts: ? shows the list, Esc closes it; e marks the ticket solved (the Solved view counts it).
    await other.click("#thread")
    await other.keyboard.press("?")
    await other.wait_for_selector("#shortcuts")
    await other.keyboard.press("Escape")
    await other.wait_for_selector("#shortcuts", state="detached")
    await other.keyboard.press("e")
    await other.wait_for_selector("#views [data-count='solved']:has-text('1')")
    # A transfer to the group, by name.
    await other.click("#transfer-open")
    await other.click("#transfer-picker .pick-group:has-text('售后')")
    await other.wait_for_selector("#ticket-info:has-text('售后')")
    assert group
    for ctx in (li_ctx, wang_ctx, shop_ctx):
        await ctx.close()


async def test_simplified_chinese_follows_the_browser_and_can_be_switched(browser: Any,  # noqa: F811
                                                                          local_tenant: TenantInfo,  # noqa: F811
                                                                          tmp_path: Path, shots: Path) -> None:
    agent = await local_tenant.add_agent(name="王芳")
    base = origin(local_tenant)
    ctx = await browser.new_context(locale="zh-CN")
    page = await ctx.new_page()
    await page.goto(f"{base}/console")
    zh, en = catalogue("zh-CN"), catalogue("en")
    await page.wait_for_selector(f"#login-submit:has-text('{zh['login.submit']}')")
    await page.fill("#login-email", agent.email)
    await page.fill("#login-password", "correct horse battery")
    await page.click("#login-submit")
    await page.wait_for_selector(f"#conn:has-text('{zh['conn.connected']}')")
    _shop_ctx, _shop = await _customer_writes(browser, base, "你好，我的快递还没到")
    await page.locator("#tickets li.ticket").first.click()
    await page.wait_for_selector("#thread .msg-inbound:has-text('快递还没到')")
    assert await page.evaluate("document.documentElement.lang") == "zh-CN"
    assert await page.title() == zh["app.title"]
    # No English word of the catalogue is left on the page (the brand is a name, not a word).
    shown = await page.inner_text("#app")
    leftover = [v for k, v in en.items() if k != "app.brand" and len(v) > 3 and v in shown and v != zh[k]]
    assert not leftover, leftover
    await page.screenshot(path=str(shots / "console-zh.png"))
    # Switched to English, it stays English after a reload.
    await page.select_option("#lang", "en")
    await page.wait_for_selector(f"#conn:has-text('{en['conn.connected']}')")
    await page.reload()
    await page.wait_for_selector(f"#send-reply, #conn:has-text('{en['conn.connected']}')")
    assert await page.evaluate("document.documentElement.lang") == "en"
    await ctx.close()


async def test_the_console_works_at_390_pixels(browser: Any, local_tenant: TenantInfo,  # noqa: F811
                                               tmp_path: Path, shots: Path) -> None:
    agent = await local_tenant.add_agent(name="Li Na")
    base = origin(local_tenant)
    ctx, page = await _agent_signs_in(browser, base, agent.email, viewport={"width": 390, "height": 844},
                                      is_mobile=True, has_touch=True)
    shop_ctx, _shop = await _customer_writes(browser, base, "Hello from my phone")
    ticket = page.locator("#tickets li.ticket").first
    await ticket.wait_for()
    assert not await page.locator("#ticket-view").is_visible()  # the list pane alone
    await page.screenshot(path=str(shots / "console-390-list.png"))
    await ticket.click()
    await page.wait_for_selector("#thread .msg-inbound:has-text('Hello from my phone')")
    assert not await page.locator("#ticket-list").is_visible()  # the conversation pane alone
    # Nothing is wider than the screen.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await page.fill("#reply-text", "Hi! On it.")
    await page.click("#send-reply")
    await page.wait_for_selector("#thread .msg-outbound:has-text('On it')")
    await page.screenshot(path=str(shots / "console-390-ticket.png"))
    await page.click("#back")
    await page.wait_for_selector("#tickets li.ticket")
    await ctx.close()
    await shop_ctx.close()


async def test_the_landing_page_links_the_console_and_the_demo(browser: Any, local_tenant: TenantInfo,  # noqa: F811
                                                               tmp_path: Path) -> None:
    ctx = await browser.new_context()
    page = await ctx.new_page()
    await page.goto(origin(local_tenant) + "/")
    await page.click("#to-console")
    await page.wait_for_selector("#login-form")
    await page.go_back()
    await page.click("#to-demo")
    await page.wait_for_selector("#chw-launcher")
    icon = await page.goto(origin(local_tenant) + "/favicon.ico")
    assert icon is not None and icon.status == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    await ctx.close()


async def test_typing_both_ways_and_who_else_is_viewing(browser: Any, local_tenant: TenantInfo,  # noqa: F811
                                                        tmp_path: Path, shots: Path) -> None:
    t = local_tenant
    li = await t.add_agent(name="Li Na", role="supervisor")
    wang = await t.add_agent(name="王芳", role="supervisor")
    base = origin(t)
    li_ctx, li_page = await _agent_signs_in(browser, base, li.email)
    wang_ctx, wang_page = await _agent_signs_in(browser, base, wang.email)
    shop_ctx, shop = await _customer_writes(browser, base, "Is anyone there?")
    for page in (li_page, wang_page):  # supervisors see every ticket
        await page.locator("#views [data-view='all']").click()
        await page.locator("#tickets li.ticket").first.click()
        await page.wait_for_selector("#thread .msg-inbound:has-text('anyone there')")
    # Each sees that the other has the ticket open.
    await li_page.wait_for_selector("#viewing-line:has-text('王芳')")
    await wang_page.wait_for_selector("#viewing-line:has-text('Li Na')")
    # The customer types: both agents see it; the agent types: the customer sees who.
    await shop.type("#chw-input", "one more thing")
    await li_page.wait_for_selector("#typing-line")
    await li_page.type("#reply-text", "Yes, I am here")
    await shop.wait_for_selector("#chw-typing:has-text('Li Na is typing')")
    await wang_page.wait_for_selector("#typing-line:has-text('Li Na')")
    await li_page.screenshot(path=str(shots / "console-live.png"))
    await shop.screenshot(path=str(shots / "widget-typing.png"))
    await li_page.click("#send-reply")
    await shop.wait_for_selector(".chw-msg.chw-outbound:has-text('I am here')")
    await shop.wait_for_selector("#chw-typing", state="hidden")
    # Li Na opens another ticket: 王芳 no longer sees her on this one.
    other_ctx, _other = await _customer_writes(browser, base, "A second customer")
    await li_page.locator("#tickets li.ticket:has-text('A second customer')").click()
    await wang_page.wait_for_selector("#viewing-line", state="detached")
    # And closing the console says so too: 王芳 on the second ticket, Li Na closes her tab.
    await wang_page.locator("#tickets li.ticket:has-text('A second customer')").click()
    await wang_page.wait_for_selector("#viewing-line:has-text('Li Na')")
    await li_page.close()
    await wang_page.wait_for_selector("#viewing-line", state="detached")
    for ctx in (li_ctx, wang_ctx, shop_ctx, other_ctx):
        await ctx.close()


async def test_the_customer_panel_and_canned_replies(browser: Any, local_tenant: TenantInfo,  # noqa: F811
                                                     tmp_path: Path, shots: Path) -> None:
    t = local_tenant
    agent = await t.add_agent(name="Li Na", role="admin")
    client = await t.signed_in(agent, connect=False)
    base = origin(t)
    await client.api("POST", "/api/v1/canned-replies", {"scope": "tenant", "shortcut": "hello", "title": "Greeting",
                                                         "text": "Hello {{customer.name|there}}, thanks for writing!"})
    # The customer wrote before: that ticket is closed; now they write again.
    shop_ctx, shop = await _customer_writes(browser, base, "My first question")
    first = (await client.api("GET", "/api/v1/tickets"))["tickets"][0]
    await client.api("PATCH", f"/api/v1/tickets/{first['id']}", {"status": "closed"})
    await shop.fill("#chw-input", "A second question")
    await shop.click("#chw-send")
    ctx, page = await _agent_signs_in(browser, base, agent.email)
    await page.locator("#tickets li.ticket:has-text('second question')").click()
    await page.wait_for_selector("#thread .msg-inbound:has-text('second question')")
    # The panel: the customer on every channel, and their earlier ticket, one click away.
    await page.wait_for_selector("#customer-identities li:has-text('web chat')")
    await page.wait_for_selector(f"#customer-history .history-item[data-id='{first['id']}']")
    # Agents edit it in place.
    await page.click("#customer-edit")
    await page.fill("#customer-name", "张伟")
    await page.click("#customer-save")
    await page.wait_for_selector("#customer-display-name:has-text('张伟')")
    # "/" opens the canned replies; the chosen one comes filled in for this customer.
    await page.fill("#reply-text", "")
    await page.type("#reply-text", "/hel")
    await page.wait_for_selector("#canned-picker .canned-item:has-text('Greeting')")
    await page.screenshot(path=str(shots / "console-canned.png"))
    await page.keyboard.press("Enter")

    async def filled() -> bool:
        return await page.input_value("#reply-text") == "Hello 张伟, thanks for writing!"

    await eventually(filled)
    await page.screenshot(path=str(shots / "console-panel.png"))
    # The earlier ticket opens from the panel.
    await page.click(f"#customer-history .history-item[data-id='{first['id']}']")
    await page.wait_for_selector("#thread .msg-inbound:has-text('My first question')")
    await ctx.close()
    await shop_ctx.close()


async def test_search_finds_chinese_and_english_and_opens_the_ticket(browser: Any, local_tenant: TenantInfo,  # noqa: F811
                                                                     tmp_path: Path, shots: Path) -> None:
    t = local_tenant
    agent = await t.add_agent(name="Li Na", role="supervisor")
    base = origin(t)
    shop_ctx, _shop = await _customer_writes(browser, base, "我要申请退款，订单 A-1024")
    other_ctx, _other = await _customer_writes(browser, base, "Where is my parcel?")
    ctx, page = await _agent_signs_in(browser, base, agent.email)
    await page.fill("#search", "退款")
    result = page.locator("#search-results li.result").first
    await result.wait_for()
    assert await page.locator("#search-results li.result").count() == 1
    assert await result.locator("mark").first.text_content() == "退款"
    await page.screenshot(path=str(shots / "console-search.png"))
    await result.click()
    await page.wait_for_selector("#thread .msg-inbound:has-text('申请退款')")
    await page.fill("#search", "PARCEL")
    await page.wait_for_selector("#search-results li.result:has-text('parcel')")
    await page.fill("#search", "")
    await page.wait_for_selector("#tickets")
    for c in (ctx, shop_ctx, other_ctx):
        await c.close()


async def test_a_mention_reaches_the_colleague_and_a_macro_does_several_things(
        browser: Any, local_tenant: TenantInfo, tmp_path: Path, shots: Path) -> None:  # noqa: F811
    t = local_tenant
    wang = await t.add_agent(name="王芳", role="admin")
    li = await t.add_agent(name="Li Na")
    admin = await t.signed_in(wang, connect=False)
    await admin.api("POST", "/api/v1/macros", {"name": "Refund done", "actions": [
        {"type": "add_tags", "tags": ["refund"]}, {"type": "status", "status": "pending"},
        {"type": "reply", "text": "Your refund is on its way, {{customer.name|there}}."}]})
    base = origin(t)
    wang_ctx, wang_page = await _agent_signs_in(browser, base, wang.email)
    shop_ctx, shop = await _customer_writes(browser, base, "I want my money back")
    await wang_page.locator("#tickets li.ticket").first.click()
    await wang_page.wait_for_selector("#thread .msg-inbound:has-text('money back')")
    # Li Na signs in afterwards (she is not assigned): the mention is what brings her in.
    li_ctx, li_page = await _agent_signs_in(browser, base, li.email)
    await wang_page.click("#reply-text")
    await wang_page.keyboard.type("@Li")
    await wang_page.wait_for_selector("#mention-picker .pick-mention:has-text('Li Na')")
    await wang_page.keyboard.press("Enter")
    await wang_page.keyboard.type("can you check the payment?")
    assert (await wang_page.input_value("#reply-text")).startswith(f"@[Li Na](agent:{li.id}) ")
    await wang_page.click("#send-note")
    await wang_page.wait_for_selector("#thread .msg-note .mention:has-text('@Li Na')")
    await li_page.wait_for_selector("#mentions-unread:has-text('1')")
    await li_page.click("#mentions-open")
    await li_page.click("#mentions-list .mention-item")
    await li_page.wait_for_selector("#thread .msg-note:has-text('check the payment')")
    await li_page.wait_for_selector("#mentions-unread", state="detached")
    # She may open it, and be seen on it, without an error: a mention lets her in.
    await wang_page.wait_for_selector("#viewing-line:has-text('Li Na')")
    assert await li_page.inner_text("#view-error") == ""
    await li_page.screenshot(path=str(shots / "console-mention.png"))
    # The macro: a reply, a tag and a status at once.
    await wang_page.select_option("#ticket-macro", label="Refund done")
    await wang_page.wait_for_selector("#ticket-tags .tag:has-text('refund')")
    await wang_page.wait_for_selector("#thread .msg-outbound:has-text('refund is on its way')")
    assert await wang_page.input_value("#ticket-status") == "pending"
    await shop.wait_for_selector(".chw-msg.chw-outbound:has-text('refund is on its way')")
    for ctx in (wang_ctx, li_ctx, shop_ctx):
        await ctx.close()


async def test_customers_merged_and_undone_tickets_merged_and_split(browser: Any, local_tenant: TenantInfo,  # noqa: F811
                                                                   tmp_path: Path, shots: Path) -> None:
    t = local_tenant
    agent = await t.add_agent(name="Li Na", role="supervisor")
    base = origin(t)
    one_ctx, _one = await _customer_writes(browser, base, "Hello, I am Zhang Wei on the web")
    two_ctx, _two = await _customer_writes(browser, base, "Zhang Wei again, from my phone")
    ctx, page = await _agent_signs_in(browser, base, agent.email)
    await page.locator("#views [data-view='all']").click()
    await page.locator("#tickets li.ticket:has-text('on the web')").click()
    await page.wait_for_selector("#thread .msg-inbound:has-text('on the web')")
    # The same person on another device: found by what they wrote, merged here, and undone.
    await page.fill("#merge-search", "from my phone")
    await page.click("#customer-merge .merge-customer")
    await page.wait_for_selector("#customer-merge .merged")
    history = page.locator("#customer-history .history-item:has-text('from my phone')")
    await history.wait_for()
    await page.screenshot(path=str(shots / "console-merged.png"))
    await page.click("#customer-merge .merge-undo")
    await page.wait_for_selector("#customer-merge .merged", state="detached")
    await history.wait_for(state="detached")
    # Merged again, then the other ticket is merged into this one: one conversation.
    await page.fill("#merge-search", "from my phone")
    await page.click("#customer-merge .merge-customer")
    await page.click("#customer-history .merge-ticket")
    await page.wait_for_selector("#thread .msg-inbound:has-text('from my phone')")
    assert await page.locator("#thread .msg-inbound").count() == 2
    # And split back out: the message goes to a new ticket, which opens.
    second = page.locator("#thread .msg-inbound:has-text('from my phone')")
    await second.hover()
    await second.locator(".split").click()

    async def alone() -> bool:  # the new ticket opens, with that one message
        return await page.locator("#thread .msg-inbound").count() == 1

    await eventually(alone)
    await page.wait_for_selector("#thread .msg-inbound:has-text('from my phone')")
    await page.screenshot(path=str(shots / "console-split.png"))
    for c in (ctx, one_ctx, two_ctx):
        await c.close()


async def test_an_admin_sets_the_widgets_words_and_opens_the_panel_on_a_narrow_screen(
        browser: Any, local_tenant: TenantInfo, shots: Path) -> None:  # noqa: F811
    admin = await local_tenant.add_agent(role="admin", name="王芳")
    agent = await local_tenant.add_agent(name="Li Na")
    base = origin(local_tenant)
    shop_ctx, _shop = await _customer_writes(browser, base, "Do you ship to Hangzhou?")
    ctx, page = await _agent_signs_in(browser, base, admin.email, viewport={"width": 900, "height": 760})
    # The views' counts are the server's (GET /api/v1/tickets/counts).
    await page.wait_for_selector("[data-count='all']:text-is('1')")
    await page.click("#tickets li.ticket")
    await page.wait_for_selector("#thread .msg-inbound:has-text('Hangzhou')")
    # At 900 px the customer panel is not beside the conversation; a button shows it over it.
    assert not await page.locator("#customer-panel").is_visible()
    await page.click("#customer-toggle")
    await page.wait_for_selector("#customer-panel", state="visible")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 900
    await page.screenshot(path=str(shots / "console-900-panel.png"))
    await page.keyboard.press("Escape")
    await page.wait_for_selector("#customer-panel", state="hidden")

    # The widget's words, in both languages, from the administration page.
    await page.click("#admin-open")
    await page.wait_for_selector("#widget-words")
    await page.fill("#offline-en", "Back at nine. Leave us a message!")
    await page.fill("#offline-zh-CN", "我们九点回来，请留言！")
    await page.fill("#welcome-en", "Welcome to the shop.")
    await page.click("#widget-words-save")
    await page.wait_for_selector(f"#widget-words-status:has-text('{catalogue('en')['admin.saved']}')")
    await page.screenshot(path=str(shots / "console-admin-widget.png"))
    admin_client = await local_tenant.signed_in(admin, connect=False)
    assert await admin_client.api("GET", "/api/v1/webchat/settings") == {
        "offline_message": {"en": "Back at nine. Leave us a message!", "zh-CN": "我们九点回来，请留言！"},
        "welcome": {"en": "Welcome to the shop."}}
    # Emptied, a text is removed (the widget's own words show again); the page reads back what is stored.
    await page.fill("#welcome-en", "")
    await page.click("#widget-words-save")
    await eventually(lambda: _words(admin_client, "welcome", {}))
    await page.reload()
    await page.click("#admin-open")
    await page.wait_for_selector("#offline-zh-CN")
    assert await page.input_value("#offline-zh-CN") == "我们九点回来，请留言！"
    await page.click("#admin-close")
    await page.wait_for_selector("#tickets li.ticket")

    # An agent has no administration page.
    agent_ctx, agent_page = await _agent_signs_in(browser, base, agent.email)
    await agent_page.wait_for_selector("#views")
    assert await agent_page.locator("#admin-open").count() == 0
    await agent_page.click("#logout")  # offline at once (a closed socket alone counts until the heartbeat timeout)
    await agent_page.wait_for_selector("#login-form")
    await agent_ctx.close()

    # Nobody online now: a visitor reads the notice in the tenant's words, in Chinese.
    await page.click("#logout")
    await page.wait_for_selector("#login-form")
    zh_ctx = await browser.new_context(locale="zh-CN")
    zh = await zh_ctx.new_page()
    await zh.goto(f"{base}/webchat/demo")
    await zh.click("#chw-launcher")
    await zh.wait_for_selector("#chw-offline:has-text('我们九点回来')")
    await zh.screenshot(path=str(shots / "widget-offline-words-zh.png"))
    for c in (zh_ctx, ctx, shop_ctx):
        await c.close()


async def _words(client: Any, field: str, expected: dict[str, str]) -> bool:
    return bool((await client.api("GET", "/api/v1/webchat/settings"))[field] == expected)


async def test_a_view_larger_than_the_live_snapshot_pages_from_the_server(
        browser: Any, local_tenant: TenantInfo, shots: Path) -> None:  # noqa: F811
    """The socket's snapshot holds the newest 500 open tickets; a view holds more. Its count is the
    server's, and the older tickets come page by page from GET /api/v1/tickets."""
    supervisor = await local_tenant.add_agent(role="supervisor", name="Zhao Lei", capacity=1000)
    client = await local_tenant.signed_in(supervisor, connect=False)
    # Assigned, so that none waits in the queue (which the console also lists).
    customer = (await client.api("POST", "/api/v1/tickets", {"text": "first call", "customer": {"name": "Wu"},
                                                             "assignee_id": supervisor.id}))
    customer_id = customer["ticket"]["customer_id"]
    gate = asyncio.Semaphore(8)

    async def make(i: int) -> None:
        async with gate:
            await client.api("POST", "/api/v1/tickets", {"text": f"call {i}", "subject": f"Call {i:03d}",
                                                         "customer_id": customer_id, "assignee_id": supervisor.id})

    await asyncio.gather(*(make(i) for i in range(1, 520)))
    ctx, page = await _agent_signs_in(browser, origin(local_tenant), supervisor.email)
    await page.click("[data-view='all']")
    await page.wait_for_selector("[data-count='all']:text-is('520')")
    await page.wait_for_selector("#list-more")
    assert await page.locator("#tickets li.ticket").count() == 500
    await page.click("#list-more")
    await eventually(lambda: _listed(page, 520))
    await page.screenshot(path=str(shots / "console-older-tickets.png"))
    await ctx.close()


async def _listed(page: Any, n: int) -> bool:
    return bool(await page.locator("#tickets li.ticket").count() == n)


async def test_an_admin_reads_the_months_availability(browser: Any, local_tenant: TenantInfo,  # noqa: F811
                                                      shots: Path) -> None:
    """The availability page: the month's figure against the promise, a bar a day, the incidents; a
    month without probe data is unknown, never 100 %."""
    admin = await local_tenant.add_agent(role="admin", name="王芳")
    now = datetime.now(UTC)
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last_month = (first - timedelta(days=1)).replace(day=1)
    outage = (last_month + timedelta(days=9, hours=3), last_month + timedelta(days=9, hours=3, minutes=50))
    blip = (last_month + timedelta(days=19, hours=8), last_month + timedelta(days=19, hours=8, minutes=3))
    probes, at = [], last_month
    while at < first:  # a probe a minute all month (a missed round between is tolerated)
        down = outage[0] <= at < outage[1] or blip[0] <= at < blip[1]
        probes.append(Probe(local_tenant.id, "probe-1", at, not down, "webchat: no echo within 10 s" if down else None,
                            90))
        at += timedelta(minutes=1)
    db = Database(local_tenant.settings.database_url)
    try:
        for chunk in range(0, len(probes), 5000):
            async with db.session() as session:
                await availability.record(session, probes[chunk:chunk + 5000])
    finally:
        await db.dispose()

    ctx, page = await _agent_signs_in(browser, origin(local_tenant), admin.email)
    await page.select_option("#lang", "zh-CN")
    await page.click("#admin-open")
    await page.click("[data-tab='availability']")
    zh = catalogue("zh-CN")
    # This month: no probe has run yet.
    await page.wait_for_selector(f"#availability-figure:has-text('{zh['availability.unknown']}')")
    await page.fill("#availability-month", last_month.strftime("%Y-%m"))
    # 50 minutes down on a 43,200-minute month: 99.884 %, below the promise; the 3-minute blip does not count.
    await page.wait_for_selector("#availability-figure:has-text('99.884%')")
    assert "verdict-missed" in (await page.get_attribute("#availability-figure", "class") or "")
    assert (await page.inner_text("#availability-downtime")).strip() == "50"
    rows = page.locator("#availability-incidents tbody tr")
    assert await rows.count() == 2
    assert "webchat: no echo within 10 s" in await rows.first.inner_text()
    assert await page.locator("#availability-incidents tr.counted").count() == 1
    assert await page.locator("#availability-chart .day").count() == (first - last_month).days
    assert await page.locator("#availability-chart .day-down").count() == 1
    assert await page.locator("#availability-chart .day-dip").count() == 1  # the blip: seen, not counted
    await page.screenshot(path=str(shots / "console-availability-zh.png"), full_page=True)
    await ctx.close()


async def test_the_sla_deadline_counts_down_and_turns_red_when_breached(
        browser: Any, local_tenant: TenantInfo, shots: Path) -> None:  # noqa: F811
    """A ticket's live SLA deadline (#17, core.sla) in the conversation head and the list; the
    sweeper is run with an injected clock, never waited for."""
    from sqlalchemy import select

    from core import sla
    from core.models import TicketSla
    from web.http import HUB

    t = local_tenant
    hub = t.server.app[HUB]
    admin = await t.signed_in(await t.add_agent(role="admin", capacity=0, name="Admin"), connect=False)
    await admin.api("POST", "/api/v1/sla/policies", {"name": "Chat", "first_response": 3600, "warn_before": 600})
    li = await t.add_agent(name="Li Na", role="supervisor")
    base = origin(t)
    ctx, page = await _agent_signs_in(browser, base, li.email)
    shop_ctx, _shop = await _customer_writes(browser, base, "Is anyone there?")
    await page.locator("#tickets li.ticket").first.wait_for()
    await sla.sweep(hub, read_seconds=None)
    await page.locator("#tickets li.ticket").first.click()
    head = page.locator("#ticket-sla")
    await head.wait_for()
    text = await head.inner_text()
    assert "First response due in" in text and ("59m" in text or "1h" in text), text
    await page.wait_for_selector("#tickets li.ticket .sla-running")
    await page.screenshot(path=str(shots / "console-sla-running.png"))

    # The deadline passes (the clock moved, not slept): the breach comes over the socket, in red.
    ticket_id = int(await page.locator("#tickets li.ticket").first.get_attribute("data-id") or 0)
    async with hub.db.read() as session:
        due = (await session.execute(select(TicketSla.due_at).where(TicketSla.ticket_id == ticket_id,
                                                                    TicketSla.target == "first_response"))).scalar()
    await sla.sweep(hub, read_seconds=None, now=due + timedelta(seconds=1))
    await page.wait_for_selector("#ticket-sla.sla-breached:has-text('First response breached')")
    await page.wait_for_selector("#tickets li.ticket .sla-breached")
    await page.screenshot(path=str(shots / "console-sla-breached.png"))
    await ctx.close()
    await shop_ctx.close()
