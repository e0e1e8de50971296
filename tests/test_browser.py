"""The widget and the agent console in a real headless Chromium (Debian's), driven by Playwright.

Tenants here live under *.localhost, which Chromium resolves to the loopback address by itself, so
the pages are loaded exactly as a customer and an agent load them: by the tenant's domain."""

# ruff: noqa: RUF001 - Chinese is written with full-width punctuation; these are its texts.
from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PASSWORD, Server, TenantInfo, eventually, make_tenant
from tests.test_idempotent_actions import crash_after_publishing, redelivered

CHROMIUM = os.environ.get("CHANNELHUB_CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        await b.close()


@pytest.fixture
async def local_tenant(settings: Any, server: Server) -> AsyncIterator[TenantInfo]:
    t = await make_tenant(settings, server, suffix="localhost")
    yield t
    await t.close()


def origin(tenant: TenantInfo) -> str:
    return f"http://{tenant.domain}:{tenant.server.port}"


async def _customer_writes(browser: Any, base: str, text: str) -> tuple[Any, Any]:
    """A customer opens the demo shop page (the one script tag), opens the chat and writes."""
    ctx = await browser.new_context()
    shop = await ctx.new_page()
    await shop.goto(f"{base}/webchat/demo")
    await shop.click("#chw-launcher")
    await shop.wait_for_selector("#chw-status:has-text('online')")
    await shop.fill("#chw-input", text)
    await shop.click("#chw-send")
    await shop.wait_for_selector(".chw-msg.chw-inbound:not(.chw-pending)")
    return ctx, shop


async def _agent_signs_in(browser: Any, base: str, email: str, **context: Any) -> tuple[Any, Any]:
    """An agent opens the console, signs in and waits until it is connected."""
    ctx = await browser.new_context(**context)
    console = await ctx.new_page()
    await console.goto(f"{base}/console")
    await console.fill("#login-email", email)
    await console.fill("#login-password", PASSWORD)
    await console.click("#login-submit")
    await console.wait_for_selector("#conn:has-text('connected')")
    return ctx, console


async def test_widget_and_console_talk_live(browser: Any, local_tenant: TenantInfo, shots: Path) -> None:
    agent = await local_tenant.add_agent(name="Li Na")
    base = origin(local_tenant)

    # The agent signs in to the console.
    console_ctx, console = await _agent_signs_in(browser, base, agent.email)

    # A customer opens the shop page with the one script tag and writes.
    shop_ctx, shop = await _customer_writes(browser, base, "Hi, my parcel is late")

    # It appears in the agent's console, live; the agent opens it and answers.
    ticket = console.locator("#tickets li.ticket").first
    await ticket.wait_for()
    await ticket.click()
    await console.wait_for_selector("#thread .msg-inbound:has-text('my parcel is late')")
    await console.fill("#reply-text", "Sorry! It arrives tomorrow.")
    await console.click("#send-reply")
    await console.wait_for_selector("#thread .msg-outbound:has-text('arrives tomorrow')")

    reply = shop.locator(".chw-msg.chw-outbound")
    await reply.wait_for()
    assert await reply.text_content() is not None
    assert "arrives tomorrow" in (await reply.text_content() or "")
    await shop.screenshot(path=str(shots / "widget.png"))
    await console.screenshot(path=str(shots / "console.png"))

    # A reload keeps the conversation: same visitor, whole history.
    await shop.reload()
    await shop.click("#chw-launcher")
    await shop.wait_for_selector(".chw-msg.chw-outbound:has-text('arrives tomorrow')")
    assert await shop.locator(".chw-msg.chw-inbound:has-text('my parcel is late')").count() == 1
    # User text is shown as text, never as markup.
    await shop.fill("#chw-input", "<b>bold?</b>")
    await shop.press("#chw-input", "Enter")
    await shop.wait_for_selector(".chw-msg.chw-inbound:has-text('<b>bold?</b>')")
    await console.wait_for_selector("#thread .msg-inbound:has-text('<b>bold?</b>')")
    await console_ctx.close()
    await shop_ctx.close()


async def test_console_refuses_bad_password(browser: Any, local_tenant: TenantInfo) -> None:
    agent = await local_tenant.add_agent()
    ctx = await browser.new_context()
    page = await ctx.new_page()
    await page.goto(f"{origin(local_tenant)}/console")
    await page.fill("#login-email", agent.email)
    await page.fill("#login-password", "wrong password")
    await page.click("#login-submit")
    error = page.locator("#login-error:not(:empty)")
    await error.wait_for()
    assert "wrong" in (await error.text_content() or "").lower()
    await ctx.close()


async def test_widget_shows_attached_files_as_links_the_customer_opens(browser: Any, local_tenant: TenantInfo) -> None:
    agent = await local_tenant.add_agent()
    client = await local_tenant.signed_in(agent)
    base = origin(local_tenant)
    ctx, shop = await _customer_writes(browser, base, "Please send the manual")
    created = await client.wait_event(lambda e: e["kind"] == "message.created")

    manual = await client.upload("manual <v2>.pdf", b"%PDF-1.4 the manual", "application/pdf")
    await client.reply(created["ticket_id"], "Here you are", attachments=[manual["id"]])
    link = shop.locator(".chw-msg.chw-outbound a.chw-file")
    await link.wait_for()
    assert await link.text_content() == "manual <v2>.pdf"  # a name is text, never markup
    href = await link.get_attribute("href") or ""
    assert href.startswith(f"{base}/files/{manual['id']}/"), href
    assert await link.get_attribute("target") == "_blank"
    # The customer's browser opens it without any sign-in.
    opened = await shop.evaluate("async (u) => { const r = await fetch(u); return [r.status, await r.text()]; }", href)
    assert opened == [200, "%PDF-1.4 the manual"]
    await ctx.close()


# A real 2x2 PNG, so the console's thumbnail has something to decode.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000002000000020802000000fdd49a730000001049444154789c63f8cfc0"
    "00440c100a001fee03fd8b5f14d40000000049454e44ae426082")


