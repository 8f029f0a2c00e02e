"""recover_stalled-6.lua: expired leases back to wait, or failed past the stall limit."""

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


def recover(q: Queue, max_stalled: int = 1, guard_ms: int = 0) -> Any:
    k = q.keys
    return q.store.scripts.recover_stalled(
        [k.active, k.wait, k.failed, k.events, k.marker, k.stalled_check],
        [k.job_prefix, max_stalled, 1000, 1000, guard_ms],
    )


async def test_expired_lease_goes_back_to_the_front_of_wait(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    c = manager.client
    await q.add(1)
    await q.add(2)
    (_job, _) = await claim(q)
    await c.zadd(q.keys.active, {"1": 1})  # lease expired long ago; job 2 is still held
    await q.add(3)
    assert await recover(q) == [["1"], []]
    assert await c.lrange(q.keys.wait, 0, -1) == ["1", "3"]
    h = await c.hgetall(q.keys.job("1"))
    assert h["stc"] == "1" and "tok" not in h
    assert await c.zscore(q.keys.marker, "w") == 0
    assert "stalled" in [e["event"] for e in await q.events(5)]


async def test_job_stalled_past_the_limit_fails_with_the_reason(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    c = manager.client
    await q.add(1)
    await c.hset(q.keys.job("1"), "stc", 1)
    await claim(q)
    await c.zadd(q.keys.active, {"1": 1})
    assert await recover(q, max_stalled=1) == [[], ["1"]]
    got = await q.get_job("1")
    assert got is not None and got.state == "failed"
    assert got.failed_reason == "job stalled more than allowable limit"


async def test_the_guard_lets_one_call_run_per_interval(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    c = manager.client
    await q.add(1)
    await claim(q)
    await c.zadd(q.keys.active, {"1": 1})
    assert await c.set(q.keys.stalled_check, "1", px=60_000)
    assert await recover(q, guard_ms=60_000) == [[], []]
    await c.delete(q.keys.stalled_check)
    assert await recover(q, guard_ms=60_000) == [["1"], []]


async def test_live_leases_are_left_alone(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    await claim(q)
    assert await recover(q) == [[], []]
    assert await manager.client.zscore(q.keys.active, "1") is not None
