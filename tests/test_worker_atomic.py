"""Every worker script refused by Redis leaves Redis unchanged: out of memory, not enough
replicas, and on a real Cluster with the queue's slot half-migrated. Redis does not roll
a script back, so this holds only because each one declares every key it may write and
reads everything (redis.pcall for keys it cannot know before) before its first write."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
import redis

from engine import Queue, QueueManager
from engine.connection import RedisSettings
from engine.scripts import SOURCES
from engine.store import Store
from engine.worker.calls import WorkerCalls
from engine.worker.outage import Verdict, classify
from tests.faults.real import half_migrated_slot, no_replicas, out_of_memory
from tests.helpers import crc16_slot
from tests.lua.worker_calls import calls, claim
from tests.redis_servers import RedisCluster, RedisServer, slot_owner

pytestmark = pytest.mark.slow

Call = Callable[[WorkerCalls], Awaitable[Any]]


def snapshot(client: Any, pattern: str, asking: bool = False) -> dict[bytes, tuple[bytes, bool]]:
    """Every key of this node matching ``pattern``: its DUMP and whether it has a TTL
    (``asking``: each read after ASKING, as a node importing a slot serves it only so)."""
    out = {}
    for key in client.scan_iter(match=pattern, count=1000):
        with client.pipeline(transaction=False) as pipe:
            for read in (pipe.dump, pipe.pttl):
                if asking:
                    pipe.execute_command("ASKING")
                read(key)
            replies = pipe.execute()
        dumped, ttl = replies[1::2] if asking else replies
        if dumped is not None:
            out[key] = (dumped, ttl > 0)
    return out


async def populate(q: Queue) -> dict[str, str]:
    """A queue with a job in each case the worker scripts handle; returns the tokens."""
    c = q.store.client
    k = q.keys
    for i in range(1, 5):
        await q.add(i, {"removeOnComplete": 1, "removeOnFail": 1})
    tokens = {j[0]: j[1] for j in await claim(q, count=4)}
    await calls(q).extend([("1", tokens["1"]), ("2", tokens["2"])], 30_000)  # confirmed
    await c.zadd(k.active, {"2": 1})  # 2: a stalled lease
    await c.zadd(k.active, {"3": 1})  # 3: a claim never confirmed, past its deadline
    await c.zadd(k.claims, {"3": 1})
    await q.add(5)
    await q.add(6, {"priority": 3})
    await q.add(7, {"delay": 60_000})
    await c.zadd(k.delayed, {"7": 1})  # due
    for state, ids in ((k.completed, ("c1", "c2")), (k.failed, ("f1", "f2"))):
        for n, job_id in enumerate(ids):
            await c.zadd(state, {job_id: n + 1})
            await c.hset(k.job(job_id), mapping={"ts": 1, "fon": n + 1})
            await c.rpush(k.logs(job_id), "old line")
    await calls(q).log("1", tokens["1"], "first", 1)
    await calls(q).progress("1", tokens["1"], "10")
    return tokens


def worker_calls(q: Queue, tokens: dict[str, str]) -> dict[str, Call]:
    """One call of each worker script that, allowed, would write."""
    k = q.keys
    t1, t4 = tokens["1"], tokens["4"]

    def fail(delay: int) -> Call:
        args = [k.job_prefix, "1", t1, "boom", "trace", 10, delay, 1, -1, 1000, 1000]
        return lambda wc: wc.fail(args)

    return {
        "move_to_active": lambda wc: wc.claim(
            worker_id="w2",
            request_id="r1",
            count=3,
            claim_ms=5000,
            rate=(100, 60_000),
            promote_batch=100,
        ),
        "complete_job": lambda wc: wc.complete(
            [("1", t1, '"r"', 1, -1), ("4", t4, "1", 0, -1)], 10
        ),
        "fail_job (final)": fail(-1),
        "fail_job (retry now)": fail(0),
        "fail_job (retry later)": fail(5000),
        "extend_leases": lambda wc: wc.extend([("1", t1), ("4", t4)], 30_000),
        "recover_stalled": lambda wc: wc.recover(
            max_stalled=0, batch=100, guard_ms=1000, default_keep_failed=1, retention_batch=10
        ),
        "release_jobs": lambda wc: wc.release([("1", t1), ("4", t4)]),
        "update_progress": lambda wc: wc.progress("1", t1, "99"),
        "add_log": lambda wc: wc.log("1", t1, "second", 2),
    }


REFUSALS: dict[str, Callable[[RedisServer], AbstractContextManager[None]]] = {
    "OutOfMemory": out_of_memory,
    "NOREPLICAS": no_replicas,
}


@pytest.fixture
def server(redis_factory: Callable[..., RedisServer]) -> Iterator[RedisServer]:
    yield redis_factory()


@pytest.mark.parametrize("code", sorted(REFUSALS))
async def test_every_worker_script_refused_by_redis_leaves_it_unchanged(
    server: RedisServer, prefix: str, code: str
) -> None:
    m = QueueManager(server.url, prefix=prefix)
    raw = server.client()
    try:
        # Each script on a queue of its own, so each meets the state it would change.
        names = list(worker_calls(m.create_queue("probe"), {"1": "", "4": ""}))
        queues = {name: m.create_queue(f"q{i}") for i, name in enumerate(names)}
        tokens = {name: await populate(q) for name, q in queues.items()}
        before = {name: snapshot(raw, f"{q.keys.base}*") for name, q in queues.items()}
        ran_whole = set()
        with REFUSALS[code](server):
            for name, q in queues.items():
                try:
                    await worker_calls(q, tokens[name])[name](calls(q))
                except redis.ResponseError as refused:
                    assert classify(refused) is Verdict.REFUSED, (name, refused)
                    assert code in type(refused).__name__ + str(refused), (name, refused)
                    assert snapshot(raw, f"{q.keys.base}*") == before[name], f"{name} wrote"
                else:
                    # Redis checks OOM at a script's first write of a command that may
                    # grow memory; one whose first write only frees (ZREM, LPOP) is let
                    # through and then runs whole. Never half.
                    assert code == "OutOfMemory", f"{name} ran despite {code}"
                    assert snapshot(raw, f"{q.keys.base}*") != before[name], name
                    ran_whole.add(name)
        # Allowed again, each refused call does change its queue: the refusal was real.
        for name, q in queues.items():
            if name not in ran_whole:
                await worker_calls(q, tokens[name])[name](calls(q))
                assert snapshot(raw, f"{q.keys.base}*") != before[name], name
        assert len(ran_whole) < len(queues)
    finally:
        raw.close()
        await m.close_all()


@pytest.fixture
def cluster_queue(redis_cluster: RedisCluster) -> Iterator[tuple[str, str, int]]:
    """A prefix and queue name of their own (the session's cluster is shared) and its slot."""
    queue = f"atomic{uuid.uuid4().hex[:8]}"
    yield f"t{uuid.uuid4().hex[:6]}", queue, crc16_slot("{" + queue + "}")


async def _node_store(node: RedisServer, prefix: str) -> tuple[Any, Store]:
    """A plain client of one node on ONE connection (an ASKING holds for the next command
    on its connection), with the scripts loaded there (no NOSCRIPT fallback in between)."""
    client = redis.asyncio.Redis(
        host="127.0.0.1", port=node.port, decode_responses=True, single_connection_client=True
    )
    for source in SOURCES.values():
        await client.script_load(source.source)
    return client, Store(client, prefix=prefix)


async def test_every_worker_script_mid_migration_is_refused_whole(
    redis_cluster: RedisCluster, cluster_queue: tuple[str, str, int]
) -> None:
    prefix, name, slot = cluster_queue
    m = QueueManager(settings=RedisSettings(url=redis_cluster.url), prefix=prefix)
    try:
        q = m.create_queue(name)
        tokens = await populate(q)
        k = q.keys
        moved = [k.job("1"), k.job("4"), k.wait, k.logs("1")]
        owner = slot_owner(redis_cluster, slot)
        nodes = {n.port: n.client() for n in redis_cluster.nodes}
        pattern = f"{prefix}:*"
        with half_migrated_slot(redis_cluster, slot, moved) as (source, target):
            before = {p: snapshot(c, pattern, asking=True) for p, c in nodes.items()}
            assert source.port == owner.port and before[target.port]  # really half-moved
            for node in (source, target):
                client, store = await _node_store(node, prefix)
                try:
                    wc = WorkerCalls(store, k)
                    for call_name, call in worker_calls(q, tokens).items():
                        if node is target:
                            await client.execute_command("ASKING")
                        with pytest.raises(redis.ResponseError) as refused:
                            await call(wc)
                        assert classify(refused.value) is Verdict.REFUSED, (call_name, refused)
                        after = {p: snapshot(c, pattern, asking=True) for p, c in nodes.items()}
                        assert after == before, f"{call_name} on {node.port} wrote, then failed"
                finally:
                    await client.aclose()
        for c in nodes.values():
            c.close()
    finally:
        await m.close_all()


async def test_a_key_moved_mid_migration_stops_the_batch_there_and_nothing_half_done(
    redis_cluster: RedisCluster, cluster_queue: tuple[str, str, int]
) -> None:
    """Keys a script cannot know before it runs (the jobs stalled recovery finds, the
    jobs retention deletes) are read with redis.pcall first: one that has moved stops the
    batch at it; the jobs before it are handled, it and the rest are left untouched."""
    prefix, name, slot = cluster_queue
    m = QueueManager(settings=RedisSettings(url=redis_cluster.url), prefix=prefix)
    try:
        q = m.create_queue(name)
        k = q.keys
        c = m.client
        for i in range(1, 4):
            await q.add(i)
        tokens = {j[0]: j[1] for j in await claim(q, count=3)}
        await calls(q).extend(list(tokens.items()), 30_000)
        await c.zadd(k.active, {"1": 1, "2": 2})  # two stalled leases, in that order
        # Every declared key exists (a missing one would refuse the whole call).
        await c.set(k.stalled_check, "1")
        await c.zadd(k.claims, {"placeholder": 2**40})
        await c.zadd(k.failed, {"f0": 1})
        await c.zadd(k.completed, {"c1": 1, "c2": 2})
        for job_id in ("c1", "c2"):
            await c.hset(k.job(job_id), "ts", 1)
            # Mid-migration a missing key reads as "moved": give each victim its logs.
            await c.rpush(k.logs(job_id), "line")
        for key in (k.wait, k.prioritized, k.marker):
            await c.delete(key)
        await c.rpush(k.wait, "x")
        await c.zadd(k.prioritized, {"y": 2**33})
        await c.zadd(k.marker, {"w": 0})
        with half_migrated_slot(redis_cluster, slot, [k.job("2"), k.job("c2")]) as (source, _):
            client, store = await _node_store(source, prefix)
            try:
                wc = WorkerCalls(store, k)
                requeued, failed, back = await wc.recover(
                    max_stalled=5, batch=100, guard_ms=0, default_keep_failed=10, retention_batch=10
                )
                assert (requeued, failed, back) == (["1"], [], [])
                assert await client.zscore(k.active, "2") is not None  # left for later
                # Completing job 3 with keep 1: victims c1 then c2; c2 has moved: stop there.
                _, codes, _ = await wc.complete([("3", tokens["3"], "1", 1, -1)], 10)
                assert codes == [1]
                assert await client.zrange(k.completed, 0, -1) == ["c2", "3"]
                # Deleted here (EXISTS of a missing key would answer ASK mid-migration).
                for key in (k.job("c1"), k.logs("c1")):
                    assert [x async for x in client.scan_iter(match=key)] == []
            finally:
                await client.aclose()
    finally:
        await m.close_all()
