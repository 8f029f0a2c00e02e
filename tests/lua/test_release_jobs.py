"""release_jobs-4.lua: a closing worker hands its unfinished jobs back at once."""

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


async def test_release_returns_held_jobs_to_wait_and_refuses_stale_tokens(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    c = manager.client
    await q.add(1)
    await q.add(2)
    jobs = await claim(q)
    k = q.keys
    released = await q.store.scripts.release_jobs(
        [k.active, k.wait, k.events, k.marker],
        [k.job_prefix, 1000, "1", jobs[0][1], "2", "stale:1"],
    )
    assert released == ["1"]
    assert await c.lrange(k.wait, 0, -1) == ["1"]
    assert await c.zscore(k.active, "2") is not None
    h = await c.hgetall(k.job("1"))
    assert "tok" not in h and "atm" not in h  # the attempt did not count
    assert await c.zscore(k.marker, "w") == 0
