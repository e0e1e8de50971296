"""Websockets: the open sockets an application tracks, so shutdown closes them instead of waiting."""

from __future__ import annotations

import logging
from types import TracebackType

from aiohttp import WSCloseCode, web

logger = logging.getLogger(__name__)

SOCKETS = web.AppKey("sockets", set[web.WebSocketResponse])


class tracked:
    """Keep an open websocket in the app's set so shutdown can close it instead of waiting on it.

    A failure inside is logged and closes the socket with 1011. Once the connection is upgraded it
    can no longer carry an HTTP answer: letting the exception reach the error middleware would
    write a 500 response into the websocket stream, which the client reads as a corrupt frame.
    """

    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.sockets: set[web.WebSocketResponse] = request.app[SOCKETS]
        self.ws = ws

    async def __aenter__(self) -> web.WebSocketResponse:
        self.sockets.add(self.ws)
        return self.ws

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool:
        self.sockets.discard(self.ws)
        if not isinstance(exc, Exception):  # no error, or a cancellation that must go on
            return False
        logger.error("websocket handler failed", exc_info=(type(exc), exc, tb))
        if not self.ws.closed:
            await self.ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"internal error")
        return True


async def close_sockets(app: web.Application) -> None:
    sockets: set[web.WebSocketResponse] = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
