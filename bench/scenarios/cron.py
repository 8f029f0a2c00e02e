"""Cron lateness placeholder until the scheduler lands (replaced below when it does)."""

from __future__ import annotations

from bench.harness import Bench


async def run(bench: Bench) -> None:
    return None
