"""The producer and admin API against a real redis-server."""

import asyncio

import orjson
import pytest

from engine import InvalidJobState, JobNotFound, JobState, QueueManager, QueueNotFound
from engine.queue import ADD_BATCH, MAX_PAGE
from tests.helpers import BULL_JOB_FIELDS, unwait, waiting_ids
from tests.lua.worker_calls import calls, claim_reply


async def test_add_job_writes_hash_wait_entry_and_event(manager, client):
    q = manager.create_queue("serpram-sync")
    job = await manager.add_job("serpram-sync", {"type": "manual"})
    assert job.id == "1" and job.state is JobState.WAITING and job.timestamp > 0
    h = await client.hgetall(q.keys.job(job.id))
    assert orjson.loads(h["data"]) == {"type": "manual"}
    assert set(h) == {"data", "ts"}  # defaults are not stored
    assert await client.lrange(q.keys.wait, 0, -1) == ["1"]
    assert await client.exists(q.keys.prioritized) == 0
    events = await q.events()
    assert events[0]["event"] == "waiting" and events[0]["jobId"] == "1"


async def test_add_logs_the_seed_line(manager, caplog):
    manager.create_queue("serpram-sync")
    with caplog.at_level("INFO", logger="engine.queue"):
        job = await manager.add_job("serpram-sync", {})
    assert f"Job {job.id} added to queue serpram-sync" in caplog.text


async def test_delay_puts_the_job_in_delayed_scored_by_due_time(manager, client):
    q = manager.create_queue("q")
    job = await q.add({"x": 1}, {"delay": 60000})
    score = await client.zscore(q.keys.delayed, job.id)
    assert job.state is JobState.DELAYED
    assert score == pytest.approx(job.timestamp + 60000, abs=1)
    stats = await q.get_stats()
    assert (stats.delayed, stats.waiting) == (1, 0)


async def test_priority_orders_wait_with_fifo_inside_a_priority(manager):
    q = manager.create_queue("q")
    a = await q.add("a", {"priority": 5})
    b = await q.add("b", {"priority": 1})
    c = await q.add("c")
    d = await q.add("d", {"priority": 1})
    jobs = await q.get_jobs("waiting", 0, 10)
    # No priority runs first (as BullMQ), then 1 = highest, FIFO within a priority.
    assert [j.id for j in jobs] == [c.id, b.id, d.id, a.id]


async def test_fixed_job_id_returns_the_existing_job_and_adds_nothing(manager):
    q = manager.create_queue("q")
    first = await q.add({"v": 1}, {"jobId": "serpram-recurring"})
    again = await q.add({"v": 2}, {"jobId": "serpram-recurring"})
    assert first.id == again.id == "serpram-recurring"
    assert again.data == {"v": 1}
    assert (await q.get_stats()).waiting == 1


async def test_concurrent_adds_with_one_fixed_id_from_three_managers_make_one_job(
    redis_server, prefix
):
    managers = [QueueManager(redis_server.url, prefix=prefix) for _ in range(3)]
    try:
        queues = [m.create_queue("q") for m in managers]
        results = await asyncio.gather(
            *(queues[i % 3].add({"i": i}, {"job_id": "x"}) for i in range(50))
        )
        assert {r.id for r in results} == {"x"}
        assert len({orjson.dumps(r.data) for r in results}) == 1
        assert (await queues[0].get_stats()).total == 1
    finally:
        for m in managers:
            await m.close_all()


async def test_queue_default_options_apply_and_job_options_override(manager, client):
    manager.create_queue(
        "q", default_job_options={"attempts": 3, "backoff": {"type": "fixed", "delay": 10000}}
    )
    job = await manager.add_job("q", None, {"attempts": 5})
    stored = orjson.loads(await client.hget(manager.get_queue("q").keys.job(job.id), "opts"))
    assert stored == {"attempts": 5, "backoff": {"type": "fixed", "delay": 10000}}


@pytest.mark.parametrize(
    ("data", "opts", "message"),
    [
        ({1, 2}, None, "JSON"),
        (object(), None, "JSON"),
        (None, {"bogus": 1}, "bogus"),
        (None, {"delay": -5}, "delay"),
    ],
)
async def test_bad_input_raises_and_writes_nothing(manager, client, prefix, data, opts, message):
    q = manager.create_queue("q")
    with pytest.raises(ValueError, match=message):
        await q.add(data, opts)
    assert await client.keys(f"{prefix}:*") == []


