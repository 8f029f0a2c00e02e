"""A Sentinel-managed primary/replica set (1 master, 1 replica, 3 sentinels, quorum 2):
the engine connects through the sentinels, WAIT acknowledges adds on the replica, and
after the master is killed clients find the promoted replica and carry on."""

from __future__ import annotations

import asyncio
import time

import pytest

from engine import QueueManager
from engine.connection import RedisSettings
from engine.errors import ReplicationTimeout
from tests.helpers import wait_for
from tests.redis_servers import RedisSentinel

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sentinel_set():
    topology = RedisSentinel().start()
    yield topology
    topology.cleanup()


def _replica_has(topology, key):
    master = topology.master_port()
    replica = next(n for n in topology.data_nodes if n.port != master)
    client = replica.client()
    try:
        return bool(client.exists(key))
    finally:
        client.close()


async def test_adds_with_wait_are_on_the_replica_when_they_return(sentinel_set, prefix):
    settings = RedisSettings(url=sentinel_set.url, wait_replicas=1, wait_timeout_ms=2000)
    manager = QueueManager(prefix=prefix, settings=settings)
    try:
        queue = manager.create_queue("acked")
        job = await queue.add({"n": 1})
        jobs = await queue.add_bulk([{"data": i} for i in range(50)])
        # No sleep: WAIT returned, so the replica has every one of them now.
        for j in [job, *jobs]:
            assert _replica_has(sentinel_set, queue.keys.job(j.id))
    finally:
        await manager.close_all()


async def test_a_frozen_replica_turns_wait_into_replication_timeout(sentinel_set, prefix):
    settings = RedisSettings(url=sentinel_set.url, wait_replicas=1, wait_timeout_ms=200)
    manager = QueueManager(prefix=prefix, settings=settings)
    replica = sentinel_set.node(
        next(n.port for n in sentinel_set.data_nodes if n.port != sentinel_set.master_port())
    )
    replica.freeze()
    try:
        with pytest.raises(ReplicationTimeout, match="0 of 1 replica"):
            await manager.create_queue("frozen").add({"n": 1}, {"jobId": "only-on-primary"})
    finally:
        replica.thaw()
        await manager.close_all()


async def test_clients_follow_a_failover_and_keep_working(sentinel_set, prefix):
    settings = RedisSettings(url=sentinel_set.url, socket_timeout_s=1.0)
    manager = QueueManager(prefix=prefix, settings=settings)
    done: set[int] = set()

    async def handler(job):
        done.add(job.data)

    try:
        queue = manager.create_queue("fo", {"attempts": 5})
        await manager.process("fo", handler, concurrency=4, lease_ms=2000)
        await queue.add_bulk([{"data": i} for i in range(20)])
        await wait_for(lambda: _count(done, 20), timeout_s=10)
        # Let replication catch up so the promoted replica has what was acknowledged.
        await asyncio.sleep(0.2)
        old, _ = await asyncio.to_thread(sentinel_set.kill_master)
        deadline = time.monotonic() + 20
        added = 0
        while added < 20 and time.monotonic() < deadline:
            try:
                await queue.add(100 + added)
                added += 1
            except Exception:  # redirected to the new master after the failover
                await asyncio.sleep(0.1)
        assert added == 20, "adds did not resume on the promoted replica"
        await wait_for(lambda: _count(done, 40), timeout_s=20)
        assert set(range(20)) | set(range(100, 120)) <= done
        await asyncio.to_thread(sentinel_set.rejoin, old)
    finally:
        await manager.close_all()


async def _count(done, n):
    return len(done) >= n
