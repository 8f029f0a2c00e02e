"""engine.cron against cronsim on randomised expressions, zones and dates (a few hundred
cases here; thousands over several seeds with cron-parser too in ``make cron-diff``)."""

from __future__ import annotations

from tests.cron_differential import random_cases, run


def test_engine_agrees_with_cronsim_or_differs_only_as_documented():
    sim, _ = run(random_cases(200, seed=20261101), node=False)
    assert sim.cases == 200
    assert not sim.unexplained, sim.unexplained[:3]
    # Most cases sit on a DST transition: agreement is the rule, not the exception.
    assert sim.agree >= 0.8 * sim.cases
