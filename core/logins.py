"""Sign-in, throttled: failures are counted per account (tenant and e-mail) and per address (tenant
and IP) over a window; past a limit the key is locked out for a while that doubles with each further
failure, and an attempt on a locked key is refused with 429 before any password is hashed. The
lockout is announced in the login log (outcome ``locked``), each refused attempt too (``throttled``).

The counts live in Redis when it is configured, else they are read from the login log itself, so
every process sees the same ones either way; while Redis is unreachable they are read from the log
too, so an outage neither fails sign-in nor lifts the throttle. They are kept by e-mail, not by agent, and an unknown
or disabled account is hashed against a dummy, so neither the answers nor their timing tell an
outsider whether an account exists. At most ``login_hash_concurrency`` argon2 checks run at once
in a process: a flood of sign-ins queues for them instead of taking every thread the event loop's
other work needs. A password change goes through here too: it checks the current password the same
way, and ends every other session of the agent.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import audit
from core.auth import DUMMY_HASH, Principal, hash_password, revoke_agent, token_digest, verify_password
from core.config import Settings
from core.errors import Forbidden, InvalidInput, TooManyRequests, Unauthorized
from core.models import Agent, AuthToken, LoginLog, utcnow

if TYPE_CHECKING:
    from core.db import Database

logger = logging.getLogger(__name__)

# The outcomes that count as failures; "throttled" (refused unchecked) and "locked" do not.
FAILED = ("bad_password", "unknown_user", "disabled")


@dataclass(frozen=True)
class Tally:
    """A key's failures in the window and when the last one was."""

    failures: int = 0
    last: datetime | None = None


@dataclass(frozen=True)
class Key:
    kind: str  # "account" or "address"
    tenant_id: int
    value: str  # the e-mail or the address


class TallyStore(Protocol):
    async def tally(self, session: AsyncSession, key: Key, since: datetime) -> Tally: ...

    async def failed(self, key: Key, at: datetime, window: float) -> None: ...

    async def reset(self, key: Key) -> None: ...

    async def close(self) -> None: ...


class LogTallies:
    """The counts read from the login log (no Redis): the rows are written anyway, by every process."""

    async def tally(self, session: AsyncSession, key: Key, since: datetime) -> Tally:
        column = LoginLog.email if key.kind == "account" else LoginLog.ip
        scope = (LoginLog.tenant_id == key.tenant_id, column == key.value)
        if key.kind == "account":  # a success starts the account's count again
            last_ok = (await session.execute(
                select(func.max(LoginLog.created_at)).where(*scope, LoginLog.outcome == "success",
                                                            LoginLog.created_at > since)
            )).scalar()
            since = max(since, last_ok) if last_ok is not None else since
        failures, last = (await session.execute(
            select(func.count(), func.max(LoginLog.created_at))
            .where(*scope, LoginLog.outcome.in_(FAILED), LoginLog.created_at > since)
        )).one()
        return Tally(int(failures), last)

    async def failed(self, key: Key, at: datetime, window: float) -> None:
        """Nothing to do: the failure's log row is the count."""

    async def reset(self, key: Key) -> None:
        """Nothing to do: the success's log row resets the count."""

    async def close(self) -> None:
        pass


class RedisTallies:
    """The counts in Redis: one hash per key (failures, last), expiring a window after the last failure."""

    def __init__(self, url: str, namespace: str) -> None:
        self.url, self.prefix = url, f"{namespace}:login"
        self._client: Any = None

    def _redis(self) -> Any:
        if self._client is None:
            import redis.asyncio as aioredis

            self._client = aioredis.from_url(self.url)
        return self._client

    def _name(self, key: Key) -> str:
        return f"{self.prefix}:{key.kind}:{key.tenant_id}:{token_digest(key.value)}"

    async def tally(self, session: AsyncSession, key: Key, since: datetime) -> Tally:
        failures, last = await self._redis().hmget(self._name(key), "n", "last")
        if failures is None:
            return Tally()
        return Tally(int(failures), datetime.fromisoformat(last.decode()) if last else None)

    async def failed(self, key: Key, at: datetime, window: float) -> None:
        name = self._name(key)
        async with self._redis().pipeline(transaction=True) as pipe:
            pipe.hincrby(name, "n", 1)
            pipe.hset(name, "last", at.isoformat())
            pipe.expire(name, max(1, int(window)))
            await pipe.execute()

    async def reset(self, key: Key) -> None:
        await self._redis().delete(self._name(key))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def issue_token(session: AsyncSession, tenant_id: int, agent_id: int, now: datetime, ttl: timedelta) -> str:
    """A new bearer token for the agent, stored as its digest; the token itself is returned once."""
    token = secrets.token_urlsafe(32)
    session.add(AuthToken(tenant_id=tenant_id, agent_id=agent_id, token_hash=token_digest(token),
                          created_at=now, expires_at=now + ttl))
    return token


