"""The prober (#15): ``channelhub probe`` checks every active tenant's service as its users use it.

Every ``CHANNELHUB_PROBE_INTERVAL`` seconds a round reads the active tenants and their primary
domains, probes them concurrently (at most ``CHANNELHUB_PROBE_CONCURRENCY`` at once, each within
``CHANNELHUB_PROBE_TIMEOUT``) and records one :class:`core.availability.Probe` per tenant with
:func:`core.availability.record`. A probe makes three checks, in order, and names the first that
failed in its ``cause``:

1. ``domain``: ``GET /`` on the tenant's domain (its landing page) answers 200;
2. ``webchat``: a probe visitor on ``/webchat/ws`` sends a message, and gets both its ``ack``
   (the live group commit and core.ingest took it, in a database transaction) and its ``echo``
   (published after that commit and heard back over the bus, Redis pub/sub with Redis);
3. ``agent socket``: ``/agent/ws`` answers a probe hello with ``{"type": "probe", "ok": true}``.

Both hellos carry the probe mark (core.probes), so the hub stores nothing of the probe's traffic.
Several probers may run (on other machines, for redundancy): each records under its own name, and
the availability report merges what they saw. The prober outlives its database: a round that
cannot read the tenants probes those it knew, and probes it cannot record are kept (up to
:data:`MAX_PENDING`) for the next round.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from sqlalchemy import select

from core import availability, probes
from core.availability import Probe
from core.config import Settings
from core.db import Database
from core.models import Tenant, TenantDomain, TenantStatus, utcnow
from core.seats import clean_domain

logger = logging.getLogger(__name__)

# Probes kept while the database cannot take them (a few hours of a hundred tenants at 30 s).
MAX_PENDING = 100_000
DEFAULT_BASE = "http://{domain}"


@dataclass(frozen=True)
class Target:
    tenant_id: int
    domain: str


class ProbeFailed(Exception):
    """A check's refusal; its text goes into the cause after the check's name."""


class _Progress:
    """Where one probe is, so a timeout names what it was waiting for."""

    def __init__(self) -> None:
        self.check = "domain"
        self.waiting = "no answer"


class Prober:
    """One prober process's rounds. ``base_url``: every request goes there with the tenant's domain
    as its Host (a prober beside the hub, or the tests), or, holding ``{domain}``, it is the URL of
    each tenant's own (``https://{domain}``)."""

    def __init__(self, settings: Settings, db: Database, *, name: str, base_url: str | None = None,
                 domains: Sequence[str] = (), clock: Callable[[], datetime] = utcnow) -> None:
        if not settings.probe_secret:
            raise ValueError("the prober needs the probe secret (CHANNELHUB_PROBE_SECRET)")
        self.settings, self.db, self.name, self.clock = settings, db, name, clock
        self.secret: str = settings.probe_secret
        self.base = (base_url or settings.probe_base_url or DEFAULT_BASE).rstrip("/")
        self.only = [clean_domain(d) for d in domains]
        self.targets: list[Target] = []
        self.pending: deque[Probe] = deque(maxlen=MAX_PENDING)

    # --- where ----------------------------------------------------------------------------------
    def url(self, domain: str, path: str, *, ws: bool = False) -> tuple[str, dict[str, str]]:
        """The URL of ``path`` on ``domain``'s service and the headers that name the tenant."""
        if "{domain}" in self.base:
            url, headers = self.base.format(domain=domain) + path, {}
        else:
            url, headers = self.base + path, {"Host": domain}
        if ws:
            url = "ws" + url[len("http"):] if url.startswith("http") else url
        return url, headers

    async def load_targets(self) -> list[Target]:
        """The active tenants and their primary domains (those of ``domains`` only, when given)."""
        stmt = select(Tenant.id, Tenant.domain).where(Tenant.status == TenantStatus.ACTIVE).order_by(Tenant.id)
        if self.only:
            stmt = stmt.where(Tenant.id.in_(select(TenantDomain.tenant_id).where(TenantDomain.domain.in_(self.only))))
        async with self.db.read() as session:
            return [Target(int(tid), domain) for tid, domain in (await session.execute(stmt)).all()]

    # --- one tenant -----------------------------------------------------------------------------
    async def check(self, http: aiohttp.ClientSession, target: Target) -> Probe:
        at, started = self.clock(), time.monotonic()
        progress = _Progress()
        timeout = self.settings.probe_timeout
        cause: str | None = None
        try:
            async with asyncio.timeout(timeout):
                await self._domain(http, target, progress)
                progress.check = "webchat"
                await self._webchat(http, target, progress)
                progress.check = "agent socket"
                await self._agent_socket(http, target, progress)
        except ProbeFailed as exc:
            cause = f"{progress.check}: {exc}"
        except TimeoutError:
            cause = f"{progress.check}: {progress.waiting} within {timeout:g} s"
        except aiohttp.ClientConnectorError as exc:
            refused = isinstance(exc.os_error, ConnectionRefusedError)
            cause = f"{progress.check}: " + ("connection refused" if refused else f"cannot connect ({exc.os_error})")
        except aiohttp.WSServerHandshakeError as exc:
            cause = f"{progress.check}: HTTP {exc.status}"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            cause = f"{progress.check}: {type(exc).__name__}: {exc}"
        latency = int((time.monotonic() - started) * 1000)
        if cause is not None:
            logger.warning("probe of tenant %s (%s) failed: %s", target.tenant_id, target.domain, cause)
        return Probe(target.tenant_id, self.name, at, cause is None, cause, latency)

    async def _domain(self, http: aiohttp.ClientSession, target: Target, progress: _Progress) -> None:
        url, headers = self.url(target.domain, "/")
        async with http.get(url, headers=headers, allow_redirects=False) as resp:
            await resp.read()
            if resp.status != 200:
                raise ProbeFailed(f"HTTP {resp.status}")

    def _hello(self, target: Target) -> dict[str, Any]:
        return {"type": "hello", "probe": probes.mark(self.secret, target.tenant_id, self.clock())}

    async def _webchat(self, http: aiohttp.ClientSession, target: Target, progress: _Progress) -> None:
        url, headers = self.url(target.domain, "/webchat/ws", ws=True)
        progress.waiting = "no welcome"
        async with http.ws_connect(url, headers=headers) as ws:
            await ws.send_json(self._hello(target))
            welcome = await _frame(ws)
            if welcome.get("type") != "welcome" or not welcome.get("probe"):
                raise ProbeFailed(_refusal(welcome))
            client_id = f"probe-{uuid.uuid4().hex}"
            text = f"channelhub probe {client_id}"
            await ws.send_json({"type": "message", "client_id": client_id, "text": text})
            acked = echoed = False
            while not (acked and echoed):
                progress.waiting = "no ack" if not acked else "no echo"
                frame = await _frame(ws)
                kind = frame.get("type")
                if kind == "ack" and frame.get("client_id") == client_id:
                    acked = True
                elif kind == "echo" and (frame.get("message") or {}).get("text") == text:
                    echoed = True
                elif kind == "error":
                    raise ProbeFailed(_refusal(frame))

    async def _agent_socket(self, http: aiohttp.ClientSession, target: Target, progress: _Progress) -> None:
        url, headers = self.url(target.domain, "/agent/ws", ws=True)
        progress.waiting = "no answer to the probe hello"
        async with http.ws_connect(url, headers=headers) as ws:
            await ws.send_json(self._hello(target))
            answer = await _frame(ws)
            if answer.get("type") != "probe" or answer.get("ok") is not True:
                raise ProbeFailed(_refusal(answer))

    # --- rounds ---------------------------------------------------------------------------------
    async def round(self, http: aiohttp.ClientSession) -> list[Probe]:
        """Probe every target once and record what was seen; returns the round's probes."""
        try:
            self.targets = await self.load_targets()
        except Exception as exc:
            # The hub's database is down or unreachable from here: the tenants known from the last
            # round are probed anyway (what they see is the outage), and recorded once it is back.
            logger.warning("prober %s cannot read the tenants (%s: %s); probing the %d known", self.name,
                           type(exc).__name__, exc, len(self.targets))
        gate = asyncio.Semaphore(max(1, self.settings.probe_concurrency))

        async def one(target: Target) -> Probe:
            async with gate:
                return await self.check(http, target)

        done = list(await asyncio.gather(*(one(t) for t in self.targets)))
        self.pending.extend(done)
        await self.flush()
        return done

    async def flush(self) -> None:
        """Record the probes waiting (this round's and any the database could not take before)."""
        if not self.pending:
            return
        batch = list(self.pending)
        try:
            async with self.db.session() as session:
                await availability.record(session, batch)
        except Exception as exc:
            logger.warning("prober %s cannot record %d probe(s) (%s: %s); trying again next round", self.name,
                           len(batch), type(exc).__name__, exc)
            return
        for _ in batch:
            self.pending.popleft()

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds every ``probe_interval`` seconds (a round that overruns is followed at once) until
        ``stop`` is set."""
        loop = asyncio.get_running_loop()
        interval = self.settings.probe_interval
        # A fresh connection for every request: a probe measures that the service answers now, not
        # that a kept-alive connection is still open.
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as http:
            next_at = loop.time()
            while not stop.is_set():
                try:
                    await self.round(http)
                except Exception:
                    logger.exception("prober %s: round failed", self.name)
                next_at += interval
                delay = next_at - loop.time()
                if delay < 0:
                    next_at, delay = loop.time(), 0.0
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    pass
        await self.flush()


async def _frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive()
    if msg.type != aiohttp.WSMsgType.TEXT:
        raise ProbeFailed(f"the socket closed ({ws.close_code or msg.type.name})")
    try:
        frame = json.loads(msg.data)
    except ValueError:
        raise ProbeFailed("an answer that is not JSON") from None
    if not isinstance(frame, dict):
        raise ProbeFailed("an answer that is not a JSON object")
    return frame


def _refusal(frame: dict[str, Any]) -> str:
    if frame.get("type") == "error":
        return f"refused: {frame.get('code')}: {frame.get('message')}"
    return f"unexpected answer {str(frame.get('type'))[:50]!r}"
