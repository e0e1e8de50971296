"""Passwords (argon2id) and bearer tokens bound to one tenant; ending an agent's sessions.

Signing in is core.logins (throttled). A session ends when its token is revoked: by sign-out, by
"sign out everywhere", and for all the agent's tokens whenever the seat changes in a way that must
not leave old sessions running (deactivated, role or password changed). After the revocation
commits, :func:`announce_revoked` tells every process's gateway on the bus to close the sockets
opened with those tokens; a socket also re-checks its token every ``session_check_seconds``
(:func:`token_valid`), so a bus message that was missed cannot keep it alive.

HTTP requests take their principal from :class:`Principals`: a token read once is trusted for
:data:`TRUST_SECONDS` by that process, so a busy client's requests do not each read it again. A
revocation is forgotten at once in the process that made it and, on the others, as soon as its bus
message arrives (or the bus says it may have lost some); the bound covers a message lost with the
bus, as the sockets' re-check does for them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Unauthorized
from core.models import ROLE_RANK, Agent, AuthToken, Role, Tenant, TenantStatus, utcnow
from core.tasks import cancel_and_wait

if TYPE_CHECKING:
    from core.bus import Subscription
    from core.hub import Hub

logger = logging.getLogger(__name__)

_hasher = PasswordHasher()
# Verified against when the e-mail is unknown, so a miss takes as long as a wrong password.
DUMMY_HASH = _hasher.hash("channelhub-timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


async def hash_passwords(passwords: Sequence[str], *, concurrency: int = 2) -> list[str]:
    """Hash many passwords (a batch of seats) in threads, ``concurrency`` at a time, so the event
    loop and the database transaction that stores them do not wait on argon2."""
    gate = asyncio.Semaphore(concurrency)

    async def one(password: str) -> str:
        async with gate:
            return await asyncio.to_thread(hash_password, password)

    return list(await asyncio.gather(*(one(p) for p in passwords)))


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

    def at_least(self, role: Role) -> bool:
        """Whether the principal's role may do what ``role`` may (core.models.ROLE_RANK)."""
        return ROLE_RANK.get(self.role, -1) >= ROLE_RANK[role]

    @property
    def sees_all(self) -> bool:
        return self.at_least(Role.SUPERVISOR)

    @property
    def is_admin(self) -> bool:
        return self.at_least(Role.ADMIN)

    @property
    def is_owner(self) -> bool:
        return self.role == Role.OWNER


async def authenticate(session: AsyncSession, tenant_id: int, token: str | None) -> Principal:
    """The principal behind a token, which must belong to ``tenant_id`` (the request's domain)."""
    return (await _authenticated(session, tenant_id, token))[0]


async def _authenticated(session: AsyncSession, tenant_id: int, token: str | None) -> tuple[Principal, datetime]:
    """:func:`authenticate`, and until when the token runs."""
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
    return Principal(tenant_id=tenant_id, agent_id=row.id, role=row.role, name=row.name), row.expires_at


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


async def announce_revoked(hub: Hub, tenant_id: int, agent_id: int | None, token: str | None = None) -> None:
    """Tell every process to close the agent's sockets: those opened with ``token``, or all of them
    (no agent: every socket of the tenant re-checks, after a suspension). The revocation is
    committed already; if the bus is down the sockets' own re-check ends them."""
    digest = token_digest(token) if token is not None else None
    hub.principals.forget(tenant_id, agent_id, digest)
    message = {"agent_id": agent_id, "token": digest}
    try:
        await hub.bus.publish(sessions_topic(tenant_id), message)
    except Exception as exc:
        logger.warning("could not announce a revoked session on the bus (%s); sockets re-check on their own", exc)


async def standing(session: AsyncSession, sessions: Sequence[tuple[int, str, int, str]]) -> list[bool]:
    """For each (tenant, token digest, agent, role) of open sockets, whether its token still
    stands: not revoked nor expired, the agent active, the role the one the socket was opened
    with, the tenant not suspended nor ended. One query for all of them."""
    rows = {row[0]: row for row in await session.execute(
        select(AuthToken.token_hash, AuthToken.tenant_id, AuthToken.agent_id, Agent.active, Agent.role,
               AuthToken.expires_at, AuthToken.revoked_at, Tenant.status)
        .join(Agent, Agent.id == AuthToken.agent_id)
        .join(Tenant, Tenant.id == AuthToken.tenant_id)
        .where(AuthToken.token_hash.in_({digest for _, digest, _, _ in sessions})))}
    now = utcnow()
    out = []
    for tenant_id, digest, agent_id, role in sessions:
        row = rows.get(digest)
        out.append(row is not None and row[1] == tenant_id and row[2] == agent_id and bool(row[3])
                   and row[4] == role and row[5] > now and row[6] is None and row[7] == TenantStatus.ACTIVE)
    return out


