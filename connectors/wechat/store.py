"""What the WeChat channel keeps in its own tables (connectors/wechat/models.py): accounts, the
shared access token, media, reply windows and the WeCom kf cursor, written with core's database
API. The connector and the routes call these; nothing outside the channel does.

Accounts are read on every push, so they are cached per process for ``ACCOUNT_TTL`` seconds (a
change made through the API is seen at once by the process that made it, by the others within
the TTL).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets as pysecrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from connectors.wechat.models import WeChatAccount, WeChatMedia, WeChatReplyWindow, WeChatToken, WeChatUpload
from core import secrets
from core.audit import audit
from core.cache import TTLCache
from core.config import Settings
from core.errors import Conflict, DeliveryError, InvalidInput, NotFound
from core.models import CustomerIdentity, Direction, InboxItem, Message, Ticket, utcnow

if TYPE_CHECKING:
    from core.hub import Hub

CHANNEL = "wechat"
# What the columns hold (WeChatAccount.key, WeChatMedia.media_id): a longer one names nothing.
MAX_KEY = 40
MAX_MEDIA_ID = 255
ACCOUNT_TTL = 10.0
REPLY_WINDOW = timedelta(hours=48)
REPLIES_PER_WINDOW = 5
# Temporary media live 3 days on the platform; reuse an upload for a little less, so it cannot
# expire between being chosen and being sent.
UPLOAD_REUSE = timedelta(days=3) - timedelta(hours=2)
KINDS = ("oa", "kf")
MODES = ("plain", "compat", "safe")
TOKEN_RE = re.compile(r"^[A-Za-z0-9]{3,32}$")
APP_ID_RE = re.compile(r"^[A-Za-z0-9_-]{4,64}$")


@dataclass(frozen=True)
class AccountConfig:
    """One account with its secrets decrypted: lives in memory only, never logged."""

    id: int
    tenant_id: int
    key: str
    kind: str
    name: str
    app_id: str
    open_kfid: str | None
    mode: str
    secret: str
    token: str
    aes_key: str | None
    active: bool

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return f"AccountConfig(id={self.id}, tenant_id={self.tenant_id}, kind={self.kind!r}, app_id={self.app_id!r})"

    def external_id(self, user_id: str) -> str:
        """The customer's identity: openids are per AppID, kf external ids per corp and kf account."""
        if self.kind == "kf":
            return f"kf:{self.app_id}:{self.open_kfid}:{user_id}"
        return f"oa:{self.app_id}:{user_id}"


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


def split_external_id(external_id: str) -> tuple[str, str, str | None, str]:
    """(kind, app id, open_kfid, user id) of an identity made by :meth:`AccountConfig.external_id`."""
    parts = external_id.split(":")
    if len(parts) == 3 and parts[0] == "oa":
        return "oa", parts[1], None, parts[2]
    if len(parts) == 4 and parts[0] == "kf":
        return "kf", parts[1], parts[2], parts[3]
    raise ValueError(f"not a WeChat identity: {external_id!r}")


def _config(settings: Settings, acc: WeChatAccount) -> AccountConfig:
    return AccountConfig(
        id=acc.id, tenant_id=acc.tenant_id, key=acc.key, kind=acc.kind, name=acc.name, app_id=acc.app_id,
        open_kfid=acc.open_kfid, mode=acc.mode, secret=secrets.decrypt(settings, acc.secret_enc),
        token=secrets.decrypt(settings, acc.token_enc),
        aes_key=secrets.decrypt(settings, acc.aes_key_enc) if acc.aes_key_enc else None, active=acc.active,
    )


_by_key: TTLCache[str, AccountConfig] = TTLCache(ACCOUNT_TTL)
_by_identity: TTLCache[tuple[int, str, str, str | None], AccountConfig] = TTLCache(ACCOUNT_TTL)


def forget_accounts() -> None:
    _by_key.clear()
    _by_identity.clear()


async def account_by_key(hub: Hub, tenant_id: int, key: str) -> AccountConfig | None:
    """The tenant's active account behind a webhook URL (None for another tenant's key)."""

    async def load() -> AccountConfig | None:
        async with hub.db.read() as session:
            acc = (await session.execute(select(WeChatAccount).where(WeChatAccount.key == key))).scalar_one_or_none()
        return _config(hub.settings, acc) if acc is not None else None

    found = await _by_key.get(key, load)
    if found is None or found.tenant_id != tenant_id or not found.active:
        return None
    return found


