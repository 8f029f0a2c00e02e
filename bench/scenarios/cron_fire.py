"""Cron fire and start lateness on the Redis clock, 1 and 3 instances (engine only).

Folds in ``bench/cron_lateness.py`` (the scheduler's own bench: each instance an OS
process with a scheduler and a worker, on a private redis-server of its own): lateness is
measured on the Redis clock, fire = ledger entry time - tick, start = job start - tick.
Not part of quick/full (``python -m bench cron-fire``); the side-by-side ``cron``
scenario measures start lateness for every system.
"""

from __future__ import annotations

import statistics

from bench.harness import Bench

SCENARIO = "cron-fire"
INSTANCES = (1, 3)


def _p99(values: list[int]) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))])


async def run(bench: Bench) -> None:
    if "engine" not in bench.systems:
        return
    try:
        from bench import cron_lateness
    except ImportError:  # the scheduler's bench has not landed in this tree
        return
    ticks = max(3, int(bench.profile.cron_window_s))
    for instances in INSTANCES:
        result = await cron_lateness.run(instances, ticks)
        for what in ("fire", "start"):
            values = result[what]
            if not values:
                continue
            for stat, value in (("p50", statistics.median(values)), ("p99", _p99(values))):
                bench.record(
                    SCENARIO,
                    f"{what}_{stat}_{instances}",
                    f"cron {what} lateness {stat}, {instances} instance(s)",
                    "ms",
                    "engine",
                    float(value),
                    higher_is_better=False,
                )
