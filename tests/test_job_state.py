"""A job's state as get_job reports it, and the consistency check operators run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from engine import InvalidJobState, JobState, Queue, QueueManager
from engine.cli import main as cli_main
from engine.connection import RedisSettings
from tests.faults.real import out_of_memory
from tests.redis_servers import RedisCluster, RedisServer
from tests.test_api_helpers import register_seed_queues, serve


async def _lpos_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_lpos", {}).get("calls", 0))


async def test_a_job_in_a_zset_is_read_without_touching_the_list(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    q = manager.create_queue("q")
    for i in range(3):
        await q.add(i)
    prioritized = await q.add("p", {"priority": 2})
    delayed = await q.add("d", {"delay": 60_000})
    await client.config_resetstat()
    for job, state in ((prioritized, JobState.WAITING), (delayed, JobState.DELAYED)):
        got = await q.get_job(job.id)
        assert got is not None and got.state is state
    assert await _lpos_calls(client) == 0


async def test_a_job_in_no_structure_is_orphaned_not_waiting(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    q = manager.create_queue("q")
    kept = await q.add("kept")
    lost = await q.add("lost")
    await client.lrem(q.keys.wait, 0, lost.id)  # the job hash stays: a lost job
    got = await q.get_job(lost.id)
    assert got is not None and got.state is JobState.ORPHANED and got.data == "lost"
    again = await q.get_job(kept.id)
    assert again is not None and again.state is JobState.WAITING


async def test_a_waiting_job_is_found_anywhere_in_a_long_list(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    jobs = await q.add_bulk([{"data": i} for i in range(2_600)])
    # Head and tail are probed first (bounded); one deep inside needs the full search.
    for index in (0, 5, 1_300, 2_000, 2_599):
        got = await q.get_job(jobs[index].id)
        assert got is not None and got.state is JobState.WAITING, index


async def test_reads_need_no_multi_and_work_over_maxmemory(
    redis_factory: Callable[..., RedisServer], prefix: str
) -> None:
    server = redis_factory()
    manager = QueueManager(server.url, prefix=prefix)
    try:
        q = manager.create_queue("q")
        job = await q.add("x")
        await q.add("p", {"priority": 1})
        with out_of_memory(server):
            got = await q.get_job(job.id)
            assert got is not None and got.state is JobState.WAITING
            assert [j.data for j in await q.get_jobs("waiting", 0, 5)] == ["x", "p"]
            assert (await q.get_stats()).waiting == 2
            assert (await q.check_consistency()).ok
    finally:
        await manager.close_all()


async def test_consistency_check_of_a_healthy_queue_counts_every_state(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    q = manager.create_queue("q")
    await q.add_bulk([{"data": i} for i in range(3)])
    await q.add("p", {"priority": 1})
    await q.add("d", {"delay": 60_000})
    await client.zadd(q.keys.completed, {"c": 1})
    await client.hset(q.keys.job("c"), "data", "1")
    report = await q.check_consistency()
    assert report.ok and report.jobs == 6
    assert report.states == {"completed": 1, "delayed": 1, "waiting": 4}
    assert report.to_dict()["orphaned"] == {"count": 0, "sample": []}


async def test_consistency_check_reports_orphans_doubles_and_ids_without_a_hash(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    q = manager.create_queue("q")
    jobs = await q.add_bulk([{"data": i} for i in range(6)])
    ids = [j.id for j in jobs]
    for lost in ids[:3]:
        await client.lrem(q.keys.wait, 0, lost)  # three orphans
    await client.zadd(q.keys.delayed, {ids[3]: 1})  # in `wait` and in `delayed`
    await client.rpush(q.keys.wait, ids[4])  # twice in `wait`
    await client.zadd(q.keys.failed, {"ghost": 1})  # an id with no hash
    report = await q.check_consistency(sample=2)
    assert not report.ok
    assert report.orphaned.count == 3 and report.orphaned.sample == sorted(ids[:3])[:2]
    assert report.multiple.count == 2 and set(report.multiple.sample) == {ids[3], ids[4]}
    assert report.missing_hash.count == 1 and report.missing_hash.sample == ["ghost"]
    assert report.states == {"waiting": 1}
    body = report.to_dict()
    assert body["ok"] is False and body["missingHash"]["count"] == 1


async def test_a_refused_admin_call_names_the_state_the_script_found(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    q = manager.create_queue("q")
    waiting = await q.add("w")
    delayed = await q.add("d", {"delay": 60_000})
    lost = await q.add("lost")
    await client.lrem(q.keys.wait, 0, lost.id)
    active = await q.add("a")
    await client.lrem(q.keys.wait, 0, active.id)
    await client.zadd(q.keys.active, {active.id: 1})
    cases = [
        (q.retry_job, waiting.id, "waiting"),
        (q.retry_job, delayed.id, "delayed"),
        (q.promote_job, waiting.id, "waiting"),
        (q.promote_job, lost.id, "orphaned"),
        (q.remove_job, active.id, "active"),
    ]
    for call, job_id, state in cases:
        with pytest.raises(InvalidJobState) as refused:
            await call(job_id)
        assert refused.value.state == state
        assert str(refused.value).endswith(f"job {job_id} is {state}")
    # Refusals change nothing: every job is where it was.
    assert await client.lrange(q.keys.wait, 0, -1) == [waiting.id]
    assert await client.zrange(q.keys.active, 0, -1) == [active.id]


async def _one_orphan(q: Queue) -> str:
    await q.add("fine")
    lost = await q.add("lost")
    await q.store.client.lrem(q.keys.wait, 0, lost.id)
    return lost.id


async def test_the_admin_api_serves_the_consistency_check(manager: QueueManager) -> None:
    register_seed_queues(manager)
    lost = await _one_orphan(manager.get_queue("serpram-sync"))
    async with serve(manager) as api:
        path = "/api/queues/serpram-sync/consistency"
        status, _, _ = await api.call("GET", path, role="viewer")
        assert status == 403  # it reads the whole queue: admins only
        status, body, _ = await api.call("GET", f"{path}?sample=5")
        assert status == 200 and body["success"] is True
        report = body["report"]
        assert report["ok"] is False and report["jobs"] == 2
        assert report["orphaned"] == {"count": 1, "sample": [lost]}
        assert report["states"] == {"waiting": 1}
        status, _, _ = await api.call("GET", f"{path}?sample=1000")
        assert status == 400


def test_the_cli_check_prints_the_report_and_exits_3_when_inconsistent(
    redis_server: RedisServer,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("ENGINE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no engine.toml: the built-in queues
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("ENGINE_PREFIX", prefix)
    assert cli_main(["check", "ayt-sync"]) == 0
    assert json.loads(capsys.readouterr().out)["report"]["ok"] is True

    async def damage() -> str:
        m = QueueManager(redis_server.url, prefix=prefix)
        try:
            return await _one_orphan(m.create_queue("ayt-sync"))
        finally:
            await m.close_all()

    lost = asyncio.run(damage())
    assert cli_main(["check", "ayt-sync", "--sample", "3"]) == 3
    report = json.loads(capsys.readouterr().out)["report"]
    assert report["orphaned"] == {"count": 1, "sample": [lost]}


async def test_state_reads_and_the_check_work_on_a_cluster(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    manager = QueueManager(prefix=prefix, settings=RedisSettings(url=redis_cluster.url))
    try:
        q = manager.create_queue("cq")
        lost = await _one_orphan(q)
        got = await q.get_job(lost)
        assert got is not None and got.state is JobState.ORPHANED
        assert [j.data for j in await q.get_jobs("waiting")] == ["fine"]
        report = await q.check_consistency()
        assert report.jobs == 2 and report.orphaned.sample == [lost]
    finally:
        await manager.close_all()
