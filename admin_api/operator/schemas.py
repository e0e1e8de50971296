"""The operator API's request bodies (strict, like the tenants' API: unknown fields are refused)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import EmailStr, Field

from admin_api.schemas import Day, NoticeBody
from web.schemas import Strict

__all__ = ["Day", "NoticeBody"]

OperatorRoleName = Literal["owner", "billing", "support"]
Domain = Annotated[str, Field(min_length=1, max_length=253)]
# Money: integer minor units (fen, cents); see core.billing for the bounds.
Money = Annotated[int, Field(ge=1, le=10**15)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class OperatorLoginBody(Strict):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class CreateAccountBody(Strict):
    email: EmailStr
    name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=12, max_length=1024)
    role: OperatorRoleName


class AccountPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    role: OperatorRoleName | None = None
    active: bool | None = None


class ContractTerms(Strict):
    price_per_seat_year: int = Field(ge=0, le=10**12)
    currency: Currency
    term_start: Day


class RepriceBody(Strict):
    """The price per seat per year (minor units) from the next renewal on."""

    price_per_seat_year: int = Field(ge=0, le=10**12)


class TenantOwner(Strict):
    email: EmailStr
    name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=8, max_length=1024)


class CreateTenantBody(Strict):
    name: str = Field(min_length=1, max_length=200)
    # The first is the primary domain.
    domains: list[Domain] = Field(min_length=1, max_length=20)
    # Without a contract the tenant is not billed (seats unmetered).
    contract: ContractTerms | None = None
    top_up: Money | None = None
    owner: TenantOwner | None = None


class TenantPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    primary_domain: Domain | None = None


class DomainsBody(Strict):
    domains: list[Domain] = Field(min_length=1, max_length=20)


class SuspendBody(Strict):
    reason: str | None = Field(default=None, max_length=500)


class TopUpBody(Strict):
    amount: Money
    reference: str | None = Field(default=None, max_length=200)


class CompensationBody(Strict):
    minutes: int = Field(ge=1, le=366 * 24 * 60)
    note: str | None = Field(default=None, max_length=500)


class TenantsQuery(Strict):
    status: Literal["active", "suspended", "ended"] | None = None
    after_id: int | None = Field(default=None, ge=0, le=2**31 - 1)
    limit: int = Field(default=100, ge=1, le=500)


class AuditQuery(Strict):
    tenant_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    after_id: int | None = Field(default=None, ge=0, le=2**63 - 1)
    limit: int = Field(default=200, ge=1, le=1000)


class SubsystemSwitchBody(Strict):
    """Switch a subsystem (billing, statistics, reports) on or off, saying why (audited)."""

    enabled: bool
    reason: str = Field(min_length=1, max_length=500)


class SubsystemHistoryQuery(Strict):
    before_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    limit: int = Field(default=100, ge=1, le=1000)
