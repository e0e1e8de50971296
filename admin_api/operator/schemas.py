"""The operator API's request bodies (strict, like the tenants' API: unknown fields are refused)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, EmailStr, Field

from admin_api.schemas import AuditFilterQuery, Day, NoticeBody, TenantStatusName
from core.models import MAX_ID
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
    status: TenantStatusName | None = None
    after_id: int | None = Field(default=None, ge=0, le=2**31 - 1)
    limit: int = Field(default=100, ge=1, le=500)


class AuditQuery(Strict):
    tenant_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    after_id: int | None = Field(default=None, ge=0, le=2**63 - 1)
    limit: int = Field(default=200, ge=1, le=1000)


class AuditExportQuery(AuditFilterQuery):
    tenant_id: int | None = Field(default=None, ge=1, le=2**31 - 1, description="Only the actions on this tenant")
    format: Literal["csv", "xlsx"] = "csv"


class SubsystemSwitchBody(Strict):
    """Switch a subsystem (billing, statistics, reports) on or off, saying why (audited)."""

    enabled: bool
    reason: str = Field(min_length=1, max_length=500)


class SubsystemHistoryQuery(Strict):
    before_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    limit: int = Field(default=100, ge=1, le=1000)


def parse_moment(value: Any) -> datetime:
    """A time as JSON and query strings have it: an ISO 8601 string with its offset (Z or +08:00),
    made UTC; ValueError saying what is wrong otherwise."""
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("a time is written as ISO 8601 with its offset, e.g. 2026-12-07T02:00:00Z")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value} is not a time written ISO 8601") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a time needs its offset (Z or +08:00): the hub does not guess a time zone")
    return moment.astimezone(UTC)


Moment = Annotated[datetime, BeforeValidator(parse_moment),
                   Field(json_schema_extra={"type": "string", "format": "date-time"})]


class MaintenanceBody(Strict):
    """An announced maintenance window: outages inside it do not count against availability."""

    start: Moment
    end: Moment
    reason: str = Field(min_length=1, max_length=500)
    tenant_id: int | None = Field(default=None, ge=1, le=MAX_ID,
                                  description="Only this tenant's; absent: every tenant's")


class MaintenanceQuery(Strict):
    from_: str | None = Field(default=None, alias="from", description="Windows ending after this time (ISO 8601)")
    to: str | None = Field(default=None, description="Windows starting before this time (ISO 8601)")
    tenant_id: int | None = Field(default=None, ge=1, le=MAX_ID,
                                  description="This tenant's windows and those for every tenant")


class TenantAvailabilityQuery(Strict):
    month: str | None = Field(default=None, pattern=r"^[0-9]{4}-[0-9]{2}$",
                              description="The calendar month (UTC), YYYY-MM; default: the current month so far")
