"""Shared-memory probe: no-op handlers in worker processes report to the harness here.

A handler calls :meth:`Probe.hit` with the job's data; the probe counts jobs across all
worker processes, stamps the first and the ``target``-th job, and records enqueue-to-start
latency when the job carries its enqueue time ``t``. It costs one uncontended
shared-memory lock per job, the same for every system, and no Redis traffic.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

CTX = mp.get_context("spawn")

# Round trips sent by this process's redis-py connections (see count_round_trips).
_ROUND_TRIPS = [0]


class Probe:
    """Counters shared by the harness and its worker processes."""

    def __init__(self, target: int, latency_slots: int = 0) -> None:
        self.target = target
        self.count = CTX.Value("q", 0)
        self.first = CTX.Value("d", 0.0, lock=False)
        self.last = CTX.Value("d", 0.0, lock=False)
        self.round_trips = CTX.Value("q", 0, lock=False)
        self.done = CTX.Event()
        self.latencies = CTX.Array("d", max(latency_slots, 1), lock=False)
        # The ``t`` of each recorded job: cron runs check ticks for duplicates with it.
        self.marks = CTX.Array("d", max(latency_slots, 1), lock=False)
        self.track_latency = latency_slots > 0

    def hit(self, data: Any) -> None:
        now = time.time()
        with self.count.get_lock():
            self.count.value += 1
            n = self.count.value
        if n == 1:
            self.first.value = now
        if self.track_latency and n <= len(self.latencies) and isinstance(data, dict):
            t = float(data.get("t", now))
            self.latencies[n - 1] = now - t
            self.marks[n - 1] = t
        if n == self.target:
            self.last.value = now
            self.round_trips.value = _ROUND_TRIPS[0]
            self.done.set()

    def reset(self, target: int) -> None:
        self.target = target
        self.count.value = 0
        self.first.value = self.last.value = 0.0
        self.round_trips.value = 0
        self.done.clear()


def count_round_trips() -> list[int]:
    """Count every packed write of redis-py connections (sync and asyncio) in this process.

    One command, or one whole pipeline, is one write followed by its reads: one round
    trip. Every system here talks to Redis through redis-py, so the count is comparable.
    """
    import redis.asyncio.connection as aconn
    import redis.connection as sconn

    async_send = aconn.AbstractConnection.send_packed_command
    sync_send = sconn.AbstractConnection.send_packed_command

    async def counted_async(self: Any, command: Any, check_health: bool = True) -> None:
        _ROUND_TRIPS[0] += 1
        await async_send(self, command, check_health)

    def counted_sync(self: Any, command: Any, check_health: bool = True) -> None:
        _ROUND_TRIPS[0] += 1
        sync_send(self, command, check_health)

    aconn.AbstractConnection.send_packed_command = counted_async  # type: ignore[method-assign]
    sconn.AbstractConnection.send_packed_command = counted_sync  # type: ignore[method-assign]
    return _ROUND_TRIPS
