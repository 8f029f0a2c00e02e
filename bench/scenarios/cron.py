"""Cron lateness: handler start minus scheduled tick, for a 1-second schedule run by 1 and
3 instances (processes), side by side.

Each instance is what the system needs to fire and run a schedule: ours a scheduler plus
a worker, BullMQ a Worker (job schedulers live in workers), arq a Worker with a cron job,
SAQ a Worker with a CronJob; RQ is n/a (its cron runs as a separate scheduler command).
Ticks come from each system's job id or scheduled field, so lateness is the same
quantity everywhere; ticks run more than once count as duplicates (exactly-once).
The scheduler's own bench (fire lateness on the Redis clock) is
``python -m bench cron-fire`` / ``python -m bench.cron_lateness``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from bench.harness import Bench
from bench.peers.base import WorkerSpec
from bench.probe import Probe

SCENARIO = "cron"
INSTANCES = (1, 3)
WARMUP_S = 2.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(bench: Bench) -> None:
    ticks = max(3, int(bench.profile.cron_window_s))
    for instances in INSTANCES:

        async def body(system: str, instances: int = instances) -> None:
            if system == "rq":
                for stat in ("p50", "p99", "missed", "duplicates"):
                    _record(bench, system, instances, stat, None)
                return
            slots = (ticks + int(WARMUP_S) + 5) * 3
            probe = Probe(10**9, latency_slots=slots)
            spec = WorkerSpec(extra={"cron": True})
            with bench.workers(system, spec, probe, instances):
                start = time.time()
                await asyncio.sleep(WARMUP_S + ticks + 1.0)
            got = min(probe.count.value, slots)
            marks = [probe.marks[i] for i in range(got)]
            lates = [
                probe.latencies[i] * 1000
                for i in range(got)
                if start + WARMUP_S <= marks[i] < start + WARMUP_S + ticks
            ]
            # Ticks are whole seconds for every system here, so the window holds `ticks`.
            in_window = [m for m in marks if start + WARMUP_S <= m < start + WARMUP_S + ticks]
            dupes = sum(c - 1 for c in Counter(in_window).values())
            for stat, q in (("p50", 0.5), ("p99", 0.99)):
                _record(bench, system, instances, stat, _percentile(lates, q) if lates else None)
            _record(bench, system, instances, "missed", float(ticks - len(set(in_window))))
            _record(bench, system, instances, "duplicates", float(dupes))

        await bench.rounds(body, bench.profile.count_rounds)


def _record(bench: Bench, system: str, instances: int, stat: str, value: float | None) -> None:
    counted = stat in ("missed", "duplicates")
    label = f"cron ticks {stat}" if counted else f"cron start lateness {stat}"
    bench.record(
        SCENARIO,
        f"start_{stat}_{instances}",
        f"{label}, {instances} instance(s)",
        "ticks" if counted else "ms",
        system,
        value,
        higher_is_better=False,
    )
