"""Serving the application over TCP with limits against slow and stuck clients.

aiohttp on its own bounds only the keep-alive idle time: a client may take as long as it likes to
send a request head (slowloris), and one address may open as many connections as it likes. The
runner here adds, per connection:

- a header timeout: a connection must complete each request head within ``header_timeout`` of
  connecting, or of the first byte of its next request on a kept-alive connection;
- the keep-alive idle timeout (aiohttp's own ``keepalive_timeout``);
- a cap on open connections (websockets included) per peer address: the one over it is answered
  503 ``too_many_connections`` and closed.

Request bodies are bounded in time where they are read (``web.http.read_json`` and
``read_file_body``, ``read_timeout``). A malformed request and a client that went away are not
errors of ours: they are logged at DEBUG, without a traceback.

The handler and server subclasses lean on aiohttp 3.14's ``RequestHandler`` internals (its parsed
message queue, its request-in-progress flag); tests/test_slow_clients.py proves they still hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 15.0
    keepalive_timeout: float = 75.0
    # 0: no cap (behind a load balancer or proxy every connection comes from its address).
    max_connections_per_address: int = 256


def _refusal(status: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (f"HTTP/1.1 {status}\r\nContent-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n")
    return head.encode() + body


TOO_MANY = _refusal("503 Service Unavailable", "too_many_connections",
                    "too many open connections from your address; close some and try again")
QUIET = (ConnectionResetError, HttpProcessingError)


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)


class GuardedHandler(RequestHandler):
    """aiohttp's connection handler with a header timeout and quiet logs for what is not ours."""

    def __init__(self, manager: GuardedServer, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._messages or self._upgraded:
            self._disarm()  # a whole request head arrived (or the connection is a websocket now)
        elif data and not self._request_in_progress:
            self._arm()  # the first bytes of the next request on a kept-alive connection

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None and self._header_timeout > 0:
            self._header_timer = self._loop.call_later(self._header_timeout, self._header_expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_expired(self) -> None:
        self._header_timer = None
        if not self._messages and not self._request_in_progress and not self._upgraded:
            logger.debug("closing a connection that sent no whole request head in %ss", self._header_timeout)
            self.force_close()

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, QUIET):
            # A malformed request, or a client that went away: theirs, not an error of ours.
            fmt, *rest = args or ("request failed",)
            self.logger.debug(f"{fmt}: %s", *rest, exc)
            return
        super().log_exception(*args, **kw)


class GuardedServer(web.Server):
    """The protocol factory: makes :class:`GuardedHandler` s and counts connections per address."""

    def __init__(self, handler: Any, *, limits: Limits, **kwargs: Any) -> None:
        super().__init__(handler, keepalive_timeout=limits.keepalive_timeout, **kwargs)
        self.limits = limits
        self.open_by_address: Counter[str] = Counter()
        self._counted: dict[RequestHandler, str] = {}

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, header_timeout=self.limits.header_timeout, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        cap = self.limits.max_connections_per_address
        peer = _peer(transport)
        if cap and self.open_by_address[peer] >= cap:
            logger.info("refusing a connection from %s: %s already open", peer, cap)
            transport.write(TOO_MANY)
            transport.close()
            return
        self.open_by_address[peer] += 1
        self._counted[handler] = peer

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        peer = self._counted.pop(handler, None)
        if peer is not None:
            self.open_by_address[peer] -= 1
            if self.open_by_address[peer] <= 0:
                del self.open_by_address[peer]
        super().connection_lost(handler, exc)


class GuardedRunner(web.AppRunner):
    """An AppRunner whose server is a :class:`GuardedServer`."""

    def __init__(self, app: web.Application, limits: Limits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.limits = limits
        self._handler_args = kwargs

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # runs the application's start-up
        args = {k: v for k, v in self._handler_args.items() if k not in ("handle_signals", "shutdown_timeout")}
        return GuardedServer(plain.request_handler, request_factory=plain.request_factory,
                             handler_cancellation=plain.handler_cancellation, loop=asyncio.get_running_loop(),
                             limits=self.limits, **args)


async def start(app: web.Application, limits: Limits, host: str, port: int, *,
                shutdown_timeout: float = 5.0) -> GuardedRunner:
    """Serve ``app`` on host:port; stop it with ``runner.cleanup()``."""
    runner = GuardedRunner(app, limits, shutdown_timeout=shutdown_timeout, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def run(app: web.Application, limits: Limits, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM (what ``channelhub serve`` runs)."""

    async def main() -> None:
        runner = await start(app, limits, host, port)
        logger.info("serving on http://%s:%s", host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())
