"""The short chaos suite (runs in ``make test``): each scenario runs several engine
processes on a real local Redis topology, injects one family of faults, prints one line
of figures, and asserts the invariants only (never timings): 0 acknowledged jobs lost,
0 ticks created twice, every due tick run. ``make chaos`` runs the long version
(``test_chaos_long.py``)."""

from __future__ import annotations

import asyncio
import random
import signal

import pytest

from tests.chaos.harness import LEASE, Harness, assert_invariants

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

TTL_S = LEASE["ttl_ms"] / 1000


async def kill_loops(h: Harness, rounds: int, seed: int, gap_s: float = 0.8) -> None:
    """Rotate through: a random worker SIGKILL, the leader SIGKILL, the leader SIGSTOPped
    for 2 x TTL (then SIGCONT, so it wakes as a zombie leader that must be fenced)."""
    rng = random.Random(seed)
    for i in range(rounds):
        await asyncio.sleep(gap_s)
        kind = i % 3
        if kind == 0:
            await h.kill(rng.choice([x for x in h.instances if h.alive(x) and not x.stopped]))
            continue
        leader = await h.leader()
        h.mark_disruption()
        if kind == 1:
            await h.kill(leader)
        else:
            h.signal(leader, signal.SIGSTOP)
            await asyncio.sleep(2 * TTL_S)
            h.signal(leader, signal.SIGCONT)


async def run_scenario(h: Harness, jobs: int, faults, drain_s: float = 30.0):
    await h.start()
    try:
        await h.leader()
        producer = asyncio.create_task(h.produce(jobs))
        await faults(h)
        await producer
        await h.drain(drain_s)
        figures = await h.compute()
    finally:
        await h.close()
    figures.report()
    return figures


async def test_worker_and_leader_kill_loops_on_one_node(redis_factory, ledger, prefix):
    server = redis_factory()
    h = Harness("kill_loops/single", server.url, ledger.url, prefix, instances=3)
    f = await run_scenario(h, 400, lambda h: kill_loops(h, rounds=6, seed=1))
    assert_invariants(f)
