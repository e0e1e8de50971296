"""What the email channel keeps in its own tables (connectors/email/models.py): the tenants'
mailboxes and the originals of their mail, written with core's database API. The connector and
the routes call these; nothing outside the channel does."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from connectors.email.models import EmailMailbox, EmailOriginal
from connectors.email.parse import safe_html
from core import secrets
from core.audit import audit
from core.config import Settings
from core.errors import Conflict, InvalidInput, NotFound
from core.models import GONE_STATUSES, Direction, Message, Tenant, Ticket, utcnow
from core.tickets import can_see

if TYPE_CHECKING:
    from core.auth import Principal
    from core.hub import Hub

CHANNEL = "email"
SECURITY = ("none", "starttls", "tls")
# What the References of a reply carry at the most (RFC 5322 lets them grow without bound; the
# first and the newest are what threading needs).
MAX_REFERENCES = 20
_ADDRESS = re.compile(r"^[^@\s<>\"(),;:]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


@dataclass(frozen=True)
class MailboxConfig:
    """One mailbox with its passwords decrypted: lives in memory only, never logged."""

    id: int
    tenant_id: int
    address: str
    name: str
    active: bool
    plus_addressing: bool
    smtp_host: str | None
    smtp_port: int | None
    smtp_security: str
    smtp_username: str | None
    smtp_password: str | None
    imap_host: str | None
    imap_port: int | None
    imap_security: str
    imap_username: str | None
    imap_password: str | None
    imap_folder: str

    def __repr__(self) -> str:  # keep passwords out of logs and tracebacks
        return f"MailboxConfig(id={self.id}, tenant_id={self.tenant_id}, address={self.address!r})"

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


def _decrypt(settings: Settings, value: str | None) -> str | None:
    return secrets.decrypt(settings, value) if value else None


def config(settings: Settings, row: EmailMailbox) -> MailboxConfig:
    return MailboxConfig(
        id=row.id, tenant_id=row.tenant_id, address=row.address, name=row.name, active=row.active,
        plus_addressing=row.plus_addressing, smtp_host=row.smtp_host, smtp_port=row.smtp_port,
        smtp_security=row.smtp_security, smtp_username=row.smtp_username,
        smtp_password=_decrypt(settings, row.smtp_password_enc), imap_host=row.imap_host, imap_port=row.imap_port,
        imap_security=row.imap_security, imap_username=row.imap_username,
        imap_password=_decrypt(settings, row.imap_password_enc), imap_folder=row.imap_folder,
    )


def normal_address(value: str) -> str:
    address = value.strip().lower()
    if len(address) > 320 or not _ADDRESS.match(address):
        raise InvalidInput(f"not an e-mail address: {value[:100]!r}", code="invalid_address")
    return address


# --- lookups (the connector caches them) -----------------------------------------------------------


async def load_by_address(hub: Hub, address: str) -> MailboxConfig | None:
    """Any tenant's mailbox by its address: the recipient of a mail names its tenant. An ended
    tenant's addresses take no more mail (a suspended one's still do: its customers' mail is kept)."""
    async with hub.db.read() as session:
        row = (await session.execute(
            select(EmailMailbox).join(Tenant, Tenant.id == EmailMailbox.tenant_id)
            .where(EmailMailbox.address == address, Tenant.status.not_in(GONE_STATUSES))
        )).scalar_one_or_none()
    return config(hub.settings, row) if row is not None else None


async def load_tenant_mailboxes(hub: Hub, tenant_id: int) -> tuple[MailboxConfig, ...]:
    async with hub.db.read(tenant_id) as session:
        rows = (await session.execute(select(EmailMailbox).order_by(EmailMailbox.id))).scalars().all()
    return tuple(config(hub.settings, r) for r in rows)


@dataclass(frozen=True)
class Thread:
    """What a reply on a ticket needs to thread in the customer's client."""

    subject: str | None
    # The Message-IDs of the ticket's mail, oldest first (received and sent), cut to MAX_REFERENCES.
    references: tuple[str, ...]
    # The mailbox the customer last wrote to (None: never wrote; the tenant's first is used).
    mailbox_id: int | None
    participants: tuple[str, ...]


