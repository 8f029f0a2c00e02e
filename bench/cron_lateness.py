"""Cron lateness: how late a 1-second schedule fires and starts, with 1 and 3 instances.

    python -m bench.cron_lateness [--ticks 30] [--instances 1 3]

Each instance is an OS process (``tests/scheduler_instance.py``: scheduler + worker) on a
private redis-server. Per tick, on the Redis clock:

* fire lateness  = ledger entry time (the fire script's TIME) - scheduled tick
* start lateness = job ``pon`` (processing started, worker) - scheduled tick
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from engine.redis_server import RedisServer

RUNNER = Path(__file__).resolve().parent.parent / "tests" / "scheduler_instance.py"


def pct(values: list[int], p: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))])


async def run(instances: int, ticks: int) -> dict[str, list[int]]:
    server = RedisServer().start()
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    procs = []
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        for n in range(instances):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(RUNNER), "--url", server.url, "--prefix", prefix,
                "--instance", f"i{n}", "--worker", "--ttl-ms", "3000", "--renew-ms", "1000",
                "--margin-ms", "500",
                stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
            assert proc.stdout is not None
            await asyncio.wait_for(proc.stdout.readline(), 20)
            procs.append(proc)
        ledger_key = f"{prefix}:{{ticks}}:schedule:tick:ledger"
        for _ in range(4 * (ticks + 30)):  # bounded: ticks + 30 s
            if await client.xlen(ledger_key) >= ticks + 2:
                break
            await asyncio.sleep(0.25)
        entries = (await client.xrange(ledger_key))[1 : ticks + 1]  # first tick: warm-up
        fire, start = [], []
        for entry_id, f in entries:
            tick = int(f["tick"])
            fire.append(int(entry_id.split("-")[0]) - tick)
            for _ in range(100):
                pon = await client.hget(f"{prefix}:{{ticks}}:job:{f['job']}", "pon")
                if pon:
                    start.append(int(pon) - tick)
                    break
                await asyncio.sleep(0.05)
        return {"fire": fire, "start": start}
    finally:
        for proc in procs:
            proc.terminate()
            await proc.wait()
        await client.aclose()
        server.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=30)
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 3])
    args = parser.parse_args()
    for n in args.instances:
        result = await run(n, args.ticks)
        for what, values in result.items():
            print(
                f"instances={n} ticks={len(values)} {what} lateness ms: "
                f"p50={statistics.median(values):.0f} p99={pct(values, 99):.0f} "
                f"max={max(values)}"
            )


if __name__ == "__main__":
    asyncio.run(main())
