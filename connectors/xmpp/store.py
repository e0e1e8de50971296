"""What the XMPP channel keeps in its own tables (connectors/xmpp/models.py): the tenants' accounts,
the customers' last addresses and the replies' acks and receipts, written with core's database API.
The connector, its links and the admin routes call these; nothing outside the channel does."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from connectors.xmpp.models import XmppAccount, XmppDelivery, XmppPeer
from core import secrets
from core.audit import audit
from core.config import Settings
from core.errors import Conflict, InvalidInput, NotFound
from core.models import GONE_STATUSES, Tenant, table_of, utcnow

if TYPE_CHECKING:
    from core.hub import Hub

CHANNEL = "xmpp"
KINDS = ("client", "component")
SECURITY = ("none", "starttls", "tls")
DEFAULT_PORTS = {"client": 5222, "component": 5347}
# RFC 7622 in the small: a local part without the characters it forbids, a domain of labels.
_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*"
_BARE = re.compile(rf"^[^\s\"&'/:<>@]{{1,1023}}@{_DOMAIN}$")
_HOST_ONLY = re.compile(rf"^{_DOMAIN}$")


@dataclass(frozen=True)
class AccountConfig:
    """One account with its secret decrypted: lives in memory only, never logged. Equal configs need
    no new connection; a link whose account changed is restarted."""

    id: int
    tenant_id: int
    kind: str
    jid: str
    secret: str
    host: str
    port: int
    security: str
    name: str | None
    muc_rooms: tuple[str, ...]

    def __repr__(self) -> str:
        return f"AccountConfig(id={self.id}, tenant_id={self.tenant_id}, kind={self.kind!r}, jid={self.jid!r})"

    def __str__(self) -> str:
        return f"xmpp account {self.id} ({self.kind} {self.jid})"


def config(settings: Settings, row: XmppAccount) -> AccountConfig:
    domain = row.jid.rpartition("@")[2]
    return AccountConfig(
        id=row.id, tenant_id=row.tenant_id, kind=row.kind, jid=row.jid,
        secret=secrets.decrypt(settings, row.secret_enc),
        host=row.host or domain, port=row.port or DEFAULT_PORTS[row.kind], security=row.security, name=row.name,
        muc_rooms=tuple(row.muc_rooms or ()))


def normal_jid(kind: str, value: str) -> str:
    jid = value.strip()
    if kind == "client":
        local, _, domain = jid.rpartition("@")
        jid = f"{local}@{domain.lower()}"
        ok = bool(_BARE.match(jid))
    else:
        jid = jid.lower()
        ok = bool(_HOST_ONLY.match(jid)) and "." in jid
    if not ok or len(jid) > 320:
        what = "a bare JID (user@example.com)" if kind == "client" else "a domain (support.example.com)"
        raise InvalidInput(f"jid must be {what}: {value[:100]!r}", code="invalid_jid")
    return jid


async def load_active(hub: Hub) -> list[AccountConfig | tuple[XmppAccount, str]]:
    """Every tenant's active accounts (an unscoped read of this table only); a row whose secret
    cannot be decrypted comes as (row, why)."""
    async with hub.db.read() as session:
        rows = (await session.execute(
            select(XmppAccount).join(Tenant, Tenant.id == XmppAccount.tenant_id)
            .where(XmppAccount.active.is_(True), Tenant.status.not_in(GONE_STATUSES))
            .order_by(XmppAccount.id))).scalars().all()
    out: list[AccountConfig | tuple[XmppAccount, str]] = []
    for row in rows:
        try:
            out.append(config(hub.settings, row))
        except (secrets.SecretError, KeyError) as exc:
            out.append((row, f"unusable account: {exc}"))
    return out


async def tenant_accounts(hub: Hub, tenant_id: int) -> list[tuple[int, str, str, bool]]:
    """(id, kind, jid, active) of a tenant's accounts, oldest first."""
    async with hub.db.read(tenant_id) as session:
        rows = await session.execute(select(XmppAccount.id, XmppAccount.kind, XmppAccount.jid, XmppAccount.active)
                                     .order_by(XmppAccount.id))
        return [tuple(r) for r in rows]  # type: ignore[misc]


# --- peers: where a customer wrote to ------------------------------------------------------------------


async def remember_peer(hub: Hub, tenant_id: int, account_id: int, jid: str, local_jid: str) -> None:
    table = table_of(XmppPeer)
    insert = sqlite_insert if hub.db.is_sqlite else pg_insert
    now = utcnow()
    stmt = insert(table).values(tenant_id=tenant_id, account_id=account_id, jid=jid, local_jid=local_jid,
                                updated_at=now)
    stmt = stmt.on_conflict_do_update(index_elements=["tenant_id", "jid"],
                                      set_={"account_id": account_id, "local_jid": local_jid, "updated_at": now})
    async with hub.db.connection() as conn:
        await conn.execute(stmt)


async def peer(hub: Hub, tenant_id: int, jid: str) -> tuple[int, str] | None:
    """(account id, our address) the customer last wrote to."""
    async with hub.db.read(tenant_id) as session:
        row = (await session.execute(select(XmppPeer.account_id, XmppPeer.local_jid).where(XmppPeer.jid == jid))
               ).one_or_none()
    return (int(row[0]), str(row[1])) if row is not None else None


# --- deliveries: acks and receipts ---------------------------------------------------------------------


