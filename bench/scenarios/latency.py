"""Enqueue-to-start latency at a steady rate, with one idle worker (concurrency 10).

Each job carries the wall-clock time taken just before its enqueue call; the handler
(in the worker process, same machine clock) records start minus that time.
"""

from __future__ import annotations

import asyncio
import time

from bench.harness import Bench, wait_done
from bench.peers.base import WorkerSpec
from bench.probe import Probe

SCENARIO = "latency"
SETTLE_S = 0.5


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def run(bench: Bench) -> None:
    n, rate = bench.profile.latency_jobs, bench.profile.latency_rate

    async def body(system: str) -> None:
        probe = Probe(n, latency_slots=n)
        s = bench.make(system)
        await s.open()
        try:
            with bench.workers(system, WorkerSpec(concurrency=10), probe) as alive:
                await asyncio.sleep(SETTLE_S)  # let the worker reach its idle wait
                start = time.perf_counter()
                for i in range(n):
                    due = start + i / rate
                    pause = due - time.perf_counter()
                    if pause > 0:
                        await asyncio.sleep(pause)
                    await s.enqueue({"i": i, "t": time.time()})
                finished = await wait_done(probe, 30, alive)
        finally:
            await s.close()
        got = min(probe.count.value, n)
        ms = [probe.latencies[i] * 1000 for i in range(got)]
        if not finished or not ms:
            for key in ("p50", "p99", "max"):
                bench.record(
                    SCENARIO, key, f"latency {key}", "ms", system, None, higher_is_better=False
                )
            return
        for key, value in (
            ("p50", _percentile(ms, 0.50)),
            ("p99", _percentile(ms, 0.99)),
            ("max", max(ms)),
        ):
            bench.record(
                SCENARIO,
                key,
                f"enqueue-to-start {key}",
                "ms",
                system,
                value,
                higher_is_better=False,
            )

    await bench.rounds(body)
