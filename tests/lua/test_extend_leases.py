"""extend_leases-2+.lua: batched, token-checked lease renewal that confirms claims."""

from __future__ import annotations

from engine import QueueManager
from tests.lua.worker_calls import calls, claim


async def test_extend_renews_every_held_lease_and_reports_lost_ones(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    c = manager.client
    for i in range(3):
        await q.add(i)
    jobs = await claim(q, claim_ms=1000)
    before = await c.zscore(q.keys.active, "1")
    await c.hset(q.keys.job("2"), "tok", "someone-else:2")  # recovered and re-claimed
    await c.hset(q.keys.job("3"), "tok", "someone-else:3")
    await c.zrem(q.keys.active, "3")  # recovered, re-claimed and finished elsewhere
    lost = await calls(q).extend([(j[0], j[1]) for j in jobs], 60_000)
    assert lost == [["2", jobs[1][1]], ["3", jobs[2][1]]]
    after = await c.zscore(q.keys.active, "1")
    assert after is not None and before is not None and after >= before + 59_000
    assert await c.zscore(q.keys.active, "3") is None  # XX: never re-adds a finished job
    # Renewing confirms the claim: it leaves `claims`.
    assert await c.zscore(q.keys.claims, "1") is None


async def test_a_finish_crossing_the_renewal_is_not_a_lost_lease(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    (job,) = await claim(q)
    # This very attempt completed while the renewal was on its way.
    await calls(q).complete([(job[0], job[1], "1", -1, -1)], 1000)
    assert await calls(q).extend([(job[0], job[1])], 60_000) == []
    assert await manager.client.zscore(q.keys.active, "1") is None


async def test_extend_with_no_jobs_is_a_no_op(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    assert await calls(q).extend([], 1000) == []


async def test_a_job_its_own_finish_deleted_is_gone_not_lost(manager: QueueManager) -> None:
    """removeOnComplete: true and the completion crossed the renewal: the hash is gone.
    That is no lost lease (`make fuzz` seed 102 warned one), and nothing is renewed."""
    q = manager.create_queue("q")
    await q.add(1)
    (job,) = await claim(q)
    await calls(q).complete([(job[0], job[1], "1", 0, -1)], 1000)
    assert not await manager.client.exists(q.keys.job("1"))
    assert await calls(q).extend([(job[0], job[1])], 60_000) == [["1", job[1], "gone"]]
    assert await manager.client.zscore(q.keys.active, "1") is None
