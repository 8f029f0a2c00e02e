"""RQ: ``Queue.enqueue`` / ``enqueue_many`` to produce, ``SimpleWorker.work()`` to process.

RQ is synchronous and runs one job at a time per worker process; its default ``Worker``
forks a child per job, ``SimpleWorker`` runs jobs in the worker process (the fast one).
"""

from __future__ import annotations

from typing import Any

from bench.peers.base import NotSupported, System, WorkerSpec
from bench.probe import Probe

_PROBE: list[Probe] = []


def noop(data: Any) -> None:
    _PROBE[0].hit(data)


class RQ(System):
    name = "rq"
    package = "rq"
    settings = "SimpleWorker (no fork per job), one job at a time per process"
    expected_rate = 600.0
    max_concurrency = 1

    async def open(self) -> None:
        from redis import Redis
        from rq import Queue

        self.conn = Redis.from_url(self.url)
        self.queue = Queue(self.queue_name, connection=self.conn)

    async def close(self) -> None:
        self.conn.close()

    async def enqueue(self, data: dict[str, Any], *, keep_completed: bool = False) -> None:
        self.queue.enqueue(noop, data)

    async def enqueue_concurrent(self, datas: list[dict[str, Any]], width: int = 50) -> None:
        raise NotSupported("rq's client is synchronous")

    async def enqueue_bulk(
        self, datas: list[dict[str, Any]], *, keep_completed: bool = False
    ) -> None:
        from rq import Queue

        with self.conn.pipeline() as pipe:
            self.queue.enqueue_many([Queue.prepare_data(noop, (d,)) for d in datas], pipeline=pipe)
            pipe.execute()

    async def serve(self, spec: WorkerSpec, probe: Probe) -> None:
        raise NotImplementedError("rq workers are synchronous; see serve_blocking")

    def serve_blocking(self, spec: WorkerSpec, probe: Probe) -> None:
        import logging

        from redis import Redis
        from rq import Queue, SimpleWorker

        _PROBE.append(probe)
        conn = Redis.from_url(self.url)
        worker = SimpleWorker([Queue(self.queue_name, connection=conn)], connection=conn)
        worker.work(with_scheduler=False, logging_level=logging.WARNING)