async def account_for_identity(hub: Hub, tenant_id: int, external_id: str) -> AccountConfig | None:
    kind, app_id, open_kfid, _user = split_external_id(external_id)

    async def load() -> AccountConfig | None:
        async with hub.db.read(tenant_id) as session:
            stmt = select(WeChatAccount).where(WeChatAccount.kind == kind, WeChatAccount.app_id == app_id,
                                               WeChatAccount.active.is_(True))
            if open_kfid is not None:
                stmt = stmt.where(WeChatAccount.open_kfid == open_kfid)
            acc = (await session.execute(stmt.order_by(WeChatAccount.id).limit(1))).scalar_one_or_none()
        return _config(hub.settings, acc) if acc is not None else None

    return await _by_identity.get((tenant_id, kind, app_id, open_kfid), load)


# --- configuration (admin API) ---------------------------------------------------------------


def check_aes_key(value: str) -> str:
    """An EncodingAESKey is 43 characters of base64 that decode (with one '=') to 32 bytes."""
    try:
        ok = len(value) == 43 and len(base64.b64decode(value + "=", validate=True)) == 32
    except (binascii.Error, ValueError):
        ok = False
    if not ok:
        raise InvalidInput("aes_key must be the 43-character EncodingAESKey from the WeChat console",
                           code="invalid_aes_key")
    return value


def _check_fields(kind: str, mode: str, app_id: str, token: str, aes_key: str | None, open_kfid: str | None) -> None:
    if kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}", code="invalid_kind")
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}", code="invalid_mode")
    if not APP_ID_RE.match(app_id):
        raise InvalidInput("app_id (or corp_id) must be 4-64 letters, digits, _ or -", code="invalid_app_id")
    if not TOKEN_RE.match(token):
        raise InvalidInput("token must be 3-32 letters or digits, as the WeChat console requires",
                           code="invalid_token")
    if aes_key is not None:
        check_aes_key(aes_key)
    if kind == "kf":
        # WeCom callbacks are always encrypted.
        if aes_key is None:
            raise InvalidInput("a WeCom kf account needs its aes_key", code="aes_key_required")
        if not open_kfid or not APP_ID_RE.match(open_kfid):
            raise InvalidInput("a WeCom kf account needs its open_kfid", code="open_kfid_required")
    elif mode != "plain" and aes_key is None:
        raise InvalidInput(f"{mode} mode needs the aes_key (EncodingAESKey)", code="aes_key_required")


def account_dict(settings: Settings, acc: WeChatAccount, domain: str) -> dict[str, Any]:
    path = "kf" if acc.kind == "kf" else "oa"
    return {
        "id": acc.id, "key": acc.key, "kind": acc.kind, "name": acc.name, "app_id": acc.app_id,
        "open_kfid": acc.open_kfid, "mode": acc.mode, "active": acc.active,
        "secret": secrets.mask(secrets.decrypt(settings, acc.secret_enc)),
        "token": secrets.mask(secrets.decrypt(settings, acc.token_enc)),
        "aes_key": secrets.mask(secrets.decrypt(settings, acc.aes_key_enc)) if acc.aes_key_enc else None,
        # What the admin pastes into the WeChat (or WeCom) console as the server URL.
        "webhook_url": f"https://{domain}/wechat/{path}/{acc.key}",
        "created_at": acc.created_at.isoformat(), "updated_at": acc.updated_at.isoformat(),
    }


async def _duplicate(session: AsyncSession, kind: str, app_id: str, open_kfid: str | None, exclude: int | None) -> None:
    stmt = select(WeChatAccount.id).where(WeChatAccount.kind == kind, WeChatAccount.app_id == app_id)
    if kind == "kf":
        stmt = stmt.where(WeChatAccount.open_kfid == open_kfid)
    if exclude is not None:
        stmt = stmt.where(WeChatAccount.id != exclude)
    if (await session.execute(stmt)).first() is not None:
        raise Conflict("this tenant already has that WeChat account", code="account_exists")