class LoginGuard:
    """One per hub: signs agents in, throttled; ``clock`` decides lockouts (tests may move it)."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.clock = clock
        self.store: TallyStore = (RedisTallies(settings.redis_url, settings.queue_namespace)
                                  if settings.redis_url else LogTallies())
        self._fallback = LogTallies()
        self._hashing = asyncio.Semaphore(max(1, settings.login_hash_concurrency))

    def _limit(self, key: Key) -> int:
        s = self.settings
        return s.login_account_failures if key.kind == "account" else s.login_address_failures

    def locked_for(self, key: Key, tally: Tally, now: datetime) -> float:
        """Seconds the key stays locked out (0 when it is not): the base lockout at the limit,
        doubled for each failure past it, capped."""
        limit = self._limit(key)
        if tally.failures < limit or tally.last is None:
            return 0.0
        s = self.settings
        lockout = min(s.login_lockout_seconds * 2 ** min(tally.failures - limit, 32), s.login_lockout_max_seconds)
        return max(0.0, (tally.last - now).total_seconds() + float(lockout))

    async def _tally(self, session: AsyncSession, key: Key, since: datetime) -> Tally:
        try:
            return await self.store.tally(session, key, since)
        except Exception as exc:  # Redis is down: the login log holds the same failures
            logger.warning("sign-in counts unavailable (%s); counting from the login log", exc)
            return await self._fallback.tally(session, key, since)

    async def _quietly(self, step: Awaitable[None]) -> None:
        try:
            await step
        except Exception as exc:  # the log row is written anyway; _tally reads it while Redis is down
            logger.warning("could not record a sign-in count (%s)", exc)

    async def verify(self, password_hash: str, password: str) -> bool:
        # argon2 is deliberately slow (tens of milliseconds of CPU): off the event loop, and bounded.
        async with self._hashing:
            return await asyncio.to_thread(verify_password, password_hash, password)

    async def _locked(self, db: Database, keys: list[Key], now: datetime) -> tuple[float, list[Tally]]:
        """How long the longest lockout among ``keys`` lasts (0: none), and their tallies."""
        since = now - timedelta(seconds=self.settings.login_window_seconds)
        async with db.read(keys[0].tenant_id) as session:
            tallies = [await self._tally(session, key, since) for key in keys]
        return max(self.locked_for(key, tally, now) for key, tally in zip(keys, tallies, strict=True)), tallies

    async def sign_in(self, db: Database, tenant_id: int, email: str, password: str, *, ip: str | None,
                      user_agent: str | None, ttl: timedelta) -> tuple[str, Agent]:
        """Check the password and issue a token; every attempt is logged, whatever its outcome.
        Raises TooManyRequests for a locked-out account or address, Unauthorized for a failure."""
        email = email.strip().lower()[:320]
        keys = [Key("account", tenant_id, email)] + ([Key("address", tenant_id, ip)] if ip else [])
        agent: Agent | None = None

        def log(outcome: str, now: datetime) -> LoginLog:
            return LoginLog(tenant_id=tenant_id, agent_id=agent.id if agent else None, email=email, ip=ip,
                            user_agent=(user_agent or "")[:500] or None, outcome=outcome, created_at=now)

        async def refuse(wait: float, now: datetime) -> TooManyRequests:
            async with db.session(tenant_id) as session:
                session.add(log("throttled", now))
            return TooManyRequests("too many failed sign-ins; try again later", code="too_many_attempts",
                                   retry_after=wait)

        # A locked-out key is refused before it queues for a hashing slot...
        wait, _ = await self._locked(db, keys, self.clock())
        if wait:
            raise await refuse(wait, self.clock())
        # ... and checked again in the slot, where its failure is also recorded: however many
        # attempts arrive at once, at most login_hash_concurrency per process pass the limit.
        async with self._hashing:
            now = self.clock()
            wait, tallies = await self._locked(db, keys, now)
            if wait:
                raise await refuse(wait, now)
            async with db.read(tenant_id) as session:
                agent = (await session.execute(
                    select(Agent).where(Agent.tenant_id == tenant_id, Agent.email == email))).scalar_one_or_none()
            # One argon2 check whatever the account, so a miss takes as long as a wrong password;
            # off the event loop, and outside any write transaction (SQLite has one writer).
            usable = agent is not None and agent.active
            ok = await asyncio.to_thread(verify_password, agent.password_hash if agent is not None and usable
                                         else DUMMY_HASH, password)
            outcome = "success" if ok and usable else "bad_password" if usable else \
                "unknown_user" if agent is None else "disabled"
            if outcome != "success" or agent is None:
                locked = []
                for key, tally in zip(keys, tallies, strict=True):
                    await self._quietly(self.store.failed(key, now, self.settings.login_window_seconds))
                    if self.locked_for(key, Tally(tally.failures + 1, now), now):
                        locked.append(key.kind)
                async with db.session(tenant_id) as session:
                    session.add(log(outcome, now))
                    if locked:
                        session.add(log("locked", now))
                if locked:
                    logger.warning("sign-in locked out (%s) on tenant %s", ", ".join(locked), tenant_id)
                raise Unauthorized("wrong e-mail or password", code="bad_credentials")
        await self._quietly(self.store.reset(keys[0]))
        async with db.session(tenant_id) as session:
            session.add(log("success", now))
            token = issue_token(session, tenant_id, agent.id, now, ttl)
        return token, agent

    async def change_password(self, db: Database, p: Principal, current: str, new: str, *, ip: str | None,
                              ttl: timedelta) -> str:
        """Set the caller's password, revoke all their tokens (announce it after) and issue a new
        token for this client."""
        if len(new) < 8:
            raise InvalidInput("a password has at least 8 characters", code="weak_password")
        async with db.read(p.tenant_id) as session:
            old_hash = (await session.execute(select(Agent.password_hash).where(Agent.id == p.agent_id))).scalar_one()
        if not await self.verify(old_hash, current):
            raise Forbidden("the current password is wrong", code="wrong_password")
        async with self._hashing:
            new_hash = await asyncio.to_thread(hash_password, new)
        async with db.session(p.tenant_id) as session:
            agent = (await session.execute(select(Agent).where(Agent.id == p.agent_id))).scalar_one()
            agent.password_hash = new_hash
            await revoke_agent(session, p.tenant_id, p.agent_id)
            audit(session, tenant_id=p.tenant_id, actor_type="agent", actor_id=p.agent_id, action="agent.password",
                  target_type="agent", target_id=p.agent_id, details={}, ip=ip)
            return issue_token(session, p.tenant_id, p.agent_id, self.clock(), ttl)

    async def close(self) -> None:
        await self.store.close()
