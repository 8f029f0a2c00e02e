"""recover_stalled-8.lua: expired leases back to wait, or failed past the stall limit;
unconfirmed claims back without a stall."""

from __future__ import annotations

from typing import Any

from engine import Queue, QueueManager
from tests.lua.worker_calls import calls, claim


def recover(q: Queue, max_stalled: int = 1, guard_ms: int = 0) -> Any:
    return calls(q).recover(
        max_stalled=max_stalled,
        batch=1000,
        guard_ms=guard_ms,
        default_keep_failed=5000,
        retention_batch=1000,
    )


async def confirmed(q: Queue, jobs: list[Any]) -> list[Any]:
    """Confirm claims as a worker does once they run (recovery then counts a stall)."""
    assert await calls(q).extend([(j[0], j[1]) for j in jobs], 30_000) == []
    return jobs


async def test_expired_lease_goes_back_to_the_front_of_wait(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    c = manager.client
    await q.add(1)
    await q.add(2)
    await confirmed(q, await claim(q))
    await c.zadd(q.keys.active, {"1": 1})  # lease expired long ago; job 2 is still held
    await q.add(3)
    assert await recover(q) == [["1"], [], []]
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
    await confirmed(q, await claim(q))
    await c.zadd(q.keys.active, {"1": 1})
    assert await recover(q, max_stalled=1) == [[], ["1"], []]
    got = await q.get_job("1")
    assert got is not None and got.state == "failed"
    assert got.failed_reason == "job stalled more than allowable limit"


async def test_the_guard_lets_one_call_run_per_interval(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    c = manager.client
    await q.add(1)
    await confirmed(q, await claim(q))
    await c.zadd(q.keys.active, {"1": 1})
    assert await c.set(q.keys.stalled_check, "1", px=60_000)
    assert await recover(q, guard_ms=60_000) == [[], [], []]
    await c.delete(q.keys.stalled_check)
    assert await recover(q, guard_ms=60_000) == [["1"], [], []]


async def test_live_leases_are_left_alone(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    await claim(q)
    assert await recover(q) == [[], [], []]
    assert await manager.client.zscore(q.keys.active, "1") is not None


async def test_an_unconfirmed_claim_comes_back_without_counting_a_stall(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    c = manager.client
    await q.add(1, {"priority": 2})
    await q.add(2)
    await claim(q, count=1)  # job 2 (no priority first), never confirmed
    await c.zadd(q.keys.active, {"2": 1})
    await c.zadd(q.keys.claims, {"2": 1})
    assert await recover(q, max_stalled=0) == [[], [], ["2"]]
    h = await c.hgetall(q.keys.job("2"))
    assert "stc" not in h and "tok" not in h
    assert await c.lrange(q.keys.wait, 0, -1) == ["2"]
    assert await c.zcard(q.keys.claims) == 0
    assert [e["event"] for e in await q.events(1)] == ["released"]


async def test_a_job_failed_by_recovery_gets_its_retention(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    c = manager.client
    await q.add(1, {"removeOnFail": True})
    await q.add(2, {"removeOnFail": 1})
    await c.zadd(q.keys.failed, {"old": 1})
    await c.hset(q.keys.job("old"), "ts", 1)
    jobs = await confirmed(q, await claim(q))
    assert len(jobs) == 2
    await c.zadd(q.keys.active, {"1": 1, "2": 2})
    assert await recover(q, max_stalled=0) == [[], ["1", "2"], []]
    assert await c.zrange(q.keys.failed, 0, -1) == ["2"]
    assert await c.exists(q.keys.job("1"), q.keys.job("old")) == 0
