"""Claims: a job claimed by a worker that froze right then is back in play after the claim
deadline, not a lease; due times are kept by a local timer, not a blocking pop's timeout."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import wait_for

from engine import Job, JobState, QueueManager
from tests.redis_servers import RedisServer
from tests.test_worker_faults import WorkerProcess


@pytest.fixture
async def procs() -> AsyncIterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for p in started:
        await p.stop()


async def _blocked_pops(manager: QueueManager) -> int:
    clients = await manager.client.client_list()
    return sum(1 for c in clients if c.get("cmd") == "bzpopmin" and "b" in c.get("flags", ""))


@pytest.mark.slow
async def test_a_job_claimed_by_a_worker_frozen_right_then_is_back_within_the_claim_deadline(
    redis_server: RedisServer, prefix: str, manager: QueueManager, procs: list[WorkerProcess]
) -> None:
    q = manager.create_queue("q")
    # A long lease and blocking timeout: only the claim deadline (5 s) can bring it back.
    frozen = await WorkerProcess.spawn(redis_server.url, prefix, "q", 60_000, 1, block_s=20)
    procs.append(frozen)
    await wait_for(lambda: asyncio.sleep(0, frozen.said("READY")))
    await q.add({"sleep": 0})
    await wait_for(lambda: _completed(manager, 1))
    # Warm and idle: its claim now rides behind its blocking pop, in Redis.
    await wait_for(lambda: _blocked_pops(manager))
    frozen.signal(signal.SIGSTOP)
    job = await q.add({"sleep": 0})
    # Redis ran the frozen worker's claim: the job is active under its token.
    await wait_for(lambda: manager.client.hget(q.keys.job(job.id), "tok"))
    token = await manager.client.hget(q.keys.job(job.id), "tok")
    assert f":{frozen.proc.pid}:" in token

    async def handler(job: Job) -> str:
        return "rescuer"

    # Stalled recovery out of the picture: the claim deadline alone brings the job back.
    await manager.process("q", handler, block_timeout_s=1.0, stalled_interval_ms=600_000)
    await wait_for(lambda: _completed(manager, 2), timeout_s=20)
    done = await q.get_job(job.id)
    assert done is not None and done.return_value == "rescuer"
    assert done.stalled_count == 0  # it never started: not a stall
    released = [e for e in await q.events(1000) if e["event"] == "released"]
    assert [e["jobId"] for e in released] == [job.id]
    frozen.signal(signal.SIGCONT)
    # Thawed, it runs its stale claim's job; its outcome is refused: one completion only.
    await wait_for(lambda: asyncio.sleep(0, frozen.said("refused")), timeout_s=15)
    completions = [e["jobId"] for e in await q.events(1000) if e["event"] == "completed"]
    assert completions.count(job.id) == 1


async def _completed(manager: QueueManager, n: int) -> bool:
    return (await manager.get_stats("q")).completed >= n


async def test_a_due_delayed_job_is_claimed_by_a_local_timer_not_a_pop_timeout(
    manager: QueueManager,
) -> None:
    """Redis resolves a blocking pop's timeout at its ``hz`` (up to 100 ms late by
    default): the due time must never be left to one."""
    q = manager.create_queue("q")
    started = asyncio.Event()

    async def handler(job: Job) -> None:
        started.set()

    worker = await manager.process("q", handler, block_timeout_s=30, stalled_interval_ms=600_000)
    await wait_for(lambda: asyncio.sleep(0, worker._exchange._blocker is not None))
    timeouts: list[float] = []
    real = worker._exchange._block

    async def spy(timeout_s: float, *args: Any) -> Any:
        timeouts.append(timeout_s)
        return await real(timeout_s, *args)

    worker._exchange._block = spy  # type: ignore[method-assign]
    job = await q.add(1, {"delay": 300})
    await asyncio.wait_for(started.wait(), 10)
    got = await q.get_job(job.id)
    assert got is not None and got.state in (JobState.ACTIVE, JobState.COMPLETED)
    assert timeouts and all(t == 30 for t in timeouts), timeouts
