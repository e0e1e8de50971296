"""A mail that arrived for a mailbox, made into what core takes: one path for SMTP and IMAP.

:class:`Receiver` reads the mail (connectors/email/parse.py) and decides what it is:
- **unreadable** (not a mail at all): set aside in the inbox's failed set for an operator, with
  its bytes, and never fetched or refused again;
- **a bounce** (a DSN) of a reply we sent: that reply is marked failed, with the receiving
  server's reason shown to the agent; no ticket;
- **automatic** (auto-replies, bulk and list mail) or **our own** (From one of the tenant's
  mailboxes): dropped, never answered, no ticket (the loop guards);
- **a flood** (more than ``flood_limit`` mails from one sender in ``flood_window``): deferred
  (:class:`Deferred`: the SMTP receiver answers 451 and the sending server tries again later);
- otherwise a customer's mail: its original (whole text, sanitised HTML, headers) and its files
  are stored in one transaction (a group commit for everything that arrived meanwhile), then the
  message goes into the inbox, which makes it a ticket message. Both steps are idempotent on the
  Message-ID, so a retried delivery or a re-fetched mail is stored once.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from connectors.email import ids
from connectors.email.models import EmailOriginal
from connectors.email.parse import (
    ParsedMail,
    UnreadableMail,
    bounce_reason,
    forwarded_sender,
    parse,
    visible_text,
)
from connectors.email.settings import EmailSettings
from connectors.email.store import CHANNEL, MailboxConfig
from core.attachments import MAX_PER_MESSAGE, attachment_dict, check_content_type
from core.batching import GroupCommit
from core.channels import Attachment, InboundMessage
from core.errors import Busy, DeliveryError, DomainError
from core.ingest import MAX_ID_LENGTH, MAX_THREAD_IDS, after_commit, check_message, ingest_scoped
from core.models import StoredAttachment, table_of, utcnow
from core.outbox import mark_failed_after_send

if TYPE_CHECKING:
    from connectors.email.connector import EmailConnector

logger = logging.getLogger(__name__)


class Deferred(Exception):
    """Not now: the sender's server should try again later (SMTP 451)."""


@dataclass(frozen=True)
class Outcome:
    """What became of a mail: ``stored`` (a ticket message, or a retry of one), ``bounce``,
    ``automatic``, ``own`` (from our own address) or ``unreadable`` (set aside)."""

    kind: str
    message_key: str | None = None
    detail: str | None = None


@dataclass
class _Landing:
    """One mail's original and files, for the landing group commit."""

    tenant_id: int
    mailbox_id: int
    key: str
    original: dict[str, Any]
    files: list[tuple[str, str, bytes, str | None]]  # name, content type, bytes, content id
    # The inbound message, once its files' descriptions are known.
    build: Callable[[list[dict[str, Any]]], InboundMessage]
    # Into the inbox (retried by its drainer, set aside if it keeps failing) rather than made a
    # ticket message in the landing transaction: for a mail that failed that way once.
    via_inbox: bool = False


def message_key(parsed: ParsedMail, raw: bytes) -> str:
    """The mail's channel message id: its Message-ID without brackets, or (none, or one too long
    for the column) a digest of its bytes, the same for every retry of it."""
    if parsed.message_id:
        key = parsed.message_id.strip("<>")
        if key and len(key) <= MAX_ID_LENGTH:
            return key
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _file_name(name: str) -> str:
    # What the stored attachment's column holds; the name a customer's client gave is kept as is
    # otherwise (an agent downloads it with Content-Disposition, which quotes it).
    cleaned = "".join(c for c in name if c.isprintable() and c not in "/\\").strip() or "attachment"
    return cleaned[:200]


