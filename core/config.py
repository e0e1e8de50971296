"""Settings from ``CHANNELHUB_*`` environment variables (and an optional ``.env`` file).

The defaults give the embedded mode: a SQLite file under ./var, an in-process dramatiq broker and
worker, and an in-process event bus. Setting ``CHANNELHUB_DATABASE_URL`` to PostgreSQL and
``CHANNELHUB_REDIS_URL`` switches to the production shape (several processes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Self, TypeVar


def _load_dotenv(path: Path) -> None:
    """Fill os.environ from a simple KEY=VALUE file without overriding what is already set."""
    if not path.is_file():
        return
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        os.environ.setdefault(key.strip(), value.strip().strip("'\""))


def env_value(env: dict[str, str], name: str) -> str | None:
    """``CHANNELHUB_<name>`` from ``env``; unset and empty are the same."""
    value = env.get(f"CHANNELHUB_{name}")
    return value if value not in (None, "") else None


def env_bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite+aiosqlite:///./var/channelhub.db"
    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    # Run the dramatiq worker threads inside `serve`. Defaults to on in the embedded mode (no
    # Redis) and off when Redis is configured, where `channelhub worker` processes do the work.
    embedded_worker: bool = True
    worker_threads: int = 4
    # PostgreSQL connections per process (and as many again in bursts); mind max_connections.
    db_pool_size: int = 10
    # How long a request waits for a free database connection before it is answered 503 busy.
    db_pool_timeout: float = 30.0
    # Load shedding (core.batching): once the oldest write waiting for a group commit has waited
    # this long, new writes are refused with 503 busy (a busy frame on sockets) instead of queued.
    busy_after: float = 0.5
    # Slow and stuck clients (web.serving): the time to send a whole request head, the keep-alive
    # idle time, the time a request body may take between two chunks, and the open connections one
    # address may hold (0: no cap; behind a load balancer raise it or turn it off).
    header_timeout: float = 15.0
    keepalive_timeout: float = 75.0
    read_timeout: float = 30.0
    max_connections_per_address: int = 256
    queue_namespace: str = "channelhub"
    # Largest text of one message, in bytes of UTF-8 (documented in docs/api.md).
    max_message_bytes: int = 16 * 1024
    # Largest HTTP request body we accept at all (an attachment upload has its own limit below).
    max_request_bytes: int = 1024 * 1024
    # Largest file an agent may attach to a message (kept in the database, like WeChat media).
    max_attachment_bytes: int = 10 * 1024 * 1024
    # An agent who has sent nothing over the gateway for this long is taken offline.
    heartbeat_timeout: float = 60.0
    token_ttl_hours: int = 24 * 14
    # An open agent socket re-checks its token at least this often (seconds), so a revocation whose
    # bus message was missed still ends the session (core.auth, admin_api.gateway).
    session_check_seconds: float = 5.0
    # Sign-in throttling (core.logins): failures counted per account and per address over the
    # window; past the limit, a lockout of login_lockout_seconds that doubles with each further
    # failure, up to login_lockout_max_seconds. At most login_hash_concurrency argon2 checks run at
    # once in a process.
    login_account_failures: int = 5
    login_address_failures: int = 20
    login_window_seconds: float = 900.0
    login_lockout_seconds: float = 30.0
    login_lockout_max_seconds: float = 900.0
    login_hash_concurrency: int = 2
    sweeper_interval: float = 30.0
    # The operator's API (admin_api/operator) is served on this host only, and nothing else is;
    # unset: no operator API (`make run` sets operator.localhost).
    operator_host: str | None = None
    # How often this process looks for contracts due (renewal, lapse, end): core.billing.due.
    billing_interval: float = 3600.0
    # How often each prober (`channelhub probe`) probes every tenant, and the round the availability
    # report merges probes by (core.availability): keep it the same for every process.
    probe_interval: float = 30.0
    log_level: str = "INFO"
    # Key that encrypts channel credentials at rest (a Fernet key, or any passphrase). Unset in the
    # embedded mode: one is generated once into ``secret_key_file``.
    secret_key: str | None = None
    secret_key_file: str = "./var/secret.key"
    # Turn what web-hooks landed in the inbox into tickets in this process (core.inbox). Off for
    # processes that should only answer web-hooks, with others (or a later start) draining.
    inbox_drain: bool = True
    # The seller on tenants' invoices (core.statements): the operator running the hub, its postal
    # address (one line; empty leaves it off) and, where invoices need one, its tax id.
    operator_name: str = "channelhub operator"
    operator_address: str = ""
    operator_tax_id: str = ""
    # Every CHANNELHUB_* variable as it was read: each channel reads its own settings from here
    # (connectors/<kind>/settings.py), so core knows no channel's options.
    env: dict[str, str] = field(default_factory=dict)
    # Channel settings given as objects (tests, embedding), by channel kind; they win over env.
    channels: dict[str, object] = field(default_factory=dict)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        if env is None:
            _load_dotenv(Path(".env"))
            env = dict(os.environ)

        def get(name: str) -> str | None:
            return env_value(env, name)

        redis_url = get("REDIS_URL")
        defaults = cls()
        return cls(
            database_url=get("DATABASE_URL") or defaults.database_url,
            redis_url=redis_url,
            host=get("HOST") or defaults.host,
            port=int(get("PORT") or defaults.port),
            embedded_worker=env_bool(get("EMBEDDED_WORKER"), default=redis_url is None),
            worker_threads=int(get("WORKER_THREADS") or defaults.worker_threads),
            db_pool_size=int(get("DB_POOL_SIZE") or defaults.db_pool_size),
            db_pool_timeout=float(get("DB_POOL_TIMEOUT") or defaults.db_pool_timeout),
            busy_after=float(get("BUSY_AFTER") or defaults.busy_after),
            header_timeout=float(get("HEADER_TIMEOUT") or defaults.header_timeout),
            keepalive_timeout=float(get("KEEPALIVE_TIMEOUT") or defaults.keepalive_timeout),
            read_timeout=float(get("READ_TIMEOUT") or defaults.read_timeout),
            max_connections_per_address=int(get("MAX_CONNECTIONS_PER_ADDRESS") or defaults.max_connections_per_address),
            queue_namespace=get("QUEUE_NAMESPACE") or defaults.queue_namespace,
            max_message_bytes=int(get("MAX_MESSAGE_BYTES") or defaults.max_message_bytes),
            max_request_bytes=int(get("MAX_REQUEST_BYTES") or defaults.max_request_bytes),
            max_attachment_bytes=int(get("MAX_ATTACHMENT_BYTES") or defaults.max_attachment_bytes),
            heartbeat_timeout=float(get("HEARTBEAT_TIMEOUT") or defaults.heartbeat_timeout),
            token_ttl_hours=int(get("TOKEN_TTL_HOURS") or defaults.token_ttl_hours),
            session_check_seconds=float(get("SESSION_CHECK_SECONDS") or defaults.session_check_seconds),
            login_account_failures=int(get("LOGIN_ACCOUNT_FAILURES") or defaults.login_account_failures),
            login_address_failures=int(get("LOGIN_ADDRESS_FAILURES") or defaults.login_address_failures),
            login_window_seconds=float(get("LOGIN_WINDOW_SECONDS") or defaults.login_window_seconds),
            login_lockout_seconds=float(get("LOGIN_LOCKOUT_SECONDS") or defaults.login_lockout_seconds),
            login_lockout_max_seconds=float(get("LOGIN_LOCKOUT_MAX_SECONDS") or defaults.login_lockout_max_seconds),
            login_hash_concurrency=int(get("LOGIN_HASH_CONCURRENCY") or defaults.login_hash_concurrency),
            sweeper_interval=float(get("SWEEPER_INTERVAL") or defaults.sweeper_interval),
            operator_host=(get("OPERATOR_HOST") or "").strip().lower().rstrip(".") or None,
            billing_interval=float(get("BILLING_INTERVAL") or defaults.billing_interval),
            probe_interval=float(get("PROBE_INTERVAL") or defaults.probe_interval),
            log_level=get("LOG_LEVEL") or defaults.log_level,
            secret_key=get("SECRET_KEY"),
            secret_key_file=get("SECRET_KEY_FILE") or defaults.secret_key_file,
            inbox_drain=env_bool(get("INBOX_DRAIN"), default=True),
            operator_name=get("OPERATOR_NAME") or defaults.operator_name,
            operator_address=get("OPERATOR_ADDRESS") or defaults.operator_address,
            operator_tax_id=get("OPERATOR_TAX_ID") or defaults.operator_tax_id,
            env={k: v for k, v in env.items() if k.startswith("CHANNELHUB_")},
        )

    def channel(self, kind: str, cls: type[ChannelSettingsT]) -> ChannelSettingsT:
        """A channel's settings: the object given in ``channels``, else read from ``env``."""
        given = self.channels.get(kind)
        if given is None:
            return cls.from_env(self.env)
        if not isinstance(given, cls):
            raise TypeError(f"settings for channel {kind!r} must be a {cls.__name__}, not {type(given).__name__}")
        return given


class ChannelSettings(Protocol):
    @classmethod
    def from_env(cls, env: dict[str, str]) -> Self: ...


ChannelSettingsT = TypeVar("ChannelSettingsT", bound=ChannelSettings)
