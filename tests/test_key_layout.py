"""The key layout: no job id, schedule name or request id can address another's key."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from test_api_helpers import register_seed_queues, serve

from engine import JobState, Queue, QueueManager
from engine.keys import QueueKeys
from engine.scheduler import remove_schedule
from tests.lua.worker_calls import calls, claim


async def _job_x_with_logs(q: Queue, client: aioredis.Redis) -> None:
    """Job `x` ran, wrote two log lines and completed (moved by hand, as a worker would)."""
    await q.add({"v": "x"}, {"jobId": "x"})
    ((job_id, token, *_),) = await claim(q)
    assert job_id == "x"
    for seq, line in enumerate(("one", "two"), start=1):
        assert await calls(q).log("x", token, line, seq) >= 1
    now_ms = (await client.time())[0] * 1000
    await client.zrem(q.keys.active, "x")
    await client.zadd(q.keys.completed, {"x": now_ms - 10_000})


def test_every_sub_key_namespace_is_disjoint_from_job_hashes() -> None:
    k = QueueKeys("p", "q")
    for job_id in ("x", "x:logs", "a:b:c"):
        assert k.logs(job_id).startswith(k.logs_prefix)
        assert not k.logs(job_id).startswith(k.job_prefix)
        assert not k.job(job_id).startswith(k.logs_prefix)
    assert k.logs("x") != k.job("x:logs")


async def test_a_job_named_like_a_log_list_and_its_neighbour_coexist(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    q = manager.create_queue("q")
    await _job_x_with_logs(q, client)
    other = await q.add({"v": "x:logs"}, {"jobId": "x:logs"})
    assert other.id == "x:logs" and other.data == {"v": "x:logs"}

    got = await q.get_job("x:logs")
    assert got is not None and got.data == {"v": "x:logs"} and got.state is JobState.WAITING
    assert await q.get_job_logs("x:logs") == []
    assert await q.get_job_logs("x") == ["one", "two"]

    await q.remove_job("x:logs")
    assert await q.get_job("x:logs") is None
    x = await q.get_job("x")
    assert x is not None and x.state is JobState.COMPLETED
    assert await q.get_job_logs("x") == ["one", "two"]

    await q.add({"v": "again"}, {"jobId": "x:logs"})
    await q.remove_job("x")
    assert await q.get_job("x") is None and await q.get_job_logs("x") == []
    again = await q.get_job("x:logs")
    assert again is not None and again.data == {"v": "again"}


async def test_clean_deletes_a_jobs_logs_and_nothing_of_its_neighbour(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    q = manager.create_queue("q")
    await _job_x_with_logs(q, client)
    await q.add({"v": "x:logs"}, {"jobId": "x:logs"})
    assert await q.clean("completed", 0) == 1
    assert await client.exists(q.keys.job("x"), q.keys.logs("x")) == 0
    kept = await q.get_job("x:logs")
    assert kept is not None and kept.state is JobState.WAITING


async def test_api_reads_and_deletes_of_a_log_like_id_touch_only_that_job(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    register_seed_queues(manager)
    q = manager.get_queue("serpram-sync")
    await _job_x_with_logs(q, client)
    async with serve(manager) as api:
        path = "/api/queues/serpram-sync/jobs/x:logs"
        status, _, _ = await api.call("GET", path, role="viewer")
        assert status == 404  # no such job: not the 500 of reading x's log list as a hash
        status, _, _ = await api.call("DELETE", path)
        assert status == 404
        assert await q.get_job_logs("x") == ["one", "two"]
        _, events, _ = await api.call("GET", "/api/queues/serpram-sync/events")
        assert not [e for e in events["events"] if e["event"] == "removed"]

        await q.add({"v": 2}, {"jobId": "x:logs"})
        status, body, _ = await api.call("GET", path, role="viewer")
        assert status == 200 and body["job"]["data"] == {"v": 2}


@pytest.mark.parametrize("name", ["x:ledger", "x:y"])
async def test_a_schedule_name_holding_a_colon_is_refused_before_any_key(
    manager: QueueManager, client: aioredis.Redis, name: str
) -> None:
    q = manager.create_queue("q")
    await client.xadd(q.keys.schedule_ledger("x"), {"kind": "fired", "tick": "1"})
    with pytest.raises(ValueError, match="may not contain ':'"):
        q.keys.schedule(name)
    with pytest.raises(ValueError, match="may not contain ':'"):
        await remove_schedule(manager.store, "q", name)
    assert await client.xlen(q.keys.schedule_ledger("x")) == 1
