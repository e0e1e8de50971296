"""Overload and clients that go away (issue #9, defect 8): when no database connection comes free
in time the answer is 503 ``busy`` with Retry-After (a ``busy`` frame on a socket), never 500; a
malformed request and a client that hung up are not logged as errors of ours."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace

import aiohttp
import pytest

from core.config import Settings
from tests.conftest import Server, TenantInfo, eventually, start_server
from web.http import HUB


@pytest.fixture
async def small_pool_server(settings: Settings) -> AsyncIterator[Server]:
    """A server with one pooled connection (and one overflow) that waits 0.2 s for a free one."""
    srv = await start_server(replace(settings, db_pool_size=1, db_pool_timeout=0.2))
    yield srv
    await srv.runner.cleanup()


async def _hold_every_connection(srv: Server, stack: AsyncExitStack) -> None:
    """Take all of the server's database connections, as a burst of slow requests would."""
    db = srv.app[HUB].db
    engines = {id(e): e for e in (db.engine, db.read_engine)}.values()
    for engine in engines:
        for _ in range(2):  # pool_size + max_overflow
            await stack.enter_async_context(engine.connect())


async def test_exhausted_pool_answers_busy_never_500(tenant: TenantInfo, small_pool_server: Server) -> None:
    srv = small_pool_server
    visitor = tenant.visitor(server=srv)
    await visitor.connect()  # before the pool runs dry: the hello reads history
    url = f"{srv.url}/webchat/messages"
    async with aiohttp.ClientSession(headers={"Host": tenant.domain}) as http:
        async with AsyncExitStack() as held:
            await _hold_every_connection(srv, held)

            async def post(i: int) -> tuple[int, str | None, dict[str, object]]:
                async with http.post(url, json={"visitor_id": visitor.visitor_id, "client_id": f"busy-{i}",
                                                "text": f"hello {i}"}) as resp:
                    return resp.status, resp.headers.get("Retry-After"), await resp.json()

            answers = await asyncio.gather(*(post(i) for i in range(20)))
            for status, retry_after, body in answers:
                assert status == 503, body
                assert retry_after == "1"
                assert body["error"]["code"] == "busy"  # type: ignore[index]
            async with http.get(f"{srv.url}/webchat/history", params={"visitor_id": visitor.visitor_id}) as resp:
                assert resp.status == 503
                assert (await resp.json())["error"]["code"] == "busy"

            client_id = await visitor.send("over the socket")
            refusal = await visitor.wait_frame(lambda f: f.get("type") == "error")
            assert refusal["code"] == "busy"
            assert refusal["client_id"] == client_id  # named, so the widget sends it again

        # The connections are back: the same messages go through, each stored once.
        async def accepted() -> bool:
            async with http.post(url, json={"visitor_id": visitor.visitor_id, "client_id": "busy-0",
                                            "text": "hello 0"}) as resp:
                return resp.status == 201
        assert await eventually(accepted)
        await visitor.send("over the socket", client_id=client_id)
        ack = await visitor.wait_frame(lambda f: f.get("type") == "ack" and f.get("client_id") == client_id)
        assert ack["message"]["text"] == "over the socket"


def _errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_malformed_request_is_not_an_error(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nThis is no header\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
    assert not _errors(caplog)


async def test_client_that_went_away_is_not_an_error(tenant: TenantInfo, caplog: pytest.LogCaptureFixture) -> None:
    """Visitors that hang up (a reset, no close) while messages are pushed to them are not errors
    of ours. A guard more than a reproduction: whether a write meets the closing transport is a race."""
    caplog.set_level(logging.DEBUG)
    url = tenant.server.url
    async with aiohttp.ClientSession(headers={"Host": tenant.domain}) as http:
        for _ in range(5):
            visitor = tenant.visitor()
            await visitor.connect()
            sock = visitor.ws.get_extra_info("socket") if visitor.ws else None
            assert sock is not None
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST

            async def post(i: int, vid: str | None = visitor.visitor_id) -> None:
                async with http.post(f"{url}/webchat/messages", json={
                        "visitor_id": vid, "client_id": f"gone-{i}", "text": "x" * 10_000}) as resp:
                    assert resp.status == 201

            pushes = asyncio.gather(*(post(i) for i in range(20)))
            await asyncio.sleep(0)
            await visitor.session.close()  # the transport closes the socket: a reset, with no linger
            await pushes
    assert not _errors(caplog)
