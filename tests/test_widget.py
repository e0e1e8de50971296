"""The web chat widget (#13): customers' files, the offline notice, languages, and the widget on
another site. First over the widget's own protocol (HTTP and the visitor socket), then in a real
headless Chromium (Debian's) driven by Playwright, as customers and agents use it. Screenshots go
to var/screenshots/<test> (the shots fixture)."""

# ruff: noqa: RUF001 - Chinese is written with full-width punctuation; these are its texts.
from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from sqlalchemy import select

from admin_api.client import HubError
from connectors.webchat.settings import WebchatSettings
from core.models import StoredAttachment, utcnow
from tests import test_browser
from tests.conftest import ROOT, TenantInfo, eventually
from tests.support import PNG
from tests.test_browser import _agent_signs_in
from web.http import HUB

# The browser and a tenant under *.localhost, as tests/test_browser.py makes them.
browser = test_browser.browser
local_tenant = test_browser.local_tenant

LOCALES = ROOT / "connectors" / "webchat" / "static" / "locales"


def catalogue(lang: str) -> dict[str, str]:
    return dict(json.loads((LOCALES / f"{lang}.json").read_text(encoding="utf-8")))


# --- the protocol ------------------------------------------------------------------------------------
async def test_a_visitors_picture_reaches_the_agent_and_stays_the_visitors(tenant: TenantInfo) -> None:
    agent = await tenant.add_agent(name="Li Na")
    client = await tenant.signed_in(agent)
    visitor = tenant.visitor()
    await visitor.connect()
    photo = await visitor.upload("../broken\u202egnp.png", PNG, "image/png")
    # The name is cleaned, not refused: no folders, nothing invisible.
    assert photo["name"] == ".._brokengnp.png" and photo["size"] == len(PNG), photo
    assert photo["url"].startswith(f"/files/{photo['id']}/"), photo

    # A message may be the picture alone.
    cid = await visitor.send("", attachments=[photo["id"]])
    ack = await visitor.wait_frame(lambda f: f.get("type") == "ack" and f["client_id"] == cid)
    [mine] = ack["message"]["attachments"]
    assert mine == {"name": photo["name"], "content_type": "image/png", "size": len(PNG), "url": photo["url"]}

    # The agent gets it like any file a customer sent (by the agents' URL, signed in).
    created = await client.wait_event(lambda e: e["kind"] == "message.created")
    [theirs] = created["message"]["attachments"]
    assert theirs["id"] == photo["id"] and theirs["url"] == f"/api/v1/attachments/{photo['id']}", theirs
    detail = await client.api("GET", f"/api/v1/tickets/{created['ticket_id']}")
    assert detail["messages"][0]["attachments"] == [theirs]
    async with aiohttp.ClientSession() as http:
        base = tenant.server.url
        headers = {"Host": tenant.domain}
        async with http.get(base + theirs["url"], headers={**headers, "Authorization": f"Bearer {client.token}"}) as r:
            assert (r.status, await r.read()) == (200, PNG)
        async with http.get(base + photo["url"], headers=headers) as r:
            assert (r.status, await r.read(), r.headers["Content-Type"]) == (200, PNG, "image/png")

    # Over HTTP too, with text; and the history shows the visitor's files by their own links.
    other = await visitor.upload("notes.txt", "订单 2026-1201".encode(), "text/plain")
    body = {"visitor_id": visitor.visitor_id, "client_id": "with-file", "text": "and my notes",
            "attachments": [other["id"]]}
    posted = await visitor.request("POST", "/webchat/messages", body)
    assert [a["url"] for a in posted["message"]["attachments"]] == [other["url"]]
    history = await visitor.request("GET", f"/webchat/history?visitor_id={visitor.visitor_id}")
    assert [[a["url"] for a in m["attachments"]] for m in history["messages"]] == [[photo["url"]], [other["url"]]]

    # Another visitor cannot send it (nor an agent's file): not found, like a missing id.
    stranger = tenant.visitor()
    await stranger.connect()
    cid = await stranger.send("look", attachments=[photo["id"]])
    error = await stranger.wait_frame(lambda f: f.get("type") == "error" and f.get("client_id") == cid)
    assert error["code"] == "attachment_not_found", error
    agents_file = await client.upload("label.pdf", b"%PDF label", "application/pdf")
    with pytest.raises(HubError) as refused:
        await visitor.request("POST", "/webchat/messages", {"visitor_id": visitor.visitor_id, "client_id": "x",
                                                            "text": "", "attachments": [agents_file["id"]]})
    assert (refused.value.status, refused.value.code) == (404, "attachment_not_found")
    await stranger.close()
    await visitor.close()


