"""Email fixtures: a tenant's support address made through the admin API, its replies relayed to a
loopback sink (aiosmtpd), and helpers that mail it over the hub's own SMTP receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from admin_api.client import AgentClient
from tests.conftest import Server, TenantInfo, eventually
from tests.email.dovecot import Dovecot, skip_without_dovecot
from tests.email.support import Sink, mail, send

# The IMAP account the dovecot fixture serves. The password has quotes and a backslash: what IMAP
# must escape (and logs must hide).
IMAP_USER = "support"
IMAP_PASSWORD = 'dove-"pass\\word'


@pytest.fixture
async def dovecot() -> AsyncIterator[Dovecot]:
    """A real dovecot on a loopback port, from a throw-away config (tests/email/dovecot.py)."""
    skip_without_dovecot()
    server = Dovecot({IMAP_USER: IMAP_PASSWORD})
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink().start()
    yield s
    s.stop()


@dataclass
class Mailbox:
    """A support address of a tenant, with its admin signed in."""

    tenant: TenantInfo
    server: Server
    admin: AgentClient
    info: dict[str, Any]
    sink: Sink

    @property
    def address(self) -> str:
        return str(self.info["address"])

    async def deliver(self, raw: bytes, *, mail_from: str = "customer@example.org",
                      rcpt: list[str] | None = None) -> tuple[int, str]:
        return await send(self.server.smtp_port, raw, mail_from=mail_from, rcpt=rcpt or [self.address])

    async def write(self, sender: str, subject: str, text: str, **kw: Any) -> bytes:
        """A customer's mail, delivered; returns its bytes."""
        raw = mail(sender=sender, to=self.address, subject=subject, text=text, **kw)
        code, answer = await self.deliver(raw, mail_from=sender)
        assert code == 250, (code, answer)
        return raw

    async def tickets(self) -> list[dict[str, Any]]:
        return list((await self.admin.api("GET", "/api/v1/tickets"))["tickets"])

    async def ticket(self, ticket_id: int) -> dict[str, Any]:
        return dict(await self.admin.api("GET", f"/api/v1/tickets/{ticket_id}"))

    async def ticket_with(self, text: str, timeout: float = 10.0) -> dict[str, Any]:
        """The ticket (with its messages) that has a message with ``text``, once it exists."""
        async def find() -> dict[str, Any] | None:
            for t in (await self.admin.api("GET", "/api/v1/tickets"))["tickets"]:
                detail = await self.ticket(t["id"])
                if any(text in m["text"] for m in detail["messages"]):
                    return detail
            return None

        return dict(await eventually(find, timeout=timeout))


async def make_mailbox(tenant: TenantInfo, sink: Sink, *, local: str = "support", domain: str | None = None,
                       **extra: Any) -> Mailbox:
    admin_info = next((a for a in tenant.agents if a.role == "admin"), None) or await tenant.add_agent(role="admin")
    admin = await tenant.signed_in(admin_info, connect=False)
    body = {"address": f"{local}@{domain or tenant.domain}", "name": "Acme Support",
            "smtp": {"host": "127.0.0.1", "port": sink.port, "security": "none"}, **extra}
    info = (await admin.api("POST", "/api/v1/email/mailboxes", body))["mailbox"]
    return Mailbox(tenant, tenant.server, admin, info, sink)


@pytest.fixture
async def mailbox(server: Server, tenant: TenantInfo, sink: Sink) -> AsyncIterator[Mailbox]:
    yield await make_mailbox(tenant, sink)
