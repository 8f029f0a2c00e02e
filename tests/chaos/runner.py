"""One engine instance of the chaos suite, as an OS process that may be SIGKILLed or
SIGSTOPped: workers and a scheduler for each queue, through the public embedding API
(``QueueManager.process`` and ``start_scheduler``), with the short lease timings the
scenarios need (the service's TOML does not expose worker lease timings).

Every processed job is recorded in a ledger on a separate Redis that no fault touches:
``<prefix>:starts:<queue>`` counts handler starts per job id (a start without a run: the
process died mid-job), ``<prefix>:runs:<queue>`` counts completed runs per job id, and
``<prefix>:fires:<queue>:<job id>`` holds the creation timestamp of each distinct job a
tick id was run as (a tick fired twice shows up as two timestamps; a job merely re-run
shows one).

Usage: ``python -m tests.chaos.runner '<json config>'`` (see :func:`main`); SIGTERM
closes gracefully.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import sys
from typing import Any


async def _exit_when_orphaned(parent: int) -> None:
    """A test process killed by a timeout cannot SIGTERM its instances: they notice the
    re-parenting and exit instead of running forever."""
    while True:
        await asyncio.sleep(0.5)
        if os.getppid() != parent:
            os._exit(3)


async def main(cfg: dict[str, Any]) -> None:
    import redis.asyncio as aioredis

    from engine import QueueManager
    from engine.connection import RedisSettings
    from engine.lock import LeaseConfig
    from engine.scheduler import define_schedule, upsert_schedule

    settings = RedisSettings(
        url=cfg["url"],
        socket_timeout_s=cfg.get("socket_timeout_s", 0.5),
        connect_timeout_s=cfg.get("connect_timeout_s", 0.5),
        retries=1,
        health_check_interval_s=1.0,
        wait_replicas=cfg.get("wait_replicas", 0),
        wait_timeout_ms=cfg.get("wait_timeout_ms", 400),
    )
    manager = QueueManager(prefix=cfg["prefix"], settings=settings, max_events=200_000)
    ledger = aioredis.Redis.from_url(cfg["ledger_url"], decode_responses=True)
    job_ms = cfg.get("job_ms", 40)
    ns = cfg["prefix"]  # ledger keys are per run
    lease = LeaseConfig(**cfg["lease"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def handler_for(queue: str) -> Any:
        async def handler(job: Any) -> None:
            await ledger.hincrby(f"{ns}:starts:{queue}", job.id, 1)
            await asyncio.sleep(random.uniform(0, job_ms) / 1000)
            async with ledger.pipeline(transaction=False) as pipe:
                pipe.hincrby(f"{ns}:runs:{queue}", job.id, 1)
                if ":" in job.id:  # a tick: <schedule>:<tick ms>
                    pipe.sadd(f"{ns}:fires:{queue}:{job.id}", job.timestamp)
                await pipe.execute()

        return handler

    for queue in cfg["queues"]:
        if cfg.get("every_ms"):
            definition = define_schedule(
                "tick", queue, every_ms=cfg["every_ms"], misfire="all", misfire_grace_ms=600_000
            )
            while not stop.is_set():  # Redis may be down or failing over right now
                try:
                    await upsert_schedule(manager.store, definition)
                    break
                except Exception:
                    await asyncio.sleep(0.2)
            manager.start_scheduler(queue, lease, instance_id=cfg["instance"])
        if cfg.get("workers", True):
            await manager.process(
                queue,
                handler_for(queue),
                concurrency=cfg.get("concurrency", 8),
                lease_ms=cfg.get("job_lease_ms", 1000),
                stalled_interval_ms=cfg.get("stalled_interval_ms", 300),
                block_timeout_s=1.0,
                reconnect_max_s=1.0,
            )
    print("ready", flush=True)
    orphan_watch = asyncio.create_task(_exit_when_orphaned(os.getppid()))
    await stop.wait()
    orphan_watch.cancel()
    await manager.close_all()
    await ledger.aclose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main(json.loads(sys.argv[1])))
