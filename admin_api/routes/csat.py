# ruff: noqa: RUF001 - Chinese is written with full-width punctuation; these are its texts.
"""Satisfaction surveys over HTTP (core.csat): the hosted rating page a customer opens by the link
they were sent (no sign-in: the token in the link is the capability), its answer, the tenant's
setting (admins), and nothing else: agents read a ticket's rating in its detail.

The page and its answer are public, so they are throttled per address (:class:`Throttle`), as
sign-in is: it counts the misses (tokens that name no survey), and past :data:`MISSES_PER_MINUTE`
of them in a minute from one address on one tenant, every request of that address is refused with
429 and Retry-After until the minute is over. A customer with their link never misses; a token is
32 random characters, so guessing is hopeless anyway, and the throttle keeps it from being a cheap
load on the database.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from admin_api.responses import CsatAnswered, CsatSettingsEnvelope
from admin_api.schemas import CsatAnswerBody, CsatPageQuery, CsatSettingsBody
from core import csat
from core.errors import Conflict, DomainError, TooManyRequests
from web.api import RouteTable, WordId
from web.http import HUB, body, principal_of, tenant_of, word_param

ROUTES = RouteTable("csat")

MAX_TOKEN = 64
MISSES_PER_MINUTE = 60
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'")

# The page's words in its two languages.
WORDS: dict[str, dict[str, Any]] = {
    "en": {"title": "How did we do?", "ask": "Please rate the help you got: 1 (poor) to 5 (great).",
           "comment": "Anything you would like to add? (optional)", "send": "Send", "pick": "Please pick a rating.",
           "thanks": "Thank you for your feedback!", "answered": "You have rated this already. Thank you!",
           "unknown": "This rating link is not valid. It may be mistyped.", "failed": "Sending failed: ",
           "stars": ["Poor", "Fair", "Good", "Very good", "Great"]},
    "zh-CN": {"title": "请为本次服务评分", "ask": "请为您得到的帮助评分：1（很差）到 5（很好）。",
              "comment": "还有什么想告诉我们的吗？（选填）", "send": "提交", "pick": "请先选择评分。",
              "thanks": "感谢您的反馈！", "answered": "您已经评过分了，谢谢！",
              "unknown": "此评分链接无效，可能输入有误。", "failed": "提交失败：",
              "stars": ["很差", "较差", "一般", "好", "很好"]},
}


class Throttle:
    """Misses per (tenant, address) in fixed one-minute windows, in this process."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.clock = limit, clock
        self._counts: dict[tuple[int, str], tuple[int, int]] = {}

    def _now(self, tenant_id: int, address: str | None) -> tuple[float, int, tuple[int, str]]:
        now = self.clock()
        return now, int(now // 60), (tenant_id, address or "")

    def check(self, tenant_id: int, address: str | None) -> None:
        now, window, key = self._now(tenant_id, address)
        seen_window, count = self._counts.get(key, (window, 0))
        if seen_window == window and count >= self.limit:
            raise TooManyRequests("too many unknown links from this address; try again in a minute",
                                  retry_after=60 - now % 60, code="rate_limited")

    def missed(self, tenant_id: int, address: str | None) -> None:
        _, window, key = self._now(tenant_id, address)
        if len(self._counts) > 10_000:  # forget old windows now and then
            self._counts = {k: v for k, v in self._counts.items() if v[0] == window}
        seen_window, count = self._counts.get(key, (window, 0))
        self._counts[key] = (window, count + 1 if seen_window == window else 1)


THROTTLE = Throttle(MISSES_PER_MINUTE)


def _language(request: web.Request) -> str:
    asked = request.query.get("lang")
    if asked in WORDS:
        return asked
    return "zh-CN" if request.headers.get("Accept-Language", "").lower().startswith("zh") else "en"


def _page(lang: str, inner: str, status: int = 200, title: str | None = None) -> web.Response:
    w = WORDS[lang]
    doc = (f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">'
           '<meta name="viewport" content="width=device-width, initial-scale=1">'
           f'<title>{html.escape(title or w["title"])}</title><link rel="stylesheet" href="/csat.css">'
           '<script type="module" src="/csat.js"></script></head>'
           f'<body><main class="card">{inner}</main></body></html>')
    return web.Response(text=doc, status=status, content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": PAGE_CSP, "Referrer-Policy": "no-referrer",
                                 "Cache-Control": "no-store"})


