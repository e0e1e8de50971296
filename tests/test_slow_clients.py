"""Slow and stuck clients (issue #9, defect 5): a connection that never finishes its request head
is dropped; one address cannot hold more than its share of connections; a web chat socket that
stops reading is cut off with 4008 instead of losing frames silently, and catches up on reconnect.

The connections here are raw sockets, because a well-behaved client library cannot misbehave."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from core.config import Settings
from tests.conftest import Server, TenantInfo, eventually, start_server


@pytest.fixture
async def strict_server(settings: Settings) -> AsyncIterator[Server]:
    """A server of its own with short header and idle timeouts and a small per-address cap."""
    srv = await start_server(replace(settings, header_timeout=0.5, keepalive_timeout=1.0, read_timeout=0.5,
                                     max_connections_per_address=3))
    yield srv
    await srv.runner.cleanup()


async def _open(port: int, *, rcvbuf: int | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # before connecting, so the window we advertise stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


async def _closed_by_server(reader: asyncio.StreamReader, timeout: float = 10.0) -> bytes:
    """Everything the server sent until it closed the connection (fails if it does not, in time)."""
    async with asyncio.timeout(timeout):
        return await reader.read()  # b"" or the rest, at EOF


async def test_slowloris_connection_is_dropped(strict_server: Server) -> None:
    reader, writer = await _open(strict_server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")

    async def trickle() -> None:
        # A header line every 0.1 s: each byte arrives long before any idle timeout would fire.
        for i in range(200):
            writer.write(f"X-Slow-{i}: 1\r\n".encode())
            await asyncio.sleep(0.1)

    dribbler = asyncio.create_task(trickle())
    try:
        assert await _closed_by_server(reader) == b""
    finally:
        dribbler.cancel()
        writer.close()
    # A client that sends a whole request in time is served as before.
    async with aiohttp.ClientSession() as http, http.get(f"{strict_server.url}/healthz") as resp:
        assert resp.status == 200


async def test_slow_body_is_refused(strict_server: Server, tenant: TenantInfo) -> None:
    """A whole head, then a body that stops arriving (slow POST): 408, not a handler held forever."""
    reader, writer = await _open(strict_server.port)
    writer.write((f"POST /webchat/messages HTTP/1.1\r\nHost: {tenant.domain}\r\nContent-Type: application/json\r\n"
                  "Content-Length: 200\r\n\r\n{\"text\": ").encode())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 408"), head
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        body = json.loads(await asyncio.wait_for(reader.readexactly(length), 10))
        assert body["error"]["code"] == "request_timeout"
    finally:
        writer.close()


async def test_silent_connection_is_dropped(strict_server: Server) -> None:
    reader, writer = await _open(strict_server.port)
    try:
        assert await _closed_by_server(reader) == b""
    finally:
        writer.close()


async def test_connections_per_address_are_capped(strict_server: Server) -> None:
    opened = [await _open(strict_server.port) for _ in range(3)]
    try:
        reader, writer = await _open(strict_server.port)
        answer = await _closed_by_server(reader)
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503")
        assert b"Retry-After: 1" in head
        assert json.loads(body)["error"]["code"] == "too_many_connections"
    finally:
        for _, w in opened:
            w.close()

    async def served() -> bool:  # the three closed: the address may connect again
        try:
            async with aiohttp.ClientSession() as http, http.get(f"{strict_server.url}/healthz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    assert await eventually(served)


# --- a web chat socket that stops reading ------------------------------------------------------
async def _ws_handshake(port: int, domain: str, rcvbuf: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await _open(port, rcvbuf=rcvbuf)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /webchat/ws HTTP/1.1\r\nHost: {domain}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def _ws_frame(data: dict[str, Any]) -> bytes:
    payload = json.dumps(data).encode()
    mask = os.urandom(4)
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _ws_read(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return b0 & 0x0F, await reader.readexactly(length)


async def test_slow_webchat_consumer_is_cut_off_and_catches_up(tenant: TenantInfo) -> None:
    server = tenant.server
    reader, writer = await _ws_handshake(server.port, tenant.domain, rcvbuf=4096)
    writer.write(_ws_frame({"type": "hello"}))
    opcode, payload = await asyncio.wait_for(_ws_read(reader), 10)
    welcome = json.loads(payload)
    assert welcome["type"] == "welcome"
    visitor_id = welcome["visitor_id"]

    # The visitor's other tab posts far more than this socket's queue holds, while it reads nothing.
    text = "x" * 15_000
    count = 800
    gate = asyncio.Semaphore(16)
    posted: list[int] = []
    async with aiohttp.ClientSession(headers={"Host": tenant.domain}) as http:
        async def post(i: int) -> None:
            async with gate, http.post(f"{server.url}/webchat/messages", json={
                    "visitor_id": visitor_id, "client_id": f"tab2-{i}", "text": text}) as resp:
                assert resp.status == 201, await resp.text()
                posted.append((await resp.json())["message"]["id"])

        await asyncio.gather(*(post(i) for i in range(count)))

        # Now read: every frame the socket got, then its end. Silence instead of an end is the
        # defect: frames dropped while the socket stays open, and the visitor never knows.
        seen: list[int] = []
        close_code = None
        try:
            while True:
                opcode, payload = await asyncio.wait_for(_ws_read(reader), 15)
                if opcode == 0x8:
                    close_code = struct.unpack("!H", payload[:2])[0]
                    break
                frame = json.loads(payload)
                if frame.get("type") == "message":
                    seen.append(frame["message"]["id"])
        except (asyncio.IncompleteReadError, ConnectionResetError):
            close_code = "dropped"  # cut off without the close frame: a client that read nothing in time
        except TimeoutError:
            pytest.fail(f"the socket went silent after {len(seen)} of {count} messages without being closed")
        finally:
            writer.close()
        assert close_code in (4008, "dropped")
        assert len(seen) < count

        # Reconnecting as the widget does (since = the last id it got) recovers everything.
        since = max(seen, default=welcome["messages"][-1]["id"] if welcome["messages"] else 0)
        recovered: set[int] = set(seen)
        async with http.ws_connect(f"{server.url.replace('http', 'ws')}/webchat/ws") as ws:
            await ws.send_json({"type": "hello", "visitor_id": visitor_id, "since": since})
            again = await ws.receive_json(timeout=10)
            assert again["type"] == "welcome"
            page = again["messages"]
            while True:
                recovered.update(m["id"] for m in page)
                if len(page) < 200:
                    break
                async with http.get(f"{server.url}/webchat/history",
                                    params={"visitor_id": visitor_id, "since": str(page[-1]["id"])}) as resp:
                    assert resp.status == 200
                    page = (await resp.json())["messages"]
    assert set(posted) <= recovered
    assert len(posted) == count


async def test_history_after_since_pages_forward(tenant: TenantInfo) -> None:
    """After a ``since``, the oldest messages come first, so paging on skips none."""
    async with aiohttp.ClientSession(headers={"Host": tenant.domain}) as http:
        visitor_id = None
        ids = []
        for i in range(5):
            async with http.post(f"{tenant.server.url}/webchat/messages",
                                 json={"visitor_id": visitor_id, "client_id": uuid.uuid4().hex, "text": f"m{i}"}) as r:
                body = await r.json()
                visitor_id = body["visitor_id"]
                ids.append(body["message"]["id"])
        async with http.get(f"{tenant.server.url}/webchat/history",
                            params={"visitor_id": visitor_id, "since": str(ids[0])}) as resp:
            assert [m["id"] for m in (await resp.json())["messages"]] == ids[1:]
