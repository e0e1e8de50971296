"""Graceful degradation (#15): subsystems that may go offline while messaging goes on.

Billing, statistics and reports (:data:`SUBSYSTEMS`) can be switched off by the operator, and
switch themselves off when they keep failing: a circuit breaker per subsystem. Messaging, tickets,
routing and delivery never consult any of this (no lookup on the hot paths); only the subsystems'
own work and their routes do, through :meth:`Breakers.run` (or :meth:`Breakers.call`), and the
few writes that would charge a billed tenant through :meth:`Breakers.offline`.

The state is shared by every process: one row per subsystem (``subsystems``: the operator's
switch and the breaker) and a row per change (``subsystem_history``). A change is written in a
short transaction of its own (never in the failing job's, which is rolled back, and may be the
very thing that failed), then announced on the bus topic :data:`TOPIC`, so every process reloads
at once; each process otherwise reloads what it cached at most every ``breaker_refresh`` seconds,
which bounds a lost announcement.

The breaker:
- **closed**: jobs run. A job that raises (anything but a domain error, which is an answer, and
  overload or cancellation, which say nothing about the subsystem) counts a failure; a success
  resets the count. After ``breaker_failures`` failures in a row it **opens** for
  ``breaker_cooldown`` seconds.
- **open**: jobs are refused with :class:`SubsystemOffline` (503 ``subsystem_offline`` with
  Retry-After) until the cooldown is over. Then one job, in whatever process comes first (the
  claim is a locked write), is the trial: the breaker is **half-open** and refuses the others.
- The trial's success closes the breaker; its failure opens it again for twice the last cooldown,
  up to ``breaker_cooldown_max``. A trial that never reports (its process died) is given up after
  :data:`TRIAL_TIMEOUT` and the next job becomes the trial.
Counting is per subsystem across processes, in the database; a success resets the count only when
this process knows of failures (a few seconds stale at most), so "in a row" is approximate across
processes, which is all a breaker needs.

Time that decides (cooldowns, trials) comes from ``now=`` or the breakers' ``clock``; tests move it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy.exc
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import audit
from core.errors import Busy, DomainError, NotFound
from core.models import BreakerState, Subsystem, SubsystemChange, utcnow

if TYPE_CHECKING:
    from core.bus import Bus, Subscription
    from core.config import Settings
    from core.db import Database

logger = logging.getLogger(__name__)

# The subsystems that may go offline. Billing is wired (core.tenants.billing_round, the billing
# routes, seat changes of billed tenants); statistics and reports wire theirs the same way.
SUBSYSTEMS = ("billing", "statistics", "reports")
TOPIC = "subsystems"
# Changes each subsystem's cached status carries (for /healthz and the operator's list).
HISTORY_KEPT = 5
# A half-open trial that has not reported for this long is given up (its process died).
TRIAL_TIMEOUT = timedelta(minutes=5)
# What a refusal while switched off suggests as Retry-After (there is no known time).
OFF_RETRY_AFTER = 60.0
OFF = "off"

T = TypeVar("T")


@dataclass(frozen=True)
class Actor:
    """Who changed a subsystem: ``operator`` (with the account id) or ``auto`` (the breaker)."""

    type: str
    id: int | None = None


AUTO = Actor("auto")


@dataclass(frozen=True)
class Change:
    id: int
    at: datetime
    from_state: str
    to_state: str
    reason: str | None
    actor: Actor

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at.isoformat(), "from": self.from_state, "to": self.to_state,
                "reason": self.reason, "actor": self.actor.type, "operator_id": self.actor.id}


@dataclass(frozen=True)
class Status:
    """A subsystem as last read: the operator's switch, the breaker, its recent changes."""

    name: str
    enabled: bool = True
    state: str = BreakerState.CLOSED.value
    failures: int = 0
    opened_at: datetime | None = None
    next_trial_at: datetime | None = None
    cooldown: float = 0.0
    last_error: str | None = None
    last_failure_at: datetime | None = None
    switched_by: int | None = None
    switch_reason: str | None = None
    switched_at: datetime | None = None
    changed_at: datetime | None = None
    history: tuple[Change, ...] = field(default=())

    @property
    def effective(self) -> str:
        """``off`` when the operator switched it off, else the breaker's state."""
        return OFF if not self.enabled else self.state

    @property
    def online(self) -> bool:
        return self.effective == BreakerState.CLOSED

    def as_dict(self) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return t.isoformat() if t else None

        return {
            "name": self.name, "state": self.effective, "enabled": self.enabled, "breaker": self.state,
            "since": iso(self.changed_at), "failures": self.failures, "opened_at": iso(self.opened_at),
            "next_trial_at": iso(self.next_trial_at), "cooldown_seconds": self.cooldown,
            "last_error": self.last_error, "last_failure_at": iso(self.last_failure_at),
            "switch": {"by": self.switched_by, "reason": self.switch_reason, "at": iso(self.switched_at)},
            "history": [c.as_dict() for c in self.history],
        }


