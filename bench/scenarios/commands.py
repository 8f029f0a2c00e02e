"""Redis commands and round trips per job, for enqueue (one by one) and for processing.

Commands come from ``INFO commandstats`` (it counts the commands scripts run too, so a
Lua call costs its EVALSHA plus what it does); round trips are counted at the client,
one per packed write of a redis-py connection (a whole pipeline is one).
"""

from __future__ import annotations

from bench.harness import Bench, payloads, wait_done
from bench.peers.base import WorkerSpec
from bench.probe import Probe, count_round_trips

SCENARIO = "commands"


async def _calls(bench: Bench) -> int:
    stats = await bench.command_calls()
    # The harness's own reads are not the system's.
    return sum(v for k, v in stats.items() if not k.startswith(("info", "config", "flushall")))


async def run(bench: Bench) -> None:
    n = bench.profile.command_jobs
    counter = count_round_trips()

    async def body(system: str) -> None:
        s = bench.make(system)
        await s.open()
        try:
            await s.enqueue({"warm": 1})  # connect and load scripts outside the count
            await bench.flush()
            await bench.reset_stats()
            trips = counter[0]
            for data in payloads(n):
                await s.enqueue(data)
            # The harness's admin connection adds one round trip (reading the stats).
            enqueue_trips = counter[0] - trips
            enqueue_calls = await _calls(bench)
        finally:
            await s.close()
        bench.record(
            SCENARIO,
            "enqueue_cmds",
            "Redis commands per enqueue",
            "cmds",
            system,
            enqueue_calls / n,
            higher_is_better=False,
        )
        bench.record(
            SCENARIO,
            "enqueue_rtt",
            "round trips per enqueue",
            "trips",
            system,
            enqueue_trips / n,
            higher_is_better=False,
        )

        await bench.reset_stats()
        probe = Probe(n)
        with bench.workers(system, WorkerSpec(concurrency=10), probe, round_trips=True) as alive:
            finished = await wait_done(probe, 120, alive)
            calls = await _calls(bench)
        ok = finished and probe.round_trips.value > 0
        bench.record(
            SCENARIO,
            "process_cmds",
            "Redis commands per processed job (c=10)",
            "cmds",
            system,
            calls / n if finished else None,
            higher_is_better=False,
        )
        bench.record(
            SCENARIO,
            "process_rtt",
            "round trips per processed job (c=10)",
            "trips",
            system,
            probe.round_trips.value / n if ok else None,
            higher_is_better=False,
        )

    await bench.rounds(body, bench.profile.count_rounds)
