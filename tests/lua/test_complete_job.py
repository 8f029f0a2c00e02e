"""complete_job-4+.lua: token check, idempotent resend and retention."""

from __future__ import annotations

from typing import Any

from engine import Queue, QueueManager
from tests.lua.worker_calls import calls, claim


def complete_many(
    q: Queue, jobs: list[tuple[str, str, str, int, int]], retention_batch: int = 1000
) -> Any:
    """One call finishing ``jobs``: (id, token, return value, keep, age ms) each."""
    return calls(q).complete(jobs, retention_batch)


async def complete(
    q: Queue, job_id: str, token: str, rv: str = "1", keep: int = -1, age_ms: int = -1
) -> Any:
    """One job: {finished on, duration} when completed, else its code (0 or -2)."""
    now, (code,), (duration,) = await complete_many(q, [(job_id, token, rv, keep, age_ms)])
    return [now, duration] if code == 1 else code


async def test_complete_moves_active_to_completed_with_return_value(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    (job,) = await claim(q)
    finished_on, duration = await complete(q, "1", job[1], '{"ok":true}')
    assert duration >= 0
    got = await q.get_job("1")
    assert got is not None
    assert got.state == "completed" and got.return_value == {"ok": True}
    assert got.attempts_made == 1 and got.finished_on == finished_on
    assert (await q.events(1))[0]["event"] == "completed"


async def test_complete_with_a_stale_token_is_refused_and_changes_nothing(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    await claim(q)
    before = await manager.client.hgetall(q.keys.job("1"))
    assert await complete(q, "1", "w1:0") == -2
    assert await manager.client.hgetall(q.keys.job("1")) == before
    assert await manager.client.zscore(q.keys.active, "1") is not None


async def test_complete_of_a_job_no_longer_active_is_refused(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    (job,) = await claim(q)
    await manager.client.hdel(q.keys.job("1"), "tok")  # as stalled recovery does
    assert await complete(q, "1", job[1]) == -2


async def test_complete_retried_with_the_same_token_is_a_no_op(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    (job,) = await claim(q)
    await complete(q, "1", job[1])
    assert await complete(q, "1", job[1]) == 0
    assert await manager.client.hget(q.keys.job("1"), "atm") == "1"


async def test_complete_keeps_only_the_newest_count(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    for i in range(4):
        await q.add(i)
    for job in await claim(q):
        await complete(q, job[0], job[1], keep=2)
    c = manager.client
    assert await c.zrange(q.keys.completed, 0, -1) == ["3", "4"]
    assert await c.exists(q.keys.job("1"), q.keys.job("2")) == 0


async def test_complete_with_keep_zero_removes_the_job_and_its_logs(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    await q.add(1)
    (job,) = await claim(q)
    await manager.client.rpush(q.keys.logs("1"), "line")
    await complete(q, "1", job[1], keep=0)
    assert await manager.client.exists(q.keys.job("1"), q.keys.logs("1")) == 0
    assert await manager.client.zcard(q.keys.completed) == 0
    # The client resends the call (its reply was lost): the job is gone, which is not a
    # lost lease (-2, "recovered elsewhere") but -1.
    assert await complete(q, "1", job[1], keep=0) == -1


async def test_keep_zero_removes_that_job_only_as_bull_does(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    c = manager.client
    for i in range(3):
        await q.add(i)
    jobs = await claim(q)
    await complete(q, jobs[0][0], jobs[0][1], keep=1000)
    await complete(q, jobs[1][0], jobs[1][1], keep=1000)
    await complete(q, jobs[2][0], jobs[2][1], rv='"r3"', keep=0)  # removeOnComplete: true
    assert await c.zrange(q.keys.completed, 0, -1) == ["1", "2"]
    assert await c.exists(q.keys.job("1"), q.keys.job("2")) == 2
    assert await c.exists(q.keys.job("3")) == 0
    # Its event still says how it ended (a waiter has no hash left to read).
    event = (await q.events(1))[0]
    assert (event["event"], event["jobId"], event["returnvalue"]) == ("completed", "3", '"r3"')


async def test_complete_drops_jobs_older_than_the_age_limit(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    c = manager.client
    await q.add(1)
    await q.add(2)
    await c.zadd(q.keys.completed, {"1": 1})  # finished in 1970
    (job,) = [j for j in await claim(q) if j[0] == "2"]
    await complete(q, "2", job[1], age_ms=3_600_000)
    assert await c.zrange(q.keys.completed, 0, -1) == ["2"]
    assert await c.exists(q.keys.job("1")) == 0


async def test_one_call_finishes_many_and_refuses_only_the_stale_token(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    for i in range(4):
        await q.add(i)
    jobs = await claim(q)
    before = await manager.client.hgetall(q.keys.job("2"))
    batch = [(j[0], j[1] if j[0] != "2" else "w1:0", f'"r{j[0]}"', -1, -1) for j in jobs]
    now, codes, durations = await complete_many(q, batch)
    assert codes == [1, -2, 1, 1]
    assert all(d >= 0 for d in durations)
    c = manager.client
    assert await c.zrange(q.keys.completed, 0, -1) == ["1", "3", "4"]
    assert await c.zrange(q.keys.active, 0, -1) == ["2"]
    assert await c.hgetall(q.keys.job("2")) == before
    for job_id in ("1", "3", "4"):
        got = await q.get_job(job_id)
        assert got is not None and got.return_value == f"r{job_id}"
        assert got.finished_on == now and got.attempts_made == 1
    # One `completed` event per finished job, in order; none for the refused one.
    done = [e["jobId"] for e in reversed(await q.events(100)) if e["event"] == "completed"]
    assert done == ["1", "3", "4"]
    # Retried as a whole (a lost reply): the finished ones answer 0, nothing changes twice.
    _, again, _ = await complete_many(q, batch)
    assert again == [0, -2, 0, 0]
    assert await c.hget(q.keys.job("1"), "atm") == "1"


async def test_one_call_applies_retention_once_as_if_one_by_one(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    c = manager.client
    for i in range(6):
        await q.add(i)
    jobs = await claim(q)
    await c.zadd(q.keys.completed, {"old": 1})
    await c.hset(q.keys.job("old"), "ts", 1)
    # Job 1 asks to be removed at once (keep 0): that trim runs at its place, so the jobs
    # after it, which keep 3, stay; the last three of those are kept.
    batch = [(j[0], j[1], "1", 0 if j[0] == "1" else 3, -1) for j in jobs]
    _, codes, _ = await complete_many(q, batch)
    assert codes == [1] * 6
    assert await c.zrange(q.keys.completed, 0, -1) == ["4", "5", "6"]
    assert await c.exists(q.keys.job("old"), q.keys.job("1"), q.keys.job("2")) == 0
    assert await c.zcard(q.keys.active) == 0


async def test_retention_of_a_call_is_bounded_by_its_batch(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    c = manager.client
    await q.add(1)
    (job,) = await claim(q)
    await c.zadd(q.keys.completed, {f"old{i}": i for i in range(5)})
    await complete_many(q, [("1", job[1], "1", 1, -1)], retention_batch=2)
    # At most 2 removed per call: the oldest go first.
    assert await c.zrange(q.keys.completed, 0, -1) == ["old2", "old3", "old4", "1"]
