"""The operator's staff: accounts with the roles owner, billing and support, signing in on the
operator host only, with tokens of their own (never valid on a tenant's domain, nor a tenant's
token here).

Sign-in failures are audited (``operator.login_failed``) and counted from the audit trail, so every
process sees the same count: past :data:`MAX_FAILURES` for an e-mail within :data:`WINDOW`, further
attempts are refused with 429 before any password is checked. An unknown e-mail is checked against
a dummy hash, so neither the answer nor its timing tells whether an account exists.

Every change an operator makes is audited with the account, the address and what changed
(core.tenants.operator_audit); the first owner is made with ``channelhub operator create``.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import audit
from core.auth import DUMMY_HASH, hash_password, token_digest, verify_password
from core.billing import Actor
from core.errors import Conflict, Forbidden, InvalidInput, NotFound, TooManyRequests, Unauthorized
from core.models import AuditLog, OperatorAccount, OperatorRole, OperatorToken, utcnow

if TYPE_CHECKING:
    from core.db import Database

TOKEN_TTL = timedelta(hours=12)
MAX_FAILURES = 5
WINDOW = timedelta(minutes=15)
ROLES = tuple(r.value for r in OperatorRole)


@dataclass(frozen=True)
class Operator:
    """The signed-in member of the operator's staff a request acts for."""

    id: int
    email: str
    role: str

    @property
    def actor(self) -> Actor:
        return Actor("operator", self.id)

    def require(self, *roles: str) -> None:
        """Refuse (403 ``operator_role``) unless the account has one of ``roles`` (the owner always has)."""
        if self.role != OperatorRole.OWNER and self.role not in roles:
            allowed = ", ".join(dict.fromkeys([OperatorRole.OWNER.value, *roles]))
            raise Forbidden(f"this needs the operator role {allowed}", code="operator_role")


def account_dict(account: OperatorAccount) -> dict[str, Any]:
    return {"id": account.id, "email": account.email, "name": account.name, "role": account.role,
            "active": account.active, "created_at": account.created_at.isoformat()}


def _email(raw: str) -> str:
    email = raw.strip().lower()
    if "@" not in email or len(email) > 320:
        raise InvalidInput(f"{raw!r} is not an e-mail address", code="invalid_email")
    return email


def _role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"unknown operator role {role!r}: one of {', '.join(ROLES)}", code="invalid_role")
    return role


async def create_account(session: AsyncSession, *, email: str, name: str, password: str, role: str,
                         actor: Actor, ip: str | None = None, password_hash: str | None = None) -> OperatorAccount:
    email = _email(email)
    role = _role(role)
    if len(password) < 12:
        raise InvalidInput("an operator's password has at least 12 characters", code="weak_password")
    if not name.strip():
        raise InvalidInput("an account needs a name", code="invalid_name")
    if (await session.execute(select(OperatorAccount.id).where(OperatorAccount.email == email))).first():
        raise Conflict(f"an operator account {email} exists", code="account_exists")
    account = OperatorAccount(email=email, name=name.strip(), role=role, active=True,
                              password_hash=password_hash or await asyncio.to_thread(hash_password, password))
    session.add(account)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"an operator account {email} exists", code="account_exists") from None
    audit(session, tenant_id=None, actor_type=actor.type, actor_id=actor.id, action="operator.account.create",
          target_type="operator_account", target_id=account.id, details={"email": email, "role": role}, ip=ip)
    return account


async def update_account(session: AsyncSession, account_id: int, changes: dict[str, Any], *, by: Operator,
                         ip: str | None) -> OperatorAccount:
    """Change an account's name, role or whether it is active. The last active owner stays one."""
    account = (await session.execute(select(OperatorAccount).where(OperatorAccount.id == account_id)
                                     .with_for_update())).scalar_one_or_none()
    if account is None:
        raise NotFound(f"operator account {account_id} not found", code="account_not_found")
    before = account_dict(account)
    if changes.get("role") is not None:
        account.role = _role(changes["role"])
    if changes.get("name") is not None:
        account.name = changes["name"].strip() or account.name
    if changes.get("active") is not None:
        account.active = bool(changes["active"])
    await session.flush()
    owners = (await session.execute(select(func.count()).select_from(OperatorAccount).where(
        OperatorAccount.role == OperatorRole.OWNER, OperatorAccount.active.is_(True)))).scalar_one()
    if not owners:
        raise Conflict("the operator keeps at least one active owner", code="last_owner")
    if not account.active or account.role != before["role"]:
        await _revoke_all(session, account.id)
    after = account_dict(account)
    audit(session, tenant_id=None, actor_type="operator", actor_id=by.id, action="operator.account.update",
          target_type="operator_account", target_id=account.id,
          details={"before": {k: before[k] for k in ("name", "role", "active")},
                   "after": {k: after[k] for k in ("name", "role", "active")}}, ip=ip)
    return account


