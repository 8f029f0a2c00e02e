"""Enqueue throughput: one by one, concurrent, and bulk, on a private redis-server.

Run: ``.venv/bin/python -m bench.enqueue [--jobs N]``. Prints jobs/s per mode and the Redis
memory used per waiting job.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from engine import QueueManager
from engine.redis_server import RedisServer


async def _one_by_one(manager: QueueManager, n: int) -> float:
    q = manager.create_queue(f"seq-{uuid.uuid4().hex[:6]}")
    start = time.perf_counter()
    for i in range(n):
        await q.add({"i": i})
    return n / (time.perf_counter() - start)


async def _concurrent(manager: QueueManager, n: int, width: int = 50) -> float:
    q = manager.create_queue(f"conc-{uuid.uuid4().hex[:6]}")

    async def producer(count: int) -> None:
        for i in range(count):
            await q.add({"i": i})

    start = time.perf_counter()
    await asyncio.gather(*(producer(n // width) for _ in range(width)))
    return (n // width) * width / (time.perf_counter() - start)


async def _bulk(manager: QueueManager, n: int, batch: int = 1000) -> float:
    q = manager.create_queue(f"bulk-{uuid.uuid4().hex[:6]}")
    start = time.perf_counter()
    for offset in range(0, n, batch):
        await q.add_bulk([{"data": {"i": i}} for i in range(offset, min(n, offset + batch))])
    return n / (time.perf_counter() - start)


async def _bytes_per_waiting_job(manager: QueueManager, n: int) -> float:
    client = manager.client
    before = int((await client.info("memory"))["used_memory"])
    q = manager.create_queue(f"mem-{uuid.uuid4().hex[:6]}")
    for offset in range(0, n, 1000):
        await q.add_bulk([{"data": {"i": i}} for i in range(offset, min(n, offset + 1000))])
    after = int((await client.info("memory"))["used_memory"])
    # The capped events stream is shared overhead, not per job: leave it out.
    stream = int(await client.memory_usage(q.keys.events) or 0)
    return (after - before - stream) / n


async def run(jobs: int) -> dict[str, float]:
    server = RedisServer().start()
    manager = QueueManager(server.url, prefix="bench")
    try:
        return {
            "one_by_one_jobs_s": await _one_by_one(manager, jobs),
            "concurrent_50_jobs_s": await _concurrent(manager, jobs),
            "bulk_1000_jobs_s": await _bulk(manager, jobs * 4),
            "bytes_per_waiting_job": await _bytes_per_waiting_job(manager, 20_000),
        }
    finally:
        await manager.close_all()
        server.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    for name, value in asyncio.run(run(args.jobs)).items():
        print(f"{name:>24}: {value:,.0f}")


if __name__ == "__main__":
    main()
