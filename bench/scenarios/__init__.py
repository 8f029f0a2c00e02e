"""Scenarios: each is ``async def run(bench)`` recording metrics for every system."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bench.harness import Bench
from bench.scenarios import (
    commands,
    cron,
    cron_fire,
    enqueue,
    idle,
    latency,
    memory,
    processing,
    profile,
    tuning,
)

Scenario = Callable[[Bench], Awaitable[None]]

SCENARIOS: dict[str, Scenario] = {
    "enqueue": enqueue.run,
    "processing": processing.run,
    "latency": latency.run,
    "memory": memory.run,
    "commands": commands.run,
    "idle": idle.run,
    "cron": cron.run,
}
# Engine-only extras, run by name (not part of quick/full).
EXTRAS: dict[str, Scenario] = {
    "tuning": tuning.run,
    "profile": profile.run,
    "cron-fire": cron_fire.run,
}

__all__ = ["EXTRAS", "SCENARIOS", "Scenario"]
