"""Every add and admin call is safe to send twice (issue 11, item 2).

A reply held by the fault proxy past the client's socket timeout makes redis-py reconnect
and resend the call whose first copy Redis already applied: the resend must change nothing
and return what the first copy did.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from engine import JobState, Queue, QueueManager
from engine.connection import RedisSettings
from engine.scripts import SOURCES
from tests.faults.proxy import Fault, FaultProxy, Match
from tests.helpers import wait_for

TIMEOUT_S = 0.5
# Held past the timeout: the client gives up on the first copy, reconnects and resends.
HOLD_S = 1.2


@pytest.fixture
async def proxy(redis_server, client: aioredis.Redis) -> AsyncIterator[FaultProxy]:
    # Cache every script first: a first EVALSHA answered NOSCRIPT would take the fault.
    for source in SOURCES.values():
        await client.script_load(source.source)
    p = await FaultProxy("127.0.0.1", redis_server.port).start()
    yield p
    await p.close()


@pytest.fixture
async def queue(proxy: FaultProxy, prefix: str) -> AsyncIterator[Queue]:
    settings = RedisSettings(url=proxy.url, socket_timeout_s=TIMEOUT_S, retries=1)
    manager = QueueManager(prefix=prefix, settings=settings)
    yield manager.create_queue("q")
    await manager.close_all()


def _hold(proxy: FaultProxy, script: str, seconds: float = HOLD_S, nth: int = 1) -> None:
    proxy.add_rule(Fault.delay(seconds), Match(script=script), nth=nth)


def _fired(proxy: FaultProxy) -> int:
    return len(proxy.log)


async def _events(client: aioredis.Redis, q: Queue, name: str) -> list[dict[str, str]]:
    return [f for _, f in await client.xrange(q.keys.events) if f.get("event") == name]


async def test_a_resent_add_makes_one_job(queue: Queue, proxy: FaultProxy, client) -> None:
    _hold(proxy, "add_job")
    job = await queue.add({"n": 1})
    assert _fired(proxy) == 1
    assert await client.lrange(queue.keys.wait, 0, -1) == [job.id]
    assert len(await _events(client, queue, "waiting")) == 1


async def test_a_resent_bulk_of_three_makes_three_jobs(queue: Queue, proxy, client) -> None:
    _hold(proxy, "add_job")
    jobs = await queue.add_bulk([{"data": i} for i in range(3)])
    assert _fired(proxy) == 1
    assert await client.lrange(queue.keys.wait, 0, -1) == [j.id for j in jobs]
    assert [j.data for j in jobs] == [0, 1, 2]


async def test_a_resent_group_commit_makes_one_job_per_add(queue: Queue, proxy, client) -> None:
    await queue.add("first")  # ids reserved: the adds below go out at once
    # The 2nd add_job call is the pipeline that carries the adds gathered meanwhile.
    _hold(proxy, "add_job", nth=2)
    jobs = await asyncio.gather(*(queue.add({"n": i}) for i in range(10)))
    assert _fired(proxy) == 1
    assert len({j.id for j in jobs}) == 10
    assert await client.llen(queue.keys.wait) == 11


async def test_a_resent_add_whose_job_already_ran_and_went_adds_nothing(
    queue: Queue, proxy: FaultProxy, client
) -> None:
    # Held long enough that the job is removed between the first copy and the resend.
    _hold(proxy, "add_job", seconds=3.0)
    key = queue.keys.job("once")
    adding = asyncio.ensure_future(queue.add({"v": 1}, {"jobId": "once"}))
    await wait_for(lambda: client.exists(key), timeout_s=TIMEOUT_S, interval_s=0.005)
    await client.delete(key)
    await client.lrem(queue.keys.wait, 0, "once")
    job = await adding
    assert job.id == "once"
    assert await client.exists(key) == 0 and await client.llen(queue.keys.wait) == 0


async def test_a_resent_retry_is_applied_once_and_does_not_raise(
    queue: Queue, proxy, client
) -> None:
    job = await queue.add("x")
    await client.lrem(queue.keys.wait, 0, job.id)
    await client.zadd(queue.keys.failed, {job.id: 1})
    _hold(proxy, "retry_job")
    await queue.retry_job(job.id)
    assert _fired(proxy) == 1
    got = await queue.get_job(job.id)
    assert got is not None and got.state is JobState.WAITING
    assert await client.lrange(queue.keys.wait, 0, -1) == [job.id]
    assert len(await _events(client, queue, "retried")) == 1


async def test_a_resent_promote_is_applied_once_and_does_not_raise(
    queue: Queue, proxy, client
) -> None:
    job = await queue.add("x", {"delay": 60_000})
    _hold(proxy, "promote_job")
    await queue.promote_job(job.id)
    assert _fired(proxy) == 1
    assert await client.lrange(queue.keys.wait, 0, -1) == [job.id]
    assert len(await _events(client, queue, "promoted")) == 1


async def test_a_resent_remove_is_applied_once_and_does_not_raise(
    queue: Queue, proxy, client
) -> None:
    job = await queue.add("x", {"delay": 60_000})
    _hold(proxy, "remove_job")
    await queue.remove_job(job.id)
    assert _fired(proxy) == 1
    assert await queue.get_job(job.id) is None
    assert len(await _events(client, queue, "removed")) == 1


async def test_a_resent_pause_reports_the_change_once(queue: Queue, proxy, client) -> None:
    _hold(proxy, "pause_queue")
    assert await queue.pause() is True
    assert _fired(proxy) == 1
    assert len(await _events(client, queue, "paused")) == 1


async def test_a_resent_clean_reports_what_it_removed(queue: Queue, proxy, client) -> None:
    for job_id in ("a", "b"):
        await client.hset(queue.keys.job(job_id), "data", "1")
        await client.zadd(queue.keys.completed, {job_id: 1})
    _hold(proxy, "clean_jobs")
    assert await queue.clean("completed", 0) == 2
    assert _fired(proxy) == 1
    assert await client.zcard(queue.keys.completed) == 0
    (event,) = await _events(client, queue, "cleaned")
    assert event["count"] == "2"


async def test_a_resent_deduplicated_add_makes_one_job_and_is_not_its_own_duplicate(
    queue: Queue, proxy: FaultProxy, client
) -> None:
    window = {"deduplication": {"id": "hook", "ttl": 60_000}}
    _hold(proxy, "add_job")
    job = await queue.add({"n": 1}, window)
    assert _fired(proxy) == 1
    assert not job.deduplicated
    assert await client.lrange(queue.keys.wait, 0, -1) == [job.id]
    assert await client.get(queue.keys.dedup("hook")) == job.id
    assert await _events(client, queue, "deduplicated") == []


async def test_a_resent_debounce_replaces_once(queue: Queue, proxy: FaultProxy, client) -> None:
    window = {"deduplication": {"id": "hook", "ttl": 60_000, "replace": True}, "delay": 60_000}
    first = await queue.add({"n": 1}, window)
    _hold(proxy, "add_job")
    again = await queue.add({"n": 2}, window)
    assert _fired(proxy) == 1
    assert again.deduplicated and again.id == first.id and again.data == {"n": 2}
    assert await client.zcard(queue.keys.delayed) == 1
    (event,) = await _events(client, queue, "deduplicated")
    assert event["replaced"] == "1"