async def test_add_bulk_across_script_batches_keeps_fifo_order_and_fixed_ids(manager, client):
    q = manager.create_queue("batches")
    first = await q.add({"x": 0}, {"jobId": "fixed-1"})
    n = ADD_BATCH * 2 + 7
    jobs = [{"data": i} for i in range(n)]
    jobs.insert(ADD_BATCH + 3, {"data": "dup", "opts": {"jobId": "fixed-1"}})
    jobs.append({"data": "later", "opts": {"delay": 60_000}})
    added = await q.add_bulk(jobs)
    assert len(added) == len(jobs)
    assert added[ADD_BATCH + 3].id == first.id and added[ADD_BATCH + 3].data == {"x": 0}
    assert added[-1].state == JobState.DELAYED
    fresh = [j for j in added if j.id != first.id and j.state == JobState.WAITING]
    assert [j.data for j in fresh] == list(range(n))
    waiting = await client.lrange(q.keys.wait, 0, -1)
    assert waiting == [first.id] + [j.id for j in fresh]
    assert await client.zscore(q.keys.marker, "d") == added[-1].timestamp + 60_000
    assert await client.xlen(q.keys.events) == 1 + n + 1


async def test_concurrent_adds_share_one_script_call_while_one_is_on_the_wire(
    manager, client, monkeypatch
):
    import engine.queue

    q = manager.create_queue("group-commit")
    sent: list[int] = []
    real_execute = engine.queue.execute

    async def counting_execute(pipe):
        sent.append(len(pipe))
        return await real_execute(pipe)

    monkeypatch.setattr(engine.queue, "execute", counting_execute)
    jobs = await asyncio.gather(*(q.add({"n": i}) for i in range(50)))
    # The first add went out alone; the 49 made meanwhile went as one script call.
    assert sent == [1]
    assert [j.data for j in jobs] == [{"n": i} for i in range(50)]
    assert await client.lrange(q.keys.wait, 0, -1) == [j.id for j in jobs]
    assert len({j.id for j in jobs}) == 50


async def test_a_cancelled_add_does_not_fail_the_adds_gathered_with_it(manager, client):
    q = manager.create_queue("group-cancel")
    await q.add("first")  # reserves a block of ids: the five below need no round trip
    tasks = [asyncio.ensure_future(q.add({"n": i})) for i in range(5)]
    await asyncio.sleep(0)  # all five are sent or gathered
    tasks[2].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    assert [r.data for i, r in enumerate(results) if i != 2] == [{"n": i} for i in (0, 1, 3, 4)]
    # The cancelled caller stopped waiting, but its job was already on its way.
    assert await client.llen(q.keys.wait) == 6


async def test_add_bulk_is_all_or_nothing_on_validation(manager, client, prefix):
    q = manager.create_queue("q")
    with pytest.raises(ValueError, match=r"jobs\[1\].*priority"):
        await q.add_bulk([{"data": 1}, {"data": 2, "opts": {"priority": -1}}])
    assert await client.keys(f"{prefix}:*") == []
    jobs = await q.add_bulk([{"data": i} for i in range(100)] + [{"data": "x", "name": "named"}])
    assert [j.id for j in jobs] == [str(i) for i in range(1, 102)]
    assert jobs[-1].name == "named"
    assert (await q.get_stats()).waiting == 101
    assert await q.add_bulk([]) == []


async def test_unknown_queue_raises_queue_not_found(manager):
    with pytest.raises(QueueNotFound):
        await manager.add_job("nope", {})
    with pytest.raises(QueueNotFound):
        await manager.get_stats("nope")


@pytest.mark.parametrize("name", ["", "a{b}", "a:b", "*", "../x", "x" * 101, "a b", "a\x00"])
def test_hostile_queue_names_are_refused(manager, name):
    with pytest.raises(ValueError, match="queue name"):
        manager.create_queue(name)


async def test_stats_have_exactly_the_seed_fields_and_count_paused(manager):
    q = manager.create_queue("ayt-sync")
    await q.add_bulk([{"data": i} for i in range(3)])
    await q.add(None, {"delay": 5000})
    stats = (await manager.get_stats("ayt-sync")).to_dict()
    assert stats == {
        "name": "ayt-sync",
        "waiting": 3,
        "active": 0,
        "completed": 0,
        "failed": 0,
        "delayed": 1,
        "paused": 0,
        "total": 4,
    }
    assert await manager.pause_queue("ayt-sync", actor="ops") is True
    assert await manager.pause_queue("ayt-sync") is False
    paused = (await manager.get_stats("ayt-sync")).to_dict()
    assert (paused["waiting"], paused["paused"], paused["total"]) == (0, 3, 4)
    assert await manager.resume_queue("ayt-sync") is True
    assert (await manager.get_stats("ayt-sync")).waiting == 3


