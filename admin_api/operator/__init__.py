"""The operator's API: the company that runs the hub creates, suspends, resumes and ends tenants,
gives them domains, bills them and reads their billing, on its own host with its own accounts
(docs/operator.md)."""

from __future__ import annotations

from admin_api.operator import routes
from web.api import RouteTable

ROUTE_TABLES: tuple[RouteTable, ...] = (routes.ROUTES,)