def _message(lang: str, key: str, status: int) -> web.Response:
    return _page(lang, f'<p class="note">{html.escape(WORDS[lang][key])}</p>', status)


@ROUTES.route("GET", "/csat/{token}", auth=False, query=CsatPageQuery, media_type="text/html",
              path_params={"token": WordId(MAX_TOKEN)}, errors=(409, 429),
              summary="The hosted rating page a customer opens from a survey's link (no sign-in: the token is "
                      "the capability); 404 survey_not_found for an unknown token, 409 survey_answered once it is "
                      "answered (to a browser, which accepts text/html: pages in the customer's language)")
async def page(request: web.Request) -> web.Response:
    tenant_id = tenant_of(request).id
    THROTTLE.check(tenant_id, request.remote)
    lang = _language(request)
    token = word_param(request, "token", max_length=MAX_TOKEN)
    # A browser (the customer following the link) gets pages; any other client the API's JSON errors.
    browser = "text/html" in request.headers.get("Accept", "")
    try:
        survey = await csat.find(request.app[HUB], tenant_id, token)
    except DomainError as exc:
        if exc.status == 404:
            THROTTLE.missed(tenant_id, request.remote)
            if browser:
                return _message(lang, "unknown", 404)
        raise
    if survey["answered_at"] is not None:
        if not browser:
            raise Conflict("this survey has been answered already: thank you", code="survey_answered")
        return _message(lang, "answered", 409)
    w = WORDS[lang]
    chosen = request.query.get("rating", "")
    words = {k: w[k] for k in ("pick", "thanks", "failed")}
    stars = "".join(
        f'<button type="button" class="star" data-value="{n}" aria-pressed="{str(str(n) == chosen).lower()}" '
        f'title="{html.escape(w["stars"][n - 1])}">★<span>{n}</span></button>' for n in range(1, 6))
    inner = (f'<h1>{html.escape(w["title"])}</h1><p>{html.escape(w["ask"])}</p>'
             f'<form id="csat" data-token="{html.escape(token)}" data-words="{html.escape(json.dumps(words))}">'
             f'<div class="stars" role="group">{stars}</div>'
             f'<label for="comment">{html.escape(w["comment"])}</label>'
             '<textarea id="comment" maxlength="2000" rows="4"></textarea>'
             f'<button type="submit" class="send">{html.escape(w["send"])}</button>'
             '<p class="error" role="alert"></p></form><p class="thanks" hidden></p>')
    return _page(lang, inner)


@ROUTES.route("POST", "/csat/{token}", auth=False, body=CsatAnswerBody, response=CsatAnswered,
              path_params={"token": WordId(MAX_TOKEN)}, errors=(409, 429),
              summary="Answer a survey by its token (no sign-in): a rating 1-5 and an optional comment, once "
                      "(409 survey_answered after)")
async def answer(request: web.Request) -> web.Response:
    tenant_id = tenant_of(request).id
    THROTTLE.check(tenant_id, request.remote)
    token = word_param(request, "token", max_length=MAX_TOKEN)
    data = await body(request, CsatAnswerBody)
    try:
        survey = await csat.answer(request.app[HUB], tenant_id, token, data.rating, data.comment)
    except DomainError as exc:
        if exc.status == 404:
            THROTTLE.missed(tenant_id, request.remote)
        raise
    return web.json_response({"survey": survey})


@ROUTES.route("GET", "/api/v1/settings/csat", summary="The tenant's survey setting (admin)",
              response=CsatSettingsEnvelope)
async def get_settings(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request, admin=True)
    async with hub.db.read(p.tenant_id) as session:
        return web.json_response({"settings": {"enabled": await csat.enabled(session, p.tenant_id)}})


@ROUTES.route("PUT", "/api/v1/settings/csat", summary="Turn satisfaction surveys on or off (admin; audited)",
              body=CsatSettingsBody, response=CsatSettingsEnvelope)
async def put_settings(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    p = await principal_of(request, admin=True)
    data = await body(request, CsatSettingsBody)
    async with hub.db.session(p.tenant_id) as session:
        settings = await csat.set_enabled(session, p, data.enabled, ip=request.remote)
    return web.json_response({"settings": settings})
