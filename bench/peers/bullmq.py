"""BullMQ's Python package: ``bullmq.Queue`` to produce, ``bullmq.Worker`` to process."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.peers.base import System, WorkerSpec
from bench.probe import Probe

# BullMQ keeps every completed job unless told otherwise; we keep its defaults
# (drainDelay 5 s, lockDuration 30 s, stalledInterval 30 s).
_KEEP_ALL: dict[str, Any] = {}


class BullMQ(System):
    name = "bullmq"
    package = "bullmq"
    settings = "Worker(concurrency=N), defaults otherwise (drainDelay 5 s, lockDuration 30 s)"
    expected_rate = 1700.0

    async def open(self) -> None:
        from bullmq import Queue

        self.queue = Queue(self.queue_name, {"connection": self.url})

    async def close(self) -> None:
        await self.queue.close()

    async def enqueue(self, data: dict[str, Any], *, keep_completed: bool = False) -> None:
        await self.queue.add("noop", data, _KEEP_ALL)

    async def enqueue_bulk(
        self, datas: list[dict[str, Any]], *, keep_completed: bool = False
    ) -> None:
        await self.queue.addBulk([{"name": "noop", "data": d} for d in datas])

    async def serve_cron(self, spec: WorkerSpec, probe: Probe) -> None:
        from bullmq import Queue, Worker

        queue = Queue("cron", {"connection": self.url})
        await queue.upsertJobScheduler("tick", {"every": 1000}, "tick", {})

        async def process(job: Any, token: str) -> None:
            # Iteration jobs are named repeat:<scheduler>:<due ms>.
            probe.hit({"t": int(job.id.rsplit(":", 1)[1]) / 1000})

        worker = Worker("cron", process, {"connection": self.url, "concurrency": 10})
        try:
            await asyncio.Event().wait()
        finally:
            await worker.close()
            await queue.close()

    async def serve(self, spec: WorkerSpec, probe: Probe) -> None:
        from bullmq import Worker

        async def process(job: Any, token: str) -> None:
            probe.hit(job.data)

        workers = [
            Worker(
                self.queue_name, process, {"connection": self.url, "concurrency": spec.concurrency}
            )
            for _ in range(spec.instances)
        ]
        try:
            await asyncio.Event().wait()
        finally:
            for w in workers:
                await w.close()
