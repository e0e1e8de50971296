"""core.batching.GroupCommit: batches form under load, one failure stays one, and past saturation
new work is refused at once while everything accepted is written."""

from __future__ import annotations

import asyncio

import pytest

from core.batching import GroupCommit
from core.errors import Busy


async def test_concurrent_submissions_share_batches_and_keep_their_own_results() -> None:
    batches: list[list[int]] = []

    async def run(items: list[int]) -> list[int | BaseException]:
        batches.append(items)
        await asyncio.sleep(0.01)  # a commit in flight: the next callers queue behind it
        return [i * 2 for i in items]

    writer: GroupCommit[int, int] = GroupCommit("test", run)
    writer.start()
    try:
        results = await asyncio.gather(*(writer.submit(i) for i in range(200)))
    finally:
        await writer.stop()
    assert results == [i * 2 for i in range(200)]
    assert sorted(i for b in batches for i in b) == list(range(200))
    assert len(batches) < 20, [len(b) for b in batches]


async def test_a_batch_that_fails_as_a_whole_is_written_item_by_item() -> None:
    written: list[int] = []

    async def run(items: list[int]) -> list[int | BaseException]:
        if 13 in items:
            raise ValueError("unlucky")
        written.extend(items)
        return list(items)

    writer: GroupCommit[int, int] = GroupCommit("test", run, linger=0.005)
    writer.start()
    try:
        results = await asyncio.gather(*(writer.submit(i) for i in range(30)), return_exceptions=True)
    finally:
        await writer.stop()
    assert isinstance(results[13], ValueError)
    assert [r for i, r in enumerate(results) if i != 13] == [i for i in range(30) if i != 13]
    assert sorted(written) == [i for i in range(30) if i != 13]


async def test_past_saturation_new_work_is_refused_and_accepted_work_is_written() -> None:
    release = asyncio.Event()
    written: list[int] = []

    async def run(items: list[int]) -> list[int | BaseException]:
        await release.wait()
        written.extend(items)
        return list(items)

    writer: GroupCommit[int, int] = GroupCommit("test", run, max_waiting=10, busy_after=60)
    writer.start()
    try:
        first = asyncio.create_task(writer.submit(0))
        await asyncio.sleep(0.01)  # taken by the writer, which is now stuck in its commit
        queued = [asyncio.create_task(writer.submit(i)) for i in range(1, 11)]
        await asyncio.sleep(0)
        with pytest.raises(Busy):
            await writer.submit(99)
        assert writer.refused == 1
        release.set()
        assert await first == 0
        assert [await q for q in queued] == list(range(1, 11))
    finally:
        await writer.stop()
    assert sorted(written) == list(range(11))


async def test_a_caller_that_goes_away_does_not_unwrite_its_item() -> None:
    started = asyncio.Event()
    written: list[int] = []

    async def run(items: list[int]) -> list[int | BaseException]:
        started.set()
        await asyncio.sleep(0.02)
        written.extend(items)
        return list(items)

    writer: GroupCommit[int, int] = GroupCommit("test", run)
    writer.start()
    try:
        caller = asyncio.create_task(writer.submit(7))
        await started.wait()
        caller.cancel()
        await asyncio.sleep(0.05)
    finally:
        await writer.stop()
    assert written == [7]


async def test_not_serving_runs_the_item_alone_and_raises_its_error() -> None:
    async def run(items: list[int]) -> list[int | BaseException]:
        return [ValueError("no") if i < 0 else i for i in items]

    writer: GroupCommit[int, int] = GroupCommit("test", run)
    assert await writer.submit(5) == 5
    with pytest.raises(ValueError):
        await writer.submit(-1)
