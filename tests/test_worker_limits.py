"""Limits: batch sizes and argument counts stay within Lua's and Redis's, sizes are capped."""

from __future__ import annotations

from helpers import wait_for

from engine import Job, JobState, QueueManager
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
