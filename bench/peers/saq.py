"""SAQ: ``Queue.enqueue`` to produce, ``saq.Worker`` (``worker.start()``) to process."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.peers.base import System, WorkerSpec
from bench.probe import Probe

_PROBE: list[Probe] = []


async def noop(ctx: Any, **kwargs: Any) -> None:
    _PROBE[0].hit(kwargs)


async def tick(ctx: Any) -> None:
    _PROBE[0].hit({"t": float(ctx["job"].scheduled)})


class SAQ(System):
    name = "saq"
    package = "saq"
    settings = "Worker(concurrency=N) on a client with max_connections=N+50, defaults otherwise"
    expected_rate = 1600.0

    async def open(self) -> None:
        from saq import Queue

        self.queue = Queue.from_url(self.url, name=self.queue_name)
        await self.queue.connect()

    async def close(self) -> None:
        await self.queue.disconnect()

    async def enqueue(self, data: dict[str, Any], *, keep_completed: bool = False) -> None:
        await self.queue.enqueue("noop", **data)

    async def serve_cron(self, spec: WorkerSpec, probe: Probe) -> None:
        from saq import CronJob, Queue, Worker

        _PROBE.append(probe)
        queue = Queue.from_url(self.url, name="cron")
        await queue.connect()
        # croniter reads a sixth field as seconds: every second.
        worker = Worker(queue, functions=[], cron_jobs=[CronJob(tick, cron="* * * * * *")])
        await worker.start()

    async def serve(self, spec: WorkerSpec, probe: Probe) -> None:
        import redis.asyncio as aioredis
        from saq import Worker
        from saq.queue.redis import RedisQueue as Queue

        _PROBE.append(probe)
        workers = []
        for _ in range(spec.instances):
            # redis-py's pool holds 100 connections by default; SAQ needs one per job in
            # flight, so at concurrency 200 it fails with "Too many connections".
            client = aioredis.from_url(self.url, max_connections=spec.concurrency + 50)
            queue = Queue(client, name=self.queue_name)
            await queue.connect()
            workers.append(Worker(queue, functions=[noop], concurrency=spec.concurrency))
        await asyncio.gather(*(w.start() for w in workers))
