"""The web chat widget (#13): customers' files, the offline notice, languages, and the widget on
another site. First over the widget's own protocol (HTTP and the visitor socket), then in a real
headless Chromium (Debian's) driven by Playwright, as customers and agents use it. Screenshots go
to the test's tmp_path."""


from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from admin_api.client import HubError
from connectors.webchat.settings import WebchatSettings
from tests.conftest import ROOT, TenantInfo, eventually
from tests.support import PNG
from web.http import HUB

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
    # Another visitor is not held back.
    other = tenant.visitor()
    await other.connect()
    await other.upload("fine.png", PNG, "image/png")
    await other.close()
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