async def test_pause_and_resume_are_audited_in_events(manager):
    q = manager.create_queue("q")
    await q.pause(actor="alice")
    await q.resume(actor="bob")
    events = await q.events()
    assert [(e["event"], e["by"]) for e in events[:2]] == [("resumed", "bob"), ("paused", "alice")]


async def test_get_all_stats_covers_every_queue_in_one_call(manager):
    for name in ("serpram-sync", "ayt-sync"):
        manager.create_queue(name)
    await manager.add_job("ayt-sync", 1)
    stats = await manager.get_all_stats()
    assert set(stats) == {"serpram-sync", "ayt-sync"}
    assert stats["ayt-sync"].waiting == 1 and stats["serpram-sync"].total == 0


async def test_get_jobs_pages_and_validates_ranges(manager):
    q = manager.create_queue("q")
    await q.add_bulk([{"data": i} for i in range(25)])
    page = await manager.get_jobs("q", "waiting", 10, 19)
    assert [j.data for j in page] == list(range(10, 20))
    assert all(j.state is JobState.WAITING for j in page)
    assert await q.get_jobs("failed") == []
    for bad in [
        dict(state="bogus"),
        dict(state="waiting", start=-1),
        dict(state="waiting", end=-1),
        dict(state="waiting", start=5, end=4),
        dict(state="waiting", start=0, end=MAX_PAGE),
        dict(state="waiting", start=0, end=10**12),
        dict(state="waiting", start="0", end=3),
    ]:
        with pytest.raises(ValueError):
            await q.get_jobs(**bad)


async def test_get_job_reports_state_and_bull_json_shape(manager):
    q = manager.create_queue("q")
    job = await q.add({"k": "v"}, {"delay": 1000, "attempts": 2}, name="sync")
    got = await manager.get_job("q", job.id)
    assert got is not None and got.state is JobState.DELAYED
    body = got.to_json()
    assert set(body) >= BULL_JOB_FIELDS
    assert body["opts"] == {"attempts": 2, "delay": 1000}
    assert body["name"] == "sync" and body["data"] == {"k": "v"}
    assert await manager.get_job("q", "missing") is None


async def _finish(client, q, job_id, state, finished_ms):
    """Place a job in a finished set as a worker would (workers are tested elsewhere)."""
    await unwait(client, q.keys, job_id)
    await client.zadd(getattr(q.keys, state), {job_id: finished_ms})
    await client.hset(q.keys.job(job_id), mapping={"fon": finished_ms, "fr": "boom"})


async def test_clean_removes_only_jobs_older_than_grace_in_batches(manager, client):
    q = manager.create_queue("q")
    jobs = await q.add_bulk([{"data": i} for i in range(1203)])
    now_ms = int((await client.time())[0]) * 1000
    for i, job in enumerate(jobs):
        old = i < 1200
        await _finish(client, q, job.id, "completed", now_ms - (7_200_000 if old else 0))
    await client.rpush(q.keys.logs(jobs[0].id), "line")
    removed = await manager.clean_completed_jobs("q", 3_600_000, actor="ops")
    assert removed == 1200
    assert await client.zcard(q.keys.completed) == 3
    assert not await client.exists(q.keys.job(jobs[0].id), q.keys.logs(jobs[0].id))
    assert await client.exists(q.keys.job(jobs[-1].id))
    assert (await q.events())[0]["event"] == "cleaned"
    assert await manager.clean_failed_jobs("q", 0) == 0
    with pytest.raises(ValueError, match="grace_ms"):
        await manager.clean_failed_jobs("q", -1)
    with pytest.raises(ValueError, match="completed or failed"):
        await q.clean("waiting", 0)


async def test_retry_moves_a_failed_job_to_waiting_with_attempts_reset(manager, client):
    q = manager.create_queue("q")
    job = await q.add({}, {"priority": 2})
    await client.hset(q.keys.job(job.id), mapping={"atm": 3})
    await _finish(client, q, job.id, "failed", 1)
    await manager.retry_job("q", job.id, actor="ops")
    got = await q.get_job(job.id)
    assert got is not None and got.state is JobState.WAITING
    assert got.attempts_made == 0 and got.failed_reason is None
    with pytest.raises(InvalidJobState):
        await manager.retry_job("q", job.id)
    with pytest.raises(JobNotFound):
        await manager.retry_job("q", "nope")