async def thread_of(hub: Hub, tenant_id: int, ticket_id: int, before_message_id: int) -> Thread:
    """The ticket's subject, its mail's Message-IDs up to (not including) ``before_message_id``,
    the mailbox it came to, and its Cc."""
    from core.models import TicketParticipant

    async with hub.db.read(tenant_id) as session:
        subject = (await session.execute(select(Ticket.subject).where(Ticket.id == ticket_id))).scalar_one_or_none()
        ids = (await session.execute(
            select(Message.channel_message_id, Message.direction)
            .where(Message.ticket_id == ticket_id, Message.channel == CHANNEL, Message.id < before_message_id,
                   Message.channel_message_id.is_not(None),
                   Message.direction.in_([Direction.INBOUND, Direction.OUTBOUND]))
            .order_by(Message.id))).all()
        inbound = [cmid for cmid, direction in ids if direction == Direction.INBOUND]
        mailbox_id = None
        if inbound:
            mailbox_id = (await session.execute(
                select(EmailOriginal.mailbox_id).where(EmailOriginal.message_key == inbound[-1]))).scalar_one_or_none()
        participants = (await session.execute(
            select(TicketParticipant.external_id).where(TicketParticipant.ticket_id == ticket_id,
                                                        TicketParticipant.channel == CHANNEL)
            .order_by(TicketParticipant.created_at))).scalars().all()
    refs = [cmid for cmid, _ in ids if cmid]
    if len(refs) > MAX_REFERENCES:  # the first (the thread's root) and the newest
        refs = [refs[0], *refs[-(MAX_REFERENCES - 1):]]
    return Thread(subject, tuple(refs), mailbox_id, tuple(participants))


# --- originals ----------------------------------------------------------------------------------------


async def original(hub: Hub, principal: Principal, message_id: int) -> dict[str, Any]:
    """The mail behind a ticket message, as it came: whole text, sanitised HTML, headers. Only for
    an agent who may see its ticket (core.tickets.can_see): otherwise not found, like a message
    that is no mail."""
    async with hub.db.read(principal.tenant_id) as session:
        found = (await session.execute(
            select(Message.channel_message_id, Ticket).join(Ticket, Ticket.id == Message.ticket_id)
            .where(Message.id == message_id, Message.channel == CHANNEL, Message.direction == Direction.INBOUND)
        )).one_or_none()
        row = None
        if found is not None and await can_see(session, principal, found[1]):
            row = (await session.execute(
                select(EmailOriginal).where(EmailOriginal.message_key == found[0]))).scalar_one_or_none()
    if row is None:
        raise NotFound(f"message {message_id} is not a mail the hub received", code="original_not_found")
    # The HTML is kept as it came and made safe as it is read: the sanitiser's fixes reach old
    # mail too, and receiving (the hot path) does not pay for mail nobody opens in full.
    files = (row.headers or {}).get("attachments") or []
    inline = {f["content_id"]: f["url"] for f in files if f.get("content_id")}
    html = safe_html(row.html, inline) if row.html is not None else None
    headers = {k: v for k, v in (row.headers or {}).items() if k != "attachments"}
    return {"message_id": message_id, "headers": headers, "text": row.text, "html": html,
            "size": row.size, "received_at": row.received_at.isoformat()}


# --- the admin API --------------------------------------------------------------------------------------


def mailbox_dict(row: EmailMailbox) -> dict[str, Any]:
    return {
        "id": row.id, "address": row.address, "name": row.name, "active": row.active,
        "plus_addressing": row.plus_addressing,
        "smtp": {"host": row.smtp_host, "port": row.smtp_port, "security": row.smtp_security,
                 "username": row.smtp_username, "password_set": bool(row.smtp_password_enc)},
        "imap": {"host": row.imap_host, "port": row.imap_port, "security": row.imap_security,
                 "username": row.imap_username, "password_set": bool(row.imap_password_enc),
                 "folder": row.imap_folder, "last_uid": row.imap_last_uid, "error": row.imap_error,
                 "checked_at": row.imap_checked_at.isoformat() if row.imap_checked_at else None},
        "created_at": row.created_at.isoformat(), "updated_at": row.updated_at.isoformat(),
    }


# Fields of the API body → columns; passwords are encrypted on the way in.
_PLAIN = {"name", "active", "plus_addressing"}
_GROUPS = {"smtp": ("host", "port", "security", "username"), "imap": ("host", "port", "security", "username",
                                                                       "folder")}


