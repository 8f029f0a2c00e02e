"""fail_job-10.lua: retry to delayed / wait, final failure, stack cap, retention, token check."""

from __future__ import annotations

import json
from typing import Any

from engine import Queue, QueueManager
from tests.lua.worker_calls import calls, claim


def fail(
    q: Queue,
    job_id: str,
    token: str,
    delay: int = -1,
    stack: str = "trace",
    max_stack: int = 10,
    keep: int = -1,
    age_ms: int = -1,
) -> Any:
    k = q.keys
    return calls(q).fail(
        [k.job_prefix, job_id, token, "boom", stack, max_stack, delay, keep, age_ms, 1000, 1000]
    )


async def test_final_failure_moves_to_failed_with_reason_and_trace(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    (job,) = await claim(q)
    now, retried, attempts = await fail(q, "1", job[1])
    assert (retried, attempts) == (0, 1)
    got = await q.get_job("1")
    assert got is not None
    assert got.state == "failed" and got.failed_reason == "boom"
    assert got.stacktrace == ["trace"] and got.finished_on == now
    assert (await q.events(1))[0]["event"] == "failed"


async def test_retry_with_a_delay_goes_to_delayed_and_arms_the_marker(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    c = manager.client
    await q.add(1)
    (job,) = await claim(q)
    now, retried, _ = await fail(q, "1", job[1], delay=5000)
    assert retried == 1
    assert await c.zscore(q.keys.delayed, "1") == now + 5000
    assert await c.zscore(q.keys.marker, "d") == now + 5000
    event = (await q.events(1))[0]
    assert event["event"] == "retrying" and event["delay"] == "5000"
    assert event["due"] == str(now + 5000)


async def test_retry_marker_keeps_an_earlier_due_time(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    c = manager.client
    await q.add(1)
    (job,) = await claim(q)
    await c.zadd(q.keys.marker, {"d": 5})
    await fail(q, "1", job[1], delay=5000)
    assert await c.zscore(q.keys.marker, "d") == 5


async def test_retry_without_delay_goes_back_to_prioritized(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1, {"priority": 3})
    (job,) = await claim(q)
    await fail(q, "1", job[1], delay=0)
    score = await manager.client.zscore(q.keys.prioritized, "1")
    assert score is not None and score // 2**32 == 3
    assert await manager.client.exists(q.keys.wait) == 0
    assert await manager.client.zscore(q.keys.marker, "w") == 0


async def test_retry_without_delay_goes_to_the_end_of_wait(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    c = manager.client
    await q.add(1)
    (job,) = await claim(q)
    await q.add(2)
    await fail(q, "1", job[1], delay=0)
    assert await c.lrange(q.keys.wait, 0, -1) == ["2", "1"]
    assert await c.exists(q.keys.prioritized) == 0
    assert await c.zscore(q.keys.marker, "w") == 0


async def test_stack_traces_are_capped_to_the_newest(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    for i in range(3):
        (job,) = await claim(q)
        await fail(q, "1", job[1], delay=0, stack=f"t{i}", max_stack=2)
    traces = json.loads(await manager.client.hget(q.keys.job("1"), "st"))
    assert traces == ["t1", "t2"]
    assert await manager.client.hget(q.keys.job("1"), "atm") == "3"


async def test_fail_with_a_stale_token_is_refused_and_changes_nothing(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    await claim(q)
    before = await manager.client.hgetall(q.keys.job("1"))
    assert await fail(q, "1", "other:1") == -2
    assert await manager.client.hgetall(q.keys.job("1")) == before


async def test_fail_retried_with_the_same_token_is_a_no_op(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    (job,) = await claim(q)
    await fail(q, "1", job[1])
    assert await fail(q, "1", job[1]) == 0
    assert await manager.client.hget(q.keys.job("1"), "atm") == "1"


async def test_final_failure_applies_count_retention(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    for i in range(3):
        await q.add(i)
    for job in await claim(q):
        await fail(q, job[0], job[1], keep=1)
    c = manager.client
    assert await c.zrange(q.keys.failed, 0, -1) == ["3"]
    assert await c.exists(q.keys.job("1"), q.keys.job("2")) == 0


async def test_final_failure_applies_age_retention(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    c = manager.client
    await q.add(1)
    await q.add(2)
    await c.zadd(q.keys.failed, {"1": 1})
    (job,) = [j for j in await claim(q) if j[0] == "2"]
    await fail(q, "2", job[1], age_ms=1000)
    assert await c.zrange(q.keys.failed, 0, -1) == ["2"]


async def test_a_resent_final_failure_of_a_job_its_retention_deleted_answers_gone(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    (job,) = await claim(q)
    _, retried, _ = await fail(q, "1", job[1], keep=0)  # removeOnFail: true
    assert retried == 0 and not await manager.client.exists(q.keys.job("1"))
    # The reply was lost and the client resent the call: gone (-1), not a lost lease (-2).
    assert await fail(q, "1", job[1], keep=0) == -1


async def test_a_resent_retry_after_the_job_was_claimed_again_is_a_no_op(
    manager: QueueManager,
) -> None:
    """The client resent [fail (retry now), claim] after its first copy ran, whose claim
    took the retried job again under a new token (`make fuzz` seed 102): the resent fail
    finds that token, yet its failure was recorded: 0 (already done), not -2 (lease lost),
    and the new attempt is untouched."""
    q = manager.create_queue("q")
    await q.add(1)
    (first,) = await claim(q)
    assert (await fail(q, "1", first[1], delay=0))[1] == 1
    (second,) = await claim(q)
    assert second[1] != first[1]
    before = await manager.client.hgetall(q.keys.job("1"))
    assert await fail(q, "1", first[1], delay=0) == 0
    assert await manager.client.hgetall(q.keys.job("1")) == before
    assert await manager.client.zscore(q.keys.active, "1") is not None
    # A token that never failed this job is still refused.
    assert await fail(q, "1", "someone-else:1", delay=0) == -2
