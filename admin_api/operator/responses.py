"""The operator API's answers, for its OpenAPI document (/operator/v1/openapi.json): they describe
the dicts of core.tenants, core.operators and core.serialize.ledger_dict (every key, no other)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from admin_api.operator.schemas import OperatorRoleName
from admin_api.responses import AuditEntry, MaintenanceWindow
from admin_api.schemas import ContractStateName, TenantStatusName
from web.schemas import Out


class Contract(Out):
    price_per_seat_year: int
    currency: str
    term_start: str
    term_end: str
    seats: int
    balance: int
    state: ContractStateName
    next_price_per_seat_year: int | None
    ends_on: str | None
    lapsed: bool


class TenantListed(Out):
    id: int
    name: str
    domain: str
    domains: list[str]
    status: TenantStatusName
    suspended_by: Literal["operator", "billing"] | None
    created_at: datetime
    seats_in_use: int
    contract: Contract | None


class Tenant(TenantListed):
    status_changed_at: datetime | None


class TenantEnvelope(Out):
    tenant: Tenant


class TenantsPage(Out):
    tenants: list[TenantListed]


class Account(Out):
    id: int
    email: str
    name: str
    role: OperatorRoleName
    active: bool
    created_at: datetime


class AccountEnvelope(Out):
    account: Account


class AccountsList(Out):
    accounts: list[Account]


class OperatorLogin(Out):
    token: str
    account: Account


class Ok(Out):
    ok: Literal[True]


LedgerKind = Literal["top_up", "charge", "credit", "refund", "compensation"]


class Entry(Out):
    id: int
    kind: LedgerKind
    amount: int
    currency: str
    seats: int
    days: int
    balance_after: int
    actor_type: str
    actor_id: int | None
    detail: dict[str, Any]
    created_at: datetime


class EntryEnvelope(Out):
    entry: Entry


class TenantBilling(Out):
    tenant_id: int
    contract: Contract | None
    balance: int
    seats_paid: int
    seats_in_use: int
    entries: list[Entry]


class Renewal(Out):
    outcome: Literal["not_due", "renewed", "suspended", "ended"]
    shortfall: int
    tenant: Tenant


class AuditPage(Out):
    entries: list[AuditEntry]


# --- subsystems (core.breakers.Status.as_dict, Change.as_dict) -----------------------------------
SubsystemName = Literal["billing", "statistics", "reports"]
SubsystemState = Literal["closed", "open", "half_open", "off"]


class SubsystemChange(Out):
    id: int
    at: datetime
    # Effective states: the breaker's, or off when the operator switched it off. ("from" is a
    # keyword in Python: the field is named by its alias.)
    from_: SubsystemState = Field(alias="from")
    to: SubsystemState
    reason: str | None
    # "operator" (operator_id says who) or "auto" (the circuit breaker).
    actor: Literal["operator", "auto"]
    operator_id: int | None


class SubsystemSwitch(Out):
    by: int | None
    reason: str | None
    at: datetime | None


class SubsystemStatus(Out):
    name: SubsystemName
    state: SubsystemState
    enabled: bool
    breaker: Literal["closed", "open", "half_open"]
    since: datetime | None
    failures: int
    opened_at: datetime | None
    next_trial_at: datetime | None
    cooldown_seconds: float
    last_error: str | None
    last_failure_at: datetime | None
    switch: SubsystemSwitch
    history: list[SubsystemChange]


class SubsystemsList(Out):
    subsystems: list[SubsystemStatus]


class SubsystemEnvelope(Out):
    subsystem: SubsystemStatus


class SubsystemHistory(Out):
    subsystem: SubsystemName
    changes: list[SubsystemChange]
    next_before_id: int | None
class WindowEnvelope(Out):
    window: MaintenanceWindow


class WindowsList(Out):
    windows: list[MaintenanceWindow]
