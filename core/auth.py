"""Passwords (argon2id) and bearer tokens bound to one tenant; ending an agent's sessions.

Signing in is core.logins (throttled). A session ends when its token is revoked: by sign-out, by
"sign out everywhere", and for all the agent's tokens whenever the seat changes in a way that must
not leave old sessions running (deactivated, role or password changed). After the revocation
commits, :func:`announce_revoked` tells every process's gateway on the bus to close the sockets
opened with those tokens; a socket also re-checks its token every ``session_check_seconds``
(:func:`token_valid`), so a bus message that was missed cannot keep it alive.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Unauthorized
from core.models import Agent, AuthToken, Role, utcnow

if TYPE_CHECKING:
    from core.hub import Hub

logger = logging.getLogger(__name__)

_hasher = PasswordHasher()
# Verified against when the e-mail is unknown, so a miss takes as long as a wrong password.
DUMMY_HASH = _hasher.hash("channelhub-timing-equaliser")


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


async def revoke_agent(session: AsyncSession, tenant_id: int, agent_id: int) -> None:
    """Revoke every token of the agent (announce it with :func:`announce_revoked` after commit)."""
    await session.execute(
        update(AuthToken)
        .where(AuthToken.tenant_id == tenant_id, AuthToken.agent_id == agent_id, AuthToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def sessions_topic(tenant_id: int) -> str:
    """Where revocations are announced: every gateway in every process listens."""
    return f"sessions:{tenant_id}"


async def announce_revoked(hub: Hub, tenant_id: int, agent_id: int, token: str | None = None) -> None:
    """Tell every process to close the agent's sockets: those opened with ``token``, or all of them.
    The revocation is committed already; if the bus is down the sockets' own re-check ends them."""
    message = {"agent_id": agent_id, "token": token_digest(token) if token is not None else None}
    try:
        await hub.bus.publish(sessions_topic(tenant_id), message)
    except Exception as exc:
        logger.warning("could not announce a revoked session on the bus (%s); sockets re-check on their own", exc)


async def token_valid(session: AsyncSession, tenant_id: int, digest: str, agent_id: int, role: str) -> bool:
    """Whether a socket's token still stands: not revoked nor expired, the agent active, the role
    the one the socket was opened with."""
    row = (
        await session.execute(
            select(Agent.active, Agent.role, AuthToken.expires_at, AuthToken.revoked_at)
            .join(Agent, Agent.id == AuthToken.agent_id)
            .where(AuthToken.token_hash == digest, AuthToken.tenant_id == tenant_id, AuthToken.agent_id == agent_id)
        )
    ).one_or_none()
    return (row is not None and row.revoked_at is None and row.expires_at > utcnow() and row.active
            and row.role == role)
