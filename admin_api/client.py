"""A small Python client for the hub: an agent (REST + the agent gateway) and a web chat visitor.

    async with AgentClient("http://127.0.0.1:8080", host="acme.example.com") as agent:
        await agent.login("li@acme.example.com", "secret")
        await agent.connect()
        event = await agent.wait_event(lambda e: e["kind"] == "message.created")
        await agent.reply(event["ticket_id"], "Hello!")

The agent client de-duplicates events by id and, after a reconnect, asks for what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp


class HubError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


Item = dict[str, Any]


def new_client_id() -> str:
    """A fresh client id for one action (web chat's messages and agents' replies and notes)."""
    return uuid.uuid4().hex


async def _wait_until(
    changed: asyncio.Condition, items: Callable[[], list[Item]], predicate: Callable[[Item], bool], timeout: float
) -> Item:
    """The first of ``items()`` that matches, waiting for the reader to add more as they arrive."""
    async def find() -> Item:
        async with changed:
            while True:
                for item in items():
                    if predicate(item):
                        return item
                await changed.wait()

    return await asyncio.wait_for(find(), timeout)


class _Base:
    def __init__(self, base_url: str, host: str | None = None, *, session: aiohttp.ClientSession | None = None):
        self.base_url = base_url.rstrip("/")
        self.host = host
        self._own_session = session is None
        self.session = session or aiohttp.ClientSession()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.host:
            headers["Host"] = self.host
        return headers

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url[len("http"):]

    async def request(self, method: str, path: str, json_body: Any = None, *, token: str | None = None,
                      raw: bytes | None = None, content_type: str = "application/json",
                      params: dict[str, str] | None = None) -> Any:
        headers = self._headers({"Authorization": f"Bearer {token}"} if token else None)
        if raw is not None:
            headers["Content-Type"] = content_type
        async with self.session.request(method, self.base_url + path, json=json_body, data=raw, params=params,
                                        headers=headers) as resp:
            body = await resp.json(content_type=None)
            if resp.status >= 400:
                err = (body or {}).get("error", {})
                raise HubError(resp.status, err.get("code", "?"), err.get("message", ""))
            return body

    async def disconnect(self) -> None:
        """Close the websocket (the HTTP session stays for reconnecting)."""
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        self.ws = None
        self._reader = None

    async def close(self) -> None:
        await self.disconnect()
        if self._own_session:
            await self.session.close()


class AgentClient(_Base):
    def __init__(self, base_url: str, host: str | None = None, **kw: Any) -> None:
        super().__init__(base_url, host, **kw)
        self.token: str | None = None
        self.agent: dict[str, Any] | None = None
        self.welcome: dict[str, Any] | None = None
        self.events: list[dict[str, Any]] = []
        self.last_event_id: int | None = None
        self._seen: set[int] = set()
        self._results: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._changed = asyncio.Condition()
        self._refs = itertools.count(1)
        self.errors: list[dict[str, Any]] = []
        # Live typing frames (core.live): someone typing on a ticket this agent sees.
        self.typing_frames: list[dict[str, Any]] = []

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def login(self, email: str, password: str) -> dict[str, Any]:
        body = await self.request("POST", "/api/v1/auth/login", {"email": email, "password": password})
        self.token, self.agent = body["token"], body["agent"]
        return body

    async def api(self, method: str, path: str, json_body: Any = None) -> Any:
        return await self.request(method, path, json_body, token=self.token)

    # --- the gateway ----------------------------------------------------------------------
    async def connect(self, *, status: str = "online") -> dict[str, Any]:
        self.ws = await self.session.ws_connect(self.ws_url + "/agent/ws", headers=self._headers())
        await self.ws.send_json({"type": "hello", "token": self.token, "since": self.last_event_id,
                                 "status": status})
        msg = await self.ws.receive_json(timeout=10)
        if msg.get("type") != "welcome":
            raise HubError(401, msg.get("code", "?"), msg.get("message", ""))
        self.welcome = msg
        if self.last_event_id is None:
            self.last_event_id = msg["last_event_id"]
        for event in msg.get("events", []):
            self._take(event)
        self._reader = asyncio.create_task(self._read())
        return msg


    def _take(self, event: dict[str, Any]) -> None:
        if event["id"] in self._seen:
            return
        self._seen.add(event["id"])
        self.events.append(event)
        self.last_event_id = max(self.last_event_id or 0, event["id"])

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                kind = frame.get("type")
                if kind == "event":
                    self._take(frame["event"])
                elif kind == "result" and frame.get("ref") in self._results:
                    self._results.pop(frame["ref"]).set_result(frame)
                elif kind == "error":
                    self.errors.append(frame)
                elif kind == "typing":
                    self.typing_frames.append(frame)
                async with self._changed:
                    self._changed.notify_all()
        finally:
            # The socket is gone: an action still waiting will get no result on it (a reply with a
            # client id can be retried on the next socket, see reply()).
            results, self._results = self._results, {}
            for fut in results.values():
                if not fut.done():
                    fut.set_exception(ConnectionResetError("the agent socket closed before the result"))

    async def send_frame(self, frame: dict[str, Any]) -> None:
        assert self.ws is not None, "connect() first"
        await self.ws.send_json(frame)

    async def action(self, kind: str, timeout: float = 10, **fields: Any) -> dict[str, Any]:
        ref = f"r{next(self._refs)}-{uuid.uuid4().hex[:6]}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._results[ref] = fut
        await self.send_frame({"type": kind, "ref": ref, **fields})
        frame = await asyncio.wait_for(fut, timeout)
        if not frame.get("ok"):
            err = frame.get("error", {})
            raise HubError(400, err.get("code", "?"), err.get("message", ""))
        return frame["data"]

    async def reply(self, ticket_id: int, text: str, *, attachments: list[int] | None = None,
                    client_id: str | None = None, retries: int = 0) -> dict[str, Any]:
        """Reply to the customer. It carries a client id (generated unless given), so a retry
        stores nothing twice: with ``retries``, a socket that dies before the result came (or a
        result that never comes) is reconnected and the same reply sent again."""
        return await self._message("reply", ticket_id, text, attachments, client_id, retries)

    async def note(self, ticket_id: int, text: str, *, attachments: list[int] | None = None,
                   client_id: str | None = None, retries: int = 0) -> dict[str, Any]:
        """An internal note; retried as :meth:`reply` is."""
        return await self._message("note", ticket_id, text, attachments, client_id, retries)

    async def _message(self, kind: str, ticket_id: int, text: str, attachments: list[int] | None,
                       client_id: str | None, retries: int) -> dict[str, Any]:
        fields: dict[str, Any] = {"ticket_id": ticket_id, "text": text, "client_id": client_id or new_client_id()}
        if attachments:
            fields["attachments"] = attachments
        for attempt in range(retries + 1):
            try:
                if self.ws is None or self.ws.closed:
                    await self.reconnect()
                return (await self.action(kind, **fields))["message"]
            except (TimeoutError, aiohttp.ClientError, ConnectionError):
                if attempt == retries:
                    raise
        raise AssertionError("unreachable")

    async def reconnect(self) -> dict[str, Any]:
        """Drop the socket (if any) and open a new one; it catches up from :attr:`last_event_id`."""
        await self.disconnect()
        return await self.connect()

    async def upload(self, name: str, data: bytes, content_type: str = "application/octet-stream") -> dict[str, Any]:
        """Upload a file to attach to replies and notes: {id, name, content_type, size, url}."""
        body = await self.request("POST", "/api/v1/attachments", token=self.token, raw=data,
                                  content_type=content_type, params={"name": name})
        return dict(body["attachment"])

    async def set_status(self, ticket_id: int, status: str) -> dict[str, Any]:
        return (await self.action("status", ticket_id=ticket_id, status=status))["ticket"]

    async def transfer(self, ticket_id: int, *, agent_id: int | None = None, group_id: int | None = None) -> Any:
        fields = {"agent_id": agent_id} if agent_id else {"group_id": group_id}
        return (await self.action("transfer", ticket_id=ticket_id, **fields))["ticket"]

    async def typing(self, ticket_id: int, state: str = "composing") -> dict[str, Any]:
        """Tell the customer (and the other agents on the ticket) that this agent is typing
        (``composing``) or stopped (``paused``)."""
        return await self.action("typing", ticket_id=ticket_id, state=state)

    async def wait_typing(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10) -> dict[str, Any]:
        """The first ``typing`` frame received that matches."""
        return await _wait_until(self._changed, lambda: self.typing_frames, predicate, timeout)

    async def wait_event(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10,
                         start: int = 0) -> dict[str, Any]:
        """The first event (from index ``start`` of :attr:`events`) that matches."""
        return await _wait_until(self._changed, lambda: self.events[start:], predicate, timeout)


class VisitorClient(_Base):
    """A web chat customer, as the widget behaves: a websocket with a visitor id kept across reloads."""

    def __init__(self, base_url: str, host: str | None = None, visitor_id: str | None = None, **kw: Any):
        super().__init__(base_url, host, **kw)
        self.visitor_id = visitor_id
        self.messages: dict[int, dict[str, Any]] = {}
        self.frames: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> VisitorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def since(self) -> int:
        return max(self.messages, default=0)

    async def connect(self, **hello: Any) -> dict[str, Any]:
        self.ws = await self.session.ws_connect(self.ws_url + "/webchat/ws", headers=self._headers())
        await self.ws.send_json({"type": "hello", "visitor_id": self.visitor_id, "since": self.since, **hello})
        welcome = await self.ws.receive_json(timeout=10)
        if welcome.get("type") != "welcome":
            raise HubError(400, welcome.get("code", "?"), welcome.get("message", ""))
        self.visitor_id = welcome["visitor_id"]
        for m in welcome["messages"]:
            self.messages[m["id"]] = m
        self._reader = asyncio.create_task(self._read())
        return welcome

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            self.frames.append(frame)
            if frame.get("type") in ("message", "ack") and "message" in frame:
                self.messages[frame["message"]["id"]] = frame["message"]
            async with self._changed:
                self._changed.notify_all()

    async def send(self, text: str, client_id: str | None = None, *, attachments: list[int] | None = None) -> str:
        assert self.ws is not None, "connect() first"
        client_id = client_id or new_client_id()
        frame: dict[str, Any] = {"type": "message", "client_id": client_id, "text": text}
        if attachments:
            frame["attachments"] = attachments
        await self.ws.send_json(frame)
        return client_id

    async def upload(self, name: str, data: bytes, content_type: str) -> dict[str, Any]:
        """A file for a message, as the widget uploads it (needs the visitor id: connect() first)."""
        assert self.visitor_id, "connect() first"
        body = await self.request("POST", "/webchat/attachments", raw=data, content_type=content_type,
                                  params={"visitor_id": self.visitor_id, "name": name})
        return dict(body["attachment"])

    async def wait_frame(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10) -> dict[str, Any]:
        return await _wait_until(self._changed, lambda: self.frames, predicate, timeout)

    async def wait_message(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10) -> dict[str, Any]:
        return await _wait_until(
            self._changed, lambda: sorted(self.messages.values(), key=lambda m: m["id"]), predicate, timeout)
