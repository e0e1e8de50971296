"""The email connector: the SMTP receiver, the IMAP followers and replies through the tenant's relay.

Inbound mail, over either path, goes through :class:`connectors.email.receive.Receiver` (one path
for both): the original and its files are stored, then the message goes into the inbox, which
threads it (core.ingest, with the Message-IDs, ticket references and Cc the receiver gives it).
Outbound replies leave through the outbox (retries, a sweeper): :meth:`send` composes the mail
(connectors/email/outbound.py) and hands it to the mailbox's relay.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from functools import partial

from sqlalchemy import select

from connectors.email import outbound
from connectors.email import store as email_store
from connectors.email.imap import ImapAccount, ImapFollowers
from connectors.email.receive import Receiver
from connectors.email.settings import EmailSettings
from connectors.email.smtp import SmtpReceiver
from connectors.email.store import MailboxConfig
from core import attachments
from core.cache import TTLCache
from core.channels import Connector, OutboundMessage, SurveyInvite
from core.errors import DeliveryError
from core.hub import Hub
from core.models import MAX_BIG_ID, Agent

logger = logging.getLogger(__name__)

# How long a process trusts what it read of mailboxes and agents' addresses (a change made through
# the API is seen at once by the process that made it, by the others within this).
CONFIG_TTL = 10.0


class EmailConnector(Connector):
    kind = "email"
    identity_is_email = True
    surveys = True

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self.settings = hub.settings.channel(self.kind, EmailSettings)
        self.receiver = Receiver(self, self.settings)
        self.smtp = SmtpReceiver(self, self.settings)
        self._by_address: TTLCache[str, MailboxConfig] = TTLCache(CONFIG_TTL)
        self._by_tenant: TTLCache[int, tuple[MailboxConfig, ...]] = TTLCache(CONFIG_TTL)
        self._agents: TTLCache[int, frozenset[str]] = TTLCache(CONFIG_TTL)
        # One owner name per process for the IMAP leases.
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.followers = ImapFollowers(hub.db, hub.settings, self._deliver_for, owner, options={
            "poll_seconds": self.settings.imap_poll_seconds, "lease_seconds": self.settings.imap_lease_seconds})
        self._refresh: asyncio.Future[None] | None = None

    async def start(self) -> None:
        self.receiver.start()
        if self.hub.inbound:
            await self.smtp.start()
            if self.settings.imap_follow:
                self.followers.start()

    async def stop(self) -> None:
        # The IMAP followers first: a mail being handed over finishes (cursor included) while the
        # receiver's writer still runs.
        refresh, self._refresh = self._refresh, None
        if refresh is not None:
            refresh.cancel()
        await self.followers.stop()
        await self.smtp.stop()
        await self.receiver.stop()

    def forget(self) -> None:
        """Drop what this process cached of mailboxes (after a change through the API), and have
        the IMAP followers match the mailboxes now rather than at their next look."""
        self._by_address.clear()
        self._by_tenant.clear()
        if self.hub.inbound and self.followers.running:
            self._refresh = asyncio.ensure_future(self._refresh_followers())

    async def _refresh_followers(self) -> None:
        try:
            await self.followers.refresh()
        except Exception:
            logger.exception("email: refreshing the IMAP followers failed; they look again on their own")

    def _deliver_for(self, account: ImapAccount) -> Callable[[bytes], Awaitable[None]]:
        async def deliver(raw: bytes) -> None:
            mailbox = next((m for m in await self.mailboxes(account.tenant_id) if m.id == account.mailbox_id), None)
            if mailbox is None:  # removed a moment ago: not ours to store any more
                raise LookupError(f"mailbox {account.mailbox_id} is gone")
            if len(raw) > self.settings.max_message_bytes:
                # What the SMTP receiver would refuse with 552: kept aside (its first MiB) for an
                # operator, not made a ticket, and the follower moves past it.
                await self.receiver.set_aside(mailbox, raw, f"larger than {self.settings.max_message_bytes} bytes")
                return
            # A mailbox's mail is not deferred as a flood (a 4xx has no sender to try again: the
            # follower would stop at it); a server in trouble (Busy, the database) raises and the
            # follower tries that mail again after its back-off.
            await self.receiver.receive(mailbox, raw, check_flood=False)

        return deliver

    # --- configuration, cached ------------------------------------------------------------------
    async def mailbox_for(self, address: str) -> MailboxConfig | None:
        """The active mailbox a recipient address names, any tenant's: the address itself, else the
        address without its sub-address (``support+anything@`` is ``support@``, as mail servers
        that deliver plus addresses treat it)."""
        address = address.strip().lower()
        local, _, domain = address.rpartition("@")
        for candidate in dict.fromkeys((address, f"{local.split('+', 1)[0]}@{domain}")):
            found = await self._by_address.get(candidate, partial(email_store.load_by_address, self.hub, candidate))
            if found is not None:
                return found if found.active else None
        return None

    async def mailboxes(self, tenant_id: int) -> tuple[MailboxConfig, ...]:
        found = await self._by_tenant.get(tenant_id, lambda: email_store.load_tenant_mailboxes(self.hub, tenant_id))
        return found or ()

    async def own_addresses(self, tenant_id: int) -> frozenset[str]:
        return frozenset(m.address for m in await self.mailboxes(tenant_id))

    async def agent_addresses(self, tenant_id: int) -> frozenset[str]:
        async def load() -> frozenset[str]:
            async with self.hub.db.read(tenant_id) as session:
                rows = await session.execute(select(Agent.email).where(Agent.active.is_(True)))
                return frozenset(e.lower() for e in rows.scalars())

        return await self._agents.get(tenant_id, load) or frozenset()

    # --- outbound ---------------------------------------------------------------------------
    async def _mailbox(self, tenant_id: int, thread: email_store.Thread) -> MailboxConfig:
        """The mailbox the ticket's mail came to (else the tenant's first active one)."""
        boxes = [m for m in await self.mailboxes(tenant_id) if m.active]
        mailbox = next((m for m in boxes if m.id == thread.mailbox_id), boxes[0] if boxes else None)
        if mailbox is None:
            raise DeliveryError("the tenant has no mailbox to send from", retry=False, code="no_mailbox")
        return mailbox

    async def send_survey(self, survey: SurveyInvite) -> None:
        """A mail with five links to the hosted rating page, in the ticket's thread, to the customer only."""
        thread = await email_store.thread_of(self.hub, survey.tenant_id, survey.ticket_id, MAX_BIG_ID)
        mailbox = await self._mailbox(survey.tenant_id, thread)
        await outbound.send(mailbox, outbound.compose_survey(mailbox, survey, thread), [survey.external_id],
                            self.settings.relay_timeout)

    async def send(self, message: OutboundMessage) -> str:
        thread = await email_store.thread_of(self.hub, message.tenant_id, message.ticket_id, message.message_id)
        mailbox = await self._mailbox(message.tenant_id, thread)
        files = []
        for a in message.attachments:
            if a.id is not None:
                f = await attachments.load(self.hub, message.tenant_id, a.id)
                files.append((f.name, f.content_type, f.data))
        mail, msgid = outbound.compose(
            self.hub.settings, mailbox, to=message.external_id, text=message.text, message_id=message.message_id,
            ticket_id=message.ticket_id, thread=thread, files=files, author=message.author_name)
        recipients = [message.external_id, *(p for p in thread.participants if p != message.external_id)]
        await outbound.send(mailbox, mail, recipients, self.settings.relay_timeout)
        return msgid
