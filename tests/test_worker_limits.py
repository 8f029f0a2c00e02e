"""Limits: batch sizes and argument counts stay within Lua's and Redis's, sizes are capped."""

from __future__ import annotations

import asyncio

import pytest
from helpers import wait_for

from engine import Job, JobState, QueueManager, WorkerOptions
from engine.worker.runner import MAX_REASON_CHARS

FAST = {"block_timeout_s": 0.5, "stalled_interval_ms": 200}


async def test_a_huge_failed_reason_is_capped_in_the_job_and_its_events(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")

    async def handler(job: Job) -> None:
        raise ValueError("x" * 1_000_000)

    await manager.process("q", handler, **FAST)
    job = await q.add(1)

    async def failed() -> Job | None:
        found = await q.get_job(job.id)
        return found if found is not None and found.state == JobState.FAILED else None

    done = await wait_for(failed)
    assert done.failed_reason is not None and len(done.failed_reason) <= MAX_REASON_CHARS
    assert done.failed_reason.startswith("xxx")
    events = [e for e in await q.events(100) if e["event"] == "failed"]
    assert events and all(len(e["failedReason"]) <= MAX_REASON_CHARS for e in events)


@pytest.mark.parametrize("field", ["promote_batch", "retention_batch", "fetch_batch"])
def test_batch_sizes_past_what_a_script_call_should_take_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        WorkerOptions(**{field: 10_001})
    WorkerOptions(**{field: 10_000})  # the bound itself is fine: scripts slice it


async def test_thousands_of_due_delayed_jobs_all_run(manager: QueueManager) -> None:
    """9000 due jobs, promoted by the largest allowed batch: past what one Lua unpack
    takes, so the scripts must slice their commands."""
    q = manager.create_queue("q")
    c = manager.client
    n = 9000
    await q.add_bulk([{"data": i, "opts": {"delay": 3_600_000}} for i in range(n)])
    ids = await c.zrange(q.keys.delayed, 0, -1)
    await c.zadd(q.keys.delayed, dict.fromkeys(ids, 1))  # all due now
    done = 0

    async def handler(job: Job) -> None:
        nonlocal done
        done += 1

    await manager.process("q", handler, concurrency=50, promote_batch=10_000, **FAST)
    await wait_for(lambda: asyncio.sleep(0, done == n), timeout_s=60)
