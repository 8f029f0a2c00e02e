"""Whatever Redis replies, a finished outcome is kept until recorded, a claim Redis ran is
never dropped, a resent call changes nothing twice, and one job's bad data never throws
away another's outcome."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager

import pytest
from helpers import wait_for

from engine import Job, JobState, QueueManager
from engine.scripts import SOURCES
from tests.faults.proxy import Fault, FaultProxy
from tests.faults.real import no_replicas, out_of_memory
from tests.faults.resp import Match
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.slow

FAST = {"block_timeout_s": 0.5, "stalled_interval_ms": 600_000, "reconnect_max_s": 0.2}
REFUSALS: dict[str, Callable[[RedisServer], AbstractContextManager[None]]] = {
    "OOM": out_of_memory,
    "NOREPLICAS": no_replicas,
}


async def _completed(m: QueueManager, n: int) -> bool:
    return (await m.get_stats("q")).completed >= n


async def _completions(m: QueueManager) -> Counter[str]:
    events = await m.get_queue("q").events(10_000)
    return Counter(e["jobId"] for e in events if e["event"] == "completed")


@pytest.mark.parametrize("code", sorted(REFUSALS))
async def test_finishes_refused_by_redis_are_kept_and_recorded_once_it_accepts(
    redis_factory: Callable[..., RedisServer],
    prefix: str,
    code: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "engine.worker")
    server = redis_factory()
    m = QueueManager(server.url, prefix=prefix)
    try:
        q = m.create_queue("q")
        runs: Counter[str] = Counter()
        gate = asyncio.Event()

        async def handler(job: Job) -> int:
            runs[job.id] += 1
            await gate.wait()
            return 1

        worker = await m.process("q", handler, concurrency=4, **FAST)
        for i in range(4):
            await q.add(i)
        await wait_for(lambda: asyncio.sleep(0, len(runs) == 4))
        with REFUSALS[code](server):
            gate.set()
            # Every handler ended; Redis refuses their finishes: kept, not dropped.
            await wait_for(lambda: asyncio.sleep(0, worker.running == 0))
            await wait_for(lambda: asyncio.sleep(0, "Redis refused" in caplog.text))
            assert worker.status()["pending_finishes"] == 4
            assert (await q.get_stats()).active == 4
        # Accepted again: recorded, each once, and no job ran twice.
        await wait_for(lambda: _completed(m, 4))
        assert runs == Counter({job_id: 1 for job_id in runs})
        assert set((await _completions(m)).values()) == {1}
        # One outage, one pair of lines for the task that saw it.
        assert caplog.text.count("Redis refused") == 1
        assert caplog.text.count("restored") == 1
    finally:
        await m.close_all()


@pytest.fixture
async def proxy(redis_server: RedisServer) -> AsyncIterator[FaultProxy]:
    # Scripts loaded first: a fault must hit a call Redis ran, not a NOSCRIPT answer.
    direct = redis_server.client()
    try:
        for source in SOURCES.values():
            direct.script_load(source.source)
    finally:
        direct.close()
    p = await FaultProxy("127.0.0.1", redis_server.port).start()
    yield p
    await p.close()


async def test_a_claim_whose_reply_was_lost_is_not_dropped(proxy: FaultProxy, prefix: str) -> None:
    m = QueueManager(proxy.url, prefix=prefix)
    try:
        q = m.create_queue("q")
        job = await q.add(1)
        # Redis runs the claim; its reply never arrives; the client resends it.
        proxy.add_rule(Fault.cut(), Match(script="move_to_active"))
        ran: list[str] = []

        async def handler(job: Job) -> None:
            ran.append(job.id)

        await m.process("q", handler, **FAST)
        await wait_for(lambda: _completed(m, 1))
        assert [r.fault.kind for r in proxy.log] == ["cut"]
        assert ran == [job.id]
        done = await q.get_job(job.id)
        assert done is not None and done.stalled_count == 0
        actives = [e for e in await q.events(100) if e["event"] == "active"]
        assert len(actives) == 1
    finally:
        await m.close_all()


@pytest.mark.parametrize("script", ["complete_job", "fail_job"])
async def test_a_finish_whose_reply_was_lost_is_recorded_once(
    proxy: FaultProxy, prefix: str, script: str
) -> None:
    m = QueueManager(proxy.url, prefix=prefix)
    try:
        q = m.create_queue("q")
        proxy.add_rule(Fault.cut(), Match(script=script))

        async def handler(job: Job) -> None:
            if script == "fail_job":
                raise ValueError("no")

        await m.process("q", handler, **FAST)
        job = await q.add(1)

        async def finished() -> bool:
            got = await q.get_job(job.id)
            return got is not None and got.state in (JobState.COMPLETED, JobState.FAILED)

        await wait_for(finished)
        await wait_for(lambda: asyncio.sleep(0, len(proxy.log) == 1))
        kinds = [e["event"] for e in await q.events(100)]
        assert kinds.count("completed") + kinds.count("failed") == 1
        got = await q.get_job(job.id)
        assert got is not None and got.attempts_made == 1
    finally:
        await m.close_all()


async def test_a_resent_log_line_or_progress_is_written_once(
    proxy: FaultProxy, prefix: str
) -> None:
    m = QueueManager(proxy.url, prefix=prefix)
    try:
        q = m.create_queue("q")
        proxy.add_rule(Fault.cut(), Match(script="add_log"))
        proxy.add_rule(Fault.cut(), Match(script="update_progress"))

        async def handler(job: Job) -> None:
            await job.log("one")
            await job.update_progress(50)
            await job.log("two")

        await m.process("q", handler, **FAST)
        job = await q.add(1)
        await wait_for(lambda: _completed(m, 1))
        assert len(proxy.log) == 2
        assert await q.get_job_logs(job.id) == ["one", "two"]
        kinds = [e["event"] for e in await q.events(100)]
        assert kinds.count("progress") == 1
    finally:
        await m.close_all()


async def test_a_job_whose_outcome_cannot_be_recorded_never_costs_the_others_theirs(
    manager: QueueManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "engine.worker")
    q = manager.create_queue("q")
    gate = asyncio.Event()
    started: set[str] = set()

    async def handler(job: Job) -> int:
        started.add(job.id)
        await gate.wait()
        return 1

    worker = await manager.process("q", handler, concurrency=3, **FAST)
    jobs = [await q.add(i) for i in range(3)]
    await wait_for(lambda: asyncio.sleep(0, len(started) == 3))
    # Job 2's hash is now something else (bad data): any script touching it errors.
    bad = q.keys.job(jobs[1].id)
    await manager.client.delete(bad)
    await manager.client.set(bad, "not a hash")
    gate.set()
    for good in (jobs[0], jobs[2]):
        await wait_for(lambda good=good: _is(manager, good.id, JobState.COMPLETED))
    await wait_for(lambda: asyncio.sleep(0, worker.status()["pending_finishes"] == 0))
    assert "cannot be recorded" in caplog.text
    # The worker goes on, nothing loops.
    later = await q.add(9)
    await wait_for(lambda: _is(manager, later.id, JobState.COMPLETED))
    assert worker.status()["restarts"] == 0
    assert worker.status()["pending_finishes"] == 0


async def _is(m: QueueManager, job_id: str, state: JobState) -> bool:
    got = await m.get_queue("q").get_job(job_id)
    return got is not None and got.state == state