async def accounts(session: AsyncSession) -> list[dict[str, Any]]:
    rows = (await session.execute(select(OperatorAccount).order_by(OperatorAccount.id))).scalars()
    return [account_dict(a) for a in rows]


async def _failures(session: AsyncSession, email: str, now: datetime) -> int:
    stmt = select(func.count()).select_from(AuditLog).where(
        AuditLog.tenant_id.is_(None), AuditLog.action == "operator.login_failed",
        AuditLog.target_id == email[:80], AuditLog.created_at > now - WINDOW)
    return int((await session.execute(stmt)).scalar_one())


async def login(db: Database, email: str, password: str, *, ip: str | None) -> tuple[str, OperatorAccount]:
    """A new token for the account, or 401 (429 after too many failures). A failure is recorded in
    a transaction of its own, so the refusal does not roll it back."""
    now = utcnow()
    email = email.strip().lower()
    async with db.read() as session:
        if await _failures(session, email, now) >= MAX_FAILURES:
            raise TooManyRequests("too many failed sign-ins for this account; try again later",
                                  retry_after=WINDOW.total_seconds(), code="login_throttled")
        account = (await session.execute(select(OperatorAccount).where(OperatorAccount.email == email))
                   ).scalar_one_or_none()
    stored = account.password_hash if account is not None else DUMMY_HASH
    ok = await asyncio.to_thread(verify_password, stored, password)
    if account is None or not ok or not account.active:
        async with db.session() as session:
            audit(session, tenant_id=None, actor_type="anonymous", actor_id=None, action="operator.login_failed",
                  target_type="operator_account", target_id=email[:80], ip=ip,
                  details={"reason": "disabled" if account is not None and ok else "bad_credentials"})
        raise Unauthorized("wrong e-mail or password", code="invalid_credentials")
    token = secrets.token_urlsafe(32)
    async with db.session() as session:
        session.add(OperatorToken(account_id=account.id, token_hash=token_digest(token), created_at=now,
                                  expires_at=now + TOKEN_TTL))
        audit(session, tenant_id=None, actor_type="operator", actor_id=account.id, action="operator.login",
              target_type="operator_account", target_id=account.id, ip=ip)
    return token, account


async def authenticate(session: AsyncSession, token: str | None) -> Operator:
    if not token:
        raise Unauthorized("sign in first: send 'Authorization: Bearer <token>'")
    row = (await session.execute(
        select(OperatorAccount.id, OperatorAccount.email, OperatorAccount.role, OperatorAccount.active,
               OperatorToken.expires_at, OperatorToken.revoked_at)
        .join(OperatorAccount, OperatorAccount.id == OperatorToken.account_id)
        .where(OperatorToken.token_hash == token_digest(token))
    )).one_or_none()
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow() or not row.active:
        raise Unauthorized("the token is not valid on the operator host", code="invalid_token")
    return Operator(row.id, row.email, row.role)


async def logout(session: AsyncSession, token: str, *, by: Operator | None = None, ip: str | None = None) -> None:
    await session.execute(update(OperatorToken).where(OperatorToken.token_hash == token_digest(token))
                          .values(revoked_at=utcnow()))
    if by is not None:
        audit(session, tenant_id=None, actor_type="operator", actor_id=by.id, action="operator.logout",
              target_type="operator_account", target_id=by.id, ip=ip)


async def _revoke_all(session: AsyncSession, account_id: int) -> None:
    await session.execute(update(OperatorToken).where(OperatorToken.account_id == account_id,
                                                      OperatorToken.revoked_at.is_(None))
                          .values(revoked_at=utcnow()).execution_options(synchronize_session=False))


async def trail(session: AsyncSession, *, tenant_id: int | None, after: int, limit: int) -> list[dict[str, Any]]:
    """The operator's audit trail (what the operator's staff did, and sign-in failures), newest
    last, from id ``after``; ``tenant_id``: the actions on that tenant only."""
    stmt = select(AuditLog).where(AuditLog.tenant_id.is_(None), AuditLog.id > after)
    if tenant_id is not None:
        stmt = stmt.where(AuditLog.target_type == "tenant", AuditLog.target_id == str(tenant_id))
    rows = (await session.execute(stmt.order_by(AuditLog.id).limit(limit))).scalars()
    return [{"id": r.id, "at": r.created_at.isoformat(), "actor_type": r.actor_type, "actor_id": r.actor_id,
             "action": r.action, "target_type": r.target_type, "target_id": r.target_id, "details": r.details,
             "ip": r.ip} for r in rows]
