"""What a customer was told is stored stays stored (issue #10): a web chat message is acknowledged
once its ticket message is committed, so a customer who leaves the moment the ack arrives, and a
`kill -9` of the serving process right after the acks, lose nothing. Runs on the suite's database:
SQLite in `make test`, PostgreSQL in `make test-pg`."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from admin_api.client import VisitorClient
from core.config import Settings
from tests.conftest import TenantInfo
from tests.processes import spawn_serve, stop


async def test_a_customer_who_leaves_at_the_ack_finds_the_message_and_the_agent_gets_it(tenant: TenantInfo) -> None:
    agent = await tenant.add_agent()
    client = await tenant.signed_in(agent)
    visitor = tenant.visitor()
    await visitor.connect(name="Li Lei")
    assert visitor.ws is not None
    await visitor.ws.send_json({"type": "message", "client_id": "leave-at-ack", "text": "我的订单到哪了"})
    while True:  # read the socket directly, and close it the moment the ack is in
        frame = await visitor.ws.receive_json(timeout=10)
        if frame.get("type") == "ack":
            break
    await visitor.ws.close()
    stored = frame["message"]

    again = tenant.visitor(visitor_id=visitor.visitor_id)  # a new page load: the whole history
    welcome = await again.connect()
    assert [(m["id"], m["text"]) for m in welcome["messages"]] == [(stored["id"], "我的订单到哪了")]
    created = await client.wait_event(lambda e: e["kind"] == "message.created")
    assert created["message"]["id"] == stored["id"]
    assert created["ticket"]["customer"]["name"] == "Li Lei"


async def test_acknowledged_messages_survive_a_kill_9(settings: Settings, tenant: TenantInfo, tmp_path: Path) -> None:
    hub = await spawn_serve(settings, tmp_path, "serve-1")
    visitors: list[VisitorClient] = []
    acked: dict[str, dict[str, Any]] = {}  # client id -> the stored message its ack carried
    try:
        for _ in range(10):
            v = VisitorClient(hub.url, host=tenant.domain)
            await v.connect()
            visitors.append(v)
        sent: dict[str, tuple[VisitorClient, str]] = {}
        # Ten messages from each of ten customers at once; the process dies as soon as half are acked.
        for n in range(10):
            for i, v in enumerate(visitors):
                text = f"customer {i} message {n}"
                sent[await v.send(text, client_id=f"k9-{i}-{n}")] = (v, text)

        def acks() -> list[dict[str, Any]]:
            return [f for v in visitors for f in v.frames if f.get("type") == "ack"]

        async with asyncio.timeout(20):
            while len(acks()) < 50:  # noqa: ASYNC110 (ten clients' frames; the kill must follow at once)
                await asyncio.sleep(0.001)
        hub.proc.send_signal(signal.SIGKILL)
        for f in acks():
            acked[f["client_id"]] = f["message"]
        await hub.proc.wait()
    finally:
        for v in visitors:
            await v.close()
        await stop(hub)
    assert len(acked) >= 50

    hub = await spawn_serve(settings, tmp_path, "serve-2")
    try:
        by_visitor: dict[str, list[str]] = {}
        for client_id, (v, _) in sent.items():
            by_visitor.setdefault(str(v.visitor_id), []).append(client_id)
        for visitor_id, client_ids in by_visitor.items():
            again = VisitorClient(hub.url, host=tenant.domain, visitor_id=visitor_id)
            try:
                history = {m["id"]: m for m in (await again.connect())["messages"]}
                # Every acknowledged message is there, as it was acknowledged.
                for client_id in client_ids:
                    if client_id in acked:
                        assert history.get(acked[client_id]["id"]) == acked[client_id], client_id
                # The widget sends again what was never acknowledged (the same client ids): each
                # message is stored once, and an acknowledged one is not stored twice.
                for client_id in client_ids:
                    await again.send(sent[client_id][1], client_id=client_id)
                answers = {}
                for client_id in client_ids:
                    frame = await again.wait_frame(
                        lambda f, c=client_id: f.get("type") == "ack" and f["client_id"] == c)
                    answers[client_id] = frame["message"]
                for client_id, message in answers.items():
                    assert message["text"] == sent[client_id][1]
                    if client_id in acked:
                        assert message == acked[client_id]
                await again.disconnect()
                fresh = VisitorClient(hub.url, host=tenant.domain, visitor_id=visitor_id)
                try:
                    texts = [m["text"] for m in (await fresh.connect())["messages"]]
                finally:
                    await fresh.close()
                assert sorted(texts) == sorted(sent[c][1] for c in client_ids)
            finally:
                await again.close()
    finally:
        await stop(hub)
