"""Which tenant a request is for: the Host it came in on, and nothing else.

Lookups are cached briefly per process; a tenant's domain rarely changes, and a stale entry only
lasts ``TTL`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from core.cache import TTLCache
from core.db import Database
from core.errors import UnknownTenant
from core.models import Tenant

TTL = 30.0


@dataclass(frozen=True)
class TenantRef:
    id: int
    name: str
    domain: str


def normalize_host(host: str | None) -> str:
    host = (host or "").strip().lower()
    if host.startswith("["):  # [::1]:8080
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host


class TenantResolver:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: TTLCache[str, TenantRef] = TTLCache(TTL)

    async def resolve(self, host: str | None) -> TenantRef:
        domain = normalize_host(host)
        ref = await self._cache.get(domain, lambda: self._load(domain))
        if ref is None:
            raise UnknownTenant(f"no tenant is served at {domain or '(no host)'}")
        return ref

    async def _load(self, domain: str) -> TenantRef | None:
        async with self.db.read() as session:
            row = (await session.execute(
                select(Tenant.id, Tenant.name, Tenant.domain).where(Tenant.domain == domain, Tenant.status == "active")
            )).one_or_none()
        return TenantRef(row.id, row.name, row.domain) if row else None

    def forget(self, domain: str) -> None:
        self._cache.forget(normalize_host(domain))
