"""Web chat's settings, from ``CHANNELHUB_WEBCHAT_*`` variables: what a visitor may upload."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import env_value

# What a visitor may send: pictures, PDF, the common office documents and plain text. Anything a
# browser could run when opened from the tenant's domain (HTML, SVG, scripts) is not among them.
UPLOAD_TYPES: tuple[str, ...] = (
    "image/png", "image/jpeg", "image/gif", "image/webp", "image/heic", "image/heif",
    "application/pdf",
    "application/msword", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-excel", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.ms-powerpoint", "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
    "text/plain", "text/csv",
)


@dataclass(frozen=True)
class WebchatSettings:
    # The largest file a visitor may upload; lower than agents' (CHANNELHUB_MAX_ATTACHMENT_BYTES).
    max_upload_bytes: int = 5 * 1024 * 1024
    # At most this many uploads per visitor within upload_window_seconds (counted in the database,
    # so every hub process holds the same limit).
    uploads_per_window: int = 20
    upload_window_seconds: float = 600.0
    upload_types: tuple[str, ...] = UPLOAD_TYPES

    @classmethod
    def from_env(cls, env: dict[str, str]) -> WebchatSettings:
        d = cls()
        types = env_value(env, "WEBCHAT_UPLOAD_TYPES")
        return cls(
            max_upload_bytes=int(env_value(env, "WEBCHAT_MAX_UPLOAD_BYTES") or d.max_upload_bytes),
            uploads_per_window=int(env_value(env, "WEBCHAT_UPLOADS_PER_WINDOW") or d.uploads_per_window),
            upload_window_seconds=float(env_value(env, "WEBCHAT_UPLOAD_WINDOW_SECONDS") or d.upload_window_seconds),
            upload_types=tuple(t.strip().lower() for t in types.split(",") if t.strip()) if types else d.upload_types,
        )
