"""The short chaos suite (runs in ``make test``): each scenario runs several engine
processes on a real local Redis topology, injects one family of faults, prints one line
of figures (also appended to ``$CHAOS_FIGURES``), and asserts invariants only, never
timings: 0 acknowledged jobs lost, 0 ticks created twice, every due tick run.
``make chaos`` runs the same scenarios at length (``test_chaos_long.py``)."""

from __future__ import annotations

import pytest

from tests.chaos import scenarios as sc
from tests.chaos.harness import assert_invariants
from tests.redis_servers import RedisCluster

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


async def test_worker_and_leader_kill_loops_on_one_node(redis_factory, ledger, prefix):
    f = await sc.kill_loops_single(redis_factory(), ledger.url, prefix, sc.SHORT)
    assert_invariants(f)


async def test_redis_killed_and_restarted_with_aof_always(redis_factory, ledger, prefix):
    server = redis_factory(persistence="always")
    f = await sc.redis_crash(server, ledger.url, prefix, sc.SHORT)
    assert_invariants(f)


async def test_client_kill_storm_and_frozen_redis(redis_factory, ledger, prefix):
    f = await sc.client_kill_storm_and_freeze(redis_factory(), ledger.url, prefix, sc.SHORT)
    assert_invariants(f)


async def test_leader_isolated_by_proxy_blackhole_and_reset(redis_factory, ledger, prefix):
    f = await sc.proxy_isolation(redis_factory(), ledger.url, prefix, sc.SHORT)
    assert_invariants(f)


async def test_cluster_slot_migrated_under_load_with_kills(ledger, prefix):
    cluster = RedisCluster(3).start()
    try:
        f = await sc.cluster_reshard(cluster, ledger.url, prefix, sc.SHORT)
    finally:
        cluster.cleanup()
    assert_invariants(f)