async def test_console_sends_and_shows_attachments(browser: Any, local_tenant: TenantInfo, tmp_path: Path,
                                                   shots: Path) -> None:
    agent = await local_tenant.add_agent(name="Li Na")
    base = origin(local_tenant)
    console_ctx, console = await _agent_signs_in(browser, base, agent.email, accept_downloads=True)
    shop_ctx, shop = await _customer_writes(browser, base, "What does the label look like?")

    ticket = console.locator("#tickets li.ticket").first
    await ticket.wait_for()
    await ticket.click()
    await console.wait_for_selector("#thread .msg-inbound:has-text('label look like')")
    # The agent picks a picture and sends it with a line of text.
    await console.set_input_files("#attach-file", files=[
        {"name": "label.png", "mimeType": "image/png", "buffer": PNG}])
    await console.fill("#reply-text", "Like this one:")
    await console.click("#send-reply")
    sent = console.locator("#thread .msg-outbound:has-text('Like this one:')")
    await sent.wait_for()
    await sent.locator("a.att:has-text('label.png')").wait_for()
    # The thumbnail was fetched with the agent's token and decoded. (Polled from here: the console's
    # CSP forbids evaluating strings in the page, which wait_for_function does.)
    thumbnail = console.locator("#thread .msg-outbound img.att-img")
    await thumbnail.wait_for()

    async def decoded() -> bool:
        return bool(await thumbnail.evaluate("(i) => i.complete && i.naturalWidth === 2"))

    await eventually(decoded)
    async with console.expect_download() as download_info:
        await sent.locator("a.att").click()
    download = await download_info.value
    assert download.suggested_filename == "label.png"
    saved = tmp_path / "downloaded.png"
    await download.save_as(saved)
    assert saved.read_bytes() == PNG
    assert await console.input_value("#reply-text") == ""

    # The customer gets it as a link in the widget.
    await shop.locator(".chw-msg.chw-outbound a.chw-file:has-text('label.png')").wait_for()
    await console.screenshot(path=str(shots / "console-attachment.png"))
    await console_ctx.close()
    await shop_ctx.close()


