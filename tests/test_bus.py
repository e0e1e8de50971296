"""The Redis bus under a burst: a thousand publishers at once share one publishing connection
(in pipelines) instead of taking a pooled connection each, so the bus does not run out of
connections, count Redis as down, and send every subscriber to the database to catch up."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import pytest

from core.bus import RedisBus
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.skipif(not REDIS_URL, reason="needs Redis (CHANNELHUB_TEST_REDIS_URL)")


async def test_a_thousand_concurrent_publications_arrive_in_order_without_a_catch_up() -> None:
    assert REDIS_URL is not None
    namespace = f"bustest{uuid.uuid4().hex[:8]}"
    publisher, listener = RedisBus(REDIS_URL, namespace), RedisBus(REDIS_URL, namespace)
    got: list[int] = []
    missed: list[datetime] = []
    done = asyncio.Event()

    def take(data: dict[str, Any]) -> None:
        got.append(data["n"])
        if len(got) == 1000:
            done.set()

    async def catch_up(since: datetime) -> None:
        missed.append(since)

    await listener.start()
    await publisher.start()
    try:
        listener.subscribe("topic", take, catch_up=catch_up)
        await asyncio.gather(*(publisher.publish("topic", {"n": n}) for n in range(1000)))
        await asyncio.wait_for(done.wait(), timeout=20)
        assert got == list(range(1000))  # every one, in the order published
        assert publisher._down_since is None and not missed
    finally:
        await publisher.close()
        await listener.close()
