"""The WeChat channel's settings, from ``CHANNELHUB_WECHAT_*`` / ``CHANNELHUB_WECOM_*`` variables."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import env_bool, env_value


@dataclass(frozen=True)
class WeChatSettings:
    # The platforms' APIs; tests and staging point these at a stand-in.
    api_base: str = "https://api.weixin.qq.com"
    wecom_api_base: str = "https://qyapi.weixin.qq.com"
    # Largest WeChat push we read (the platform's own are a few KiB).
    max_push_bytes: int = 64 * 1024
    # Fetch media in the background as soon as a message is stored (else on first read).
    prefetch_media: bool = True
    # How far (seconds, either way) a push's signed timestamp may be from our clock. The plain
    # mode signature covers only token, timestamp and nonce, not the body: without a window one
    # signature seen once would sign any body for ever. The platform pushes within seconds and
    # retries for 15 s; 5 minutes leaves room for clock skew, as the platform's SDKs do.
    timestamp_window: int = 300

    @classmethod
    def from_env(cls, env: dict[str, str]) -> WeChatSettings:
        d = cls()
        return cls(
            api_base=(env_value(env, "WECHAT_API_BASE") or d.api_base).rstrip("/"),
            wecom_api_base=(env_value(env, "WECOM_API_BASE") or d.wecom_api_base).rstrip("/"),
            max_push_bytes=int(env_value(env, "WECHAT_MAX_PUSH_BYTES") or d.max_push_bytes),
            prefetch_media=env_bool(env_value(env, "WECHAT_PREFETCH_MEDIA"), default=d.prefetch_media),
            timestamp_window=int(env_value(env, "WECHAT_TIMESTAMP_WINDOW") or d.timestamp_window),
        )
