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
    # How often the SLA sweeper (core.sla) looks for deadlines due, in the process holding its
    # lease; 0: this process never sweeps.
    sla_interval: float = 5.0
    # The operator's API (admin_api/operator) is served on this host only, and nothing else is;
    # unset: no operator API (`make run` sets operator.localhost).
    operator_host: str | None = None
    # /metrics (web/ops.py) shows tenant ids and load. Set: a scrape must carry
    # ``Authorization: Bearer <token>``, from any address. Unset: only loopback clients may scrape
    # (behind a reverse proxy on the same machine every client looks like loopback: set a token).
    metrics_token: str | None = None
    # How often this process looks for contracts due (renewal, lapse, end): core.billing.due; 0: never.
    billing_interval: float = 3600.0
    # How often this process looks for tenant purges to run (asked for, or interrupted) and for
    # tenants whose retention ran out (core.purge); 0: never. Rows deleted per transaction.
    purge_interval: float = 60.0
    purge_chunk: int = 2000
    # How often this process lets the reports' rollups read new events (core.rollups); 0: never.
    reports_interval: float = 10.0
    # Graceful degradation (core.breakers): a subsystem (billing, statistics, reports) whose work
    # fails this many times in a row is switched off automatically for breaker_cooldown seconds,
    # then tried once; while trials fail the cooldown doubles up to breaker_cooldown_max. Each
    # process re-reads the shared state at least every breaker_refresh seconds (changes are
    # announced on the bus at once; this bounds a lost announcement).
    breaker_failures: int = 3
    breaker_cooldown: float = 60.0
    breaker_cooldown_max: float = 3600.0
    breaker_refresh: float = 5.0
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
    # The prober (`channelhub probe`, #15): the secret that marks probe traffic (core.probes; a hub
    # without it refuses probes, a prober without it does not start), how often each active
    # tenant is probed, how long one tenant's checks may take, how many tenants are probed at
    # once, and where the hub is reached: a URL every request goes to with the tenant's domain
    # as its Host, or a template with {domain} (https://{domain}); unset, http://<domain>.
    probe_secret: str | None = None
    probe_interval: float = 30.0
    probe_timeout: float = 10.0
    probe_concurrency: int = 20
    probe_base_url: str | None = None
    # Backups (`channelhub backup`, core.backups, docs/operations.md): where they are written, how
    # many days of them are kept, and how often `serve` makes one (seconds; 0: never, cron runs
    # `channelhub backup` instead). With several processes one of them makes each (a lease).
    backup_dir: str = "./var/backups"
    backup_keep_days: int = 7
    backup_interval: float = 0.0
    # Excel exports (core.exports, #16): the folder the files are written to (shared storage when
    # serve processes run on several machines: any of them may build a file or serve it), how long
    # a finished file is kept, how long a download link is good for, how often a process looks for
    # queued exports, and whether this process builds exports at all.
    export_dir: str = "./var/exports"
    export_keep_hours: float = 24.0
    export_link_seconds: float = 3600.0
    export_poll_interval: float = 2.0
    export_worker: bool = True
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
            sla_interval=float(get("SLA_INTERVAL") or defaults.sla_interval),
            operator_host=(get("OPERATOR_HOST") or "").strip().lower().rstrip(".") or None,
            metrics_token=get("METRICS_TOKEN"),
            billing_interval=float(get("BILLING_INTERVAL") or defaults.billing_interval),
            purge_interval=float(get("PURGE_INTERVAL") or defaults.purge_interval),
            purge_chunk=int(get("PURGE_CHUNK") or defaults.purge_chunk),
            reports_interval=float(get("REPORTS_INTERVAL") or defaults.reports_interval),
            breaker_failures=int(get("BREAKER_FAILURES") or defaults.breaker_failures),
            breaker_cooldown=float(get("BREAKER_COOLDOWN") or defaults.breaker_cooldown),
            breaker_cooldown_max=float(get("BREAKER_COOLDOWN_MAX") or defaults.breaker_cooldown_max),
            breaker_refresh=float(get("BREAKER_REFRESH") or defaults.breaker_refresh),
            log_level=get("LOG_LEVEL") or defaults.log_level,
            secret_key=get("SECRET_KEY"),
            secret_key_file=get("SECRET_KEY_FILE") or defaults.secret_key_file,
            inbox_drain=env_bool(get("INBOX_DRAIN"), default=True),
            operator_name=get("OPERATOR_NAME") or defaults.operator_name,
            operator_address=get("OPERATOR_ADDRESS") or defaults.operator_address,
            operator_tax_id=get("OPERATOR_TAX_ID") or defaults.operator_tax_id,
            probe_secret=get("PROBE_SECRET"),
            probe_interval=float(get("PROBE_INTERVAL") or defaults.probe_interval),
            probe_timeout=float(get("PROBE_TIMEOUT") or defaults.probe_timeout),
            probe_concurrency=int(get("PROBE_CONCURRENCY") or defaults.probe_concurrency),
            probe_base_url=get("PROBE_BASE_URL"),
            backup_dir=get("BACKUP_DIR") or defaults.backup_dir,
            backup_keep_days=int(get("BACKUP_KEEP_DAYS") or defaults.backup_keep_days),
            backup_interval=float(get("BACKUP_INTERVAL") or defaults.backup_interval),
            export_dir=get("EXPORT_DIR") or defaults.export_dir,
            export_keep_hours=float(get("EXPORT_KEEP_HOURS") or defaults.export_keep_hours),
            export_link_seconds=float(get("EXPORT_LINK_SECONDS") or defaults.export_link_seconds),
            export_poll_interval=float(get("EXPORT_POLL_INTERVAL") or defaults.export_poll_interval),
            export_worker=env_bool(get("EXPORT_WORKER"), default=True),
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