async def test_promote_moves_a_delayed_job_to_waiting(manager):
    q = manager.create_queue("q")
    job = await q.add({}, {"delay": 3_600_000})
    await manager.promote_job("q", job.id)
    got = await q.get_job(job.id)
    assert got is not None and got.state is JobState.WAITING
    with pytest.raises(InvalidJobState):
        await manager.promote_job("q", job.id)


async def test_remove_deletes_a_job_but_refuses_an_active_one(manager, client):
    q = manager.create_queue("q")
    job = await q.add({})
    await client.rpush(q.keys.logs(job.id), "x")
    await manager.remove_job("q", job.id)
    assert await q.get_job(job.id) is None
    assert not await client.exists(q.keys.logs(job.id))
    with pytest.raises(JobNotFound):
        await manager.remove_job("q", job.id)
    running = await q.add({})
    await unwait(client, q.keys, running.id)
    await client.zadd(q.keys.active, {running.id: 1})
    with pytest.raises(InvalidJobState):
        await manager.remove_job("q", running.id)


async def test_from_env_reads_redis_url_and_prefix(redis_server, prefix):
    m = QueueManager.from_env({"REDIS_URL": redis_server.url, "ENGINE_PREFIX": prefix})
    try:
        assert m.prefix == prefix
        q = m.create_queue("q")
        await q.add(1)
        assert (await q.get_stats()).waiting == 1
    finally:
        await m.close_all()


def test_bad_prefix_and_url_are_refused():
    with pytest.raises(ValueError, match="prefix"):
        QueueManager("redis://127.0.0.1:1/0", prefix="a{b}")
    with pytest.raises(ValueError, match="REDIS_URL"):
        QueueManager("http://example")


# -- waiting jobs: the `wait` list (no priority) and the `prioritized` zset ---------------


async def _claim_ids(q, count=100):
    result = await claim_reply(q, count, "w")
    if not result[4] and result[5]:  # promoted by this call: claimed by the next
        result = await claim_reply(q, count, "w")
    return [j[0] for j in result[4]], [j[1] for j in result[4]]


async def test_jobs_without_priority_wait_in_a_fifo_list_ahead_of_prioritized_ones(manager, client):
    q = manager.create_queue("q")
    for i, pri in enumerate([0, 3, 0, 1, 0, 3, 1]):
        await q.add(i, {"priority": pri} if pri else None)
    assert await client.type(q.keys.wait) == "list"
    assert await client.type(q.keys.prioritized) == "zset"
    assert await client.lrange(q.keys.wait, 0, -1) == ["1", "3", "5"]
    # Claim order: the list (FIFO), then priority 1 before 3, FIFO within a priority.
    expected = ["1", "3", "5", "4", "7", "2", "6"]
    assert await waiting_ids(client, q.keys) == expected
    first, _ = await _claim_ids(q, count=4)
    assert first == expected[:4]
    rest, _ = await _claim_ids(q)
    assert rest == expected[4:]
    assert await client.exists(q.keys.wait, q.keys.prioritized) == 0


async def test_stalled_and_released_jobs_go_back_to_the_front(manager, client):
    q = manager.create_queue("q")
    k = q.keys
    await q.add("a")
    await q.add("b")
    await q.add("p", {"priority": 2})
    ids, tokens = await _claim_ids(q, count=3)
    assert ids == ["1", "2", "3"]
    await q.add("c")
    await q.add("q", {"priority": 2})
    # Jobs 1 and 3 stall (confirmed running, leases long expired); 2 is handed back by a
    # closing worker.
    await calls(q).extend(list(zip(ids, tokens, strict=True)), 30_000)
    await client.zadd(k.active, {"1": 1, "3": 2})
    requeued, failed, _ = await calls(q).recover(
        max_stalled=5, batch=1000, guard_ms=0, default_keep_failed=5000, retention_batch=1000
    )
    assert (requeued, failed) == (["1", "3"], [])
    assert await waiting_ids(client, k) == ["1", "4", "3", "5"]
    released = await calls(q).release([("2", tokens[1])])
    assert released == ["2"]
    assert await waiting_ids(client, k) == ["2", "1", "4", "3", "5"]
    assert (await _claim_ids(q))[0] == ["2", "1", "4", "3", "5"]


async def test_several_jobs_handed_back_at_once_keep_their_order_at_the_front(manager, client):
    q = manager.create_queue("q")
    k = q.keys
    for i in range(3):
        await q.add(i)
    ids, tokens = await _claim_ids(q)
    await q.add("later")
    released = await calls(q).release(list(zip(ids, tokens, strict=True)))
    assert released == ["1", "2", "3"]
    assert await client.lrange(k.wait, 0, -1) == ["1", "2", "3", "4"]


