"""Cancelling a job that has not started: waiting, prioritized or delayed jobs fail at once,
are never run and never retried; finished jobs are refused with their state. And the
script's guarantees towards a worker that still holds a cancelled job."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine import JobFailed, JobNotCancellable, JobNotFound, JobState, QueueManager
from engine.cancel import cancel_call
from tests.helpers import wait_for
from tests.lua.worker_calls import calls, claim


def _events_of(events: list[dict[str, str]], job_id: str) -> list[str]:
    return [e["event"] for e in reversed(events) if e.get("jobId") == job_id]


async def test_a_waiting_job_is_failed_at_once_never_run_and_its_waiter_told(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    cancelled = await q.add({"n": 1}, {"attempts": 5})
    waiter = asyncio.ensure_future(cancelled.wait(timeout_s=30))
    await wait_for(lambda: _no_pending_check(manager))

    assert await q.cancel_job(cancelled.id, actor="alice") is JobState.WAITING

    with pytest.raises(JobFailed) as caught:
        await waiter
    assert caught.value.reason == "cancelled by alice"
    job = await q.get_job(cancelled.id)
    assert job is not None and job.state is JobState.FAILED
    assert job.failed_reason == "cancelled by alice" and job.attempts_made == 0
    assert job.finished_on is not None
    assert await q.count_jobs("waiting") == 0
    events = await q.events()
    assert _events_of(events, cancelled.id) == ["waiting", "cancelled", "failed"]
    audit = next(e for e in events if e["event"] == "cancelled")
    assert audit["by"] == "alice" and audit["prev"] == "waiting"

    ran: list[Any] = []

    async def handler(job):  # type: ignore[no-untyped-def]
        ran.append(job.data)
        return job.data

    await manager.process("q", handler, block_timeout_s=0.5)
    later = await q.add({"n": 2})
    assert await later.wait(timeout_s=30) == {"n": 2}
    assert ran == [{"n": 2}]  # the cancelled job never ran, never came back
    again = await q.get_job(cancelled.id)
    assert again is not None and again.state is JobState.FAILED


async def _no_pending_check(manager: QueueManager) -> bool:
    return not manager.waiters.checking


async def test_a_delayed_job_is_failed_and_leaves_delayed(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    job = await q.add("later", {"delay": 60_000, "attempts": 3})
    assert await q.cancel_job(job.id) is JobState.DELAYED
    got = await q.get_job(job.id)
    assert got is not None and got.state is JobState.FAILED
    assert got.failed_reason == "cancelled"  # no actor named
    assert await manager.client.zcard(q.keys.delayed) == 0


async def test_a_prioritized_job_is_failed_and_leaves_prioritized(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    first = await q.add("a", {"priority": 3})
    second = await q.add("b", {"priority": 3})
    assert await q.cancel_job(first.id, "bob") is JobState.WAITING
    assert await manager.client.zrange(q.keys.prioritized, 0, -1) == [second.id]
    got = await q.get_job(first.id)
    assert got is not None and got.state is JobState.FAILED


async def test_a_finished_job_is_refused_with_its_state_and_unchanged(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")

    async def handler(job):  # type: ignore[no-untyped-def]
        if job.data == "bad":
            raise ValueError("bad")
        return "ok"

    done, bad = await q.add("good"), await q.add("bad")
    await manager.process("q", handler, block_timeout_s=0.5)
    assert await done.wait(timeout_s=30) == "ok"
    with pytest.raises(JobFailed):
        await bad.wait(timeout_s=30)

    with pytest.raises(JobNotCancellable) as caught:
        await q.cancel_job(done.id, "alice")
    assert caught.value.state == "completed" and "is completed" in str(caught.value)
    with pytest.raises(JobNotCancellable) as caught:
        await q.cancel_job(bad.id, "alice")
    assert caught.value.state == "failed"
    failed = await q.get_job(bad.id)
    assert failed is not None and failed.failed_reason == "bad"  # untouched
    with pytest.raises(JobNotFound):
        await q.cancel_job("nope", "alice")
    assert not [e for e in await q.events() if e["event"] == "cancelled"]


async def test_a_resent_cancel_returns_the_first_reply_instead_of_a_refusal(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    job = await q.add("x")
    keys, args = cancel_call(q, job.id, "alice", "r1")
    assert await q.store.scripts.cancel_job(keys, args) == [1, "waiting"]
    assert await q.store.scripts.cancel_job(keys, args) == [1, "waiting"]  # the resend
    events = await q.events()
    assert [e["event"] for e in events].count("cancelled") == 1
    # A new call (new request id) is refused: the job is failed now.
    with pytest.raises(JobNotCancellable):
        await q.cancel_job(job.id, "alice")


async def test_a_running_job_is_failed_at_once_and_its_worker_cannot_overwrite_it(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    job = await q.add("x", {"attempts": 5})
    ((job_id, token, *_),) = await claim(q)
    assert await q.cancel_job(job_id, "alice") is JobState.ACTIVE

    got = await q.get_job(job_id)
    assert got is not None and got.state is JobState.FAILED and got.attempts_made == 1
    assert await manager.client.zscore(q.keys.claims, job_id) is None
    # The worker's late finishes, whatever they say, change nothing (0: already over).
    complete = await calls(q).complete([(job_id, token, '"late"', -1, -1)], 100)
    assert list(complete[1]) == [0]
    fail = await calls(q).fail(
        [q.keys.job_prefix, job_id, token, "late failure", "", 10, 0, -1, -1, 1000, 100]
    )
    assert fail == 0
    after = await q.get_job(job_id)
    assert after is not None and after.state is JobState.FAILED
    assert after.failed_reason == "cancelled by alice" and after.return_value is None
    assert after.attempts_made == 1
    assert await q.count_jobs("waiting") == 0 and await q.count_jobs("delayed") == 0
    # Its lease renewal reports the attempt as cancelled (the fallback for a lost message).
    assert await calls(q).extend([(job_id, token)], 30_000) == [[job_id, token, "cancelled"]]
    assert _events_of(await q.events(), job.id) == ["waiting", "active", "cancelled", "failed"]


async def test_a_cancelled_running_job_keeps_its_hash_under_remove_on_fail(
    manager: QueueManager,
) -> None:
    # removeOnFail: true deletes a failed job at once; a cancelled RUNNING job is kept, so
    # a worker that missed the message still reads why at its renewal.
    q = manager.create_queue("q")
    running = await q.add("run", {"removeOnFail": True})
    waiting = await q.add("wait", {"removeOnFail": True})
    ((job_id, token, *_),) = await claim(q, count=1)
    assert job_id == running.id
    await q.cancel_job(waiting.id)
    assert await q.get_job(waiting.id) is None  # not running: removed like any failure
    await q.cancel_job(running.id)
    assert await calls(q).extend([(job_id, token)], 30_000) == [[job_id, token, "cancelled"]]
    # It stays in `failed` until a count/age trim or a clean removes it.
    kept = await q.get_job(running.id)
    assert kept is not None and kept.state is JobState.FAILED
    assert await q.clean("failed", 0) == 1
