"""One engine instance as an OS process, for the multi-process scheduler tests and bench.

Runs a scheduler (and optionally a worker) for one every-N-ms schedule until SIGTERM.
``--clock-offset-s`` shifts this process's wall clock (``time.time``/``time_ns``), as
faketime would: the engine must not care, since it decides on Redis time.
Each processed job increments ``<prefix>:runs`` [job id] (a ledger outside the queue), on
``--ledger-url`` when given (a Redis of its own, so it survives a flush of the engine's);
there ``<prefix>:created`` [job id] keeps the job's creation time, and a second job for the
same tick (another creation time: a duplicate fire) is pushed to ``<prefix>:dups``.
``--declare`` keeps the schedule registered (as init_scheduler does); ``--http`` serves the
API (health) on a free port, printed after "ready".
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time


def _skew_wall_clock(offset_s: float) -> None:
    real_time, real_time_ns = time.time, time.time_ns
    time.time = lambda: real_time() + offset_s  # type: ignore[assignment]
    time.time_ns = lambda: real_time_ns() + int(offset_s * 1e9)  # type: ignore[assignment]


async def main(args: argparse.Namespace) -> None:
    import redis.asyncio as aioredis

    from engine import QueueManager
    from engine.lock import LeaseConfig
    from engine.scheduler import define_schedule, upsert_schedule

    manager = QueueManager(args.url, prefix=args.prefix)
    definition = define_schedule(
        args.name,
        args.queue,
        every_ms=args.every_ms,
        misfire=args.misfire,
        misfire_grace_ms=args.grace_ms,
        data={"instance": args.instance},
    )
    result = await upsert_schedule(manager.store, definition)
    lease = LeaseConfig(args.ttl_ms, args.renew_ms, args.margin_ms)
    scheduler = manager.start_scheduler(args.queue, lease, instance_id=args.instance)
    if args.declare:
        scheduler.declare(definition, result.stored_at_ms)
    runs_key = f"{args.prefix}:runs"
    ledger = aioredis.Redis.from_url(args.ledger_url) if args.ledger_url else manager.client
    if args.worker:

        async def handler(job):  # type: ignore[no-untyped-def]
            await ledger.hincrby(runs_key, job.id, 1)
            if args.ledger_url:
                created = f"{args.prefix}:created"
                first = await ledger.hsetnx(created, job.id, job.timestamp)
                if not first and int(await ledger.hget(created, job.id)) != job.timestamp:
                    await ledger.rpush(f"{args.prefix}:dups", job.id)

        await manager.process(
            args.queue, handler, lease_ms=2000, stalled_interval_ms=500, block_timeout_s=1.0
        )
    runner = None
    port = 0
    if args.http:
        from aiohttp import web

        from engine.api import ApiSettings, AuthConfig, create_app

        app = create_app(manager, AuthConfig.hs256("s" * 40), settings=ApiSettings())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready" + (f" {port}" if port else ""), flush=True)
    await stop.wait()
    if runner is not None:
        await runner.cleanup()
    await manager.close_all()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--queue", default="ticks")
    parser.add_argument("--name", default="tick")
    parser.add_argument("--every-ms", type=int, default=1000)
    parser.add_argument("--misfire", default="all")
    parser.add_argument("--grace-ms", type=int, default=60_000)
    parser.add_argument("--ttl-ms", type=int, default=2000)
    parser.add_argument("--renew-ms", type=int, default=600)
    parser.add_argument("--margin-ms", type=int, default=400)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--clock-offset-s", type=float, default=0.0)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--declare", action="store_true")
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--ledger-url", default="")
    parsed = parser.parse_args()
    if parsed.clock_offset_s:
        _skew_wall_clock(parsed.clock_offset_s)
    sys.exit(asyncio.run(main(parsed)))
