"""Deduplication with a window (issue 14, item 5; engine/dedup.py), against real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from engine import Job, JobState, Queue, QueueManager
from engine.options import JobOptions
from tests.helpers import wait_for
from tests.lua.test_complete_job import complete
from tests.lua.test_fail_job import fail
from tests.lua.worker_calls import claim

FAST = {"block_timeout_s": 0.5, "stalled_interval_ms": 200}


def dedup(dedup_id: str = "press", **more: Any) -> dict[str, Any]:
    return {"deduplication": {"id": dedup_id, **more}}


async def _events(q: Queue, kind: str) -> list[dict[str, str]]:
    return [e for e in reversed(await q.events(1000)) if e["event"] == kind]


async def _job_count(client: aioredis.Redis, q: Queue) -> int:
    return len([k async for k in client.scan_iter(match=f"{q.keys.job_prefix}*")])


# -- options --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ({"ttl": 10}, "deduplication.id is required"),
        ({"id": ""}, "deduplication.id"),
        ({"id": "a{b}"}, "deduplication.id"),
        ({"id": "x" * 201}, "deduplication.id"),
        ({"id": "x", "ttl": -1}, "deduplication.ttl"),
        ({"id": "x", "ttl": "5s"}, "deduplication.ttl"),
        ({"id": "x", "ttl": True}, "deduplication.ttl"),
        ({"id": "x", "ttl": 10, "extend": "yes"}, "deduplication.extend"),
        ({"id": "x", "replace": True}, "deduplication.replace needs deduplication.ttl"),
        ({"id": "x", "extend": True}, "deduplication.extend needs deduplication.ttl"),
        ({"id": "x", "window": 1}, "unknown field(s): window"),
        ("x", "deduplication must be an object"),
    ],
)
def test_a_bad_deduplication_option_is_refused_naming_the_field(value: Any, named: str) -> None:
    with pytest.raises(ValueError, match="deduplication") as err:
        JobOptions.parse({"deduplication": value})
    assert named in str(err.value)


def test_the_option_round_trips_and_debounce_is_its_bullmq_alias() -> None:
    opts = JobOptions.parse(dedup("a", ttl=500, extend=True, replace=True))
    assert opts.to_json() == {
        "deduplication": {"id": "a", "ttl": 500, "extend": True, "replace": True}
    }
    assert JobOptions.from_json(opts.to_json()) == opts
    # An all-digit id is fine (its own namespace); ttl 0 means none, as in BullMQ.
    assert JobOptions.parse({"debounce": {"id": "42", "ttl": 0}}) == JobOptions.parse(dedup("42"))
    with pytest.raises(ValueError, match="given twice"):
        JobOptions.parse({**dedup("a"), "debounce": {"id": "b"}})


# -- throttle: a window of ttl ms --------------------------------------------------------


async def test_a_second_add_within_the_window_returns_the_first_job(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    q = manager.create_queue("q")
    first = await q.add({"n": 1}, dedup(ttl=60_000))
    again = await q.add({"n": 2}, dedup(ttl=60_000))
    assert not first.deduplicated and again.deduplicated
    assert again.id == first.id and again.data == {"n": 1}
    assert again.state is JobState.WAITING
    assert await client.lrange(q.keys.wait, 0, -1) == [first.id]
    (event,) = await _events(q, "deduplicated")
    assert event["jobId"] == first.id and event["deduplicationId"] == "press"
    assert "replaced" not in event
    assert await client.get(q.keys.dedup("press")) == first.id
    assert 0 < await client.pttl(q.keys.dedup("press")) <= 60_000


async def test_after_the_ttl_a_new_job_is_added(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    q = manager.create_queue("q")
    first = await q.add("a", dedup(ttl=50))

    async def closed() -> bool:
        return not await client.exists(q.keys.dedup("press"))

    await wait_for(closed)
    second = await q.add("b", dedup(ttl=50))
    assert not second.deduplicated and second.id != first.id
    assert await client.lrange(q.keys.wait, 0, -1) == [first.id, second.id]


async def test_a_ttl_window_holds_after_its_job_finished_and_was_deleted(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    """Throttle: a button pressed twice, the first job already ran (removeOnComplete)."""
    q = manager.create_queue("q")
    first = await q.add("a", {**dedup(ttl=60_000), "removeOnComplete": True})
    ((job_id, token, *_),) = await claim(q)
    await complete(q, job_id, token, keep=0)
    assert await q.get_job(first.id) is None
    again = await q.add("b", dedup(ttl=60_000))
    assert again.deduplicated and again.id == first.id and again.state is None
    assert await _job_count(client, q) == 0


async def test_different_ids_and_queues_do_not_deduplicate_each_other(
    manager: QueueManager,
) -> None:
    q, other = manager.create_queue("q"), manager.create_queue("other")
    a = await q.add(1, dedup("a", ttl=60_000))
    b = await q.add(2, dedup("b", ttl=60_000))
    c = await other.add(3, dedup("a", ttl=60_000))
    assert not (a.deduplicated or b.deduplicated or c.deduplicated)
    assert len({a.id, b.id}) == 2


# -- simple mode: until the job finishes ---------------------------------------------


async def test_without_ttl_the_window_lasts_until_the_job_completes(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    q = manager.create_queue("q")
    first = await q.add("a", dedup())
    assert await client.pttl(q.keys.dedup("press")) == -1
    ((job_id, token, *_),) = await claim(q)
    running = await q.add("b", dedup())
    assert running.deduplicated and running.id == first.id
    assert running.state is JobState.ACTIVE
    await complete(q, job_id, token)
    assert not await client.exists(q.keys.dedup("press"))
    after = await q.add("c", dedup())
    assert not after.deduplicated and after.id != first.id


async def test_without_ttl_the_window_outlives_a_retry_and_closes_at_the_final_failure(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    q = manager.create_queue("q")
    first = await q.add("a", {**dedup(), "attempts": 2})
    ((job_id, token, *_),) = await claim(q)
    await fail(q, job_id, token, delay=60_000)
    assert (await q.add("b", dedup())).id == first.id
    await client.zadd(q.keys.delayed, {job_id: 0})  # due now
    ((job_id, token, *_),) = await claim(q)
    await fail(q, job_id, token)
    assert not await client.exists(q.keys.dedup("press"))
    assert not (await q.add("c", dedup())).deduplicated


async def test_without_ttl_a_job_finished_another_way_closes_the_window_at_the_next_add(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    """Cancelled (or removed): the key is left, and the next add finds its job over."""
    q = manager.create_queue("q")
    cancelled = await q.add("a", dedup())
    await q.cancel_job(cancelled.id)
    after_cancel = await q.add("b", dedup())
    assert not after_cancel.deduplicated and after_cancel.id != cancelled.id
    await q.remove_job(after_cancel.id)
    after_remove = await q.add("c", dedup())
    assert not after_remove.deduplicated
    assert await client.get(q.keys.dedup("press")) == after_remove.id


async def test_a_finishing_job_leaves_a_window_another_job_took_over(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    q = manager.create_queue("q")
    await q.add("a", dedup())
    ((job_id, token, *_),) = await claim(q)
    await client.set(q.keys.dedup("press"), "someone-else")
    await complete(q, job_id, token)
    assert await client.get(q.keys.dedup("press")) == "someone-else"


async def test_a_real_worker_run_closes_the_window(manager: QueueManager) -> None:
    q = manager.create_queue("q")

    async def handler(job: Job) -> str:
        return "ok"

    first = await q.add("a", dedup())
    await manager.process("q", handler, **FAST)
    assert await first.wait(timeout_s=10) == "ok"
    second = await q.add("b", dedup())
    assert not second.deduplicated and second.id != first.id


# -- debounce: replace the pending job's data and push its delay -----------------------


async def test_debounce_replaces_the_data_and_pushes_the_delay_of_a_delayed_job(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    q = manager.create_queue("q")
    window = dedup("search", ttl=5_000, extend=True, replace=True)
    first = await q.add({"query": "a"}, {**window, "delay": 5_000})
    due = await client.zscore(q.keys.delayed, first.id)
    await client.pexpire(q.keys.dedup("search"), 1_000)  # the window has partly run out
    again = await q.add({"query": "ab"}, {**window, "delay": 20_000})
    assert again.deduplicated and again.id == first.id
    assert again.data == {"query": "ab"} and again.state is JobState.DELAYED
    pushed = await client.zscore(q.keys.delayed, first.id)
    assert due is not None and pushed is not None and pushed >= due + 15_000
    assert await client.pttl(q.keys.dedup("search")) > 1_000  # extended to the ttl
    assert await client.zscore(q.keys.marker, "d") is not None
    (event,) = await _events(q, "deduplicated")
    assert event["replaced"] == "1" and event["jobId"] == first.id
    assert await _job_count(client, q) == 1


async def test_replace_without_extend_keeps_the_window_and_a_waiting_job_stays_in_place(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    q = manager.create_queue("q")
    window = dedup(ttl=60_000, replace=True)
    first = await q.add({"v": 1}, window)
    behind = await q.add("other")
    await client.pexpire(q.keys.dedup("press"), 30_000)
    again = await q.add({"v": 2}, {**window, "delay": 10_000})
    assert again.id == first.id and again.data == {"v": 2}
    assert again.state is JobState.WAITING
    assert await client.lrange(q.keys.wait, 0, -1) == [first.id, behind.id]
    assert await client.zcard(q.keys.delayed) == 0
    assert await client.pttl(q.keys.dedup("press")) <= 30_000


async def test_debounce_does_not_touch_an_active_job(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    q = manager.create_queue("q")
    window = dedup(ttl=60_000, extend=True, replace=True)
    first = await q.add({"v": 1}, window)
    await claim(q)
    before = await client.hgetall(q.keys.job(first.id))
    again = await q.add({"v": 2}, {**window, "delay": 1_000})
    assert again.deduplicated and again.id == first.id
    assert again.state is JobState.ACTIVE and again.data == {"v": 1}
    assert await client.hgetall(q.keys.job(first.id)) == before
    assert await client.zcard(q.keys.delayed) == 0
    (event,) = await _events(q, "deduplicated")
    assert "replaced" not in event


async def test_debounce_does_not_touch_a_finished_job(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    q = manager.create_queue("q")
    window = dedup(ttl=60_000, replace=True)
    first = await q.add({"v": 1}, window)
    ((job_id, token, *_),) = await claim(q)
    await complete(q, job_id, token)
    again = await q.add({"v": 2}, window)
    assert again.id == first.id and again.state is JobState.COMPLETED
    assert again.data == {"v": 1}


# -- batches and concurrency ------------------------------------------------------------


async def test_a_bulk_deduplicates_within_itself_and_replaces_in_order(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    q = manager.create_queue("q")
    window = dedup(ttl=60_000, replace=True)
    jobs = await q.add_bulk(
        [
            {"data": 1, "opts": {**window, "delay": 60_000}},
            {"data": "plain"},
            {"data": 2, "opts": {**window, "delay": 30_000}},
            {"data": 3, "opts": dedup("other", ttl=60_000)},
            {"data": 4, "opts": dedup("other", ttl=60_000)},
        ]
    )
    assert [j.deduplicated for j in jobs] == [False, False, True, False, True]
    assert jobs[2].id == jobs[0].id and jobs[4].id == jobs[3].id
    held = await q.get_job(jobs[0].id)
    assert held is not None and held.data == 2 and held.state is JobState.DELAYED
    now_ms = (await client.time())[0] * 1000
    due = await client.zscore(q.keys.delayed, jobs[0].id)
    assert due is not None and due <= now_ms + 31_000
    assert await _job_count(client, q) == 3


async def test_a_fixed_job_id_that_exists_wins_over_deduplication(
    manager: QueueManager, client: aioredis.Redis
) -> None:
    q = manager.create_queue("q")
    await q.add("x", {"jobId": "fixed"})
    got = await q.add("y", {"jobId": "fixed", **dedup(ttl=60_000)})
    assert got.id == "fixed" and not got.deduplicated
    assert not await client.exists(q.keys.dedup("press"))


async def test_three_producers_adding_the_same_id_at_once_make_one_job(
    redis_server: Any, prefix: str, client: aioredis.Redis
) -> None:
    managers = [QueueManager(redis_server.url, prefix=prefix) for _ in range(3)]
    try:
        queues = [m.create_queue("q") for m in managers]
        start = asyncio.Event()

        async def produce(q: Queue, n: int) -> list[Job]:
            await start.wait()
            return list(
                await asyncio.gather(*(q.add({"n": n, "i": i}, dedup("hook")) for i in range(20)))
            )

        producing = [asyncio.ensure_future(produce(q, n)) for n, q in enumerate(queues)]
        start.set()
        jobs = [j for batch in await asyncio.gather(*producing) for j in batch]
        assert len({j.id for j in jobs}) == 1
        assert sum(not j.deduplicated for j in jobs) == 1
        assert await _job_count(client, queues[0]) == 1
        assert await client.llen(queues[0].keys.wait) == 1
        assert len(await _events(queues[0], "deduplicated")) == 59
    finally:
        for m in managers:
            await m.close_all()
