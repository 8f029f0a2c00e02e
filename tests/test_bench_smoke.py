"""The benchmark harness runs end to end for this engine (no peers, no timing checks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main
from bench.harness import PROFILES, Bench
from bench.peers.base import WorkerSpec
from bench.scenarios import processing

pytestmark = pytest.mark.slow


def test_enqueue_scenario_writes_medians_for_every_mode(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    main(["enqueue", "--profile", "smoke", "--systems", "engine", "--out", str(out)])
    results = json.loads(out.read_text())
    assert results["meta"]["systems"] == ["engine"]
    assert results["meta"]["machine"]["nproc"] >= 1
    rows = {row["key"]: row for row in results["metrics"]}
    assert set(rows) == {"one_by_one", "concurrent", "bulk"}
    for row in rows.values():
        assert row["unit"] == "jobs/s"
        assert row["median"]["engine"] > 0


async def test_processing_measure_drains_the_queue_in_a_worker_process() -> None:
    async with Bench(PROFILES["smoke"], ["engine"]) as bench:
        rate = await processing.measure(bench, "engine", WorkerSpec(concurrency=10), 1, "c10")
        assert rate > 0
        assert bench.rates[("engine", "c10")] == rate
