"""Customers as admins and agents see and tag them (VIP, language, region feed the routing rules)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import audit
from core.auth import Principal
from core.errors import Conflict, InvalidInput, NotFound
from core.models import Customer, CustomerIdentity
from core.serialize import iso
from core.textsearch import Docs

MAX_ATTRIBUTES = 50


def customer_view(customer: Customer, identities: list[CustomerIdentity]) -> dict[str, Any]:
    return {"id": customer.id, "name": customer.name, "email": customer.email, "tags": list(customer.tags or []),
            "attributes": dict(customer.attributes or {}), "created_at": iso(customer.created_at),
            "identities": [{"channel": i.channel, "external_id": i.external_id} for i in identities],
            # Set once merged into another customer (core.merges): where to look instead.
            "merged_into_id": customer.merged_into_id}


async def _customer(session: AsyncSession, customer_id: int) -> Customer:
    customer = (await session.execute(select(Customer).where(Customer.id == customer_id))).scalar_one_or_none()
    if customer is None:
        raise NotFound(f"customer {customer_id} not found", code="customer_not_found")
    return customer


async def get_customer(session: AsyncSession, customer_id: int) -> dict[str, Any]:
    customer = await _customer(session, customer_id)
    identities = list((await session.execute(
        select(CustomerIdentity).where(CustomerIdentity.customer_id == customer_id))).scalars())
    return customer_view(customer, identities)


async def update_customer(session: AsyncSession, p: Principal, customer_id: int, changes: dict[str, Any],
                          ip: str | None) -> dict[str, Any]:
    customer = await _customer(session, customer_id)
    if customer.merged_into_id is not None:
        raise Conflict(f"customer {customer_id} was merged into customer {customer.merged_into_id}: change that one",
                       code="customer_merged")
    if "tags" in changes and changes["tags"] is not None:
        tags = [str(t).strip().lower() for t in changes["tags"]]
        if any(not t or len(t) > 64 for t in tags):
            raise InvalidInput("tags are 1-64 characters", code="invalid_tag")
        changes["tags"] = list(dict.fromkeys(tags))
    if "attributes" in changes and changes["attributes"] is not None:
        attrs = changes["attributes"]
        if len(attrs) > MAX_ATTRIBUTES or any(not isinstance(v, str | int | float | bool) and v is not None
                                               for v in attrs.values()):
            raise InvalidInput(f"attributes: at most {MAX_ATTRIBUTES} plain values (text, number, true/false)",
                               code="invalid_attributes")
        changes["attributes"] = {**(customer.attributes or {}), **attrs}
        changes["attributes"] = {k: v for k, v in changes["attributes"].items() if v is not None}
    for key, value in changes.items():
        setattr(customer, key, value)
    if {"name", "email"} & set(changes):
        docs = await Docs.of(session, p.tenant_id)
        await docs.customers_changed(session, {customer.id: (customer.name, customer.email)})
        await docs.write(session)
    audit(session, tenant_id=p.tenant_id, actor_type="agent", actor_id=p.agent_id, action="customer.update",
          target_type="customer", target_id=customer_id, details={"changes": list(changes)}, ip=ip)
    await session.flush()
    return await get_customer(session, customer_id)
