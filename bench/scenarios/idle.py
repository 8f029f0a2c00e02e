"""Idle cost: Redis commands per second with 10 idle workers on an empty queue.

The window should span whole blocking timeouts (quick: 10 s = two of ours and BullMQ's
5 s): commandstats counts a blocking pop when it returns.

asyncio systems run 10 worker objects in one process (each with its own connections);
RQ, synchronous, runs 10 worker processes.
"""

from __future__ import annotations

import asyncio

from bench.harness import Bench
from bench.peers import SYSTEMS
from bench.peers.base import WorkerSpec
from bench.probe import Probe

SCENARIO = "idle"
WORKERS = 10
SETTLE_S = 2.0


async def _calls(bench: Bench) -> dict[str, int]:
    stats = await bench.command_calls()
    return {k: v for k, v in stats.items() if not k.startswith(("info", "config", "flushall"))}


async def run(bench: Bench) -> None:
    window = bench.profile.idle_window_s

    async def body(system: str) -> None:
        one_at_a_time = SYSTEMS[system].max_concurrency == 1
        spec = WorkerSpec(concurrency=10, instances=1 if one_at_a_time else WORKERS)
        processes = WORKERS if one_at_a_time else 1
        with bench.workers(system, spec, Probe(1), processes):
            await asyncio.sleep(SETTLE_S)
            await bench.reset_stats()
            await asyncio.sleep(window)
            calls = await _calls(bench)
        per_s = {k: round(v / window, 2) for k, v in sorted(calls.items())}
        bench.details.setdefault(f"idle/{system}", {}).update(per_s)
        bench.record(
            SCENARIO,
            "cmds_s",
            f"idle: commands/s, {WORKERS} workers",
            "cmds/s",
            system,
            sum(calls.values()) / window,
            higher_is_better=False,
        )

    await bench.rounds(body, bench.profile.count_rounds)