async def create_account(
    session: AsyncSession, settings: Settings, tenant_id: int, domain: str, *, kind: str, name: str, app_id: str,
    secret: str, token: str, aes_key: str | None, mode: str, open_kfid: str | None, actor_id: int | None,
    ip: str | None,
) -> dict[str, Any]:
    if kind == "kf":
        mode = "safe"
    _check_fields(kind, mode, app_id, token, aes_key, open_kfid)
    await _duplicate(session, kind, app_id, open_kfid, None)
    now = utcnow()
    acc = WeChatAccount(
        tenant_id=tenant_id, key=pysecrets.token_urlsafe(18), kind=kind, name=name, app_id=app_id,
        open_kfid=open_kfid if kind == "kf" else None, mode=mode, secret_enc=secrets.encrypt(settings, secret),
        token_enc=secrets.encrypt(settings, token),
        aes_key_enc=secrets.encrypt(settings, aes_key) if aes_key else None, active=True, created_at=now,
        updated_at=now,
    )
    session.add(acc)
    await session.flush()
    audit(session, tenant_id=tenant_id, actor_type="agent", actor_id=actor_id, action="wechat.account.create",
          target_type="wechat_account", target_id=acc.id,
          details={"kind": kind, "app_id": app_id, "mode": mode, "open_kfid": acc.open_kfid}, ip=ip)
    forget_accounts()
    return account_dict(settings, acc, domain)


async def list_accounts(session: AsyncSession, settings: Settings, domain: str) -> list[dict[str, Any]]:
    rows = (await session.execute(select(WeChatAccount).order_by(WeChatAccount.id))).scalars()
    return [account_dict(settings, acc, domain) for acc in rows]


async def _get(session: AsyncSession, account_id: int, *, lock: bool = False) -> WeChatAccount:
    stmt = select(WeChatAccount).where(WeChatAccount.id == account_id)
    if lock:
        stmt = stmt.with_for_update()
    acc = (await session.execute(stmt)).scalar_one_or_none()
    if acc is None:
        raise NotFound("no such WeChat account", code="account_not_found")
    return acc


async def get_account(session: AsyncSession, settings: Settings, account_id: int, domain: str) -> dict[str, Any]:
    return account_dict(settings, await _get(session, account_id), domain)


async def update_account(
    session: AsyncSession, settings: Settings, account_id: int, domain: str, changes: dict[str, Any], *,
    actor_id: int | None, ip: str | None,
) -> dict[str, Any]:
    acc = await _get(session, account_id, lock=True)
    current_token = secrets.decrypt(settings, acc.token_enc)
    current_aes = secrets.decrypt(settings, acc.aes_key_enc) if acc.aes_key_enc else None
    token = changes.get("token") or current_token
    aes_key = changes["aes_key"] if "aes_key" in changes else current_aes
    mode = changes.get("mode") or acc.mode
    app_id = changes.get("app_id") or acc.app_id
    open_kfid = changes.get("open_kfid") or acc.open_kfid
    if acc.kind == "kf":
        mode = "safe"
    _check_fields(acc.kind, mode, app_id, token, aes_key, open_kfid)
    await _duplicate(session, acc.kind, app_id, open_kfid, acc.id)
    changed: list[str] = []
    for field, value in (("name", changes.get("name")), ("app_id", app_id), ("mode", mode),
                         ("open_kfid", open_kfid if acc.kind == "kf" else None), ("active", changes.get("active"))):
        if value is not None and getattr(acc, field) != value:
            setattr(acc, field, value)
            changed.append(field)
    if changes.get("secret"):
        acc.secret_enc = secrets.encrypt(settings, changes["secret"])
        changed.append("secret")
        # A new secret makes the cached token suspect.
        await session.execute(delete(WeChatToken).where(WeChatToken.account_id == acc.id))
    if token != current_token:
        acc.token_enc = secrets.encrypt(settings, token)
        changed.append("token")
    if aes_key != current_aes:
        acc.aes_key_enc = secrets.encrypt(settings, aes_key) if aes_key else None
        changed.append("aes_key")
    acc.updated_at = utcnow()
    await session.flush()
    # Which fields changed, never their values.
    audit(session, tenant_id=acc.tenant_id, actor_type="agent", actor_id=actor_id, action="wechat.account.update",
          target_type="wechat_account", target_id=acc.id, details={"changed": changed}, ip=ip)
    forget_accounts()
    return account_dict(settings, acc, domain)


