"""The whole engine (workers + schedulers of two instances) on the session's local
3-master Redis Cluster: queues spread over masters, every script call stays in one slot,
blocking fetch wakes on new jobs, ticks fire exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from engine import QueueManager
from engine.connection import RedisSettings
from engine.lock import LeaseConfig
from engine.scheduler import define_schedule, upsert_schedule
from engine.scripts import LuaScript
from tests.helpers import crc16_slot, wait_for

pytestmark = pytest.mark.slow

LEASE = LeaseConfig(ttl_ms=1500, renew_interval_ms=400, margin_ms=300)
QUEUES = [f"cq{i}" for i in range(6)]


@pytest.fixture
def slot_hook(monkeypatch):
    """Record the slots of every script call: its KEYS and the job keys it derives from
    the job key prefix in ARGV[1] (undeclared keys must share the slot as well)."""
    calls: list[tuple[str, set[int]]] = []
    original = LuaScript.__call__

    def spy(self, keys, args=(), client=None):
        slots = {crc16_slot(k) for k in keys}
        if args and isinstance(args[0], str) and args[0].endswith(":job:"):
            slots.add(crc16_slot(args[0] + "x"))
        calls.append((self.name, slots))
        return original(self, keys, args, client)

    monkeypatch.setattr(LuaScript, "__call__", spy)
    return calls


async def test_workers_and_schedulers_of_two_instances_run_every_queue_on_a_cluster(
    redis_cluster, prefix, slot_hook
):
    settings = RedisSettings(url=redis_cluster.url, socket_timeout_s=0.5)
    a = QueueManager(prefix=prefix, settings=settings)
    b = QueueManager(prefix=prefix, settings=settings)
    runs: Counter[tuple[str, str]] = Counter()

    def handler_for(queue):
        async def handler(job):
            runs[(queue, job.id)] += 1

        return handler

    try:
        for queue in QUEUES:
            await upsert_schedule(a.store, define_schedule("tick", queue, every_ms=200))
            for m in (a, b):
                m.start_scheduler(queue, LEASE)
                await m.process(queue, handler_for(queue), concurrency=4, block_timeout_s=1.0)
        await asyncio.sleep(0.3)  # workers are blocked on their markers by now
        for queue in QUEUES:
            await a.create_queue(queue).add_bulk([{"data": i} for i in range(25)])
        await wait_for(lambda: _jobs_done(runs, 25 * len(QUEUES)), timeout_s=15)
        await asyncio.sleep(1.2)  # ~6 ticks per queue
    finally:
        await a.close_all()
        await b.close_all()

    owners = {a.client.get_node_from_key(a.store.keys(q).wait).name for q in QUEUES}
    assert len(owners) > 1, "hash tags should spread the queues over several masters"
    for queue in QUEUES:
        ticks = [job_id for (q, job_id), _ in runs.items() if q == queue and ":" in job_id]
        assert len(ticks) >= 3, f"queue {queue}: the scheduler fired {len(ticks)} ticks"
    assert all(n == 1 for n in runs.values()), "a job or tick ran twice without a fault"
    assert slot_hook and all(len(slots) == 1 for _, slots in slot_hook)
    used = {name for name, _ in slot_hook}
    assert {"add_job", "move_to_active", "complete_job", "fire_schedule"} <= used


async def _jobs_done(runs, n):
    return sum(1 for (_, job_id) in runs if ":" not in job_id) >= n


async def test_startup_checks_cover_every_master(redis_cluster, prefix):
    manager = QueueManager(
        prefix=prefix, settings=RedisSettings(url=redis_cluster.url, socket_timeout_s=0.5)
    )
    try:
        report = await manager.check(LEASE)
    finally:
        await manager.close_all()
    assert len(report.redis_versions) == 3 and report.maxmemory_policies == ("noeviction",) * 3
