"""The audit log's hash chain: what a row's hash covers, and how it is computed.

Each audit row carries the hash of the row before it in its chain (``prev_hash``) and its own
(``hash``): sha256 over a canonical serialisation of the row's fields and ``prev_hash``. There is one
chain per tenant and one for the operator (rows without a tenant), so a tenant's purge removes a
whole chain and leaves the others intact. Changing a row changes its hash; removing one breaks the
link of the row after it; removing the newest ones leaves the chain's head (``audit_heads``) naming
a row that is gone. ``channelhub audit verify`` (core.audit.verify) checks all three.

This module is imported by core.models and by the migration that backfilled the hashes: what it
computes must never change for rows already written (a new field needs a new serialisation version).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

# The first row of a chain has no row before it.
GENESIS = "0" * 64
# The chain key of the operator's rows (tenant ids start at 1).
OPERATOR_CHAIN = 0


def chain_key(tenant_id: int | None) -> int:
    return OPERATOR_CHAIN if tenant_id is None else int(tenant_id)


def canonical_time(at: datetime) -> str:
    """Microseconds, UTC: both databases keep exactly that much of a time."""
    if at.tzinfo is None:  # SQLite hands back naive times; they are UTC
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_details(details: Any) -> Any:
    """The details as the JSON column gives them back (tuples become lists, keys strings)."""
    return json.loads(json.dumps(details if details is not None else {}, default=str))


def row_hash(*, prev_hash: str, tenant_id: int | None, actor_type: str, actor_id: int | None, action: str,
             target_type: str | None, target_id: str | None, details: Any, ip: str | None,
             created_at: datetime) -> str:
    """sha256 (hex) of the row's fields and the previous row's hash, serialised canonically."""
    fields = {
        "v": 1, "prev_hash": prev_hash, "tenant_id": tenant_id, "actor_type": actor_type, "actor_id": actor_id,
        "action": action, "target_type": target_type, "target_id": target_id,
        "details": canonical_details(details), "ip": ip, "created_at": canonical_time(created_at),
    }
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
