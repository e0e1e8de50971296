"""Passwords (argon2id) and bearer tokens bound to one tenant."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Unauthorized
from core.models import Agent, AuthToken, LoginLog, Role, utcnow

_hasher = PasswordHasher()
# Verified against when the e-mail is unknown, so a miss takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash("channelhub-timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """The signed-in agent a request or websocket acts for."""

    tenant_id: int
    agent_id: int
    role: str
    name: str

    @property
    def sees_all(self) -> bool:
        return self.role in (Role.ADMIN, Role.SUPERVISOR)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


async def login(
    session: AsyncSession, tenant_id: int, email: str, password: str, *, ip: str | None,
    user_agent: str | None, ttl: timedelta,
) -> tuple[str, Agent]:
    """Check the password, record the attempt (whatever its outcome) and issue a token."""
    email = email.strip().lower()
    agent = (
        await session.execute(select(Agent).where(Agent.tenant_id == tenant_id, Agent.email == email))
    ).scalar_one_or_none()
    # argon2 is deliberately slow (tens of milliseconds of CPU): off the event loop.
    if agent is None:
        await asyncio.to_thread(verify_password, _DUMMY_HASH, password)
        outcome = "unknown_user"
    elif not agent.active:
        outcome = "disabled"
    elif not await asyncio.to_thread(verify_password, agent.password_hash, password):
        outcome = "bad_password"
    else:
        outcome = "success"
    session.add(LoginLog(tenant_id=tenant_id, agent_id=agent.id if agent else None, email=email[:320],
                         ip=ip, user_agent=(user_agent or "")[:500] or None, outcome=outcome))
    if outcome != "success" or agent is None:
        await session.flush()
        raise Unauthorized("wrong e-mail or password", code="bad_credentials")
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(AuthToken(tenant_id=tenant_id, agent_id=agent.id, token_hash=token_digest(token),
                          created_at=now, expires_at=now + ttl))
    return token, agent


async def authenticate(session: AsyncSession, tenant_id: int, token: str | None) -> Principal:
    """The principal behind a token, which must belong to ``tenant_id`` (the request's domain)."""
    if not token:
        raise Unauthorized("sign in first: send 'Authorization: Bearer <token>'")
    row = (
        await session.execute(
            select(Agent.id, Agent.role, Agent.name, Agent.active, AuthToken.expires_at, AuthToken.revoked_at)
            .join(Agent, Agent.id == AuthToken.agent_id)
            .where(AuthToken.token_hash == token_digest(token), AuthToken.tenant_id == tenant_id)
        )
    ).one_or_none()
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow() or not row.active:
        raise Unauthorized("the token is not valid on this domain", code="invalid_token")
    return Principal(tenant_id=tenant_id, agent_id=row.id, role=row.role, name=row.name)


async def revoke(session: AsyncSession, tenant_id: int, token: str) -> None:
    await session.execute(
        update(AuthToken)
        .where(AuthToken.token_hash == token_digest(token), AuthToken.tenant_id == tenant_id)
        .values(revoked_at=utcnow())
    )
