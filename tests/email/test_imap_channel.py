"""The IMAP path end to end: a hub that follows a tenant's mailbox on a real dovecot. The mailbox is
set up over the admin API; mail put into dovecot becomes tickets, is flagged seen only once
stored, a customer's answer to the agent's reply threads, and a dovecot restart in the middle
loses nothing and repeats nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from connectors.email.settings import EmailSettings
from core import inbox
from core.config import Settings
from core.db import Database
from tests.conftest import Server, eventually, make_tenant, start_server
from tests.email.conftest import IMAP_PASSWORD, IMAP_USER, make_mailbox
from tests.email.dovecot import Dovecot
from tests.email.support import Sink, mail, new_message_id

USER, PASSWORD = IMAP_USER, IMAP_PASSWORD


@pytest.fixture
async def following_server(settings: Settings) -> AsyncIterator[Server]:
    email = EmailSettings(imap_poll_seconds=0.5, imap_lease_seconds=3, max_message_bytes=200_000)
    srv = await start_server(replace(settings, channels={**settings.channels, "email": email}), imap=True)
    yield srv
    await srv.runner.cleanup()


async def test_mail_read_over_imap_becomes_tickets_and_threads(following_server: Server, dovecot: Dovecot,
                                                               sink: Sink) -> None:
    tenant = await make_tenant(following_server.settings, following_server)
    mb = await make_mailbox(tenant, sink)
    try:
        # Mail already waiting before the mailbox is connected is read too.
        await dovecot.append(USER, mail(sender="early@customers.example.org", to=mb.address, subject="Early",
                                        text="I wrote before you connected."))
        await mb.admin.api("PATCH", f"/api/v1/email/mailboxes/{mb.info['id']}", {"imap": {
            "host": dovecot.host, "port": dovecot.port, "security": "none", "username": USER,
            "password": PASSWORD}})
        first = await mb.ticket_with("I wrote before you connected.", timeout=20)
        flags = await eventually(lambda: _all_seen(dovecot, 1), timeout=30, interval=0.5)
        assert all("\\Seen" in f for f in flags.values())

        # The agent answers; the customer's answer to it arrives in the mailbox and threads.
        agent = await tenant.signed_in(next(a for a in tenant.agents if a.role == "admin"))
        await agent.reply(first["ticket"]["id"], "Thanks, we are on it.")
        [ours] = await sink.wait_for(1)
        answer = mail(sender="early@customers.example.org", to=mb.address, subject="Re: Early",
                      text="Great, thank you.", message_id=new_message_id(),
                      in_reply_to=str(ours["Message-ID"]), references=[str(ours["Message-ID"])])
        await dovecot.append(USER, answer)
        joined = await eventually(lambda: _messages(mb, first["ticket"]["id"], 3), timeout=20)
        assert joined[-1]["text"] == "Great, thank you."

        # dovecot goes away and comes back: the follower reconnects, reads what came meanwhile, once.
        await dovecot.restart()
        await dovecot.append(USER, mail(sender="late@customers.example.org", to=mb.address, subject="Late",
                                        text="Written after the restart."))
        await mb.ticket_with("Written after the restart.", timeout=30)
        await eventually(lambda: _all_seen(dovecot, 3), timeout=30, interval=0.5)
        assert len(await mb.tickets()) == 2
        assert len((await mb.ticket(first["ticket"]["id"]))["messages"]) == 3
        status = (await mb.admin.api("GET", f"/api/v1/email/mailboxes/{mb.info['id']}"))["mailbox"]["imap"]
        assert status["last_uid"] == 3 and status["error"] is None
    finally:
        # The hubs of other tests read every tenant's mailboxes: leave this one inactive.
        await mb.admin.api("PATCH", f"/api/v1/email/mailboxes/{mb.info['id']}", {"active": False})
        await tenant.close()


async def _all_seen(dovecot: Dovecot, count: int) -> dict[int, set[str]] | None:
    # Each look is a new IMAP session: asked every half second, not every 50 ms, so as not to keep
    # a just-restarted dovecot on a loaded machine busy with the test's own logins.
    flags = await dovecot.flags(USER)
    return flags if len(flags) == count and all("\\Seen" in f for f in flags.values()) else None


async def _messages(mb: Any, ticket_id: int, count: int) -> list[dict[str, Any]] | None:
    messages = (await mb.ticket(ticket_id))["messages"]
    return list(messages) if len(messages) >= count else None


async def test_a_mail_over_the_size_limit_is_set_aside_and_reading_goes_on(following_server: Server, dovecot: Dovecot,
                                                                           sink: Sink) -> None:
    tenant = await make_tenant(following_server.settings, following_server)
    mb = await make_mailbox(tenant, sink)
    try:
        await dovecot.append(USER, mail(sender="big@customers.example.org", to=mb.address, subject="Big",
                                        text="x" * 300_000))
        await dovecot.append(USER, mail(sender="small@customers.example.org", to=mb.address, subject="Small",
                                        text="A small one after the big one."))
        await mb.admin.api("PATCH", f"/api/v1/email/mailboxes/{mb.info['id']}", {"imap": {
            "host": dovecot.host, "port": dovecot.port, "security": "none", "username": USER,
            "password": PASSWORD}})
        await mb.ticket_with("A small one after the big one.", timeout=20)
        await eventually(lambda: _all_seen(dovecot, 2), timeout=30, interval=0.5)
        assert len(await mb.tickets()) == 1
        db = Database(tenant.settings.database_url)
        try:
            aside = [r for r in await inbox.failed(db, limit=1000) if r["tenant_id"] == tenant.id]
        finally:
            await db.dispose()
        assert len(aside) == 1 and "larger than 200000 bytes" in aside[0]["last_error"]
    finally:
        await mb.admin.api("PATCH", f"/api/v1/email/mailboxes/{mb.info['id']}", {"active": False})
        await tenant.close()