def _status(row: Subsystem | None, name: str, history: tuple[Change, ...] = ()) -> Status:
    if row is None:
        return Status(name, history=history)
    return Status(name, row.enabled, row.state, row.failures, row.opened_at, row.next_trial_at, row.cooldown,
                  row.last_error, row.last_failure_at, row.switched_by, row.switch_reason, row.switched_at,
                  row.changed_at, history)


def _change(row: SubsystemChange) -> Change:
    return Change(row.id, row.at, row.from_state, row.to_state, row.reason, Actor(row.actor_type, row.actor_id))


class SubsystemOffline(DomainError):
    """The subsystem is switched off or its breaker is open: nothing was done; try again after
    Retry-After (503 ``subsystem_offline``)."""

    status = 503
    code = "subsystem_offline"

    def __init__(self, status: Status, now: datetime) -> None:
        state = status.effective
        if state == OFF:
            why = "switched off by the operator"
            retry: float = OFF_RETRY_AFTER
        elif state == BreakerState.OPEN:
            why = "failing, and switched off until it is tried again"
            retry = max(1.0, (status.next_trial_at - now).total_seconds()) if status.next_trial_at else 1.0
        else:
            why = "being tried again"
            retry = 5.0
        super().__init__(f"{status.name} is offline ({why}); messaging is not affected", details={
            "subsystem": status.name, "state": state,
            "next_trial_at": status.next_trial_at.isoformat() if status.next_trial_at and state != OFF else None})
        self.retry_after = retry


def known(name: str) -> str:
    if name not in SUBSYSTEMS:
        raise NotFound(f"no subsystem named {name[:40]!r}: there are {', '.join(SUBSYSTEMS)}",
                       code="subsystem_not_found")
    return name


def _counts(exc: BaseException) -> bool:
    """Whether a job's exception is a failure of the subsystem. A domain error is an answer (bad
    input, not found, insufficient balance); overload (busy, no free connection) and cancellation
    say nothing about the subsystem."""
    if isinstance(exc, DomainError | sqlalchemy.exc.TimeoutError | asyncio.CancelledError):
        return False
    return isinstance(exc, Exception)


def _neutral(exc: BaseException) -> bool:
    return isinstance(exc, Busy | sqlalchemy.exc.TimeoutError | asyncio.CancelledError) or not isinstance(
        exc, Exception)


