"""Files agents attach to replies and notes.

An agent uploads a file once (``POST /api/v1/attachments``) and names its id in a message. The
bytes are kept in the database, like WeChat media, so every process serves the same file; the
message row keeps a small description of each ({id, name, content_type, size, url}).

Agents fetch a file at its ``url`` (signed in). Customers cannot sign in, so what they are shown
is a signed link instead (``/files/{id}/{signature}``): an HMAC of the tenant and the id under the
operator's secret key. It cannot be guessed or moved to another id or tenant, and checking it
needs no lookup.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import secrets
from core.cache import TTLCache
from core.config import Settings
from core.errors import InvalidInput, NotFound
from core.models import StoredAttachment, Tenant

if TYPE_CHECKING:
    from core.hub import Hub

MAX_NAME = 200
MAX_PER_MESSAGE = 10
SIGNING_PURPOSE = "attachment-link"
# type/subtype as RFC 6838 allows them, lower case, within what the column holds.
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
MAX_CONTENT_TYPE = 100
# Types a browser may show in place; anything else is served as a download. Served from the
# tenant's own domain, an uploaded HTML or SVG file shown in place could run script there.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"})
# What a file name may not contain beyond "/" and "\\" (and what NFKC folds to them, such as U+FF0F
# FULLWIDTH SOLIDUS): characters drawn as a slash that no normalisation maps to one.
_SLASHES = frozenset("\u2044\u2215\u2216\u2571\u2572\u27cb\u27cd\u29f5\u29f8\u29f9\u0337\u0338\u1735")
_UNSEEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_JOINERS = frozenset("\u200c\u200d")  # ZERO WIDTH NON-JOINER, ZERO WIDTH JOINER


@dataclass(frozen=True)
class File:
    id: int
    name: str
    content_type: str
    size: int
    sha256: str
    data: bytes


def _bad_name(message: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_attachment_name")


def _unseen(c: str) -> bool:
    """A character that changes how the name reads without being seen: controls, bidi and other
    format characters (U+202E RIGHT-TO-LEFT OVERRIDE before "fdp.exe" shows it as "exe.pdf"),
    line and paragraph separators, lone surrogates. The zero-width joiners stay: emoji sequences
    and several scripts need them, and they change no order."""
    return unicodedata.category(c) in _UNSEEN_CATEGORIES and c not in _JOINERS


def check_name(raw: str | None) -> str:
    """A file name as the customer will see it: 1-200 characters in NFC, no folders, nothing
    invisible and nothing that looks like a slash. Refused rather than rewritten, so the name an
    agent sees is the name the customer sees (docs/api.md, *Attachments*)."""
    if raw is None or not raw.strip():
        raise _bad_name("the file name is required: ?name=<file name>")
    name = unicodedata.normalize("NFC", raw.strip())
    if len(name) > MAX_NAME:
        raise _bad_name(f"the file name is at most {MAX_NAME} characters")
    # Compatibility forms fold to what they look like: a fullwidth solidus (U+FF0F) is a "/", two
    # fullwidth full stops are "..".
    folded = unicodedata.normalize("NFKC", name)
    if "/" in folded or "\\" in folded or folded in (".", "..") or any(c in _SLASHES for c in name):
        raise _bad_name("the file name may not contain a path (/, \\ or a character that looks like one)")
    for c in name:
        if _unseen(c):
            what = unicodedata.name(c, "a control character")
            raise _bad_name(f"the file name may not contain U+{ord(c):04X} ({what}): "
                            "control, format and direction characters are refused")
    return name


def sanitize_name(raw: str | None, fallback: str = "file") -> str:
    """A customer's file name made acceptable to :func:`check_name` rather than refused (a customer
    cannot rename a file the way an agent is asked to): what is invisible is dropped, what is or
    looks like a slash becomes "_", and a long name is cut to 200 characters keeping its extension."""
    if raw is None or not raw.strip():
        raise _bad_name("the file name is required: ?name=<file name>")
    out = []
    for c in unicodedata.normalize("NFC", raw.strip()):
        if _unseen(c):
            continue
        folded = unicodedata.normalize("NFKC", c)
        out.append("_" if "/" in folded or "\\" in folded or c in _SLASHES else c)
    name = "".join(out).strip()
    if unicodedata.normalize("NFKC", name).strip(".") == "":
        name = fallback
    if len(name) > MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        ext = ext if dot and stem and len(ext) <= 16 else ""
        name = name[:MAX_NAME - len(ext) - (1 if ext else 0)].rstrip() + (f".{ext}" if ext else "")
    return check_name(name)


def check_content_type(raw: str | None) -> str:
    """The upload's Content-Type without parameters (``application/octet-stream`` when none is given)."""
    value = (raw or "").split(";", 1)[0].strip().lower() or "application/octet-stream"
    if len(value) > MAX_CONTENT_TYPE or not _CONTENT_TYPE.fullmatch(value):
        raise InvalidInput("Content-Type must be a media type such as image/png", code="invalid_content_type")
    return value


