"""The XMPP channel's settings, from ``CHANNELHUB_XMPP_*`` variables."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import env_bool, env_value


@dataclass(frozen=True)
class XmppSettings:
    # Whether this process connects the tenants' accounts (one process per account at a time, by
    # lease); off for processes that should only serve HTTP.
    connect: bool = True
    # How long one process holds an account before another may take it over (renewed a third of
    # the way through while it runs): a dead holder's accounts move within this.
    lease_seconds: float = 60.0
    # Reconnecting after a failure: 1 s doubling to 5 min, with jitter.
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 300.0
    # How long a reply waits for the server's acknowledgement before it is retried (the outbox).
    ack_timeout: float = 15.0
    # How often each process looks for new, changed and removed accounts.
    refresh_seconds: float = 30.0
    # Plaintext connections (security "none") are allowed only to these hosts: loopback by default.
    plaintext_hosts: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")

    @classmethod
    def from_env(cls, env: dict[str, str]) -> XmppSettings:
        d = cls()
        hosts = env_value(env, "XMPP_PLAINTEXT_HOSTS")
        return cls(
            connect=env_bool(env_value(env, "XMPP_CONNECT"), default=d.connect),
            lease_seconds=float(env_value(env, "XMPP_LEASE_SECONDS") or d.lease_seconds),
            backoff_seconds=float(env_value(env, "XMPP_BACKOFF_SECONDS") or d.backoff_seconds),
            max_backoff_seconds=float(env_value(env, "XMPP_MAX_BACKOFF_SECONDS") or d.max_backoff_seconds),
            ack_timeout=float(env_value(env, "XMPP_ACK_TIMEOUT") or d.ack_timeout),
            refresh_seconds=float(env_value(env, "XMPP_REFRESH_SECONDS") or d.refresh_seconds),
            plaintext_hosts=tuple(h.strip() for h in hosts.split(",") if h.strip()) if hosts else d.plaintext_hosts,
        )
