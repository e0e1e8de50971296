"""Probe traffic (#15): how the hub tells a prober's synthetic traffic from its customers'.

``channelhub probe`` (channelhub/probe.py) checks every active tenant's service the way a customer
and an agent use it. Its web chat message has to go the whole inbound way (the live group commit,
core.ingest, the bus) to prove the service works, yet must never become a ticket, a customer, an
event, a search document, a routing job, a report figure or anything billed. So a probe hello
carries a *mark*: an HMAC-SHA256, keyed with ``CHANNELHUB_PROBE_SECRET``, of the tenant's id and
the time it was made. A customer cannot make one (they do not have the secret), a mark is good
for one tenant only and for :data:`MARK_TTL` seconds either side of the hub's clock (probers on
other machines may run a little ahead or behind), and a hub without the secret takes no probes at
all. A marked message is carried as ``InboundMessage.probe``; core.ingest acknowledges it, echoes
it on :func:`probe_topic` after its batch commits and writes nothing of it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime
from typing import Any

from core.errors import Forbidden

logger = logging.getLogger(__name__)

# How far (seconds) a mark's time may be from the hub's clock, either way.
MARK_TTL = 120
SIGNATURE_LENGTH = 64  # hex sha256


def _payload(tenant_id: int, at: int) -> bytes:
    return f"channelhub-probe:{tenant_id}:{at}".encode()


def sign(secret: str, tenant_id: int, at: int) -> str:
    """The mark's signature for a probe of ``tenant_id`` made at ``at`` (Unix seconds)."""
    return hmac.new(secret.encode(), _payload(tenant_id, at), hashlib.sha256).hexdigest()


def mark(secret: str, tenant_id: int, now: datetime) -> dict[str, Any]:
    """The ``probe`` object of a prober's hello frames."""
    at = int(now.timestamp())
    return {"at": at, "signature": sign(secret, tenant_id, at)}


def verify(secret: str | None, tenant_id: int, at: int, signature: str, *, now: datetime) -> None:
    """Accept a probe mark or raise :class:`core.errors.Forbidden`: ``probes_disabled`` when this
    hub has no secret, ``invalid_probe`` for a mark that is forged, for another tenant, or stale."""
    if not secret:
        raise Forbidden("this hub takes no probes: CHANNELHUB_PROBE_SECRET is not set", code="probes_disabled")
    if abs(now.timestamp() - at) > MARK_TTL:
        raise Forbidden(f"the probe mark is more than {MARK_TTL} s away from the hub's clock", code="invalid_probe")
    if not hmac.compare_digest(sign(secret, tenant_id, at), signature):
        raise Forbidden("the probe mark's signature is not valid", code="invalid_probe")


def probe_topic(tenant_id: int, channel: str, external_id: str) -> str:
    """Where core.ingest echoes a probe message once its batch has committed (the probe's socket
    listens there: with Redis, the echo crosses Redis pub/sub as a real event would)."""
    return f"probe:{tenant_id}:{channel}:{external_id}"