async def token_valid(session: AsyncSession, tenant_id: int, digest: str, agent_id: int, role: str) -> bool:
    """Whether one socket's token still stands (:func:`standing`)."""
    return (await standing(session, [(tenant_id, digest, agent_id, role)]))[0]


# How long a process trusts a token it has read (see the module's doc).
TRUST_SECONDS = 2.0
MAX_TRUSTED = 10_000


class Principals:
    """The principals of the tokens this process read lately, by (tenant, token digest)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._trusted: dict[tuple[int, str], tuple[Principal, float]] = {}
        self._watching: dict[int, Subscription] = {}
        # Bumped by every revocation: a read that was under way meanwhile is not kept.
        self._generation = 0

    async def of(self, tenant_id: int, token: str | None) -> Principal:
        """The principal behind ``token`` on ``tenant_id`` (:func:`authenticate`)."""
        if not token:
            raise Unauthorized("sign in first: send 'Authorization: Bearer <token>'")
        key = (tenant_id, token_digest(token))
        hit = self._trusted.get(key)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        self._watch(tenant_id)
        generation = self._generation
        async with self.hub.db.read(tenant_id) as session:
            principal, expires_at = await _authenticated(session, tenant_id, token)
        if generation == self._generation:
            if len(self._trusted) >= MAX_TRUSTED:
                self._trusted.clear()
            trust = min(TRUST_SECONDS, (expires_at - utcnow()).total_seconds())
            self._trusted[key] = (principal, time.monotonic() + trust)
        return principal

    def forget(self, tenant_id: int, agent_id: int | None = None, digest: str | None = None) -> None:
        """Stop trusting the agent's tokens (``digest``: that one only; no agent: the tenant's)."""
        self._generation += 1
        for key, (principal, _) in list(self._trusted.items()):
            if key[0] == tenant_id and (agent_id is None or principal.agent_id == agent_id) \
                    and (digest is None or key[1] == digest):
                del self._trusted[key]

    def _watch(self, tenant_id: int) -> None:
        if tenant_id in self._watching:
            return

        def revoked(message: dict[str, Any]) -> None:
            agent_id = message.get("agent_id")
            token = message.get("token")
            self.forget(tenant_id, agent_id if isinstance(agent_id, int) else None,
                        token if isinstance(token, str) else None)

        async def maybe_missed(_since: datetime) -> None:
            self.forget(tenant_id)

        self._watching[tenant_id] = self.hub.bus.subscribe(sessions_topic(tenant_id), revoked,
                                                           catch_up=maybe_missed)


@dataclass(eq=False)
class WatchedSession:
    """An open socket's session, re-checked by :class:`SessionWatch`."""

    tenant_id: int
    digest: str
    agent_id: int
    role: str
    # Called (on the hub's loop) once the session no longer stands.
    ended: Callable[[], Awaitable[None]]


class SessionWatch:
    """The sessions of this process's open agent sockets, re-checked together: one query every
    ``session_check_seconds`` for all of them (a token revoked, expired, its agent deactivated or
    given another role), instead of one per socket. A revocation announced on the bus is checked
    at once by the socket it names; this catches what the bus lost."""

    CHUNK = 500  # digests per query

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._open: set[WatchedSession] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, watched: WatchedSession) -> None:
        self._open.add(watched)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="session watch")

    def remove(self, watched: WatchedSession) -> None:
        self._open.discard(watched)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.hub.settings.session_check_seconds)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("session check failed; trying again later")

    async def check(self) -> None:
        watched = list(self._open)
        for at in range(0, len(watched), self.CHUNK):
            chunk = watched[at:at + self.CHUNK]
            async with self.hub.db.read() as session:
                valid = await standing(session, [(w.tenant_id, w.digest, w.agent_id, w.role) for w in chunk])
            for w, ok in zip(chunk, valid, strict=True):
                if not ok and w in self._open:
                    self._open.discard(w)
                    await w.ended()
