"""Fire planning: which due ticks a fire call enqueues, which it drops, and the next fire.

Pure: no Redis, no clock. The same inputs give the same plan on every instance.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..cron import Schedule, next_fire
from .definition import MAX_FIRES_PER_CALL, MAX_MISSED_LISTED, MAX_TICK_SCAN, ScheduleDefinition


@dataclass(frozen=True, slots=True)
class FirePlan:
    """What one fire call does: ticks to enqueue, ticks to drop, the next fire time."""

    fire: tuple[int, ...]
    missed: tuple[int, ...]
    extra_missed: int
    next_ms: int | None


def plan_fires(definition: ScheduleDefinition, expected_ms: int, now_ms: int) -> FirePlan:
    """Apply the misfire policy to the ticks from ``expected_ms`` up to ``now_ms``.

    Pure: the same inputs give the same plan on every instance.
    """
    schedule = definition.schedule
    due: list[int] = []
    tick: int | None = expected_ms
    while tick is not None and tick <= now_ms and len(due) < MAX_TICK_SCAN:
        due.append(tick)
        tick = next_fire(schedule, tick)
    uncounted = 0
    if tick is not None and tick <= now_ms:
        # An outage longer than the scan: count the rest and jump to the latest due tick.
        latest = _latest_due(schedule, now_ms, gap=due[-1] - due[-2])
        # For cron, at least one more; the exact count is not worth the scan.
        every = schedule.every_ms
        uncounted = (latest - tick) // every if every is not None else 1
        due.append(latest)
        tick = next_fire(schedule, latest)
    grace = definition.misfire_grace_ms
    fire: list[int]
    if not due:
        fire, missed = [], []
    elif definition.misfire == "all":
        fire = [d for d in due if now_ms - d <= grace]
        missed = [d for d in due if now_ms - d > grace]
        if len(fire) > MAX_FIRES_PER_CALL:
            tick = fire[MAX_FIRES_PER_CALL]
            fire = fire[:MAX_FIRES_PER_CALL]
            uncounted = 0
    elif definition.misfire == "once":
        fire, missed = due[-1:], due[:-1]
    else:  # skip
        fire = due[-1:] if now_ms - due[-1] <= grace else []
        missed = due[: len(due) - len(fire)]
    extra = uncounted + max(0, len(missed) - MAX_MISSED_LISTED)
    return FirePlan(tuple(fire), tuple(missed[:MAX_MISSED_LISTED]), extra, tick)


def _latest_due(schedule: Schedule, now_ms: int, gap: int) -> int:
    """The last fire time at or before ``now_ms`` (exists: a due tick lies before it)."""
    lookback = max(gap, 1)
    while True:
        found: int | None = None
        tick = next_fire(schedule, now_ms - lookback)
        while tick is not None and tick <= now_ms:
            found, tick = tick, next_fire(schedule, tick)
        if found is not None:
            return found
        lookback *= 2