class Breakers:
    """The subsystems' switches and breakers as this process sees them (``hub.breakers``)."""

    def __init__(self, db: Database, bus: Bus, settings: Settings,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db, self.bus = db, bus
        self.failures = max(1, settings.breaker_failures)
        self.cooldown = max(0.0, settings.breaker_cooldown)
        self.cooldown_max = max(self.cooldown, settings.breaker_cooldown_max)
        self.refresh = settings.breaker_refresh
        self.clock = clock
        self._cache: dict[str, Status] = {n: Status(n) for n in SUBSYSTEMS}
        self._loaded_at: float | None = None  # monotonic; None: reload at the next look
        self._loading = asyncio.Lock()
        self._subscription: Subscription | None = None
        self._reloads: set[asyncio.Task[None]] = set()
        # Set when a subsystem comes back (closed and switched on): what waits to catch up wakes.
        self._back: dict[str, asyncio.Event] = {}

    # --- what every process knows -------------------------------------------------------------
    def watch(self) -> None:
        """Reload at once when another process announces a change (or the bus may have lost one)."""
        if self._subscription is not None:
            return

        def changed(_message: dict[str, Any]) -> None:
            self._loaded_at = None
            task = asyncio.get_running_loop().create_task(self._reload_quietly())
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)

        async def maybe_missed(_since: object) -> None:
            self._loaded_at = None

        self._subscription = self.bus.subscribe(TOPIC, changed, catch_up=maybe_missed)

    def close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    async def _reload_quietly(self) -> None:
        with contextlib.suppress(Exception):
            await self.statuses()

    async def statuses(self, *, fresh: bool = False) -> dict[str, Status]:
        """Every subsystem's status from this process's cache, reloaded when older than
        ``breaker_refresh`` seconds or told so; when the database cannot be read, the last known
        (liveness and /healthz must not depend on it)."""
        if fresh or self._stale():
            async with self._loading:
                if fresh or self._stale():
                    try:
                        await self._load()
                    except Exception as exc:
                        logger.warning("subsystems: could not reload their state (%s); using the last known",
                                       type(exc).__name__)
        return dict(self._cache)

    async def for_health(self, timeout: float = 1.0) -> dict[str, Status]:
        """:meth:`statuses` for liveness checks: never waits more than ``timeout`` for the database
        (the reload goes on in the background; the answer is then the last known)."""
        try:
            return await asyncio.wait_for(asyncio.shield(self.statuses()), timeout)
        except TimeoutError:
            return self.cached()

    def cached(self) -> dict[str, Status]:
        """What this process knows now, without reading anything."""
        return dict(self._cache)

    async def status(self, name: str, *, fresh: bool = False) -> Status:
        return (await self.statuses(fresh=fresh))[known(name)]

    def _stale(self) -> bool:
        return self._loaded_at is None or time.monotonic() - self._loaded_at >= self.refresh

    async def _load(self) -> None:
        ranked = select(SubsystemChange, func.row_number().over(
            partition_by=SubsystemChange.subsystem, order_by=SubsystemChange.id.desc()).label("n")).subquery()
        async with self.db.read() as session:
            rows = {r.name: r for r in (await session.execute(select(Subsystem))).scalars()}
            recent = (await session.execute(
                select(ranked).where(ranked.c.n <= HISTORY_KEPT).order_by(ranked.c.id.desc()))).all()
        history: dict[str, list[Change]] = {}
        for r in recent:
            history.setdefault(r.subsystem, []).append(Change(r.id, r.at, r.from_state, r.to_state, r.reason,
                                                              Actor(r.actor_type, r.actor_id)))
        before = self._cache
        self._cache = {n: _status(rows.get(n), n, tuple(history.get(n, ()))) for n in SUBSYSTEMS}
        self._loaded_at = time.monotonic()
        for name, status in self._cache.items():
            if status.online and not before[name].online:
                self.back(name).set()

    def back(self, name: str) -> asyncio.Event:
        """Set when ``name`` is seen coming back online in this process (cleared by whoever waits)."""
        event = self._back.get(name)
        if event is None:
            event = self._back[name] = asyncio.Event()
        return event

    # --- guarding a subsystem's work ----------------------------------------------------------
    async def offline(self, name: str) -> SubsystemOffline | None:
        """The refusal to raise if ``name`` is not online now, else None; reads and writes
        nothing but the cache. For work that cannot run through :meth:`run` (it happens inside
        another transaction: a seat charged as agents are added)."""
        status = await self.status(name)
        return None if status.online else SubsystemOffline(status, self.clock())

    async def require(self, name: str) -> None:
        refusal = await self.offline(name)
        if refusal is not None:
            raise refusal

    @contextlib.asynccontextmanager
    async def run(self, name: str, *, now: datetime | None = None) -> AsyncIterator[None]:
        """Run the block as ``name``'s work: refused (:class:`SubsystemOffline`) while it is off or
        open; its failure counted, its success reported (module doc). Open no transaction around
        this: the breaker writes in transactions of its own."""
        now = now or self.clock()
        trial = await self._admit(known(name), now)
        try:
            yield
        except BaseException as exc:
            if _counts(exc):
                await self._report(name, now, trial, exc)
            elif trial and _neutral(exc):
                await self._give_back_trial(name, now)
            elif trial:  # a domain error: the subsystem answered
                await self._report(name, now, trial, None)
            raise
        await self._report(name, now, trial, None)

    async def call(self, name: str, job: Callable[[], Awaitable[T]], *, now: datetime | None = None) -> T:
        async with self.run(name, now=now):
            return await job()

    async def _admit(self, name: str, now: datetime) -> bool:
        """Whether the job may run, and whether it is the trial (raises when it may not)."""
        status = await self.status(name)
        if not status.enabled:
            raise SubsystemOffline(status, now)
        if status.state == BreakerState.CLOSED:
            return False
        if status.state == BreakerState.OPEN and status.next_trial_at is not None and now < status.next_trial_at:
            raise SubsystemOffline(status, now)
        if await self._claim_trial(name, now):
            return True
        raise SubsystemOffline(await self.status(name), now)

    # --- the writes -------------------------------------------------------------------------------
    async def _row(self, session: AsyncSession, name: str) -> Subsystem:
        """The subsystem's row, locked for the transaction (made when it is missing)."""
        stmt = select(Subsystem).where(Subsystem.name == name).with_for_update().execution_options(
            populate_existing=True)
        row = (await session.execute(stmt)).scalar_one_or_none()
        if row is not None:
            return row
        try:
            async with session.begin_nested():
                session.add(Subsystem(name=name, enabled=True, state=BreakerState.CLOSED.value, failures=0,
                                      cooldown=0.0))
        except IntegrityError:  # made by another process meanwhile
            pass
        return (await session.execute(stmt)).scalar_one()

    def _record(self, session: AsyncSession, row: Subsystem, before: str, now: datetime, reason: str | None,
                actor: Actor) -> None:
        row.changed_at = now
        session.add(SubsystemChange(subsystem=row.name, at=now, from_state=before, to_state=_effective(row),
                                    reason=reason[:500] if reason else None, actor_type=actor.type,
                                    actor_id=actor.id))

    async def _announce(self, name: str) -> None:
        """After a change committed: this process reloads now, the others when the bus tells them."""
        await self.statuses(fresh=True)
        await self.bus.publish(TOPIC, {"subsystem": name})

    async def _claim_trial(self, name: str, now: datetime) -> bool:
        async with self.db.session() as session:
            row = await self._row(session, name)
            due = (row.enabled and row.state == BreakerState.OPEN
                   and (row.next_trial_at is None or row.next_trial_at <= now))
            stuck = (row.enabled and row.state == BreakerState.HALF_OPEN
                     and (row.trial_started_at is None or row.trial_started_at + TRIAL_TIMEOUT <= now))
            if not (due or stuck):
                claimed = False
            else:
                before = _effective(row)
                row.state, row.trial_started_at = BreakerState.HALF_OPEN.value, now
                self._record(session, row, before, now, "the cooldown is over: one trial runs"
                             if due else "the last trial never reported: another one runs", AUTO)
                claimed = True
        if claimed:
            logger.warning("subsystem %s: half-open, a trial runs", name)
            await self._announce(name)
        else:
            await self.statuses(fresh=True)  # another process changed it: refuse with what it is now
        return claimed

    async def _give_back_trial(self, name: str, now: datetime) -> None:
        """The trial neither failed nor succeeded (cancelled, overload): open again, due at once."""
        async with self.db.session() as session:
            row = await self._row(session, name)
            if row.state != BreakerState.HALF_OPEN:
                return
            row.state, row.next_trial_at, row.trial_started_at = BreakerState.OPEN.value, now, None
            self._record(session, row, BreakerState.HALF_OPEN.value, now, "the trial did not finish", AUTO)
        await self._announce(name)

    async def _report(self, name: str, now: datetime, trial: bool, exc: BaseException | None) -> None:
        if exc is None and not trial:
            cached = self._cache[name]
            if cached.state == BreakerState.CLOSED and cached.failures == 0:
                return  # the usual case: nothing to write
        try:
            changed = await (self._failed(name, now, exc) if exc is not None else self._succeeded(name, now))
        except Exception:
            # The breaker's own table failing must not hide the job's answer or error.
            logger.exception("subsystem %s: could not record the outcome of a job", name)
            return
        if changed:
            await self._announce(name)
        else:
            self._loaded_at = None  # the count changed: reload at the next look

    async def _failed(self, name: str, now: datetime, exc: BaseException) -> bool:
        error = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:500]
        async with self.db.session() as session:
            row = await self._row(session, name)
            before = _effective(row)
            row.failures += 1
            row.last_error, row.last_failure_at = error, now
            reason = None
            if row.enabled and row.state == BreakerState.HALF_OPEN:
                cooldown = min(max(row.cooldown, self.cooldown) * 2, self.cooldown_max)
                reason = f"the trial failed ({error}); open for {cooldown:g} s"
            elif row.enabled and row.state == BreakerState.CLOSED and row.failures >= self.failures:
                cooldown = self.cooldown
                reason = f"{row.failures} failures in a row ({error}); open for {cooldown:g} s"
            if reason is None:
                return False
            row.state, row.cooldown, row.opened_at = BreakerState.OPEN.value, cooldown, now
            row.next_trial_at, row.trial_started_at = now + timedelta(seconds=cooldown), None
            self._record(session, row, before, now, reason, AUTO)
        logger.error("subsystem %s: %s", name, reason)
        return True

    async def _succeeded(self, name: str, now: datetime) -> bool:
        async with self.db.session() as session:
            row = await self._row(session, name)
            if row.state == BreakerState.HALF_OPEN:
                before = _effective(row)
                _close(row)
                self._record(session, row, before, now, "the trial succeeded", AUTO)
                changed = True
            else:
                # Closed: the failures so far were not in a row. Open: a job let in before it
                # opened; the trial decides, not this.
                if row.state == BreakerState.CLOSED:
                    row.failures = 0
                changed = False
        if changed:
            logger.warning("subsystem %s: closed again (the trial succeeded)", name)
        return changed

    async def switch(self, name: str, *, enabled: bool, reason: str, actor: Actor, ip: str | None = None,
                     now: datetime | None = None) -> Status:
        """The operator switches ``name`` on or off (audited in the operator's trail). Switching
        on also closes the breaker: the operator says it works again, and if it does not, the
        breaker opens again after its failures. The same switch again changes nothing."""
        known(name)
        now = now or self.clock()
        async with self.db.session() as session:
            row = await self._row(session, name)
            before = _effective(row)
            if row.enabled != enabled:
                row.enabled = enabled
                row.switched_by, row.switch_reason, row.switched_at = actor.id, reason[:500], now
                if enabled:
                    _close(row)
                self._record(session, row, before, now, reason, actor)
                audit(session, tenant_id=None, actor_type=actor.type, actor_id=actor.id,
                      action="subsystem.switch_on" if enabled else "subsystem.switch_off", target_type="subsystem",
                      target_id=name, details={"before": before, "after": _effective(row), "reason": reason}, ip=ip)
                logger.warning("subsystem %s switched %s by operator %s: %s", name, "on" if enabled else "off",
                               actor.id, reason)
        await self._announce(name)
        return await self.status(name)

    async def history(self, name: str, *, before_id: int | None = None, limit: int = 100) -> list[Change]:
        """``name``'s changes, newest first (``before_id``: older than that one)."""
        known(name)
        stmt = select(SubsystemChange).where(SubsystemChange.subsystem == name)
        if before_id is not None:
            stmt = stmt.where(SubsystemChange.id < before_id)
        async with self.db.read() as session:
            rows = (await session.execute(stmt.order_by(SubsystemChange.id.desc()).limit(limit))).scalars()
            return [_change(r) for r in rows]


def _effective(row: Subsystem) -> str:
    return OFF if not row.enabled else row.state


def _close(row: Subsystem) -> None:
    row.state, row.failures, row.cooldown = BreakerState.CLOSED.value, 0, 0.0
    row.opened_at = row.next_trial_at = row.trial_started_at = None
