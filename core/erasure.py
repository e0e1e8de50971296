"""Deleting one customer's personal data on request (#16, personal-data law).

What goes: the customer row (and the customers merged into it: the same person), its identities,
its tickets with everything hanging on them (messages, search documents, mentions, the outbox,
participants, assignment records, events), the files in those messages and the ones the customer
uploaded, the customer's merge records, what the inbox still holds from its identities, and what
the channels keep about it. The tickets are deleted, not kept anonymised: "delete on request" means
gone, and a ticket without its customer and messages tells nothing. An assigned open ticket gives
its agent's slot back.

Channels keep rows about a customer in their own tables, which core cannot import. A channel
declares them in its table's ``info`` (SQLAlchemy ``Table.info``), and :func:`erase` walks the
metadata for them:

- ``{"customer_key": {"channel": "webchat", "column": "visitor_id"}}``: rows whose ``column`` is the
  external id of one of the customer's identities on that channel (``"part": "last"``: the part
  after its last ``:``, WeChat's openid in ``oa:<appid>:<openid>``);
- ``{"message_key": "message_id"}``: rows whose column holds the id of one of the erased messages;
  ``{"channel_message_key": "message_key"}``: the message's ``channel_message_id``;
- ``{"attachment_url": "<regex with a group named key>", "column": "media_id"}``: rows named in the
  URL of one of the erased messages' attachments (WeChat's stored media).

A table whose rows point at ``attachments`` (web chat's uploads) has those files deleted too.
Tickets go in batches, each in a short transaction, so a customer with a long history does not
hold the database. The audit trail records the erasure with counts, never the personal data.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from sqlalchemy import Column, Table, delete, select, update

from core.audit import audit
from core.errors import InvalidInput, NotFound
from core.models import (
    ACTIVE_STATUSES,
    Agent,
    Base,
    Customer,
    CustomerIdentity,
    CustomerMerge,
    Event,
    InboxItem,
    Message,
    StoredAttachment,
    Ticket,
    table_of,
)

if TYPE_CHECKING:
    from core.auth import Principal
    from core.hub import Hub

logger = logging.getLogger(__name__)

TICKET_BATCH = 50
IN_BATCH = 500

ATTACHMENTS = table_of(StoredAttachment)


def _batches(values: list[Any], n: int = IN_BATCH) -> Iterable[list[Any]]:
    for i in range(0, len(values), n):
        yield values[i:i + n]


def _n(result: Any) -> int:
    """Rows a DELETE took (the async Result's type does not show the cursor's rowcount)."""
    return int(getattr(result, "rowcount", 0) or 0)


def _declared(key: str) -> list[Table]:
    return [t for t in Base.metadata.sorted_tables if key in t.info]


def _attachment_column(table: Table) -> Column[Any] | None:
    for fk in table.foreign_keys:
        if fk.column.table is ATTACHMENTS:
            return fk.parent
    return None


async def erase(hub: Hub, principal: Principal, customer_id: int, *, confirm: str,
                ip: str | None = None) -> dict[str, int]:
    """Erase the customer (admin's request, checked by the caller). ``confirm``: the customer's id,
    typed. Returns what was deleted, by kind."""
    tenant_id = principal.tenant_id
    async with hub.db.read(tenant_id) as session:
        customer = (await session.execute(select(Customer).where(Customer.id == customer_id))).scalar_one_or_none()
        if customer is None:
            raise NotFound(f"customer {customer_id} not found", code="customer_not_found")
        if confirm.strip() != str(customer_id):
            raise InvalidInput("to confirm, type the customer's id exactly", code="confirmation_mismatch")
        # The customers merged into it are the same person, under the id they had before.
        people = [customer_id]
        while True:
            more = list((await session.execute(select(Customer.id).where(
                Customer.merged_into_id.in_(people), Customer.id.notin_(people)))).scalars())
            if not more:
                break
            people.extend(more)
        identities = [(c, e) for c, e in await session.execute(
            select(CustomerIdentity.channel, CustomerIdentity.external_id)
            .where(CustomerIdentity.customer_id.in_(people)))]
        tickets = list((await session.execute(select(Ticket.id).where(Ticket.customer_id.in_(people))
                                               .order_by(Ticket.id))).scalars())
    counts: Counter[str] = Counter()
    for batch in _batches(tickets, TICKET_BATCH):
        await _erase_tickets(hub, tenant_id, batch, counts)
    async with hub.db.session(tenant_id) as session:
        counts.update(await _erase_channel_rows(session, tenant_id, identities))
        for channel, external_id in identities:
            n = _n(await session.execute(delete(InboxItem).where(
                InboxItem.tenant_id == tenant_id, InboxItem.channel == channel,
                InboxItem.external_id == external_id)))
            counts["inbox"] += n
        await session.execute(delete(CustomerMerge).where(
            CustomerMerge.customer_id.in_(people) | CustomerMerge.other_id.in_(people)))
        # Merged ones first: the one kept is what they point at.
        counts["identities"] += _n(await session.execute(delete(CustomerIdentity).where(
            CustomerIdentity.customer_id.in_(people))))
        for cid in reversed(people):
            await session.execute(delete(Customer).where(Customer.id == cid))
        counts["customers"] = len(people)
        audit(session, tenant_id=tenant_id, actor_type="agent", actor_id=principal.agent_id, action="customer.erase",
              target_type="customer", target_id=customer_id, details=dict(counts), ip=ip)
    logger.info("customer %s of tenant %s erased: %s", customer_id, tenant_id, dict(counts))
    return dict(counts)


async def _erase_tickets(hub: Hub, tenant_id: int, ticket_ids: list[int], counts: Counter[str]) -> None:
    """One batch of the customer's tickets, in one transaction: what refers to them without a
    foreign key first (events, channels' delivery records, files), then the tickets, whose
    foreign keys take their messages, search documents, mentions, outbox and the rest."""
    async with hub.db.session(tenant_id) as session:
        rows = (await session.execute(select(Ticket.id, Ticket.assignee_id, Ticket.status).where(
            Ticket.id.in_(ticket_ids)).with_for_update())).all()
        held = Counter(a for _, a, s in rows if a is not None and s in ACTIVE_STATUSES)
        messages = (await session.execute(select(Message.id, Message.channel_message_id, Message.attachments)
                                          .where(Message.ticket_id.in_(ticket_ids)))).all()
        message_ids = [m.id for m in messages]
        keys = [m.channel_message_id for m in messages if m.channel_message_id]
        files = [a for m in messages for a in (m.attachments or []) if isinstance(a, dict)]
        attachment_ids = [int(a["id"]) for a in files if isinstance(a.get("id"), int)]
        urls = [str(a["url"]) for a in files if a.get("url")]
        for table in _declared("message_key"):
            for part in _batches(message_ids):
                counts[table.name] += _n(await session.execute(delete(table).where(
                    table.c.tenant_id == tenant_id, table.c[table.info["message_key"]].in_(part))))
        for table in _declared("channel_message_key"):
            for part in _batches(keys):
                counts[table.name] += _n(await session.execute(delete(table).where(
                    table.c.tenant_id == tenant_id,
                    table.c[table.info["channel_message_key"]].in_(part))))
        for table in _declared("attachment_url"):
            pattern = re.compile(table.info["attachment_url"])
            named = [unquote(m.group("key")) for u in urls if (m := pattern.search(u))]
            for part in _batches(named):
                counts[table.name] += _n(await session.execute(delete(table).where(
                    table.c.tenant_id == tenant_id, table.c[table.info["column"]].in_(part))))
        for part in _batches(attachment_ids):
            counts["attachments"] += _n(await session.execute(delete(ATTACHMENTS).where(
                ATTACHMENTS.c.tenant_id == tenant_id, ATTACHMENTS.c.id.in_(part))))
        counts["events"] += _n(await session.execute(delete(Event).where(
            Event.tenant_id == tenant_id, Event.ticket_id.in_(ticket_ids))))
        counts["messages"] += len(message_ids)
        counts["tickets"] += _n(await session.execute(delete(Ticket).where(Ticket.id.in_(ticket_ids))))
        # The slots those open tickets held are free again (agents.load counts open assigned tickets).
        for agent_id, n in sorted(held.items()):
            await session.execute(update(Agent).where(Agent.id == agent_id)
                                  .values(load=Agent.load - n).execution_options(synchronize_session=False))


async def _erase_channel_rows(session: Any, tenant_id: int, identities: list[tuple[str, str]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for table in _declared("customer_key"):
        spec = table.info["customer_key"]
        values = [e for c, e in identities if c == spec["channel"]]
        if spec.get("part") == "last":
            values = [e.rsplit(":", 1)[-1] for e in values]
        if not values:
            continue
        where = (table.c.tenant_id == tenant_id) & table.c[spec["column"]].in_(values)
        files = _attachment_column(table)
        if files is not None:
            # The customer's own uploads: the files go, and their rows with them (cascade).
            ids = list((await session.execute(select(files).where(where))).scalars())
            for part in _batches(ids):
                counts["attachments"] += _n(await session.execute(delete(ATTACHMENTS).where(
                    ATTACHMENTS.c.tenant_id == tenant_id, ATTACHMENTS.c.id.in_(part))))
        counts[table.name] += _n(await session.execute(delete(table).where(where)))
    return counts
