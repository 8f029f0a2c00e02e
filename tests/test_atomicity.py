"""Each add and admin script, refused at any point, leaves Redis unchanged (issue 11,
item 4): OOM, NOREPLICAS, and a Cluster slot half migrated (tests/atomicity.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from engine import Queue
from engine.store import Store
from tests.atomicity import (
    Call,
    Setup,
    assert_atomic_mid_migration,
    assert_atomic_under_refusals,
    assert_refused_unchanged,
    snapshot,
)
from tests.faults.real import half_migrated_slot
from tests.helpers import crc16_slot
from tests.redis_servers import RedisCluster, RedisServer, slot_owner


async def _warm(q: Queue) -> None:
    # A first add reserves a block of ids: the add under test runs its script only. Every
    # structure exists, as in a busy queue (a script that declares only existing keys
    # passes a half-migrated slot's check).
    await q.add("warm")
    await q.add("later", {"delay": 60_000})
    await q.add("high", {"priority": 1})


async def _finished(q: Queue, state: str, *opts: dict[str, Any]) -> list[str]:
    """Jobs moved by hand to `completed`/`failed`, as a worker would, with a log line."""
    client = q.store.client
    ids = []
    for o in opts or ({},):
        job = await q.add("x", o)
        await client.lrem(q.keys.wait, 0, job.id)
        await client.zrem(q.keys.prioritized, job.id)
        await client.zadd(getattr(q.keys, state), {job.id: 1000})
        await client.hset(q.keys.job(job.id), mapping={"fon": 1000, "atm": 1})
        await client.rpush(q.keys.logs(job.id), "a line")
        ids.append(job.id)
    return ids


async def _failed_with_priority(q: Queue) -> None:
    await _warm(q)
    await _finished(q, "failed", {"priority": 3, "jobId": "f"})


async def _delayed_with_priority(q: Queue) -> None:
    await _warm(q)
    await q.add("d", {"delay": 60_000, "priority": 2, "jobId": "d"})


async def _completed_pair(q: Queue) -> None:
    await _finished(q, "completed", {"jobId": "c1"}, {"jobId": "c2"})


_DEBOUNCE = {"deduplication": {"id": "d", "ttl": 60_000, "extend": True, "replace": True}}


async def _debouncing(q: Queue) -> None:
    await _warm(q)
    await q.add({"v": 1}, {**_DEBOUNCE, "delay": 60_000})


async def _window_of_a_removed_job(q: Queue) -> None:
    await _warm(q)
    job = await q.add("gone", {"deduplication": {"id": "d"}})
    await q.remove_job(job.id)


async def _paused(q: Queue) -> None:
    await _warm(q)
    await q.pause()


CASES: dict[str, tuple[Setup, Call]] = {
    "add": (_warm, lambda q: q.add({"n": 1})),
    "add prioritized": (_warm, lambda q: q.add("p", {"priority": 2})),
    "add delayed": (_warm, lambda q: q.add("d", {"delay": 60_000})),
    "add_bulk": (
        _warm,
        lambda q: q.add_bulk(
            [{"data": 1}, {"data": 2, "opts": {"priority": 1}}, {"data": 3, "opts": {"delay": 9}}]
        ),
    ),
    "add deduplicated, new window": (
        _warm,
        lambda q: q.add("n", {"deduplication": {"id": "n", "ttl": 60_000}}),
    ),
    "add deduplicated, replacing": (
        _debouncing,
        lambda q: q.add({"v": 2}, {**_DEBOUNCE, "delay": 30_000}),
    ),
    "add deduplicated, stale window": (
        _window_of_a_removed_job,
        lambda q: q.add("again", {"deduplication": {"id": "d"}}),
    ),
    "retry": (_failed_with_priority, lambda q: q.retry_job("f")),
    "promote": (_delayed_with_priority, lambda q: q.promote_job("d")),
    "remove finished": (_completed_pair, lambda q: q.remove_job("c1")),
    "remove waiting": (_warm, lambda q: q.remove_job("1")),
    "clean": (_completed_pair, lambda q: q.clean("completed", 0)),
    "pause": (_warm, lambda q: q.pause()),
    "resume": (_paused, lambda q: q.resume()),
}


@pytest.fixture(scope="module")
def own_server() -> Iterator[RedisServer]:
    """A private server: the refusals reconfigure it."""
    server = RedisServer().start()
    yield server
    server.cleanup()


def _fresh() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"a{tag}", f"q{tag}"


@pytest.mark.parametrize("case", sorted(CASES))
async def test_refused_by_oom_or_noreplicas_changes_nothing(
    own_server: RedisServer, case: str
) -> None:
    setup, call = CASES[case]
    prefix, name = _fresh()
    outcomes = await assert_atomic_under_refusals(own_server, prefix, name, setup, call)
    assert "replicas" in outcomes["no_replicas"].lower()
    # Over maxmemory Redis refuses a script at its first write only if that write may grow
    # memory: one that starts by removing (ZREM, DEL: promote, retry, remove, clean) runs
    # whole, which is what an operator out of memory wants.
    assert outcomes["out_of_memory"] == "applied" or "maxmemory" in outcomes["out_of_memory"]
    if case.startswith("add"):
        assert "maxmemory" in outcomes["out_of_memory"]


@pytest.mark.parametrize("case", sorted(CASES))
async def test_refused_mid_slot_migration_at_any_point_changes_nothing(
    redis_cluster: RedisCluster, case: str
) -> None:
    setup, call = CASES[case]
    prefix, name = _fresh()
    refused = await assert_atomic_mid_migration(redis_cluster, prefix, name, setup, call)
    assert refused >= 4


async def test_a_deduplicated_add_whose_holder_moved_away_is_refused(
    redis_cluster: RedisCluster,
) -> None:
    """The holder's hash is not declared (its id is read from the dedup key): moved alone,
    the add is refused before any write, never applied as if the holder were gone. (The
    slot check refuses it already, TRYAGAIN: an add declares keys that do not exist yet,
    its request record and new job hash; the script's own pcall guard is a second line.)"""
    prefix, name = _fresh()
    base = f"{prefix}:{{{name}}}:"
    slot = crc16_slot(base)
    client = aioredis.Redis(port=slot_owner(redis_cluster, slot).port, decode_responses=True)
    try:
        q = Queue(Store(client, prefix=prefix), name)
        await _debouncing(q)
        holder = await client.get(q.keys.dedup("d"))
        with half_migrated_slot(redis_cluster, slot, [q.keys.job(holder)]):
            await assert_refused_unchanged(
                lambda: q.add({"v": 2}, {**_DEBOUNCE, "delay": 30_000}),
                lambda: snapshot(redis_cluster.nodes, base, slot=slot),
                what="holder moved",
            )
    finally:
        await client.aclose()
