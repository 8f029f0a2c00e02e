"""No-op worker throughput and enqueue-to-start latency of this engine, on a private Redis.

    python -m bench.worker_throughput [--jobs 20000] [--latency-jobs 2000]

Prints one table: jobs/s at concurrency 1, 10 and 50 (one worker), the worker's Redis
round trips (pipelines) per job, Redis commands per job (counted by Redis, including
those inside scripts) and worker CPU per job; then the p50/p99 latency from just before
``add`` to the handler starting, for jobs added one at a time to an idle worker.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import engine.worker.exchange
from engine import Job, QueueManager
from engine.redis_server import RedisServer


class _Counter:
    """Counts the worker's pipelines (its Redis round trips for claims and finishes)."""

    def __init__(self) -> None:
        self.calls = 0
        self._real = engine.worker.exchange.execute

    async def __call__(self, pipe: Any, **kwargs: Any) -> list[Any]:
        self.calls += 1
        return await self._real(pipe, **kwargs)


async def _commands(manager: QueueManager) -> int:
    info = await manager.client.info("stats")
    return int(info["total_commands_processed"])


async def throughput(url: str, concurrency: int, jobs: int) -> dict[str, float]:
    manager = QueueManager(url, prefix=f"bench{concurrency}")
    queue = manager.create_queue("noop")
    for start in range(0, jobs, 1000):
        await queue.add_bulk([{"data": i} for i in range(start, min(start + 1000, jobs))])
    done = asyncio.Event()
    count = 0

    async def handler(job: Job) -> None:
        nonlocal count
        count += 1
        if count == jobs:
            done.set()

    counter = _Counter()
    engine.worker.exchange.execute = counter  # type: ignore[assignment]
    commands_before = await _commands(manager)
    cpu0, t0 = time.process_time(), time.perf_counter()
    await manager.process("noop", handler, concurrency=concurrency, fetch_batch=concurrency)
    await done.wait()
    # The last finishes are still in flight: wait for them so counts are complete.
    while await manager.client.zcard(queue.keys.active):  # noqa: ASYNC110 - polls Redis
        await asyncio.sleep(0.001)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    commands = await _commands(manager) - commands_before - 1
    engine.worker.exchange.execute = counter._real  # type: ignore[assignment]
    await manager.close_all()
    return {
        "jobs_s": jobs / elapsed,
        "round_trips": counter.calls / jobs,
        "commands": commands / jobs,
        "cpu_us": cpu / jobs * 1e6,
    }


async def latency(url: str, jobs: int) -> tuple[float, float]:
    manager = QueueManager(url, prefix="benchlat")
    queue = manager.create_queue("lat")
    started: dict[int, float] = {}
    enqueued: dict[int, float] = {}
    ran = asyncio.Event()

    async def handler(job: Job) -> None:
        started[job.data] = time.perf_counter()
        ran.set()

    await manager.process("lat", handler, concurrency=1)
    for i in range(jobs):
        ran.clear()
        enqueued[i] = time.perf_counter()
        await queue.add(i)
        await ran.wait()
        # Leave the worker idle (blocked on the marker) before the next add.
        await asyncio.sleep(0.001)
    await manager.close_all()
    lat = sorted((started[i] - enqueued[i]) * 1000 for i in range(jobs))
    return statistics.median(lat), lat[int(len(lat) * 0.99) - 1]


async def main(jobs: int, latency_jobs: int) -> None:
    server = RedisServer().start()
    try:
        rows = [(c, await throughput(server.url, c, jobs)) for c in (1, 10, 50)]
        p50, p99 = await latency(server.url, latency_jobs)
    finally:
        server.cleanup()
    print(f"engine worker, no-op jobs, {jobs} jobs per run, one worker, private redis-server")
    head = ("concurrency", "jobs/s", "round trips/job", "cmds/job", "CPU us/job")
    print(f"{head[0]:>11} {head[1]:>9} {head[2]:>16} {head[3]:>9} {head[4]:>11}")
    for c, r in rows:
        print(
            f"{c:>11} {r['jobs_s']:>9.0f} {r['round_trips']:>16.3f} {r['commands']:>9.2f}"
            f" {r['cpu_us']:>11.0f}"
        )
    print(
        f"enqueue-to-start latency ({latency_jobs} jobs, idle worker):"
        f" p50 {p50:.2f} ms, p99 {p99:.2f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--latency-jobs", type=int, default=2000)
    ns = parser.parse_args()
    asyncio.run(main(ns.jobs, ns.latency_jobs))