async def test_uploads_are_limited_per_visitor(tenant: TenantInfo) -> None:
    limit = tenant.server.app[HUB].settings.channel("webchat", WebchatSettings).uploads_per_window
    visitor = tenant.visitor()
    await visitor.connect()
    for i in range(limit):
        await visitor.upload(f"p{i}.png", PNG, "image/png")
    async with aiohttp.ClientSession() as http:
        query = urlencode({"visitor_id": visitor.visitor_id, "name": "one too many.png"})
        async with http.post(f"{tenant.server.url}/webchat/attachments?{query}", data=PNG,
                             headers={"Host": tenant.domain, "Content-Type": "image/png"}) as r:
            body = await r.json()
            assert (r.status, body["error"]["code"]) == (429, "too_many_uploads"), body
            assert int(r.headers["Retry-After"]) >= 1
            assert r.headers["Access-Control-Allow-Origin"] == "*"
    # Another visitor is not held back; this one may upload again once the window has passed.
    other = tenant.visitor()
    await other.connect()
    await other.upload("fine.png", PNG, "image/png")
    conn = tenant.server.app[HUB].connectors["webchat"]
    window = conn.settings.upload_window_seconds
    conn.clock = lambda: utcnow() + timedelta(seconds=window + 1)
    try:
        await visitor.upload("later.png", PNG, "image/png")
    finally:
        conn.clock = utcnow
    await other.close()
    await visitor.close()


