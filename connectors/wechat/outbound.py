"""What WeChat takes in a reply: which of our files go as which kind of temporary media on each
kind of account, and the platform's size limits for them (used by the connector's ``send``)."""

from __future__ import annotations

from typing import Any

from core.errors import DeliveryError

# What each kind of account takes as temporary media, by content type (anything else is a "file"
# on WeCom kf and a link on an Official Account, which has no file messages). Formats beyond these
# the platform refuses (e.g. WebP images, MP3 voice on WeCom), so they go as files or links too.
MEDIA_TYPES = {
    "oa": {"image/jpeg": "image", "image/png": "image", "image/gif": "image", "audio/amr": "voice",
           "audio/mpeg": "voice", "video/mp4": "video"},
    "kf": {"image/jpeg": "image", "image/png": "image", "audio/amr": "voice", "video/mp4": "video"},
}
# The platform's size limits for temporary media.
MEDIA_LIMITS = {"image": 10 * 2**20, "voice": 2 * 2**20, "video": 10 * 2**20, "file": 20 * 2**20}
# One message to send, and the id of our attachment whose upload it carries (None for text).
Payload = tuple[dict[str, Any], int | None]
# The platform does not know (or no longer knows) a media_id.
INVALID_MEDIA_ID = 40007


def media_type(account_kind: str, content_type: str) -> str | None:
    """How a file of ``content_type`` goes out on this kind of account: a media type, or None for a link."""
    found = MEDIA_TYPES.get(account_kind, {}).get(content_type)
    return found or ("file" if account_kind == "kf" else None)


def media_payload(mtype: str, media_id: str) -> dict[str, Any]:
    return {"msgtype": mtype, mtype: {"media_id": media_id}}


def size_mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def unreachable(exc: Exception) -> DeliveryError:
    """Network trouble or a 5xx answer (PlatformUnavailable): worth another try."""
    return DeliveryError(f"WeChat is unreachable: {exc}", retry=True, code="network_error")
