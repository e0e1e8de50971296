"""The XMPP admin API's request bodies (strict, like every body: web.schemas)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from web.schemas import Out, Patch, Strict

Kind = Literal["client", "component"]
Security = Literal["none", "starttls", "tls"]
HostName = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9.\-\[\]:]+$")]
PortNumber = Annotated[int, Field(ge=1, le=65535)]
# A bare JID (client) or a domain (component); checked further in store.normal_jid.
Jid = Annotated[str, Field(min_length=3, max_length=320)]
Room = Annotated[str, Field(min_length=3, max_length=320)]


class CreateAccountBody(Strict):
    kind: Kind
    jid: Jid
    # Write-only: the password (client) or the component secret; stored encrypted.
    secret: str = Field(min_length=1, max_length=1000)
    host: HostName | None = None
    port: PortNumber | None = None
    security: Security = "starttls"
    name: str | None = Field(default=None, min_length=1, max_length=200)
    muc_rooms: list[Room] = Field(default_factory=list, max_length=50)


class UpdateAccountBody(Patch):
    # null clears these: the server is found from the JID's domain again, the label goes.
    nullable: ClassVar[frozenset[str]] = frozenset({"host", "port", "name"})

    secret: str | None = Field(default=None, min_length=1, max_length=1000)
    host: HostName | None = None
    port: PortNumber | None = None
    security: Security | None = None
    name: str | None = Field(default=None, min_length=1, max_length=200)
    active: bool | None = None
    muc_rooms: list[Room] | None = Field(default=None, max_length=50)


# --- answers (described in OpenAPI, see web.api) ------------------------------------------------
class AccountStatus(Out):
    connected: bool
    error: str | None
    checked_at: str | None


class Account(Out):
    """An account as connectors.xmpp.store.account_dict writes it: never its secret."""

    id: int
    kind: Kind
    jid: str
    secret_set: bool
    host: str | None
    port: int | None
    security: Security
    name: str | None
    active: bool
    muc_rooms: list[str]
    status: AccountStatus
    created_at: str
    updated_at: str


class AccountEnvelope(Out):
    account: Account


class AccountsEnvelope(Out):
    accounts: list[Account]
