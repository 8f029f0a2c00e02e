"""The producer and admin API unchanged on a 3-master Redis Cluster."""

import pytest

from engine import JobState, QueueManager
from engine.connection import RedisSettings


@pytest.fixture
async def cluster_manager(redis_cluster, prefix):
    m = QueueManager(prefix=prefix, settings=RedisSettings(url=redis_cluster.url))
    yield m
    await m.close_all()


async def test_queues_spread_over_masters_and_every_operation_works(cluster_manager):
    names = [f"q{i}" for i in range(12)]
    for name in names:
        q = cluster_manager.create_queue(name)
        await q.add_bulk([{"data": i} for i in range(5)])
        job = await q.add({"fixed": True}, {"jobId": "fixed-1", "delay": 60000})
        await q.pause(actor="ops")
        await q.resume()
        await q.promote_job(job.id)
        await q.remove_job("1")
        assert (await q.get_job(job.id)).state is JobState.WAITING
        assert [j.data for j in await q.get_jobs("waiting", 0, 2)] == [1, 2, 3]
        assert await q.clean("completed", 0) == 0
    stats = await cluster_manager.get_all_stats()
    assert all(s.waiting == 5 for s in stats.values())
    client = cluster_manager.client
    owners = {client.get_node_from_key(cluster_manager.get_queue(n).keys.wait).name for n in names}
    assert len(owners) > 1  # hash tags spread queues over several masters


def test_cluster_and_sentinel_urls_are_parsed_and_passwords_redacted():
    c = RedisSettings(url="redis-cluster://u:secret@127.0.0.1:7000,127.0.0.1:7001")
    assert c.kind == "cluster" and "secret" not in c.redacted_url
    s = RedisSettings(url="redis-sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/2")
    assert s.kind == "sentinel" and not s.tls
    assert RedisSettings(url="rediss://h:1/0").tls
    with pytest.raises(ValueError, match="service"):
        RedisSettings(url="redis-sentinel://127.0.0.1:26379")
    with pytest.raises(ValueError, match="scheme"):
        RedisSettings(url="memcached://x")
