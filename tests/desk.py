"""Helpers of the agent workspace's tests (#13): customers who write in over web chat, reading back
what is stored, and the capacity invariant (every agent's load is the count of their open tickets)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from admin_api.client import AgentClient
from core.db import Database
from core.models import ACTIVE_STATUSES, Agent, CustomerIdentity, Message, OutboxItem, Ticket
from tests.conftest import AgentInfo, TenantInfo, eventually


@dataclass
class Written:
    visitor_id: str
    ticket_id: int
    customer_id: int
    message_id: int


@dataclass
class Desk:
    tenant: TenantInfo
    db: Database
    admin: AgentInfo
    client: AgentClient  # the admin's, connected: sees every event of the tenant

    async def writes(self, text: str, *, visitor_id: str | None = None, name: str | None = None) -> Written:
        """A web chat customer's message over the widget's HTTP fallback (answered once stored)."""
        body: dict[str, Any] = {"client_id": uuid.uuid4().hex, "text": text}
        if visitor_id:
            body["visitor_id"] = visitor_id
        if name:
            body["name"] = name
        reply = await self.client.request("POST", "/webchat/messages", body)
        vid = reply["visitor_id"]
        async with self.db.read() as session:
            row = (await session.execute(
                select(Message.id, Ticket.id, Ticket.customer_id).join(Ticket, Ticket.id == Message.ticket_id)
                .where(Message.id == reply["message"]["id"]))).one()
        return Written(vid, row[1], row[2], row[0])

    async def routed(self, ticket_id: int) -> dict[str, Any]:
        """The ticket once the router has looked at it."""
        async def done() -> Any:
            async with self.db.read() as session:
                state = (await session.execute(select(Ticket.routing_state).where(Ticket.id == ticket_id))).scalar()
            return state != "pending"

        await eventually(done)
        return dict((await self.client.api("GET", f"/api/v1/tickets/{ticket_id}"))["ticket"])

    async def messages(self, ticket_id: int) -> list[int]:
        async with self.db.read() as session:
            return list((await session.execute(select(Message.id).where(Message.ticket_id == ticket_id)
                                               .order_by(Message.id))).scalars())

    async def identities(self, customer_id: int) -> set[int]:
        async with self.db.read() as session:
            return set((await session.execute(select(CustomerIdentity.id)
                                              .where(CustomerIdentity.customer_id == customer_id))).scalars())

    async def tickets_of(self, customer_id: int) -> set[int]:
        async with self.db.read() as session:
            return set((await session.execute(select(Ticket.id).where(Ticket.customer_id == customer_id))).scalars())

    async def outbox_rows(self, message_id: int) -> list[tuple[str, int]]:
        async with self.db.read() as session:
            return [tuple(r) for r in (await session.execute(  # type: ignore[misc]
                select(OutboxItem.state, OutboxItem.attempts).where(OutboxItem.message_id == message_id))).all()]

    async def assert_loads(self) -> None:
        """Every agent's load is the number of open tickets assigned to them."""
        async with self.db.read() as session:
            loads = dict((await session.execute(select(Agent.id, Agent.load)
                                                .where(Agent.tenant_id == self.tenant.id))).all())
            counts = dict((await session.execute(
                select(Ticket.assignee_id, func.count(Ticket.id))
                .where(Ticket.tenant_id == self.tenant.id, Ticket.status.in_(ACTIVE_STATUSES),
                       Ticket.assignee_id.is_not(None)).group_by(Ticket.assignee_id))).all())
        assert {a: n for a, n in loads.items() if n} == counts, (loads, counts)


async def make_desk(tenant: TenantInfo) -> Desk:
    admin = await tenant.add_agent(role="admin", capacity=0, name="Admin")
    client = await tenant.signed_in(admin)
    return Desk(tenant, Database(tenant.settings.database_url), admin, client)


@pytest.fixture
async def desk(tenant: TenantInfo) -> AsyncIterator[Desk]:
    d = await make_desk(tenant)
    yield d
    await d.db.dispose()
