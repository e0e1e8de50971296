"""The email admin API's request bodies (strict, like every body: web.schemas) and answers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import EmailStr, Field

from web.schemas import Out, Patch, Strict

Security = Literal["none", "starttls", "tls"]
HostName = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9.\-\[\]:]+$")]
PortNumber = Annotated[int, Field(ge=1, le=65535)]


class RelayBody(Strict):
    """The SMTP relay replies go out through (the tenant's own mail server or provider)."""

    host: HostName | None = None
    port: PortNumber | None = None
    security: Security = "starttls"
    username: str | None = Field(default=None, min_length=1, max_length=320)
    # Write-only: stored encrypted, read back as password_set.
    password: str | None = Field(default=None, max_length=1000)


class ImapBody(Strict):
    """The IMAP account mail is read from, when mail is not pointed at the hub's receiver."""

    host: HostName | None = None
    port: PortNumber | None = None
    security: Security = "tls"
    username: str | None = Field(default=None, min_length=1, max_length=320)
    password: str | None = Field(default=None, max_length=1000)
    folder: str = Field(default="INBOX", min_length=1, max_length=200)


class RelayChange(Patch):
    # null clears these (security has a value always; the folder too).
    nullable: ClassVar[frozenset[str]] = frozenset({"host", "port", "username", "password"})
    host: HostName | None = None
    port: PortNumber | None = None
    security: Security | None = None
    username: str | None = Field(default=None, min_length=1, max_length=320)
    password: str | None = Field(default=None, max_length=1000)


class ImapChange(RelayChange):
    folder: str | None = Field(default=None, min_length=1, max_length=200)


class CreateMailboxBody(Strict):
    address: EmailStr
    name: str | None = Field(default=None, min_length=1, max_length=200)
    plus_addressing: bool = False
    smtp: RelayBody | None = None
    imap: ImapBody | None = None


class UpdateMailboxBody(Patch):
    # null smtp or imap has always meant "leave it alone".
    nullable: ClassVar[frozenset[str]] = frozenset({"smtp", "imap"})
    name: str | None = Field(default=None, min_length=1, max_length=200)
    active: bool | None = None
    plus_addressing: bool | None = None
    smtp: RelayChange | None = None
    imap: ImapChange | None = None


# --- answers (described in OpenAPI, see web.api; the handlers write store.mailbox_dict) --------
class RelayView(Out):
    host: str | None
    port: int | None
    security: Security
    username: str | None
    password_set: bool


class ImapView(RelayView):
    folder: str
    last_uid: int
    error: str | None = Field(description="The last IMAP failure, cleared by the next success")
    checked_at: datetime | None


class Mailbox(Out):
    id: int
    address: str
    name: str
    active: bool
    plus_addressing: bool
    smtp: RelayView
    imap: ImapView
    created_at: datetime
    updated_at: datetime


class MailboxEnvelope(Out):
    mailbox: Mailbox


class MailboxesEnvelope(Out):
    mailboxes: list[Mailbox]


class Original(Out):
    """A received mail as it came (store.original)."""

    message_id: int
    headers: dict[str, Any]
    text: str
    html: str | None = Field(description="Sanitised; inline images point at the hub's attachments")
    size: int
    received_at: datetime


class OriginalEnvelope(Out):
    original: Original
