"""The WeChat (and WeCom) HTTP API over aiohttp, with one access token per account shared by all
processes.

wechatpy's clients are blocking and hard-code their URLs (FACTS.md), and these endpoints are plain
JSON, so we call them ourselves; the base URLs come from settings so tests use a stand-in.

The token lives in Redis when configured, else in the database (connectors/wechat/store.py), and in a
small per-process cache in front. Only one process refreshes it at a time (a Redis SET NX lock
or a database lease); the others wait for the new token rather than each fetching one (a new
token makes the previous one expire within minutes, so a stampede would break the others).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp

from connectors.wechat import store as wechat_store
from connectors.wechat.settings import WeChatSettings
from connectors.wechat.store import AccountConfig
from core import secrets
from core.models import utcnow

if TYPE_CHECKING:
    from core.hub import Hub

logger = logging.getLogger(__name__)

# The platform's "this token is not (or no longer) valid" codes: refresh once and retry.
TOKEN_ERRORS = frozenset({40001, 40014, 42001})
# Refresh a little before expiry, so a token is never used in its last minutes.
EARLY_REFRESH = timedelta(seconds=300)
LOCK_SECONDS = 10.0
WAIT_FOR_OTHER = 5.0
MAX_MEDIA_BYTES = 20 * 1024 * 1024
# A file of up to 20 MB can take longer than a JSON call's 15 s to reach the platform.
UPLOAD_TIMEOUT = aiohttp.ClientTimeout(total=120, connect=5)
# Form fields of a multipart upload: field name -> (file name, content type, bytes).
Files = dict[str, tuple[str, str, bytes]]


class ApiError(Exception):
    """The platform answered with a non-zero errcode."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


class PlatformUnavailable(Exception):
    """Network trouble or a 5xx answer: worth another try later."""


