"""Connection settings, the client factory, startup checks and the WAIT option on one
node (Sentinel, TLS/ACL and Cluster have their own files)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster as ClusterClient

from engine import QueueManager
from engine.checks import check_lease_timing, check_redis
from engine.connection import RedisSettings, create_client
from engine.errors import ReplicationTimeout, StartupCheckError
from engine.lock import LeaseConfig


def test_from_env_reads_url_tls_files_and_wait_options():
    s = RedisSettings.from_env(
        {
            "REDIS_URL": "rediss://u:p@h:6380/2",
            "REDIS_TLS_CA_FILE": "/ca.pem",
            "REDIS_WAIT_REPLICAS": "1",
            "REDIS_WAIT_TIMEOUT_MS": "250",
        }
    )
    assert s.tls and s.kind == "single" and s.tls_ca_file == "/ca.pem"
    assert (s.wait_replicas, s.wait_timeout_ms) == (1, 250)
    assert s.redacted_url == "rediss://u:***@h:6380/2"
    with pytest.raises(ValueError, match="REDIS_WAIT_REPLICAS"):
        RedisSettings.from_env({"REDIS_WAIT_REPLICAS": "one"})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"wait_replicas": -1}, "wait_replicas"),
        ({"wait_replicas": 1, "wait_timeout_ms": 0}, "wait_timeout_ms"),
        ({"wait_replicas": 1, "wait_timeout_ms": 5000, "socket_timeout_s": 2.0}, "wait_timeout_ms"),
        ({"socket_timeout_s": 0}, "socket_timeout_s"),
        ({"retries": -1}, "retries"),
    ],
)
def test_unsafe_settings_are_refused_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        RedisSettings(**kwargs)


async def test_client_factory_builds_the_right_client_for_each_url():
    single = create_client(RedisSettings(url="redis://127.0.0.1:1/0"))
    cluster = create_client(RedisSettings(url="redis-cluster://127.0.0.1:1,127.0.0.1:2"))
    sentinel = create_client(RedisSettings(url="redis-sentinel://127.0.0.1:1/svc/3"))
    try:
        assert isinstance(single, Redis) and isinstance(cluster, ClusterClient)
        assert isinstance(sentinel, Redis)
        pool = sentinel.connection_pool
        assert pool.service_name == "svc" and pool.connection_kwargs["db"] == 3
    finally:
        for c in (single, cluster, sentinel):
            await c.aclose()


async def test_check_passes_on_a_good_server_and_warns_loudly_on_eviction(
    redis_factory, prefix, caplog
):
    server = redis_factory()
    manager = QueueManager(server.url, prefix=prefix)
    try:
        report = await manager.check(LeaseConfig())
        assert report.ok and report.maxmemory_policies == ("noeviction",)
        await manager.client.config_set("maxmemory-policy", "allkeys-lru")
        with caplog.at_level(logging.WARNING, logger="engine.checks"):
            report = await manager.check()
        assert not report.ok and "EVICT" in report.warnings[0]
        assert "allkeys-lru" in caplog.text
    finally:
        await manager.close_all()


class _OldRedis:
    async def info(self, section):
        return {"redis_version": "6.2.14"}


async def test_check_refuses_redis_older_than_7():
    with pytest.raises(StartupCheckError, match=r"6\.2\.14 is too old"):
        await check_redis(_OldRedis())


def test_lease_timing_that_a_slow_renewal_would_outlive_is_refused():
    fast = RedisSettings(socket_timeout_s=0.5)
    check_lease_timing("lease", 2000, 600, 300, fast)  # 600 + 500 < 1700
    check_lease_timing("lease", 10_000, 3000, 1000, RedisSettings())  # the defaults
    with pytest.raises(StartupCheckError, match="socket timeout"):
        check_lease_timing("lease", 2000, 600, 300, RedisSettings(socket_timeout_s=2.0))


async def test_manager_check_refuses_a_lease_shorter_than_the_socket_timeout(redis_server):
    manager = QueueManager(redis_server.url, settings=RedisSettings(redis_server.url))
    try:
        with pytest.raises(StartupCheckError, match="scheduler leader lease"):
            await manager.check(LeaseConfig(ttl_ms=3000, renew_interval_ms=1000, margin_ms=500))
    finally:
        await manager.close_all()


async def test_wait_without_a_replica_raises_replication_timeout_after_writing(
    redis_server, prefix
):
    settings = RedisSettings(url=redis_server.url, wait_replicas=1, wait_timeout_ms=50)
    manager = QueueManager(prefix=prefix, settings=settings)
    try:
        queue = manager.create_queue("w")
        with pytest.raises(ReplicationTimeout) as info:
            await queue.add({"x": 1}, {"jobId": "j-1"})
        assert info.value.job_ids == ["j-1"] and (info.value.acked, info.value.wanted) == (0, 1)
        # Written on the primary all the same: re-adding with the same id is a no-op.
        assert (await queue.get_job("j-1")).data == {"x": 1}
        with pytest.raises(ReplicationTimeout) as info:
            await queue.add_bulk([{"data": i} for i in range(3)])
        assert len(info.value.job_ids) == 3
        assert (await queue.get_stats()).waiting == 4
    finally:
        await manager.close_all()


async def test_wait_re_sends_scripts_missing_after_a_flush_and_still_waits(redis_server, prefix):
    settings = RedisSettings(url=redis_server.url, wait_replicas=1, wait_timeout_ms=20)
    manager = QueueManager(prefix=prefix, settings=settings)
    try:
        await manager.client.script_flush()
        with pytest.raises(ReplicationTimeout):
            await manager.create_queue("w").add_bulk([{"data": 1}, {"data": 2}])
        assert (await manager.get_stats("w")).waiting == 2
    finally:
        await manager.close_all()


async def test_fires_with_wait_still_fire_and_warn_when_no_replica_acknowledges(
    redis_server, prefix, caplog
):
    from engine.scheduler import define_schedule, upsert_schedule

    settings = RedisSettings(url=redis_server.url, wait_replicas=1, wait_timeout_ms=20)
    manager = QueueManager(prefix=prefix, settings=settings)
    try:
        await upsert_schedule(manager.store, define_schedule("t", "s", every_ms=100))
        lease = LeaseConfig(ttl_ms=3000, renew_interval_ms=1000, margin_ms=300)
        with caplog.at_level(logging.WARNING, logger="engine.scheduler"):
            scheduler = manager.start_scheduler("s", lease)
            assert scheduler.wait_replicas == 1
            for _ in range(100):
                if scheduler.fired >= 2:
                    break
                await asyncio.sleep(0.05)
        assert scheduler.fired >= 2
        assert "acknowledged by 0 of 1 replica" in caplog.text
    finally:
        await manager.close_all()