async def delete_account(session: AsyncSession, account_id: int, *, actor_id: int | None, ip: str | None) -> None:
    acc = await _get(session, account_id, lock=True)
    audit(session, tenant_id=acc.tenant_id, actor_type="agent", actor_id=actor_id, action="wechat.account.delete",
          target_type="wechat_account", target_id=acc.id, details={"kind": acc.kind, "app_id": acc.app_id}, ip=ip)
    await session.delete(acc)
    await session.flush()
    forget_accounts()


# --- the access token when there is no Redis --------------------------------------------------


async def db_token(hub: Hub, account: AccountConfig) -> tuple[str, datetime] | None:
    async with hub.db.read(account.tenant_id) as session:
        stmt = select(WeChatToken).where(WeChatToken.account_id == account.id)
        row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None or row.token_enc is None or row.expires_at is None:
        return None
    return secrets.decrypt(hub.settings, row.token_enc), row.expires_at


async def db_token_lock(hub: Hub, account: AccountConfig, seconds: float) -> bool:
    """Take the refresh lease: one process fetches a token while the others wait for it."""
    now = utcnow()
    async with hub.db.session(account.tenant_id) as session:
        exists = (await session.execute(
            select(WeChatToken.account_id).where(WeChatToken.account_id == account.id))).first()
        if exists is None:
            try:
                async with session.begin_nested():
                    session.add(WeChatToken(account_id=account.id, tenant_id=account.tenant_id,
                                            lock_until=now + timedelta(seconds=seconds)))
                return True
            except IntegrityError:
                return False
        taken = await session.execute(
            update(WeChatToken)
            .where(WeChatToken.account_id == account.id,
                   or_(WeChatToken.lock_until.is_(None), WeChatToken.lock_until < now))
            .values(lock_until=now + timedelta(seconds=seconds))
            .execution_options(synchronize_session=False)
        )
        return bool(_rowcount(taken) == 1)


async def db_token_store(hub: Hub, account: AccountConfig, token: str | None, expires_at: datetime | None) -> None:
    """Store a fresh token (or None to forget it) and release the lease."""
    async with hub.db.session(account.tenant_id) as session:
        await session.execute(
            update(WeChatToken).where(WeChatToken.account_id == account.id).values(
                token_enc=secrets.encrypt(hub.settings, token) if token else None, expires_at=expires_at,
                lock_until=None,
            ).execution_options(synchronize_session=False)
        )


# --- reply window: 48 hours from the customer's last message, 5 replies in it ------------------


async def _last_inbound(session: AsyncSession, tenant_id: int, external_id: str) -> datetime | None:
    """When the customer last wrote: their newest stored message, or one still in the inbox (an
    answer sent right after the customer wrote must count the new window, not the old one).

    One statement, so one snapshot: as two, the inbox could be read after a drain moved the
    message out and the messages before it moved in, and the new message seen in neither."""
    stored = (
        select(func.max(Message.created_at))
        .join(Ticket, Ticket.id == Message.ticket_id)
        .join(CustomerIdentity, CustomerIdentity.id == Ticket.identity_id)
        .where(CustomerIdentity.tenant_id == tenant_id, CustomerIdentity.channel == CHANNEL,
               CustomerIdentity.external_id == external_id, Message.direction == Direction.INBOUND)
    ).scalar_subquery()
    waiting = (
        select(func.max(InboxItem.received_at))
        .where(InboxItem.tenant_id == tenant_id, InboxItem.channel == CHANNEL, InboxItem.external_id == external_id)
    ).scalar_subquery()
    row = (await session.execute(select(stored, waiting))).one()
    times = [_aware(v) for v in row if v is not None]
    return max(times) if times else None