class WeChatApi:
    def __init__(self, hub: Hub, settings: WeChatSettings) -> None:
        self.hub = hub
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._redis: Any = None
        self._local: dict[int, tuple[str, datetime]] = {}
        self._fetching: dict[int, asyncio.Lock] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15, connect=5))
        return self._session

    def base(self, account: AccountConfig) -> str:
        s = self.settings
        return s.wecom_api_base if account.kind == "kf" else s.api_base

    # --- HTTP ---------------------------------------------------------------------------------
    async def _json(self, method: str, url: str, *, params: dict[str, str], json_body: Any = None,
                    files: Files | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"params": params, "json": json_body}
        if files:
            # A new form each time: a form is spent once sent, and a refused token sends it again.
            form = aiohttp.FormData()
            for field, (filename, content_type, content) in files.items():
                form.add_field(field, content, filename=filename, content_type=content_type)
            kwargs.update(data=form, timeout=UPLOAD_TIMEOUT)
        try:
            async with self.session().request(method, url, **kwargs) as resp:
                if resp.status >= 500:
                    raise PlatformUnavailable(f"HTTP {resp.status}")
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise PlatformUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(data, dict):
            raise PlatformUnavailable("the platform answered something that is not a JSON object")
        return data

    async def call(self, account: AccountConfig, method: str, path: str, *, json_body: Any = None,
                   params: dict[str, str] | None = None, files: Files | None = None) -> dict[str, Any]:
        """One API call with the shared token; an invalid token is refreshed once and the call retried."""
        token = await self.token(account)
        for attempt in range(2):
            data = await self._json(method, self.base(account) + path,
                                    params={**(params or {}), "access_token": token}, json_body=json_body,
                                    files=files)
            errcode = int(data.get("errcode") or 0)
            if errcode in TOKEN_ERRORS and attempt == 0:
                logger.info("wechat account %s: token refused (%s); refreshing once", account.id, errcode)
                token = await self.token(account, stale=token)
                continue
            if errcode != 0:
                raise ApiError(errcode, str(data.get("errmsg") or ""))
            return data
        raise AssertionError("unreachable")

    async def upload(self, account: AccountConfig, media_type: str, name: str, content_type: str,
                     content: bytes) -> str:
        """Upload temporary media (kept 3 days by the platform; the same path on WeCom); its media_id."""
        data = await self.call(account, "POST", "/cgi-bin/media/upload", params={"type": media_type},
                               files={"media": (name, content_type, content)})
        media_id = data.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise ApiError(-2, "the media upload answered without a media_id")
        return media_id

    async def download(self, account: AccountConfig, media_id: str) -> tuple[str, bytes]:
        """A customer's media through the media API (temporary media live 3 days on the platform)."""
        token = await self.token(account)
        for attempt in range(2):
            try:
                async with self.session().get(self.base(account) + "/cgi-bin/media/get",
                                              params={"access_token": token, "media_id": media_id}) as resp:
                    if resp.status >= 500:
                        raise PlatformUnavailable(f"HTTP {resp.status}")
                    content_type = resp.headers.get("Content-Type", "application/octet-stream").split(";")[0]
                    body = await resp.content.read(MAX_MEDIA_BYTES + 1)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise PlatformUnavailable(f"{type(exc).__name__}: {exc}") from exc
            if len(body) > MAX_MEDIA_BYTES:
                raise ApiError(-2, "media larger than we keep")
            if content_type in ("application/json", "text/plain"):
                import json

                data = json.loads(body or b"{}")
                errcode = int(data.get("errcode") or 0)
                if errcode in TOKEN_ERRORS and attempt == 0:
                    token = await self.token(account, stale=token)
                    continue
                if errcode:
                    raise ApiError(errcode, str(data.get("errmsg") or ""))
                if data.get("video_url"):  # videos come as a link to the file
                    async with self.session().get(data["video_url"]) as resp:
                        return resp.headers.get("Content-Type", "video/mp4"), await resp.content.read(MAX_MEDIA_BYTES)
                raise ApiError(-2, "the media API answered JSON without media")
            return content_type, body
        raise AssertionError("unreachable")

    # --- the access token ---------------------------------------------------------------------
    async def token(self, account: AccountConfig, *, stale: str | None = None) -> str:
        """A valid token; ``stale`` is one the platform just refused, which must not be handed out again."""
        if stale is not None and self._local.get(account.id, ("",))[0] == stale:
            self._local.pop(account.id, None)
        hit = self._local.get(account.id)
        if hit is not None and hit[1] - EARLY_REFRESH > utcnow():
            return hit[0]
        lock = self._fetching.setdefault(account.id, asyncio.Lock())
        async with lock:  # one fetch per process; the shared lock below is for the other processes
            hit = self._local.get(account.id)
            if hit is not None and hit[1] - EARLY_REFRESH > utcnow() and hit[0] != stale:
                return hit[0]
            token, expires = await self._shared_token(account, stale)
            self._local[account.id] = (token, expires)
            return token

    def _usable(self, found: tuple[str, datetime] | None, stale: str | None) -> bool:
        return found is not None and found[0] != stale and found[1] - EARLY_REFRESH > utcnow()

    async def _shared_token(self, account: AccountConfig, stale: str | None) -> tuple[str, datetime]:
        found = await self._store_get(account)
        if found is not None and self._usable(found, stale):
            return found
        deadline = time.monotonic() + WAIT_FOR_OTHER
        while True:
            if await self._store_lock(account):
                try:
                    found = await self._store_get(account)  # someone may have refreshed meanwhile
                    if found is not None and self._usable(found, stale):
                        await self._store_unlock(account)
                        return found
                    token, expires = await self._fetch(account)
                except BaseException:
                    await self._store_unlock(account)
                    raise
                await self._store_put(account, token, expires)
                return token, expires
            # Another process is fetching: wait for its token instead of invalidating it.
            await asyncio.sleep(0.05)
            found = await self._store_get(account)
            if found is not None and self._usable(found, stale):
                return found
            if time.monotonic() > deadline:
                logger.warning("wechat account %s: token refresh by another process is slow; fetching", account.id)
                token, expires = await self._fetch(account)
                await self._store_put(account, token, expires)
                return token, expires

    async def _fetch(self, account: AccountConfig) -> tuple[str, datetime]:
        if account.kind == "kf":
            path, params = "/cgi-bin/gettoken", {"corpid": account.app_id, "corpsecret": account.secret}
        else:
            path = "/cgi-bin/token"
            params = {"grant_type": "client_credential", "appid": account.app_id, "secret": account.secret}
        data = await self._json("GET", self.base(account) + path, params=params)
        errcode = int(data.get("errcode") or 0)
        if errcode or not data.get("access_token"):
            raise ApiError(errcode or -2, str(data.get("errmsg") or "no access_token in the answer"))
        expires_in = int(data.get("expires_in") or 7200)
        logger.info("wechat account %s: fetched a new access token (expires in %ss)", account.id, expires_in)
        return str(data["access_token"]), utcnow() + timedelta(seconds=expires_in)

    # --- where the token is shared: Redis, else the database ----------------------------------
    def _redis_client(self) -> Any:
        if self._redis is None:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(self.hub.settings.redis_url or "")
        return self._redis

    def _rkey(self, account: AccountConfig, what: str) -> str:
        return f"{self.hub.settings.queue_namespace}:wechat:{what}:{account.id}"

    async def _store_get(self, account: AccountConfig) -> tuple[str, datetime] | None:
        if self.hub.settings.redis_url:
            raw = await self._redis_client().get(self._rkey(account, "token"))
            if not raw:
                return None
            expires, _, enc = raw.decode().partition("|")
            return secrets.decrypt(self.hub.settings, enc), datetime.fromtimestamp(float(expires), UTC)
        return await wechat_store.db_token(self.hub, account)

    async def _store_put(self, account: AccountConfig, token: str, expires: datetime) -> None:
        if self.hub.settings.redis_url:
            value = f"{expires.timestamp()}|{secrets.encrypt(self.hub.settings, token)}"
            ttl = max(int((expires - utcnow()).total_seconds()), 1)
            r = self._redis_client()
            await r.set(self._rkey(account, "token"), value, ex=ttl)
            await r.delete(self._rkey(account, "lock"))
            return
        await wechat_store.db_token_store(self.hub, account, token, expires)

    async def _store_lock(self, account: AccountConfig) -> bool:
        if self.hub.settings.redis_url:
            return bool(await self._redis_client().set(self._rkey(account, "lock"), "1", nx=True,
                                                        px=int(LOCK_SECONDS * 1000)))
        return await wechat_store.db_token_lock(self.hub, account, LOCK_SECONDS)

    async def _store_unlock(self, account: AccountConfig) -> None:
        try:
            if self.hub.settings.redis_url:
                await self._redis_client().delete(self._rkey(account, "lock"))
            else:
                found = await wechat_store.db_token(self.hub, account)
                await wechat_store.db_token_store(self.hub, account, *(found or (None, None)))
        except Exception:
            logger.exception("wechat account %s: releasing the token lock failed (it expires)", account.id)
