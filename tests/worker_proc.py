"""A worker in its own process, for tests that kill or freeze it.

Usage: python worker_proc.py <redis url> <prefix> <queue> <lease_ms> <concurrency>
[<block_timeout_s>]

Each job sleeps ``data["sleep"]`` seconds, then reports progress and returns
``{"by": <pid>}`` (a cancelled one says ``HANDLER CANCELLED <id>``). Log lines go to
stderr; SIGTERM closes the worker gracefully.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from engine import Job, LeaseLost, QueueManager


async def handler(job: Job) -> dict[str, int]:
    try:
        await asyncio.sleep(float(job.data.get("sleep", 0)))
    except asyncio.CancelledError:
        print(f"HANDLER CANCELLED {job.id}", file=sys.stderr, flush=True)
        raise
    try:
        await job.update_progress(100)
    except LeaseLost:
        print(f"PROGRESS REFUSED {job.id}", file=sys.stderr, flush=True)
    return {"by": os.getpid()}


async def main(
    url: str, prefix: str, queue: str, lease_ms: int, concurrency: int, block_s: float
) -> None:
    manager = QueueManager(url, prefix=prefix)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await manager.process(
        queue,
        handler,
        concurrency=concurrency,
        lease_ms=lease_ms,
        renew_interval_ms=lease_ms // 4,
        stalled_interval_ms=200,
        block_timeout_s=block_s,
    )
    print("READY", file=sys.stderr, flush=True)
    await stop.wait()
    await manager.close_all()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    url, prefix, queue, lease, concurrency = sys.argv[1:6]
    block = float(sys.argv[6]) if len(sys.argv) > 6 else 1.0
    asyncio.run(main(url, prefix, queue, int(lease), int(concurrency), block))