def _apply(settings: Settings, row: EmailMailbox, changes: dict[str, Any]) -> list[str]:
    changed: list[str] = []
    for name in _PLAIN & changes.keys():
        setattr(row, name, changes[name])
        changed.append(name)
    for group, fields in _GROUPS.items():
        part = changes.get(group)
        if part is None:
            continue
        for field in fields:
            if field in part:
                setattr(row, f"{group}_{field}", part[field])
                changed.append(f"{group}.{field}")
        if "password" in part:
            value = part["password"]
            setattr(row, f"{group}_password_enc", secrets.encrypt(settings, value) if value else None)
            changed.append(f"{group}.password")
    if "imap" in changes:
        # Another account or folder: where reading stopped means nothing there.
        if {"imap.host", "imap.username", "imap.folder"} & set(changed):
            row.imap_uidvalidity, row.imap_last_uid, row.imap_error = None, 0, None
    return changed


def _check(row: EmailMailbox) -> None:
    for group in ("smtp", "imap"):
        if getattr(row, f"{group}_security") not in SECURITY:
            raise InvalidInput(f"{group}.security is one of {', '.join(SECURITY)}", code="invalid_security")
    if row.imap_host and not (row.imap_username and row.imap_password_enc):
        raise InvalidInput("an IMAP account needs imap.username and imap.password", code="imap_incomplete")


async def create_mailbox(session: AsyncSession, settings: Settings, tenant_id: int, body: dict[str, Any], *,
                         actor_id: int | None, ip: str | None) -> dict[str, Any]:
    now = utcnow()
    address = normal_address(body["address"])
    row = EmailMailbox(tenant_id=tenant_id, address=address, name=body.get("name") or address, active=True,
                       plus_addressing=False, smtp_security="starttls", imap_security="tls", imap_folder="INBOX",
                       imap_last_uid=0, created_at=now, updated_at=now)
    changed = _apply(settings, row, {k: v for k, v in body.items() if k != "address"})
    _check(row)
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"{address} is already a mailbox of this hub", code="address_taken") from None
    audit(session, tenant_id=tenant_id, actor_type="agent", actor_id=actor_id, action="email.mailbox.create",
          target_type="email_mailbox", target_id=row.id, details={"address": address, "fields": sorted(changed)}, ip=ip)
    return mailbox_dict(row)


async def list_mailboxes(session: AsyncSession) -> list[dict[str, Any]]:
    rows = (await session.execute(select(EmailMailbox).order_by(EmailMailbox.id))).scalars()
    return [mailbox_dict(r) for r in rows]


async def _get(session: AsyncSession, mailbox_id: int, *, lock: bool = False) -> EmailMailbox:
    stmt = select(EmailMailbox).where(EmailMailbox.id == mailbox_id)
    row = (await session.execute(stmt.with_for_update() if lock else stmt)).scalar_one_or_none()
    if row is None:
        raise NotFound("no such mailbox", code="mailbox_not_found")
    return row


async def get_mailbox(session: AsyncSession, mailbox_id: int) -> dict[str, Any]:
    return mailbox_dict(await _get(session, mailbox_id))


async def update_mailbox(session: AsyncSession, settings: Settings, mailbox_id: int, changes: dict[str, Any], *,
                         actor_id: int | None, ip: str | None) -> dict[str, Any]:
    row = await _get(session, mailbox_id, lock=True)
    changed = _apply(settings, row, changes)
    _check(row)
    row.updated_at = utcnow()
    audit(session, tenant_id=row.tenant_id, actor_type="agent", actor_id=actor_id, action="email.mailbox.update",
          target_type="email_mailbox", target_id=row.id, details={"fields": sorted(changed)}, ip=ip)
    await session.flush()
    return mailbox_dict(row)


async def delete_mailbox(session: AsyncSession, mailbox_id: int, *, actor_id: int | None, ip: str | None) -> None:
    row = await _get(session, mailbox_id, lock=True)
    audit(session, tenant_id=row.tenant_id, actor_type="agent", actor_id=actor_id, action="email.mailbox.delete",
          target_type="email_mailbox", target_id=row.id, details={"address": row.address}, ip=ip)
    await session.delete(row)
