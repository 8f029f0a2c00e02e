"""What every benchmarked system provides: a producer side and a worker side.

The producer side runs in the harness process (asyncio); the worker side runs in child
processes started by the harness, the way a user runs that system's worker. Handlers are
no-ops that only report to a :class:`~bench.probe.Probe`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, ClassVar

from bench.probe import Probe


class NotSupported(Exception):
    """The system has no such API (e.g. no bulk enqueue): the cell reads "n/a"."""


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """How one worker process is run: jobs in flight, worker objects in the process."""

    concurrency: int = 10
    instances: int = 1
    # System-specific knobs (the tuning scenario sets the engine's worker options).
    extra: dict[str, Any] = field(default_factory=dict)


class System:
    """One job queue under test, bound to a Redis URL (its own db on the private server)."""

    name: ClassVar[str]
    package: ClassVar[str]
    settings: ClassVar[str] = ""
    # Throughput guess (jobs/s) for sizing the first round; later rounds use measurements.
    expected_rate: ClassVar[float] = 1500.0
    # Systems that run one job at a time per process (RQ) report only concurrency 1.
    max_concurrency: ClassVar[int] = 10_000
    queue_name: ClassVar[str] = "bench"

    def __init__(self, url: str) -> None:
        self.url = url

    @classmethod
    def version(cls) -> str:
        return metadata.version(cls.package)

    # -- producer (harness process) -------------------------------------------------

    async def open(self) -> None:
        """Connect; called once per run before any enqueue."""

    async def close(self) -> None:
        """Disconnect."""

    async def enqueue(self, data: dict[str, Any], *, keep_completed: bool = False) -> None:
        raise NotImplementedError

    async def enqueue_bulk(
        self, datas: list[dict[str, Any]], *, keep_completed: bool = False
    ) -> None:
        raise NotSupported(f"{self.name} has no bulk enqueue")

    async def enqueue_concurrent(self, datas: list[dict[str, Any]], width: int = 50) -> None:
        """``width`` producers adding one job at a time on one client."""
        it = iter(datas)

        async def producer() -> None:
            for data in it:
                await self.enqueue(data)

        await asyncio.gather(*(producer() for _ in range(width)))

    async def fill(self, datas: list[dict[str, Any]], *, keep_completed: bool = False) -> None:
        """Put ``datas`` in the queue as fast as this system allows (not timed)."""
        for start in range(0, len(datas), 1000):
            chunk = datas[start : start + 1000]
            try:
                await self.enqueue_bulk(chunk, keep_completed=keep_completed)
            except NotSupported:
                await self.enqueue_concurrent(chunk)

    # -- worker (child process) -------------------------------------------------------

    async def serve(self, spec: WorkerSpec, probe: Probe) -> None:
        """Run ``spec.instances`` workers until the process is killed."""
        raise NotImplementedError

    async def serve_cron(self, spec: WorkerSpec, probe: Probe) -> None:
        """Run one instance (scheduler + worker, as this system splits them) of a schedule
        firing every second; the handler reports ``{"t": scheduled tick in seconds}``."""
        raise NotSupported(f"{self.name}: cron is not driven by the benchmark")

    def serve_blocking(self, spec: WorkerSpec, probe: Probe) -> None:
        """Entry point of a worker process; asyncio systems run :meth:`serve` (or
        :meth:`serve_cron` when ``spec.extra["cron"]``)."""
        if spec.extra.get("cron"):
            asyncio.run(self.serve_cron(spec, probe))
        else:
            asyncio.run(self.serve(spec, probe))
