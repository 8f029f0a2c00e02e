"""The model-based test, short run (part of ``make test``; ``make fuzz`` is the long one).

Producers, worker processes (killed, frozen, closed), admin calls, proxy faults and real
OOM blips in an order drawn from a seed; every invariant of tests/model/invariants.py is
checked after every step (tests/model/driver.py). A failure prints the seed, every
violation, the steps, and the replay command. ``MODEL_SEEDS="1 2"`` / ``MODEL_STEPS=80``
override the defaults.
"""

from __future__ import annotations

import os

import pytest

from tests.model.driver import ModelConfig, run_model

SEEDS = [int(s) for s in os.environ.get("MODEL_SEEDS", "11 2").split()]
STEPS = int(os.environ.get("MODEL_STEPS", "70"))


@pytest.mark.timeout(170)
@pytest.mark.parametrize("seed", SEEDS)
async def test_no_invariant_breaks_under_random_faults(seed: int) -> None:
    report = await run_model(seed, ModelConfig(steps=STEPS, drain_timeout_s=30))
    print(report.summary())
    if not report.ok:
        pytest.fail(report.format(), pytrace=False)
