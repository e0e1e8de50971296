"""The email channel's settings, from ``CHANNELHUB_SMTP_*`` / ``CHANNELHUB_EMAIL_*`` variables."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import env_bool, env_value

# The receiver's port in the embedded mode: unprivileged, so `make run` needs no root. Point the
# MX (or a forwarding rule, or a local MTA's transport) at it: connectors/email/README.md.
EMBEDDED_SMTP_PORT = 2525


@dataclass(frozen=True)
class EmailSettings:
    # The SMTP receiver (None: off). On by default in the embedded mode; with Redis (several
    # processes) only where CHANNELHUB_SMTP_PORT is set. Processes on one machine share the port
    # (SO_REUSEPORT), so each `serve` may run one.
    smtp_port: int | None = EMBEDDED_SMTP_PORT
    # Loopback by default, like the HTTP server: 0.0.0.0 (or an address) to take mail from outside.
    smtp_host: str = "127.0.0.1"
    # The name the receiver greets with (and uses in its Received header).
    smtp_hostname: str | None = None
    # The largest mail taken, in bytes: announced in EHLO (SIZE), refused with 552 beyond it.
    max_message_bytes: int = 25 * 1024 * 1024
    # A certificate and key (PEM files) turn on STARTTLS.
    tls_cert: str | None = None
    tls_key: str | None = None
    # One customer's flood: at most this many mails per sender and tenant in flood_window seconds;
    # the rest are deferred with a 4xx (their servers try again later), so nothing is lost.
    flood_limit: int = 30
    flood_window: float = 600.0
    # IMAP: how often a mailbox without IDLE is polled, and how long one process holds a mailbox
    # before another may take it over (renewed while it follows it).
    # Whether this process follows the tenants' IMAP mailboxes (one process per mailbox at a time,
    # by lease); off for processes that should only serve HTTP and SMTP.
    imap_follow: bool = True
    imap_poll_seconds: float = 60.0
    imap_lease_seconds: float = 90.0
    # Outbound: seconds a relay may take to answer.
    relay_timeout: float = 60.0

    @classmethod
    def from_env(cls, env: dict[str, str]) -> EmailSettings:
        d = cls()
        port_value = env_value(env, "SMTP_PORT")
        if port_value is None:
            port: int | None = EMBEDDED_SMTP_PORT if env_value(env, "REDIS_URL") is None else None
        elif port_value.strip().lower() in ("off", "none", "-"):
            port = None
        else:
            port = int(port_value)
        return cls(
            smtp_port=port,
            smtp_host=env_value(env, "SMTP_HOST") or d.smtp_host,
            smtp_hostname=env_value(env, "SMTP_HOSTNAME"),
            max_message_bytes=int(env_value(env, "SMTP_MAX_MESSAGE_BYTES") or d.max_message_bytes),
            tls_cert=env_value(env, "SMTP_TLS_CERT"),
            tls_key=env_value(env, "SMTP_TLS_KEY"),
            flood_limit=int(env_value(env, "EMAIL_FLOOD_LIMIT") or d.flood_limit),
            flood_window=float(env_value(env, "EMAIL_FLOOD_WINDOW") or d.flood_window),
            imap_follow=env_bool(env_value(env, "IMAP_FOLLOW"), default=d.imap_follow),
            imap_poll_seconds=float(env_value(env, "IMAP_POLL_SECONDS") or d.imap_poll_seconds),
            imap_lease_seconds=float(env_value(env, "IMAP_LEASE_SECONDS") or d.imap_lease_seconds),
            relay_timeout=float(env_value(env, "EMAIL_RELAY_TIMEOUT") or d.relay_timeout),
        )

    @property
    def starttls(self) -> bool:
        return bool(self.tls_cert and self.tls_key)
