"""Channel credentials at rest: encrypted with one key, never logged, shown masked.

The key comes from ``CHANNELHUB_SECRET_KEY`` (a Fernet key, or any passphrase, which is stretched
with SHA-256). In the embedded mode with no key set, one is generated once into
``./var/secret.key`` (0600). Several processes must share the key: set it explicitly in
production, where the file would differ per machine.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from core.config import Settings

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_keys: dict[tuple[str | None, str], bytes] = {}
_cache: dict[tuple[str | None, str], Fernet] = {}


class SecretError(Exception):
    """A stored secret could not be decrypted (wrong or rotated key)."""


def _fernet_key(material: str) -> bytes:
    raw = material.strip().encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except (ValueError, TypeError):
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())


def _key_file(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting at once cannot each write a different key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    key = Fernet.generate_key()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    logger.warning("generated a new secret key in %s; back it up (channel credentials need it)", path)
    return key.decode()


def _key(settings: Settings) -> bytes:
    ident = (settings.secret_key, settings.secret_key_file)
    with _lock:
        found = _keys.get(ident)
        if found is None:
            material = settings.secret_key or _key_file(Path(settings.secret_key_file))
            if not settings.secret_key and settings.redis_url:
                logger.warning("CHANNELHUB_SECRET_KEY is not set: every process must read the same %s",
                               settings.secret_key_file)
            found = _keys[ident] = _fernet_key(material)
        return found


def fingerprint(material: str) -> str:
    """A short name of a key (or passphrase) that reveals nothing of it: backups record it, so a
    restore can tell whether the key it will run with is the one the credentials were encrypted with."""
    return hashlib.sha256(b"channelhub key fingerprint\0" + _fernet_key(material)).hexdigest()[:16]


def key_fingerprint(settings: Settings) -> str | None:
    """The fingerprint of the configured key, without generating one: None when no key is set and
    ``secret_key_file`` does not exist (nothing was ever encrypted then)."""
    if settings.secret_key:
        return fingerprint(settings.secret_key)
    path = Path(settings.secret_key_file)
    return fingerprint(path.read_text()) if path.exists() else None


def fernet(settings: Settings) -> Fernet:
    ident = (settings.secret_key, settings.secret_key_file)
    found = _cache.get(ident)
    if found is None:
        found = _cache[ident] = Fernet(_key(settings))
    return found


def sign(settings: Settings, purpose: str, message: str) -> str:
    """A URL-safe HMAC-SHA256 of ``message`` (32 characters), under a key derived from the secret key
    for ``purpose`` alone: a signature made for one use is worth nothing for another."""
    key = hmac.new(_key(settings), f"channelhub:{purpose}".encode(), hashlib.sha256).digest()
    mac = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:24]).decode()


def verify(settings: Settings, purpose: str, message: str, signature: str) -> bool:
    return hmac.compare_digest(sign(settings, purpose, message).encode(), signature.encode())


def encrypt(settings: Settings, value: str) -> str:
    return fernet(settings).encrypt(value.encode()).decode()


def decrypt(settings: Settings, value: str) -> str:
    try:
        return fernet(settings).decrypt(value.encode()).decode()
    except InvalidToken:
        raise SecretError("a stored secret cannot be decrypted with the configured key") from None


def mask(value: str | None) -> str | None:
    """What the API shows of a secret: enough to recognise it, not to use it."""
    if not value:
        return None
    return "****" + value[-4:] if len(value) >= 12 else "****"
