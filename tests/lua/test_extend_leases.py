"""extend_leases-1.lua: batched, token-checked lease renewal."""

from __future__ import annotations

from typing import Any

from engine import Queue, QueueManager


async def claim(q: Queue, lease_ms: int) -> list[Any]:
    k = q.keys
    result = await q.store.scripts.move_to_active(
        [k.meta, k.wait, k.delayed, k.active, k.events, k.marker, k.limiter],
        [k.job_prefix, "w1", 10, lease_ms, 1000, 0, 1000, 1000],
    )
    return list(result[4])


async def test_extend_renews_every_held_lease_and_reports_lost_ones(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    c = manager.client
    for i in range(3):
        await q.add(i)
    jobs = await claim(q, lease_ms=1000)
    before = await c.zscore(q.keys.active, "1")
    await c.hset(q.keys.job("2"), "tok", "someone-else:2")  # recovered and re-claimed
    await c.zrem(q.keys.active, "3")  # finished elsewhere
    pairs = [x for j in jobs for x in (j[0], j[1])]
    lost = await q.store.scripts.extend_leases([q.keys.active], [q.keys.job_prefix, 60_000, *pairs])
    assert lost == [["2", jobs[1][1], 0], ["3", jobs[2][1], 0]]
    after = await c.zscore(q.keys.active, "1")
    assert after is not None and before is not None and after >= before + 59_000
    assert await c.zscore(q.keys.active, "3") is None  # XX: never re-adds a finished job


async def test_extend_with_no_jobs_is_a_no_op(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    assert await q.store.scripts.extend_leases([q.keys.active], [q.keys.job_prefix, 1000]) == []
