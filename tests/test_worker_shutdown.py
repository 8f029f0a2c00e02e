"""Shutdown is bounded whatever handlers and Redis do; queues close in parallel and one
failure never stops the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from helpers import wait_for

from engine import Job, QueueManager
from engine.manager import CLOSER_BOUND_S
from engine.worker.core import CLOSE_BOUND_S
from tests.redis_servers import RedisServer

FAST = {"block_timeout_s": 0.5, "stalled_interval_ms": 200}
# A liveness bound for the tests, far above what close may take: not a speed threshold.
LIVENESS_S = 60.0


async def test_close_returns_although_a_handler_swallows_cancellation(
    manager: QueueManager,
) -> None:
    q = manager.create_queue("q")
    entered = asyncio.Event()
    stop = asyncio.Event()

    async def stubborn(job: Job) -> None:
        entered.set()
        while not stop.is_set():
            try:
                await stop.wait()
            except asyncio.CancelledError:
                continue  # ignores every cancellation

    worker = await manager.process("q", stubborn, **FAST)
    job = await q.add(1)
    await asyncio.wait_for(entered.wait(), 10)
    await asyncio.wait_for(worker.close(timeout_s=0.1), LIVENESS_S)
    # Handed back to waiting at once, not left to a lease.
    stats = await q.get_stats()
    assert (stats.waiting, stats.active) == (1, 0)
    assert (await q.get_job(job.id)) is not None
    stop.set()


async def test_close_all_closes_workers_in_parallel_and_never_stops_half_way(
    redis_factory: Callable[..., RedisServer], prefix: str
) -> None:
    server = redis_factory()
    m = QueueManager(server.url, prefix=prefix)
    started: list[str] = []
    ended: list[str] = []
    first_end_saw: list[int] = []

    async def handler(job: Job) -> None:
        return None

    workers = [await m.process(f"q{i}", handler, **FAST) for i in range(5)]
    for i, worker in enumerate(workers):
        real = worker.close

        async def close(timeout_s: float = 30.0, real=real, i=i) -> None:
            started.append(f"q{i}")
            await asyncio.sleep(0.05)
            if i == 2:
                raise RuntimeError("this one breaks")
            await real(timeout_s)
            if not ended:
                first_end_saw.append(len(started))
            ended.append(f"q{i}")

        worker.close = close  # type: ignore[method-assign]
    scheduler = m.start_scheduler("q0")
    server.freeze()  # Redis stops answering: every close step meets timeouts
    try:
        await asyncio.wait_for(m.close_all(timeout_s=0.2), LIVENESS_S)
    finally:
        server.thaw()
    # All five began before the first ended: side by side, not one after another.
    assert len(started) == 5 and first_end_saw == [5]
    assert sorted(ended) == ["q0", "q1", "q3", "q4"]
    assert m.schedulers == {} and scheduler._task is None


async def test_shutdown_with_redis_unreachable_is_bounded(
    redis_factory: Callable[..., RedisServer], prefix: str
) -> None:
    from engine.service import shutdown

    server = redis_factory()
    m = QueueManager(server.url, prefix=prefix)

    async def handler(job: Job) -> None:
        await asyncio.sleep(3600)

    q = m.create_queue("q0")
    for i in range(5):
        await m.process(f"q{i}", handler, **FAST)
        m.start_scheduler(f"q{i}")
    await q.add(1)
    await wait_for(lambda: _active(m), 10)
    server.freeze()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        await asyncio.wait_for(shutdown(m, None, 0.2), LIVENESS_S)
    finally:
        server.thaw()
    # The documented bound: the drain, one worker's fixed bound, one more close step.
    assert loop.time() - t0 < 0.2 + 1.0 + CLOSE_BOUND_S + CLOSER_BOUND_S


async def _active(m: QueueManager) -> bool:
    return (await m.get_stats("q0")).active == 1


async def test_a_claim_in_doubt_when_closing_is_handed_back_at_once(
    manager: QueueManager,
) -> None:
    """A claim Redis ran whose reply the worker never read (its pop cancelled by close,
    its connection dropped): close finds it by its request id and hands its jobs back,
    instead of leaving them to the claim deadline."""
    from engine.keys import new_request_id
    from tests.lua.worker_calls import calls

    q = manager.create_queue("q")

    async def handler(job: Job) -> None:
        return None

    worker = await manager.process("q", handler, stalled_interval_ms=600_000)
    await wait_for(lambda: asyncio.sleep(0, worker._exchange._blocker is not None))
    # Closing from here on: the driver claims nothing more (the add's marker wakes it, and
    # it would otherwise claim the job below before this test's claim) nor resends.
    worker._closing = True
    job = await q.add(1, {"delay": 3_600_000})
    await manager.client.zrem(q.keys.delayed, job.id)
    await manager.client.rpush(q.keys.wait, job.id)
    request_id = new_request_id()
    # Redis runs this worker's claim; the reply is lost.
    reply = await calls(q).claim(
        worker_id=worker.id,
        request_id=request_id,
        count=1,
        claim_ms=60_000,
        rate=(0, 0),
        promote_batch=10,
    )
    assert [j[0] for j in reply[4]] == [job.id]
    worker._exchange._doubts.append((request_id, 1))  # close's to settle
    await worker.close(timeout_s=0.1)
    stats = await q.get_stats()
    assert (stats.active, stats.waiting) == (0, 1)
    assert (await q.events(1))[0]["event"] == "released"