async def test_promote_retry_and_remove_work_on_both_structures(manager, client):
    q = manager.create_queue("q")
    k = q.keys
    plain = await q.add("plain", {"delay": 3_600_000})
    ranked = await q.add("ranked", {"delay": 3_600_000, "priority": 4})
    await q.add("other")
    await q.promote_job(plain.id)
    await q.promote_job(ranked.id)
    assert await client.lrange(k.wait, 0, -1) == ["3", plain.id]
    assert (await client.zscore(k.prioritized, ranked.id)) // 2**32 == 4
    for job_id in (plain.id, ranked.id):
        got = await q.get_job(job_id)
        assert got is not None and got.state is JobState.WAITING
    # Failed, then retried: back to the end of its structure.
    for job_id in (plain.id, ranked.id):
        await unwait(client, k, job_id)
        await client.zadd(k.failed, {job_id: 1})
        await client.hset(k.job(job_id), mapping={"fon": 1, "atm": 2})
        got = await q.get_job(job_id)
        assert got is not None and got.state is JobState.FAILED
        await q.retry_job(job_id)
    assert await client.lrange(k.wait, 0, -1) == ["3", plain.id]
    assert await client.zrange(k.prioritized, 0, -1) == [ranked.id]
    assert (await q.get_job(plain.id)).state is JobState.WAITING
    # Removed from either structure.
    await q.remove_job(plain.id)
    await q.remove_job(ranked.id)
    assert await client.lrange(k.wait, 0, -1) == ["3"]
    assert await client.exists(k.prioritized) == 0
    assert await q.get_job(plain.id) is None and await q.get_job(ranked.id) is None
    assert (await q.get_stats()).waiting == 1


async def test_due_delayed_jobs_are_promoted_to_the_list_or_the_zset_by_priority(manager, client):
    q = manager.create_queue("q")
    k = q.keys
    await q.add("p", {"delay": 3_600_000, "priority": 1})
    await q.add("n", {"delay": 3_600_000})
    await client.zadd(k.delayed, {"1": 1, "2": 2})  # both due long ago
    await q.pause()  # promotion still runs; nothing is claimed
    await _claim_ids(q)
    assert await client.lrange(k.wait, 0, -1) == ["2"]
    assert await client.zrange(k.prioritized, 0, -1) == ["1"]


async def test_waiting_pages_run_across_the_list_then_the_zset(manager, client):
    q = manager.create_queue("q")
    await q.add_bulk([{"data": i, "opts": {"priority": 1 + i % 2}} for i in range(4)])
    await q.add_bulk([{"data": i} for i in range(4, 9)])
    order = await waiting_ids(client, q.keys)
    assert order == ["5", "6", "7", "8", "9", "1", "3", "2", "4"]
    for start, end in [(0, 2), (3, 6), (4, 5), (5, 8), (6, 20), (0, 100), (9, 12), (2, 2)]:
        page = await q.get_jobs("waiting", start, end)
        assert [j.id for j in page] == order[start : end + 1], (start, end)
        assert all(j.state is JobState.WAITING for j in page)
    assert await q.count_jobs("waiting") == 9
    assert await q.count_jobs("delayed") == 0


async def test_stats_count_both_waiting_structures_in_one_command(manager, client):
    q = manager.create_queue("q")
    await q.add(1)
    await q.add(2, {"priority": 1})
    await q.add(3, {"priority": 5})
    await q.add(4, {"delay": 60_000})
    stats = await q.get_stats()
    assert (stats.waiting, stats.delayed, stats.total) == (3, 1, 4)
    # Callers (health, metrics, dashboard, alerts) slice _queue_stats' replies by six.
    async with client.pipeline(transaction=False) as pipe:
        q._queue_stats(pipe)
        assert len(pipe) == 6
        await pipe.execute()
    await q.pause()
    stats = await q.get_stats()
    assert (stats.waiting, stats.paused) == (0, 3)
    all_stats = await manager.get_all_stats()
    assert all_stats["q"].paused == 3


async def test_a_clean_that_finds_nothing_is_audited_with_count_zero(manager):
    q = manager.create_queue("q")
    assert await manager.clean_failed_jobs("q", 0, actor="ops") == 0
    (event,) = [e for e in await q.events() if e["event"] == "cleaned"]
    assert (event["state"], event["count"], event["by"]) == ("failed", "0", "ops")
