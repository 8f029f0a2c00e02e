"""This engine: ``Queue.add`` / ``add_bulk`` to produce, ``manager.process`` to process."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.peers.base import System, WorkerSpec
from bench.probe import Probe
from engine import QueueManager

_KEEP_ALL = {"remove_on_complete": False}


class Ours(System):
    name = "engine"
    package = "engine"
    settings = "manager.process(queue, handler, concurrency=N), defaults otherwise"
    expected_rate = 8000.0

    async def open(self) -> None:
        self.manager = QueueManager(self.url, prefix="bench")
        self.queue = self.manager.create_queue(self.queue_name)

    async def close(self) -> None:
        await self.manager.close_all()

    async def enqueue(self, data: dict[str, Any], *, keep_completed: bool = False) -> None:
        await self.queue.add(data, _KEEP_ALL if keep_completed else None)

    async def enqueue_bulk(
        self, datas: list[dict[str, Any]], *, keep_completed: bool = False
    ) -> None:
        opts = _KEEP_ALL if keep_completed else None
        await self.queue.add_bulk([{"data": d, "opts": opts} for d in datas])

    async def serve(self, spec: WorkerSpec, probe: Probe) -> None:
        managers = [QueueManager(self.url, prefix="bench") for _ in range(spec.instances)]

        async def handler(job: Any) -> None:
            probe.hit(job.data)

        for manager in managers:
            await manager.process(self.queue_name, handler, concurrency=spec.concurrency)
        try:
            await asyncio.Event().wait()
        finally:
            for manager in managers:
                await manager.close_all()
