"""The API's documentation page (/api/docs): vendored Redoc browsing the hub's own OpenAPI document.

Over HTTP: the page and the bundle answer on every tenant's domain with their types, caching and
CSP, and an unknown domain gets the same unknown_tenant answer as the console. In a real headless
Chromium (Debian's, as in tests/test_browser.py): the page renders the API's title and operations
while every request the page makes goes to the hub, nowhere else (no CDN, no fonts, no telemetry)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from admin_api.apidocs import DOCS
from tests.conftest import OPERATOR_HOST, Server, TenantInfo
from tests.support import Http, assert_error

# The browser and the *.localhost tenant of the browser tests (fixtures), and how they launch it.
from tests.test_browser import CHROMIUM, browser, local_tenant  # noqa: F401

needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")
UNKNOWN_DOMAIN = "nobody-lives-here.example.com"


@pytest.fixture
async def http(server: Server) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession() as session:
        yield Http(server.url, session)


def csp_of(headers: Any) -> dict[str, list[str]]:
    policy: dict[str, list[str]] = {}
    for directive in headers["Content-Security-Policy"].split(";"):
        name, *values = directive.split()
        policy[name] = values
    return policy


async def test_page_and_bundle_on_a_tenant_domain(http: Http, tenant: TenantInfo) -> None:
    page = await http("GET", "/api/docs", host=tenant.domain)
    assert page.status == 200, page
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    # The page points Redoc at the hub's own document and loads the hub's own copy of Redoc.
    assert 'spec-url="/api/v1/openapi.json"' in page.text
    assert 'src="/api/docs/redoc.standalone.js"' in page.text
    assert "<script>" not in page.text  # no inline script: the CSP forbids it
    csp = csp_of(page.headers)
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert not any(v.startswith("http") or v == "*" for values in csp.values() for v in values), csp

    bundle = await http("GET", "/api/docs/redoc.standalone.js", host=tenant.domain)
    assert bundle.status == 200
    assert bundle.headers["Content-Type"] == "application/javascript; charset=utf-8"
    assert bundle.headers["Cache-Control"] == "public, max-age=86400"
    assert "ETag" in bundle.headers  # so a day-old copy is revalidated, not downloaded again
    # It is exactly the vendored file that VERSION records.
    pinned = dict(line.split(" ", 1) for line in (DOCS / "VERSION").read_text().splitlines())
    served = hashlib.sha256(bundle.text.encode()).hexdigest()
    assert served == pinned["sha256"] == hashlib.sha256((DOCS / "redoc.standalone.js").read_bytes()).hexdigest()


async def test_unknown_domain_gets_unknown_tenant_like_the_console(http: Http) -> None:
    for path in ("/console", "/api/docs", "/api/docs/redoc.standalone.js"):
        assert_error(await http("GET", path, host=UNKNOWN_DOMAIN), 404, "unknown_tenant")


async def test_docs_page_is_not_an_api_operation(http: Http, tenant: TenantInfo) -> None:
    document = await http("GET", "/api/v1/openapi.json", host=tenant.domain)
    assert document.status == 200
    assert not [p for p in document.body["paths"] if p.startswith("/api/docs")]


# --- In a real browser -----------------------------------------------------------------------------------------


@needs_chromium
async def test_docs_render_in_chromium_from_the_hub_alone(
        browser: Any, local_tenant: TenantInfo, tmp_path: Path, shots: Path) -> None:  # noqa: F811 - the fixtures imported
    hub = f"http://{local_tenant.domain}:{local_tenant.server.port}"
    ctx = await browser.new_context()
    page = await ctx.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    # What the CSP blocked is no request, but Chromium says so on the console: a blocked fetch of a
    # font or of telemetry would otherwise pass unseen.
    console_errors: list[str] = []
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
    page_errors: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))

    response = await page.goto(f"{hub}/api/docs")
    assert response is not None and response.status == 200
    # The API's title and an operation (its summary as the heading, its method and path), rendered
    # from /api/v1/openapi.json.
    await page.locator("h1", has_text="channelhub API").wait_for()
    login = page.locator("h2", has_text="Sign in with e-mail and password")
    await login.wait_for()
    await login.scroll_into_view_if_needed()
    await page.get_by_text("/api/v1/auth/login").first.wait_for()
    # Search runs in Redoc's blob: worker, which the CSP must allow.
    await page.fill("input[placeholder='Search...']", "logout")
    await page.locator("[data-role='search:results'] li", has_text="Revoke this token").first.wait_for()
    await page.wait_for_load_state("networkidle")
    await page.screenshot(path=str(shots / "apidocs.png"), full_page=False)

    assert f"{hub}/api/v1/openapi.json" in requests
    assert f"{hub}/api/docs/redoc.standalone.js" in requests
    foreign = [url for url in requests
               if not (url.startswith(hub + "/") or url.startswith(("blob:", "data:")))]
    assert foreign == [], foreign
    assert not [e for e in console_errors if "Content Security Policy" in e], console_errors
    assert page_errors == []
    await ctx.close()


async def test_the_operator_host_has_its_own_docs_page_and_tenants_do_not(http: Http, tenant: TenantInfo) -> None:
    page = await http("GET", "/operator/docs", host=OPERATOR_HOST)
    assert page.status == 200, page
    assert 'spec-url="/operator/v1/openapi.json"' in page.text
    assert 'src="/operator/docs/redoc.standalone.js"' in page.text
    assert csp_of(page.headers)["script-src"] == ["'self'"]
    bundle = await http("GET", "/operator/docs/redoc.standalone.js", host=OPERATOR_HOST)
    assert bundle.status == 200 and bundle.headers["Content-Type"] == "application/javascript; charset=utf-8"
    document = await http("GET", "/operator/v1/openapi.json", host=OPERATOR_HOST)
    assert document.status == 200 and "/operator/v1/tenants" in document.body["paths"]
    # Neither the page nor the document is served on a tenant's domain, and /api/docs not on the operator's.
    for path in ("/operator/docs", "/operator/v1/openapi.json"):
        assert_error(await http("GET", path, host=tenant.domain), 404, "not_found")
    assert_error(await http("GET", "/api/docs", host=OPERATOR_HOST), 404, "not_found")
