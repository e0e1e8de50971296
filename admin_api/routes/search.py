"""Full-text search over the tickets the caller may see (core.search)."""

from __future__ import annotations

from aiohttp import web

from admin_api.responses import SearchResults
from admin_api.schemas import SearchQuery
from core import search
from core.errors import InvalidInput
from core.models import MAX_BIG_ID
from web.api import RouteTable
from web.http import HUB, principal_of, query_int, query_value

ROUTES = RouteTable("search")


@ROUTES.route("GET", "/api/v1/search", summary="Search tickets' subjects, messages and customers, Chinese and "
           "English (?q=&limit=&before=): tickets the caller may see, newest match first, with a snippet",
           response=SearchResults, query=SearchQuery)
async def search_tickets(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    principal = await principal_of(request)
    q = query_value(request, "q")
    if q is None or not q.strip():
        raise InvalidInput("q is required: what to search for", code="invalid_query")
    found = await search.search(hub, principal, q, limit=query_int(request, "limit", 20, lo=1, hi=50),
                                before=query_int(request, "before", None, lo=1, hi=MAX_BIG_ID))
    return web.json_response(found)
