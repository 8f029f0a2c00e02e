"""Distributed cron schedules: definitions, registration, the leader loop, and their state.

One :class:`Scheduler` per queue and instance. Its responsibilities:

1. Hold or contend for the queue's :class:`~engine.lock.LeaderLease`; only the holder fires.
2. As leader, sleep until the earliest ``next`` fire time of the queue's schedules (or the
   next lease renewal), never polling per second; a local change wakes it at once.
3. Fire through ``fire_schedule-11+.lua``: fenced by token and epoch, a compare-and-set on
   the schedule's next fire time and fingerprint, one job per fired tick with the
   deterministic id ``<schedule>:<tick ms>``, every fired or dropped tick in the ledger.

Times are Redis ``TIME``: the leader's estimate (last server time seen plus local monotonic
time elapsed) only decides when to *try*; the script refuses a tick that is not due by the
server clock, so a wrong local estimate can delay a fire but never make it early or double.

Schedules live in Redis with their job payload and policies, so whichever instance leads
fires every schedule of the queue, even one it was not configured with (sidekiq#4078).
"""

from __future__ import annotations

from .admin import (
    UpsertResult,
    list_schedules,
    remove_schedule,
    run_schedule_now,
    server_time_ms,
    set_schedule_paused,
    upsert_schedule,
)
from .definition import (
    DEFAULT_LEDGER_LEN,
    DEFAULT_MISFIRE_GRACE_MS,
    MAX_FIRES_PER_CALL,
    MAX_MISSED_LISTED,
    MIN_MISFIRE_GRACE_MS,
    MISFIRE_POLICIES,
    OVERLAP_POLICIES,
    MisfirePolicy,
    OverlapPolicy,
    ScheduleDefinition,
    define_schedule,
)
from .loop import Scheduler
from .planning import FirePlan, plan_fires
from .state import ScheduleState, get_schedule_state

__all__ = [
    "DEFAULT_LEDGER_LEN",
    "DEFAULT_MISFIRE_GRACE_MS",
    "MAX_FIRES_PER_CALL",
    "MAX_MISSED_LISTED",
    "MIN_MISFIRE_GRACE_MS",
    "MISFIRE_POLICIES",
    "OVERLAP_POLICIES",
    "FirePlan",
    "MisfirePolicy",
    "OverlapPolicy",
    "ScheduleDefinition",
    "ScheduleState",
    "Scheduler",
    "UpsertResult",
    "define_schedule",
    "get_schedule_state",
    "list_schedules",
    "plan_fires",
    "remove_schedule",
    "run_schedule_now",
    "server_time_ms",
    "set_schedule_paused",
    "upsert_schedule",
]
