"""Delayed-job start lateness: how long after its due time a delayed job's handler starts,
on an idle worker, with the private Redis at its default ``hz`` (10).

    python -m bench.delayed_lateness [--jobs 200] [--delay-ms 50]

Jobs are added one at a time with ``delay``; lateness = handler start (wall clock, the
same host clock Redis stamps the job with) - (job timestamp + delay). Uses only the public
API, so it measures any version of the engine on the path.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from engine import Job, QueueManager
from engine.redis_server import RedisServer


async def lateness(url: str, jobs: int, delay_ms: int) -> list[float]:
    manager = QueueManager(url, prefix="benchdelay")
    queue = manager.create_queue("delayed")
    late: list[float] = []
    ran = asyncio.Event()

    async def handler(job: Job) -> None:
        late.append(time.time() * 1000 - (job.timestamp + job.opts.delay))
        ran.set()

    await manager.process("delayed", handler, concurrency=1)
    await asyncio.sleep(0.5)
    for _ in range(jobs):
        ran.clear()
        await queue.add(None, {"delay": delay_ms})
        await ran.wait()
        await asyncio.sleep(0.01)  # idle (blocked) again before the next one
    await manager.close_all()
    return sorted(late)


async def main(jobs: int, delay_ms: int) -> None:
    server = RedisServer().start()
    try:
        late = await lateness(server.url, jobs, delay_ms)
    finally:
        server.cleanup()
    p99 = late[max(int(len(late) * 0.99) - 1, 0)]
    print(
        f"delayed-job start lateness ({jobs} jobs, delay {delay_ms} ms, Redis hz 10):"
        f" p50 {statistics.median(late):.1f} ms, p99 {p99:.1f} ms, max {late[-1]:.1f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--delay-ms", type=int, default=50)
    ns = parser.parse_args()
    asyncio.run(main(ns.jobs, ns.delay_ms))