# What the first bytes of a file of each type are (its "magic"): an upload whose bytes are not what
# its Content-Type says is refused, so a page or a script can't pass for a picture. Types not
# listed here (an operator's own additions) are taken as declared.
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # the old Office formats (.doc, .xls, .ppt)
_ZIP = (b"PK\x03\x04",)  # Office Open XML and OpenDocument are zip archives
_MAGIC: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "application/pdf": (b"%PDF-",),
    "application/msword": (_OLE2,),
    "application/vnd.ms-excel": (_OLE2,),
    "application/vnd.ms-powerpoint": (_OLE2,),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": _ZIP,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": _ZIP,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": _ZIP,
    "application/vnd.oasis.opendocument.text": _ZIP,
    "application/vnd.oasis.opendocument.spreadsheet": _ZIP,
    "application/vnd.oasis.opendocument.presentation": _ZIP,
}
# ISO base media files (HEIC/HEIF pictures): "ftyp" at offset 4, then the major brand.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif"})
_TEXT_TYPES = frozenset({"text/plain", "text/csv"})


def content_matches(content_type: str, data: bytes) -> bool:
    """Whether ``data`` is what ``content_type`` says: the type's magic bytes; for text, that it
    decodes as UTF-8 or GB 18030 (what Chinese Windows writes) and holds no NUL byte."""
    if content_type in _MAGIC:
        return data.startswith(_MAGIC[content_type])
    if content_type == "image/webp":
        return data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    if content_type in ("image/heic", "image/heif"):
        return data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS
    if content_type in _TEXT_TYPES:
        if b"\x00" in data:
            return False
        for encoding in ("utf-8", "gb18030"):
            try:
                data.decode(encoding)
            except UnicodeDecodeError:
                continue
            return True
        return False
    return True


def agent_url(attachment_id: int) -> str:
    return f"/api/v1/attachments/{attachment_id}"


def _signed(tenant_id: int, attachment_id: int) -> str:
    return f"{tenant_id}:{attachment_id}"


def signature(settings: Settings, tenant_id: int, attachment_id: int) -> str:
    return secrets.sign(settings, SIGNING_PURPOSE, _signed(tenant_id, attachment_id))


def public_path(settings: Settings, tenant_id: int, attachment_id: int) -> str:
    """The customer's link, relative to the tenant's domain (the widget resolves it against its origin)."""
    return f"/files/{attachment_id}/{signature(settings, tenant_id, attachment_id)}"


