"""Mail for the tests: composed as customers' clients write it, sent over real SMTP to the hub's
receiver (aiosmtplib, or Python's smtplib, or Debian's swaks), and an aiosmtpd sink that stands in
for a tenant's relay and keeps what it was handed."""

from __future__ import annotations

import asyncio
import email
import email.policy
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any

import aiosmtplib
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from core.models import utcnow

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "email"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def new_message_id(domain: str = "customer.example.org") -> str:
    return f"<{uuid.uuid4().hex}@{domain}>"


def mail(*, sender: str, to: str, subject: str, text: str, name: str | None = None, cc: list[str] | None = None,
         message_id: str | None = None, in_reply_to: str | None = None, references: list[str] | None = None,
         html: str | None = None, headers: dict[str, str] | None = None,
         files: list[tuple[str, str, bytes]] | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = formataddr((name, sender)) if name else sender
    msg["To"] = to
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = message_id or new_message_id(sender.rpartition("@")[2])
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references)
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content(text)
    if html:
        msg.add_alternative(html, subtype="html")
    for fname, ctype, data in files or []:
        main, _, sub = ctype.partition("/")
        msg.add_attachment(data, maintype=main, subtype=sub, filename=fname)
    # As it travels: CRLF line ends (smtplib sends bytes as they are).
    return msg.as_bytes(policy=email.policy.SMTP)


async def send(port: int, raw: bytes, *, mail_from: str, rcpt: list[str]) -> tuple[int, str]:
    """Hand ``raw`` to the SMTP server on loopback ``port``; returns the answer to DATA."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=30)
    await client.connect()
    try:
        refused, answer = await client.sendmail(mail_from, rcpt, raw)
        assert not refused, refused
        return 250, answer
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code, exc.message
    finally:
        try:
            await client.quit()
        except aiosmtplib.SMTPException:
            pass


@dataclass
class Sink:
    """A relay on loopback that accepts everything (or answers as told) and keeps it."""

    port: int = 0
    received: list[tuple[Envelope, Message]] = field(default_factory=list)
    # What DATA answers next (a list consumed in order; "250" when empty).
    answers: list[str] = field(default_factory=list)
    controller: Any = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.answers:
            answer = self.answers.pop(0)
            if not answer.startswith("250"):
                return answer
        raw = envelope.original_content or b""
        self.received.append((envelope, email.message_from_bytes(raw, policy=email.policy.default)))
        return "250 2.0.0 OK"

    def start(self) -> Sink:
        from tests.conftest import free_port

        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()

    async def wait_for(self, count: int, timeout: float = 15.0) -> list[Message]:
        # The sink's handler runs on the Controller's own thread and loop: polled, not awaited.
        async with asyncio.timeout(timeout):
            while len(self.received) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        return [m for _, m in self.received]
