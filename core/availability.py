"""The availability promise (#15): what the probers saw, per tenant.

``channelhub probe`` processes (several may run, for redundancy) probe every active tenant's
service and record each outcome here with :func:`record`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import ProbeResult, table_of

logger = logging.getLogger(__name__)

MAX_CAUSE = 500


@dataclass(frozen=True, slots=True)
class Probe:
    """One prober's probe of one tenant."""

    tenant_id: int
    prober: str
    at: datetime
    ok: bool
    cause: str | None = None
    latency_ms: int = 0


async def record(session: AsyncSession, probes: Sequence[Probe]) -> None:
    """Store a round of probes (one statement)."""
    if not probes:
        return
    await session.execute(insert(table_of(ProbeResult)), [
        {"tenant_id": p.tenant_id, "prober": p.prober[:100], "at": p.at, "ok": p.ok,
         "cause": None if p.ok else (p.cause or "failed")[:MAX_CAUSE], "latency_ms": max(0, p.latency_ms)}
        for p in probes
    ])
