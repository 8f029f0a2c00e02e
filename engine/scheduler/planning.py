"""Fire planning: which due ticks a fire call enqueues, which it drops, and the next fire.

Pure: no Redis, no clock. The same inputs give the same plan on every instance.

The cost does not grow with the length of an outage:

- the latest due tick is found by bisection over ``next_fire`` (which is monotonic), about
  ``log2(gap ms)`` calls (~33 for 70 days), or by arithmetic for ``every_ms``;
- ``skip`` and ``once`` then jump straight past it; ``all`` enumerates only the ticks inside
  ``misfire_grace_ms`` (at most ``MAX_FIRES_PER_CALL + 1`` of them per call);
- dropped ticks are counted exactly by arithmetic for ``every_ms``. For cron they are
  enumerated up to ``MAX_CRON_COUNT`` ticks: an exact count below that, an honest lower bound
  ("at least N", ``FirePlan.exact`` False) above it. Only the first ``MAX_MISSED_LISTED``
  dropped ticks are listed one by one; the rest is one summary entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..cron import Schedule, next_fire
from .definition import MAX_FIRES_PER_CALL, MAX_MISSED_LISTED, ScheduleDefinition

MAX_CRON_COUNT = 200
"""Dropped cron ticks enumerated to count them; beyond this the count is a lower bound."""


@dataclass(frozen=True, slots=True)
class FirePlan:
    """What one fire call does.

    ``fire``: ticks to enqueue, ascending. ``missed``: the first dropped ticks, listed one
    by one. ``extra_missed``: how many more were dropped, not listed (exact when ``exact``,
    else a lower bound), the first of them being ``extra_from``. ``next_ms``: the schedule's
    next fire time afterwards (None: it has ended).
    """

    fire: tuple[int, ...]
    missed: tuple[int, ...]
    extra_missed: int
    next_ms: int | None
    exact: bool = True
    extra_from: int | None = None

    @property
    def missed_count(self) -> int:
        """Dropped ticks (a lower bound when not ``exact``)."""
        return len(self.missed) + self.extra_missed


def plan_fires(definition: ScheduleDefinition, expected_ms: int, now_ms: int) -> FirePlan:
    """Apply the misfire policy to the ticks from ``expected_ms`` (the stored next fire,
    itself a tick) up to ``now_ms``."""
    schedule = definition.schedule
    if expected_ms > now_ms:
        return FirePlan((), (), 0, expected_ms)
    latest = latest_tick(schedule, expected_ms, now_ms)
    grace = definition.misfire_grace_ms
    after_latest = next_fire(schedule, latest)
    fire: tuple[int, ...]
    if definition.misfire == "all":
        # The first tick inside the grace window.
        first: int | None = expected_ms
        if now_ms - expected_ms > grace:
            first = next_fire(schedule, now_ms - grace - 1)
        if first is None or first > now_ms:
            fire, drop_end, next_ms = (), after_latest, after_latest
        else:
            ticks = _ticks_from(schedule, first, now_ms, MAX_FIRES_PER_CALL + 1)
            if len(ticks) > MAX_FIRES_PER_CALL:
                # The rest of the grace window goes in the next call.
                fire, next_ms = tuple(ticks[:MAX_FIRES_PER_CALL]), ticks[MAX_FIRES_PER_CALL]
            else:
                fire, next_ms = tuple(ticks), after_latest
            drop_end = first
    elif definition.misfire == "once" or now_ms - latest <= grace:
        fire, drop_end, next_ms = (latest,), latest, after_latest
    else:  # skip, and the latest tick is too late too
        fire, drop_end, next_ms = (), after_latest, after_latest
    listed, extra, exact, extra_from = _dropped(schedule, expected_ms, drop_end, now_ms)
    return FirePlan(fire, listed, extra, next_ms, exact, extra_from)


def latest_tick(schedule: Schedule, tick_ms: int, now_ms: int) -> int:
    """The last fire time at or before ``now_ms``, given ``tick_ms``, a fire time <= now."""
    every = schedule.every_ms
    if every is not None:
        bound = now_ms if schedule.end_ms is None else min(now_ms, schedule.end_ms)
        return tick_ms + max(0, (bound - tick_ms) // every) * every
    # next_fire is monotonic: bisect for the largest t with next_fire(t) <= now.
    lo, hi = tick_ms - 1, now_ms  # next_fire(lo) = tick_ms <= now; next_fire(now) > now
    found = next_fire(schedule, lo)
    if found is None or found > now_ms:
        return tick_ms  # not a tick of this schedule after all: treat it as the only one
    probe = next_fire(schedule, found)
    if probe is None or probe > now_ms:
        return found  # the common case (an on-time fire): two calls
    lo = found
    while hi - lo > 1:
        mid = (lo + hi) // 2
        at = next_fire(schedule, mid)
        if at is not None and at <= now_ms:
            lo = mid
        else:
            hi = mid
    return hi


def _ticks_from(schedule: Schedule, first: int, until: int, limit: int) -> list[int]:
    """Up to ``limit`` ticks from ``first`` (a tick) to ``until``, inclusive."""
    out: list[int] = []
    tick: int | None = first
    while tick is not None and tick <= until and len(out) < limit:
        out.append(tick)
        tick = next_fire(schedule, tick)
    return out


def _dropped(
    schedule: Schedule, start: int, end: int | None, now_ms: int
) -> tuple[tuple[int, ...], int, bool, int | None]:
    """Ticks in [start, end) (``end`` None: up to now): the first listed, then how many
    more, whether that count is exact, and the first unlisted one."""
    stop = now_ms + 1 if end is None else min(end, now_ms + 1)
    if start >= stop:
        return (), 0, True, None
    every = schedule.every_ms
    if every is not None:
        total = (stop - 1 - start) // every + 1
        listed = tuple(start + i * every for i in range(min(total, MAX_MISSED_LISTED)))
        extra = total - len(listed)
        return listed, extra, True, (start + len(listed) * every) if extra else None
    # One more than the budget: if it exists, the count is "at least" what was seen.
    ticks = _ticks_from(schedule, start, stop - 1, MAX_CRON_COUNT + 1)
    listed = tuple(ticks[:MAX_MISSED_LISTED])
    rest = ticks[MAX_MISSED_LISTED:]
    return listed, len(rest), len(ticks) <= MAX_CRON_COUNT, rest[0] if rest else None
