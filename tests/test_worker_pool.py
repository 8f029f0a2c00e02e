"""Handlers in a process pool: CPU-bound work never blocks the loop that renews leases."""

from __future__ import annotations

import os
import time

import pytest
from helpers import wait_for

from engine import Job, JobState, QueueManager, UnrecoverableError

pytestmark = pytest.mark.slow


def busy_handler(job: Job) -> dict[str, int]:
    """Module-level, so a spawned child can import it. Spins the CPU (no sleep)."""
    if job.data == "bad":
        raise UnrecoverableError("bad data")
    deadline = time.monotonic() + float(job.data)
    n = 0
    while time.monotonic() < deadline:
        n += 1
    return {"pid": os.getpid()}


async def test_process_pool_runs_handlers_in_children_and_keeps_leases(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    # The jobs spin longer than the lease: only renewals from a free loop keep them.
    await manager.process(
        "q",
        busy_handler,
        concurrency=2,
        use_process_pool=True,
        pool_size=2,
        lease_ms=300,
        stalled_interval_ms=100,
        block_timeout_s=0.5,
    )
    await q.add(0.6)
    await q.add(0.6)
    await q.add("bad", {"attempts": 3})
    await wait_for(lambda: _finished(manager, 3), timeout_s=30)
    for job_id in ("1", "2"):
        job = await q.get_job(job_id)
        assert job is not None and job.state == JobState.COMPLETED
        assert job.return_value["pid"] != os.getpid() and job.stalled_count == 0
    bad = await q.get_job("3")
    assert bad is not None and bad.state == JobState.FAILED and bad.attempts_made == 1
    assert "UnrecoverableError" in bad.stacktrace[0]
    assert [e for e in await q.events(1000) if e["event"] == "stalled"] == []


async def _finished(manager: QueueManager, n: int) -> bool:
    s = await manager.get_stats("q")
    return s.completed + s.failed >= n