async def test_widget_shows_a_reply_once_when_it_is_delivered_twice(browser: Any, local_tenant: TenantInfo,
                                                                   settings: Any, tmp_path: Path, shots: Path) -> None:
    """Delivery is at least once: after a crash between publishing a reply and recording it, the
    outbox sends it again. The page was reloaded meanwhile (a new socket, which never sent that
    reply: the widget had it already), so the second copy reaches the browser; it shows it once."""
    agent = await local_tenant.add_agent(name="Li Na")
    client = await local_tenant.signed_in(agent)
    ctx, shop = await _customer_writes(browser, origin(local_tenant), "Has my order shipped?")
    created = await client.wait_event(lambda e: e["kind"] == "message.created")
    reply = await client.reply(created["ticket_id"], "Yes, it left this morning")
    await client.wait_event(lambda e: e["kind"] == "message.delivery" and e["message_id"] == reply["id"])
    await shop.wait_for_selector(f".chw-msg.chw-outbound[data-id='{reply['id']}']")

    await shop.reload()
    await shop.click("#chw-launcher")
    await shop.wait_for_selector("#chw-status:has-text('online')")
    await crash_after_publishing(settings, local_tenant.id, reply["id"])

    async def again() -> bool:
        return await redelivered(settings, local_tenant.id, reply["id"])

    await eventually(again, timeout=20)
    # Frames keep their order on the socket: once the next reply shows, the copy has arrived too.
    marker = await client.reply(created["ticket_id"], "Anything else?")
    await shop.wait_for_selector(f".chw-msg.chw-outbound[data-id='{marker['id']}']")
    assert await shop.locator(".chw-msg.chw-outbound:has-text('it left this morning')").count() == 1
    await shop.screenshot(path=str(shots / "widget-once.png"))
    await ctx.close()


async def test_a_mail_in_the_console_answered_by_mail(browser: Any, local_tenant: TenantInfo, shots: Path) -> None:
    """A customer's Chinese mail with a file, sent to the hub's SMTP receiver, shows in the console;
    the agent's answer from the console leaves through the tenant's relay, threaded."""
    from tests.email.conftest import make_mailbox
    from tests.email.support import Sink, mail

    sink = Sink().start()
    try:
        agent = await local_tenant.add_agent(name="王芳", role="admin")
        # (*.localhost is no mail domain: the address is on one.)
        mail_domain = local_tenant.domain.replace(".localhost", ".example.com")
        mailbox = await make_mailbox(local_tenant, sink, domain=mail_domain)
        base = origin(local_tenant)
        console_ctx, console = await _agent_signs_in(browser, base, agent.email)
        raw = mail(sender="li.lei@customers.example.cn", name="李雷", to=mailbox.address, subject="发票问题",
                   text="您好，发票还没有收到，订单号 2026-1201。\n\n李雷",
                   files=[("发票.pdf", "application/pdf", b"%PDF-1.4 invoice")])
        assert (await mailbox.deliver(raw, mail_from="li.lei@customers.example.cn"))[0] == 250
        ticket = console.locator("#tickets li.ticket").first
        await ticket.wait_for()
        await ticket.click()
        await console.wait_for_selector("#thread .msg-inbound:has-text('发票还没有收到')")
        await console.locator("#thread .msg-inbound a.att:has-text('发票.pdf')").wait_for()
        await console.fill("#reply-text", "李先生您好，发票今天寄出。")
        await console.click("#send-reply")
        await console.wait_for_selector("#thread .msg-outbound:has-text('发票今天寄出')")
        [sent] = await sink.wait_for(1)
        assert sent["Subject"].startswith("Re: 发票问题 [#")
        assert sent.get_body(("plain",)).get_content().strip() == "李先生您好，发票今天寄出。"
        await console.screenshot(path=str(shots / "console-email.png"))
        await console_ctx.close()
    finally:
        sink.stop()
