"""move_to_active-7.lua: claim, promotion, pause, rate limit and the wake-up cascade."""

from __future__ import annotations

from typing import Any

from engine import Queue, QueueManager


def claim(q: Queue, count: int = 10, worker: str = "w1", lease_ms: int = 30_000, **kw: Any) -> Any:
    k = q.keys
    return q.store.scripts.move_to_active(
        [k.meta, k.wait, k.delayed, k.active, k.events, k.marker, k.limiter],
        [
            k.job_prefix,
            worker,
            count,
            lease_ms,
            1000,
            kw.get("rate_max", 0),
            kw.get("rate_ms", 1000),
            kw.get("promote", 1000),
        ],
    )


async def test_claim_moves_jobs_to_active_with_a_per_attempt_token(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add({"n": 1}, name="first")
    await q.add({"n": 2})
    now, paused, limited, next_due, jobs = await claim(q, count=1, lease_ms=5000)
    assert (paused, limited, next_due) == (0, 0, -1)
    assert len(jobs) == 1
    job_id, token, name, data, _opts, atm, _ts, stc, _prog = jobs[0]
    assert (job_id, token, name, data, atm, stc) == ("1", "w1:1", "first", '{"n":1}', "0", "0")
    c = manager.client
    assert await c.zscore(q.keys.active, "1") == now + 5000
    assert await c.hget(q.keys.job("1"), "tok") == "w1:1"
    assert await c.llen(q.keys.wait) == 1
    # `wait` is not empty: the marker is re-armed so another blocked worker wakes.
    assert await c.zscore(q.keys.marker, "w") == 0
    events = await q.events(1)
    assert events[0]["event"] == "active" and events[0]["jobId"] == "1"


async def test_claim_pops_in_priority_then_fifo_order(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1, {"priority": 5})
    await q.add(2)
    await q.add(3, {"priority": 1})
    jobs = (await claim(q))[4]
    assert [j[0] for j in jobs] == ["2", "3", "1"]


async def test_claim_promotes_due_delayed_jobs_and_reports_the_next_due(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    c = manager.client
    await q.add("later", {"delay": 60_000})
    await q.add("due", {"delay": 60_000})
    await c.zadd(q.keys.delayed, {"2": 1})  # due long ago
    now, _, _, next_due, jobs = await claim(q)
    assert [j[0] for j in jobs] == ["2"]
    assert now < next_due <= now + 60_000
    assert await c.zcard(q.keys.delayed) == 1


async def test_claim_returns_nothing_while_paused_and_keeps_jobs_waiting(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    await q.pause()
    _, paused, _, _, jobs = await claim(q)
    assert paused == 1 and jobs == []
    assert await manager.client.llen(q.keys.wait) == 1


async def test_claim_empty_queue_leaves_the_marker_alone(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    _, paused, limited, next_due, jobs = await claim(q)
    assert (paused, limited, next_due, jobs) == (0, 0, -1, [])
    assert await manager.client.exists(q.keys.marker) == 0


async def test_claim_honours_the_rate_limit_window_across_workers(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    for i in range(5):
        await q.add(i)
    first = await claim(q, count=5, worker="a", rate_max=2, rate_ms=60_000)
    assert len(first[4]) == 2
    second = await claim(q, count=5, worker="b", rate_max=2, rate_ms=60_000)
    assert second[4] == []
    assert 0 < second[2] <= 60_000  # how long to wait before the window frees a slot
    # Limited claims do not re-arm the marker for the others (that would make them spin).
    assert await manager.client.llen(q.keys.wait) == 3


async def test_claim_skips_an_id_without_a_hash(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await manager.client.rpush(q.keys.wait, "ghost")
    await manager.client.zadd(q.keys.prioritized, {"ghost2": 2**32})
    await q.add(1)
    jobs = (await claim(q))[4]
    assert [j[0] for j in jobs] == ["1"]
    assert await manager.client.zscore(q.keys.active, "ghost") is None
    assert await manager.client.zscore(q.keys.active, "ghost2") is None


async def test_each_claim_of_the_same_job_gets_a_new_token(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    assert (await claim(q, worker="a"))[4][0][1] == "a:1"
    c = manager.client
    await c.zrem(q.keys.active, "1")
    await c.rpush(q.keys.wait, "1")
    assert (await claim(q, worker="b"))[4][0][1] == "b:2"
