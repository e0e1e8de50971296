"""Which tenant a request is for: the Host it came in on, and nothing else.

A tenant may be served on several domains (``tenant_domains``); each belongs to one tenant. The
lookup answers the tenant whatever its status; what a suspended or ended tenant is still served is
the HTTP edge's decision (web.http). Lookups are cached per process for ``TTL`` seconds; a change
(a domain added or removed, a tenant suspended, resumed or ended) is announced on the bus with
:func:`announce_changed`, and every process forgets what it cached of that tenant at once. A lost
bus message is bounded by the TTL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from core.cache import TTLCache
from core.db import Database
from core.errors import UnknownTenant
from core.models import Tenant, TenantDomain, TenantStatus

if TYPE_CHECKING:
    from core.bus import Bus, Subscription
    from core.hub import Hub

TTL = 30.0
TOPIC = "tenants"


@dataclass(frozen=True)
class TenantRef:
    id: int
    name: str
    # The tenant's primary domain (its links and addresses are made with it).
    domain: str
    status: str = TenantStatus.ACTIVE

    @property
    def active(self) -> bool:
        return self.status == TenantStatus.ACTIVE


def normalize_host(host: str | None) -> str:
    host = (host or "").strip().lower()
    if host.startswith("["):  # [::1]:8080
        return host.split("]")[0] + "]"
    host = host.rsplit(":", 1)[0] if ":" in host else host
    return host.rstrip(".")


class TenantResolver:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: TTLCache[str, TenantRef] = TTLCache(TTL)
        self._subscription: Subscription | None = None

    def watch(self, bus: Bus) -> None:
        """Forget a tenant's cached domains when the bus says it changed (or may have missed it)."""
        if self._subscription is not None:
            return

        def changed(message: dict[str, Any]) -> None:
            tenant_id = message.get("tenant_id")
            if isinstance(tenant_id, int):
                self.forget_tenant(tenant_id)
            else:
                self._cache.clear()

        async def maybe_missed(_since: object) -> None:
            self._cache.clear()

        self._subscription = bus.subscribe(TOPIC, changed, catch_up=maybe_missed)

    def close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    async def resolve(self, host: str | None) -> TenantRef:
        domain = normalize_host(host)
        ref = await self._cache.get(domain, lambda: self._load(domain))
        if ref is None:
            raise UnknownTenant(f"no tenant is served at {domain or '(no host)'}")
        return ref

    async def _load(self, domain: str) -> TenantRef | None:
        async with self.db.read() as session:
            row = (await session.execute(
                select(Tenant.id, Tenant.name, Tenant.domain, Tenant.status)
                .join(TenantDomain, TenantDomain.tenant_id == Tenant.id)
                .where(TenantDomain.domain == domain)
            )).one_or_none()
        return TenantRef(row.id, row.name, row.domain, row.status) if row else None

    def forget(self, domain: str) -> None:
        self._cache.forget(normalize_host(domain))

    def forget_tenant(self, tenant_id: int) -> None:
        self._cache.forget_where(lambda ref: ref is None or ref.id == tenant_id)


async def announce_changed(hub: Hub, tenant_id: int) -> None:
    """After a tenant's domains or status changed (committed): this process forgets its cache at
    once (a bus that echoes publications, such as Redis, would do it a moment later, after the
    caller's next request), and every other process when the bus brings the news."""
    hub.tenants.forget_tenant(tenant_id)
    await hub.bus.publish(TOPIC, {"tenant_id": tenant_id})