async def record_ack(hub: Hub, tenant_id: int, message_id: int, account_id: int, stanza_id: str, to_jid: str) -> None:
    table = table_of(XmppDelivery)
    insert = sqlite_insert if hub.db.is_sqlite else pg_insert
    stmt = insert(table).values(tenant_id=tenant_id, message_id=message_id, account_id=account_id,
                                stanza_id=stanza_id, to_jid=to_jid, acked_at=utcnow())
    async with hub.db.connection() as conn:
        await conn.execute(stmt.on_conflict_do_nothing(index_elements=["tenant_id", "stanza_id"]))


async def record_receipt(hub: Hub, tenant_id: int, stanza_id: str, from_jid: str) -> int | None:
    """The customer's client confirmed a reply (XEP-0184); returns its message id, or None when the
    receipt names no reply of ours sent to that customer."""
    table = table_of(XmppDelivery)
    async with hub.db.connection() as conn:
        row = (await conn.execute(
            update(table).where(table.c.tenant_id == tenant_id, table.c.stanza_id == stanza_id,
                                table.c.to_jid == from_jid, table.c.receipt_at.is_(None))
            .values(receipt_at=utcnow()).returning(table.c.message_id))).one_or_none()
    return int(row[0]) if row is not None else None


async def deliveries(session: AsyncSession, message_id: int) -> list[dict[str, Any]]:
    rows = (await session.execute(select(XmppDelivery).where(XmppDelivery.message_id == message_id)
                                  .order_by(XmppDelivery.id))).scalars()
    return [{"stanza_id": r.stanza_id, "to": r.to_jid, "acked_at": _iso(r.acked_at),
             "receipt_at": _iso(r.receipt_at)} for r in rows]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# --- the admin API --------------------------------------------------------------------------------------


def account_dict(row: XmppAccount) -> dict[str, Any]:
    return {
        "id": row.id, "kind": row.kind, "jid": row.jid, "secret_set": bool(row.secret_enc), "host": row.host,
        "port": row.port, "security": row.security, "name": row.name, "active": row.active,
        "muc_rooms": list(row.muc_rooms or []),
        "status": {"connected": row.connected, "error": row.error, "checked_at": _iso(row.checked_at)},
        "created_at": row.created_at.isoformat(), "updated_at": row.updated_at.isoformat(),
    }


_PLAIN = ("host", "port", "security", "name", "active", "muc_rooms")


def _apply(settings: Settings, row: XmppAccount, changes: dict[str, Any]) -> list[str]:
    changed: list[str] = []
    for name in _PLAIN:
        if name in changes:
            setattr(row, name, changes[name])
            changed.append(name)
    if changes.get("secret"):
        row.secret_enc = secrets.encrypt(settings, changes["secret"])
        changed.append("secret")
    if row.muc_rooms:
        row.muc_rooms = [normal_jid("client", r) for r in dict.fromkeys(row.muc_rooms)]
    if row.kind == "component" and row.security == "tls":
        # XEP-0114 has no TLS of its own: a component's link is protected by the network (loopback,
        # a VPN) or a TLS tunnel.
        raise InvalidInput("a component connects in plaintext (XEP-0114): security is none or starttls",
                           code="invalid_security")
    return changed


async def create_account(session: AsyncSession, settings: Settings, tenant_id: int, body: dict[str, Any], *,
                         actor_id: int | None, ip: str | None) -> dict[str, Any]:
    now = utcnow()
    kind = body["kind"]
    jid = normal_jid(kind, body["jid"])
    security = body.get("security") or ("none" if kind == "component" else "starttls")
    row = XmppAccount(tenant_id=tenant_id, kind=kind, jid=jid, secret_enc="", security=security, active=True,
                      muc_rooms=[], connected=False, created_at=now, updated_at=now)
    changed = _apply(settings, row, {k: v for k, v in body.items() if k not in ("kind", "jid")})
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"{jid} is already an XMPP account of this hub", code="jid_taken") from None
    audit(session, tenant_id=tenant_id, actor_type="agent", actor_id=actor_id, action="xmpp.account.create",
          target_type="xmpp_account", target_id=row.id, details={"kind": kind, "jid": jid, "fields": sorted(changed)},
          ip=ip)
    return account_dict(row)


async def list_accounts(session: AsyncSession) -> list[dict[str, Any]]:
    rows = (await session.execute(select(XmppAccount).order_by(XmppAccount.id))).scalars()
    return [account_dict(r) for r in rows]


async def _get(session: AsyncSession, account_id: int, *, lock: bool = False) -> XmppAccount:
    stmt = select(XmppAccount).where(XmppAccount.id == account_id)
    row = (await session.execute(stmt.with_for_update() if lock else stmt)).scalar_one_or_none()
    if row is None:
        raise NotFound("no such XMPP account", code="xmpp_account_not_found")
    return row


async def get_account(session: AsyncSession, account_id: int) -> dict[str, Any]:
    return account_dict(await _get(session, account_id))


async def update_account(session: AsyncSession, settings: Settings, account_id: int, changes: dict[str, Any], *,
                         actor_id: int | None, ip: str | None) -> dict[str, Any]:
    row = await _get(session, account_id, lock=True)
    changed = _apply(settings, row, changes)
    row.updated_at = utcnow()
    audit(session, tenant_id=row.tenant_id, actor_type="agent", actor_id=actor_id, action="xmpp.account.update",
          target_type="xmpp_account", target_id=row.id, details={"fields": sorted(changed)}, ip=ip)
    await session.flush()
    return account_dict(row)


async def delete_account(session: AsyncSession, account_id: int, *, actor_id: int | None, ip: str | None) -> None:
    row = await _get(session, account_id, lock=True)
    audit(session, tenant_id=row.tenant_id, actor_type="agent", actor_id=actor_id, action="xmpp.account.delete",
          target_type="xmpp_account", target_id=row.id, details={"jid": row.jid}, ip=ip)
    await session.delete(row)
