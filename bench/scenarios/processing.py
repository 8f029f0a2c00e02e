"""Processing throughput of no-op jobs: one worker process at concurrency 1/10/50/200,
then 2 and 4 worker processes.

The queue is filled first (untimed); worker processes import and set up, then start
together; the rate is jobs between the first and the last handler call over that time,
so process start-up is not counted for any system.
"""

from __future__ import annotations

import time

from bench.harness import Bench, payloads, wait_done
from bench.peers import SYSTEMS
from bench.peers.base import WorkerSpec
from bench.probe import Probe

SCENARIO = "processing"
CONCURRENCY = (1, 10, 50, 200)
PROCESSES = (2, 4)
PER_PROCESS_CONCURRENCY = 50


async def measure(bench: Bench, system: str, spec: WorkerSpec, processes: int, key: str) -> float:
    n = bench.job_count(system, key)
    s = bench.make(system)
    await s.open()
    try:
        await s.fill(payloads(n))
    finally:
        await s.close()
    probe = Probe(n)
    timeout_s = 30 + 10 * n / SYSTEMS[system].expected_rate
    with bench.workers(system, spec, probe, processes) as alive:
        finished = await wait_done(probe, timeout_s, alive)
        if not finished:
            # Report what it managed; a stuck system should not stall the whole run.
            done, elapsed = probe.count.value, time.time() - probe.first.value
            rate = done / elapsed if done and elapsed > 0 else 0.0
        else:
            rate = (n - 1) / max(probe.last.value - probe.first.value, 1e-9)
    bench.rates[(system, key)] = rate
    return rate


async def run(bench: Bench) -> None:
    settings = [(f"c{c}", f"1 process, concurrency {c}", c, 1) for c in CONCURRENCY]
    settings += [
        (f"p{p}", f"{p} processes x concurrency {PER_PROCESS_CONCURRENCY}", 50, p)
        for p in PROCESSES
    ]
    for key, label, concurrency, processes in settings:

        async def body(
            system: str,
            key: str = key,
            label: str = label,
            c: int = concurrency,
            p: int = processes,
        ) -> None:
            cap = SYSTEMS[system].max_concurrency
            if p == 1 and c > cap:
                bench.record(SCENARIO, key, label, "jobs/s", system, None)
                return
            spec = WorkerSpec(concurrency=min(c, cap))
            rate = await measure(bench, system, spec, p, key)
            bench.record(SCENARIO, key, label, "jobs/s", system, rate)

        await bench.rounds(body)
