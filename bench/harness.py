"""The run loop: one private redis-server, systems measured alternately, medians of rounds.

Each system gets its own Redis db on the private server; the server is flushed (only
that private server, never a developer's Redis) before every measurement so each run
starts from an empty keyspace and one run's leftovers cannot slow the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from bench.peers import SYSTEMS, System
from bench.peers.base import NotSupported, WorkerSpec
from bench.probe import CTX, Probe, count_round_trips
from engine.redis_server import RedisServer


@dataclass(frozen=True, slots=True)
class Profile:
    """How long and how often: ``quick`` for ``make bench``, ``full`` for the record."""

    name: str
    rounds: int
    target_s: float  # aimed duration of one throughput measurement
    enqueue_jobs: int
    memory_jobs: int
    latency_jobs: int
    latency_rate: float  # jobs/s during the latency run
    command_jobs: int
    idle_window_s: float
    cron_window_s: float
    # Rounds of the scenarios that count bytes or commands rather than time them.
    count_rounds: int


PROFILES = {
    "smoke": Profile("smoke", 1, 0.2, 50, 200, 20, 100.0, 50, 0.5, 2.0, 1),
    "quick": Profile("quick", 3, 1.0, 2000, 5000, 600, 400.0, 2000, 10.0, 8.0, 1),
    "full": Profile("full", 5, 3.0, 5000, 20_000, 2000, 400.0, 5000, 30.0, 30.0, 3),
}


@dataclass(slots=True)
class Metric:
    """One row of the results: a value per system per round."""

    scenario: str
    key: str
    label: str
    unit: str
    higher_is_better: bool
    values: dict[str, list[float | None]] = field(default_factory=dict)

    def median(self, system: str) -> float | None:
        got = [v for v in self.values.get(system, []) if v is not None]
        return statistics.median(got) if got else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "values": self.values,
            "median": {s: self.median(s) for s in self.values},
        }


class Bench:
    """Holds the private server, the profile and every metric measured so far."""

    def __init__(self, profile: Profile, systems: Sequence[str]) -> None:
        self.profile = profile
        self.systems = list(systems)
        self.server = RedisServer()
        self.metrics: dict[tuple[str, str], Metric] = {}
        # Last measured rate per (system, setting): sizes the next round's job count.
        self.rates: dict[tuple[str, str], float] = {}
        self.admin: aioredis.Redis | None = None
        # Extra per-system detail for the JSON (e.g. which commands an idle worker sends).
        self.details: dict[str, dict[str, Any]] = {}

    async def __aenter__(self) -> Bench:
        self.server.start()
        self.admin = aioredis.Redis(port=self.server.port, decode_responses=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.admin is not None:
            await self.admin.aclose()
        self.server.cleanup()

    # -- helpers for scenarios ----------------------------------------------------

    def url(self, system: str) -> str:
        return f"redis://127.0.0.1:{self.server.port}/{self.systems_db(system)}"

    @staticmethod
    def systems_db(system: str) -> int:
        return list(SYSTEMS).index(system)

    def make(self, system: str) -> System:
        return SYSTEMS[system](self.url(system))

    @property
    def redis(self) -> aioredis.Redis:
        assert self.admin is not None
        return self.admin

    async def flush(self) -> None:
        await self.redis.flushall()

    def record(
        self,
        scenario: str,
        key: str,
        label: str,
        unit: str,
        system: str,
        value: float | None,
        *,
        higher_is_better: bool = True,
    ) -> None:
        metric = self.metrics.get((scenario, key))
        if metric is None:
            metric = Metric(scenario, key, label, unit, higher_is_better)
            self.metrics[(scenario, key)] = metric
        metric.values.setdefault(system, []).append(value)

    def job_count(self, system: str, setting: str, floor: int = 200) -> int:
        rate = self.rates.get((system, setting), SYSTEMS[system].expected_rate)
        return max(floor, int(rate * self.profile.target_s))

    def order(self, round_no: int) -> list[str]:
        """Systems in a rotated order each round, so none always runs first or last."""
        k = round_no % len(self.systems)
        return self.systems[k:] + self.systems[:k]

    async def rounds(
        self, body: Callable[[str], Awaitable[None]], rounds: int | None = None
    ) -> None:
        """Run ``body(system)`` for every system, alternating, ``profile.rounds`` times."""
        for round_no in range(self.profile.rounds if rounds is None else rounds):
            for system in self.order(round_no):
                await self.flush()
                await body(system)

    # -- commands and memory -------------------------------------------------------

    async def command_calls(self) -> dict[str, int]:
        stats = await self.redis.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}

    async def reset_stats(self) -> None:
        await self.redis.config_resetstat()

    async def used_memory(self) -> int:
        """Dataset memory: ``used_memory`` less client buffers (50 producer connections'
        query buffers would otherwise show up as bytes per job)."""
        info = await self.redis.info("memory")
        return int(info["used_memory"]) - int(info.get("mem_clients_normal", 0))

    async def stream_bytes(self) -> int:
        """Memory of every stream on the server (capped event logs: overhead, not per job)."""
        total = 0
        for db in range(len(SYSTEMS)):
            client = aioredis.Redis(port=self.server.port, db=db, decode_responses=True)
            try:
                async for key in client.scan_iter(_type="stream", count=1000):
                    total += int(await client.memory_usage(key, samples=0) or 0)
            finally:
                await client.aclose()
        return total

    # -- worker processes ------------------------------------------------------------

    @contextlib.contextmanager
    def workers(
        self,
        system: str,
        spec: WorkerSpec,
        probe: Probe,
        processes: int = 1,
        *,
        round_trips: bool = False,
    ) -> Iterator[Callable[[], bool]]:
        """Start ``processes`` worker processes, wait until each has imported and set up,
        then release them together; kill them on exit (flushing makes leftovers moot).

        Yields a function telling whether every worker process is still alive."""
        ready = CTX.Semaphore(0)
        go = CTX.Event()
        procs = [
            CTX.Process(
                target=_worker_main,
                args=(system, self.url(system), spec, probe, ready, go, round_trips),
                daemon=True,
            )
            for _ in range(processes)
        ]
        for p in procs:
            p.start()
        try:
            for p in procs:
                if not ready.acquire(timeout=60):
                    raise RuntimeError(f"{system} worker process {p.pid} did not start")
            go.set()
            yield lambda: all(p.is_alive() for p in procs)
        finally:
            for p in procs:
                if p.is_alive() and p.pid is not None:
                    os.kill(p.pid, signal.SIGKILL)
            for p in procs:
                p.join(timeout=10)


def _worker_main(
    system: str,
    url: str,
    spec: WorkerSpec,
    probe: Probe,
    ready: Any,
    go: Any,
    round_trips: bool,
) -> None:
    if round_trips:
        count_round_trips()
    # Import the adapter (and so the system's package) before saying ready.
    importlib.import_module(SYSTEMS[system].__module__)
    instance = SYSTEMS[system](url)
    ready.release()
    go.wait()
    instance.serve_blocking(spec, probe)


async def wait_done(
    probe: Probe, timeout_s: float, alive: Callable[[], bool] | None = None
) -> bool:
    """Wait (without blocking the loop) until the probe has seen its target; give up at
    the timeout or as soon as a worker process has died."""
    deadline = time.monotonic() + timeout_s
    while not probe.done.is_set():
        if time.monotonic() > deadline or (alive is not None and not alive()):
            return False
        await asyncio.sleep(0.01)
    return True


def payloads(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"i": i, **extra} for i in range(n)]


__all__ = ["PROFILES", "Bench", "Metric", "NotSupported", "Profile", "payloads", "wait_done"]
