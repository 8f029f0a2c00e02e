"""arq: ``ArqRedis.enqueue_job`` to produce, ``arq.worker.Worker`` to process."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlparse

from bench.peers.base import System, WorkerSpec
from bench.probe import Probe

# arq polls: a worker sleeps ``poll_delay`` between reads of the queue even when busy, so
# the default 0.5 s caps it at max_jobs per half second. Tuned down for throughput (and
# latency), which multiplies its idle command rate.
POLL_DELAY_S = 0.001

_PROBE: list[Probe] = []


async def noop(ctx: Any, data: Any) -> None:
    _PROBE[0].hit(data)


def _settings(url: str) -> Any:
    from arq.connections import RedisSettings

    parsed = urlparse(url)
    return RedisSettings(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 6379,
        database=int(parsed.path.strip("/") or 0),
    )


async def tick(ctx: Any) -> None:
    # Unique cron jobs are named cron:<function>:<due ms>.
    _PROBE[0].hit({"t": int(ctx["job_id"].rsplit(":", 1)[1]) / 1000})


class Arq(System):
    name = "arq"
    package = "arq"
    settings = f"Worker(max_jobs=N, poll_delay={POLL_DELAY_S}), defaults otherwise"
    expected_rate = 1300.0

    async def open(self) -> None:
        from arq import create_pool

        self.pool = await create_pool(_settings(self.url))

    async def close(self) -> None:
        await self.pool.aclose()

    async def enqueue(self, data: dict[str, Any], *, keep_completed: bool = False) -> None:
        await self.pool.enqueue_job("noop", data)

    async def serve_cron(self, spec: WorkerSpec, probe: Probe) -> None:
        from arq.cron import cron
        from arq.worker import Worker

        _PROBE.append(probe)
        worker = Worker(
            functions=[],
            cron_jobs=[cron(tick, second=set(range(60)))],  # type: ignore[arg-type]
            redis_settings=_settings(self.url),
            max_jobs=10,
            poll_delay=POLL_DELAY_S,
            handle_signals=False,
        )
        await worker.async_run()

    async def serve(self, spec: WorkerSpec, probe: Probe) -> None:
        from arq.worker import Worker

        _PROBE.append(probe)
        workers = [
            Worker(
                functions=[noop],
                redis_settings=_settings(self.url),
                max_jobs=spec.concurrency,
                poll_delay=POLL_DELAY_S,
                handle_signals=False,
            )
            for _ in range(spec.instances)
        ]
        await asyncio.gather(*(w.async_run() for w in workers))
