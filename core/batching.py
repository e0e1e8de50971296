"""Group commit: many callers' writes made in one transaction, and refused when it cannot keep up.

A transaction costs about as much as several small writes (the commit, a round trip or two, the
session), so a thousand writes a second made one transaction each spend most of their time on
the transactions. :class:`GroupCommit` lets every caller :meth:`~GroupCommit.submit` one item and
await its own result, while one task per process writes everything that queued while the
previous batch was in flight as one batch: under light load a batch is one item and costs what it
did before, under heavy load batches grow and the cost per item falls.

- **One failure stays one.** ``run`` returns a result or an exception per item. When it raises
  for the batch as a whole (a constraint, a driver error), each item is run again on its own, so
  the item at fault fails and the others are written.
- **Load shedding.** Past saturation a queue only adds latency: once ``max_waiting`` items wait,
  the oldest has waited ``busy_after`` seconds, or the queue would take longer than that to
  write at the rate the last batches were written, :meth:`~GroupCommit.submit` raises
  :class:`~core.errors.Busy` at once (503 with Retry-After on HTTP, a ``busy`` frame on sockets)
  and nothing of that item was done. What was accepted into the queue is always written.
- **A late loop.** Work also waits before it reaches the queue: in the event loop's backlog,
  when the process has more to do than CPU to do it with (or shares a busy machine). A
  :class:`LoopLag` measures how late the loop runs what is due; past ``busy_after`` (and at
  least ``LAG_FLOOR``) it counts as saturation too.
- **Not serving** (a CLI, a test hub, while stopping): ``submit`` runs the item on its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from core.errors import Busy
from core.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")

# A loop this late is never taken for saturation, whatever busy_after is: timers and a busy
# machine's scheduling are that imprecise.
LAG_FLOOR = 0.05
# A batch this large or larger measures the rate at which items are written.
RATE_SAMPLE = 20

Run = Callable[[list[I]], Awaitable[Sequence["R | BaseException"]]]


class LoopLag:
    """How late the event loop runs what is due: a task that asks to wake every ``interval``
    notes how much later it did. A backlog makes every wake-up late; one long callback (a
    collection, a slow hash) makes one, and is forgotten within a few intervals."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.lag = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._watch(), name="loop lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            late = max(loop.time() - due, 0.0)
            self.lag = max(late, self.lag * 0.5)


class GroupCommit(Generic[I, R]):
    def __init__(self, name: str, run: Run[I, R], *, linger: float = 0.0, max_batch: int = 500,
                 max_waiting: int = 5000, busy_after: float = 0.5, loop_lag: LoopLag | None = None) -> None:
        self.name = name
        self._run = run
        # How long the writer lets a batch gather after a quiet spell (0: only what queued meanwhile).
        self.linger = linger
        self.max_batch = max_batch
        self.max_waiting = max_waiting
        self.busy_after = busy_after
        self.loop_lag = loop_lag
        self._waiting: deque[tuple[I, asyncio.Future[R], float]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._in_flight = 0
        self._last_warned = -1e9
        # Items written per second of writing, over the last large batches (0: not measured yet).
        # Small batches are left out: their time is mostly the batch's own, not the items'.
        self.rate = 0.0
        # Figures for benchmarks and operators.
        self.batches = 0
        self.items = 0
        self.refused = 0

    # --- lifecycle ----------------------------------------------------------------------------
    @property
    def waiting(self) -> int:
        """Items queued for the next batch (not those of the batch being written)."""
        return len(self._waiting)

    @property
    def in_flight(self) -> int:
        """Items of the batch being written."""
        return self._in_flight

    def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._loop(), name=f"{self.name} group commit")

    async def stop(self, timeout: float = 10.0) -> None:
        """Write what was accepted (its callers are waiting), then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(task, timeout=timeout)
        except (TimeoutError, asyncio.CancelledError):
            pass
        finally:
            self._closing = False

    # --- submitting ---------------------------------------------------------------------------
    async def submit(self, item: I) -> R:
        if self._task is None or self._closing:
            result = (await self._run_alone([item]))[0]
            if isinstance(result, BaseException):
                raise result
            return result
        why = self._overloaded() if self._waiting else None
        if why is None and self.loop_lag is not None and self.loop_lag.lag > max(self.busy_after, LAG_FLOOR):
            why = f"the event loop runs {self.loop_lag.lag * 1000:.0f} ms late"
        if why is not None:
            self.refused += 1
            now = time.monotonic()
            if now - self._last_warned > 10:  # once per spell of load, not per refusal
                self._last_warned = now
                logger.warning("%s: refusing new work as busy: %s (%d waiting, %d refused so far)",
                               self.name, why, len(self._waiting), self.refused)
            raise Busy("the server is busy; nothing was stored: try again shortly", code="busy")
        waiter: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, waiter, time.monotonic()))
        self._wake.set()
        # Shielded: a caller that goes away (its client hung up) does not take its item out of a
        # batch being written; the item is written and the result dropped.
        return await asyncio.shield(waiter)

    def _overloaded(self) -> str | None:
        """Why a new item would wait too long, or None."""
        waiting = len(self._waiting)
        if waiting >= self.max_waiting:
            return f"{waiting} items wait"
        oldest = time.monotonic() - self._waiting[0][2]
        if oldest > self.busy_after:
            return f"the oldest has waited {oldest * 1000:.0f} ms"
        # Behind what is queued (and the batch being written): how long until this one is written.
        if self.rate > 0 and (waiting + self._in_flight) / self.rate > self.busy_after:
            return f"the queue takes {(waiting + self._in_flight) / self.rate * 1000:.0f} ms to write"
        return None

    # --- writing ------------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            if not self._waiting:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                if self.linger and not self._closing:
                    await asyncio.sleep(self.linger)
                continue
            taken = [self._waiting.popleft() for _ in range(min(self.max_batch, len(self._waiting)))]
            self._in_flight = len(taken)
            started = time.monotonic()
            try:
                results = await self._run_alone([item for item, _, _ in taken])
            except asyncio.CancelledError:
                for _, waiter, _ in taken:
                    if not waiter.done():
                        waiter.set_exception(RuntimeError(f"{self.name}: stopped while writing"))
                raise
            finally:
                self._in_flight = 0
            self.batches += 1
            self.items += len(taken)
            if len(taken) >= RATE_SAMPLE:
                rate = len(taken) / max(time.monotonic() - started, 1e-6)
                self.rate = rate if not self.rate else 0.8 * self.rate + 0.2 * rate
            for (_, waiter, _), result in zip(taken, results, strict=True):
                if waiter.done():
                    continue
                if isinstance(result, BaseException):
                    waiter.set_exception(result)
                else:
                    waiter.set_result(result)

    async def _run_alone(self, items: list[I]) -> list[R | BaseException]:
        """Run a batch; when it fails as a whole, each item on its own. Returns, never raises
        (but for cancellation): a single item's failure is its result."""
        try:
            results = list(await self._run(items))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if len(items) == 1:
                return [exc]
            logger.warning("%s: a batch of %d failed (%s); writing its items one at a time",
                           self.name, len(items), type(exc).__name__)
            results = []
            for item in items:
                results.extend(await self._run_alone([item]))
            return results
        if len(results) != len(items):
            raise RuntimeError(f"{self.name}: {len(results)} results for {len(items)} items")
        return results
