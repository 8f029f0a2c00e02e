"""Redis bytes per waiting job and per kept completed job.

``used_memory`` before and after, minus every stream on the server: capped event logs
are a fixed overhead (BullMQ's and ours hold at most ~10k entries), not a cost per job.
Waiting jobs carry default options; for the completed measurement the queue is filled
again with jobs each system keeps after completion (its default for the peers; ours is
told to keep all, which stores that option in each job).
"""

from __future__ import annotations

from bench.harness import Bench, payloads, wait_done
from bench.peers.base import WorkerSpec
from bench.probe import Probe

SCENARIO = "memory"


async def _job_bytes(bench: Bench) -> int:
    return await bench.used_memory() - await bench.stream_bytes()


async def run(bench: Bench) -> None:
    n = bench.profile.memory_jobs

    async def body(system: str) -> None:
        s = bench.make(system)
        await s.open()
        try:
            before = await _job_bytes(bench)
            await s.fill(payloads(n))
            waiting = await _job_bytes(bench)
            await bench.flush()
            before_kept = await _job_bytes(bench)
            await s.fill(payloads(n), keep_completed=True)
        finally:
            await s.close()
        bench.record(
            SCENARIO,
            "waiting",
            "bytes per waiting job",
            "B",
            system,
            (waiting - before) / n,
            higher_is_better=False,
        )
        probe = Probe(n)
        with bench.workers(system, WorkerSpec(concurrency=50), probe) as alive:
            finished = await wait_done(probe, 120, alive)
            # Let the last acknowledgements land before reading memory.
            await _settled(bench)
        kept = (await _job_bytes(bench) - before_kept) / n if finished else None
        bench.record(
            SCENARIO,
            "completed",
            "bytes per kept completed job",
            "B",
            system,
            kept,
            higher_is_better=False,
        )

    await bench.rounds(body, bench.profile.count_rounds)


async def _settled(bench: Bench) -> None:
    import asyncio

    last = -1
    for _ in range(50):
        now = await bench.used_memory()
        if now == last:
            return
        last = now
        await asyncio.sleep(0.1)
