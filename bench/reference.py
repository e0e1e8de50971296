#!/usr/bin/env python3
"""The bare references the benchmarks measure beside the hub, in the same run and on the same machine.

Figures on this shared 2-core machine move by tens of percent between runs; the hub's figure as a
share of a bare aiohttp doing the least the same path must do moves far less. Each reference runs
as its own process, as `channelhub serve` does, and is measured the same way (CPU time read from
/proc, requests driven by the same client code):

- ``ws-echo``: an aiohttp websocket server that sends every text frame back (web chat's
  reference: the least a chat server does per message);
- ``json-api``: an aiohttp handler that takes a JSON body with a bearer token and answers 201 with
  a JSON object (the ticket API's reference: the least an HTTP API that creates something does,
  without storing it);
- ``webhook``: an aiohttp handler that verifies a WeChat push's signature, decrypts it in safe
  mode and parses its XML, then answers ``success`` (WeChat's reference: everything the hub must
  do before it may answer, without storing anything).

Run by the benchmarks (``bench/webchat_roundtrip.py``, ``bench/wechat_ingest.py``); by hand:

    python bench/reference.py ws-echo --port 8765
    python bench/reference.py webhook --port 8766 --token T [--aes-key K --app-id A]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import WSMsgType, web  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the servers ------------------------------------------------------------------------------------
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def ws_echo_app() -> web.Application:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/ws", echo)
    app.router.add_get("/healthz", healthz)
    return app


def webhook_app(token: str, aes_key: str | None, app_id: str | None) -> web.Application:
    from wechatpy.crypto import WeChatCrypto
    from wechatpy.utils import check_signature

    from connectors.wechat.xmlparse import parse_xml

    crypto = WeChatCrypto(token, aes_key, app_id) if aes_key and app_id else None

    async def push(request: web.Request) -> web.Response:
        raw = await request.read()
        q = request.query
        check_signature(token, q["signature"], q["timestamp"], q["nonce"])
        xml: str | bytes = raw
        if q.get("encrypt_type") == "aes" and crypto is not None:
            xml = crypto.decrypt_message(parse_xml(raw), q["msg_signature"], q["timestamp"], q["nonce"])
        data = parse_xml(xml)
        if not data.get("MsgType"):
            raise web.HTTPBadRequest()
        return web.Response(text="success")

    app = web.Application()
    app.router.add_post("/wechat/oa/{key}", push)
    app.router.add_get("/healthz", healthz)
    return app


def json_api_app() -> web.Application:
    async def create(request: web.Request) -> web.Response:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            raise web.HTTPUnauthorized()
        data = await request.json()
        if not isinstance(data, dict) or not data.get("text"):
            raise web.HTTPBadRequest()
        return web.json_response({"ticket": {"id": 1, "subject": data["text"][:500], "status": "new",
                                             "customer": data.get("customer")}}, status=201)

    app = web.Application()
    app.router.add_post("/api/v1/tickets", create)
    app.router.add_get("/healthz", healthz)
    return app


async def smtp_sink(port: int) -> None:
    """An aiosmtpd server that takes every recipient and every mail and keeps nothing: the least an
    SMTP receiver does (the email benchmark's reference)."""
    from aiosmtpd.smtp import SMTP

    class Discard:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Discard(), data_size_limit=25 * 1024 * 1024,
                                                   enable_SMTPUTF8=True, loop=loop), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


# --- running one beside a benchmark -----------------------------------------------------------------
@contextlib.contextmanager
def reference_server(kind: str, *extra: str) -> Iterator[tuple[str, int]]:
    """Start ``bench/reference.py KIND`` as its own process; yields its URL and pid."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), kind, "--port", str(port), *extra],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def scratch_database(pg: str | None, folder: Path, name: str) -> tuple[str, str | None]:
    """A benchmark's own database: a fresh one named after ``pg``'s, suffixed with ``name`` and this
    process's id, on that PostgreSQL server; or SQLite in ``folder``. Returns its URL, and the
    PostgreSQL URL to drop afterwards (``core.db.drop_pg_database``), or None."""
    if not pg:
        return f"sqlite+aiosqlite:///{folder / 'hub.db'}", None
    from sqlalchemy.engine import make_url

    from core.db import create_pg_database

    url = await create_pg_database(pg, f"{make_url(pg).database or 'channelhub'}_{name}{os.getpid()}")
    return url, url


async def wait_up(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30.0) -> None:
    """Until ``url``'s /healthz answers 200 (a hub or a reference server); fails if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise SystemExit(f"the server at {url} exited during start-up")
            try:
                async with http.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit(f"the server at {url} did not come up")


async def measure_ws_echo(*, connections: int = 64, seconds: float = 5.0) -> dict[str, Any]:
    """The echo's capacity: every connection sends its next frame as soon as the last came back
    (closed loop, so the echo process is saturated), for ``seconds``. Messages per second and CPU
    milliseconds per message of the echo process."""
    with reference_server("ws-echo") as (url, pid):
        await wait_up(url)
        done = 0
        async with aiohttp.ClientSession() as http:
            sockets = [await http.ws_connect(url + "/ws") for _ in range(connections)]
            payload = '{"type": "message", "client_id": "c1", "text": "where is my parcel?"}'
            stop_at = time.monotonic() + seconds
            cpu_before = cpu_seconds(pid)
            started = time.monotonic()

            async def loop(ws: aiohttp.ClientWebSocketResponse) -> None:
                nonlocal done
                while time.monotonic() < stop_at:
                    await ws.send_str(payload)
                    msg = await ws.receive()
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        raise SystemExit(f"the echo reference answered {msg.type!r}, not the frame")
                    done += 1

            await asyncio.gather(*(loop(ws) for ws in sockets))
            elapsed = time.monotonic() - started
            cpu = cpu_seconds(pid) - cpu_before
            for ws in sockets:
                await ws.close()
    return {"kind": "aiohttp websocket echo", "connections": connections, "seconds": round(elapsed, 2),
            "messages_per_s": round(done / elapsed, 1), "cpu_ms_per_message": round(cpu * 1000 / max(done, 1), 4)}


def share(hub: float | None, reference: float | None) -> float | None:
    """``reference / hub`` for costs (or ``hub / reference`` for rates, given the other way round):
    the hub's figure as a share of the bare reference's, 1.0 meaning as cheap as bare aiohttp."""
    if not hub or not reference:
        return None
    return round(reference / hub, 4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["ws-echo", "json-api", "webhook", "smtp-sink"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", help="webhook: the account's token")
    parser.add_argument("--aes-key", help="webhook: EncodingAESKey (safe mode)")
    parser.add_argument("--app-id", help="webhook: AppID (safe mode)")
    args = parser.parse_args()
    if args.kind == "smtp-sink":
        asyncio.run(smtp_sink(args.port))
        return 0
    if args.kind == "ws-echo":
        app = ws_echo_app()
    elif args.kind == "json-api":
        app = json_api_app()
    else:
        if not args.token:
            parser.error("webhook needs --token")
        app = webhook_app(args.token, args.aes_key, args.app_id)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=lambda *_: None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
