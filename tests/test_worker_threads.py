"""Plain-function handlers run in threads that cannot be stopped: a timed-out thread keeps
its slot until it returns, and a job's timeout counts from its handler's real start."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from helpers import wait_for

from engine import Job, JobState, QueueManager

FAST = {"block_timeout_s": 0.5, "stalled_interval_ms": 200}


async def _state(manager: QueueManager, job_id: str) -> JobState | None:
    job = await manager.get_job("q", job_id)
    return None if job is None else job.state


async def test_a_hung_timed_out_thread_keeps_its_slot_and_the_next_job_runs_in_full(
    manager: QueueManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "engine.worker")
    q = manager.create_queue("q")
    release = threading.Event()
    entered: list[int] = []

    def handler(job: Job) -> int:
        entered.append(job.data)
        if job.data == 1:
            release.wait(30)  # hangs past its timeout
        return int(job.data)

    worker = await manager.process("q", handler, concurrency=1, **FAST)
    first = await q.add(1, {"timeout": 100})
    await wait_for(lambda: _is(manager, first.id, JobState.FAILED))
    second = await q.add(2, {"timeout": 200})

    def still_running_said() -> bool:
        return any("still running" in r.getMessage() for r in caplog.records)

    await wait_for(lambda: asyncio.sleep(0, still_running_said()))
    # The only thread is busy: the worker holds its slot and claims nothing.
    assert worker.running == 1
    assert await _state(manager, second.id) == JobState.WAITING
    release.set()
    await wait_for(lambda: _is(manager, second.id, JobState.COMPLETED))
    assert entered == [1, 2]
    failed = await q.get_job(first.id)
    assert failed is not None and failed.failed_reason == "job timed out after 100 ms"
    await wait_for(lambda: asyncio.sleep(0, worker.running == 0))


async def _is(manager: QueueManager, job_id: str, state: JobState) -> bool:
    return await _state(manager, job_id) == state