def _aware(value: Any) -> datetime:
    if isinstance(value, str):  # SQLite's max() hands back text
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def reserve_reply(hub: Hub, account: AccountConfig, user_id: str, external_id: str) -> datetime:
    """Count one reply against the customer's window, or refuse it with a clear, final error.

    Returns the window's start, to hand back to :func:`release_reply` if the send fails.
    """
    for attempt in range(2):
        try:
            async with hub.db.session(account.tenant_id) as session:
                opened = await _last_inbound(session, account.tenant_id, external_id)
                if opened is None or utcnow() - opened > REPLY_WINDOW:
                    raise DeliveryError(
                        "the customer last wrote more than 48 hours ago; WeChat only accepts replies within"
                        " 48 hours of the customer's last message", retry=False, code="reply_window_closed")
                row = (await session.execute(
                    select(WeChatReplyWindow).where(WeChatReplyWindow.account_id == account.id,
                                                    WeChatReplyWindow.user_id == user_id).with_for_update()
                )).scalar_one_or_none()
                if row is None:
                    row = WeChatReplyWindow(account_id=account.id, user_id=user_id, tenant_id=account.tenant_id,
                                            opened_at=opened, sent=0)
                    session.add(row)
                elif row.opened_at != opened:
                    row.opened_at, row.sent = opened, 0
                if row.sent >= REPLIES_PER_WINDOW:
                    raise DeliveryError(
                        f"{REPLIES_PER_WINDOW} replies were already sent since the customer's last message;"
                        " WeChat accepts more only after the customer writes again", retry=False,
                        code="reply_quota_exceeded")
                row.sent += 1
                await session.flush()
                return opened
        except IntegrityError:
            if attempt == 1:
                raise
    raise AssertionError("unreachable")


async def release_reply(hub: Hub, account: AccountConfig, user_id: str, opened: datetime) -> None:
    """Give back a reply that did not go out."""
    async with hub.db.session(account.tenant_id) as session:
        await session.execute(
            update(WeChatReplyWindow)
            .where(WeChatReplyWindow.account_id == account.id, WeChatReplyWindow.user_id == user_id,
                   WeChatReplyWindow.opened_at == opened, WeChatReplyWindow.sent > 0)
            .values(sent=WeChatReplyWindow.sent - 1).execution_options(synchronize_session=False)
        )


async def exhaust_reply(hub: Hub, account: AccountConfig, user_id: str, opened: datetime) -> None:
    """The platform says the quota is used up (45047): believe it for the rest of this window."""
    async with hub.db.session(account.tenant_id) as session:
        await session.execute(
            update(WeChatReplyWindow)
            .where(WeChatReplyWindow.account_id == account.id, WeChatReplyWindow.user_id == user_id,
                   WeChatReplyWindow.opened_at == opened)
            .values(sent=REPLIES_PER_WINDOW).execution_options(synchronize_session=False)
        )


# --- media ------------------------------------------------------------------------------------


async def get_media(hub: Hub, tenant_id: int, account_id: int, media_id: str) -> tuple[str, bytes] | None:
    async with hub.db.read(tenant_id) as session:
        row = (await session.execute(
            select(WeChatMedia.content_type, WeChatMedia.data)
            .where(WeChatMedia.account_id == account_id, WeChatMedia.media_id == media_id)
        )).first()
    return (row.content_type, row.data) if row is not None else None


async def has_media(hub: Hub, tenant_id: int, account_id: int, media_id: str) -> bool:
    async with hub.db.read(tenant_id) as session:
        return (await session.execute(
            select(WeChatMedia.id).where(WeChatMedia.account_id == account_id, WeChatMedia.media_id == media_id)
        )).first() is not None


async def put_media(hub: Hub, account: AccountConfig, media_id: str, content_type: str, data: bytes) -> None:
    try:
        async with hub.db.session(account.tenant_id) as session:
            session.add(WeChatMedia(tenant_id=account.tenant_id, account_id=account.id, media_id=media_id,
                                    content_type=content_type[:100], size=len(data), data=data))
    except IntegrityError:
        pass  # another process stored it first: same bytes


async def account_by_key_for_tenant(hub: Hub, tenant_id: int, key: str) -> AccountConfig:
    account = await account_by_key(hub, tenant_id, key)
    if account is None:
        raise NotFound("no such WeChat account", code="account_not_found")
    return account


# --- WeCom kf: one puller at a time, and a cursor so each message is taken once ---------------