async def test_an_upload_must_be_what_its_type_says(tenant: TenantInfo) -> None:
    """The bytes are checked against the declared type: a page sent as a picture, a picture sent as
    a PDF, or binary sent as text is refused (415 content_mismatch) and nothing is stored."""
    visitor = tenant.visitor()
    await visitor.connect()
    docx = b"PK\x03\x04" + b"\x00" * 40  # an Office Open XML file is a zip archive
    for name, data, content_type in [("page.png", b"<html><script>alert(1)</script></html>", "image/png"),
                                     ("photo.pdf", PNG, "application/pdf"),
                                     ("notes.txt", b"abc\x00\x01\x02", "text/plain"),
                                     ("sheet.xlsx", b"\xd0\xcf\x11\xe0" + b"\x00" * 20,
                                      "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")]:
        async with aiohttp.ClientSession() as http:
            query = urlencode({"visitor_id": visitor.visitor_id, "name": name})
            async with http.post(f"{tenant.server.url}/webchat/attachments?{query}", data=data,
                                 headers={"Host": tenant.domain, "Content-Type": content_type}) as r:
                body = await r.json()
                assert (r.status, body["error"]["code"]) == (415, "content_mismatch"), (name, body)
                assert content_type in body["error"]["message"]
    # What they say they are, they are: taken.
    for name, data, content_type in [("receipt.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "application/pdf"),
                                     ("order.docx", docx,
                                      "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
                                     ("地址.txt", "杭州市西湖区".encode("gb18030"), "text/plain"),
                                     ("list.csv", "name,qty\n杯子,2\n".encode(), "text/csv"),
                                     ("shot.png", PNG, "image/png")]:
        stored = await visitor.upload(name, data, content_type)
        assert stored["size"] == len(data)
    async with tenant.server.app[HUB].db.read(tenant.id) as session:
        names = set((await session.execute(select(StoredAttachment.name))).scalars())
    assert names == {"receipt.pdf", "order.docx", "地址.txt", "list.csv", "shot.png"}
    await visitor.close()


async def test_the_visitor_is_told_whether_an_agent_is_online_with_the_tenants_words(tenant: TenantInfo) -> None:
    admin = await tenant.add_agent(role="admin")
    admin_client = await tenant.signed_in(admin, connect=False)
    words = {"offline_message": {"en": "We're back at 9:00.", "zh-CN": "我们九点回来。"}, "welcome": {"en": "Hi!"}}
    assert await admin_client.api("PUT", "/api/v1/webchat/settings", words) == words
    assert await admin_client.api("PUT", "/api/v1/webchat/settings", {"welcome": {}}) == {**words, "welcome": {}}
    assert await admin_client.api("GET", "/api/v1/webchat/settings") == {**words, "welcome": {}}

    visitor = tenant.visitor()
    welcome = await visitor.connect()
    assert welcome["agents_online"] is False
    assert welcome["offline_message"] == words["offline_message"] and welcome["greeting"] == {}
    settings = tenant.server.app[HUB].settings
    assert welcome["uploads"]["max_bytes"] == min(WebchatSettings().max_upload_bytes, settings.max_attachment_bytes)
    assert "image/png" in welcome["uploads"]["types"] and "text/html" not in welcome["uploads"]["types"]
    # The message is taken all the same.
    cid = await visitor.send("Anyone there?")
    await visitor.wait_frame(lambda f: f.get("type") == "ack" and f["client_id"] == cid)

    # An agent comes online: told at once; and when the last one leaves.
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    await visitor.wait_frame(lambda f: f == {"type": "agents", "online": True})
    second = tenant.visitor()
    assert (await second.connect())["agents_online"] is True
    await client.api("PUT", "/api/v1/me/presence", {"status": "offline"})
    await visitor.wait_frame(lambda f: f == {"type": "agents", "online": False})
    await second.wait_frame(lambda f: f == {"type": "agents", "online": False})
    created = await eventually(lambda: _tickets(admin_client))
    assert created
    for c in (visitor, second):
        await c.close()


async def _tickets(client: Any) -> list[Any]:
    return list((await client.api("GET", "/api/v1/tickets?view=all"))["tickets"])


# --- in a real browser ----------------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
browser_only = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")


def origin(tenant: TenantInfo) -> str:
    return f"http://{tenant.domain}:{tenant.server.port}"


async def _open_chat(browser: Any, url: str, **context: Any) -> tuple[Any, Any]:
    ctx = await browser.new_context(**context)
    page = await ctx.new_page()
    page.on("console", lambda m: print("page:", m.type, m.text))  # shown when a test fails
    await page.goto(url)
    await page.click("#chw-launcher")
    await page.wait_for_selector("#chw-status[data-state='online']")
    return ctx, page


async def _decoded(img: Any, width: int = 2) -> bool:
    return bool(await img.evaluate(f"(i) => i.complete && i.naturalWidth === {width}"))


def test_the_catalogues_have_the_same_keys_and_the_code_uses_only_those() -> None:
    en, zh = catalogue("en"), catalogue("zh-CN")
    assert set(en) == set(zh)
    assert all(v.strip() for v in [*en.values(), *zh.values()])
    static = ROOT / "connectors" / "webchat" / "static"
    code = "".join(p.read_text(encoding="utf-8") for p in static.glob("*.mjs"))
    used = set(re.findall(r"\bt\(\s*'([a-z_]+\.[a-z_]+)'", code))
    used |= {f"status.{s}" for s in ("connecting", "online", "offline")}
    used |= {f"error.{c}" for c in ("attachment_too_large", "unsupported_type", "empty_attachment", "too_many_files",
                                    "upload_failed", "too_many_uploads", "busy")}
    assert used <= set(en), sorted(used - set(en))
    # No words in the code: every text the UI shows is t(...) or the tenant's own (pick(...)).
    app = (static / "app.mjs").read_text(encoding="utf-8")
    for word in ("Chat with us", "Send", "online", "Type a message", "is typing"):
        assert f">{word}<" not in app and f"'{word}'" not in app, word


@browser_only
async def test_a_picture_from_the_widget_reaches_the_console(browser: Any, local_tenant: TenantInfo,
                                                             shots: Path) -> None:
    agent = await local_tenant.add_agent(name="Li Na")
    base = origin(local_tenant)
    console_ctx, console = await _agent_signs_in(browser, base, agent.email)
    shop_ctx, shop = await _open_chat(browser, f"{base}/webchat/demo")
    await shop.wait_for_selector("#chw-offline", state="detached")  # an agent is online

    # The customer picks a picture: a thumbnail and its size before sending, then its upload.
    await shop.set_input_files("#chw-file", files=[{"name": "broken lid.png", "mimeType": "image/png", "buffer": PNG}])
    draft = shop.locator(".chw-draft[data-state='done']")
    await draft.wait_for()
    assert "broken lid.png" in (await draft.text_content() or "")
    await eventually(lambda: _decoded(shop.locator(".chw-draft img.chw-draft-thumb")))
    await shop.screenshot(path=str(shots / "widget-preview.png"))
    await shop.fill("#chw-input", "The lid arrived broken")
    await shop.click("#chw-send")
    sent = shop.locator(".chw-msg.chw-inbound:not(.chw-pending):has-text('lid arrived broken')")
    await sent.wait_for()
    assert await shop.locator(".chw-draft").count() == 0
    link = sent.locator("a.chw-file")
    assert await link.text_content() == "broken lid.png"
    assert (await link.get_attribute("href") or "").startswith(f"{base}/files/")
    await eventually(lambda: _decoded(sent.locator("img.chw-thumb")))

    # The agent sees it in the console like any customer's file: a thumbnail, decoded.
    ticket = console.locator("#tickets li.ticket").first
    await ticket.wait_for()
    await ticket.click()
    inbound = console.locator("#thread .msg-inbound:has-text('lid arrived broken')")
    await inbound.wait_for()
    await inbound.locator("a.att:has-text('broken lid.png')").wait_for()
    thumbnail = inbound.locator("img.att-img")
    await thumbnail.wait_for()

    async def decoded() -> bool:  # polled from here: the console's CSP forbids evaluating strings
        return bool(await thumbnail.evaluate("(i) => i.complete && i.naturalWidth === 2"))

    await eventually(decoded)
    # A picture alone, pasted (no text).
    await shop.evaluate("""async (bytes) => {
        const input = document.querySelector('#channelhub-widget').shadowRoot.querySelector('#chw-input');
        const data = new DataTransfer();
        data.items.add(new File([new Uint8Array(bytes)], 'pasted.png', {type: 'image/png'}));
        input.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));
    }""", list(PNG))
    await shop.locator(".chw-draft[data-state='done']:has-text('pasted.png')").wait_for()
    await shop.press("#chw-input", "Enter")
    await shop.locator(".chw-msg.chw-inbound:not(.chw-pending) a.chw-file:has-text('pasted.png')").wait_for()
    await console.locator("#thread .msg-inbound a.att:has-text('pasted.png')").wait_for()
    await shop.screenshot(path=str(shots / "widget-picture.png"))
    await console.screenshot(path=str(shots / "console-picture.png"))
    await console_ctx.close()
    await shop_ctx.close()


@browser_only
async def test_files_the_widget_refuses_are_said_so(browser: Any, local_tenant: TenantInfo, shots: Path) -> None:
    settings = local_tenant.server.app[HUB].settings
    limit = min(settings.channel("webchat", WebchatSettings).max_upload_bytes, settings.max_attachment_bytes)
    ctx, shop = await _open_chat(browser, f"{origin(local_tenant)}/webchat/demo")
    en = catalogue("en")
    await shop.set_input_files("#chw-file", files=[
        {"name": "setup.exe", "mimeType": "application/x-msdownload", "buffer": b"MZ\x90\x00 not for you"},
        {"name": "huge.png", "mimeType": "image/png", "buffer": PNG + b"\x00" * limit},
        {"name": "fine.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4 fine"},
    ])
    refused = shop.locator(".chw-draft[data-state='error']")
    await refused.nth(1).wait_for()
    exe = shop.locator(".chw-draft:has-text('setup.exe') .chw-draft-error")
    assert await exe.text_content() == en["error.unsupported_type"]
    huge = await shop.locator(".chw-draft:has-text('huge.png') .chw-draft-error").text_content() or ""
    assert huge.startswith(en["error.attachment_too_large"].split("{max}")[0]) and "MB" in huge, huge
    await shop.locator(".chw-draft[data-state='done']:has-text('fine.pdf')").wait_for()
    await shop.screenshot(path=str(shots / "widget-refused.png"))
    # The refused ones are not sent; the accepted one is.
    await shop.click("#chw-send")
    sent = shop.locator(".chw-msg.chw-inbound:not(.chw-pending)")
    await sent.wait_for()
    assert [n.strip() for n in await sent.locator("a.chw-file").all_text_contents()] == ["fine.pdf"]
    # The hub refuses what the widget let through all the same (the widget only checks first).
    answer = await shop.evaluate("""async ([url]) => {
        const r = await fetch(url, {method: 'POST', headers: {'Content-Type': 'text/html'}, body: '<b>x</b>'});
        return [r.status, (await r.json()).error.code];
    }""", [f"{origin(local_tenant)}/webchat/attachments?visitor_id={'v' * 20}&name=x.html"])
    assert answer == [415, "unsupported_type"]
    await ctx.close()


@browser_only
async def test_the_offline_notice_in_the_tenants_words(browser: Any, local_tenant: TenantInfo,
                                                       shots: Path) -> None:
    admin = await local_tenant.add_agent(role="admin", name="王芳")
    admin_client = await local_tenant.signed_in(admin, connect=False)
    words = {"offline_message": {"en": "Back at 9:00 (Beijing time). Leave us a message!",
                                 "zh-CN": "我们北京时间 9:00 上班，请留言！"},
             "welcome": {"en": "Welcome to Acme!", "zh-CN": "欢迎光临 Acme！"}}
    await admin_client.api("PUT", "/api/v1/webchat/settings", words)
    base = origin(local_tenant)

    en_ctx, en_page = await _open_chat(browser, f"{base}/webchat/demo")
    await en_page.wait_for_selector(f"#chw-offline:has-text('{words['offline_message']['en']}')")
    await en_page.wait_for_selector(f"#chw-greeting:has-text('{words['welcome']['en']}')")
    # The language follows the browser.
    zh_ctx, zh_page = await _open_chat(browser, f"{base}/webchat/demo", locale="zh-CN")
    zh = catalogue("zh-CN")
    await zh_page.wait_for_selector(f"#chw-offline:has-text('{words['offline_message']['zh-CN']}')")
    await zh_page.wait_for_selector(f"#chw-status:has-text('{zh['status.online']}')")
    await zh_page.wait_for_selector(f".chw-title:has-text('{zh['panel.title']}')")

    # Messages are taken while nobody is online.
    await zh_page.fill("#chw-input", "你好，有人在吗？")
    await zh_page.press("#chw-input", "Enter")
    await zh_page.wait_for_selector(".chw-msg.chw-inbound:not(.chw-pending):has-text('有人在吗')")
    await zh_page.screenshot(path=str(shots / "widget-offline-zh.png"))

    async def stored() -> bool:
        for ticket in (await admin_client.api("GET", "/api/v1/tickets?view=all"))["tickets"]:
            detail = await admin_client.api("GET", f"/api/v1/tickets/{ticket['id']}")
            if any(m["text"] == "你好，有人在吗？" for m in detail["messages"]):
                return True
        return False

    await eventually(stored)

    # The visitor switches to Chinese in the panel; it is kept over a reload.
    await en_page.select_option("#chw-lang", "zh-CN")
    await en_page.wait_for_selector(f"#chw-offline:has-text('{words['offline_message']['zh-CN']}')")
    await en_page.wait_for_selector(f"#chw-greeting:has-text('{words['welcome']['zh-CN']}')")
    await en_page.reload()
    await en_page.click("#chw-launcher")
    await en_page.wait_for_selector(f"#chw-status:has-text('{zh['status.online']}')")
    await en_page.wait_for_selector(f"#chw-offline:has-text('{words['offline_message']['zh-CN']}')")
    await en_page.select_option("#chw-lang", "en")
    await en_page.wait_for_selector(f"#chw-offline:has-text('{words['offline_message']['en']}')")
    await en_page.screenshot(path=str(shots / "widget-offline-en.png"))

    # An agent comes online: the notice goes, on every open widget.
    agent = await local_tenant.add_agent(name="Li Na")
    console_ctx, _console = await _agent_signs_in(browser, base, agent.email)
    await en_page.wait_for_selector("#chw-offline", state="detached")
    await zh_page.wait_for_selector("#chw-offline", state="detached")
    await zh_page.screenshot(path=str(shots / "widget-online-zh.png"))
    for ctx in (en_ctx, zh_ctx, console_ctx):
        await ctx.close()


SHOP_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Another site</title>
<style>
  /* Hostile host styles: none of them may reach the widget. */
  body { margin: 0; font: 30px/2 Georgia, serif; color: rgb(255, 0, 0); letter-spacing: 6px; }
  * { text-transform: uppercase !important; }
  button, textarea, div { background: lime !important; border: 5px dashed black !important; }
</style></head>
<body><h1>Shop on another site</h1>
<script src="{hub}/webchat/widget.js" data-lang="zh-CN" data-name="张伟" async></script>
</body></html>"""


@pytest.fixture
async def other_site(local_tenant: TenantInfo) -> AsyncIterator[str]:
    """A tiny shop page on another origin (127.0.0.1 and its own port) that embeds the widget with
    the hub's *.localhost URL, as a customer's site does."""
    from aiohttp import web

    page = SHOP_PAGE.replace("{hub}", origin(local_tenant))

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/"
    await runner.cleanup()


@browser_only
async def test_the_widget_on_another_site_in_chinese(browser: Any, local_tenant: TenantInfo, other_site: str,
                                                     shots: Path) -> None:
    agent = await local_tenant.add_agent(name="Li Na")
    client = await local_tenant.signed_in(agent)
    zh = catalogue("zh-CN")
    # An English browser: Chinese because the site says data-lang="zh-CN".
    ctx, page = await _open_chat(browser, other_site, locale="en-US")
    await page.wait_for_selector(f"#chw-status:has-text('{zh['status.online']}')")
    assert await page.get_attribute("#chw-launcher", "aria-label") in (zh["launcher.open"], zh["launcher.close"])
    assert await page.locator(".chw-title").text_content() == zh["panel.title"]
    assert await page.get_attribute("#chw-input", "placeholder") == zh["compose.placeholder"]
    # The host page's styles stop at the shadow root.
    style = await page.locator("#chw-input").evaluate(
        "(e) => { const s = getComputedStyle(e); return [s.letterSpacing, s.textTransform, s.fontSize, s.color]; }")
    assert style == ["normal", "none", "14px", "rgb(31, 35, 40)"], style
    fonts = await page.locator(".chw-title").evaluate("(e) => getComputedStyle(e).fontFamily")
    assert "PingFang SC" in fonts and "Noto Sans CJK SC" in fonts, fonts

    # Writing, a picture (uploaded across origins), the agent's answer, typing: all work from there.
    await page.fill("#chw-input", "你好，我想退货")
    await page.press("#chw-input", "Enter")
    await page.wait_for_selector(".chw-msg.chw-inbound:not(.chw-pending):has-text('我想退货')")
    created = await client.wait_event(lambda e: e["kind"] == "message.created")
    assert created["ticket"]["customer"]["name"] == "张伟"
    await page.set_input_files("#chw-file", files=[{"name": "收据.png", "mimeType": "image/png", "buffer": PNG}])
    await page.locator(".chw-draft[data-state='done']").wait_for()
    await page.click("#chw-send")
    await page.wait_for_selector(".chw-msg.chw-inbound:not(.chw-pending) a.chw-file:has-text('收据.png')")
    event = await client.wait_event(lambda e: e["kind"] == "message.created" and e["message"]["attachments"])
    assert event["message"]["attachments"][0]["name"] == "收据.png"
    await client.reply(created["ticket_id"], "好的，请把订单号发给我。")
    await page.wait_for_selector(".chw-msg.chw-outbound:has-text('订单号')")
    await page.screenshot(path=str(shots / "widget-other-site.png"))
    # Escape closes the panel; the launcher gets the focus back.
    await page.press("#chw-input", "Escape")
    await page.wait_for_selector("#chw-panel", state="hidden")
    await ctx.close()
