"""What ties a mail to its ticket: our Message-IDs, the subject token and the signed plus address.

Threading (core.ingest, with what :mod:`connectors.email.receive` hands it) tries, in order:
1. the Message-IDs a mail answers (In-Reply-To, References) against every message the hub stored
   or sent. The Message-ID of a mail we send names its message and ticket and is signed
   (``<m42.t7.<tag>@support.acme.example.com>``), so it is recognised even before its delivery was
   recorded;
2. the ticket reference the hub puts in what it sends: the subject token ``[#7]``, and, where the
   mailbox has plus addressing, a signed Reply-To ``support+t7.<tag>@acme.example.com``;
3. a new ticket.

Tags are lower-case base32 (mail servers may fold the case of a local part) of an HMAC under the
hub's secret key, for this purpose alone. A token or a tag only proposes a ticket: the mail joins
it only when its sender is the ticket's customer or a participant (core.ingest), so a stranger who
copies ``[#7]`` into a subject opens a ticket of their own.
"""

from __future__ import annotations

import base64
import hmac
import re

from core import secrets
from core.config import Settings

_PURPOSE_ID = "email-message-id"
_PURPOSE_PLUS = "email-plus-address"
_OURS = re.compile(r"^m(\d{1,19})\.t(\d{1,19})\.([a-z2-7]{16})@", re.I)
_PLUS = re.compile(r"^(?P<local>[^+@]+)\+t(?P<ticket>\d{1,19})\.(?P<tag>[a-z2-7]{16})@(?P<domain>.+)$", re.I)
_TOKEN = re.compile(r"\[#(\d{1,19})\]")
# Reply and forward prefixes in the languages our customers' clients write them, repeated.
_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|wg|sv|vs|antw|tr|rif|回复|回覆|答复|答覆|转发|轉寄|转寄)"
                     r"\s*(\[\d+\])?\s*[:\uFF1A]\s*)+", re.I)
_FORWARD = re.compile(r"^\s*(fw|fwd|wg|tr|转发|轉寄|转寄)\s*[:\uFF1A]", re.I)
MAX_TICKET = 2**63 - 1


def _tag(settings: Settings, purpose: str, text: str) -> str:
    mac = base64.urlsafe_b64decode(secrets.sign(settings, purpose, text))
    return base64.b32encode(mac).decode()[:16].lower()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.lower().encode(), b.lower().encode())


def message_id(settings: Settings, tenant_id: int, message_id_: int, ticket_id: int, domain: str) -> str:
    """The Message-ID (without angle brackets) of the mail that carries our message."""
    tag = _tag(settings, _PURPOSE_ID, f"{tenant_id}:{message_id_}:{ticket_id}")
    return f"m{message_id_}.t{ticket_id}.{tag}@{domain}"


def ours(settings: Settings, tenant_id: int, msgid: str) -> tuple[int, int] | None:
    """(message id, ticket id) when ``msgid`` (with or without brackets) is one we made for this tenant."""
    found = _OURS.match(msgid.strip("<>"))
    if found is None:
        return None
    mid, tid = int(found[1]), int(found[2])
    if mid > MAX_TICKET or tid > MAX_TICKET:
        return None
    expected = _tag(settings, _PURPOSE_ID, f"{tenant_id}:{mid}:{tid}")
    return (mid, tid) if _same(expected, found[3]) else None


def plus_address(settings: Settings, tenant_id: int, address: str, ticket_id: int) -> str:
    local, _, domain = address.partition("@")
    tag = _tag(settings, _PURPOSE_PLUS, f"{tenant_id}:{ticket_id}")
    return f"{local}+t{ticket_id}.{tag}@{domain}"


def split_plus(address: str) -> tuple[str, int | None, str | None]:
    """(the base address, the ticket named, its tag) of a plus address; (address, None, None) otherwise."""
    found = _PLUS.match(address)
    if found is None:
        return address, None, None
    ticket = int(found["ticket"])
    return f"{found['local']}@{found['domain']}".lower(), (ticket if ticket <= MAX_TICKET else None), found["tag"]


def plus_ticket(settings: Settings, tenant_id: int, address: str) -> int | None:
    """The ticket a signed plus address of this tenant names."""
    _base, ticket, tag = split_plus(address)
    if ticket is None or tag is None:
        return None
    return ticket if _same(_tag(settings, _PURPOSE_PLUS, f"{tenant_id}:{ticket}"), tag) else None


def subject_token(ticket_id: int) -> str:
    return f"[#{ticket_id}]"


def token_tickets(subject: str) -> list[int]:
    """The tickets a subject's tokens name, the last first (a forward of a forward keeps the newest last)."""
    return [int(t) for t in reversed(_TOKEN.findall(subject)) if int(t) <= MAX_TICKET]


def clean_subject(subject: str) -> str:
    """The subject without reply/forward prefixes and ticket tokens: what the ticket is called."""
    text = _TOKEN.sub("", subject)
    text = _PREFIX.sub("", text)
    return " ".join(text.split())


def reply_subject(subject: str | None, ticket_id: int) -> str:
    """``Re: <subject> [#7]`` for a reply on ticket 7."""
    base = clean_subject(subject or "") or "Your request"
    return f"Re: {base} {subject_token(ticket_id)}"


def is_forward(subject: str) -> bool:
    return bool(_FORWARD.match(subject))
