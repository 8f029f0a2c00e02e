"""The engine's tuning knobs, one at a time, at concurrency 50 (engine only).

Not part of ``quick``/``full``: ``python -m bench tuning``. Variants alternate within
each round like systems do. Besides throughput it records Redis memory left per
processed job once the queue is drained (events stream and kept completed jobs).
"""

from __future__ import annotations

from typing import Any

from bench.harness import Bench, payloads, wait_done
from bench.peers.base import WorkerSpec
from bench.peers.ours import Ours
from bench.probe import Probe

SCENARIO = "tuning"
CONCURRENCY = 50

# key, label, manager max_events, job options, worker options
VARIANTS: list[tuple[str, str, int, dict[str, Any] | None, dict[str, Any]]] = [
    ("base", "defaults (fetch_batch 100, lease 30 s, 10k events, keep 1000)", 10_000, None, {}),
    ("fetch10", "fetch_batch 10", 10_000, None, {"fetch_batch": 10}),
    ("fetch1000", "fetch_batch 1000", 10_000, None, {"fetch_batch": 1000}),
    ("lease5s", "lease_ms 5000 (renew every 1.7 s)", 10_000, None, {"lease_ms": 5000}),
    ("events1k", "max_events 1000", 1000, None, {}),
    ("events100k", "max_events 100000", 100_000, None, {}),
    ("keep0", "remove_on_complete true (drop at once)", 10_000, {"remove_on_complete": True}, {}),
    ("keepall", "remove_on_complete false (keep all)", 10_000, {"remove_on_complete": False}, {}),
]


async def run(bench: Bench) -> None:
    if "engine" not in bench.systems:
        return
    by_key = {v[0]: v for v in VARIANTS}
    n = max(2000, int(20_000 * bench.profile.target_s))
    for round_no in range(bench.profile.rounds):
        k = round_no % len(VARIANTS)
        for key, label, max_events, job_opts, worker in VARIANTS[k:] + VARIANTS[:k]:
            await bench.flush()
            before = await bench.used_memory()
            producer = Ours(bench.url("engine"), max_events=max_events, job_opts=job_opts)
            await producer.open()
            try:
                await producer.fill(payloads(n))
            finally:
                await producer.close()
            probe = Probe(n)
            spec = WorkerSpec(
                concurrency=CONCURRENCY, extra={"max_events": max_events, "worker": worker}
            )
            with bench.workers("engine", spec, probe) as alive:
                finished = await wait_done(probe, 120, alive)
            rate = (n - 1) / (probe.last.value - probe.first.value) if finished else None
            bench.record(SCENARIO, key, by_key[key][1], "jobs/s", "engine", rate)
            left = (await bench.used_memory() - before) / n
            bench.record(
                SCENARIO,
                f"{key}_bytes",
                f"{label}: Redis bytes left per job",
                "B",
                "engine",
                left,
                higher_is_better=False,
            )