class FloodGuard:
    """One sender's mails per tenant in a sliding window, in this process (several processes each
    count their own: the limit is then per process, which still stops a flood)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._seen: dict[tuple[int, str], deque[float]] = defaultdict(deque)

    def allow(self, tenant_id: int, sender: str) -> bool:
        now = time.monotonic()
        seen = self._seen[(tenant_id, sender)]
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        if len(seen) >= self.limit:
            return False
        seen.append(now)
        if len(self._seen) > 100_000:  # forget quiet senders
            for key in [k for k, v in self._seen.items() if not v or v[-1] <= now - self.window]:
                del self._seen[key]
        return True


class Receiver:
    def __init__(self, connector: EmailConnector, settings: EmailSettings) -> None:
        self.connector = connector
        self.hub = connector.hub
        self.settings = settings
        self.flood = FloodGuard(settings.flood_limit, settings.flood_window)
        self.lander: GroupCommit[_Landing, None] = GroupCommit(
            "email landing", self._land, linger=0.002, max_batch=200, busy_after=self.hub.settings.busy_after,
            loop_lag=self.hub.loop_lag)

    def start(self) -> None:
        self.lander.start()

    async def stop(self) -> None:
        await self.lander.stop()

    # --- one mail -----------------------------------------------------------------------------
    async def receive(self, mailbox: MailboxConfig, raw: bytes, *, envelope_to: Sequence[str] = (),
                      check_flood: bool = True) -> Outcome:
        """Take one mail for ``mailbox``; returns once it is durable (or known not to be wanted).
        Raises :class:`Deferred` for a flood and :class:`core.errors.Busy` past saturation."""
        try:
            parsed = parse(raw)
        except UnreadableMail as exc:
            await self.set_aside(mailbox, raw, str(exc))
            return Outcome("unreadable", detail=str(exc))
        key = message_key(parsed, raw)
        if parsed.automatic == "bounce":
            return await self._bounce(mailbox, raw, key)
        if parsed.automatic is not None:
            logger.info("email %s: automatic mail (%s) from a sender of tenant %s dropped", mailbox.id,
                        parsed.automatic, mailbox.tenant_id)
            return Outcome("automatic", key, parsed.automatic)
        own = await self.connector.own_addresses(mailbox.tenant_id)
        if parsed.sender in own or _base(parsed.sender) in own:
            logger.info("email %s: mail from our own address %s dropped (a loop)", mailbox.id, parsed.sender)
            return Outcome("own", key)
        if not parsed.sender or len(parsed.sender) > MAX_ID_LENGTH:
            why = "no From address" if not parsed.sender else "a From address too long to be anyone's"
            await self.set_aside(mailbox, raw, why)
            return Outcome("unreadable", key, why)
        sender, sender_name = parsed.sender, parsed.sender_name
        if ids.is_forward(parsed.subject) and parsed.sender in await self.connector.agent_addresses(mailbox.tenant_id):
            # An agent forwarding a customer's mail to the support address: the ticket is the
            # customer's, as the forwarded mail's From says.
            original = forwarded_sender(parsed.text)
            if original is not None and original[1] not in own and len(original[1]) <= MAX_ID_LENGTH:
                sender_name, sender = original
        if check_flood and not self.flood.allow(mailbox.tenant_id, sender):
            raise Deferred(f"too many mails from {sender}; try again later")
        await self._land_one(mailbox, parsed, raw, key, partial(
            self._inbound, mailbox, parsed, key, sender, sender_name, own=own, envelope_to=envelope_to))
        return Outcome("stored", key)

    def _inbound(self, mailbox: MailboxConfig, parsed: ParsedMail, key: str, sender: str, sender_name: str | None,
                 attachments: list[dict[str, Any]], *, own: frozenset[str], envelope_to: Sequence[str]
                 ) -> InboundMessage:
        settings = self.hub.settings
        answers = [i.strip("<>") for i in (*parsed.in_reply_to, *reversed(parsed.references))]
        answers = [a for a in dict.fromkeys(answers) if a and len(a) <= MAX_ID_LENGTH][:MAX_THREAD_IDS]
        refs: list[int] = []
        for a in answers:
            found = ids.ours(settings, mailbox.tenant_id, a)
            if found is not None:
                refs.append(found[1])
        refs.extend(ids.token_tickets(parsed.subject))
        for address in (*envelope_to, *parsed.to, *parsed.cc):
            ticket = ids.plus_ticket(settings, mailbox.tenant_id, address)
            if ticket is not None:
                refs.append(ticket)
        participants = [a for a in dict.fromkeys((*parsed.to, *parsed.cc))
                        if a != sender and a not in own and _base(a) not in own and len(a) <= MAX_ID_LENGTH]
        return InboundMessage(
            tenant_id=mailbox.tenant_id, channel=CHANNEL, external_id=sender,
            text=_within(visible_text(parsed.text), settings.max_message_bytes),
            channel_message_id=key, received_at=utcnow(),
            attachments=tuple(Attachment(name=a["name"], content_type=a["content_type"], url=a["url"], size=a["size"],
                                         id=a["id"]) for a in attachments),
            customer_name=sender_name, customer_email=sender, subject=ids.clean_subject(parsed.subject) or None,
            customer_attributes={"email_mailbox": mailbox.address},
            answers=tuple(answers), ticket_refs=tuple(dict.fromkeys(refs))[:MAX_THREAD_IDS], join_open=False,
            participants=tuple(participants[:MAX_THREAD_IDS]),
        )

    # --- the original and its files ----------------------------------------------------------
    async def _land_one(self, mailbox: MailboxConfig, parsed: ParsedMail, raw: bytes, key: str,
                        build: Callable[[list[dict[str, Any]]], InboundMessage]) -> None:
        files = [(_file_name(p.filename), _content_type(p.content_type), p.data, p.content_id)
                 for p in parsed.attachments[:MAX_PER_MESSAGE]]
        headers = {"from": parsed.sender, "from_name": parsed.sender_name, "to": list(parsed.to),
                   "cc": list(parsed.cc), "reply_to": list(parsed.reply_to), "subject": parsed.subject,
                   "message_id": parsed.message_id, "in_reply_to": list(parsed.in_reply_to),
                   "references": list(parsed.references)[-50:], "defects": list(parsed.defects)[:20],
                   "dropped_attachments": max(len(parsed.attachments) - MAX_PER_MESSAGE, 0)}
        original = {"tenant_id": mailbox.tenant_id, "mailbox_id": mailbox.id, "message_key": key,
                    "headers": headers, "text": parsed.text.replace("\x00", ""), "html": parsed.html,
                    "size": len(raw), "received_at": utcnow()}
        landing = _Landing(mailbox.tenant_id, mailbox.id, key, original, files, build)
        try:
            await self.lander.submit(landing)
        except Busy:
            raise
        except Exception as exc:
            # Its ticket message could not be made now (a race with another process, a bug): the
            # inbox takes it, and its drainer retries (and sets it aside if it keeps failing).
            logger.warning("email %s: mail %s goes through the inbox (%s)", mailbox.id, key, type(exc).__name__)
            landing.via_inbox = True
            await self.lander.submit(landing)

    async def _land(self, items: list[_Landing]) -> list[None]:
        """Originals, files and ticket messages of a batch of mails in one transaction: a mail is
        all there or not at all, and its 250 follows the commit. Made ticket messages right here
        (core.ingest, the same batched path the inbox's drainer takes) rather than landed in the
        inbox and drained by a second transaction: SMTP has no deadline that needs the quicker
        answer, and one transaction a batch costs half of two. A mail stored before (a retried
        delivery) gets the files stored the first time, read back from its original, and its
        ticket message is the first one (ingest is idempotent on the Message-ID)."""
        db = self.hub.db
        by_tenant: dict[int, set[str]] = defaultdict(set)
        for it in items:
            by_tenant[it.tenant_id].add(it.key)
        out: dict[tuple[int, str], list[dict[str, Any]]] = {}
        async with db.session() as session:
            conn = await session.connection()
            o = table_of(EmailOriginal)
            for tenant_id, keys in by_tenant.items():
                rows = await conn.execute(select(o.c.message_key, o.c.headers).where(
                    o.c.tenant_id == tenant_id, o.c.message_key.in_(sorted(keys))))
                for k, headers in rows:
                    out[(tenant_id, k)] = list((headers or {}).get("attachments") or [])
            fresh: dict[tuple[int, str], _Landing] = {}
            for it in items:
                if (it.tenant_id, it.key) not in out:
                    fresh.setdefault((it.tenant_id, it.key), it)
            files = [(it, f) for it in fresh.values() for f in it.files]
            a = table_of(StoredAttachment)
            stored: dict[tuple[int, str], list[dict[str, Any]]] = {k: [] for k in fresh}
            if files:
                rows_ = [{"tenant_id": it.tenant_id, "uploaded_by_agent_id": None, "name": name, "content_type": ctype,
                          "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "data": data,
                          "created_at": utcnow()} for it, (name, ctype, data, _cid) in files]
                # Both databases number a multi-row INSERT's rows in the order of its VALUES.
                new_ids = sorted((await conn.execute(insert(a).returning(a.c.id), rows_)).scalars())
                for (it, (name, ctype, data, cid)), file_id in zip(files, new_ids, strict=True):
                    desc = attachment_dict(_Desc(file_id, name, ctype, len(data)))
                    if cid:
                        desc["content_id"] = cid
                    stored[(it.tenant_id, it.key)].append(desc)
            if fresh:
                values = []
                for k, it in fresh.items():
                    original = dict(it.original)
                    original["headers"] = {**original["headers"], "attachments": stored[k]}
                    values.append(original)
                await conn.execute(insert(o), values)
                out.update(stored)
            msgs = [(it, it.build([{k: v for k, v in d.items() if k != "content_id"}
                                   for d in out[(it.tenant_id, it.key)]])) for it in items]
            aside = [m for it, m in msgs if it.via_inbox]
            if aside:
                await self.hub.inbox.land_in(conn, aside)
            direct: dict[int, list[InboundMessage]] = defaultdict(list)
            for it, m in msgs:
                if not it.via_inbox:
                    check_message(m, self.hub.settings.max_message_bytes)
                    direct[m.tenant_id].append(m)
            done = [(tenant_id, *await ingest_scoped(session, self.hub, tenant_id, ms))
                    for tenant_id, ms in direct.items()]
        for tenant_id, results, events in done:
            await after_commit(self.hub, tenant_id, results, events)
        if aside:
            self.hub.inbox.wake()
        return [None] * len(items)

    # --- what is not a customer's mail ---------------------------------------------------------
    async def _bounce(self, mailbox: MailboxConfig, raw: bytes, key: str) -> Outcome:
        failed, reason = bounce_reason(raw)
        target: tuple[int, int] | None = None
        for found in _OUR_IDS.finditer(raw):
            target = ids.ours(self.hub.settings, mailbox.tenant_id, found[0].decode("ascii", "replace"))
            if target is not None:
                break
        if target is None or not failed:
            logger.info("email %s: a delivery report for no reply of ours (or not a failure) dropped", mailbox.id)
            return Outcome("bounce", key, None)
        marked = await mark_failed_after_send(self.hub, mailbox.tenant_id, target[0],
                                              DeliveryError(f"the mail bounced: {reason}", retry=False, code="bounced"))
        logger.info("email %s: reply %s bounced%s", mailbox.id, target[0], "" if marked else " (no such reply)")
        return Outcome("bounce", key, reason)

    async def set_aside(self, mailbox: MailboxConfig, raw: bytes, why: str) -> None:
        """Unreadable mail goes to the inbox's failed set with its bytes, for an operator
        (``channelhub inbox``), never to be fetched or refused again."""
        key = "sha256:" + hashlib.sha256(raw).hexdigest()
        text = raw.decode("utf-8", errors="replace").replace("\x00", "")[: self.hub.settings.max_message_bytes // 4]
        msg = InboundMessage(tenant_id=mailbox.tenant_id, channel=CHANNEL, external_id=f"unreadable@{mailbox.domain}",
                             text=text, channel_message_id=key,
                             customer_attributes={"email_mailbox": mailbox.address,
                                                  "raw_base64": base64.b64encode(raw[:1_000_000]).decode()})
        try:
            await self.hub.inbox.set_aside(msg, f"email: {why}")
        except (DomainError, IntegrityError):
            logger.exception("email %s: an unreadable mail could not be set aside", mailbox.id)
            raise
        logger.warning("email %s: an unreadable mail (%s) was set aside for inspection", mailbox.id, why)


_OUR_IDS = re.compile(rb"m\d{1,19}\.t\d{1,19}\.[A-Za-z2-7]{16}@[A-Za-z0-9.-]+")


@dataclass(frozen=True)
class _Desc:
    id: int
    name: str
    content_type: str
    size: int


def _within(text: str, limit: int) -> str:
    """A mail's text as a ticket message holds it: cut at ``limit`` bytes of UTF-8 (the whole text
    is kept with the original), never refused: the sending server would try again for days."""
    text = text.replace("\x00", "")
    data = text.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return text
    note = "\n[…]"
    return data[:limit - len(note.encode())].decode("utf-8", errors="ignore") + note


def _base(address: str) -> str:
    """An address without its sub-address (``support+t7.tag@`` → ``support@``)."""
    local, _, domain = address.rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def _content_type(value: str) -> str:
    try:
        return check_content_type(value)
    except DomainError:
        return "application/octet-stream"