async def kf_begin_sync(hub: Hub, account: AccountConfig, lease_seconds: float = 60.0) -> tuple[bool, str | None]:
    """Take the pull lease. (False, None) when another process holds it: it is told to pull again."""
    now = utcnow()
    async with hub.db.session(account.tenant_id) as session:
        taken = await session.execute(
            update(WeChatAccount)
            .where(WeChatAccount.id == account.id,
                   or_(WeChatAccount.kf_sync_until.is_(None), WeChatAccount.kf_sync_until < now))
            .values(kf_sync_until=now + timedelta(seconds=lease_seconds), kf_sync_pending=False)
            .execution_options(synchronize_session=False)
        )
        if _rowcount(taken) != 1:
            await session.execute(
                update(WeChatAccount).where(WeChatAccount.id == account.id).values(kf_sync_pending=True)
                .execution_options(synchronize_session=False)
            )
            return False, None
        cursor = (await session.execute(
            select(WeChatAccount.kf_cursor).where(WeChatAccount.id == account.id))).scalar_one()
        return True, cursor


async def kf_save_cursor(hub: Hub, account: AccountConfig, cursor: str) -> None:
    async with hub.db.session(account.tenant_id) as session:
        await session.execute(
            update(WeChatAccount).where(WeChatAccount.id == account.id).values(kf_cursor=cursor)
            .execution_options(synchronize_session=False)
        )


async def kf_end_sync(hub: Hub, account: AccountConfig, lease_seconds: float = 60.0) -> bool:
    """Release the lease, unless a callback came in meanwhile: then keep it and return True (the
    caller pulls once more). One conditional UPDATE, so a late callback cannot be lost."""
    now = utcnow()
    async with hub.db.session(account.tenant_id) as session:
        released = await session.execute(
            update(WeChatAccount)
            .where(WeChatAccount.id == account.id, WeChatAccount.kf_sync_pending.is_(False))
            .values(kf_sync_until=None).execution_options(synchronize_session=False)
        )
        if _rowcount(released) == 1:
            return False
        await session.execute(
            update(WeChatAccount).where(WeChatAccount.id == account.id)
            .values(kf_sync_pending=False, kf_sync_until=now + timedelta(seconds=lease_seconds))
            .execution_options(synchronize_session=False)
        )
        return True


async def kf_release(hub: Hub, account: AccountConfig) -> None:
    """Give the lease up after a failed pull (the next callback, or the pending flag, resumes)."""
    async with hub.db.session(account.tenant_id) as session:
        await session.execute(
            update(WeChatAccount).where(WeChatAccount.id == account.id).values(kf_sync_until=None)
            .execution_options(synchronize_session=False)
        )


# --- our attachments uploaded as temporary media ------------------------------------------------


async def uploaded_media(hub: Hub, account: AccountConfig, attachment_id: int, media_type: str) -> str | None:
    """The media_id of an earlier upload of this attachment to this account, while the platform keeps it."""
    async with hub.db.read(account.tenant_id) as session:
        return (await session.execute(
            select(WeChatUpload.media_id).where(
                WeChatUpload.account_id == account.id, WeChatUpload.attachment_id == attachment_id,
                WeChatUpload.media_type == media_type, WeChatUpload.uploaded_at > utcnow() - UPLOAD_REUSE)
        )).scalar_one_or_none()


async def remember_upload(hub: Hub, account: AccountConfig, attachment_id: int, media_type: str, media_id: str,
                          uploaded_at: datetime) -> None:
    try:
        async with hub.db.session(account.tenant_id) as session:
            await session.execute(delete(WeChatUpload).where(WeChatUpload.account_id == account.id,
                                                             WeChatUpload.attachment_id == attachment_id))
            session.add(WeChatUpload(account_id=account.id, attachment_id=attachment_id, tenant_id=account.tenant_id,
                                     media_type=media_type, media_id=media_id, uploaded_at=uploaded_at))
    except IntegrityError:
        pass  # another delivery uploaded it at the same moment: its media_id is as good


async def forget_uploads(hub: Hub, account: AccountConfig, attachment_ids: list[int]) -> None:
    """The platform no longer knows these media ids (expired early): the next try uploads again."""
    async with hub.db.session(account.tenant_id) as session:
        await session.execute(delete(WeChatUpload).where(WeChatUpload.account_id == account.id,
                                                         WeChatUpload.attachment_id.in_(attachment_ids)))
