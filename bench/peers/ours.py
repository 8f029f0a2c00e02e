"""This engine: ``Queue.add`` / ``add_bulk`` to produce, ``manager.process`` to process."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.peers.base import System, WorkerSpec
from bench.probe import Probe
from engine import QueueManager
from engine.store import DEFAULT_MAX_EVENTS

_KEEP_ALL = {"remove_on_complete": False}


class Ours(System):
    name = "engine"
    package = "engine"
    settings = "manager.process(queue, handler, concurrency=N), defaults otherwise"
    expected_rate = 12000.0

    def __init__(
        self,
        url: str,
        *,
        max_events: int = DEFAULT_MAX_EVENTS,
        job_opts: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(url)
        self.max_events = max_events
        self.job_opts = job_opts

    async def open(self) -> None:
        self.manager = QueueManager(self.url, prefix="bench", max_events=self.max_events)
        self.queue = self.manager.create_queue(self.queue_name)

    async def close(self) -> None:
        await self.manager.close_all()

    def _opts(self, keep_completed: bool) -> dict[str, Any] | None:
        return _KEEP_ALL if keep_completed else self.job_opts

    async def enqueue(self, data: dict[str, Any], *, keep_completed: bool = False) -> None:
        await self.queue.add(data, self._opts(keep_completed))

    async def enqueue_bulk(
        self, datas: list[dict[str, Any]], *, keep_completed: bool = False
    ) -> None:
        opts = self._opts(keep_completed)
        await self.queue.add_bulk([{"data": d, "opts": opts} for d in datas])

    async def serve_cron(self, spec: WorkerSpec, probe: Probe) -> None:
        from engine.scheduler import define_schedule, upsert_schedule

        manager = QueueManager(self.url, prefix="bench")
        await upsert_schedule(manager.store, define_schedule("tick", "cron", every_ms=1000))

        async def handler(job: Any) -> None:
            # Fired jobs are named <schedule>:<tick ms> (the exactly-once key).
            probe.hit({"t": int(job.id.rsplit(":", 1)[1]) / 1000})

        manager.start_scheduler("cron")
        await manager.process("cron", handler, concurrency=10)
        try:
            await asyncio.Event().wait()
        finally:
            await manager.close_all()

    async def serve(self, spec: WorkerSpec, probe: Probe) -> None:
        max_events = spec.extra.get("max_events", DEFAULT_MAX_EVENTS)
        worker_options = spec.extra.get("worker", {})
        managers = [
            QueueManager(self.url, prefix="bench", max_events=max_events)
            for _ in range(spec.instances)
        ]

        async def handler(job: Any) -> None:
            probe.hit(job.data)

        for manager in managers:
            await manager.process(
                self.queue_name, handler, concurrency=spec.concurrency, **worker_options
            )
        try:
            await asyncio.Event().wait()
        finally:
            for manager in managers:
                await manager.close_all()
