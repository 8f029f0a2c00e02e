"""Where a processed job's time goes in this engine: worker CPU vs Redis CPU (engine only).

Folds in ``bench/worker_throughput.py`` (an in-process worker, so its CPU time is the
worker's own): for each concurrency it adds the Redis side, the ``usec`` that ``INFO
commandstats`` charges per job. Not part of quick/full: ``python -m bench profile``.
"""

from __future__ import annotations

from bench import worker_throughput
from bench.harness import Bench

SCENARIO = "profile"
CONCURRENCY = (1, 10, 50, 200)


async def _redis_usec(bench: Bench) -> int:
    stats = await bench.redis.info("commandstats")
    return sum(int(v["usec"]) for k, v in stats.items() if "config" not in k)


async def run(bench: Bench) -> None:
    if "engine" not in bench.systems:
        return
    jobs = max(2000, int(20_000 * bench.profile.target_s))
    for _ in range(bench.profile.rounds):
        for c in CONCURRENCY:
            await bench.flush()
            url = f"redis://127.0.0.1:{bench.server.port}/0"
            await bench.reset_stats()
            got = await worker_throughput.throughput(url, c, jobs)
            # The untimed bulk fill is in the count too; add_job costs ~10 us per job.
            redis_us = await _redis_usec(bench) / jobs
            for key, label, unit, value in (
                ("jobs_s", "jobs/s (in-process worker)", "jobs/s", got["jobs_s"]),
                ("cpu_us", "worker CPU per job", "us", got["cpu_us"]),
                ("redis_us", "Redis CPU per job (incl. the add)", "us", redis_us),
                ("round_trips", "worker round trips per job", "trips", got["round_trips"]),
            ):
                bench.record(
                    SCENARIO,
                    f"{key}_c{c}",
                    f"c={c}: {label}",
                    unit,
                    "engine",
                    value,
                    higher_is_better=key == "jobs_s",
                )
