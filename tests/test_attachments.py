"""Attachments over real HTTP: an agent uploads a file and fetches it back, attaches it to a reply
or a note (text may then be empty), another tenant cannot reach it, and a web chat customer gets a
signed link that opens without signing in."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDict

from tests.conftest import TenantInfo, eventually
from tests.support import Http, assert_error

PDF = b"%PDF-1.4\n% a receipt\n" + bytes(range(256)) * 4


async def _raw(tenant: TenantInfo, method: str, path: str,
               token: str | None = None) -> tuple[int, bytes, CIMultiDict[str]]:
    headers = {"Host": tenant.domain}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as http, http.request(method, tenant.server.url + path, headers=headers) as r:
        return r.status, await r.read(), r.headers.copy()


async def test_upload_fetch_and_attach_to_a_note(tenant: TenantInfo, other_tenant: TenantInfo) -> None:
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    made = await client.upload("receipt 2026-11 (Zhāng).pdf", PDF, "application/pdf")
    assert made == {"id": made["id"], "name": "receipt 2026-11 (Zhāng).pdf", "content_type": "application/pdf",
                    "size": len(PDF), "url": f"/api/v1/attachments/{made['id']}"}

    status, data, headers = await _raw(tenant, "GET", made["url"], client.token)
    assert (status, data) == (200, PDF)
    assert headers["Content-Type"] == "application/pdf"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["ETag"] == f'"{hashlib.sha256(PDF).hexdigest()}"'
    assert "filename*=UTF-8''receipt%202026-11%20%28Zh%C4%81ng%29.pdf" in headers["Content-Disposition"]
    # Anything a browser could run is a download, not a page on the tenant's domain.
    page = await client.upload("page.html", b"<script>alert(1)</script>", "text/html")
    _, _, html_headers = await _raw(tenant, "GET", page["url"], client.token)
    assert html_headers["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in html_headers["Content-Security-Policy"]

    async with aiohttp.ClientSession() as session:
        http = Http(tenant.server.url, session)
        assert_error(await http("GET", made["url"], host=tenant.domain), 401, "unauthorized")
        # Another tenant's agent: the id is not found, exactly as one that exists nowhere.
        other = await other_tenant.signed_in(await other_tenant.add_agent(), connect=False)
        foreign = await http("GET", made["url"], host=other_tenant.domain, token=other.token)
        missing = await http("GET", "/api/v1/attachments/999999999999", host=other_tenant.domain, token=other.token)
        assert_error(foreign, 404, "attachment_not_found")
        assert_error(missing, 404, "attachment_not_found")
        assert foreign.body["error"]["message"].replace(str(made["id"]), "X") == \
            missing.body["error"]["message"].replace("999999999999", "X")

    # A ticket made by hand, and an internal note that is only a file.
    ticket = await client.api("POST", "/api/v1/tickets", {"text": "Phoned about a refund",
                                                         "customer": {"name": "Walk-in"}})
    note = await client.api("POST", f"/api/v1/tickets/{ticket['ticket']['id']}/messages",
                            {"kind": "note", "attachments": [made["id"]]})
    assert note["message"]["text"] == ""
    assert note["message"]["attachments"] == [made]
    detail = await client.api("GET", f"/api/v1/tickets/{ticket['ticket']['id']}")
    assert detail["messages"][-1]["attachments"] == [made]
    # The same through the agent gateway, text and file; repeats of an id are kept once.
    again = await client.note(ticket["ticket"]["id"], "and the scan", attachments=[made["id"], made["id"]])
    assert again["attachments"] == [made]


async def test_web_chat_customer_gets_a_signed_link(tenant: TenantInfo) -> None:
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    visitor = tenant.visitor()
    await visitor.connect()
    await visitor.send("Can I have my invoice?")
    created = await client.wait_event(lambda e: e["kind"] == "message.created")
    ticket_id = created["ticket_id"]
    await client.wait_event(lambda e: e["kind"] == "ticket.assigned" and e["ticket_id"] == ticket_id)

    invoice = await client.upload("invoice.pdf", PDF, "application/pdf")
    secret = await client.upload("internal.txt", b"for agents only", "text/plain")
    await client.note(ticket_id, "", attachments=[secret["id"]])
    reply = await client.reply(ticket_id, "", attachments=[invoice["id"]])
    assert reply["attachments"] == [invoice]

    got = await visitor.wait_message(lambda m: m["direction"] == "outbound")
    assert got["id"] == reply["id"] and got["text"] == ""
    [link] = got["attachments"]
    assert set(link) == {"name", "content_type", "size", "url"}
    assert (link["name"], link["content_type"], link["size"]) == ("invoice.pdf", "application/pdf", len(PDF))
    assert link["url"].startswith(f"/files/{invoice['id']}/")

    # The link opens without signing in; changed in any way it opens nothing.
    assert (await _raw(tenant, "GET", link["url"]))[:2] == (200, PDF)
    async with aiohttp.ClientSession() as session:
        http = Http(tenant.server.url, session)
        signature = link["url"].rsplit("/", 1)[1]
        forged = signature[:-1] + ("A" if signature[-1] != "A" else "B")
        for path in (f"/files/{invoice['id']}/{forged}", f"/files/{secret['id']}/{signature}"):
            assert_error(await http("GET", path, host=tenant.domain), 404, "attachment_not_found")

    # History gives the same link; the internal note (and its file) never reaches the customer.
    async def delivered() -> bool:
        return any(e["kind"] == "message.delivery" and e["message_id"] == reply["id"] for e in client.events)

    await eventually(delivered)
    status, body, _ = await _raw(tenant, "GET", f"/webchat/history?visitor_id={visitor.visitor_id}")
    assert status == 200
    history = json.loads(body)["messages"]
    assert [m["attachments"] for m in history] == [[], [link]]
    assert "internal" not in json.dumps(history)


# Names that read as something else: direction overrides and other invisible characters, and
# characters drawn as a slash. Each is refused (422) and nothing is stored.
HOSTILE_NAMES = {
    "invoice\u202efdp.exe": "U+202E",  # RIGHT-TO-LEFT OVERRIDE: shown as "invoiceexe.pdf"
    "report\u2067gpj.exe": "U+2067",  # RIGHT-TO-LEFT ISOLATE
    "a\u200fb.pdf": "U+200F",  # RIGHT-TO-LEFT MARK
    "a\u061cb.pdf": "U+061C",  # ARABIC LETTER MARK
    "pay\u200bpal.pdf": "U+200B",  # ZERO WIDTH SPACE
    "\ufeffbom.pdf": "U+FEFF",  # ZERO WIDTH NO-BREAK SPACE
    "soft\u00adhyphen.pdf": "U+00AD",
    "line\u2028break.pdf": "U+2028",
    "bell\u0007.pdf": "U+0007",
    "c1\u0085.pdf": "U+0085",
    "..\u2215etc\u2215passwd": "path",  # DIVISION SLASH
    "a\u2044b.pdf": "path",  # FRACTION SLASH
    "a\uff0fb.pdf": "path",  # FULLWIDTH SOLIDUS
    "a\u29f8b.pdf": "path",  # BIG SOLIDUS
    "a\uff3cb.pdf": "path",  # FULLWIDTH REVERSE SOLIDUS
    "a\u2216b.pdf": "path",  # SET MINUS
    "\uff0e\uff0e": "path",  # two FULLWIDTH FULL STOPs: ".."
}


async def test_hostile_file_names_are_refused_and_names_kept_in_nfc(tenant: TenantInfo) -> None:
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent, connect=False)
    async with aiohttp.ClientSession() as session:
        http = Http(tenant.server.url, session)
        for name, shown in HOSTILE_NAMES.items():
            reply = await http("POST", f"/api/v1/attachments?name={quote(name)}", host=tenant.domain,
                               token=client.token, data=PDF, headers={"Content-Type": "application/pdf"})
            error = assert_error(reply, 422, "invalid_attachment_name")
            assert shown in error["message"], (name, error)

    # Canonically equivalent names are one name: "e" + COMBINING ACUTE is stored and served as "é".
    made = await client.upload("re\u0301sume\u0301.pdf", PDF, "application/pdf")
    assert made["name"] == "r\u00e9sum\u00e9.pdf"
    _, _, headers = await _raw(tenant, "GET", made["url"], client.token)
    assert headers["Content-Disposition"] == "inline; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
    # What is not hostile stays as given: a fraction, an emoji sequence (its ZERO WIDTH JOINER),
    # right-to-left text without direction controls.
    for name in ("\u00bd price.pdf", "\U0001F468\u200d\U0001F469\u200d\U0001F467.png", "\u05e7\u05d1\u05dc\u05d4.pdf"):
        kept = await client.upload(name, PDF, "application/pdf")
        assert kept["name"] == name
        _, _, headers = await _raw(tenant, "GET", kept["url"], client.token)
        assert headers["Content-Disposition"] == f"inline; filename*=UTF-8''{quote(name, safe='')}"
