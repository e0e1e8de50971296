"""A lease on one database row: which process does the row's long-lived work (follows a mailbox,
holds an XMPP connection) while several could.

The row names its holder and until when (two columns of the channel's own table). A process takes
the lease when nobody holds it, it holds it already, or the holder let it run out (it died); it
renews it every third of its length while it works, and stops working the moment a renewal finds
another holder or the lease ran out unrenewed. A holder that dies leaves a lease that runs out by
itself after ``seconds``. The time is the holder's injected clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, or_, update

from core.db import Database
from core.tasks import cancel_and_wait

logger = logging.getLogger(__name__)


class RowLease:
    def __init__(self, db: Database, table: Table, row: Callable[[], ColumnElement[bool]], *, owner_column: str,
                 until_column: str, owner: str, seconds: float, clock: Callable[[], datetime], label: str,
                 takeable: Callable[[], ColumnElement[bool]] | None = None,
                 on_release: Mapping[str, Any] | None = None) -> None:
        """``row``: the clause that picks the row; ``takeable``: what else must hold to take it
        (the account is active); ``on_release``: what else to write when letting it go."""
        self.db = db
        self.table = table
        self.row = row
        self.owner_column = table.c[owner_column]
        self.until_column = table.c[until_column]
        self.owner = owner
        self.seconds = seconds
        self.clock = clock
        self.label = label
        self.takeable = takeable
        self.on_release = dict(on_release or {})
        # Until when this process holds it, as far as it knows; None: it does not.
        self.until: datetime | None = None

    @property
    def held(self) -> bool:
        return self.until is not None

    def mine(self) -> ColumnElement[bool]:
        """The row, while this process holds it: a write under it changes nothing once it is lost."""
        return self.row() & (self.owner_column == self.owner)

    async def take(self) -> bool:
        now = self.clock()
        until = now + timedelta(seconds=self.seconds)
        free = or_(self.owner_column.is_(None), self.owner_column == self.owner,
                   self.until_column.is_(None), self.until_column < now)
        where = [self.row(), free] if self.takeable is None else [self.row(), self.takeable(), free]
        async with self.db.connection() as conn:
            result = await conn.execute(update(self.table).where(*where)
                                        .values({self.owner_column: self.owner, self.until_column: until}))
        if result.rowcount == 1:
            self.until = until
            return True
        return False

    async def renew(self) -> bool:
        until = self.clock() + timedelta(seconds=self.seconds)
        async with self.db.connection() as conn:
            result = await conn.execute(update(self.table).where(self.mine()).values({self.until_column: until}))
        if result.rowcount == 1:
            self.until = until
            return True
        return False

    async def release(self) -> None:
        """Let it go (whether or not this process knows it holds it: a cancellation can land between
        the UPDATE that took it and our noting so)."""
        self.until = None
        async with self.db.connection() as conn:
            await conn.execute(update(self.table).where(self.mine())
                               .values({self.owner_column: None, self.until_column: None, **self.on_release}))

    async def keep(self) -> None:
        """Renew it every third of its length; returns when it is lost: another process took it, or
        it ran out while the database could not be reached."""
        while True:
            await asyncio.sleep(self.seconds / 3)
            try:
                if await self.renew():
                    continue
                logger.warning("%s: another process took the lease; stopping here", self.label)
                self.until = None
                return
            except Exception as exc:
                logger.warning("%s: could not renew the lease: %s", self.label, _short(exc))
                if self.until is None or self.clock() >= self.until:
                    self.until = None
                    return

    async def hold_while(self, work: Callable[[], Any], *, retry_seconds: float) -> None:
        """For ever: take the lease when it is free, run ``work()`` (a coroutine function) while it
        is held, and try again every ``retry_seconds``. ``work`` is cancelled when the lease is lost."""
        while True:
            try:
                held = await self.take()
            except Exception as exc:
                held = False
                logger.warning("%s: could not take the lease: %s", self.label, _short(exc))
            if held:
                logger.info("%s: lease held by %s", self.label, self.owner)
                worker = asyncio.ensure_future(work())
                keeper = asyncio.create_task(self.keep(), name=f"lease {self.label}")
                try:
                    await asyncio.wait({worker, keeper}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    await cancel_and_wait(worker, keeper)
                self.until = None
            await asyncio.sleep(retry_seconds)


def _short(exc: BaseException) -> str:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}"[:200] if first else type(exc).__name__
