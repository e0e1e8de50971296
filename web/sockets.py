"""Websockets: the session every client socket runs (the agent gateway, the web chat customer
socket), and the open sockets an application tracks, so shutdown closes them instead of waiting.

A session is a hello first (one JSON text frame of type "hello" within a timeout, validated by a
model), then frames dispatched by their "type", each answered or refused by a frame while the socket
stays open; what the session sends goes through one writer task and a bounded queue, so a client
that reads slowly never holds up whoever pushes (the bus, the frame loop). The protocols differ in
what the hello does, how an error frame names the frame it refuses, and what happens to a client
that falls behind; :class:`SocketSession` leaves those to its subclasses.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, ClassVar, Generic, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web

from core.bus import Subscription
from core.errors import DomainError, InvalidInput
from web.http import HUB, OVERLOAD, as_busy, check_strings, parse_json, validate
from web.schemas import Frame

logger = logging.getLogger(__name__)

SOCKETS = web.AppKey("sockets", set[web.WebSocketResponse])
# How many of them are open, by the kind of client (SocketSession.kind): the /metrics gauge.
SOCKET_KINDS = web.AppKey("socket_kinds", Counter[str])

F = TypeVar("F", bound=Frame)
H = TypeVar("H", bound=Frame)

# Takes a frame (checked: a JSON object of storable strings) and what names it in answers; returns
# the frame to send back, if any. A DomainError it raises becomes the session's error frame.
Handler = Callable[[dict[str, Any], Any], Awaitable[dict[str, Any] | None]]


class RecentIds:
    """The ids a socket has already sent (the latest ``size``), so what is published twice (a
    redelivery, or the backlog overlapping the live stream) reaches its client once."""

    def __init__(self, size: int = 4096) -> None:
        self._order: deque[int] = deque(maxlen=size)
        self._set: set[int] = set()

    def mark(self, item_id: int) -> bool:
        """True the first time ``item_id`` is seen, False for a repeat."""
        if item_id in self._set:
            return False
        if len(self._order) == self._order.maxlen:
            self._set.discard(self._order[0])
        self._order.append(item_id)
        self._set.add(item_id)
        return True

    def mark_all(self, item_ids: Iterable[int]) -> None:
        for item_id in item_ids:
            self.mark(item_id)


def parse_frame(model: type[F], data: dict[str, Any]) -> F:
    """``data`` validated by ``model``; a refused field gets the code the model's protocol gives it
    (see :class:`web.schemas.Frame`), anything else a ``validation_error`` as HTTP bodies do."""
    try:
        return validate(model, data)
    except InvalidInput as exc:
        loc = exc.details[0]["loc"] if exc.details else []
        code = model.codes.get(str(loc[0]) if loc else "")
        if code is None:
            raise
        # The protocols document these codes as {code, message}, without validation details.
        raise InvalidInput(exc.message, code=code) from None


class SocketSession(Generic[H]):
    """One client's socket: hello, frame loop, bounded writer. Subclasses set the class attributes,
    implement :meth:`start`, add their frame types to ``handlers``, and may override the hooks
    :meth:`reference`, :meth:`error_frame` and :meth:`heard`."""

    name: ClassVar[str]  # for the log
    kind: ClassVar[str]  # who is at the other end ("agent", "visitor"): the /metrics label
    hello_model: type[H]
    hello_example: ClassVar[str]  # the first frame as the protocol writes it, for refusals
    hello_timeout: ClassVar[float]
    queue_size: ClassVar[int]
    # A client this far behind is cut off with 4008 "too slow" (True; it reconnects and catches up
    # from the database), or loses the live frames that do not fit (False; it reads them from history).
    close_when_behind: ClassVar[bool]
    # How long a client cut off may take to read the close frame before its connection is dropped.
    cut_off_grace: ClassVar[float] = 5.0
    internal_error_message: ClassVar[str]
    # Frame types that may be handled alongside each other, in order (see :meth:`_frame`).
    pipelined: ClassVar[frozenset[str]] = frozenset()
    max_pipelined: ClassVar[int] = 16

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.subscription: Subscription | None = None  # closed when the session ends
        self.handlers: dict[str, Handler] = {"ping": self._pong}
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=self.queue_size)
        self._cut_off = False
        self._inflight: set[asyncio.Task[None]] = set()
        self._writer: asyncio.Task[None] | None = None
        self._cutting: asyncio.Task[None] | None = None
        self.transport: asyncio.Transport | None = None  # set by serve(), to drop a stuck client

    # --- the hooks --------------------------------------------------------------------------
    async def start(self, hello: H) -> None:
        """Begin the session: subscribe, send the welcome (:meth:`send`). Raise a DomainError to refuse
        the client: it gets an error frame and the socket closes."""
        raise NotImplementedError

    def reference(self, data: dict[str, Any]) -> Any:
        """What names this frame in its answer (a client's ``ref``...); None when nothing does.
        Taken before the frame's strings are checked, so even that refusal is named."""
        return None

    def error_frame(self, error: dict[str, Any], ref: Any) -> dict[str, Any]:
        """The frame refusing a frame (``ref`` from :meth:`reference`); ``error`` is {code, message}."""
        return {"type": "error", **error}

    async def heard(self) -> None:
        """Called for every text frame before it is handled (a heartbeat); it may close the socket,
        and then the frame is not handled."""

    # --- outgoing ---------------------------------------------------------------------------
    def push(self, frame: dict[str, Any]) -> None:
        """Queue a frame for the writer; never waits (the bus calls this)."""
        if self._cut_off:
            return  # being closed as too slow: it reads everything from the database when it is back
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            if not self.close_when_behind:
                logger.info("%s client queue full; dropping live frame", self.name)
            elif not self._cut_off:
                self._cut_off = True
                logger.warning("%s client too slow; closing it", self.name)
                # Nothing queued is sent any more: the client reads it all from the database when it
                # reconnects, and a writer stuck on a client that reads nothing must not hold the close.
                while not self._queue.empty():
                    self._queue.get_nowait()
                self._cutting = asyncio.get_running_loop().create_task(self._cut())

    async def _cut(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
        try:
            async with asyncio.timeout(self.cut_off_grace):
                await self.ws.close(code=4008, message=b"too slow")
        except (TimeoutError, ConnectionResetError):
            logger.info("%s client cut off without reading the close; dropping the connection", self.name)
            if self.transport is not None:
                self.transport.abort()

    async def send(self, frame: dict[str, Any]) -> None:
        """Send at once, ahead of the queue: the welcome, before the writer starts."""
        await self.ws.send_str(json.dumps(frame, default=str))

    async def _write(self) -> None:
        try:
            while True:
                frame = await self._queue.get()
                if frame is None or self.ws.closed:
                    return
                await self.send(frame)
        except ConnectionResetError:
            # The client went away ("Cannot write to closing transport"): the frame loop ends too.
            logger.debug("%s client went away while we wrote to it", self.name)

    # --- the session ------------------------------------------------------------------------
    async def run(self) -> None:
        writer: asyncio.Task[None] | None = None
        try:
            # Inside the try: a hello that fails after subscribing must not leave the subscription.
            if not await self._hello():
                await self.ws.close()
                return
            writer = self._writer = asyncio.create_task(self._write())
            async for msg in self.ws:
                if msg.type == WSMsgType.BINARY:
                    # Silence would leave the client waiting for an answer that never comes.
                    self.push(self.error_frame({"code": "invalid_frame", "message": "frames are JSON text"}, None))
                elif msg.type == WSMsgType.TEXT:
                    await self.heard()
                    if self.ws.closed:  # heard() may end the session (the agent's token was revoked)
                        break
                    await self._frame(msg.data)
        finally:
            if self.subscription is not None:
                self.subscription.close()
            if writer is not None:
                writer.cancel()

    async def _hello(self) -> bool:
        try:
            msg = await self.ws.receive(timeout=self.hello_timeout)
        except TimeoutError:
            await self.ws.send_json({"type": "error", "code": "hello_timeout", "message": "send hello first"})
            return False
        if msg.type == WSMsgType.BINARY:
            await self.ws.send_json({"type": "error", "code": "hello_required",
                                     "message": f"frames are JSON text; the first is {self.hello_example}"})
            return False
        if msg.type != WSMsgType.TEXT:  # closing, or the client's protocol error
            return False
        try:
            data = parse_json(msg.data, "the hello frame")
            if not isinstance(data, dict) or data.get("type") != "hello":
                raise InvalidInput(f"the first frame must be {self.hello_example}", code="hello_required")
            check_strings(data)
            await self.start(parse_frame(self.hello_model, data))
        except DomainError as exc:
            await self.ws.send_json({"type": "error", **exc.to_dict()})
            return False
        return True

    async def _frame(self, raw: str) -> None:
        """A frame: handled before the next is read, except those of the ``pipelined`` types,
        which run alongside each other (at most ``max_pipelined`` at once) in the order they came,
        so a client can send many without waiting for each result. Any other frame waits until
        those before it are done."""
        try:
            data = parse_json(raw, "a frame")
            if not isinstance(data, dict):
                raise InvalidInput("a frame is a JSON object", code="invalid_frame")
        except DomainError as exc:
            self.push(self.error_frame(exc.to_dict(), None))
            return
        if data.get("type") in self.pipelined:
            while len(self._inflight) >= self.max_pipelined:
                await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
            # Tasks start in the order they are made, and a pipelined handler hands its item to
            # its group commit before it first waits: the items are written in the frames' order.
            task = asyncio.get_running_loop().create_task(self._handle(data))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            return
        if self._inflight:
            await asyncio.wait(set(self._inflight))
        await self._handle(data)

    async def _handle(self, data: dict[str, Any]) -> None:
        ref = None
        answer: dict[str, Any] | None
        try:
            ref = self.reference(data)
            check_strings(data)
            kind = data.get("type")
            handler = self.handlers.get(kind) if isinstance(kind, str) else None
            if handler is None:
                raise InvalidInput(f"unknown frame type {kind!r}", code="unknown_type")
            answer = await handler(data, ref)
        except DomainError as exc:
            answer = self.error_frame(exc.to_dict(), ref)
        except OVERLOAD as exc:
            answer = self.error_frame(as_busy(exc).to_dict(), ref)
        except Exception:
            logger.exception("%s frame failed", self.name)
            answer = self.error_frame({"code": "internal_error", "message": self.internal_error_message}, ref)
        if answer is not None:
            self.push(answer)

    async def _pong(self, data: dict[str, Any], ref: Any) -> dict[str, Any]:
        return {"type": "pong"}


async def serve(request: web.Request, session: Callable[[web.WebSocketResponse], SocketSession[Any]], *,
                heartbeat: float | None) -> web.WebSocketResponse:
    """Upgrade the request and run ``session(ws)`` on it, tracked (see :class:`tracked`). Frames are
    bounded by the app's body limit: a larger one closes the socket with 1009."""
    ws = web.WebSocketResponse(max_msg_size=request.app[HUB].settings.max_request_bytes, heartbeat=heartbeat)
    await ws.prepare(request)
    tracker = tracked(request, ws)
    async with tracker:
        s = session(ws)
        tracker.count(s.kind)
        s.transport = request.transport
        await s.run()
    return ws


class tracked:
    """Keep an open websocket in the app's set so shutdown can close it instead of waiting on it.

    A failure inside is logged and closes the socket with 1011. Once the connection is upgraded it
    can no longer carry an HTTP answer: letting the exception reach the error middleware would
    write a 500 response into the websocket stream, which the client reads as a corrupt frame.
    """

    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.sockets: set[web.WebSocketResponse] = request.app[SOCKETS]
        self.kinds: Counter[str] | None = request.app.get(SOCKET_KINDS)
        self.ws = ws
        self.kind: str | None = None

    def count(self, kind: str) -> None:
        """Count the socket as one of ``kind`` while it is open (SOCKET_KINDS)."""
        if self.kinds is not None and self.kind is None:
            self.kind = kind
            self.kinds[kind] += 1

    async def __aenter__(self) -> web.WebSocketResponse:
        self.sockets.add(self.ws)
        return self.ws

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool:
        self.sockets.discard(self.ws)
        if self.kinds is not None and self.kind is not None:
            self.kinds[self.kind] -= 1
        if not isinstance(exc, Exception):  # no error, or a cancellation that must go on
            return False
        if isinstance(exc, ConnectionResetError):  # the client went away: not an error of ours
            logger.debug("websocket client went away: %s", exc)
            return True
        logger.error("websocket handler failed", exc_info=(type(exc), exc, tb))
        if not self.ws.closed:
            await self.ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"internal error")
        return True


async def close_sockets(app: web.Application) -> None:
    sockets: set[web.WebSocketResponse] = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
