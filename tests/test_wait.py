"""Waiting for a job's outcome: job.wait() and queue.add_and_wait(), whoever runs the job."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from engine import QueueManager
from engine.errors import InvalidJobState, JobFailed, JobNotFound, UnrecoverableError, WaitTimeout
from engine.queue import Queue
from tests.helpers import wait_for
from tests.redis_servers import RedisServer

WORKER_PROC = Path(__file__).with_name("worker_proc.py")


async def test_a_waiter_gets_the_result_of_a_job_finished_by_another_process(
    redis_server: RedisServer, manager: QueueManager, prefix: str
) -> None:
    queue = manager.create_queue("w")
    job = await queue.add({"sleep": 0.05})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER_PROC), redis_server.url, prefix, "w", "5000", "2",
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        result = await job.wait(timeout_s=30)
    finally:
        proc.terminate()
        await proc.wait()
    assert result == {"by": proc.pid}


async def test_wait_raises_the_failed_reason_once_the_last_attempt_fails(
    manager: QueueManager,
) -> None:
    async def handler(job):  # type: ignore[no-untyped-def]
        raise RuntimeError(f"boom {job.attempts_made}")

    queue = manager.create_queue("w")
    job = await queue.add({}, {"attempts": 2})
    await manager.process("w", handler)
    with pytest.raises(JobFailed) as caught:
        await job.wait(timeout_s=30)
    # Not the first attempt's failure (a retry followed it): the last one.
    assert caught.value.reason == "boom 1"
    assert caught.value.job_id == job.id


async def test_a_job_already_finished_is_answered_from_its_state(manager: QueueManager) -> None:
    async def handler(job):  # type: ignore[no-untyped-def]
        if job.data == "bad":
            raise UnrecoverableError("bad input")
        return job.data * 2

    queue = manager.create_queue("w")
    good, bad = await queue.add(21), await queue.add("bad")
    await manager.process("w", handler)
    assert await good.wait(timeout_s=30) == 42
    with pytest.raises(JobFailed, match="bad input"):
        await bad.wait(timeout_s=30)
    # Both are finished now: a new wait, through get_job, reads the stored outcome.
    again = await queue.get_job(good.id)
    assert again is not None
    assert await again.wait(timeout_s=5) == 42
    assert manager.waiters.pending == 0


async def test_a_wait_that_times_out_leaves_the_job_running(manager: QueueManager) -> None:
    release = asyncio.Event()

    async def handler(job):  # type: ignore[no-untyped-def]
        await release.wait()
        return "done"

    queue = manager.create_queue("w")
    job = await queue.add()
    await manager.process("w", handler)
    with pytest.raises(WaitTimeout):
        await job.wait(timeout_s=0.2)
    assert isinstance(WaitTimeout("x"), TimeoutError)
    release.set()
    assert await job.wait(timeout_s=30) == "done"


async def test_add_and_wait_returns_the_handler_value(manager: QueueManager) -> None:
    async def handler(job):  # type: ignore[no-untyped-def]
        return {"rows": job.data["n"]}

    queue = manager.create_queue("w")
    await manager.process("w", handler, concurrency=4)
    results = await asyncio.gather(*(queue.add_and_wait({"n": n}, timeout_s=30) for n in range(20)))
    assert results == [{"rows": n} for n in range(20)]


async def test_waiting_for_a_missing_or_removed_job_raises_not_found(
    manager: QueueManager,
) -> None:
    queue = manager.create_queue("w")
    with pytest.raises(JobNotFound):
        await queue.wait_for("nope", timeout_s=5)
    job = await queue.add({}, {"delay": 60_000})
    waiting = asyncio.create_task(job.wait(timeout_s=30))

    async def registered() -> bool:
        return manager.waiters.pending == 1

    await wait_for(registered)
    await queue.remove_job(job.id)
    with pytest.raises(JobNotFound):
        await waiting


async def test_thousands_of_waiters_share_one_stream_reader(manager: QueueManager, client) -> None:  # type: ignore[no-untyped-def]
    queue = manager.create_queue("w")
    jobs = await queue.add_bulk([{"data": n} for n in range(2000)])
    waits = [asyncio.create_task(j.wait(timeout_s=60)) for j in jobs]

    async def all_registered() -> bool:
        return manager.waiters.pending == len(jobs) and not manager.waiters.checking

    await wait_for(all_registered, 30)
    # Every waiter is registered and has read its job's state once. From here on, no
    # waiter polls: the only reads are the one feed's XREADs.
    before = await _calls(client)
    await asyncio.sleep(1.0)
    during = await _calls(client)
    idle = {cmd: during.get(cmd, 0) - before.get(cmd, 0) for cmd in during}
    assert idle.get("hmget", 0) == 0 and idle.get("zscore", 0) == 0
    assert idle.get("xread", 0) <= 10  # one blocking read per second, not one per waiter

    async def handler(job):  # type: ignore[no-untyped-def]
        return job.data

    await manager.process("w", handler, concurrency=50)
    assert await asyncio.gather(*waits) == list(range(2000))


async def test_a_queue_without_a_manager_cannot_wait(manager: QueueManager) -> None:
    queue = Queue(manager.store, "loose")
    job = await queue.add()
    with pytest.raises(InvalidJobState, match="QueueManager"):
        await job.wait(timeout_s=1)


async def _calls(client) -> dict[str, int]:  # type: ignore[no-untyped-def]
    stats = await client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
