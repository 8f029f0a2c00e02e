"""update_progress-2.lua: progress of a running job, token-checked."""

from __future__ import annotations

from typing import Any

from engine import Queue, QueueManager


async def claim(q: Queue) -> list[Any]:
    k = q.keys
    result = await q.store.scripts.move_to_active(
        [k.meta, k.wait, k.delayed, k.active, k.events, k.marker, k.limiter],
        [k.job_prefix, "w1", 10, 30_000, 1000, 0, 1000, 1000],
    )
    return list(result[4])


def progress(q: Queue, token: str, value: str) -> Any:
    k = q.keys
    return q.store.scripts.update_progress(
        [k.active, k.events], [k.job_prefix, "1", token, value, 1000]
    )


async def test_progress_is_stored_and_announced(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    (job,) = await claim(q)
    assert await progress(q, job[1], "42") == 1
    got = await q.get_job("1")
    assert got is not None and got.progress == 42
    event = (await q.events(1))[0]
    assert event["event"] == "progress" and event["progress"] == "42"


async def test_progress_with_a_stale_token_is_refused(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    await claim(q)
    assert await progress(q, "w1:0", "42") == -2
    assert await manager.client.hget(q.keys.job("1"), "prog") is None
