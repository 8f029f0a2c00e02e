"""The worker against a real Redis: processing, retries, timeouts, progress, logs, rate
limit, retention, pause, graceful close, lease refusals and Redis outages."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from helpers import wait_for

from engine import (
    Job,
    JobState,
    LeaseLost,
    QueueManager,
    RateLimit,
    UnrecoverableError,
    Worker,
    WorkerOptions,
)
from tests.redis_servers import RedisServer

FAST = {"block_timeout_s": 0.5, "stalled_interval_ms": 200}


async def completed(manager: QueueManager, queue: str, n: int) -> bool:
    return (await manager.get_stats(queue)).completed >= n


async def events(manager: QueueManager, queue: str, kind: str) -> list[dict[str, str]]:
    found = await manager.get_queue(queue).events(1000)
    return [e for e in reversed(found) if e["event"] == kind]


async def test_handler_result_is_stored_and_jobs_run_concurrently(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    started: set[str] = set()
    gate = asyncio.Event()

    async def handler(job: Job) -> Any:
        started.add(job.id)
        await gate.wait()
        return {"double": job.data * 2}

    await manager.process("q", handler, concurrency=3, **FAST)
    for i in range(5):
        await q.add(i)
    await wait_for(lambda: asyncio.sleep(0, len(started) == 3))
    assert (await q.get_stats()).active == 3
    gate.set()
    await wait_for(lambda: completed(manager, "q", 5))
    job = await q.get_job("3")
    assert job is not None and job.return_value == {"double": 4}
    assert job.attempts_made == 1 and job.processed_on is not None
    assert [e["jobId"] for e in await events(manager, "q", "completed")][-1] in {"4", "5"}


async def test_plain_function_runs_in_a_thread(manager: QueueManager) -> None:
    q = manager.create_queue("q")

    def handler(job: Job) -> str:
        return threading.current_thread().name

    await manager.process("q", handler, **FAST)
    await q.add(1)
    await wait_for(lambda: completed(manager, "q", 1))
    job = await q.get_job("1")
    assert job is not None and job.return_value.startswith("engine-handler")


async def test_progress_and_logs_are_recorded(manager: QueueManager) -> None:
    q = manager.create_queue("q")

    async def handler(job: Job) -> None:
        await job.update_progress(40)
        await job.update_progress({"step": "done"})
        await job.log("first")
        await job.log("second")

    await manager.process("q", handler, **FAST)
    await q.add(1)
    await wait_for(lambda: completed(manager, "q", 1))
    job = await q.get_job("1")
    assert job is not None and job.progress == {"step": "done"}
    assert await q.get_job_logs("1") == ["first", "second"]
    assert [e["progress"] for e in await events(manager, "q", "progress")] == [
        "40",
        '{"step":"done"}',
    ]


async def test_exponential_backoff_schedule_read_from_redis(manager: QueueManager) -> None:
    q = manager.create_queue("q")

    async def handler(job: Job) -> None:
        raise RuntimeError(f"boom {job.attempts_made}")

    await manager.process("q", handler, **FAST)
    await q.add(1, {"attempts": 4, "backoff": {"type": "exponential", "delay": 50}})
    await wait_for(lambda: manager.client.zscore(q.keys.failed, "1"))
    retrying = await events(manager, "q", "retrying")
    starts = await events(manager, "q", "active")
    assert [e["delay"] for e in retrying] == ["50", "100", "200"]
    assert len(starts) == 4
    for retry, next_start in zip(retrying, starts[1:], strict=True):
        delay, due, failed_at = int(retry["delay"]), int(retry["due"]), int(retry["ts"])
        # Redis clock everywhere. A stream id may be 1 ms past the script's TIME; the
        # upper bound is a loose sanity tolerance, not a timing assertion.
        assert abs(due - failed_at - delay) <= 1
        assert due <= int(next_start["ts"]) < due + 2000
    job = await q.get_job("1")
    assert job is not None and job.state == JobState.FAILED
    assert job.attempts_made == 4 and job.failed_reason == "boom 3"
    assert len(job.stacktrace) == 4 and "RuntimeError: boom 0" in job.stacktrace[0]


async def test_backing_off_job_waits_in_delayed(manager: QueueManager) -> None:
    q = manager.create_queue("q")

    async def handler(job: Job) -> None:
        raise RuntimeError("later")

    await manager.process("q", handler, **FAST)
    await q.add(1, {"attempts": 2, "backoff": 60_000})
    await wait_for(lambda: manager.client.zscore(q.keys.delayed, "1"))
    job = await q.get_job("1")
    assert job is not None and job.state == JobState.DELAYED and job.attempts_made == 1


async def test_unrecoverable_error_fails_at_once(manager: QueueManager) -> None:
    q = manager.create_queue("q")

    async def handler(job: Job) -> None:
        raise UnrecoverableError("bad input")

    await manager.process("q", handler, **FAST)
    await q.add(1, {"attempts": 5, "backoff": 10})
    await wait_for(lambda: manager.client.zscore(q.keys.failed, "1"))
    job = await q.get_job("1")
    assert job is not None and job.attempts_made == 1 and job.failed_reason == "bad input"
    assert await events(manager, "q", "retrying") == []


async def test_custom_backoff_strategy_sets_the_delay(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    seen: list[tuple[int, str]] = []

    def strategy(attempts_made: int, error: BaseException, job: Job) -> int:
        seen.append((attempts_made, str(error)))
        return 30 * attempts_made

    async def handler(job: Job) -> None:
        raise ValueError("nope")

    await manager.process("q", handler, backoff_strategy=strategy, **FAST)
    await q.add(1, {"attempts": 3, "backoff": {"type": "custom"}})
    await wait_for(lambda: manager.client.zscore(q.keys.failed, "1"))
    assert [e["delay"] for e in await events(manager, "q", "retrying")] == ["30", "60"]
    assert seen == [(1, "nope"), (2, "nope")]


async def test_timeout_cancels_the_handler_and_fails_the_attempt(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    cancelled = asyncio.Event()

    async def handler(job: Job) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await manager.process("q", handler, **FAST)
    await q.add(1, {"timeout": 100})
    await wait_for(lambda: manager.client.zscore(q.keys.failed, "1"))
    job = await q.get_job("1")
    assert job is not None and job.failed_reason == "job timed out after 100 ms"
    assert cancelled.is_set()


async def test_non_json_return_value_fails_the_job(manager: QueueManager) -> None:
    q = manager.create_queue("q")

    async def handler(job: Job) -> object:
        return object()

    await manager.process("q", handler, **FAST)
    await q.add(1)
    await wait_for(lambda: manager.client.zscore(q.keys.failed, "1"))


async def test_delayed_job_runs_when_due(manager: QueueManager) -> None:
    q = manager.create_queue("q")

    async def handler(job: Job) -> None:
        return None

    await manager.process("q", handler, block_timeout_s=5.0)
    added = await q.add(1, {"delay": 150})
    await wait_for(lambda: completed(manager, "q", 1))
    job = await q.get_job(added.id)
    assert job is not None and job.processed_on is not None
    assert job.processed_on >= added.timestamp + 150


async def test_rate_limit_bounds_starts_per_window(manager: QueueManager) -> None:
    q = manager.create_queue("q")

    async def handler(job: Job) -> None:
        return None

    await manager.process("q", handler, concurrency=5, rate_limit=RateLimit(2, 300), **FAST)
    for i in range(6):
        await q.add(i)
    await wait_for(lambda: completed(manager, "q", 6))
    starts = [int(e["ts"]) for e in await events(manager, "q", "active")]
    assert len(starts) == 6
    # Event ids and the limiter read the Redis clock separately (ms rounding): allow 2 ms.
    for earlier, later in zip(starts, starts[2:], strict=False):
        assert later - earlier >= 298


async def test_remove_on_complete_and_on_fail_apply_when_jobs_finish(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")

    async def handler(job: Job) -> None:
        if job.data == "fail":
            raise RuntimeError("x")

    await manager.process("q", handler, **FAST)
    gone = await q.add("ok", {"remove_on_complete": True})
    for _ in range(3):
        await q.add("fail", {"remove_on_fail": 1})
    await wait_for(lambda: _finished_events(manager, 4))
    assert await q.get_job(gone.id) is None
    assert await manager.client.zrange(q.keys.failed, 0, -1) == ["4"]
    assert await q.get_job("2") is None and await q.get_job("4") is not None


async def _finished_events(manager: QueueManager, n: int) -> bool:
    done = await events(manager, "q", "completed") + await events(manager, "q", "failed")
    return len(done) >= n


async def test_close_finishes_quick_jobs_and_hands_back_the_rest_at_once(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    started: set[str] = set()

    async def handler(job: Job) -> str:
        started.add(job.id)
        await asyncio.sleep(60 if job.data == "slow" else 0.05)
        return "done"

    worker = await manager.process("q", handler, concurrency=4, **FAST)
    await q.add("fast")
    await q.add("slow")
    await q.add("slow")
    await wait_for(lambda: asyncio.sleep(0, len(started) == 3))
    await worker.close(timeout_s=0.5)
    fast = await q.get_job("1")
    assert fast is not None and fast.state == JobState.COMPLETED
    for job_id in ("2", "3"):
        job = await q.get_job(job_id)
        assert job is not None and job.state == JobState.WAITING
        assert job.attempts_made == 0
    assert await manager.client.zcard(q.keys.active) == 0
    assert len(await events(manager, "q", "released")) == 2
    assert worker.running == 0


async def test_stale_token_cannot_update_progress_log_or_complete(
    manager: QueueManager, caplog: pytest.LogCaptureFixture
) -> None:
    q = manager.create_queue("q")
    stolen = asyncio.Event()
    refused: list[str] = []

    async def handler(job: Job) -> str:
        await stolen.wait()
        for call in (job.update_progress(10), job.log("late")):
            try:
                await call
            except LeaseLost:
                refused.append("refused")
        return "late result"

    caplog.set_level(logging.WARNING, "engine.worker")
    await manager.process("q", handler, **FAST)
    await q.add(1)
    await wait_for(lambda: manager.client.zscore(q.keys.active, "1"))
    # As if the lease expired and another worker re-claimed the job.
    await manager.client.hset(q.keys.job("1"), "tok", "other:2")
    stolen.set()
    await wait_for(lambda: asyncio.sleep(0, "completion refused" in caplog.text))
    assert refused == ["refused", "refused"]
    job = await q.get_job("1")
    assert job is not None and job.state == JobState.ACTIVE and job.return_value is None
    assert job.progress == 0 and await q.get_job_logs("1") == []


async def test_pause_from_one_manager_stops_workers_of_another(
    redis_server: RedisServer, prefix: str, manager: QueueManager
) -> None:
    other = QueueManager(redis_server.url, prefix=prefix)
    try:
        q = manager.create_queue("q")
        other.create_queue("q")

        async def handler(job: Job) -> None:
            await asyncio.sleep(0.02)

        for _ in range(2):
            await other.process("q", handler, concurrency=2, **FAST)
        for i in range(10):
            await q.add(i)
        await wait_for(lambda: completed(manager, "q", 2))
        await q.pause()
        paused_at = (await events(manager, "q", "paused"))[-1]["id"]
        for i in range(5):
            await q.add(i)
        await wait_for(lambda: _no_active(q))
        late = [e for e in await events(manager, "q", "active") if e["id"] > paused_at]
        assert late == []
        assert (await q.get_stats()).paused > 0
        await q.resume()
        # Blocked workers wake on the resume marker: within one blocking timeout.
        await wait_for(
            lambda: _active_after(manager, paused_at), timeout_s=FAST["block_timeout_s"] + 1
        )
        await wait_for(lambda: completed(manager, "q", 15))
    finally:
        await other.close_all()


async def _no_active(q: Any) -> bool:
    return (await q.get_stats()).active == 0


async def _active_after(manager: QueueManager, after_id: str) -> bool:
    return any(e["id"] > after_id for e in await events(manager, "q", "active"))


def test_worker_options_name_the_bad_field() -> None:
    with pytest.raises(ValueError, match="renew_interval_ms"):
        WorkerOptions(lease_ms=1000, renew_interval_ms=600)
    with pytest.raises(ValueError, match="concurrency"):
        WorkerOptions(concurrency=0)
    with pytest.raises(ValueError, match="block_timeout_s"):
        WorkerOptions(block_timeout_s=0)
    with pytest.raises(ValueError, match=r"rate_limit\.max"):
        RateLimit(0, 1000)
    assert WorkerOptions(lease_ms=900).renew_ms == 300


@pytest.fixture
async def private_redis(
    redis_factory: Callable[..., RedisServer], prefix: str
) -> AsyncIterator[tuple[RedisServer, QueueManager]]:
    server = redis_factory()
    m = QueueManager(server.url, prefix=prefix)
    yield server, m
    await m.close_all()


async def test_worker_survives_a_redis_restart_and_logs_the_outage_once(
    private_redis: tuple[RedisServer, QueueManager], caplog: pytest.LogCaptureFixture
) -> None:
    server, m = private_redis
    caplog.set_level(logging.WARNING, "engine.worker")
    q = m.create_queue("q")

    async def handler(job: Job) -> None:
        return None

    worker = await m.process("q", handler, concurrency=2, reconnect_max_s=0.2, **FAST)
    await q.add(1)
    await wait_for(lambda: completed(m, "q", 1))
    server.kill()
    await wait_for(lambda: asyncio.sleep(0, "Redis unavailable" in caplog.text))
    # Restarted empty (no persistence): the script cache is gone too.
    await asyncio.to_thread(server.start)
    added: list[str] = []
    await wait_for(lambda: _add_and_complete(q, added))
    await wait_for(lambda: asyncio.sleep(0, "Redis connection restored" in caplog.text))
    # Once per task that saw the outage (the worker's exchange; the manager's cancel
    # notices have a line of their own), never once per failed call.
    assert caplog.text.count(f"Redis unavailable for worker {worker.id}") == 1
    assert caplog.text.count("Redis unavailable for cancel notices") <= 1
    assert worker.running == 0


async def _add_and_complete(q: Any, added: list[str]) -> bool:
    """Add one job once Redis answers (ids come from the queue's block, not from 1)."""
    try:
        if not added:
            added.append((await q.add(1)).id)
        return (await q.get_stats()).completed >= 1
    except Exception:
        return False


async def test_worker_built_from_a_store(manager: QueueManager) -> None:
    q = manager.create_queue("q")

    async def handler(job: Job) -> int:
        return 7

    worker = await Worker(manager.store, "q", handler, WorkerOptions(**FAST)).start()
    try:
        await q.add(1)
        await wait_for(lambda: completed(manager, "q", 1))
    finally:
        await worker.close()


async def _command_calls(c: Any) -> dict[str, int]:
    stats = await c.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


async def test_idle_worker_sends_one_round_trip_per_blocking_timeout(
    redis_factory: Callable[..., RedisServer], prefix: str
) -> None:
    server = redis_factory()
    m = QueueManager(server.url, prefix=prefix)
    try:
        m.create_queue("q")

        async def handler(job: Job) -> None:
            return None

        # Stalled recovery (and the idle safety claim it brings) out of the window.
        worker = await m.process("q", handler, block_timeout_s=0.1, stalled_interval_ms=60_000)
        await wait_for(lambda: asyncio.sleep(0, worker._exchange._blocker is not None))
        await asyncio.sleep(0.3)
        await m.client.config_resetstat()
        await asyncio.sleep(1.0)  # about ten blocking timeouts
        calls = await _command_calls(m.client)
        pops = calls.pop("bzpopmin", 0)
        looks = calls.pop("zrange", 0)
        calls.pop("config|resetstat", None)
        # Only blocking pops, each with its look at the earliest unconfirmed claim (one
        # pipeline): no claim script, no command inside one, nothing else.
        assert pops >= 3 and abs(looks - pops) <= 1
        assert calls == {}
    finally:
        await m.close_all()


async def test_idle_worker_still_claims_on_a_marker_and_for_a_due_delayed_job(
    redis_factory: Callable[..., RedisServer], prefix: str
) -> None:
    server = redis_factory()
    m = QueueManager(server.url, prefix=prefix)
    try:
        q = m.create_queue("q")

        async def handler(job: Job) -> None:
            return None

        await m.process("q", handler, block_timeout_s=0.1, stalled_interval_ms=60_000)
        await asyncio.sleep(0.3)  # idle: several timeouts without a claim
        await q.add(1)
        await wait_for(lambda: completed(m, "q", 1))
        # Announced by the `d` marker; the worker then blocks until the due time and claims.
        await q.add(2, {"delay": 400})
        await wait_for(lambda: completed(m, "q", 2))
        # Paused: a marker wakes the worker but it claims nothing; resume wakes it again.
        await q.pause()
        await q.add(3)
        await asyncio.sleep(0.3)
        assert (await q.get_stats()).paused == 1
        await q.resume()
        await wait_for(lambda: completed(m, "q", 3))
    finally:
        await m.close_all()


async def test_a_warm_worker_claims_behind_its_blocking_pop_and_an_idle_one_does_not(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    ran: list[int] = []

    async def handler(job: Job) -> None:
        ran.append(job.data)

    worker = await manager.process("q", handler, block_timeout_s=0.2, stalled_interval_ms=60_000)
    await wait_for(lambda: asyncio.sleep(0, worker._exchange._blocker is not None))
    asked: list[int] = []
    real = worker._exchange._block

    async def spy(timeout_s: float, count: int, request_id: str) -> tuple[Any, Any, Any]:
        asked.append(count)
        return await real(timeout_s, count, request_id)

    worker._exchange._block = spy  # type: ignore[method-assign]
    await q.add(1)  # wakes the cold worker: a bare pop, then the claim
    await wait_for(lambda: asyncio.sleep(0, ran == [1]))
    await wait_for(lambda: asyncio.sleep(0, len(asked) >= 1))
    assert asked[0] == 1  # busy a moment ago: the claim rides behind the pop
    await q.add(2)
    await wait_for(lambda: completed(manager, "q", 2))
    # Two blocking timeouts later the worker is idle again: bare pops only.
    await wait_for(lambda: asyncio.sleep(0, asked[-1] == 0 and len(asked) >= 4))
    assert ran == [1, 2]