class _Described(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def content_type(self) -> str: ...
    @property
    def size(self) -> int: ...


def attachment_dict(row: _Described) -> dict[str, Any]:
    """What a message keeps of an attachment, and what the upload answers."""
    return {"id": row.id, "name": row.name, "content_type": row.content_type, "size": row.size,
            "url": agent_url(row.id)}


def for_customer(settings: Settings, tenant_id: int, attachments: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Attachments as a customer gets them: our own files by their signed link, without our ids."""
    out: list[dict[str, Any]] = []
    for att in attachments:
        if att.get("id") is None:
            out.append(dict(att))
        else:
            out.append({"name": att["name"], "content_type": att["content_type"], "size": att["size"],
                        "url": public_path(settings, tenant_id, int(att["id"]))})
    return out


_domains: TTLCache[int, str] = TTLCache(60.0)


async def public_url(hub: Hub, tenant_id: int, attachment_id: int) -> str:
    """The customer's link in full, for channels that show it as text (tenant domains are served over HTTPS)."""

    async def load() -> str | None:
        async with hub.db.read() as session:
            return (await session.execute(select(Tenant.domain).where(Tenant.id == tenant_id))).scalar_one()

    domain = await _domains.get(tenant_id, load)
    return f"https://{domain}{public_path(hub.settings, tenant_id, attachment_id)}"


async def store(hub: Hub, tenant_id: int, agent_id: int | None, name: str, content_type: str,
                data: bytes) -> dict[str, Any]:
    async with hub.db.session(tenant_id) as session:
        return await add(session, tenant_id, agent_id, name, content_type, data)


async def add(session: AsyncSession, tenant_id: int, agent_id: int | None, name: str, content_type: str,
              data: bytes) -> dict[str, Any]:
    """Store a file in the caller's transaction (a channel records who sent it in the same one);
    ``agent_id`` is None for a customer's file."""
    row = StoredAttachment(tenant_id=tenant_id, uploaded_by_agent_id=agent_id, name=name,
                           content_type=content_type, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                           data=data)
    session.add(row)
    await session.flush()
    return attachment_dict(row)


def _not_found(attachment_id: int) -> NotFound:
    return NotFound(f"attachment {attachment_id} not found", code="attachment_not_found")


async def load(hub: Hub, tenant_id: int, attachment_id: int) -> File:
    """The file with its bytes; another tenant's id is not found, exactly like a missing one."""
    async with hub.db.read(tenant_id) as session:
        row = (await session.execute(
            select(StoredAttachment.id, StoredAttachment.name, StoredAttachment.content_type, StoredAttachment.size,
                   StoredAttachment.sha256, StoredAttachment.data).where(StoredAttachment.id == attachment_id)
        )).one_or_none()
    if row is None:
        raise _not_found(attachment_id)
    return File(*row)


async def load_signed(hub: Hub, tenant_id: int, attachment_id: int, signature_: str) -> File:
    """A file by the customer's link; a wrong signature is not found, like a missing id."""
    if not secrets.verify(hub.settings, SIGNING_PURPOSE, _signed(tenant_id, attachment_id), signature_):
        raise _not_found(attachment_id)
    return await load(hub, tenant_id, attachment_id)


async def for_message(session: AsyncSession, attachment_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The descriptions a message keeps, in the order given (repeats dropped). Run in the message's
    own (tenant-scoped) transaction: an id that is missing or another tenant's refuses the message."""
    wanted = list(dict.fromkeys(attachment_ids))
    if len(wanted) > MAX_PER_MESSAGE:
        raise InvalidInput(f"a message has at most {MAX_PER_MESSAGE} attachments", code="too_many_attachments")
    if not wanted:
        return []
    rows = {row.id: row for row in (await session.execute(
        select(StoredAttachment.id, StoredAttachment.name, StoredAttachment.content_type, StoredAttachment.size)
        .where(StoredAttachment.id.in_(wanted))
    )).all()}
    for attachment_id in wanted:
        if attachment_id not in rows:
            raise _not_found(attachment_id)
    return [attachment_dict(rows[i]) for i in wanted]


def disposition(file: File) -> dict[str, str]:
    """Headers that serve a file safely from the tenant's domain."""
    from urllib.parse import quote

    how = "inline" if file.content_type in INLINE_TYPES else "attachment"
    return {
        "Content-Disposition": f"{how}; filename*=UTF-8''{quote(file.name, safe='')}",
        "X-Content-Type-Options": "nosniff",
        # Even a file shown in place runs nothing and reaches nothing of the tenant's site.
        "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self'; media-src 'self'",
        "ETag": f'"{file.sha256}"',
    }
