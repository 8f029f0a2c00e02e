"""move_to_active-10.lua: claim, resend, promotion, unconfirmed claims, pause, rate limit
and the wake-up cascade."""

from __future__ import annotations

import asyncio
from typing import Any

from engine import Queue, QueueManager
from tests.lua.worker_calls import claim_reply


def claim_all(
    q: Queue, count: int = 10, worker: str = "w1", claim_ms: int = 30_000, **kw: Any
) -> Any:
    return claim_reply(
        q,
        count,
        worker,
        claim_ms,
        rate=(kw.get("rate_max", 0), kw.get("rate_ms", 1000)),
        promote=kw.get("promote", 1000),
        request_id=kw.get("request_id"),
    )


async def test_claim_moves_jobs_to_active_with_a_per_attempt_token(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add({"n": 1}, name="first")
    await q.add({"n": 2})
    now, paused, limited, next_due, jobs, ready = await claim_all(q, count=1, claim_ms=5000)
    assert (paused, limited, next_due, ready) == (0, 0, -1, 1)
    assert len(jobs) == 1
    job_id, token, name, data, _opts, atm, _ts, stc, _prog = jobs[0]
    assert (job_id, token, name, data, atm, stc) == ("1", "w1:1", "first", '{"n":1}', "0", "0")
    c = manager.client
    assert await c.zscore(q.keys.active, "1") == now + 5000
    assert await c.zscore(q.keys.claims, "1") == now + 5000  # until its worker confirms
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
    jobs = (await claim_all(q))[4]
    assert [j[0] for j in jobs] == ["2", "3", "1"]


async def test_claim_promotes_due_delayed_jobs_and_reports_the_next_due(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    c = manager.client
    await q.add("later", {"delay": 60_000})
    await q.add("due", {"delay": 60_000})
    await c.zadd(q.keys.delayed, {"2": 1})  # due long ago
    now, _, _, next_due, jobs, ready = await claim_all(q)
    # Due and no priority: the tail of an empty `wait`, claimed by this very call.
    assert [j[0] for j in jobs] == ["2"] and ready == 0
    assert now < next_due <= now + 60_000
    assert await c.zcard(q.keys.delayed) == 1


async def test_due_jobs_join_waiting_behind_the_waiting_ones(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    c = manager.client
    await q.add("waiting")
    await q.add("due", {"delay": 60_000})
    await q.add("due ranked", {"delay": 60_000, "priority": 1})
    await q.add("ranked", {"priority": 1})
    await c.zadd(q.keys.delayed, {"2": 1, "3": 2})
    # No priority first (the waiting one, then the due one), then by priority.
    jobs = (await claim_all(q, count=2))[4]
    assert [j[0] for j in jobs] == ["1", "2"]
    _, _, _, _, jobs, ready = await claim_all(q, count=1)
    assert [j[0] for j in jobs] == ["4"] and ready == 1  # 3 was promoted behind it
    assert [j[0] for j in (await claim_all(q))[4]] == ["3"]
    assert await c.zcard(q.keys.delayed) == 0


async def test_claim_returns_nothing_while_paused_and_keeps_jobs_waiting(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    await q.pause()
    _, paused, _, _, jobs, _ = await claim_all(q)
    assert paused == 1 and jobs == []
    assert await manager.client.llen(q.keys.wait) == 1


async def test_claim_empty_queue_leaves_the_marker_alone(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    _, paused, limited, next_due, jobs, ready = await claim_all(q)
    assert (paused, limited, next_due, jobs, ready) == (0, 0, -1, [], 0)
    assert await manager.client.exists(q.keys.marker) == 0


async def test_claim_honours_the_rate_limit_window_across_workers(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    for i in range(5):
        await q.add(i)
    first = await claim_all(q, count=5, worker="a", rate_max=2, rate_ms=60_000)
    assert len(first[4]) == 2
    second = await claim_all(q, count=5, worker="b", rate_max=2, rate_ms=60_000)
    assert second[4] == []
    assert 0 < second[2] <= 60_000  # how long to wait before the window frees a slot
    # Limited claims do not re-arm the marker for the others (that would make them spin).
    assert await manager.client.llen(q.keys.wait) == 3


async def test_claim_skips_an_id_without_a_hash(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await manager.client.rpush(q.keys.wait, "ghost")
    await manager.client.zadd(q.keys.prioritized, {"ghost2": 2**32})
    await q.add(1)
    jobs = (await claim_all(q))[4]
    assert [j[0] for j in jobs] == ["1"]
    assert await manager.client.zscore(q.keys.active, "ghost") is None
    assert await manager.client.zscore(q.keys.active, "ghost2") is None


async def test_each_claim_of_the_same_job_gets_a_new_token(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    assert (await claim_all(q, worker="a"))[4][0][1] == "a:1"
    c = manager.client
    await c.zrem(q.keys.active, "1")
    await c.rpush(q.keys.wait, "1")
    assert (await claim_all(q, worker="b"))[4][0][1] == "b:2"


async def test_a_resent_claim_returns_the_first_copys_jobs_and_claims_nothing_more(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    c = manager.client
    for i in range(4):
        await q.add(i)
    first = await claim_all(q, count=2, request_id="r1")
    assert [j[0] for j in first[4]] == ["1", "2"]
    events = len(await q.events(100))
    await asyncio.sleep(0.01)  # the resend runs later: its reply still says when it claimed
    again = await claim_all(q, count=2, request_id="r1")  # the reply was lost: resent
    assert again[4] == first[4]
    assert again[0] == first[0] == int(await c.hget(q.keys.job("1"), "pon"))
    assert await c.llen(q.keys.wait) == 2 and len(await q.events(100)) == events
    # A job of the first copy since taken from it (recovered, re-claimed) is not returned.
    await c.hset(q.keys.job("1"), "tok", "other:9")
    assert [j[0] for j in (await claim_all(q, count=2, request_id="r1"))[4]] == ["2"]


async def test_an_expired_unconfirmed_claim_is_handed_back_and_announced_as_due(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    c = manager.client
    await q.add(1)
    await q.add(2)
    await claim_all(q, count=1, worker="frozen", claim_ms=60_000)
    now, _, _, next_due, jobs, _ = await claim_all(q, count=0)
    # Another worker's claim awaits confirmation: its deadline is a due time.
    assert jobs == [] and now < next_due <= now + 60_000
    await c.zadd(q.keys.claims, {"1": 1})  # its deadline passed unconfirmed
    await c.zadd(q.keys.active, {"1": 1})
    _, _, _, _, jobs, ready = await claim_all(q, count=1, worker="b")
    assert [j[0] for j in jobs] == ["2"] and ready == 1
    assert await c.lrange(q.keys.wait, 0, -1) == ["1"]
    h = await c.hgetall(q.keys.job("1"))
    assert "tok" not in h and "stc" not in h  # not a stall: it never started
    assert await c.zscore(q.keys.claims, "1") is None
    assert [j[0] for j in (await claim_all(q, worker="b"))[4]] == ["1"]


async def test_thousands_of_due_delayed_jobs_are_promoted_in_slices(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    c = manager.client
    await c.hset(q.keys.job("x"), "ts", 1)
    n = 9000  # past what one Lua unpack takes
    await c.zadd(q.keys.delayed, {f"d{i}": 1 for i in range(n)})
    for i in range(0, n, 1000):
        async with c.pipeline(transaction=False) as pipe:
            for j in range(i, i + 1000):
                pipe.hset(q.keys.job(f"d{j}"), mapping={"ts": 1, "pri": j % 2})
            await pipe.execute()
    *_, ready = await claim_all(q, count=0, promote=10_000)
    assert ready == 1 and await c.zcard(q.keys.delayed) == 0
    assert await c.llen(q.keys.wait) + await c.zcard(q.keys.prioritized) == n
