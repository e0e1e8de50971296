"""The SMTP receiver: aiosmtpd on the hub's own event loop, inside ``channelhub serve``.

- **RCPT**: only the tenants' support addresses (and their plus addresses) are taken; anyone
  else is refused with 550 at RCPT, before any data is sent, so the hub is no open relay and a
  mistyped address bounces at once.
- **SIZE**: the limit is announced in EHLO and enforced on DATA (552).
- **STARTTLS** is offered when a certificate and key are configured.
- **DATA** is answered ``250`` only once the mail is durable (its original and files committed,
  then the inbox row): a crash before that leaves the sending server to try again, and the retry
  is stored once (everything is keyed by the Message-ID). A flood is deferred with 451, as is
  anything the hub cannot store right now (saturation, a database outage): the sender's server
  keeps the mail and tries again later, so nothing accepted is lost and nothing is refused for good
  for a passing reason.
- **Speed**: two of aiosmtpd's paths are replaced (:class:`_Protocol`): DATA is read in large
  pieces rather than a line at a time, and plain ``<local@domain>`` paths skip the e-mail
  package's header grammar. aiosmtpd is pinned below 2 for that (pyproject.toml).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

from connectors.email.receive import Deferred
from connectors.email.settings import EmailSettings
from connectors.email.store import MailboxConfig
from core.errors import Busy

if TYPE_CHECKING:
    from connectors.email.connector import EmailConnector

logger = logging.getLogger(__name__)

# Recipients one mail may name here (RFC 5321 asks servers to take at least 100).
MAX_RECIPIENTS = 100


class _Handler:
    def __init__(self, connector: EmailConnector) -> None:
        self.connector = connector

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        try:
            mailbox = await self.connector.mailbox_for(address)
        except Exception:
            logger.exception("smtp: looking up a recipient failed")
            return "451 4.3.0 Temporary failure, try again later"
        if mailbox is None:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content
        if not isinstance(raw, bytes):
            raw = (envelope.content or b"") if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        try:
            mailboxes: dict[tuple[int, int], MailboxConfig] = {}
            for address in envelope.rcpt_tos:
                mailbox = await self.connector.mailbox_for(address)
                if mailbox is not None:
                    mailboxes.setdefault((mailbox.tenant_id, mailbox.id), mailbox)
            if not mailboxes:
                return "554 5.1.1 No valid recipients"
            # A mail to two mailboxes of one tenant is one ticket message (one Message-ID); each
            # tenant addressed gets its own.
            seen_tenants: set[int] = set()
            last = None
            for (tenant_id, _), mailbox in mailboxes.items():
                if tenant_id in seen_tenants:
                    continue
                seen_tenants.add(tenant_id)
                last = await self.connector.receiver.receive(mailbox, raw, envelope_to=envelope.rcpt_tos)
        except Deferred as exc:
            return f"451 4.7.1 {exc}"
        except Busy:
            return "451 4.3.2 Busy, try again later"
        except Exception:
            logger.exception("smtp: a mail could not be stored; the sender will try again")
            return "451 4.3.0 Temporary failure, try again later"
        key = last.message_key if last is not None else None
        return f"250 2.0.0 OK {last.kind if last else ''}{f' <{key}>' if key else ''}"


# A plain path, <local@domain>, as nearly every client writes MAIL FROM and RCPT TO: a dot-atom
# local part (no leading, trailing or doubled dot) and a host name.
_PLAIN_PATH = re.compile(r"\s*<((?!\.)(?!.*\.\.)[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+(?<!\.)@[A-Za-z0-9.-]+)>(.*)\Z", re.S)


class _Protocol(SMTP):
    """aiosmtpd's protocol, with a quick path for plain addresses: its own parser (the email
    package's header grammar, and a class it makes on every call) was a twentieth of the time a
    mail took. Anything else (quoted local parts, the null sender <>, source routes) is parsed by
    aiosmtpd as before."""

    async def smtp_DATA(self, arg: str) -> None:
        """DATA, read in large pieces. aiosmtpd reads a mail line by line, a Python round per line
        (some 1,500 for a 100 KiB attachment), which was a quarter of the time a mail took here.
        The same checks and answers as aiosmtpd's; the content is the same bytes: up to the
        terminating ``CRLF.CRLF``, a leading dot taken off every line (RFC 5321 4.5.2). Lines
        longer than 1,000 bytes are taken rather than refused, as Postfix does."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        # StreamReader's limit is private (it bounds what one readuntil may gather); stable since 3.4.
        reader: Any = self._reader
        limit = self.data_size_limit or 0
        saved = reader._limit
        # One read may hold a whole mail (up to the limit, and the terminator's bytes): no more is
        # buffered than aiosmtpd itself gathers.
        reader._limit = (limit or 64 << 20) + 8
        pieces: list[bytes] = []
        size = 0
        too_much = False
        try:
            while True:
                try:
                    piece = await reader.readuntil(b".\r\n")
                except asyncio.LimitOverrunError as exc:
                    # More than the limit without a dot at a line's end: drop it, read on to the end.
                    too_much = True
                    pieces.clear()
                    await reader.read(exc.consumed)
                    continue
                size += len(piece)
                if limit and size > limit + 3:
                    too_much = True
                    pieces.clear()
                if not too_much:
                    pieces.append(piece)
                # ".\r\n" alone on a line: the whole piece (it follows a line end or the start of
                # the data), or at the end of one that ends a line before it.
                if piece == b".\r\n" or piece.endswith(b"\r\n.\r\n"):
                    break
        except asyncio.CancelledError:
            self._writer.close()
            raise
        finally:
            reader._limit = saved
        if too_much:
            await self.push("552 Error: Too much mail data")
            self._set_post_data_state()
            return
        data = b"".join(pieces)[:-3]
        if data.startswith(b"."):
            data = data[1:]
        original_content = data.replace(b"\r\n.", b"\r\n")
        self.envelope.content = original_content
        self.envelope.original_content = original_content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        found = _PLAIN_PATH.match(arg) if arg else None
        if found is None:
            return super()._getaddr(arg)
        local = found[1].rpartition("@")[0]
        if self.local_part_limit and len(local) > self.local_part_limit:
            return None, None
        return found[1], found[2]


def _tls(settings: EmailSettings) -> ssl.SSLContext | None:
    if not settings.starttls:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    return context


class SmtpReceiver:
    def __init__(self, connector: EmailConnector, settings: EmailSettings) -> None:
        self.connector = connector
        self.settings = settings
        self._server: asyncio.Server | None = None
        self.port: int | None = None

    async def start(self) -> None:
        if self.settings.smtp_port is None or self._server is not None:
            return
        loop = asyncio.get_running_loop()
        handler = _Handler(self.connector)
        tls = _tls(self.settings)
        hostname = self.settings.smtp_hostname

        def protocol() -> Any:
            return _Protocol(handler, data_size_limit=self.settings.max_message_bytes, enable_SMTPUTF8=True,
                        hostname=hostname, tls_context=tls, loop=loop)

        # Several `serve` processes on one machine share the port (the kernel spreads connections).
        self._server = await loop.create_server(protocol, self.settings.smtp_host, self.settings.smtp_port,
                                                reuse_port=True)
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("smtp receiver on %s:%s%s", self.settings.smtp_host, self.port, " (STARTTLS)" if tls else "")

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            try:
                await asyncio.wait_for(server.wait_closed(), 5)
            except TimeoutError:
                pass
