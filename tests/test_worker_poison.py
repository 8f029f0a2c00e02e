"""A job whose stored fields cannot be read fails alone; the worker goes on. Options of
Bull-compatible producers: ignored with one warning, or refused at add time."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest
from helpers import wait_for

from engine import Job, JobState, QueueManager
from engine.options import JobOptions

FAST = {"block_timeout_s": 0.5, "stalled_interval_ms": 200}


async def _state(manager: QueueManager, job_id: str) -> JobState | None:
    job = await manager.get_job("q", job_id)
    return None if job is None else job.state


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("data", "{not json", "'data'"),
        ("opts", "[1, 2]", "'opts'"),
        ("opts", '{"attempts": "three"}', "attempts"),
        ("opts", "{bad", "'opts'"),
    ],
)
async def test_a_job_with_an_unreadable_field_fails_alone_and_the_worker_goes_on(
    manager: QueueManager, field: str, value: str, named: str
) -> None:
    q = manager.create_queue("q")
    poison = await q.add(1, {"attempts": 3})
    await manager.client.hset(q.keys.job(poison.id), field, value)
    ran: list[int] = []

    async def handler(job: Job) -> int:
        ran.append(job.data)
        return job.data

    worker = await manager.process("q", handler, **FAST)
    await wait_for(lambda: _state(manager, poison.id), 5)
    await wait_for(lambda: asyncio.sleep(0, worker.status()["pending_finishes"] == 0))
    job = await wait_for(lambda: _failed(manager, poison.id))
    assert named in (job.failed_reason or "") and job.attempts_made == 1  # no retry
    assert ran == []
    good = await q.add(2)
    await wait_for(lambda: _completed(manager, good.id))
    assert ran == [2]
    assert worker.status()["restarts"] == 0
    await worker.close()  # never raises because of a job


async def _failed(manager: QueueManager, job_id: str) -> Job | None:
    job = await manager.get_job("q", job_id)
    return job if job is not None and job.state == JobState.FAILED else None


async def _completed(manager: QueueManager, job_id: str) -> bool:
    return await _state(manager, job_id) == JobState.COMPLETED


async def test_unknown_stored_options_are_ignored_with_one_warning_and_the_job_runs(
    manager: QueueManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "engine.options")
    q = manager.create_queue("q")
    ids = []
    for i in range(3):
        job = await q.add(i)
        # As a newer (or Bull) producer would store them.
        opts = {"lifo": True, "futureOption": {"x": 1}, "attempts": 2}
        await manager.client.hset(q.keys.job(job.id), "opts", orjson.dumps(opts).decode())
        ids.append(job.id)

    async def handler(job: Job) -> int:
        assert job.opts.attempts == 2
        return 1

    await manager.process("q", handler, **FAST)
    for job_id in ids:
        await wait_for(lambda job_id=job_id: _completed(manager, job_id))
    warned = [r.getMessage() for r in caplog.records if "futureOption" in r.getMessage()]
    assert len(warned) <= 1  # once per name per process (may have warned in an earlier test)
    listed = await manager.get_job("q", ids[0])
    assert listed is not None and listed.opts.attempts == 2


def test_bull_options_without_effect_are_accepted_at_add_time() -> None:
    opts = JobOptions.parse({"lifo": True, "keepLogs": 10, "stackTraceLimit": 3, "sizeLimit": 9})
    assert opts == JobOptions()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"bogus": 1}, "unknown job option 'bogus'"),
        ({"repeat": {"every": 1000}}, "'repeat' .*not supported.*schedule"),
        ({"parent": {"id": "1", "queue": "p"}}, "'parent'"),
    ],
)
def test_unknown_and_unsupported_options_are_refused_at_add_time(
    raw: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        JobOptions.parse(raw)


async def test_add_refuses_an_unknown_option_naming_it(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    with pytest.raises(ValueError, match="'lifoo'"):
        await q.add(1, {"lifoo": True})
    job = await q.add(1, {"lifo": True})
    assert (await manager.get_job("q", job.id)) is not None


async def test_listing_a_job_with_unreadable_fields_works(manager: QueueManager) -> None:
    q = manager.create_queue("q")
    job = await q.add(1)
    await manager.client.hset(q.keys.job(job.id), mapping={"data": "{x", "opts": '{"attempts": 0}'})
    listed = await manager.get_job("q", job.id)
    assert listed is not None and listed.data == "{x" and listed.opts == JobOptions()
